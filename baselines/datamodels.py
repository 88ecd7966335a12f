"""Linear datamodels (Ilyas et al. 2022, "Datamodels: predicting predictions from
training data").

Fit a linear model from coalition masks to utilities over random training subsets and
use its coefficients as contributor values. Each player joins a subset independently
with probability ``alpha`` (the paper's subset fraction). The paper fixes the subset
size at alpha * n; with a constant size the intercept and the common shift of all
coefficients cannot be told apart, so independent inclusion is used here: on an
additive game the coefficients are then exactly the weights, and at alpha = 1/2 the
least-squares coefficients over all coalitions are the Banzhaf values (Hammer &
Holzman 1992). They are not Shapley values. The fit is scikit-learn's Ridge
(``ridge_alpha``) with an intercept; the paper's l1 penalty is not used.
"""

from __future__ import annotations

import numpy as np

from surrogateshap.estimator import Estimator
from surrogateshap.registry import register
from surrogateshap.sampling import BudgetPlanner, sample_distinct

__all__ = ["Datamodels"]


@register("datamodels")
class Datamodels(Estimator):
    """Ridge regression of utilities on random-subset masks; values = coefficients.

    ``alpha``: probability that a player is in a sampled subset (0 < alpha < 1).
    ``ridge_alpha``: Ridge regularisation strength. ``max_draws``: cap on draws
    (default 50 * budget), reached only when the budget approaches 2**n.
    """

    def __init__(self, alpha: float = 0.5, ridge_alpha: float = 1.0, max_draws: int | None = None):
        self.alpha = alpha
        self.ridge_alpha = ridge_alpha
        self.max_draws = max_draws

    def min_budget(self, n_players: int) -> int:
        return 2

    def _estimate(self, game, budget, rng: np.random.Generator):
        from sklearn.linear_model import Ridge

        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha (subset fraction) must be in (0, 1), got {self.alpha!r}")
        if not self.ridge_alpha >= 0.0:
            raise ValueError(f"ridge_alpha must be >= 0, got {self.ridge_alpha!r}")
        n = game.n_players
        max_draws = self.max_draws if self.max_draws is not None else 50 * budget
        masks, draws = sample_distinct(
            BudgetPlanner(game), lambda k: rng.random((k, n)) < self.alpha, n, max_draws
        )
        y = game(masks)
        X = masks.astype(float)
        model = Ridge(alpha=self.ridge_alpha).fit(X, y)
        return {
            "values": model.coef_,
            "extra": {
                "intercept": float(model.intercept_),
                "r2": float(model.score(X, y)) if len(y) > 1 else float("nan"),
                "n_draws": int(draws),
            },
        }
