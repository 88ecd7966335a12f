"""Leave-one-out values: phi_i = v(N) - v(N minus i).

The cheapest data-valuation baseline (n + 1 evaluations, deterministic). It is not a
Shapley value: it sees only the last marginal contribution of each player, so
redundant contributors (duplicates, near-copies) all get about zero.
"""

from __future__ import annotations

import numpy as np

from surrogateshap.estimator import Estimator
from surrogateshap.registry import register

__all__ = ["LeaveOneOut"]


@register("loo")
class LeaveOneOut(Estimator):
    """Leave-one-out: one batch of the full coalition and the n coalitions missing one player."""

    index = "loo"

    def min_budget(self, n_players: int) -> int:
        return n_players + 1

    def _estimate(self, game, budget, rng: np.random.Generator):
        n = game.n_players
        masks = np.vstack([np.ones((1, n), dtype=bool), ~np.eye(n, dtype=bool)])
        v = game(masks)
        return {"values": v[0] - v[1:], "extra": {"v_full": float(v[0])}}
