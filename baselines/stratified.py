"""Stratified SVARM: Shapley values without marginal contributions, stratified by size.

Kolpaczki, Bengs, Muschalik & Hüllermeier (AAAI 2024), "Approximating the Shapley
value without marginal contributions". Write the Shapley value as

    phi_i = (v(N) - v(empty)) / n + (1/n) sum_{s=1}^{n-1} d_{s,i},
    d_{s,i} = E[v(A) | |A| = s, i in A] - E[v(A) | |A| = s, i not in A],

with A uniform among the size-s coalitions. One evaluated coalition of size s
updates the estimate of every player at once (the members' "in" mean, the others'
"out" mean), which is what makes SVARM efficient in samples: no marginal pairs.

Here the strata are the sizes 1..n-1, and the budget (distinct evaluations, both
anchors included) is planned, not drawn:

- the border trick (:func:`surrogateshap.sampling.border_sizes` with this method's
  size weights): complement pairs of sizes {k, n-k}, from the outside in, whose
  coalitions the plan would draw in full are enumerated, so their d_s are exact
  (the paper's exact warm-up of sizes 1 and n-1 is the first step of this);
- the other sizes get counts proportional to ``size_weights`` capped at C(n, s)
  (:func:`surrogateshap.sampling.water_fill`), drawn without replacement within the
  size (:func:`surrogateshap.sampling.distinct_subsets`).

``size_weights="sqrt"`` (default) is the allocation that minimises the variance
sum_s sigma_s^2 / (m_s s (n-s)) of the estimate when every size has the same spread
sigma_s: m_s proportional to 1 / sqrt(s (n-s)). ``"kernel"`` uses the Shapley
kernel's 1 / (s (n-s)), ``"uniform"`` equal counts.

``efficient=True`` (default) projects the estimate onto sum(phi) = v(N) - v(empty):
the exact d_s vector sums to zero over the players at every size, so the projection
removes part of the error and never adds any (in L2); ``efficient=False`` returns
the paper's plain estimator. A player that appears only in or only out of a size's
sample gets d_{s,i} = 0 there (no information), and a NaN standard error.

The standard error combines, over the sampled sizes, the two group means' variances
with the finite-population correction of sampling without replacement (enumerated
sizes contribute nothing, so it is 0 when every size is enumerated, as for a budget
of 2**n, where the values are exact).
"""

from __future__ import annotations

from math import comb

import numpy as np

from surrogateshap.estimator import Estimator
from surrogateshap.registry import register
from surrogateshap.sampling import (
    anchor_masks,
    border_masks,
    border_sizes,
    distinct_subsets,
    water_fill,
)

__all__ = ["StratifiedSVARM", "svarm_size_weights"]

SIZE_WEIGHTS = ("sqrt", "kernel", "uniform")


def svarm_size_weights(n: int, rule: str = "sqrt") -> np.ndarray:
    """Relative sample counts for sizes 1..n-1 under ``rule`` (see the module doc)."""
    if rule not in SIZE_WEIGHTS:
        raise ValueError(f"size_weights must be one of {SIZE_WEIGHTS}; got {rule!r}")
    s = np.arange(1, n, dtype=float)
    if rule == "sqrt":
        return 1.0 / np.sqrt(s * (n - s))
    if rule == "kernel":
        return 1.0 / (s * (n - s))
    return np.ones(n - 1)


def _group_stats(Z: np.ndarray, y: np.ndarray):
    """Per player: count, mean and sample variance of y over the rows holding it."""
    Zf = Z.astype(float)
    cnt = Zf.sum(axis=0)
    s1 = Zf.T @ y
    s2 = Zf.T @ (y * y)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, s1 / np.maximum(cnt, 1), 0.0)
        var = np.where(cnt > 1, (s2 - cnt * mean**2) / np.maximum(cnt - 1, 1), np.nan)
    return cnt, mean, np.clip(var, 0.0, None)


@register("stratified-svarm")
class StratifiedSVARM(Estimator):
    """Stratified SVARM (Kolpaczki et al. 2024) with a planned border trick.

    ``size_weights``: "sqrt" (default), "kernel" or "uniform" sample counts per size;
    ``efficient``: project onto the efficiency constraint (default True).
    """

    def __init__(self, size_weights: str = "sqrt", efficient: bool = True):
        self.size_weights = size_weights
        self.efficient = efficient

    def min_budget(self, n_players: int) -> int:
        return min(2, 2**n_players)

    def _estimate(self, game, budget, rng: np.random.Generator):
        if not isinstance(self.efficient, (bool, np.bool_)):
            raise TypeError(f"efficient must be True or False, got {self.efficient!r}")
        n = game.n_players
        weights = svarm_size_weights(max(n, 2), self.size_weights)
        v_empty, v_full = (float(x) for x in game(anchor_masks(n)))
        total = v_full - v_empty
        if n == 1:
            return {"values": np.array([total]), "stderr": np.zeros(1), "exact": True}
        enum, left = border_sizes(n, budget, weights, reserve=1)
        rest = [s for s in range(1, n) if s not in enum]
        counts = water_fill([comb(n, s) for s in rest], weights[np.array(rest, int) - 1], left) \
            if rest else np.zeros(0, dtype=np.int64)
        # one game call for everything: the enumerated sizes, then each sample
        blocks = [border_masks(n, enum)] if enum else []
        sizes = list(enum)
        for s, m in zip(rest, counts):
            if m > 0:
                blocks.append(distinct_subsets(n, s, int(m), rng))
                sizes.append(s)
        Z = np.concatenate(blocks) if blocks else np.zeros((0, n), dtype=bool)
        y = game(Z) if len(Z) else np.zeros(0)
        k = Z.sum(axis=1)
        d = np.zeros(n)
        var = np.zeros(n)
        unknown = np.zeros(n, dtype=bool)
        n_sampled = dict(zip(rest, (int(c) for c in counts)))
        for s in range(1, n):
            rows = k == s
            if not rows.any():
                unknown[:] = True  # a size with no sample: no estimate of d_s
                continue
            Zs, ys = Z[rows], y[rows]
            c_in, m_in, v_in = _group_stats(Zs, ys)
            c_out, m_out, v_out = _group_stats(~Zs, ys)
            # a group of one has no variance of its own: use the size's pooled one
            pooled = float(np.var(ys, ddof=1)) if len(ys) > 1 else np.nan
            v_in = np.where(np.isnan(v_in), pooled, v_in)
            v_out = np.where(np.isnan(v_out), pooled, v_out)
            seen = (c_in > 0) & (c_out > 0)
            d += np.where(seen, m_in - m_out, 0.0)
            unknown |= ~seen
            if s in enum or n_sampled.get(s, 0) >= comb(n, s):
                continue  # enumerated: exact, no variance
            # finite-population corrected variances of the two group means
            N_in, N_out = comb(n - 1, s - 1), comb(n - 1, s)
            with np.errstate(invalid="ignore", divide="ignore"):
                var += (v_in / c_in * (1 - c_in / N_in) + v_out / c_out * (1 - c_out / N_out))
        values = total / n + d / n
        if self.efficient:
            values += (total - values.sum()) / n
        stderr = np.sqrt(var) / n
        stderr[unknown] = np.nan
        exact = not rest or all(int(c) >= comb(n, s) for s, c in zip(rest, counts))
        if exact:
            stderr = np.zeros(n)
        return {
            "values": values,
            "stderr": stderr,
            "exact": bool(exact),
            "extra": {
                "border_sizes": list(enum),
                "samples_per_size": {int(s): int(c) for s, c in zip(rest, counts)},
            },
        }
