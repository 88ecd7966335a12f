"""The residual idea, written once: phi(v) = c phi(g) + phi(v - c g).

The Shapley value is linear, so a cheap game g that tracks an expensive game v (a
fitted surrogate, the proxy game) splits the work: phi(g) is computed cheaply (exactly,
by TreeSHAP or enumeration) and only the residual game r = v - c g, which varies far
less than v where g is good, is estimated by Monte Carlo on v's budget. This is
shapiq ProxySHAP's ``adjustment`` and the regression-adjusted estimators of Witter et
al. (2025). SurrogateSHAP's ``adjustment=`` and ``proxy-cv``'s fixed-coefficient path
both go through :func:`adjust`.

Unbiasedness: when g is fixed before the residual's coalitions are drawn (fitted on
other coalitions, or a proxy), an unbiased residual estimator (permutation sampling)
makes c phi(g) + phi_hat(r) unbiased for phi(v). Coalitions the residual estimator
draws again are free (:meth:`ResidualGame.is_prepaid`): they were paid for by the
stage that fitted g, and their residuals are still independent draws of the
residual estimator's own distribution.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from surrogateshap.attribution import Attribution
from surrogateshap.estimator import Estimator
from surrogateshap.game import Game, _callable_digest, stable_hash

__all__ = ["ResidualGame", "adjust", "as_estimator"]


class ResidualGame(Game):
    """r(S) = v(S) - c g(S): what a cheap game g leaves of an expensive game v.

    ``game`` is v (normally the estimator's budgeted game: every residual evaluation
    is an evaluation of v and is counted there); ``cheap`` is any callable from boolean
    (m, n) masks to (m,) values (a Game, a fitted surrogate's predict). Costs are v's.
    """

    def __init__(self, game: Game, cheap: Callable[[np.ndarray], np.ndarray], c: float = 1.0):
        super().__init__(game.players)
        self._v = game
        self._g = cheap
        self.c = float(c)
        self.cost_unit = game.cost_unit

    def _evaluate(self, masks):
        return self._v(masks) - self.c * np.asarray(self._g(masks), dtype=float).reshape(-1)

    def cost_of(self, masks):
        return self._v.cost_of(masks)

    def is_prepaid(self, mask) -> bool:
        # a coalition v has already evaluated (an earlier stage's) costs nothing more
        is_cached = getattr(self._v, "is_cached", None)
        return bool(is_cached(mask)) if is_cached is not None else False

    def cache_id(self):
        g = self._g.cache_id() if isinstance(self._g, Game) else _callable_digest(self._g)
        return f"Residual:{self._v.cache_id()}:{stable_hash([g, self.c])}"


def as_estimator(spec, params: dict | None = None) -> Estimator:
    """A residual estimator from a registry name or an instance (``params`` only with a
    name). It must estimate Shapley values from the game alone: phi(g) is a Shapley
    value, so adding another index (Banzhaf, LOO) to it would be meaningless."""
    from surrogateshap.registry import get_estimator

    if isinstance(spec, Estimator):
        if params:
            raise TypeError("adjustment parameters apply to a registry name, not an instance")
        est = spec
    elif isinstance(spec, str):
        est = get_estimator(spec, **(params or {}))
    else:
        raise TypeError(f"expected an estimator name or an Estimator instance; got {spec!r}")
    if est.index != "shapley":
        raise ValueError(f"the residual estimator must estimate Shapley values; {est.label} "
                         f"estimates {est.index} values")
    if est.requires:
        raise ValueError(f"the residual estimator must need only the game; {est.label} "
                         f"requires {list(est.requires)}")
    return est


def adjust(
    estimator: Estimator,
    game: Game,
    cheap: Callable[[np.ndarray], np.ndarray],
    cheap_values: np.ndarray,
    budget: int,
    seed,
    c: float = 1.0,
) -> tuple[np.ndarray, np.ndarray | None, Attribution]:
    """c phi(g) + estimator's estimate of phi(v - c g) on ``budget`` evaluations of v.

    Returns (values, stderr, the residual's Attribution). The stderr is the residual
    estimate's (phi(g) is taken as exact), None when the estimator reports none.
    """
    residual = ResidualGame(game, cheap, c)
    att = estimator.estimate(residual, int(budget), seed=seed)
    values = c * np.asarray(cheap_values, dtype=float) + att.values
    return values, att.stderr, att
