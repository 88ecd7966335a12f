"""Exact Shapley values by enumeration (n <= 20): the ground truth of small games."""

from __future__ import annotations

from math import comb

import numpy as np

from surrogateshap.game import Game, all_coalitions

__all__ = [
    "exact_shapley",
    "separable_shapley",
    "shapley_from_table",
    "banzhaf_from_table",
    "shapley_interactions_from_table",
    "shapley_of_partial_game",
    "grouped_shapley",
    "MAX_EXACT_PLAYERS",
]

MAX_EXACT_PLAYERS = 20


def shapley_from_table(utilities: np.ndarray, n_players: int) -> np.ndarray:
    """Shapley values from the utilities of all 2**n coalitions in ``all_coalitions`` order.

    phi_i = sum_S w(|S|) [v(S + i) - v(S)], w(s) = 1 / (n * C(n-1, s)).
    """
    v = np.asarray(utilities, dtype=float)
    if v.shape != (2**n_players,):
        raise ValueError(f"need {2**n_players} utilities for n={n_players}, got {v.shape}")
    idx = np.arange(2**n_players)
    sizes = np.bitwise_count(idx) if hasattr(np, "bitwise_count") else np.array(
        [bin(i).count("1") for i in idx]
    )
    w = np.array([1.0 / (n_players * comb(n_players - 1, s)) for s in range(n_players)])
    phi = np.empty(n_players)
    for i in range(n_players):
        without = idx[(idx >> i) & 1 == 0]
        phi[i] = np.sum(w[sizes[without]] * (v[without | (1 << i)] - v[without]))
    return phi


def shapley_of_partial_game(masks: np.ndarray, values: np.ndarray, n_players: int) -> np.ndarray:
    """Shapley values of the game equal to ``values`` on the coalitions ``masks``
    (distinct rows) and 0 on every other coalition, for any n.

    A game that is nonzero at one coalition S gives phi_i = w(|S| - 1) v(S) for i in S
    and -w(|S|) v(S) otherwise, w(s) = 1 / (n C(n-1, s)); this sums those. Used to
    correct a surrogate's values where the true game is known: the Shapley value of
    "the surrogate, but the true utility on these coalitions" is phi(g) plus this on
    the residuals v - g (on the empty and full coalitions alone, the equal-split
    efficiency correction).
    """
    Z = np.asarray(masks, dtype=bool).reshape(-1, n_players)
    r = np.asarray(values, dtype=float).reshape(-1)
    if len(r) != len(Z):
        raise ValueError(f"{len(Z)} coalitions but {len(r)} values")
    n = n_players
    w = np.array([1.0 / (n * comb(n - 1, s)) for s in range(n)])
    k = Z.sum(axis=1)
    w_in = np.where(k >= 1, w[np.clip(k - 1, 0, n - 1)], 0.0)  # rows holding i
    w_out = np.where(k <= n - 1, w[np.clip(k, 0, n - 1)], 0.0)  # rows without i
    return Z.T.astype(float) @ (r * w_in) - (~Z).T.astype(float) @ (r * w_out)


def banzhaf_from_table(utilities: np.ndarray, n_players: int) -> np.ndarray:
    """Banzhaf values from all 2**n utilities (uniform weight 2**-(n-1))."""
    v = np.asarray(utilities, dtype=float)
    idx = np.arange(2**n_players)
    return np.array(
        [
            np.mean(v[idx[(idx >> i) & 1 == 0] | (1 << i)] - v[idx[(idx >> i) & 1 == 0]])
            for i in range(n_players)
        ]
    )


def shapley_interactions_from_table(v: np.ndarray, n: int) -> np.ndarray:
    """Pairwise Shapley interaction index from all 2**n utilities (all_coalitions order)."""
    idx = np.arange(2**n)
    sizes = np.array([bin(i).count("1") for i in range(2**n)]) if n else np.zeros(1, int)
    # w(s) = s! (n-s-2)! / (n-1)!
    w = np.array([1.0 / ((n - 1) * comb(n - 2, s)) for s in range(max(n - 1, 0))])
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            base = idx[((idx >> i) & 1 == 0) & ((idx >> j) & 1 == 0)]
            bi, bj = 1 << i, 1 << j
            d = v[base | bi | bj] - v[base | bi] - v[base | bj] + v[base]
            out[i, j] = out[j, i] = np.sum(w[sizes[base]] * d)
    return out


def exact_shapley(game: Game) -> np.ndarray:
    """Enumerate all 2**n coalitions of ``game`` and return its exact Shapley values."""
    n = game.n_players
    if n > MAX_EXACT_PLAYERS:
        raise ValueError(
            f"exact enumeration needs 2**n evaluations; n={n} exceeds {MAX_EXACT_PLAYERS}"
        )
    return shapley_from_table(game(all_coalitions(n)), n)


def grouped_shapley(game: Game, groups) -> np.ndarray:
    """Exact Shapley values of a game whose utility depends only on how many players of
    each group a coalition holds (players of one group are symmetric), for any n.

    Such a game has prod(size_g + 1) distinct coalitions up to symmetry, evaluated once
    each (the first c_g players of each group stand for any c_g of them), so a proxy
    that conditions on labels, with equal data per contributor, gets its exact values
    at 24 players from 5**6 evaluations instead of 2**24. That the game *is* symmetric
    within groups is the caller's claim; the values are equal within each group.
    """
    import itertools

    groups = np.asarray(groups).reshape(-1)
    n = groups.size
    if n != game.n_players:
        raise ValueError(f"groups has {n} entries for a game of {game.n_players} players")
    labels = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in labels]
    sizes = np.array([len(m) for m in members])
    if np.prod(sizes + 1, dtype=float) > 2e6:
        raise ValueError(f"{np.prod(sizes + 1, dtype=float):.0f} count vectors: too many to enumerate")
    grid = np.array(list(itertools.product(*[range(s + 1) for s in sizes])), dtype=int)
    masks = np.zeros((len(grid), n), bool)
    for j, mem in enumerate(members):
        for c in range(1, sizes[j] + 1):
            masks[np.ix_(grid[:, j] >= c, [mem[c - 1]])] = True
    v = np.asarray(game(masks), dtype=float)
    strides = np.cumprod(np.r_[1, (sizes + 1)[::-1][:-1]])[::-1]  # row index of a count vector
    total = grid.sum(1)
    w = np.array([1.0 / (n * comb(n - 1, s)) for s in range(n)])
    phi = np.empty(n)
    for j, mem in enumerate(members):
        rows = np.flatnonzero(grid[:, j] < sizes[j])  # the coalitions without one player of group j
        ways = np.ones(len(rows))
        for k in range(len(sizes)):
            ways *= np.array([comb(int(sizes[k]) - (k == j), int(c)) for c in grid[rows, k]])
        gain = v[rows + strides[j]] - v[rows]
        phi[mem] = np.sum(w[total[rows]] * ways * gain)
    return phi


def separable_shapley(game: Game, groups) -> np.ndarray:
    """Exact Shapley values of a game that is a sum of one game per group of players,
    v(S) = sum_g v_g(S & G_g): a player's value is its value in its group's game, here
    v restricted to the group with every other player present, so sum_g 2**size_g
    evaluations (a per-label utility on a proxy whose units lie within one label: 6 * 2**4
    for 24 sellers in labels of 4). That the game *is* separable is the caller's claim."""
    groups = np.asarray(groups).reshape(-1)
    if groups.size != game.n_players:
        raise ValueError(f"groups has {groups.size} entries for a game of {game.n_players} players")
    phi = np.empty(game.n_players)
    for g in np.unique(groups):
        mem = np.flatnonzero(groups == g)
        if len(mem) > 20:
            raise ValueError(f"group {g} has {len(mem)} players: too many to enumerate")
        sub = all_coalitions(len(mem))
        masks = np.ones((len(sub), game.n_players), bool)
        masks[:, mem] = sub
        phi[mem] = shapley_from_table(np.asarray(game(masks), dtype=float), len(mem))
    return phi
