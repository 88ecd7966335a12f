"""The estimator interface: ``estimate(game, budget, seed) -> Attribution``.

An estimator is a class whose constructor stores parameters and whose ``_estimate``
does the work on a :class:`~surrogateshap.game.BudgetedGame`, so every evaluation is
counted and the budget is enforced rather than trusted. Estimators that need more than
the game (a cheap proxy game, model access) list those in ``requires``; the caller
passes them as keyword arguments. ``index`` names what the values estimate.

Two rules hold for every estimator, here rather than in each one:

- whether it can run at all (budget, resources) is :meth:`Estimator.unsupported`, the
  one check the benchmark also uses to skip a case;
- a budget of at least 2**n buys every coalition: the work is capped there and, for
  the indices that enumeration defines (Shapley, Banzhaf), the result is exact.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from numbers import Real
from typing import ClassVar

import numpy as np

from surrogateshap.attribution import INDICES, Attribution
from surrogateshap.exact import (
    MAX_EXACT_PLAYERS,
    banzhaf_from_table,
    shapley_from_table,
    shapley_interactions_from_table,
)
from surrogateshap.game import BudgetedGame, Game, PlayersOnly, all_coalitions

__all__ = ["Estimator"]

#: index -> enumeration formula, for the exact answer at a budget of 2**n
_FROM_TABLE = {"shapley": shapley_from_table, "banzhaf": banzhaf_from_table}


class Estimator(ABC):
    #: registry name, set by :func:`surrogateshap.registry.register`
    name: ClassVar[str] = ""
    #: what the values estimate: "shapley", "banzhaf", "datamodel", "loo" or "heuristic"
    index: ClassVar[str] = "shapley"
    #: extra resources ``estimate`` needs beyond the game, e.g. ("proxy",)
    requires: ClassVar[tuple[str, ...]] = ()
    #: True when the method only runs on every coalition (enumeration)
    is_exact: ClassVar[bool] = False
    #: False for a method that plays no coalition (it reads the model): the benchmark
    #: runs it at one budget only
    uses_budget: ClassVar[bool] = True
    #: at a budget of 2**n, answer by enumeration (Shapley and Banzhaf indices); a method
    #: that must run its own procedure there (to be studied as such) sets False
    exact_at_full_budget: ClassVar[bool] = True

    @classmethod
    def check_declarations(cls) -> None:
        """Raise naming the estimator and the field when a class declaration is malformed
        (run at registration: a plug-in's typo fails there, not in a benchmark case)."""
        who = f"estimator {cls.name or cls.__qualname__!r}"
        if cls.index not in INDICES:
            raise ValueError(f"{who}: index must be one of {INDICES}; got {cls.index!r}")
        for field in ("is_exact", "uses_budget", "exact_at_full_budget"):
            if not isinstance(getattr(cls, field), bool):
                raise TypeError(f"{who}: {field} must be True or False; got {getattr(cls, field)!r}")
        if not (isinstance(cls.requires, tuple) and all(isinstance(r, str) for r in cls.requires)):
            raise TypeError(f"{who}: requires must be a tuple of resource names; got {cls.requires!r}")
        if cls.is_exact and not cls.uses_budget:
            raise ValueError(f"{who}: is_exact (it enumerates every coalition) needs uses_budget=True")

    def min_budget(self, n_players: int) -> int:
        """Fewest game evaluations the method can run on."""
        return 1

    def validate(self) -> None:
        """Raise ValueError naming a bad parameter; runs before any game evaluation."""

    def check_resources(self, game: Game, **resources) -> None:
        """Raise naming a resource that does not fit the game (before any evaluation)."""

    def wants_interactions(self) -> bool:
        """Whether the caller asked for pairwise interaction values (given exactly when
        every coalition fits the budget)."""
        return bool(getattr(self, "interactions", False))

    @property
    def label(self) -> str:
        return self.name or type(self).__name__

    def unsupported(self, n_players: int, budget: int, offers: Iterable[str] | None = None) -> str | None:
        """Why this estimator cannot run at ``budget`` on n players (None: it can): bad
        parameters, a budget below the minimum, a required resource not among ``offers``
        (None: do not check resources). The benchmark skips a case for this reason and
        :meth:`estimate` raises it."""
        try:
            self.validate()
        except (TypeError, ValueError, KeyError) as e:
            return f"{self.label}: {e}"
        return self._limits(n_players, budget, offers)

    def _limits(self, n_players: int, budget: int, offers: Iterable[str] | None = None) -> str | None:
        need = self.min_budget(n_players)
        if budget < need:
            return (f"{self.label} needs a budget of at least {need} game evaluations for "
                    f"{n_players} players; got {budget}")
        if self.is_exact and budget < 2**n_players:
            return (f"{self.label} enumerates all 2**{n_players} = {2**n_players} coalitions; "
                    f"budget {budget} is below that")
        if offers is not None:
            missing = [r for r in self.requires if r not in set(offers)]
            if missing:
                return f"{self.label} requires {missing}; available: {sorted(offers) or 'none'}"
        return None

    def estimate(self, game: Game, budget: int, seed: int | None = 0, **resources) -> Attribution:
        """Values of ``game``'s players from at most ``budget`` distinct coalitions. An
        estimator that plays no coalition (``uses_budget = False``: it reads the model)
        may be given the players' names instead of a game."""
        if not isinstance(game, Game):
            names = list(game) if isinstance(game, (list, tuple)) else None
            if self.uses_budget or not names or not all(isinstance(p, str) for p in names):
                raise TypeError(f"game must be a surrogateshap Game, got {type(game).__name__}"
                                + ("" if self.uses_budget else " (or, for this estimator, the players' names)"))
            game = PlayersOnly(names)
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
            raise TypeError(f"budget must be an integer number of game evaluations, got {budget!r}")
        if self.index not in INDICES:
            raise ValueError(f"{self.label}: index must be one of {INDICES}; got {self.index!r}")
        self.validate()
        n = game.n_players
        reason = self._limits(n, int(budget))
        if reason:
            raise ValueError(reason)
        missing = [r for r in self.requires if resources.get(r) is None]
        if missing:
            raise TypeError(f"{self.label} requires {missing} (pass them as keyword arguments to estimate)")
        extra = set(resources) - set(self.requires)
        if extra:
            raise TypeError(f"{self.label} got unexpected resources {sorted(extra)}")
        self.check_resources(game, **resources)
        full = 2**n if n <= 62 else None
        budget = int(budget) if full is None else min(int(budget), full)
        counted = BudgetedGame(game, budget)
        rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        if (budget == full and self.exact_at_full_budget and self.index in _FROM_TABLE
                and n <= MAX_EXACT_PLAYERS):
            # every coalition fits: enumerate, whatever the method (the cap keeps a huge
            # budget from running a sampler on free repeats)
            table = counted(all_coalitions(n))
            out = {"values": _FROM_TABLE[self.index](table, n), "stderr": np.zeros(n),
                   "exact": True, "extra": {"all_coalitions": True}}
            if self.wants_interactions() and self.index == "shapley":
                out["interactions"] = shapley_interactions_from_table(table, n)
        else:
            out = self._estimate(counted, budget, rng, **resources)
        seconds = time.perf_counter() - t0
        if not isinstance(out, dict):
            out = {"values": out}
        values = np.asarray(out["values"], dtype=float).reshape(-1)
        if values.shape[0] != n:
            raise ValueError(f"{self.label} returned {values.shape[0]} values for {n} players")
        cost, exact = self._check_claims(out, counted, game)
        return Attribution(
            values=values,
            players=game.players,
            estimator=self.label,
            index=self.index,
            n_evaluations=counted.n_evaluations,
            seconds=seconds,
            budget=budget,
            seed=seed,
            stderr=out.get("stderr"),
            counts=out.get("counts", out.get("extra", {}).get("n_units")),
            cost=cost,
            cost_unit=out.get("cost_unit", game.cost_unit),
            interactions=out.get("interactions"),
            exact=exact,
            extra=out.get("extra", {}),
        )

    def _check_claims(self, out: dict, counted: BudgetedGame, game: Game) -> tuple[float, bool]:
        """The cost and exactness a result claims, checked against what the counted game
        saw: a cost is a finite amount >= 0, never below what its coalitions cost in the
        game's unit (an estimator that looks inside the model pays in its own units), and
        "exact" means every coalition was evaluated, as enumeration does."""
        cost = out.get("cost", counted.cost)
        if isinstance(cost, bool) or not isinstance(cost, Real) or not np.isfinite(cost) or cost < 0:
            raise ValueError(f"{self.label} reported cost={cost!r}: a cost must be a finite number >= 0")
        if out.get("cost_unit", game.cost_unit) == game.cost_unit and cost < counted.cost:
            raise ValueError(f"{self.label} reported cost={cost!r} {game.cost_unit}, below the "
                             f"{counted.cost!r} its {counted.n_evaluations} game evaluations cost")
        exact = out.get("exact", False)
        if not isinstance(exact, (bool, np.bool_)):
            raise TypeError(f"{self.label} reported exact={exact!r}: it must be True or False")
        n = game.n_players
        if exact and counted.n_distinct < 2**n:
            raise ValueError(f"{self.label} reported exact=True after evaluating {counted.n_distinct} "
                             f"of the 2**{n} coalitions: exact values need every coalition")
        return float(cost), bool(exact)

    @abstractmethod
    def _estimate(self, game: BudgetedGame, budget: int, rng: np.random.Generator, **resources):
        """Return an array of values, or a dict with "values" and optional "stderr",
        "counts" (independent units per player), "interactions", "exact", "extra"."""

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
