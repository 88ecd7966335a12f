"""Values as a least-squares regression on coalitions: KernelSHAP, Leverage SHAP, datamodels.

The Shapley values solve

    min_phi  sum_S w(S) (v(S) - v(empty) - sum_{i in S} phi_i)^2
    s.t.     sum_i phi_i = v(N) - v(empty),

over the coalitions of size 1..n-1, with the Shapley kernel
w(S) = (n - 1) / (C(n, |S|) |S| (n - |S|)) (Charnes et al. 1988; Lundberg & Lee 2017).
Both estimators evaluate the empty and the full coalition (counted in the budget),
solve a sampled version of this problem under the exact efficiency constraint (by
projecting onto sum-zero vectors, :func:`surrogateshap.sampling.constrained_solve`),
and so return values that sum to v(N) - v(empty) to rounding.

- "kernelshap": KernelSHAP in the form of Covert & Lee (2021), "Improving KernelSHAP:
  practical Shapley value estimation via linear regression". Coalitions are drawn
  with replacement from the kernel's own distribution (size k with probability
  proportional to (n-1) / (k (n-k)), uniform within the size), by default in pairs
  (a coalition and its complement); A = E[z z^T] and b = E[z (v(z) - v(empty))] are
  estimated by sample means and phi = A^-1 (b - 1 (1^T A^-1 b - v(N) + v(empty)) /
  (1^T A^-1 1)). ``unbiased=True`` uses the exact A instead (their unbiased
  KernelSHAP). Repeated draws are free under the memoised budget, so drawing goes on
  until the first draw that would need an evaluation past the budget. The standard
  error is the sandwich (delta-method) estimate over the independent draws.
- "leverageshap": Leverage SHAP (Musco & Witter 2025, "Provably accurate Shapley value
  estimation via leverage score sampling"). The rows of the regression have leverage
  scores proportional to 1 / C(n, |S|): every coalition size carries the same total
  leverage. Coalitions are sampled in complementary pairs, without replacement, with
  an equal number per size (sizes with fewer coalitions than their share are taken
  whole, their surplus spread over the others), and each row is reweighted by
  w(S) / P(S sampled) so the sampled problem is an unbiased estimate of the full
  kernel-weighted one. This is the paper's sampling distribution with a fixed count
  per size instead of independent coin flips; with a budget of 2**n it is exact.
"""

from __future__ import annotations

import itertools
from math import comb

import numpy as np

from surrogateshap.estimator import Estimator
from surrogateshap.registry import register
from surrogateshap.sampling import (
    BudgetPlanner,
    anchor_masks,
    constrained_solve,
    draw_units,
    kernel_size_distribution,
    kernel_units,
    mask_key,
    random_subsets,
    sample_distinct,
    sandwich_stderr,
)

__all__ = ["KernelSHAP", "LeverageSHAP", "Datamodels"]


def _exact_kernel_A(n: int) -> np.ndarray:
    """E[z z^T] under the Shapley kernel distribution (diagonal 1/2 by symmetry)."""
    k, p = np.arange(1, n), kernel_size_distribution(n)
    off = float(np.sum(p * k * (k - 1))) / (n * (n - 1)) if n > 1 else 0.0
    A = np.full((n, n), off)
    np.fill_diagonal(A, 0.5)
    return A


def _check_flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def _empty_full(game) -> tuple[float, float]:
    n = game.n_players
    v = game(anchor_masks(n))
    return float(v[0]), float(v[1])


@register("kernelshap")
class KernelSHAP(Estimator):
    """KernelSHAP with the constrained closed form of Covert & Lee (2021).

    ``paired``: draw each coalition together with its complement (antithetic
    sampling, on by default). ``unbiased``: use the exact E[z z^T] rather than its
    sample estimate. ``max_draws``: cap on draws (default 10 * budget), reached only
    when most coalitions are already evaluated and draws have become free repeats.
    """

    def __init__(self, paired: bool = True, unbiased: bool = False, max_draws: int | None = None):
        self.paired = paired
        self.unbiased = unbiased
        self.max_draws = max_draws

    def min_budget(self, n_players: int) -> int:
        # empty, full and one coalition pair
        return 2 if n_players == 1 else 4

    def validate(self):
        _check_flag("paired", self.paired)
        _check_flag("unbiased", self.unbiased)

    def _estimate(self, game, budget, rng: np.random.Generator):
        n = game.n_players
        v_empty, v_full = _empty_full(game)
        total = v_full - v_empty
        if n == 1:
            return {"values": np.array([total]), "stderr": np.zeros(1)}
        per = 2 if self.paired else 1
        max_units = (self.max_draws if self.max_draws is not None else 10 * budget) // per
        max_units = max(int(max_units), 1)
        # a unit costs at most 2 evaluations: draw at least 256 a batch
        units, values = draw_units(
            BudgetPlanner(game),
            lambda k: kernel_units(n, k, rng, self.paired),
            max_units,
            per,
            min_batch=256,
        )
        Z = units.astype(float)  # (U, per, n)
        y = values - v_empty  # (U, per)
        U = Z.shape[0]
        Zf, yf = Z.reshape(-1, n), y.reshape(-1)
        A = _exact_kernel_A(n) if self.unbiased else Zf.T @ Zf / len(Zf)
        b = Zf.T @ yf / len(Zf)
        phi, Hinv = constrained_solve(A, b, total)
        # sandwich standard error: phi moves by Hinv P (mean of g_u - its expectation)
        # where g_u = mean over the unit's coalitions of z (y - z.phi) (sampled A) or
        # z y (exact A); units are independent draws
        resid = y if self.unbiased else y - Z @ phi
        g = (Z * resid[:, :, None]).mean(axis=1)  # (U, n)
        stderr = sandwich_stderr(Hinv @ (np.eye(n) - 1.0 / n), g)
        return {
            "values": phi,
            "stderr": stderr,
            "counts": U,
            "extra": {"n_draws": U * per, "n_distinct": game.n_evaluations},
        }


def _distinct_subsets(rng: np.random.Generator, n: int, k: int, count: int) -> np.ndarray:
    """``count`` distinct k-subsets of n items, uniformly without replacement."""
    total = comb(n, k)
    if count >= total or total <= 4 * count:
        # dense: enumerate and choose (total <= 4 * count keeps this small)
        allk = np.zeros((total, n), dtype=bool)
        for r, c in enumerate(itertools.combinations(range(n), k)):
            allk[r, list(c)] = True
        if count >= total:
            return allk
        return allk[np.sort(rng.choice(total, size=count, replace=False))]
    # sparse: rejection of repeats, acceptance >= 3/4
    out: list[np.ndarray] = []
    seen: set[bytes] = set()
    while len(out) < count:
        batch = random_subsets(n, np.full(2 * (count - len(out)), k), rng)
        for row in batch:
            key = mask_key(row)
            if key not in seen:
                seen.add(key)
                out.append(row)
                if len(out) == count:
                    break
    return np.asarray(out, dtype=bool).reshape(-1, n)


def _water_fill(caps: list[int], shares: np.ndarray, total: int) -> np.ndarray:
    """Integer counts proportional to ``shares``, capped at ``caps``, summing to at
    most ``total``; capped strata's surplus is spread over the others."""
    capf = np.array([min(c, 2**62) for c in caps], dtype=float)
    alloc = np.zeros(len(caps))
    free = np.ones(len(caps), dtype=bool)
    left = float(total)
    while free.any():
        level = left / shares[free].sum()
        full = free & (shares * level >= capf)
        if not full.any():
            alloc[free] = shares[free] * level
            break
        alloc[full] = capf[full]
        left -= capf[full].sum()
        free &= ~full
    counts = np.minimum(np.floor(alloc + 1e-9), capf).astype(np.int64)
    spare = int(total - counts.sum())
    if spare > 0:
        # hand the rounding remainder to the largest fractional parts with room
        order = np.argsort(-(alloc - counts), kind="stable")
        for s in order:
            if spare == 0:
                break
            if counts[s] < capf[s]:
                counts[s] += 1
                spare -= 1
    return counts


@register("leverageshap")
class LeverageSHAP(Estimator):
    """Leverage SHAP (Musco & Witter 2025): leverage-score (equal per size) paired
    sampling without replacement, kernel-reweighted constrained least squares."""

    def min_budget(self, n_players: int) -> int:
        return 2 if n_players == 1 else 4

    def _estimate(self, game, budget, rng: np.random.Generator):
        n = game.n_players
        v_empty, v_full = _empty_full(game)
        total = v_full - v_empty
        if n == 1:
            return {"values": np.array([total])}
        # strata of complementary pairs: {size k, size n-k} for k < n/2, each pair
        # one k-subset; for even n the size-n/2 pairs, each one n/2-subset holding
        # player 0. Leverage is equal per size, so a k < n/2 stratum (two sizes) gets
        # one pair per unit of level and the middle stratum (one size) half of one.
        strata = [(k, comb(n, k), 1.0) for k in range(1, (n + 1) // 2)]
        if n % 2 == 0:
            strata.append((n // 2, comb(n - 1, n // 2 - 1), 0.5))
        n_pairs = int(game.remaining) // 2
        counts = _water_fill([c for _, c, _ in strata], np.array([s for *_, s in strata]), n_pairs)
        rows, weights = [], []
        for (k, cap, share), m in zip(strata, counts):
            if m == 0:
                continue
            if share == 1.0:
                z = _distinct_subsets(rng, n, k, int(m))
                cover = 1.0  # pairs <-> k-subsets
            else:
                z = np.zeros((m, n), dtype=bool)
                z[:, 0] = True
                z[:, 1:] = _distinct_subsets(rng, n - 1, k - 1, int(m))
                cover = 0.5  # pairs <-> half of the n/2-subsets
            # kernel weight / inclusion probability, with C(n, k) cancelled:
            # w = (n-1) / (C(n,k) k (n-k)), P(in sample) = m / cap = m / (cover C(n,k))
            w = (n - 1) / (k * (n - k)) * cover / int(m)
            rows.append(np.stack([z, ~z], axis=1).reshape(-1, n))  # pairs adjacent
            weights.append(np.full(2 * int(m), w))
        if rows:
            Z = np.vstack(rows)
            omega = np.concatenate(weights)
            y = game(Z) - v_empty
            Zf = Z.astype(float)
            A = Zf.T @ (omega[:, None] * Zf)
            b = Zf.T @ (omega * y)
        else:
            A, b = np.zeros((n, n)), np.zeros(n)
        phi, _ = constrained_solve(A, b, total)
        return {
            "values": phi,
            "extra": {
                "pairs_per_stratum": {int(k): int(m) for (k, _, _), m in zip(strata, counts)}
            },
        }


# --------------------------------------------------------------------------- datamodels

# Linear datamodels (Ilyas et al. 2022, "Datamodels: predicting predictions from
# training data").
#
# Fit a linear model from coalition masks to utilities over random training subsets and
# use its coefficients as contributor values. Each player joins a subset independently
# with probability ``alpha`` (the paper's subset fraction). The paper fixes the subset
# size at alpha * n; with a constant size the intercept and the common shift of all
# coefficients cannot be told apart, so independent inclusion is used here: on an
# additive game the coefficients are then exactly the weights, and at alpha = 1/2 the
# least-squares coefficients over all coalitions are the Banzhaf values (Hammer &
# Holzman 1992). They are not Shapley values. The fit is scikit-learn's Ridge
# (``ridge_alpha``) with an intercept; the paper's l1 penalty is not used.


@register("datamodels")
class Datamodels(Estimator):
    """Ridge regression of utilities on random-subset masks; values = coefficients.

    ``alpha``: probability that a player is in a sampled subset (0 < alpha < 1).
    ``ridge_alpha``: Ridge regularisation strength. ``max_draws``: cap on draws
    (default 50 * budget), reached only when the budget approaches 2**n.
    """

    index = "datamodel"

    def __init__(self, alpha: float = 0.5, ridge_alpha: float = 1.0, max_draws: int | None = None):
        self.alpha = alpha
        self.ridge_alpha = ridge_alpha
        self.max_draws = max_draws

    def min_budget(self, n_players: int) -> int:
        return 2

    def validate(self):
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha (subset fraction) must be in (0, 1), got {self.alpha!r}")
        if not self.ridge_alpha >= 0.0:
            raise ValueError(f"ridge_alpha must be >= 0, got {self.ridge_alpha!r}")

    def _estimate(self, game, budget, rng: np.random.Generator):
        from sklearn.linear_model import Ridge

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
