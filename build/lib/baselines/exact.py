"""Exact Shapley values by enumerating all 2**n coalitions (n <= 20).

The reference every estimator is compared against on small games; as an estimator it
costs the whole power set, so its minimum budget is 2**n.
"""

from __future__ import annotations

import numpy as np

from surrogateshap.estimator import Estimator
from surrogateshap.exact import MAX_EXACT_PLAYERS, exact_shapley
from surrogateshap.registry import register

__all__ = ["ExactShapley"]


@register("exact")
class ExactShapley(Estimator):
    """Enumeration: evaluates every coalition in one batch, values exact to rounding."""

    is_exact = True

    def min_budget(self, n_players: int) -> int:
        return 2**n_players

    def _estimate(self, game, budget, rng: np.random.Generator):
        if game.n_players > MAX_EXACT_PLAYERS:
            raise ValueError(
                f"exact enumeration supports at most {MAX_EXACT_PLAYERS} players; "
                f"the game has {game.n_players}"
            )
        return {"values": exact_shapley(game), "exact": True}
