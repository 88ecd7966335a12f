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

Anytime estimates: ``estimate(game, budget, until=Until(...))`` refines the estimate in
steps of doubling budgets, keeping every evaluation already paid for, and stops at the
first step after which a criterion of :class:`Until` holds (or at ``budget``); the
Attribution's ``stopped_by`` names which. An estimator opts in by implementing
``_refine(state, game, budget, rng)``; the others refuse ``until=``.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
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

__all__ = ["Estimator", "Until"]

#: index -> enumeration formula, for the exact answer at a budget of 2**n
_FROM_TABLE = {"shapley": shapley_from_table, "banzhaf": banzhaf_from_table}


def _rel_stderr(values, stderr) -> float:
    """The largest standard error over the values' range (NaN: unknown)."""
    if stderr is None:
        return float("nan")
    se, spread = np.asarray(stderr, dtype=float), float(np.ptp(values))
    return float(se.max() / spread) if spread > 0 and np.isfinite(se).all() else float("nan")


@dataclass(frozen=True)
class Until:
    """When an anytime estimate stops refining: the first of these to hold (None: unused).

    - ``rel_stderr``: every player's standard error is at most this fraction of the
      values' range (max - min), NaN errors never pass (for estimators that report
      standard errors);
    - ``top_k`` players, in order, unchanged over the last ``stable_steps`` refinements
      (so over ``stable_steps`` + 1 estimates);
    - ``seconds``: wall time; a step is not started when, at the last step's pace, it
      would end past the limit.

    Steps: the first spends ``first`` evaluations (None: max(8 n, the estimator's
    minimum)), each next one ``growth`` times as many in all, the last one ``budget``.
    """

    rel_stderr: float | None = None
    top_k: int | None = None
    stable_steps: int = 2
    seconds: float | None = None
    first: int | None = None
    growth: float = 2.0

    def __post_init__(self):
        for name in ("rel_stderr", "seconds"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, Real) or not v > 0):
                raise ValueError(f"until {name} must be a number > 0 or None; got {v!r}")
        for name, optional in (("top_k", True), ("stable_steps", False), ("first", True)):
            v = getattr(self, name)
            if (v is not None or not optional) and (
                    isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise ValueError(f"until {name} must be an integer >= 1; got {v!r}")
        g = self.growth
        if isinstance(g, bool) or not isinstance(g, Real) or not 1 < g < math.inf:
            raise ValueError(f"until growth must be a finite number > 1; got {g!r}")
        if self.rel_stderr is None and self.top_k is None and self.seconds is None:
            raise ValueError("until needs a criterion: rel_stderr, top_k or seconds")

    @classmethod
    def of(cls, until) -> Until:
        """An :class:`Until`, or one made from a dict of its fields."""
        if isinstance(until, cls):
            return until
        if isinstance(until, dict):
            bad = sorted(set(until) - set(cls.__dataclass_fields__))
            if bad:
                raise ValueError(f"until: unknown criteria {bad}; known: {sorted(cls.__dataclass_fields__)}")
            return cls(**until)
        raise TypeError(f"until must be an Until or a dict of its fields; got {type(until).__name__}")

    def steps(self, n_players: int, min_budget: int, budget: int) -> list[int]:
        """The evaluations in all after each refinement step: ``first`` (None: max(8 n,
        ``min_budget``)), each next ``growth`` times as many, the last ``budget``."""
        step = min(budget, max(self.first or 8 * n_players, min_budget))
        out = [step]
        while step < budget:
            step = min(budget, max(step + 1, math.ceil(step * self.growth)))
            out.append(step)
        return out

    def met(self, history: list[dict], stderr, elapsed: float, next_seconds: float) -> str | None:
        """The criterion that holds after the last step of ``history`` (dicts with
        "values"), or None."""
        values = history[-1]["values"]
        if self.rel_stderr is not None and _rel_stderr(values, stderr) <= self.rel_stderr:
            return "rel_stderr"
        if self.top_k is not None and len(history) > self.stable_steps:
            k = min(self.top_k, len(values))
            tops = [tuple(np.argsort(-h["values"], kind="stable")[:k]) for h in history[-self.stable_steps - 1:]]
            if len(set(tops)) == 1:
                return "top_k"
        if self.seconds is not None and elapsed + next_seconds > self.seconds:
            return "seconds"
        return None


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
    #: True for an estimator that picks another and runs it (``auto``): the benchmark's
    #: default selection leaves it out, as its cases would rerun the one it picks
    delegates: ClassVar[bool] = False

    @classmethod
    def check_declarations(cls) -> None:
        """Raise naming the estimator and the field when a class declaration is malformed
        (run at registration: a plug-in's typo fails there, not in a benchmark case)."""
        who = f"estimator {cls.name or cls.__qualname__!r}"
        if cls.index not in INDICES:
            raise ValueError(f"{who}: index must be one of {INDICES}; got {cls.index!r}")
        for field in ("is_exact", "uses_budget", "exact_at_full_budget", "delegates"):
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

    @classmethod
    def refines(cls) -> bool:
        """Whether the estimator can refine an estimate (``estimate(until=...)``)."""
        return cls._refine is not Estimator._refine

    def _refine(self, state, game: BudgetedGame, budget: int, rng: np.random.Generator):
        """One anytime step: from ``state`` (None at first) spend evaluations until
        ``game.n_evaluations`` reaches at most ``budget`` (the total so far, not the
        increment), keeping what ``state`` holds; return (state, result dict as from
        :meth:`_estimate`)."""
        raise NotImplementedError

    def _refine_until(self, counted: BudgetedGame, budget: int, rng, until: Until, t0: float):
        n = counted.n_players
        steps = until.steps(n, self.min_budget(n), budget)
        state, history, stopped = None, [], None
        for i, step in enumerate(steps):
            t_step = time.perf_counter()
            state, out = self._refine(state, counted, step, rng)
            now = time.perf_counter()
            values = np.asarray(out["values"], dtype=float).reshape(-1)
            history.append({"values": values, "n_evaluations": counted.n_evaluations,
                            "seconds": now - t0, "rel_stderr": _rel_stderr(values, out.get("stderr"))})
            if until.rel_stderr is not None and out.get("stderr") is None:
                raise ValueError(f"{self.label} reports no standard error, so until rel_stderr cannot "
                                 "be checked; use top_k or seconds")
            nxt = steps[i + 1] if i + 1 < len(steps) else None
            # the next step's time at this one's pace per evaluation held
            pace = 0.0 if nxt is None else (now - t_step) * nxt / max(step, 1)
            stopped = until.met(history, out.get("stderr"), now - t0, pace)
            if stopped:
                break
        out.setdefault("extra", {})["steps"] = [
            {k: h[k] for k in ("n_evaluations", "seconds", "rel_stderr")} for h in history]
        return out, stopped or "budget"

    def estimate(self, game: Game, budget: int, seed: int | None = 0, until=None,
                 **resources) -> Attribution:
        """Values of ``game``'s players from at most ``budget`` distinct coalitions. An
        estimator that plays no coalition (``uses_budget = False``: it reads the model)
        may be given the players' names instead of a game. ``until`` (an :class:`Until`
        or a dict of its fields) refines the estimate in steps and stops early when a
        criterion holds (see the module doc)."""
        if until is not None:
            until = Until.of(until)
            if not self.refines():
                raise ValueError(f"{self.label} does not support until= (it has no _refine step); "
                                 "stratified-svarm, permutation, permutation-antithetic and "
                                 "surrogateshap do")
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
        stopped = None
        if (budget == full and self.exact_at_full_budget and self.index in _FROM_TABLE
                and n <= MAX_EXACT_PLAYERS):
            # every coalition fits: enumerate, whatever the method (the cap keeps a huge
            # budget from running a sampler on free repeats)
            table = counted(all_coalitions(n))
            out = {"values": _FROM_TABLE[self.index](table, n), "stderr": np.zeros(n),
                   "exact": True, "extra": {"all_coalitions": True}}
            if self.wants_interactions() and self.index == "shapley":
                out["interactions"] = shapley_interactions_from_table(table, n)
        elif until is not None:
            out, stopped = self._refine_until(counted, budget, rng, until, t0)
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
            stopped_by=stopped or out.get("stopped_by") or (None if until is None else "budget"),
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
        "counts" (independent units per player), "interactions", "exact", "extra",
        "stopped_by" (an estimator that runs a refined estimate of its own)."""

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
