"""Games with known Shapley values: the backbone of tests and the benchmark's sanity tier."""

from __future__ import annotations

from collections.abc import Sequence
from math import factorial

import numpy as np

from surrogateshap.game import Game, coalition_key, stable_hash

__all__ = [
    "AdditiveGame",
    "UnanimityGame",
    "WeightedVotingGame",
    "AirportGame",
    "NoisyGame",
    "random_unanimity_game",
]


class AdditiveGame(Game):
    """v(S) = offset + sum_{i in S} w_i; Shapley values are the weights."""

    def __init__(self, weights: Sequence[float], offset: float = 0.0, players=None):
        self.weights = np.asarray(weights, dtype=float)
        super().__init__(players if players is not None else len(self.weights))
        self.offset = float(offset)

    def _evaluate(self, masks):
        return self.offset + masks @ self.weights

    def exact_values(self):
        return self.weights.copy()

    def cache_id(self):
        return f"Additive:{stable_hash([self.weights.tolist(), self.offset])}"


class UnanimityGame(Game):
    """Sum of unanimity games: v(S) = offset + sum_T c_T [T subset of S].

    Interactions of any order; phi_i = sum_{T ni i} c_T / |T| (each term's weight is
    split equally among its members). Pairwise Shapley interaction index:
    Phi_ij = sum_{T ⊇ {i,j}} c_T / (|T| - 1).
    """

    def __init__(self, n_players: int, terms, coefficients, offset: float = 0.0, players=None):
        super().__init__(players if players is not None else n_players)
        n = self.n_players
        self.terms = [tuple(sorted(set(int(i) for i in t))) for t in terms]
        self.coefficients = np.asarray(coefficients, dtype=float)
        if len(self.terms) != len(self.coefficients):
            raise ValueError("need one coefficient per term")
        for t in self.terms:
            if not t or min(t) < 0 or max(t) >= n:
                raise ValueError(f"term {t} is empty or names a player outside 0..{n-1}")
        self.offset = float(offset)
        self._T = np.zeros((len(self.terms), n), dtype=bool)
        for k, t in enumerate(self.terms):
            self._T[k, list(t)] = True
        self._sizes = self._T.sum(1)

    def _evaluate(self, masks):
        # term k is satisfied when all its members are in S
        hit = (masks.astype(np.int32) @ self._T.T.astype(np.int32)) == self._sizes
        return self.offset + hit @ self.coefficients

    def exact_values(self):
        return (self._T / self._sizes[:, None]).T @ self.coefficients

    def exact_interactions(self) -> np.ndarray:
        n = self.n_players
        out = np.zeros((n, n))
        for t, c, s in zip(self.terms, self.coefficients, self._sizes):
            if s >= 2:
                for a in t:
                    for b in t:
                        if a != b:
                            out[a, b] += c / (s - 1)
        return out

    def cache_id(self):
        return f"Unanimity:{stable_hash([self.terms, self.coefficients.tolist(), self.offset])}"


def random_unanimity_game(
    n_players: int, n_terms: int = 20, max_order: int = 3, seed: int = 0, offset: float = 0.0
) -> UnanimityGame:
    """A random sum-of-unanimity game: terms of order 1..max_order, N(0,1) coefficients.

    Every player gets a singleton term so no value is trivially zero.
    """
    rng = np.random.default_rng(seed)
    terms = [(i,) for i in range(n_players)]
    coefs = list(rng.normal(1.0, 1.0, n_players))
    for _ in range(n_terms):
        k = int(rng.integers(2, max(2, max_order) + 1))
        k = min(k, n_players)
        terms.append(tuple(rng.choice(n_players, size=k, replace=False)))
        coefs.append(rng.normal(0.0, 2.0))
    return UnanimityGame(n_players, terms, coefs, offset=offset)


class WeightedVotingGame(Game):
    """v(S) = 1 if sum_{i in S} w_i >= quota else 0, integer weights.

    Exact Shapley values by dynamic programming over (coalition size, weight sum), so
    n in the hundreds is fine.
    """

    def __init__(self, weights: Sequence[int], quota: int, players=None):
        self.weights = np.asarray(weights, dtype=np.int64)
        if (self.weights < 0).any():
            raise ValueError("voting weights must be non-negative integers")
        super().__init__(players if players is not None else len(self.weights))
        self.quota = int(quota)

    def _evaluate(self, masks):
        return ((masks @ self.weights) >= self.quota).astype(float)

    def exact_values(self):
        n, W, q = self.n_players, int(self.weights.sum()), self.quota
        phi = np.zeros(n)
        fact = [factorial(k) for k in range(n + 1)]
        for i in range(n):
            others = np.delete(self.weights, i)
            # ways[k, s]: number of k-subsets of the others with weight sum s
            ways = np.zeros((n, W + 1), dtype=object)
            ways[0, 0] = 1
            for w in others:
                ways[1:, w:] = ways[1:, w:] + ways[:-1, : W + 1 - w]
            lo, hi = max(q - int(self.weights[i]), 0), q - 1
            total = 0
            for k in range(n):
                swing = int(sum(ways[k, lo : hi + 1])) if hi >= lo else 0
                total += swing * fact[k] * fact[n - k - 1]
            phi[i] = total / fact[n]
        return phi

    def cache_id(self):
        return f"Voting:{stable_hash([self.weights.tolist(), self.quota])}"


class AirportGame(Game):
    """v(S) = max_{i in S} c_i (the runway S needs), v(empty) = 0.

    Littlechild-Owen closed form: with costs sorted c_(1) <= ... <= c_(n),
    phi_(i) = sum_{j <= i} (c_(j) - c_(j-1)) / (n - j + 1).
    """

    def __init__(self, costs: Sequence[float], players=None):
        self.costs = np.asarray(costs, dtype=float)
        super().__init__(players if players is not None else len(self.costs))

    def _evaluate(self, masks):
        return np.where(masks, self.costs[None, :], 0.0).max(axis=1, initial=0.0)

    def exact_values(self):
        n = self.n_players
        order = np.argsort(self.costs, kind="stable")
        c = np.concatenate([[0.0], self.costs[order]])
        inc = np.diff(c) / (n - np.arange(n))
        phi = np.empty(n)
        phi[order] = np.cumsum(inc)
        return phi

    def cache_id(self):
        return f"Airport:{stable_hash(self.costs.tolist())}"


class NoisyGame(Game):
    """A game plus Gaussian noise seeded per (seed, coalition): models stochastic retraining.

    The same coalition always gets the same noise for a given seed (like a cached
    retraining), different seeds give independent draws, and the noise has mean zero,
    so the noise-free game's Shapley values are the expected values.
    """

    def __init__(self, game: Game, sigma: float, seed: int = 0):
        super().__init__(game.players)
        self.game, self.sigma, self.seed = game, float(sigma), int(seed)
        self.cost_unit = game.cost_unit

    def _noise(self, mask) -> float:
        key = int(stable_hash([self.seed, coalition_key(mask)]), 16)
        return float(np.random.default_rng(key).normal(0.0, self.sigma))

    def _evaluate(self, masks):
        return self.game(masks) + np.array([self._noise(m) for m in masks])

    def exact_values(self):
        """None (unless sigma = 0): this draw's Shapley values are not the noise-free
        ones, and an estimator given them as a proxy's closed form would be handed
        better than the proxy. The noise-free values are :meth:`expected_values`."""
        return self.game.exact_values() if self.sigma == 0 else None

    def expected_values(self):
        """The noise-free game's Shapley values: the noisy values' expectation."""
        return self.game.exact_values()

    def cache_id(self):
        return f"Noisy({self.game.cache_id()},{self.sigma},{self.seed})"
