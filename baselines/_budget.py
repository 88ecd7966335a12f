"""Budget planning shared by the sampling baselines.

A :class:`~surrogateshap.game.BudgetedGame` charges each distinct coalition once and
raises past its budget. Sampling estimators want to use the whole budget without ever
hitting that error, while still evaluating in large batches. :class:`BudgetPlanner`
does the bookkeeping: an estimator offers a group of coalitions (one permutation's
prefixes, a coalition and its complement), the planner accepts it if the group's new
distinct coalitions fit in what is left, and accepted groups are evaluated together.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from surrogateshap.game import BudgetedGame

__all__ = ["BudgetPlanner", "sample_distinct"]


def _key(mask: np.ndarray) -> bytes:
    return np.ascontiguousarray(mask, dtype=bool).tobytes()


class BudgetPlanner:
    """Accepts groups of coalitions while their new evaluations fit the budget.

    ``take(masks)`` returns True and reserves the group's new coalitions when they fit
    in ``left``; ``evaluate(masks)`` evaluates a batch (normally everything taken since
    the last call) in one game call and releases the reservations. An estimator that
    reserves a worst case and evaluates less (truncated scans) calls ``release()``.
    """

    def __init__(self, game: BudgetedGame):
        self.game = game
        self._pending: set[bytes] = set()

    @property
    def left(self) -> float:
        """New distinct coalitions that can still be reserved (inf without a budget)."""
        remaining = self.game.remaining
        if remaining is None:
            return math.inf
        return remaining - len(self._pending)

    def new_keys(self, masks: np.ndarray) -> set[bytes]:
        """Keys of the rows of ``masks`` that neither the game nor the plan holds yet."""
        new: set[bytes] = set()
        for m in masks:
            k = _key(m)
            if k in self._pending or k in new or self.game.is_cached(m):
                continue
            new.add(k)
        return new

    def take(self, masks: np.ndarray) -> bool:
        new = self.new_keys(masks)
        if len(new) > self.left:
            return False
        self._pending |= new
        return True

    def evaluate(self, masks: np.ndarray) -> np.ndarray:
        values = self.game(masks)
        self._pending.clear()
        return values

    def release(self) -> None:
        """Drop the reservations (after evaluating only part of what was taken)."""
        self._pending.clear()


def sample_distinct(
    planner: BudgetPlanner,
    draw: Callable[[int], np.ndarray],
    n_players: int,
    max_draws: int,
) -> tuple[np.ndarray, int]:
    """Distinct coalitions from ``draw`` until the budget is used or ``max_draws`` drawn.

    ``draw(k)`` returns k random boolean rows. Repeats of a coalition already in the
    sample are skipped (a repeat costs nothing but, the game being deterministic,
    carries no information either), so the result is a sample without replacement.
    Sampling stops once the budget is spent or after ``max_draws`` draws. Returns the
    rows and the number of rows drawn. Nothing is evaluated here.
    """
    rows: list[np.ndarray] = []
    seen: set[bytes] = set()
    draws = 0
    while draws < max_draws and planner.left > 0:
        want = planner.left
        k = int(min(max_draws - draws, max(2 * want if want < math.inf else 1024, 64)))
        batch = draw(k)
        draws += k
        for row in batch:
            key = _key(row)
            if key in seen:
                continue
            if not planner.take(row[None, :]):
                return np.asarray(rows, dtype=bool).reshape(-1, n_players), draws
            seen.add(key)
            rows.append(row)
    return np.asarray(rows, dtype=bool).reshape(-1, n_players), draws
