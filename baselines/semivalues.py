"""Banzhaf values by maximum sample reuse (MSR; Wang & Jia 2023, "Data Banzhaf: a
robust data valuation framework for machine learning").

These are Banzhaf values, not Shapley values: phi_i = E[v(S + i) - v(S)] with S
uniform over all subsets of the other players (every coalition size weighted by how
many coalitions it has, not equally as Shapley does). Compare them with
:func:`surrogateshap.exact.banzhaf_from_table`, not with Shapley ground truth.

MSR draws coalitions uniformly (each player in with probability 1/2) and reuses every
evaluation for every player: phi_i = mean v(S : i in S) - mean v(S : i not in S).
Repeats would cost nothing under the memoised budget but carry no information, so the
coalitions are drawn without replacement; the standard error combines the sample
variances of the two means.
"""

from __future__ import annotations

import numpy as np

from surrogateshap.estimator import Estimator
from surrogateshap.registry import register
from surrogateshap.sampling import BudgetPlanner, sample_distinct

__all__ = ["BanzhafMSR"]


@register("banzhaf-msr")
class BanzhafMSR(Estimator):
    """Banzhaf values (not Shapley) by maximum sample reuse (Wang & Jia 2023).

    ``max_draws`` caps the draws (default 50 * budget), reached only when the budget
    approaches 2**n and nearly every draw is a repeat.
    """

    index = "banzhaf"

    def __init__(self, max_draws: int | None = None):
        self.max_draws = max_draws

    def min_budget(self, n_players: int) -> int:
        return 2

    def _estimate(self, game, budget, rng: np.random.Generator):
        n = game.n_players
        max_draws = self.max_draws if self.max_draws is not None else 50 * budget
        masks, draws = sample_distinct(
            BudgetPlanner(game), lambda k: rng.random((k, n)) < 0.5, n, max_draws
        )
        v = game(masks)
        v = v - v.mean()  # centring changes no difference of means, helps rounding
        Z = masks.astype(float)
        n_in = Z.sum(axis=0)
        n_out = len(v) - n_in
        s_in, q_in = Z.T @ v, Z.T @ v**2
        s_out, q_out = v.sum() - s_in, (v**2).sum() - q_in
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_in, mean_out = s_in / n_in, s_out / n_out
            var_in = (q_in - n_in * mean_in**2) / (n_in - 1)
            var_out = (q_out - n_out * mean_out**2) / (n_out - 1)
            stderr = np.sqrt(np.clip(var_in, 0, None) / n_in + np.clip(var_out, 0, None) / n_out)
        # a player never (or always) sampled has no estimate: report 0, stderr inf
        missing = (n_in == 0) | (n_out == 0)
        values = np.where(missing, 0.0, mean_in - mean_out)
        stderr = np.where(missing, np.inf, np.where((n_in < 2) | (n_out < 2), np.nan, stderr))
        return {
            "values": values,
            "stderr": stderr,
            "counts": np.minimum(n_in, n_out),  # the smaller side bounds each estimate
            "extra": {
                "n_draws": int(draws),
                "players_without_estimate": [game.players[i] for i in np.flatnonzero(missing)],
            },
        }
