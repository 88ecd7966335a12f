"""Image utilities with per-label sufficient statistics.

A mixture of per-label sample banks, sum_y pi(y) p(x | y), has feature mean
sum_y pi_y mu_y and second moment sum_y pi_y E_y[f f^T]; its mean class posterior is
sum_y pi_y pbar_y; and so on. So a coalition's utility (FID, Inception Score,
coverage) is computed from per-label statistics in microseconds, never touching images.
Pooled-image versions use torchmetrics, to check the statistics against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "LabelStats",
    "StatsBank",
    "stats_from_features",
    "mix_stats",
    "frechet_distance",
    "UTILITIES",
    "utility_from_stats",
    "register_utility",
    "available_utilities",
]

UTILITIES = ("neg_fid", "inception_score", "coverage")
"""The image tasks' default utilities, all higher-is-better: -FID against the real data,
Inception Score of the project's own classifier, and coverage = histogram intersection
between the generated and real distributions over k-means modes of the real features."""

#: name -> fn(bank, weights (m, L)) -> (m,) utilities of the m mixtures
_UTILITY_FNS: dict = {}


def register_utility(name: str):
    """Decorator registering a utility computed from mixed sufficient statistics.

    ``fn(bank: StatsBank, weights: np.ndarray (m, L)) -> np.ndarray (m,)``, higher is
    better; the bank holds per-label ``mean``, ``second`` (flattened d x d), ``pbar``,
    ``neg_entropy``, ``modes``, ``count`` and the ``real`` statistics. A task lists the
    utility by name (``utilities=``).
    """

    def deco(fn):
        if name in _UTILITY_FNS and _UTILITY_FNS[name] is not fn:
            raise ValueError(f"utility {name!r} is already registered")
        _UTILITY_FNS[name] = fn
        return fn

    return deco


def available_utilities() -> list[str]:
    return sorted(_UTILITY_FNS)


@dataclass
class LabelStats:
    """Sufficient statistics of one bank of samples (or a mixture of banks)."""

    mean: np.ndarray  # (d,) feature mean
    second: np.ndarray  # (d, d) E[f f^T]
    pbar: np.ndarray  # (c,) mean class posterior
    neg_entropy: float  # E_x[sum_y p(y|x) log p(y|x)]
    modes: np.ndarray  # (k,) fraction of samples nearest each real-data mode
    count: int = 0

    def cov(self) -> np.ndarray:
        return self.second - np.outer(self.mean, self.mean)


def stats_from_features(feats: np.ndarray, logits: np.ndarray, centroids: np.ndarray) -> LabelStats:
    feats = np.asarray(feats, dtype=np.float64)
    logits = np.asarray(logits, dtype=np.float64)
    if len(feats) == 0:
        raise ValueError("cannot compute statistics of an empty sample bank")
    logp = logits - logits.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    p = np.exp(logp)
    d2 = ((feats[:, None, :] - centroids[None]) ** 2).sum(-1)
    nearest = d2.argmin(1)
    modes = np.bincount(nearest, minlength=len(centroids)) / len(feats)
    return LabelStats(
        mean=feats.mean(0),
        second=feats.T @ feats / len(feats),
        pbar=p.mean(0),
        neg_entropy=float((p * logp).sum(1).mean()),
        modes=modes,
        count=len(feats),
    )


def mix_stats(stats: list[LabelStats], weights: np.ndarray) -> LabelStats:
    """Statistics of the mixture sum_l w_l * (bank l); weights must sum to 1."""
    w = np.asarray(weights, dtype=np.float64)
    if len(stats) != len(w) or len(stats) == 0:
        raise ValueError("need one weight per label statistic, at least one")
    if abs(w.sum() - 1) > 1e-9 or (w < 0).any():
        raise ValueError(f"mixture weights must be non-negative and sum to 1, got {w}")
    return LabelStats(
        mean=sum(wi * s.mean for wi, s in zip(w, stats)),
        second=sum(wi * s.second for wi, s in zip(w, stats)),
        pbar=sum(wi * s.pbar for wi, s in zip(w, stats)),
        neg_entropy=float(sum(wi * s.neg_entropy for wi, s in zip(w, stats))),
        modes=sum(wi * s.modes for wi, s in zip(w, stats)),
        count=int(sum(s.count for wi, s in zip(w, stats) if wi > 0)),
    )


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _unbiased_cov(second, mean, count):
    cov = second - mean[..., :, None] * mean[..., None, :]
    count = np.asarray(count, dtype=float)[..., None, None]
    return np.where(count > 1, cov * count / np.maximum(count - 1, 1), cov)


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^(1/2))."""
    s2 = _psd_sqrt(cov2)
    return float(_fid_batch(mu1[None], cov1[None], mu2, cov2, s2)[0])


def _fid_batch(mu, cov, mu_r, cov_r, sqrt_r) -> np.ndarray:
    """FID of m Gaussians (mu (m, d), cov (m, d, d)) against one reference.

    Tr (C C_r)^(1/2) = Tr (S C S)^(1/2) with S = C_r^(1/2): a symmetric PSD
    eigenproblem, stable where features have dead units (singular covariances), and
    batched over coalitions.
    """
    diff = mu - mu_r
    eig = np.linalg.eigvalsh(sqrt_r @ cov @ sqrt_r)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum(-1)
    return (diff**2).sum(-1) + np.trace(cov, axis1=-2, axis2=-1) + np.trace(cov_r) - 2 * tr_covmean


class StatsBank:
    """Per-label statistics stacked into arrays: utilities of many mixtures at once.

    ``utility(name, weights)`` takes mixture weights (m, L) (rows summing to 1) and
    returns m utilities; the mixture of the labels with non-zero weight has the pooled
    count of their banks (FID's n - 1 correction), as :func:`mix_stats` gives.
    """

    def __init__(self, stats: list[LabelStats], real: LabelStats):
        if not stats:
            raise ValueError("need at least one label's statistics")
        self.mean = np.stack([s.mean for s in stats])
        d = self.mean.shape[1]
        self.second = np.stack([s.second for s in stats]).reshape(len(stats), d * d)
        self.pbar = np.stack([s.pbar for s in stats])
        self.neg_entropy = np.array([s.neg_entropy for s in stats])
        self.modes = np.stack([s.modes for s in stats])
        self.count = np.array([s.count for s in stats], dtype=float)
        self.real = real
        self._cov_r = _unbiased_cov(real.second, real.mean, real.count)
        self._sqrt_r = _psd_sqrt(self._cov_r)

    def utility(self, name: str, weights: np.ndarray) -> np.ndarray:
        w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        if w.shape[1] != len(self.mean):
            raise ValueError(f"weights must have {len(self.mean)} columns, got {w.shape}")
        if name not in _UTILITY_FNS:
            raise KeyError(f"unknown utility {name!r}; known: {', '.join(available_utilities())}")
        return np.asarray(_UTILITY_FNS[name](self, w), dtype=float)


@register_utility("neg_fid")
def _neg_fid(bank: StatsBank, w: np.ndarray) -> np.ndarray:
    d = bank.mean.shape[1]
    mu = w @ bank.mean
    count = (w > 0) @ bank.count
    cov = _unbiased_cov((w @ bank.second).reshape(-1, d, d), mu, count)
    return -_fid_batch(mu, cov, bank.real.mean, bank._cov_r, bank._sqrt_r)


@register_utility("inception_score")
def _inception_score(bank: StatsBank, w: np.ndarray) -> np.ndarray:
    pbar = w @ bank.pbar
    kl = w @ bank.neg_entropy - (pbar * np.log(np.clip(pbar, 1e-12, None))).sum(1)
    return np.exp(kl)


@register_utility("coverage")
def _coverage(bank: StatsBank, w: np.ndarray) -> np.ndarray:
    return np.minimum(w @ bank.modes, bank.real.modes).sum(1)


def utility_from_stats(name: str, gen: LabelStats, real: LabelStats) -> float:
    """One utility of generated statistics ``gen`` against the real data's ``real``.

    FID uses the unbiased (n - 1) covariance, as torchmetrics does.
    """
    return float(StatsBank([gen], real).utility(name, np.ones((1, 1)))[0])
