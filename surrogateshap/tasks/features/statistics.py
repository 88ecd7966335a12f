"""Image utilities with per-unit sufficient statistics.

A mixture of per-unit sample banks, sum_u pi(u) p(x | u) (a unit is what the model is
conditioned on: a label, a (label, contributor) pair, a prompt), has feature mean
sum_u pi_u mu_u and second moment sum_u pi_u E_u[f f^T]; its mean class posterior is
sum_u pi_u pbar_u; and so on. So a coalition's utility (FID, Inception Score,
coverage) is computed from per-unit statistics in microseconds, never touching images.
A task's own per-sample scores (a fidelity distance, a detector's output) mix the same
way, as their means (``LabelStats.scores``).
Pooled-image versions use torchmetrics, to check the statistics against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    "bank_score",
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
    better; the bank holds per-unit ``mean``, ``second`` (flattened d x d), ``pbar``,
    ``neg_entropy``, ``modes``, ``count``, ``scores`` (name -> (L,) per-unit means of a
    task's per-sample scores) and the ``real`` statistics. A task lists the utility by
    name (``utilities=``).
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
    #: means of a task's per-sample scores (name -> float); they mix linearly
    scores: dict = field(default_factory=dict)

    def cov(self) -> np.ndarray:
        return self.second - np.outer(self.mean, self.mean)


def stats_from_features(feats: np.ndarray, logits: np.ndarray, centroids: np.ndarray,
                        scores: dict | None = None) -> LabelStats:
    """``scores``: optional name -> (n,) per-sample values, kept as their means."""
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
        scores={k: float(np.mean(_per_sample(k, v, len(feats)))) for k, v in (scores or {}).items()},
    )


def _per_sample(name, values, n) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (n,):
        raise ValueError(f"score {name!r} needs one value per sample ({n}), got shape {v.shape}")
    return v


def _score_keys(stats: list[LabelStats]) -> list[str]:
    keys = sorted(stats[0].scores)
    for s in stats:
        if sorted(s.scores) != keys:
            raise ValueError(f"statistics disagree on their scores: {keys} vs {sorted(s.scores)}")
    return keys


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
        scores={k: float(sum(wi * s.scores[k] for wi, s in zip(w, stats))) for k in _score_keys(stats)},
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
    """Per-unit statistics stacked into arrays: utilities of many mixtures at once.

    ``utility(name, weights)`` takes mixture weights (m, L) (rows summing to 1) and
    returns m utilities; the mixture of the labels with non-zero weight has the pooled
    count of their banks (FID's n - 1 correction), as :func:`mix_stats` gives.
    """

    def __init__(self, stats: list[LabelStats], real: LabelStats):
        if not stats:
            raise ValueError("need at least one unit's statistics")
        self.mean = np.stack([s.mean for s in stats])
        d = self.mean.shape[1]
        self.second = np.stack([s.second for s in stats]).reshape(len(stats), d * d)
        self.pbar = np.stack([s.pbar for s in stats])
        self.neg_entropy = np.array([s.neg_entropy for s in stats])
        self.modes = np.stack([s.modes for s in stats])
        self.count = np.array([s.count for s in stats], dtype=float)
        self.scores = {k: np.array([s.scores[k] for s in stats]) for k in _score_keys(stats)}
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


def bank_score(bank: StatsBank, name: str) -> np.ndarray:
    """(L,) per-unit means of score ``name``; a clear error when the task computed none."""
    if name not in bank.scores:
        raise KeyError(f"the statistics carry no score {name!r} (they have {sorted(bank.scores)}); "
                       "the task's stats_of must compute it")
    return bank.scores[name]


@register_utility("diversity")
def _diversity(bank: StatsBank, w: np.ndarray) -> np.ndarray:
    """Entropy (nats) of the samples' histogram over the k-means modes of the real
    features: the paper's diversity (20 clusters where a task sets n_modes = 20)."""
    p = w @ bank.modes
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(1)


@register_utility("neg_fidelity")
def _neg_fidelity(bank: StatsBank, w: np.ndarray) -> np.ndarray:
    """Minus the mean per-sample distance to the training images of the sample's unit
    (score ``fidelity_dist``, computed by the task): lower distance, higher utility."""
    return -(w @ bank_score(bank, "fidelity_dist"))


def utility_from_stats(name: str, gen: LabelStats, real: LabelStats) -> float:
    """One utility of generated statistics ``gen`` against the real data's ``real``.

    FID uses the unbiased (n - 1) covariance, as torchmetrics does.
    """
    return float(StatsBank([gen], real).utility(name, np.ones((1, 1)))[0])
