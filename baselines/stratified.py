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
    BudgetPlanner,
    anchor_masks,
    border_masks,
    border_sizes,
    distinct_subsets,
    draw_units,
    mask_key,
    order_marginals,
    permutation_units,
    water_fill,
)

__all__ = ["StratifiedReference", "StratifiedSVARM", "stratified_reference", "svarm_size_weights"]

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


def _fill_above(caps, shares, total: int, floors) -> np.ndarray:
    """:func:`~surrogateshap.sampling.water_fill` with a floor per stratum (what an earlier
    step already holds): strata the fill would leave below their floor keep the floor,
    the rest share what is left."""
    caps, shares, floors = np.asarray(caps), np.asarray(shares, dtype=float), np.asarray(floors, dtype=np.int64)
    fixed = np.zeros(len(caps), dtype=bool)
    while True:
        counts = floors.copy()
        free = ~fixed
        room = max(int(total) - int(floors[fixed].sum()), 0)
        counts[free] = water_fill(caps[free], shares[free], room) if free.any() else []
        low = free & (counts < floors)
        if not low.any():
            return counts
        fixed |= low


def _more_subsets(n: int, k: int, count: int, held: set, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct k-subsets of n players outside ``held`` (their mask keys),
    uniformly without replacement; :func:`~surrogateshap.sampling.distinct_subsets`
    (the same draws) when nothing is held."""
    return distinct_subsets(n, k, count, rng, exclude=held)


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
        return self._refine(None, game, budget, rng)[1]

    def _refine(self, state, game, budget, rng: np.random.Generator):
        """Plan for ``budget`` in all (border sizes and per-size counts as one run at that
        budget would), keeping what ``state`` holds: a size's count never falls below
        what earlier steps drew (the water fill goes above those floors), enumerated
        sizes are completed (their held coalitions are free), and the new draws of a
        size exclude its held ones. So a refined estimate is the estimator applied to a
        sample without replacement per size, like a one-shot run's, but its counts are
        the one-shot plan's only where no floor binds, and its draws are others: it
        equals a one-shot run in distribution, not value for value (from the first step,
        which is a one-shot run)."""
        if not isinstance(self.efficient, (bool, np.bool_)):
            raise TypeError(f"efficient must be True or False, got {self.efficient!r}")
        n = game.n_players
        weights = svarm_size_weights(max(n, 2), self.size_weights)
        if state is None:
            v_empty, v_full = (float(x) for x in game(anchor_masks(n)))
            state = {"total": v_full - v_empty, "Z": np.zeros((0, n), dtype=bool), "y": np.zeros(0),
                     "enum": ()}
        total = state["total"]
        if n == 1:
            return state, {"values": np.array([total]), "stderr": np.zeros(1), "exact": True}
        Z0, y0 = state["Z"], state["y"]
        k0 = Z0.sum(axis=1)
        held = {s: int((k0 == s).sum()) for s in range(1, n)}
        enum, _ = border_sizes(n, budget, weights, reserve=1)
        enum = tuple(sorted(set(enum) | set(state["enum"])))
        rest = [s for s in range(1, n) if s not in enum]
        if 2 + sum(comb(n, s) for s in enum) + sum(held[s] for s in rest) > budget:
            enum = state["enum"]  # what is held leaves no room to complete more sizes now
            rest = [s for s in range(1, n) if s not in enum]
        room = budget - 2 - sum(comb(n, s) for s in enum)  # for the sampled sizes, held included
        counts = _fill_above([comb(n, s) for s in rest], weights[np.array(rest, int) - 1], room,
                             [held[s] for s in rest]) if rest else np.zeros(0, dtype=np.int64)
        # one game call for everything new: the enumerated sizes, then each size's draws
        new_enum = [s for s in enum if s not in state["enum"]]
        keep = ~np.isin(k0, new_enum)  # a newly enumerated size's held rows are re-listed whole
        blocks = [Z0[keep]]
        if new_enum:
            blocks.append(border_masks(n, new_enum))
        for s, m in zip(rest, counts):
            if m > held[s]:
                seen = {mask_key(z) for z in Z0[k0 == s]}
                blocks.append(_more_subsets(n, s, int(m) - held[s], seen, rng))
        Z = np.concatenate(blocks)
        fresh = Z[int(keep.sum()):]
        y = np.concatenate([y0[keep], game(fresh) if len(fresh) else np.zeros(0)])
        state.update(Z=Z, y=y, enum=enum)
        return state, self._values(n, total, Z, y, enum, dict(zip(rest, (int(c) for c in counts))))

    def _values(self, n, total, Z, y, enum, n_sampled):
        """The SVARM estimate (and stderr) of the coalitions Z with utilities y; ``enum``
        the sizes held whole, ``n_sampled`` the others' counts."""
        rest = list(n_sampled)
        counts = list(n_sampled.values())
        k = Z.sum(axis=1)
        d = np.zeros(n)
        var = np.zeros(n)
        unknown = np.zeros(n, dtype=bool)
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


# --------------------------------------------------------------------------- the reference


def _border_positions(n: int, border: int) -> list[int]:
    """The positions (0-based: how many players precede) whose expected marginal the
    border sizes give exactly: the first and the last ``border`` ones."""
    return sorted(set(range(min(border, n))) | set(range(max(n - border, 0), n)))


class StratifiedReference(Estimator):
    """A reference for games too large to enumerate: exact border strata, antithetic
    permutations in the middle.

    phi_i = (1/n) sum_{p=0}^{n-1} E[v(S + i) - v(S)] over S uniform among the p-subsets
    of the others (p: i's position in a random order). For the first and last
    ``border`` positions that expectation is a difference of two means over whole
    sizes (the size-(p+1) coalitions holding i, the size-p ones without it), so
    evaluating every coalition of sizes 1..border and n-border..n-1 gives them
    exactly. These are the marginals that dominate games like the proxy game (a
    player's first steps are worth 100x its value), and the variance they would add.
    The mean marginal over the n - 2 border middle positions is estimated from
    antithetic order pairs: in a uniform order a player stands at a uniform position,
    so the pairs that place it in the middle (an order and its reverse both do, or
    neither) give it unbiased samples of that mean. Its standard error is the pairs'
    spread; a player no pair placed in the middle gets 0 there and a NaN stderr.
    The values are not projected onto efficiency (the estimate stays unbiased);
    ``extra["efficiency_gap"]`` says how far off the sum is.

    ``border``: positions computed exactly at each end (cost 2 sum_{s<=border} C(n, s));
    ``permutations``: at most that many orders (pairs count two; None: as many as
    the budget pays for, each costing the n - 2 border - 1 middle prefixes).
    """

    name = "stratified-reference"

    def __init__(self, border: int = 2, permutations: int | None = None):
        self.border = border
        self.permutations = permutations

    def validate(self):
        b = self.border
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise ValueError(f"border must be an integer >= 1; got {b!r}")
        p = self.permutations
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 2):
            raise ValueError(f"permutations must be an integer >= 2 (one antithetic pair) or None; got {p!r}")

    def _sizes(self, n: int) -> list[int]:
        return [s for s in range(1, n) if s <= self.border or s >= n - self.border]

    def min_budget(self, n_players: int) -> int:
        n = n_players
        middle = n - len(_border_positions(n, self.border))
        need = 2 + sum(comb(n, s) for s in self._sizes(n)) + (2 * (middle - 1) if middle else 0)
        return min(need, 2**n) if n <= 62 else need

    def budget_for(self, n_players: int, permutations: int) -> int:
        """The budget that pays for the border and ``permutations`` orders' middle
        prefixes (an upper bound: repeated prefixes are free)."""
        n = n_players
        middle = n - len(_border_positions(n, self.border))
        need = 2 + sum(comb(n, s) for s in self._sizes(n)) + permutations * max(middle - 1, 0)
        return min(need, 2**n) if n <= 62 else need

    def _estimate(self, game, budget, rng: np.random.Generator):
        n = game.n_players
        Z = np.concatenate([anchor_masks(n), border_masks(n, self._sizes(n))])
        y = game(Z)
        k = Z.sum(axis=1)
        exact_part = np.zeros(n)
        positions = _border_positions(n, self.border)
        for p in positions:  # mean of v over size p+1 holding i, minus over size p without i
            _, m_in, _ = _group_stats(Z[k == p + 1], y[k == p + 1])
            _, m_out, _ = _group_stats(~Z[k == p], y[k == p])
            exact_part += m_in - m_out
        middle = n - len(positions)
        total = float(y[k == n][0] - y[k == 0][0])
        if middle == 0:  # every size was evaluated: exact
            return {"values": exact_part / n, "stderr": np.zeros(n), "exact": True,
                    "extra": {"border_sizes": self._sizes(n), "n_permutations": 0}}
        max_units = (self.permutations if self.permutations is not None else 10 * budget) // 2
        masks, v = draw_units(BudgetPlanner(game), lambda m: permutation_units(n, m, rng, True),
                              max(int(max_units), 1), 2 * (middle - 1))
        unit = order_marginals(masks, v)  # (U, n): each pair's mean marginal
        pos = n - masks[:, : n + 1].sum(axis=1)  # (U, n): positions in the pair's first order
        inside = (pos >= self.border) & (pos < n - self.border)
        cnt = inside.sum(axis=0)
        s1 = np.where(inside, unit, 0.0).sum(axis=0)
        s2 = np.where(inside, unit**2, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(cnt > 0, s1 / np.maximum(cnt, 1), 0.0)
            var = np.where(cnt > 1, (s2 - cnt * mean**2) / np.maximum(cnt - 1, 1), np.nan)
        values = (exact_part + middle * mean) / n
        stderr = middle * np.sqrt(np.clip(var, 0.0, None) / np.maximum(cnt, 1)) / n
        return {
            "values": values,
            "stderr": stderr,
            "counts": cnt,
            "extra": {"border_sizes": self._sizes(n), "n_permutations": 2 * len(masks),
                      "efficiency_gap": total - float(values.sum())},
        }


def stratified_reference(game, permutations: int = 300, border: int = 2, seed: int | None = 0):
    """Reference Shapley values of ``game`` (an :class:`~surrogateshap.attribution.Attribution`
    with per-player stderr): :class:`StratifiedReference` with ``border`` exact positions at
    each end and ``permutations`` antithetic orders for the middle; exact where that
    budget reaches 2**n."""
    est = StratifiedReference(border=border, permutations=permutations)
    est.validate()
    return est.estimate(game, est.budget_for(game.n_players, permutations), seed=seed)
