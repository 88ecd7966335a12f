"""Exact Shapley values by enumeration (n <= 20): the ground truth of small games."""

from __future__ import annotations

from math import comb

import numpy as np

from surrogateshap.game import Game, all_coalitions

__all__ = [
    "exact_shapley",
    "shapley_from_table",
    "banzhaf_from_table",
    "shapley_interactions_from_table",
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
