"""Samplers shared by the estimators, the library's and the baselines' alike.

Every Monte Carlo estimator here draws from one of two distributions, the Shapley
kernel over coalitions or uniform orders of the players, and spends a budget of
distinct game evaluations. One copy of each sampler keeps the estimators comparable
(the same distribution, and the same rng calls at a given seed) and lets the baselines
import them from the library rather than the library from the baselines.

- the Shapley kernel: :func:`kernel_size_distribution`, :func:`random_subsets`,
  :func:`sample_kernel_coalitions`, :func:`kernel_units`, and
  :func:`constrained_solve`, which turns kernel samples into efficient values;
- permutations: :func:`random_orders`, :func:`prefix_masks`,
  :func:`permutation_units`, :func:`order_marginals`;
- budgets: :class:`BudgetPlanner`, :func:`draw_units`, :func:`sample_distinct`;
- strata by coalition size: :func:`border_sizes` and :func:`border_masks` (the border
  trick: sizes whose coalitions would all be drawn anyway are enumerated instead),
  :func:`water_fill` (counts per stratum under caps) and :func:`distinct_subsets`.

Sampling units are arrays (k, rows, n): the coalitions one independent draw brings
(a coalition and its complement, an order's n + 1 prefixes, an order and its reverse),
so the budget can accept or refuse a draw whole and standard errors can treat it as
one observation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from math import comb

import numpy as np

from surrogateshap.game import BudgetedGame

__all__ = [
    "mask_key",
    "anchor_masks",
    "kernel_size_distribution",
    "random_subsets",
    "sample_kernel_coalitions",
    "kernel_units",
    "constrained_solve",
    "random_orders",
    "prefix_masks",
    "permutation_units",
    "order_marginals",
    "BudgetPlanner",
    "draw_units",
    "sample_distinct",
    "sandwich_stderr",
    "water_fill",
    "distinct_subsets",
    "border_sizes",
    "border_masks",
]


def mask_key(mask: np.ndarray) -> bytes:
    """A hashable key for one coalition, for sets of seen coalitions (compact and far
    cheaper than :func:`surrogateshap.game.coalition_key`, which is for storage)."""
    return np.packbits(np.asarray(mask, dtype=bool)).tobytes()


def anchor_masks(n: int) -> np.ndarray:
    """The empty and the full coalition, in that order: the two every efficient
    estimator evaluates, since the values must sum to v(N) - v(empty)."""
    return np.stack([np.zeros(n, dtype=bool), np.ones(n, dtype=bool)])


def _interleave(drawn: np.ndarray, mirrored: np.ndarray, m: int) -> np.ndarray:
    """Rows 0, 2, 4, ... from ``drawn``, rows 1, 3, 5, ... from ``mirrored``, first m."""
    out = np.empty((2 * len(drawn), *drawn.shape[1:]), dtype=drawn.dtype)
    out[0::2] = drawn
    out[1::2] = mirrored
    return out[:m]


# --------------------------------------------------------------------------- Shapley kernel


def kernel_size_distribution(n: int) -> np.ndarray:
    """p(k) for k = 1..n-1, proportional to (n-1) / (k (n-k)): the Shapley kernel's sizes.

    The kernel weight of one size-k coalition is (n-1) / (C(n,k) k (n-k)), so a size
    drawn from p followed by a uniform subset of that size draws from the kernel.
    """
    if n < 2:
        raise ValueError(f"the Shapley kernel needs n >= 2 players; got n={n}")
    k = np.arange(1, n)
    p = 1.0 / (k * (n - k))  # the constant n - 1 cancels in the normalisation
    return p / p.sum()


def random_subsets(n: int, sizes, rng: np.random.Generator) -> np.ndarray:
    """One uniformly random subset of n players per entry of ``sizes``: (len(sizes), n).

    Each subset is the players holding the ``size`` smallest of n uniform keys, so a
    whole batch of sizes costs one rng call.
    """
    sizes = np.asarray(sizes)
    keys = rng.random((len(sizes), n))
    return keys.argsort(axis=1).argsort(axis=1) < sizes[:, None]


def sample_kernel_coalitions(
    n: int, m: int, rng: np.random.Generator, paired: bool = False, sizes=None
) -> np.ndarray:
    """Draw m coalitions, boolean (m, n): size k in 1..n-1 with p(k) ∝ (n-1)/(k(n-k)),
    then uniform among the size-k subsets.

    ``sizes`` restricts the draw to those sizes (the kernel renormalised over them),
    as the border trick does once it has enumerated the others; it must be closed
    under k -> n - k when ``paired``.

    With ``paired=True`` every drawn coalition is followed by its complement (rows
    0, 2, 4, ... are drawn, rows 1, 3, 5, ... are their complements; an odd m ends on
    a drawn row). Complements have the same size distribution, since p(k) = p(n-k),
    and pairing cancels much of the variance a regression on the samples sees.
    """
    if m < 0:
        raise ValueError(f"m must be >= 0; got {m}")
    p = kernel_size_distribution(n)
    support = np.arange(1, n)
    if sizes is not None:
        support = np.asarray(sorted(set(int(s) for s in sizes)), dtype=np.int64)
        if support.size == 0 or support.min() < 1 or support.max() > n - 1:
            raise ValueError(f"sizes must be a non-empty subset of 1..{n - 1}; got {sizes!r}")
        p = p[support - 1] / p[support - 1].sum()
    n_draw = (m + 1) // 2 if paired else m
    masks = random_subsets(n, rng.choice(support, size=n_draw, p=p), rng)
    return _interleave(masks, ~masks, m) if paired else masks


def kernel_units(
    n: int, k: int, rng: np.random.Generator, paired: bool = True, sizes=None
) -> np.ndarray:
    """k sampling units from the Shapley kernel: (k, 2, n) complement pairs, or
    (k, 1, n) single coalitions with ``paired=False``; ``sizes`` as in
    :func:`sample_kernel_coalitions`."""
    per = 2 if paired else 1
    return sample_kernel_coalitions(n, per * k, rng, paired, sizes).reshape(k, per, n)


def constrained_solve(A: np.ndarray, b: np.ndarray, total: float):
    """argmin phi^T A phi - 2 b^T phi subject to sum(phi) = total.

    KernelSHAP in the form of Covert & Lee (2021): with A = E[z z^T] and
    b = E[z (v(z) - v(empty))] estimated from kernel samples, the minimiser is the
    Shapley estimate, and the constraint makes it efficient exactly.

    Solved on the sum-zero subspace: phi = total/n * 1 + P u with P = I - 11^T/n and
    (P A P) u = P (b - A 1 total/n), using the pseudo-inverse so a rank-deficient
    sample still gives the minimum-norm solution. Returns phi and pinv(P A P), the
    map from a perturbation of b to the change of phi (for standard errors).
    """
    n = A.shape[0]
    P = np.eye(n) - 1.0 / n
    H = P @ A @ P
    Hinv = np.linalg.pinv((H + H.T) / 2, hermitian=True)
    base = np.full(n, total / n)
    phi = base + P @ (Hinv @ (P @ (b - A @ base)))
    # the projection keeps sum(phi) = total up to rounding; remove that rounding too
    phi += (total - phi.sum()) / n
    return phi, Hinv


# --------------------------------------------------------------------------- permutations


def random_orders(
    n: int, m: int, rng: np.random.Generator, antithetic: bool = False
) -> np.ndarray:
    """m uniformly random orders of the n players, (m, n) integers.

    With ``antithetic=True`` rows 1, 3, 5, ... are the reverses of rows 0, 2, 4, ...
    (an odd m ends on a drawn row): a player early in one order is late in the other,
    which cancels much of the variance that comes from a player's position.
    """
    n_draw = (m + 1) // 2 if antithetic else m
    orders = rng.permuted(np.tile(np.arange(n), (n_draw, 1)), axis=1)
    return _interleave(orders, orders[:, ::-1], m) if antithetic else orders


def prefix_masks(orders: np.ndarray) -> np.ndarray:
    """(..., n+1, n) booleans: row j of each order holds its first j players, so one
    scan from the empty to the full coalition gives every player one marginal."""
    n = orders.shape[-1]
    pos = np.argsort(orders, axis=-1)  # pos[..., i]: where player i stands
    return pos[..., None, :] < np.arange(n + 1)[:, None]


def permutation_units(
    n: int, k: int, rng: np.random.Generator, antithetic: bool = False
) -> np.ndarray:
    """k sampling units of order prefixes: (k, r (n+1), n), r = 1 order per unit, or
    r = 2 (an order and its reverse) with ``antithetic=True``."""
    per = 2 if antithetic else 1
    return prefix_masks(random_orders(n, per * k, rng, antithetic)).reshape(k, per * (n + 1), n)


def order_marginals(masks: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Each unit's marginal contributions, averaged over the unit's orders: (U, n).

    ``masks`` (U, r (n+1), n) as from :func:`permutation_units`, ``v`` their
    utilities (U, r (n+1)). Player i joins an order at row n + 1 - |{rows holding i}|,
    so its marginal is the step there: the masks alone locate it, no order is kept.
    """
    u, rows, n = masks.shape
    r = rows // (n + 1)
    pos = n - masks.reshape(u * r, n + 1, n).sum(axis=1)  # (u r, n): 0-based positions
    steps = np.diff(np.asarray(v).reshape(u * r, n + 1), axis=1)
    return np.take_along_axis(steps, pos, axis=1).reshape(u, r, n).mean(axis=1)


# --------------------------------------------------------------------------- budgets


class BudgetPlanner:
    """Accepts groups of coalitions while their new evaluations fit the budget.

    A :class:`~surrogateshap.game.BudgetedGame` charges each distinct coalition once
    and raises past its budget. Sampling estimators want the whole budget without ever
    hitting that error, while still evaluating in large batches: they offer a group
    (one order's prefixes, a coalition and its complement) to ``take(masks)``, which
    returns True and reserves the group's new coalitions when they fit in ``left``;
    ``evaluate(masks)`` evaluates a batch (normally everything taken since the last
    call) in one game call and releases the reservations. An estimator that reserves a
    worst case and evaluates less (truncated scans) calls ``release()``.
    """

    def __init__(self, game: BudgetedGame, limit: int | None = None):
        self.game = game
        self.limit = limit
        self._pending: set[bytes] = set()

    @property
    def left(self) -> float:
        """New distinct coalitions that can still be reserved (inf without a budget).

        With ``limit``, the game's total evaluations stop there (a stage of an
        estimator that leaves the rest of the budget to a later stage)."""
        remaining = self.game.remaining
        remaining = math.inf if remaining is None else remaining
        if self.limit is not None:
            remaining = min(remaining, self.limit - self.game.n_evaluations)
        return remaining - len(self._pending)

    def new_keys(self, masks: np.ndarray) -> set[bytes]:
        """Keys of the rows of ``masks`` that neither the game nor the plan holds yet."""
        new: set[bytes] = set()
        for m in masks:
            k = mask_key(m)
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


def draw_units(
    planner: BudgetPlanner,
    make: Callable[[int], np.ndarray],
    max_units: int,
    first_cost: float,
    min_batch: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Units of coalitions from ``make(k) -> (k, rows, n)`` while they fit the budget.

    Draws as many units per batch as should fit at the cost per unit seen so far
    (``first_cost`` before any; repeated coalitions are free, so the cost falls as the
    game is memoised), at least ``min_batch`` and at most 16,384; units drawn past the budget waste
    nothing but rng draws. Sampling stops at the first unit whose new coalitions do
    not fit, or after ``max_units``. Returns the masks (U, rows, n) and the utilities
    (U, rows), evaluated one game call per batch.
    """
    game = planner.game
    used0 = game.n_evaluations
    blocks, values = [], []
    n_units = 0
    while n_units < max_units:
        cost = (game.n_evaluations - used0) / n_units if n_units else first_cost
        room = planner.left
        want = 1.25 * room / max(cost, 0.1) if np.isfinite(room) else max_units
        k = int(min(max_units - n_units, max(want, min_batch), 1 << 14))
        block = make(k)
        fit = 0
        while fit < k and planner.take(block[fit]):
            fit += 1
        if fit:
            rows = block.shape[1]
            y = planner.evaluate(block[:fit].reshape(fit * rows, -1)).reshape(fit, rows)
            blocks.append(block[:fit])
            values.append(y)
            n_units += fit
        if fit < k:
            break
    if not blocks:
        raise ValueError("the budget does not fit one sampling unit")
    return np.concatenate(blocks), np.concatenate(values)


def sample_distinct(
    planner: BudgetPlanner,
    draw: Callable[[int], np.ndarray],
    n_players: int,
    max_draws: int,
    keep_repeats: bool = False,
) -> tuple[np.ndarray, int]:
    """Coalitions from ``draw`` until the budget is used or ``max_draws`` drawn.

    ``draw(k)`` returns k random boolean rows. A coalition is reserved with the planner
    the first time it is drawn, and drawing stops at the first new coalition that does
    not fit. By default repeats are skipped (a repeat costs nothing but, the game
    being deterministic, carries no information either), so the result is a sample
    without replacement. With ``keep_repeats=True`` every drawn row up to the last
    one taken is returned, repeats included: a regression weighting rows by how often
    the sampling distribution draws them (SurrogateSHAP) keeps them. Returns the rows
    and the number of rows drawn. Nothing is evaluated here.
    """
    if max_draws < 1:
        raise ValueError(f"max_draws must be >= 1; got {max_draws}")
    rows: list[np.ndarray] = []
    seen: set[bytes] = set()
    draws = 0
    while draws < max_draws and planner.left > 0:
        # twice what is left, at least 64 and at most 65,536 rows a batch (a budget
        # far above the number of coalitions must not allocate it)
        k = int(min(max_draws - draws, max(2 * planner.left, 64), 1 << 16))
        batch = draw(k)
        for row in batch:
            draws += 1
            key = mask_key(row)
            if key in seen:
                if keep_repeats:
                    rows.append(row)
                continue
            if not planner.take(row[None, :]):
                draws -= 1  # the refused row is not part of the sample
                return np.asarray(rows, dtype=bool).reshape(-1, n_players), draws
            seen.add(key)
            rows.append(row)
            if planner.left <= 0:
                return np.asarray(rows, dtype=bool).reshape(-1, n_players), draws
    return np.asarray(rows, dtype=bool).reshape(-1, n_players), draws


def sandwich_stderr(M: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-player standard error of a regression estimate phi = phi0 + M mean(scores).

    ``scores`` (U, n): each independent unit's score (its contribution to the normal
    equations); ``M`` (n, n): how phi moves with their mean. The delta-method
    (sandwich) variance is M Cov(scores) M^T / U; NaN with fewer than 2 units.
    """
    u, n = scores.shape
    if u < 2:
        return np.full(n, np.nan)
    cov = M @ np.cov(scores, rowvar=False) @ M.T / u
    return np.sqrt(np.clip(np.diag(cov), 0.0, None))


# --------------------------------------------------------------------------- size strata


def water_fill(caps: Sequence[int], shares, total: int) -> np.ndarray:
    """Integer counts proportional to ``shares``, capped at ``caps``, summing to at
    most ``total`` (exactly min(total, sum(caps))); a capped stratum's surplus is
    spread over the others, the rounding remainder goes to the largest fractions."""
    shares = np.asarray(shares, dtype=float)
    capf = np.array([min(c, 2**62) for c in caps], dtype=float)
    alloc = np.zeros(len(capf))
    free = shares > 0
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
    spare = int(min(total, capf.sum()) - counts.sum())
    for s in np.argsort(-(alloc - counts), kind="stable"):
        if spare <= 0:
            break
        if counts[s] < capf[s]:
            counts[s] += 1
            spare -= 1
    return counts


def _all_subsets_of_size(n: int, k: int) -> np.ndarray:
    """Every k-subset of n players, (C(n, k), n) booleans, in lexicographic order."""
    if k == 0:
        return np.zeros((1, n), dtype=bool)
    idx = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64).reshape(-1, k)
    out = np.zeros((len(idx), n), dtype=bool)
    np.put_along_axis(out, idx, True, axis=1)
    return out


def distinct_subsets(n: int, k: int, count: int, rng: np.random.Generator,
                     exclude: set | frozenset = frozenset()) -> np.ndarray:
    """``count`` distinct k-subsets of n players, uniformly without replacement.

    All of them (in lexicographic order) when count >= C(n, k). Dense enumeration
    when the size holds at most 4 * count subsets, rejection of repeats otherwise
    (acceptance then at least 3/4), so the work is O(count) either way. ``exclude``:
    mask keys (:func:`mask_key`) of subsets not to draw (at most ``count`` of the rest
    come back); with none excluded the draws are the same as without it.
    """
    total = comb(n, k)
    if exclude:
        if total > 4 * (count + len(exclude)):
            return _rejected_repeats(n, k, count, rng, set(exclude))
        allk = _all_subsets_of_size(n, k)  # every one, no draw
        pool = allk[np.array([mask_key(z) not in exclude for z in allk])]
        return pool[np.sort(rng.choice(len(pool), size=min(count, len(pool)), replace=False))]
    if count >= total or total <= 4 * count:
        allk = _all_subsets_of_size(n, k)
        if count >= total:
            return allk
        return allk[np.sort(rng.choice(total, size=count, replace=False))]
    return _rejected_repeats(n, k, count, rng, set())


def _rejected_repeats(n: int, k: int, count: int, rng: np.random.Generator, seen: set) -> np.ndarray:
    """``count`` random k-subsets whose keys are not in ``seen`` (which they join),
    drawn in batches and repeats rejected."""
    out: list[np.ndarray] = []
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


def border_sizes(
    n: int, budget: int, weights=None, anchors: bool = True, reserve: int = 2
) -> tuple[tuple[int, ...], int]:
    """The border trick's plan: which coalition sizes to enumerate, and what is left.

    Sizes 1..n-1 are taken in complement pairs {k, n-k} from the outside in (k = 1,
    2, ...). A pair is enumerated when sampling would draw all its coalitions anyway:
    when the budget left, spread over the sizes not yet enumerated in proportion to
    ``weights`` (one per size 1..n-1; default the Shapley kernel's p(k)), gives the
    pair at least as many draws as it has coalitions. Planning stops at the first
    pair that fails, or whose enumeration would leave fewer than ``reserve``
    evaluations for the sizes still to sample. ``budget`` counts distinct
    evaluations, the empty and full anchors included when ``anchors``.

    Returns (enumerated sizes in increasing order, budget left for sampling). With
    budget >= 2**n every size is enumerated: estimators built on the plan are exact
    there and never draw past 2**n.
    """
    if n < 1:
        raise ValueError(f"need n >= 1 players; got {n}")
    left = int(budget) - (2 if anchors else 0)
    if left < 0:
        raise ValueError(f"a budget of {budget} does not cover the two anchors")
    if n < 2:
        return (), left
    w = kernel_size_distribution(n) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (n - 1,) or (w < 0).any() or not w.sum() > 0:
        raise ValueError(f"weights must be {n - 1} non-negative numbers, one per size 1..n-1")
    todo = set(range(1, n))
    done: list[int] = []
    for k in range(1, n // 2 + 1):
        pair = sorted({k, n - k})
        cost = sum(comb(n, s) for s in pair)
        mass = float(sum(w[s - 1] for s in todo))
        share = float(sum(w[s - 1] for s in pair)) / mass if mass > 0 else 1.0
        rest = todo - set(pair)
        if cost > left or left * share < cost or (rest and left - cost < reserve):
            break
        done += pair
        todo = rest
        left -= cost
    return tuple(sorted(done)), left


def border_masks(n: int, sizes) -> np.ndarray:
    """Every coalition of the given sizes, complement pairs adjacent where both sizes
    are listed (size k < n/2 rows followed by their complements; size n/2 as pairs
    S, N minus S with S holding player 0)."""
    sizes = sorted(set(int(s) for s in sizes))
    if sizes and (sizes[0] < 0 or sizes[-1] > n):
        raise ValueError(f"sizes must lie in 0..{n}; got {sizes}")
    blocks: list[np.ndarray] = []
    listed = set(sizes)
    for k in sizes:
        if (n - k) in listed and k > n - k:
            continue  # emitted with its complement
        if (n - k) not in listed:
            blocks.append(_all_subsets_of_size(n, k))
        elif 2 * k == n:
            rest = _all_subsets_of_size(n - 1, k - 1)
            half = np.concatenate([np.ones((len(rest), 1), dtype=bool), rest], axis=1)
            blocks.append(np.stack([half, ~half], axis=1).reshape(-1, n))
        else:
            z = _all_subsets_of_size(n, k)
            blocks.append(np.stack([z, ~z], axis=1).reshape(-1, n))
    if not blocks:
        return np.zeros((0, n), dtype=bool)
    return np.concatenate(blocks)
