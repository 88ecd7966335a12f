"""k-additive SHAP (kADD-SHAP): regress the game on a k-additive game, read off its values.

Pelegrina, Duarte & Grabisch (2023), "A k-additive Choquet integral-based approach to
approximate the SHAP values for local interpretability in machine learning". A game
whose Möbius transform vanishes above order k is fixed by its Shapley interaction
indices I(B), |B| <= k, through Grabisch's formula

    v(A) = sum_{|B| <= k} gamma(|A ∩ B|, |B|) I(B),
    gamma(r, b) = sum_{l=0}^{r} C(r, l) beta_{b-l},

with beta the Bernoulli numbers (beta_1 = -1/2). Subtracting the same formula at the
empty coalition removes I(empty):

    v(A) - v(empty) = sum_{1 <= |B| <= k} (gamma(|A ∩ B|, |B|) - beta_{|B|}) I(B).

The feature of a singleton is the indicator z_i, of a pair -1/2 [exactly one of i, j
in A]; at A = N every feature of order >= 2 vanishes, so v(N) - v(empty) =
sum_i I({i}) is the one constraint. kADD-SHAP fits the I(B) by Shapley-kernel
weighted least squares under that constraint, on the same design as KernelSHAP
(:func:`baselines.regression.kernel_design`: the border trick, then paired kernel
sampling), and returns phi_i = I({i}); with k >= 2 the pairwise I({i, j}) come back as
``interactions``. k = 1 is KernelSHAP. When the sample has fewer rows than unknowns
the minimum-norm solution is taken (lstsq). The values are efficient by construction.

With a budget of 2**n every coalition is evaluated and the values are computed from
the full table (the Shapley values of the game itself, exact), since the k-additive
fit of a game that is not k-additive need not reproduce them.
"""

from __future__ import annotations

import itertools
from math import comb

import numpy as np

from baselines.regression import kernel_design
from surrogateshap.estimator import Estimator
from surrogateshap.exact import shapley_from_table
from surrogateshap.game import all_coalitions
from surrogateshap.registry import register
from surrogateshap.sampling import anchor_masks

__all__ = ["KAddSHAP", "kadd_features"]

#: refuse designs with more unknowns than this (the normal matrix is unknowns^2)
MAX_UNKNOWNS = 5000


def _bernoulli(k: int) -> np.ndarray:
    from scipy.special import bernoulli

    return np.asarray(bernoulli(k), dtype=float)  # beta_0..beta_k, beta_1 = -1/2


def kadd_features(Z: np.ndarray, k: int) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Features of the coalitions ``Z`` (m, n) for the interactions of order 1..k.

    Column for B: gamma(|A ∩ B|, |B|) - beta_{|B|}, so that sum_B X[A, B] I(B) is
    v(A) - v(empty) for a k-additive game. Returns (X (m, p), the subsets B).
    """
    Z = np.asarray(Z, dtype=bool)
    m, n = Z.shape
    beta = _bernoulli(k)
    cols, subsets = [], []
    Zi = Z.astype(np.int64)
    for b in range(1, k + 1):
        sets = list(itertools.combinations(range(n), b))
        if not sets:
            continue
        T = np.zeros((n, len(sets)), dtype=np.int64)
        for c, B in enumerate(sets):
            T[list(B), c] = 1
        r = Zi @ T  # |A ∩ B|
        gamma = np.array([sum(comb(q, l) * beta[b - l] for l in range(q + 1)) for q in range(b + 1)])
        cols.append(gamma[r] - beta[b])
        subsets += sets
    X = np.concatenate(cols, axis=1) if cols else np.zeros((m, 0))
    return X, subsets


def _pinv(A: np.ndarray) -> np.ndarray:
    """Moore-Penrose inverse of A (m, p) through the smaller of its two Gram matrices
    (an m x m or p x p symmetric eigenproblem: much cheaper than an SVD of a wide A)."""
    m, p = A.shape
    if m <= p:
        G = A @ A.T
        return A.T @ np.linalg.pinv((G + G.T) / 2, hermitian=True)
    H = A.T @ A
    return np.linalg.pinv((H + H.T) / 2, hermitian=True) @ A.T


@register("kadd-shap")
class KAddSHAP(Estimator):
    """kADD-SHAP (Pelegrina et al. 2023): kernel-weighted least squares on a k-additive game.

    ``k``: highest interaction order fitted (default 2). ``paired``, ``border``,
    ``max_draws``: the sampling design, as for KernelSHAP, except that ``paired``
    defaults to False: under complement pairs the even-order features take the same
    value on a coalition and its complement, the normal equations decouple, and the
    values of k = 2 come out identical to KernelSHAP's.
    """

    def __init__(self, k: int = 2, paired: bool = False, border: bool = True,
                 max_draws: int | None = None):
        self.k = k
        self.paired = paired
        self.border = border
        self.max_draws = max_draws

    def min_budget(self, n_players: int) -> int:
        return 2 if n_players == 1 else 4

    def _estimate(self, game, budget, rng: np.random.Generator):
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ValueError(f"k must be a positive integer; got {self.k!r}")
        n = game.n_players
        k = int(min(self.k, n))
        p = sum(comb(n, b) for b in range(1, k + 1))
        if p > MAX_UNKNOWNS:
            raise ValueError(
                f"kADD-SHAP with k={k} on {n} players has {p} unknowns (> {MAX_UNKNOWNS}); "
                "use a smaller k"
            )
        if 2**n <= budget:
            v = game(all_coalitions(n))
            return {"values": shapley_from_table(v, n), "stderr": np.zeros(n), "exact": True,
                    "extra": {"all_coalitions": True}}
        v_empty, v_full = (float(x) for x in game(anchor_masks(n)))
        total = v_full - v_empty
        if n == 1:
            return {"values": np.array([total]), "stderr": np.zeros(1)}
        d = kernel_design(game, budget, rng, self.paired, self.border, self.max_draws)
        X, subsets = kadd_features(d["Z"], k)
        # phi = total/n + P u keeps sum(phi) = total; the higher orders are free
        P = np.eye(n) - 1.0 / n
        D = np.concatenate([X[:, :n] @ P, X[:, n:]], axis=1)
        t = d["y"] - v_empty - X[:, :n].sum(axis=1) * total / n
        sw = np.sqrt(d["w"])
        Dplus = _pinv(D * sw[:, None])
        theta = Dplus @ (t * sw)  # the minimum-norm weighted least-squares solution
        values = total / n + P @ theta[:n]
        values += (total - values.sum()) / n  # remove the rounding
        stderr = self._stderr(d, Dplus, theta, n, k, v_empty, total)
        out = {"values": values, "stderr": stderr,
               "extra": {"k": k, "n_unknowns": p, "n_rows": int(len(d["Z"])),
                         "border_sizes": list(d["sizes"])}}
        if k >= 2:
            inter = np.zeros((n, n))
            for B, val in zip(subsets[n:], theta[n:]):
                if len(B) == 2:
                    inter[B[0], B[1]] = inter[B[1], B[0]] = val
            out["interactions"] = inter
        return out

    @staticmethod
    def _stderr(d, Dplus, theta, n, k, v_empty, total):
        """Sandwich standard error over the sampled units (the enumerated rows are fixed)."""
        units = d["units"]
        U = units.shape[0]
        if U < 2:
            return np.zeros(n) if d["mass"] == 0.0 else np.full(n, np.nan)
        per = units.shape[1]
        Xu, _ = kadd_features(units.reshape(-1, n), k)
        P = np.eye(n) - 1.0 / n
        Du = np.concatenate([Xu[:, :n] @ P, Xu[:, n:]], axis=1)
        tu = d["unit_y"].reshape(-1) - v_empty - Xu[:, :n].sum(axis=1) * total / n
        g = (Du * (tu - Du @ theta)[:, None]).reshape(U, per, -1).mean(axis=1)
        M = P @ (Dplus[:n] @ Dplus.T)  # phi rows of pinv(D^T W D)
        cov = M @ np.cov(g, rowvar=False) @ M.T * d["mass"] ** 2 / U
        return np.sqrt(np.clip(np.diag(cov), 0.0, None))
