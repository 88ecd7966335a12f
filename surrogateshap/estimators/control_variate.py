"""Control-variate Shapley values: a cheap proxy game steadies an expensive one.

A task often offers two games over the same players: an expensive one v (retrain a
model per coalition: seconds to hours) and a cheap one p that tracks it (SurrogateSHAP's
proxy game: the full-data model re-weighted per coalition, milliseconds). The Shapley
value is linear, so for any constant c

    phi(v) = c phi(p) + phi(v - c p).

"proxy-cv" computes phi(p) with the cheap game alone (exactly where it can) and spends
the whole expensive budget on a Monte Carlo estimate of the residual game
r(S) = v(S) - c p(S). Every expensive evaluation is paired with the cheap value of the
same coalition, so the sampled marginal contributions of r are those of v minus c times
those of p. Where the proxy tracks the expensive game the residual's marginals vary
far less than v's, and the error at a given number of retrainings shrinks by the factor
sqrt(sum_i Var(dv_i - c dp_i) / sum_i Var(dv_i)), which is sqrt(1 - rho^2) under the
variance-optimal c, rho the pooled correlation of the two games' marginal contributions.

Residual estimators (``residual=``), with c estimated from the same paired units:

- "permutation" (default): antithetic permutation sampling. Each unit is a random order
  and its reverse (2(n-1) new coalitions at most), giving every player one averaged
  marginal contribution dv_u (expensive) and dp_u (cheap, same coalitions). The estimate
  is the unit mean of e_u = dv_u + c (phi(p) - dp_u): unbiased for phi(v) whenever
  phi(p) is exact and c is independent of unit u. ``stderr`` is the standard deviation
  of e_u over units / sqrt(units) (the pair is the independent unit).
- "kernel": paired KernelSHAP in the constrained closed form of Covert & Lee (2021),
  as in the "kernelshap" estimator (:func:`surrogateshap.sampling.constrained_solve`).
  Fitted on the same coalitions, that estimator is linear in the utilities, so its
  estimate for r is KS(v) - c KS(p), and phi = KS(v) + c (phi(p) - KS(p)). ``stderr``
  is the sandwich estimate of the residual regression. With the sampled E[z z^T]
  KernelSHAP itself has an O(1/m) bias, so this variant is consistent rather than
  unbiased (and c is not cross-fitted). It runs from 4 evaluations (the permutation
  residual needs 2n) and was the more accurate of the two at every budget measured
  (scripts/control_variate_demo.py).

- any registered estimator name (with a fixed numeric ``c``): that estimator on the
  residual game v - c p (:func:`surrogateshap.estimators.residual.adjust`, the step
  SurrogateSHAP's ``adjustment=`` uses too).

The coefficient c (``c=``): a float fixes it (1.0: the plain difference v - p).
``"auto"`` (default) estimates the variance-optimal c = sum_i Cov(dv_i, dp_i) /
sum_i Var(dp_i), pooled over players (it minimises E||phi_hat - phi||^2, the summed
per-player variance), from the units' marginal contributions ("kernel": from the
per-unit scores g_u = mean over the pair of z (y(z) - z . phi) of the two regressions,
i.e. minimising the variance of the regression's right-hand side), and shrinks it
toward 1 (the plain difference) when it is noisy: ``shrinkage="auto"`` uses the plug-in MSE-optimal weight
(see :func:`optimal_coefficient`), a number t a ridge prior worth t units. With fewer
than 2 units, or a cheap game whose marginals never vary (additive: c is then
irrelevant), c = 1. A proxy on another scale than the expensive game (c = 2 or 0.5)
needs the estimate: with c fixed at 1 it removes far less variance, or none.

An estimated c depends on the units it is applied to, which biases the mean by O(1/U).
With ``cross_fit=True`` (the default for "permutation" with c="auto") the units are
split into min(U, 10) folds (leave-one-out up to 10 units) and each unit's e_u uses the
c estimated on the other folds only; every e_u, and so their mean, is then unbiased.
The price: with exactly 2 units each coefficient comes from one unit, i.e. is 1.
Measured on n = 10 unanimity games (400 seeds, scripts/control_variate_demo.py and the
tests): with c = 2 or 0.5 the error at 2 units is 2.6-5x that of the plug-in c
(``cross_fit=False``); from 3 units on the two are within 5%, and the plug-in's bias
was below the noise of 400 seeds (|bias| / RMSE <= 0.06). ``extra["c"]`` reports the
mean coefficient over units, ``extra["c_folds"]`` the per-fold ones.

Cheap values (``cheap_values=``):

- "auto" (default): the proxy's closed form (``proxy.exact_values()``) when it has one;
  else enumeration of all 2**n coalitions when n <= ``exact_max_players`` (12:
  4,096 cheap evaluations); else the registry's "surrogateshap" (efficiency-exact
  SurrogateSHAP) on the proxy with ``proxy_budget`` cheap evaluations.
- "exact": closed form, else enumeration (n <= 20), never an estimate.
- any other registered estimator name (e.g. "permutation-antithetic"): that estimator
  on the proxy with ``proxy_budget`` evaluations and ``proxy_params``.
- an array of n values (computed elsewhere).

Estimated cheap values add c (phi_hat(p) - phi(p)) to the result: SurrogateSHAP's error
is a bias no number of retrainings removes; an unbiased cheap estimator (permutation
sampling) keeps the whole unbiased. Where the cheap estimator reports a standard error,
c times it is added in quadrature to ``stderr`` (``extra["stderr_residual"]`` holds the
residual part alone).

Budget: counts distinct evaluations of the expensive game only (the game passed to
``estimate``), memoised, so prefixes repeated across orders are free; the proxy goes in
as ``proxy=``. ``extra["proxy_evaluations"]`` counts the distinct cheap coalitions
computed (cheap values plus the residual's), ``extra["proxy_seconds"]`` their time.

Measured errors against exact values, on known games and on digits10, are in
``results/digits10_control_variate.txt`` (``scripts/control_variate_demo.py``).

Other extras: ``cheap_values`` (phi(p) as used), ``residual_values`` (values minus
c phi(p)), ``cheap_values_method``, ``n_units``, ``correlation`` (pooled correlation of
the units' expensive and cheap marginals: the proxy's fidelity where it matters) and
``variance_ratio`` (sum of the residual units' variances over the expensive ones': the
estimated variance of proxy-cv relative to the same sampler without the proxy).
"""

from __future__ import annotations

from numbers import Real

import numpy as np

from surrogateshap.estimator import Estimator
from surrogateshap.exact import MAX_EXACT_PLAYERS, shapley_from_table
from surrogateshap.game import CachedGame, Game, all_coalitions
from surrogateshap.estimators.residual import adjust, as_estimator
from surrogateshap.registry import get_estimator, register
from surrogateshap.sampling import (
    BudgetPlanner,
    anchor_masks,
    constrained_solve,
    draw_units,
    kernel_units,
    order_marginals,
    permutation_units,
    sandwich_stderr,
)

__all__ = ["ProxyControlVariate", "optimal_coefficient", "RESIDUALS"]

RESIDUALS = ("permutation", "kernel")
#: folds of the cross-fitted coefficient (leave-one-out below this many units)
CROSS_FIT_FOLDS = 10


# --------------------------------------------------------------------------- coefficient


def optimal_coefficient(dv: np.ndarray, dp: np.ndarray, shrinkage="auto") -> float:
    """Pooled variance-optimal control-variate coefficient from per-unit vectors.

    ``dv``, ``dp``: (U, n) per-unit marginal contributions (or influence vectors) of the
    expensive and the cheap game on the same coalitions, units independent. The
    estimate c_hat = sum_i Cov(dv_i, dp_i) / sum_i Var(dp_i) is shrunk toward 1:

    - ``shrinkage="auto"``: by the plug-in MSE-optimal weight
      w = (c_hat - 1)^2 / ((c_hat - 1)^2 + s^2), c = 1 + w (c_hat - 1), where s is the
      standard error of c_hat (cluster-robust over units, with a U / (U - 1)
      correction). A c_hat far from 1 in units of its own noise is kept; a noisy one
      (few units, a weak proxy) falls back toward the plain difference.
    - a number t >= 0: a ridge prior worth t units, c = (U c_hat + t) / (U + t).

    1.0 when U < 2 or when dp does not vary (c is then irrelevant).
    """
    dv = np.asarray(dv, dtype=float)
    dp = np.asarray(dp, dtype=float)
    u = dv.shape[0]
    if u < 2:
        return 1.0
    xv = dv - dv.mean(axis=0)
    xp = dp - dp.mean(axis=0)
    sxx = float(np.sum(xp * xp))
    if not sxx > 1e-12 * float(np.sum(dp * dp)):
        return 1.0
    c_hat = float(np.sum(xv * xp)) / sxx
    if isinstance(shrinkage, str):
        score = np.sum(xp * (xv - c_hat * xp), axis=1)  # each unit's share of the fit
        s2 = u / (u - 1) * float(np.sum(score**2)) / sxx**2
        d2 = (c_hat - 1.0) ** 2
        w = d2 / (d2 + s2) if d2 + s2 > 0 else 1.0
        return 1.0 + w * (c_hat - 1.0)
    return (u * c_hat + shrinkage) / (u + shrinkage)


def _pooled_stats(dv: np.ndarray, dp: np.ndarray, dr: np.ndarray) -> tuple[float, float]:
    """Pooled correlation of dv and dp, and sum Var(dr) / sum Var(dv), over units."""
    if dv.shape[0] < 2:
        return float("nan"), float("nan")
    xv, xp, xr = (a - a.mean(axis=0) for a in (dv, dp, dr))
    svv, spp = float(np.sum(xv * xv)), float(np.sum(xp * xp))
    corr = float(np.sum(xv * xp) / np.sqrt(svv * spp)) if svv > 0 and spp > 0 else float("nan")
    ratio = float(np.sum(xr * xr)) / svv if svv > 0 else float("nan")
    return corr, ratio


# --------------------------------------------------------------------------- estimator


@register("proxy-cv")
class ProxyControlVariate(Estimator):
    """Shapley values of an expensive game with a cheap proxy game as control variate.

    ``estimate(expensive_game, budget, seed, proxy=cheap_game)``; the budget counts
    expensive evaluations only. See the module docstring for the method, the choice of
    c, cross-fitting and the cheap values.
    """

    requires = ("proxy",)

    def __init__(
        self,
        residual: str = "permutation",
        c: float | str = "auto",
        cross_fit: bool | None = None,
        shrinkage="auto",
        cheap_values="auto",
        exact_max_players: int = 12,
        proxy_budget: int = 4096,
        proxy_params: dict | None = None,
        max_units: int | None = None,
    ):
        self.residual = residual
        self.c = c
        self.cross_fit = cross_fit
        self.shrinkage = shrinkage
        self.cheap_values = cheap_values
        self.exact_max_players = exact_max_players
        self.proxy_budget = proxy_budget
        self.proxy_params = proxy_params
        self.max_units = max_units

    def min_budget(self, n_players: int) -> int:
        if n_players == 1:
            return 2
        if self.residual == "kernel":
            return 4  # empty, full and one complement pair
        if self.residual == "permutation":
            return 2 * n_players  # empty, full and one antithetic pair: 2 (n - 1) prefixes
        return as_estimator(self.residual).min_budget(n_players)

    # ---------------------------------------------------------------- validation

    def validate(self):
        self._check_params()

    def check_resources(self, game: Game, proxy=None, **resources):
        if not isinstance(proxy, Game):
            raise TypeError(f"proxy must be a surrogateshap Game, got {type(proxy).__name__}")
        if tuple(proxy.players) != tuple(game.players):
            same_set = set(proxy.players) == set(game.players)
            raise ValueError(
                "the proxy and the expensive game must have the same players in the same "
                + ("order (same names, different order)" if same_set else "order")
                + f": expensive {list(game.players)[:8]}{'...' if game.n_players > 8 else ''}"
                f" ({game.n_players} players), proxy {list(proxy.players)[:8]}"
                f"{'...' if proxy.n_players > 8 else ''} ({proxy.n_players} players)"
            )

    def _check_params(self) -> bool:
        auto = isinstance(self.c, str)
        if self.residual not in RESIDUALS:
            if not isinstance(self.residual, str):
                raise ValueError(f"residual must be one of {RESIDUALS} or an estimator name; "
                                 f"got {self.residual!r}")
            as_estimator(self.residual)  # an unknown name raises, listing the known ones
            if auto:
                raise ValueError(
                    f"residual={self.residual!r} (an estimator on the residual game) needs a "
                    f"fixed c; c='auto' is estimated from paired units of {RESIDUALS}"
                )
        if auto and self.c != "auto":
            raise ValueError(f"c must be 'auto' or a finite number; got {self.c!r}")
        if not auto and (
            isinstance(self.c, bool) or not isinstance(self.c, Real) or not np.isfinite(self.c)
        ):
            raise ValueError(f"c must be 'auto' or a finite number; got {self.c!r}")
        if self.cross_fit not in (None, True, False):
            raise TypeError(f"cross_fit must be True, False or None; got {self.cross_fit!r}")
        if self.cross_fit and self.residual == "kernel":
            raise ValueError(
                "cross_fit applies to residual='permutation' (the kernel estimate is a "
                "regression over all units, not a mean of per-unit estimates)"
            )
        if self.cross_fit and not auto:
            raise ValueError("cross_fit applies to an estimated coefficient (c='auto')")
        if self.shrinkage != "auto" and not (
            isinstance(self.shrinkage, Real)
            and not isinstance(self.shrinkage, bool)
            and self.shrinkage >= 0
        ):
            raise ValueError(f"shrinkage must be 'auto' or a number >= 0; got {self.shrinkage!r}")
        return auto

    # ---------------------------------------------------------------- cheap values

    def _cheap_values(self, cheap: CachedGame, proxy: Game, seed: int):
        """(values, stderr or None, method name, exact?) of the proxy game."""
        n = cheap.n_players
        spec = self.cheap_values
        if not isinstance(spec, str):
            vals = np.asarray(spec, dtype=float).reshape(-1)
            if vals.shape != (n,) or not np.isfinite(vals).all():
                raise ValueError(
                    f"cheap_values must be 'auto', 'exact', an estimator name or {n} finite "
                    f"values; got an array of shape {np.shape(spec)}"
                )
            return vals, None, "given", True
        if spec in ("auto", "exact"):
            closed = proxy.exact_values()
            if closed is not None:
                return np.asarray(closed, dtype=float).reshape(-1), None, "closed-form", True
            limit = MAX_EXACT_PLAYERS if spec == "exact" else self.exact_max_players
            if n <= limit:
                return shapley_from_table(cheap(all_coalitions(n)), n), None, "enumeration", True
            if spec == "exact":
                raise ValueError(
                    f"cheap_values='exact': the proxy has no closed form and n={n} exceeds "
                    f"the {MAX_EXACT_PLAYERS}-player enumeration limit"
                )
            spec = "surrogateshap"
        est = get_estimator(spec, **(self.proxy_params or {}))
        att = est.estimate(cheap, int(self.proxy_budget), seed=seed)
        return att.values, att.stderr, spec, bool(att.exact)

    # ---------------------------------------------------------------- the estimate

    def _estimate(self, game, budget, rng, proxy=None):
        auto = self._check_params()
        n = game.n_players
        cheap = CachedGame(proxy)
        cheap_seed = int(rng.integers(2**31 - 1))
        if n == 1:
            v0, v1 = game(np.array([[False], [True]]))
            return {"values": np.array([v1 - v0]), "stderr": np.zeros(1), "exact": True,
                    "extra": {"proxy_evaluations": 0, "n_units": 0}}
        phi_p, se_p, method, p_exact = self._cheap_values(cheap, proxy, cheap_seed)
        if self.residual not in RESIDUALS:
            # any estimator on the residual game v - c p (the shared residual step)
            values, se_r, att = adjust(as_estimator(self.residual), game, cheap, phi_p, budget,
                                       int(rng.integers(2**31 - 1)), c=float(self.c))
            se_r = np.full(n, np.nan) if se_r is None else se_r
            out = {"values": values, "stderr_residual": se_r, "c": float(self.c),
                   "n_units": None if att.counts is None else int(att.counts.max()),
                   "cross_fit": False}
            return self._finish(out, se_p, p_exact, method, phi_p, cheap)
        planner = BudgetPlanner(game)
        per = 2 if self.residual == "permutation" else 1
        max_units = self.max_units if self.max_units is not None else 10 * budget // per
        max_units = max(int(max_units), 1)
        if self.residual == "permutation":
            out = self._permutation(game, cheap, planner, rng, phi_p, auto, max_units)
        else:
            out = self._kernel(game, cheap, planner, rng, phi_p, auto, max_units)
        return self._finish(out, se_p, p_exact, method, phi_p, cheap)

    def _finish(self, out, se_p, p_exact, method, phi_p, cheap):
        stderr = out["stderr_residual"]
        if se_p is not None and not p_exact:
            stderr = np.sqrt(stderr**2 + (out["c"] * np.asarray(se_p, dtype=float)) ** 2)
        extra = {
            "residual": self.residual,
            "cheap_values_method": method,
            "cheap_values_exact": p_exact,
            "cheap_values": phi_p,
            "proxy_evaluations": int(cheap.n_evaluations),
            "proxy_seconds": float(cheap.seconds),
            **{k: v for k, v in out.items() if k not in ("values",)},
        }
        extra["residual_values"] = out["values"] - out["c"] * phi_p
        return {"values": out["values"], "stderr": stderr, "extra": extra}

    def _permutation(self, game, cheap, planner, rng, phi_p, auto, max_units):
        n = game.n_players
        masks, yv = draw_units(
            planner, lambda k: permutation_units(n, k, rng, antithetic=True), max_units,
            2.0 * (n - 1),
        )
        u = masks.shape[0]
        yp = cheap(masks.reshape(-1, n)).reshape(u, 2 * (n + 1))
        dv, dp = order_marginals(masks, yv), order_marginals(masks, yp)
        cross_fit = auto if self.cross_fit is None else bool(self.cross_fit)
        if not auto:
            c_unit = np.full(u, float(self.c))
            c_folds = None
        elif cross_fit:
            # K-fold (leave-one-out up to 10 units): each unit's c comes from the others
            folds = np.arange(u) % min(u, CROSS_FIT_FOLDS)
            c_fold = np.array([
                optimal_coefficient(dv[folds != k], dp[folds != k], self.shrinkage)
                for k in range(folds.max() + 1)
            ])
            c_unit = c_fold[folds]
            c_folds = c_fold
        else:
            c_unit = np.full(u, optimal_coefficient(dv, dp, self.shrinkage))
            c_folds = None
        e = dv + c_unit[:, None] * (phi_p[None, :] - dp)
        values = e.mean(axis=0)
        se = e.std(axis=0, ddof=1) / np.sqrt(u) if u >= 2 else np.full(n, np.nan)
        c_mean = float(c_unit.mean())
        corr, ratio = _pooled_stats(dv, dp, dv - c_unit[:, None] * dp)
        out = {"values": values, "stderr_residual": se, "c": c_mean, "n_units": int(u),
               "n_permutations": int(2 * u), "cross_fit": cross_fit,
               "correlation": corr, "variance_ratio": ratio}
        if c_folds is not None:
            out["c_folds"] = [float(x) for x in c_folds]
        return out

    def _kernel(self, game, cheap, planner, rng, phi_p, auto, max_units):
        n = game.n_players
        ends = anchor_masks(n)
        v0, v1 = game(ends)
        p0, p1 = cheap(ends)
        Z, yv = draw_units(planner, lambda k: kernel_units(n, k, rng), max_units, 2.0)
        u = Z.shape[0]
        yp = cheap(Z.reshape(-1, n)).reshape(u, 2)
        Zf = Z.reshape(-1, n).astype(float)
        Zu = Z.astype(float)
        A = Zf.T @ Zf / len(Zf)
        yv, yp = yv - v0, yp - p0

        def solve(y, total):
            phi, Hinv = constrained_solve(A, Zf.T @ y.reshape(-1) / len(Zf), total)
            # per-unit score: the phi estimate moves by M (mean of g_u - its expectation)
            g = (Zu * (y - Zu @ phi)[:, :, None]).mean(axis=1)
            return phi, Hinv, g

        phi_v, Hinv, g_v = solve(yv, v1 - v0)
        phi_q, _, g_p = solve(yp, p1 - p0)
        M = Hinv @ (np.eye(n) - 1.0 / n)
        psi_v, psi_p = g_v @ M.T, g_p @ M.T
        # c from the raw scores g_u, not M g_u: with few pairs M (estimated from the same
        # pairs) is ill-conditioned, and the M-weighted coefficient exploded (at 16
        # evaluations, n = 10, one seed in 40 returned values off by 1e11)
        c = optimal_coefficient(g_v, g_p, self.shrinkage) if auto else float(self.c)
        values = phi_v + c * (phi_p - phi_q)
        g_r = g_v - c * g_p
        se = sandwich_stderr(M, g_r)
        corr, ratio = _pooled_stats(psi_v, psi_p, psi_v - c * psi_p)
        return {"values": values, "stderr_residual": se, "c": float(c), "n_units": int(u),
                "n_draws": int(2 * u), "cross_fit": False,
                "correlation": corr, "variance_ratio": ratio}
