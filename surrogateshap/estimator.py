"""The estimator interface: ``estimate(game, budget, seed) -> Attribution``.

An estimator is a class whose constructor stores parameters and whose ``_estimate``
does the work on a :class:`~surrogateshap.game.BudgetedGame`, so every evaluation is
counted and the budget is enforced rather than trusted. Estimators that need more than
the game (a cheap proxy game, the task itself) list those in ``requires``; the caller
passes them as keyword arguments.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from surrogateshap.attribution import Attribution
from surrogateshap.game import BudgetedGame, Game

__all__ = ["Estimator", "EstimateResult"]


class EstimateResult(dict):
    """What ``_estimate`` returns: values plus optional stderr, interactions, extra."""


class Estimator(ABC):
    #: registry name, set by :func:`surrogateshap.registry.register`
    name: ClassVar[str] = ""
    #: extra resources ``estimate`` needs beyond the game, e.g. ("proxy",)
    requires: ClassVar[tuple[str, ...]] = ()
    #: True when the method returns exact values given enough budget (enumeration)
    is_exact: ClassVar[bool] = False

    def min_budget(self, n_players: int) -> int:
        """Fewest game evaluations the method can run on."""
        return 1

    def estimate(self, game: Game, budget: int, seed: int | None = 0, **resources) -> Attribution:
        if not isinstance(game, Game):
            raise TypeError(f"game must be a surrogateshap Game, got {type(game).__name__}")
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
            raise TypeError(f"budget must be an integer number of game evaluations, got {budget!r}")
        need = self.min_budget(game.n_players)
        if budget < need:
            raise ValueError(
                f"{self.name or type(self).__name__} needs a budget of at least {need} "
                f"game evaluations for {game.n_players} players; got {budget}"
            )
        missing = [r for r in self.requires if resources.get(r) is None]
        if missing:
            raise TypeError(
                f"{self.name or type(self).__name__} requires {missing} "
                f"(pass them as keyword arguments to estimate)"
            )
        extra = set(resources) - set(self.requires)
        if extra:
            raise TypeError(f"{self.name or type(self).__name__} got unexpected resources {sorted(extra)}")
        counted = BudgetedGame(game, int(budget))
        rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        out = self._estimate(counted, int(budget), rng, **resources)
        seconds = time.perf_counter() - t0
        if not isinstance(out, dict):
            out = {"values": out}
        return Attribution(
            values=out["values"],
            players=game.players,
            estimator=self.name or type(self).__name__,
            n_evaluations=counted.n_evaluations,
            seconds=seconds,
            budget=int(budget),
            seed=seed,
            stderr=out.get("stderr"),
            cost=counted.cost,
            cost_unit=game.cost_unit,
            interactions=out.get("interactions"),
            exact=bool(out.get("exact", False)),
            extra=out.get("extra", {}),
        )

    @abstractmethod
    def _estimate(self, game: BudgetedGame, budget: int, rng: np.random.Generator, **resources):
        """Return an array of values, or a dict with "values" and optional
        "stderr", "interactions", "exact", "extra"."""

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
