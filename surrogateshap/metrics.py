"""Metrics that compare attributions with ground truth: LDS, counterfactual removal, exact.

Plain numpy/scipy/pandas: a metric takes values (an array or an
:class:`~surrogateshap.attribution.Attribution`) and utilities or a game callable, and
knows nothing of models, tasks or estimators. Every benchmark figure is computed here so
a user can compute the same number.

Undefined statistics (a Spearman correlation of a constant vector, a relative error
against all-zero values) come back as ``nan`` with a ``RuntimeWarning``; bad input
(shapes that do not match, NaN utilities, float masks) raises ``ValueError`` or
``TypeError`` naming the argument.
"""

from __future__ import annotations

import warnings
from itertools import combinations
from math import comb

import numpy as np
import pandas as pd
from scipy import stats

from surrogateshap.attribution import Attribution
from surrogateshap.game import as_masks

__all__ = [
    "sample_test_coalitions",
    "lds",
    "lds_summary",
    "topk_removal",
    "removal_masks",
    "relative_l2",
    "spearman",
    "topk_recall",
    "precision_at_k",
    "compare_to_exact",
    "default_topk",
]

#: relative spread below which a vector counts as constant (ranks of float noise are noise)
_CONST_RTOL = 1e-12


# ---------------------------------------------------------------- input validation


def _as_values(values, name: str = "values", n: int | None = None) -> np.ndarray:
    """A finite float (n,) array from an array or an Attribution."""
    if isinstance(values, Attribution):
        values = values.values
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of per-player values; got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but there are {n} players")
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr)).tolist()
        raise ValueError(f"{name} contains NaN or inf at positions {bad}")
    return arr


def _as_masks(coalitions, n: int, name: str = "test_coalitions") -> np.ndarray:
    """A boolean (m, n) array; 1-D input and floats are refused (likely a bug)."""
    if np.ndim(coalitions) != 2:
        raise ValueError(f"{name} must have shape (m, {n}) for {n} players; got shape "
                         f"{np.shape(coalitions)}")
    return as_masks(coalitions, n, name)


def _as_utilities(utilities, m: int, name: str = "test_utilities") -> np.ndarray:
    arr = np.asarray(utilities, dtype=float)
    if arr.ndim != 1 or arr.shape[0] != m:
        raise ValueError(
            f"{name} must have shape ({m},), one per test coalition; got shape {arr.shape}"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name} contains NaN or inf for test coalitions {np.flatnonzero(bad).tolist()[:10]}"
            " (a failed retraining?); drop those coalitions or recompute them"
        )
    return arr


def _is_constant(x: np.ndarray) -> bool:
    scale = max(1.0, float(np.max(np.abs(x)))) if x.size else 1.0
    return x.size == 0 or float(np.ptp(x)) <= _CONST_RTOL * scale


def _spearman(a: np.ndarray, b: np.ndarray, what: str) -> float:
    """Spearman correlation, nan (with a warning) when either side is constant."""
    for x, side in ((a, "first"), (b, "second")):
        if _is_constant(x):
            warnings.warn(
                f"{what}: the {side} vector is constant, so its Spearman correlation is "
                "undefined; returning nan",
                RuntimeWarning,
                stacklevel=3,
            )
            return float("nan")
    return float(stats.spearmanr(a, b).statistic)


# ---------------------------------------------------------------- LDS


def sample_test_coalitions(n: int, alpha: float = 0.5, m: int = 100, seed=0) -> np.ndarray:
    """Random test coalitions for LDS, each keeping exactly ``int(alpha * n)`` players.

    The fixed size follows the evaluation protocol (an alpha-fraction of the players is
    kept and the model retrained). Edge cases: the size is at least 1, so a tiny
    ``alpha * n`` keeps one player, and with n = 1 the only row is the full coalition.
    Rows are distinct whenever ``m <= C(n, k)``; if fewer than ``m`` distinct coalitions
    of that size exist, all of them are used, cycled in random order, so each repeats
    at most once more than any other. Returns a boolean (m, n) array.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer number of players; got {n!r}")
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m must be a positive integer number of test coalitions; got {m!r}")
    if not (0.0 < float(alpha) < 1.0):
        raise ValueError(f"alpha must lie strictly between 0 and 1; got {alpha!r}")
    n, m = int(n), int(m)
    k = max(1, int(alpha * n))
    rng = np.random.default_rng(seed)
    n_distinct = comb(n, k)

    if n_distinct <= 4 * m:
        # few enough to enumerate: pick without replacement (cycle if m exceeds them)
        subsets = list(combinations(range(n), k))
        order = np.concatenate(
            [rng.permutation(n_distinct) for _ in range(-(-m // n_distinct))]
        )[:m]
        out = np.zeros((m, n), dtype=bool)
        for r, s in enumerate(order):
            out[r, list(subsets[s])] = True
        return out

    # many more coalitions than rows: rejection-sample duplicates (< 1/4 rejected)
    rows: dict[bytes, np.ndarray] = {}
    while len(rows) < m:
        need = m - len(rows)
        idx = np.argsort(rng.random((need, n)), axis=1)[:, :k]
        batch = np.zeros((need, n), dtype=bool)
        np.put_along_axis(batch, idx, True, axis=1)
        for row in batch:
            rows.setdefault(row.tobytes(), row)
            if len(rows) == m:
                break
    return np.stack(list(rows.values()))


def _prediction(phi: np.ndarray, masks: np.ndarray, interactions) -> np.ndarray:
    pred = masks @ phi
    if interactions is not None:
        n = phi.shape[0]
        P = np.asarray(interactions, dtype=float)
        if P.shape != (n, n):
            raise ValueError(f"interactions must have shape ({n}, {n}); got {P.shape}")
        if not np.isfinite(P).all():
            raise ValueError("interactions contain NaN or inf")
        if not np.allclose(P, P.T, rtol=1e-8, atol=1e-12):
            raise ValueError(
                "interactions must be symmetric, each pair in both triangles; if you "
                "stored one triangle, pass P + P.T"
            )
        P = P - np.diag(np.diag(P))  # the sum runs over i != j
        z = masks.astype(float)
        pred = pred + 0.5 * np.einsum("mi,ij,mj->m", z, P, z)
    return pred


def lds(values, test_coalitions, test_utilities, interactions=None) -> float:
    """Linear datamodeling score: 100 x Spearman(sum_{i in S} phi_i, v(S)) over test coalitions.

    LDS asks whether the values, used as an additive model of the game, rank held-out
    coalitions the way their true (retrained) utilities do. With ``interactions`` (a
    symmetric (n, n) matrix of pairwise interaction values, e.g.
    ``attribution.interactions``) the prediction adds 1/2 sum_{i != j} Phi_ij z_i z_j:
    the quadratic LDS. Returns nan (with a RuntimeWarning) when the predictions or the
    utilities are constant, since Spearman is then undefined.
    """
    phi = _as_values(values)
    n = phi.shape[0]
    masks = _as_masks(test_coalitions, n)
    if masks.shape[0] < 2:
        raise ValueError(f"LDS needs at least 2 test coalitions; got {masks.shape[0]}")
    util = _as_utilities(test_utilities, masks.shape[0])
    pred = _prediction(phi, masks, interactions)
    return 100.0 * _spearman(pred, util, "lds (predictions vs utilities)")


def lds_summary(
    values,
    test_coalitions,
    utilities_by_seed,
    interval: str = "ci95",
    interactions=None,
    ddof: int = 1,
) -> dict:
    """LDS per retraining seed, their mean and an error bar.

    Retraining is stochastic, so the protocol reports LDS against each seed's utilities
    and averages. ``utilities_by_seed`` is (n_seeds, m) (a 1-D (m,) array is one seed).
    ``std`` is the standard deviation of the per-seed LDS with ``ddof`` (default 1, the
    sample std; use 0 to match ``np.std``); ``ci95`` is the half-width 1.96 std /
    sqrt(n_seeds) (the ArtBench protocol). ``interval`` picks which one is reported as
    ``half_width``: "ci95" or "std" (mean +- std, the CIFAR/Fashion protocol). With one
    seed and ddof=1 the std is nan. A seed whose LDS is nan makes the mean nan.

    Returns a dict with keys lds (per-seed array), mean, std, ci95, half_width,
    interval, n_seeds.
    """
    if interval not in ("ci95", "std"):
        raise ValueError(f"interval must be 'ci95' or 'std'; got {interval!r}")
    U = np.asarray(utilities_by_seed, dtype=float)
    if U.ndim == 1:
        U = U[None, :]
    if U.ndim != 2:
        raise ValueError(f"utilities_by_seed must have shape (n_seeds, m); got {U.shape}")
    n_seeds = U.shape[0]
    if n_seeds == 0:
        raise ValueError("utilities_by_seed holds no seeds")
    per_seed = np.array(
        [lds(values, test_coalitions, u, interactions=interactions) for u in U]
    )
    mean = float(np.mean(per_seed))
    std = float(np.std(per_seed, ddof=ddof)) if n_seeds > ddof else float("nan")
    ci95 = 1.96 * std / np.sqrt(n_seeds)
    return {
        "lds": per_seed,
        "mean": mean,
        "std": std,
        "ci95": float(ci95),
        "half_width": float(ci95 if interval == "ci95" else std),
        "interval": interval,
        "n_seeds": n_seeds,
    }


# ---------------------------------------------------------------- counterfactual removal


def removal_masks(values, fractions=(0.1, 0.2, 0.3), n_random: int = 5, seed=0):
    """The coalitions :func:`topk_removal` evaluates, (masks, plan): row 0 the full
    coalition; per fraction, the coalition without the top k, without the bottom k, and
    without each of ``n_random`` random k-sets; ``plan`` = (fraction, k, first row) per
    fraction. Exposed so the coalitions can be retrained ahead, in one batch."""
    phi = _as_values(values)
    n = phi.shape[0]
    fr = np.asarray(fractions, dtype=float).reshape(-1)
    if fr.size == 0 or not ((fr > 0) & (fr <= 1)).all():
        raise ValueError(f"fractions must be non-empty and lie in (0, 1]; got {fractions!r}")
    if isinstance(n_random, bool) or not isinstance(n_random, (int, np.integer)) or n_random < 0:
        raise ValueError(f"n_random must be a non-negative integer; got {n_random!r}")
    rng = np.random.default_rng(seed)
    top_order = np.argsort(-phi, kind="stable")
    bottom_order = np.argsort(phi, kind="stable")

    rows = [np.ones(n, dtype=bool)]  # row 0: the full coalition
    plan = []
    for f in fr:
        k = max(1, round(float(f) * n))
        removed = [top_order[:k], bottom_order[:k]]
        removed += [rng.choice(n, size=k, replace=False) for _ in range(int(n_random))]
        start = len(rows)
        for r in removed:
            mask = np.ones(n, dtype=bool)
            mask[r] = False
            rows.append(mask)
        plan.append((float(f), k, start))
    return np.stack(rows), plan


def topk_removal(
    values, game, fractions=(0.1, 0.2, 0.3), n_random: int = 5, seed=0, available=None
) -> pd.DataFrame:
    """Change in utility when the top, bottom or random k% of players are removed.

    Good values make removing the top players hurt most and the bottom least, with
    random removal in between. For each fraction, k = max(1, round(fraction * n))
    (Python's round: halves to even); the top k by value (ties broken by player order),
    the bottom k and ``n_random`` random k-sets are removed. ``game`` is any callable
    mapping a boolean (m, n) array to (m,) utilities (a surrogateshap Game is one); it
    is called once, on all remaining coalitions plus the full one.

    ``available``: a callable (masks -> bool) saying whether the game can answer this
    batch of coalitions for free (a table that holds them all on some seed); a fraction
    whose batch (its sets with the full coalition) it cannot is left out (the random sets
    stay those of the full list of fractions), and each fraction is then asked in its own
    call, against its own full coalition.

    Returns a DataFrame with columns fraction, k, top, bottom, random_mean, random_std,
    each delta being v(remaining) - v(full). random_std uses ddof=1 (nan for
    n_random < 2); random_mean is nan for n_random = 0.
    """
    n = _as_values(values).shape[0]
    game_n = getattr(game, "n_players", None)
    if game_n is not None and game_n != n:
        raise ValueError(f"values has {n} entries but the game has {game_n} players")
    if not callable(game):
        raise TypeError("game must be callable on a boolean (m, n) array")
    masks, plan = removal_masks(values, fractions, n_random, seed)
    size = 2 + int(n_random)
    if available is None:
        groups = [np.arange(masks.shape[0])]  # one call on every coalition
    else:  # one call per fraction, each against its own full coalition (a consistent batch)
        groups = [np.concatenate([[0], np.arange(s, s + size)]) for _, _, s in plan]
        kept = [(p, g) for p, g in zip(plan, groups) if bool(available(masks[g]))]
        plan, groups = [p for p, _ in kept], [g for _, g in kept]
    delta = np.full(masks.shape[0], np.nan)
    for rows in groups:
        util = np.asarray(game(masks[rows]), dtype=float).reshape(-1)
        if util.shape[0] != rows.shape[0]:
            raise ValueError(f"game returned {util.shape[0]} utilities for {rows.shape[0]} coalitions")
        if not np.isfinite(util).all():
            raise ValueError("game returned NaN or inf utilities")
        delta[rows[1:]] = util[1:] - util[0]

    out = []
    for f, k, s in plan:
        rand = delta[s + 2 : s + 2 + int(n_random)]
        out.append(
            {
                "fraction": f,
                "k": k,
                "top": delta[s],
                "bottom": delta[s + 1],
                "random_mean": float(rand.mean()) if rand.size else float("nan"),
                "random_std": float(rand.std(ddof=1)) if rand.size > 1 else float("nan"),
            }
        )
    columns = ["fraction", "k", "top", "bottom", "random_mean", "random_std"]
    return pd.DataFrame(out, columns=columns)


# ---------------------------------------------------------------- against exact values


def _pair(est, exact) -> tuple[np.ndarray, np.ndarray]:
    e = _as_values(est, "est")
    x = _as_values(exact, "exact", n=e.shape[0])
    return e, x


def relative_l2(est, exact) -> float:
    """||est - exact|| / ||exact||: scale-free error, comparable across games.

    nan (with a RuntimeWarning) when the exact values are all zero.
    """
    e, x = _pair(est, exact)
    norm = float(np.linalg.norm(x))
    if norm == 0.0:
        warnings.warn(
            "relative_l2: exact values are all zero; returning nan", RuntimeWarning, stacklevel=2
        )
        return float("nan")
    return float(np.linalg.norm(e - x)) / norm


def spearman(est, exact) -> float:
    """Spearman rank correlation in [-1, 1]: does the estimate rank players right?

    nan (with a RuntimeWarning) when either vector is constant.
    """
    e, x = _pair(est, exact)
    return _spearman(e, x, "spearman")


def topk_recall(est, exact, k: int) -> float:
    """Fraction of the true top-k players that the estimate's top-k contains.

    What a curator acting on the k most valuable contributors cares about. Players tied
    with the k-th largest exact value all count as true top-k, so the estimate is not
    penalised for an arbitrary tie-break in the ground truth; the estimate's own top-k
    breaks ties by player order.
    """
    e, x = _pair(est, exact)
    n = e.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in 1..{n}; got {k!r}")
    k = int(k)
    threshold = np.sort(x)[::-1][k - 1]
    true_top = x >= threshold
    est_top = np.argsort(-e, kind="stable")[:k]
    return float(true_top[est_top].sum()) / k


def precision_at_k(values, planted, k: int) -> float:
    """Fraction of the k highest-valued players that are planted (known true sources,
    e.g. the sites of a planted spurious correlation).

    ``planted``: player indices, or a boolean mask over the players. Players tied with
    the k-th largest value share the remaining places equally (the expected precision
    under a random tie-break), so an attribution gains nothing from player order.
    """
    v = _as_values(values)
    n = v.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in 1..{n}; got {k!r}")
    p = np.asarray(planted)
    if p.dtype == bool:
        if p.shape != (n,):
            raise ValueError(f"planted as a mask needs {n} entries; got shape {p.shape}")
        is_planted = p
    else:
        if p.ndim != 1 or not np.issubdtype(p.dtype, np.integer) and p.size:
            raise ValueError(f"planted must be player indices or a boolean mask; got {planted!r}")
        if p.size and (p.min() < 0 or p.max() >= n or len(set(p.tolist())) != p.size):
            raise ValueError(f"planted must hold distinct player indices in 0..{n - 1}; got {p.tolist()}")
        is_planted = np.zeros(n, bool)
        is_planted[p.astype(int)] = True
    k = int(k)
    threshold = np.sort(v)[::-1][k - 1]
    above, tied = v > threshold, v == threshold
    hits = is_planted[above].sum() + (k - above.sum()) * is_planted[tied].sum() / tied.sum()
    return float(hits) / k


def default_topk(n: int) -> int:
    """The one default k of top-k figures: max(1, round(0.1 n)), the smallest removal
    fraction's size."""
    return max(1, round(0.1 * n))


def compare_to_exact(est, exact, k: int | None = None) -> dict:
    """relative_l2, spearman and topk_recall in one dict (plus the k used).

    ``k`` defaults to :func:`default_topk`.
    """
    e, x = _pair(est, exact)
    if k is None:
        k = default_topk(e.shape[0])
    return {
        "relative_l2": relative_l2(e, x),
        "spearman": spearman(e, x),
        "topk_recall": topk_recall(e, x, k),
        "k": int(k),
    }
