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
    "stats_from_features",
    "mix_stats",
    "frechet_distance",
    "UTILITIES",
    "utility_from_stats",
]

UTILITIES = ("neg_fid", "inception_score", "coverage")
"""Utilities, all higher-is-better: -FID against the real data, Inception Score of the
project's own classifier, and coverage = histogram intersection between the generated
and real distributions over k-means modes of the real features."""


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
        count=int(sum(s.count for s in stats)),
    )


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^(1/2)).

    Tr (C1 C2)^(1/2) = Tr (S C2 S)^(1/2) with S = C1^(1/2): a symmetric PSD
    eigenproblem, stable where features have dead units (singular covariances).
    """
    diff = mu1 - mu2
    s1 = _psd_sqrt(cov1)
    eig = np.linalg.eigvalsh(s1 @ cov2 @ s1)
    tr_covmean = float(np.sqrt(np.clip(eig, 0, None)).sum())
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_covmean)


def utility_from_stats(name: str, gen: LabelStats, real: LabelStats, unbiased_cov: bool = True) -> float:
    """One utility of generated statistics ``gen`` against the real data's ``real``.

    FID uses the unbiased (n - 1) covariance as torchmetrics does; with mixtures the
    count is the pooled count.
    """
    if name == "neg_fid":
        def cov(s):
            c = s.cov()
            return c * s.count / (s.count - 1) if unbiased_cov and s.count > 1 else c
        return -frechet_distance(gen.mean, cov(gen), real.mean, cov(real))
    if name == "inception_score":
        kl = gen.neg_entropy - float(np.sum(gen.pbar * np.log(np.clip(gen.pbar, 1e-12, None))))
        return float(np.exp(kl))
    if name == "coverage":
        return float(np.minimum(gen.modes, real.modes).sum())
    raise KeyError(f"unknown utility {name!r}; known: {', '.join(UTILITIES)}")
