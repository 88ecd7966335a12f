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

import contextlib
import dataclasses
import functools
import os
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from surrogateshap.tasks.features.stats_store import array_digest

__all__ = [
    "LabelStats",
    "StatsBank",
    "StoredStats",
    "WhitenedBasis",
    "MEMORY_BUDGET",
    "EIG_BACKENDS",
    "check_bank_options",
    "stats_from_features",
    "write_stats",
    "read_stats",
    "mix_stats",
    "frechet_distance",
    "UTILITIES",
    "utility_from_stats",
    "register_utility",
    "available_utilities",
    "needs_label_moments",
    "bank_score",
]

UTILITIES = ("neg_fid", "inception_score", "coverage")
"""The image tasks' default utilities, all higher-is-better: -FID against the real data,
Inception Score of the project's own classifier, and coverage = histogram intersection
between the generated and real distributions over k-means modes of the real features."""

#: name -> fn(bank, weights (m, L)) -> (m,) utilities of the m mixtures
_UTILITY_FNS: dict = {}
#: the utilities that read per-label moments (:attr:`LabelStats.label_share`)
_PER_LABEL: set = set()


def register_utility(name: str, per_label: bool = False):
    """Decorator registering a utility computed from mixed sufficient statistics.

    ``fn(bank: StatsBank, weights: np.ndarray (m, L)) -> np.ndarray (m,)``, higher is
    better; the bank holds per-unit ``mean``, ``second`` (flattened d x d), ``pbar``,
    ``neg_entropy``, ``modes``, ``count``, ``scores`` (name -> (L,) per-unit means of a
    task's per-sample scores) and the ``real`` statistics. A task lists the utility by
    name (``utilities=``). ``per_label``: the utility reads the per-label moments, which
    a task's statistics then carry (:func:`needs_label_moments`).
    """

    def deco(fn):
        if name in _UTILITY_FNS and _UTILITY_FNS[name] is not fn:
            raise ValueError(f"utility {name!r} is already registered")
        _UTILITY_FNS[name] = fn
        if per_label:
            _PER_LABEL.add(name)
        return fn

    return deco


def available_utilities() -> list[str]:
    return sorted(_UTILITY_FNS)


def needs_label_moments(utilities) -> bool:
    """Whether any of ``utilities`` reads per-label moments: only then do statistics carry
    them (K d x d second moments per bank unit: too much to keep for every task)."""
    return any(u in _PER_LABEL for u in utilities)


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
    #: per-label *joint* moments over the K labels (the unit each sample was generated
    #: for): P(y = k), E[1{y = k} f], E[1{y = k} f f^T]; joint, not conditional, so they
    #: mix linearly like the rest. None where no utility reads them.
    label_share: np.ndarray | None = None  # (K,)
    label_mean: np.ndarray | None = None  # (K, d)
    label_second: np.ndarray | None = None  # (K, d, d)

    def cov(self) -> np.ndarray:
        return self.second - np.outer(self.mean, self.mean)

    def given_label(self, k: int) -> LabelStats:
        """The statistics of the samples of label ``k`` alone: feature mean, second moment
        and count (what FID reads; the other fields are the whole bank's)."""
        if self.label_share is None:
            raise ValueError("these statistics carry no per-label moments (no per-label utility asked for them)")
        p = float(self.label_share[k])
        if p <= 0:
            raise ValueError(f"these statistics hold no sample of label {k}")
        return dataclasses.replace(self, mean=np.asarray(self.label_mean[k]) / p,
                                   second=np.asarray(self.label_second[k]) / p, count=round(self.count * p),
                                   label_share=None, label_mean=None, label_second=None)


def stats_from_features(feats: np.ndarray, logits: np.ndarray, centroids: np.ndarray,
                        scores: dict | None = None, labels=None, n_labels: int | None = None) -> LabelStats:
    """``scores``: optional name -> (n,) per-sample values, kept as their means.
    ``n_labels``: also the per-label moments over labels 0..n_labels-1, ``labels`` (n,)
    being the label each sample was generated for."""
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
        **({} if n_labels is None else _label_moments(feats, labels, n_labels)),
    )


def _label_moments(feats: np.ndarray, labels, n_labels: int) -> dict:
    """The per-label joint moments of :class:`LabelStats` (``label_share`` and so on)."""
    if labels is None:
        raise ValueError("per-label moments need the label each sample was generated for")
    y = np.asarray(labels).reshape(-1)
    if len(y) != len(feats) or (y < 0).any() or (y >= n_labels).any():
        raise ValueError(f"labels must be {len(feats)} integers in 0..{n_labels - 1}, got shape {y.shape}")
    n, d = feats.shape
    out = {"label_share": np.zeros(n_labels), "label_mean": np.zeros((n_labels, d)),
           "label_second": np.zeros((n_labels, d, d))}
    for k in np.unique(y):
        f = feats[y == k]
        out["label_share"][k], out["label_mean"][k], out["label_second"][k] = len(f) / n, f.sum(0) / n, f.T @ f / n
    return out


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
        **({k: sum(wi * getattr(s, k) for wi, s in zip(w, stats)) for k in _LABEL_FIELDS}
           if all(s.label_share is not None for s in stats) else {}),
    )


_LABEL_FIELDS = ("label_share", "label_mean", "label_second")


def write_stats(writer, stats, n: int | None = None) -> None:
    """Per-unit statistics into an :class:`~.stats_store.ArrayStore`'s writer, stacked.
    ``stats`` may be an iterator of ``n`` units: the (n, d, d) second moments are written
    unit by unit, so they are never all in memory at once."""
    if n is None:
        stats = list(stats)
        n = len(stats)
    rows: dict[str, list] = {"mean": [], "pbar": [], "neg_entropy": [], "modes": [], "count": [], "scores": []}
    second = keys = None
    for u, s in enumerate(stats):
        if second is None:
            keys = sorted(s.scores)
            second = writer.array("second", (n,) + np.shape(s.second))
        if sorted(s.scores) != keys or u >= n:
            raise ValueError(f"need {n} units' statistics with the same scores; unit {u} has {sorted(s.scores)}")
        second[u] = s.second
        for k in ("mean", "pbar", "neg_entropy", "modes", "count"):
            rows[k].append(getattr(s, k))
        rows["scores"].append([s.scores[k] for k in keys])
        if u == 0:
            label_rows = {k: [] for k in _LABEL_FIELDS} if s.label_share is not None else {}
        if (s.label_share is not None) != bool(label_rows):
            raise ValueError(f"unit {u} {'lacks' if label_rows else 'has'} per-label moments, unlike unit 0")
        for k, v in label_rows.items():
            v.append(getattr(s, k))
    if len(rows["mean"]) != n or n == 0:
        raise ValueError(f"need {n} units' statistics (at least one), got {len(rows['mean'])}")
    for k, v in rows.items():
        writer.put(k, np.array(v, dtype=np.int64 if k == "count" else np.float64))
    writer.put("score_names", np.array(keys, dtype=str))
    for k, v in label_rows.items():
        writer.put(k, np.array(v, dtype=np.float64))


_STORED_FIELDS = ("second", "mean", "pbar", "neg_entropy", "modes", "count", "scores", "score_names")


class StoredStats(list):
    """Per-unit :class:`LabelStats` read from an :class:`~.stats_store.ArrayStore`, their
    second moments memory-mapped. Pickled, it is the store's folder and identity, so a
    worker maps the same files rather than receiving copies; a :class:`StatsBank` of
    them keeps its whitened arrays in that store too (built once, not per process)."""

    def __init__(self, stats, store):
        super().__init__(stats)
        self.store = store

    def __reduce__(self):
        return read_stats, (self.store, True)


def read_stats(store, required: bool = False) -> StoredStats | None:
    """The statistics in ``store`` (None when it holds none, or refused them with a
    warning); ``required``: a clear error instead of None (the store was read before)."""
    a = store.read(need=_STORED_FIELDS)
    if a is None:
        if required:
            raise ValueError(f"the per-unit statistics at {store.root} are gone or damaged since they were "
                             "read: build the task's bank again (task.bank())")
        return None
    names = [str(k) for k in a["score_names"]]
    labelled = all(k in a for k in _LABEL_FIELDS)
    stats = [LabelStats(mean=a["mean"][u], second=a["second"][u], pbar=a["pbar"][u],
                        neg_entropy=float(a["neg_entropy"][u]), modes=a["modes"][u], count=int(a["count"][u]),
                        scores={k: float(v) for k, v in zip(names, a["scores"][u])},
                        **({k: a[k][u] for k in _LABEL_FIELDS} if labelled else {}))
             for u in range(len(a["mean"]))]
    return StoredStats(stats, store)


def _unbiased_cov(second, mean, count):
    cov = second - mean[..., :, None] * mean[..., None, :]
    count = np.asarray(count, dtype=float)[..., None, None]
    return np.where(count > 1, cov * count / np.maximum(count - 1, 1), cov)


def _unbiased_scale(count) -> np.ndarray:
    """n / (n - 1) where n > 1, else 1: FID's covariance correction, as a factor."""
    count = np.asarray(count, dtype=float)
    return np.where(count > 1, count / np.maximum(count - 1, 1), 1.0)


class WhitenedBasis:
    """The reference covariance's eigenbasis, scaled: Tr (C C_r)^(1/2) in d x d eigenvalues.

    With C_r = V diag(lam) V^T and R = diag(lam)^(1/2) V^T, R C R^T is symmetric PSD with
    the eigenvalues of C C_r, so Tr (C C_r)^(1/2) = sum sqrt(eig(R C R^T)) (stable where
    features have dead units). R is linear in C, so a mixture's R C R^T is the mixture of
    the units' rotated second moments minus the rotated mean's outer product: one
    symmetric eigensolve per coalition, no d x d x d product.

    ``rank``: keep the top-``rank`` directions exactly and, for the rest, the diagonal of
    R C R^T only (an approximation of FID; None: exact). The directions are C_r's, or,
    after :meth:`turned`, those of a generated covariance.
    """

    def __init__(self, cov_r: np.ndarray, rank: int | None = None):
        lam, vec = np.linalg.eigh((cov_r + cov_r.T) / 2)
        order = np.argsort(lam)[::-1]  # largest first, so a rank keeps the top directions
        self._set(vec[:, order], np.sqrt(np.clip(lam[order], 0, None)), float(np.trace(cov_r)), rank)

    def _set(self, vec, scale, trace_r, rank):
        d = len(scale)
        if rank is not None and not 1 <= int(rank) <= d:
            raise ValueError(f"fid_rank must be between 1 and the feature dimension {d}, got {rank}")
        self.r = d if rank is None else int(rank)
        self.vec, self.scale, self.trace_r = vec, scale, float(trace_r)

    @classmethod
    def restore(cls, vec, scale, trace_r, rank=None) -> WhitenedBasis:
        """The basis from its stored arrays (no eigensolve)."""
        basis = cls.__new__(cls)
        basis._set(vec, scale, trace_r, rank)
        return basis

    def turned(self, cov: np.ndarray) -> WhitenedBasis:
        """The same whitening, then turned to the eigenvectors of R ``cov`` R^T (largest
        first): Tr (C C_r)^(1/2) is unchanged at full rank, but a rank keeps the directions
        where generated features (``cov``: the pooled bank's) vary most after whitening,
        and the diagonal serves the rest in a basis where mixtures near the pool are
        nearly diagonal."""
        t = self.vec * self.scale  # R^T
        w = t.T @ cov @ t
        lam, q = np.linalg.eigh((w + w.T) / 2)
        return WhitenedBasis.restore(t @ q[:, ::-1], np.ones(len(lam)), self.trace_r, self.r)

    def rotate(self, v: np.ndarray) -> np.ndarray:
        """(..., d) vectors in the scaled basis: R v."""
        return (v @ self.vec) * self.scale

    def rotate_second(self, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(R M R^T on the kept directions, its lower triangle packed row by row (all the
        eigensolve reads: half the memory and half the mixing); its diagonal on the rest)."""
        mv = m @ self.vec
        top = (self.vec[:, : self.r].T @ mv[:, : self.r]) * np.outer(self.scale[: self.r], self.scale[: self.r])
        rest = (self.vec[:, self.r :] * mv[:, self.r :]).sum(0) * self.scale[self.r :] ** 2
        return top[np.tril_indices(self.r)], rest

    @property
    def packed(self) -> int:
        """Length of a packed lower triangle of the kept directions."""
        return self.r * (self.r + 1) // 2

    def tr_sqrt(self, top: np.ndarray, rest: np.ndarray, b: np.ndarray, scale,
                backend: str = "numpy", device=None) -> np.ndarray:
        """Tr (C C_r)^(1/2) for rows of mixed rotated second moments (``top`` (m, packed)
        lower triangles, ``rest`` (m, d - r) diagonals) and rotated means ``b`` (m, d);
        C = scale * (M - mu mu^T), the n / (n - 1) correction applied to the eigenvalues.
        The eigensolve runs on ``backend`` (:func:`_eigvalsh`). Eigenvalues are clipped at 0,
        not at the solver's rounding: numpy's values stay bit for bit what they were (the
        shipped exact proxy tables pin them by hash), and on a singular bank the backends'
        rounding noise in near-zero eigenvalues then differs (up to 4e-9 relative in FID),
        which is why a torch backend is named in the proxy game's identity."""
        r = self.r
        k = np.zeros((len(top), r, r))
        for i in range(r):  # row i of the lower triangles, less the mean's outer product
            k[:, i, : i + 1] = top[:, i * (i + 1) // 2 : (i + 1) * (i + 2) // 2] - b[:, i, None] * b[:, : i + 1]
        lam = _eigvalsh(k, backend, device)  # reads the lower triangle
        out = np.sqrt(np.clip(lam, 0, None)).sum(-1)
        if r < len(self.scale):
            out += np.sqrt(np.clip(rest - b[:, r:] ** 2, 0, None)).sum(-1)
        return np.sqrt(scale) * out


EIG_BACKENDS = ("numpy", "torch")
"""Where FID's batched symmetric eigensolves run: numpy's LAPACK, or torch (float64) on
the bank's device, a CUDA device's batched solver among them."""


@functools.cache
def _blas_controller():
    """The process's BLAS libraries, found once (finding them on every call costs about
    0.4 MB of objects, more than a small call's memory budget)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _eigvalsh(k: np.ndarray, backend: str = "numpy", device=None) -> np.ndarray:
    """Eigenvalues of a batch (m, r, r) of symmetric matrices from their lower triangles,
    float64, on ``backend`` (one of :data:`EIG_BACKENDS`; torch on ``device``, default
    the CPU). numpy's run on one BLAS thread: a batch is solved one matrix at a time, so
    threads inside one small solve only contend (results/proxy_paper_scale.md, "one BLAS
    thread"), and from r = 256 up their rounding depends on the thread count; on one
    thread the values are the same on every machine."""
    if backend == "numpy":
        with _blas_controller().limit(limits=1, user_api="blas"):
            return np.linalg.eigvalsh(k)
    import torch

    device = torch.device(device or "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"the bank's eigensolves are set to run on {device}, which this machine does not "
                         "have: use eig_backend='numpy' or a CUDA machine")
    return torch.linalg.eigvalsh(torch.from_numpy(np.ascontiguousarray(k)).to(device), UPLO="L").cpu().numpy()


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^(1/2))."""
    basis = WhitenedBasis(np.asarray(cov2, dtype=np.float64))
    top, rest = basis.rotate_second(np.asarray(cov1, dtype=np.float64))
    tr = basis.tr_sqrt(top[None], rest[None], np.zeros((1, len(mu1))), 1.0)[0]
    return float(((np.asarray(mu1) - mu2) ** 2).sum() + np.trace(cov1) + basis.trace_r - 2 * tr)


_WHITENED_FIELDS = ("top", "rest", "rotated", "vec", "scale", "trace_r", "traces")

#: the default memory budget (bytes) of one utility call's working arrays: a larger batch
#: of coalitions is split into calls that fit; the whitened per-unit second moments are
#: memory-mapped from a temporary file when they do not fit it either
MEMORY_BUDGET = 2 * 2**30

#: the approximate mode's way, named in its stored arrays' key: the top-r directions of the
#: pooled generated covariance in the real data's whitened space (:meth:`WhitenedBasis.turned`)
FID_APPROX = "pooled"


def check_bank_options(fid_rank=None, memory_budget=None, eig_backend=None):
    """One clear error for a bad ``fid_rank``, ``memory_budget`` or ``eig_backend`` (None:
    not given)."""
    if eig_backend is not None and eig_backend not in EIG_BACKENDS:
        raise ValueError(f"eig_backend must be one of {EIG_BACKENDS} (or None: torch where the device "
                         f"is CUDA, else numpy), got {eig_backend!r}")
    if memory_budget is not None and not (isinstance(memory_budget, (int, np.integer)) and memory_budget > 0):
        raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
    if fid_rank is not None and not (isinstance(fid_rank, (int, np.integer)) and fid_rank >= 1):
        raise ValueError(f"fid_rank must be a positive integer (or None: exact FID), got {fid_rank!r}")


class StatsBank:
    """Per-unit statistics stacked into arrays: utilities of many mixtures at once.

    ``utility(name, weights)`` takes mixture weights (m, L) (rows summing to 1) and
    returns m utilities; the mixture of the labels with non-zero weight has the pooled
    count of their banks (FID's n - 1 correction), as :func:`mix_stats` gives.

    ``memory_budget`` (bytes, default :data:`MEMORY_BUDGET`): a call's batch is split so
    its working arrays stay within it, whatever the batch size. ``fid_rank``: FID from the
    top-``fid_rank`` directions of the pooled generated features (in the real features'
    whitened space) exactly and the diagonal elsewhere (:data:`FID_APPROX`,
    :meth:`WhitenedBasis.turned`; None: exact). An approximation from below, (d/r)^3
    cheaper; at d = 2,048, r = 256 its median error is 0.2% on a k^-2 feature spectrum but
    8% on a 1/k one, and small coalitions fare worst (results/proxy_paper_scale.md), so
    opt-in. ``workdir``: where to memory-map the
    whitened second moments when they exceed the budget (default: the system's temporary
    folder). ``eig_backend`` (:data:`EIG_BACKENDS`): where FID's eigensolves run; None:
    torch where ``device`` (a torch device, e.g. the task's) is CUDA, else numpy. The
    backends agree to rounding (1e-15 relative on a full-rank bank, up to 4e-9 on a singular
    one: tests/test_eig_backend.py); the proxy game names a torch backend in its identity.
    ``prior``: the empty coalition's statistics (the family's prior), which a per-label
    utility reads for a label a mixture lacks.
    """

    def __init__(self, stats: list[LabelStats], real: LabelStats, memory_budget: int = MEMORY_BUDGET,
                 fid_rank: int | None = None, workdir=None, eig_backend: str | None = None, device=None,
                 prior: LabelStats | None = None):
        if not stats:
            raise ValueError("need at least one unit's statistics")
        check_bank_options(fid_rank, memory_budget, eig_backend)
        self._stats = stats if isinstance(stats, StoredStats) else list(stats)  # a store pickles small
        self.mean = np.stack([s.mean for s in stats])
        self.pbar = np.stack([s.pbar for s in stats])
        self.neg_entropy = np.array([s.neg_entropy for s in stats])
        self.modes = np.stack([s.modes for s in stats])
        self.count = np.array([s.count for s in stats], dtype=float)
        self.scores = {k: np.array([s.scores[k] for s in stats]) for k in _score_keys(stats)}
        self.real = real
        self.memory_budget = int(memory_budget)
        self.fid_rank = None if fid_rank is None else int(fid_rank)
        self.workdir = workdir
        self.eig_backend, self.device = eig_backend, None if device is None else str(device)
        self.prior = prior
        labelled = [s.label_share is not None for s in stats]
        self.label_share = np.stack([s.label_share for s in stats]) if all(labelled) else None  # (L, K)
        self._whitened = {}  # fid_rank -> (basis, top, rest, rotated means, traces)
        self._by_label = {}  # (label, FID options) -> (its units, their banks of that label's samples)

    def __getstate__(self):  # the derived arrays (a memory map among them) are rebuilt
        state = dict(self.__dict__)
        state["_whitened"], state["_by_label"] = {}, {}
        state.pop("second", None)
        return state

    def given_label(self, k: int) -> tuple[np.ndarray, StatsBank, StatsBank | None]:
        """(the units holding samples of label ``k``, a bank of those samples alone against
        the real data's label ``k`` (None: no unit holds any), the same of the prior's
        (None: no prior)), with this bank's FID settings; built once per label and settings
        (a caller may set ``fid_rank`` and the rest on a live bank, as the proxy game does)."""
        if self.label_share is None or self.real.label_share is None:
            raise ValueError("a per-label utility needs per-label moments in the bank's and the real "
                             "statistics (the task computes them when one of its utilities is per-label)")
        if self.label_share.shape[1] != len(self.real.label_share):
            raise ValueError(f"the bank's statistics have {self.label_share.shape[1]} labels, the real "
                             f"statistics {len(self.real.label_share)}")
        opts = (self.memory_budget, self.fid_rank, self.workdir, self.eig_backend, self.device)
        if (k, opts) not in self._by_label:
            units = np.flatnonzero(self.label_share[:, k] > 0)
            real = self.real.given_label(k)
            prior = None if self.prior is None else StatsBank([self.prior.given_label(k)], real, *opts)
            own = StatsBank([self._stats[u].given_label(k) for u in units], real, *opts) if len(units) else None
            self._by_label[k, opts] = units, own, prior
        return self._by_label[k, opts]

    @cached_property
    def second(self) -> np.ndarray:
        """(L, d * d) the units' second moments, stacked on first use (FID does not use
        them: it reads :meth:`whitened`)."""
        d = self.mean.shape[1]
        return np.stack([s.second for s in self._stats]).reshape(len(self._stats), d * d)

    def whitened(self):
        """FID's per-unit arrays in the real covariance's scaled basis, built once per
        ``fid_rank``: (basis, (L, packed) rotated second moments on the kept directions,
        (L, d - r) their diagonal on the rest, (L, d) rotated means, (L,) traces).
        Statistics read from a store (:class:`StoredStats`) keep them there, keyed by the
        real statistics and ``fid_rank``: built by the first process, mapped by the rest."""
        if self.fid_rank not in self._whitened:
            store = getattr(self._stats, "store", None)
            if store is not None:
                real = self.real
                key = {"fid_rank": self.fid_rank, "real": array_digest(
                    real.mean, real.second, np.array([real.count], dtype=np.float64))}
                if self.fid_rank is not None:
                    key["basis"] = FID_APPROX  # an approximation's arrays of an older way are not served
                store = store.child("whitened", key)
            a = None if store is None else store.read(need=_WHITENED_FIELDS)
            if a is None:
                with contextlib.nullcontext() if store is None else store.writing() as writer:
                    a = self._whiten(writer)  # the writer's arrays: its files once committed
            basis = WhitenedBasis.restore(a["vec"], a["scale"], float(a["trace_r"]), self.fid_rank)
            self._whitened[self.fid_rank] = (basis, a["top"], a["rest"], a["rotated"], a["traces"])
        return self._whitened[self.fid_rank]

    def _whiten(self, writer=None) -> dict:  # its keys: _WHITENED_FIELDS
        """The arrays of :meth:`whitened`, into ``writer`` (a store's) when given."""
        basis = WhitenedBasis(_unbiased_cov(self.real.second, self.real.mean, self.real.count), self.fid_rank)
        L, d = self.mean.shape
        if self.fid_rank is not None:
            basis = basis.turned(self._pooled_cov())

        def new(name, shape):
            return self._array(shape) if writer is None else writer.array(name, shape)

        top, rest = new("top", (L, basis.packed)), new("rest", (L, d - basis.r))
        for u, s in enumerate(self._stats):
            top[u], rest[u] = basis.rotate_second(np.asarray(s.second, dtype=np.float64))
        out = {"top": top, "rest": rest, "rotated": basis.rotate(self.mean), "vec": basis.vec,
               "scale": basis.scale, "trace_r": np.array(basis.trace_r),
               "traces": np.array([np.trace(s.second) for s in self._stats])}
        if writer is not None:
            for k in _WHITENED_FIELDS[2:]:
                writer.put(k, out[k])
        return out

    def _pooled_cov(self) -> np.ndarray:
        """The covariance of all units mixed equally (the grand coalition's, up to the
        units' weights): the approximate mode's basis (:meth:`WhitenedBasis.turned`)."""
        second = np.zeros(2 * self.mean.shape[1:])
        for s in self._stats:  # one unit at a time: the moments may be memory-mapped
            second += np.asarray(s.second, dtype=np.float64)
        mean = self.mean.mean(0)
        return second / len(self._stats) - np.outer(mean, mean)

    def _array(self, shape) -> np.ndarray:
        """A float64 array in memory, or memory-mapped from an unlinked temporary file
        when it exceeds the budget (the disk space is freed with the array)."""
        if 8 * int(np.prod(shape)) <= self.memory_budget:
            return np.empty(shape)
        import tempfile

        fd, path = tempfile.mkstemp(suffix=".npy", prefix="whitened-", dir=self.workdir)
        os.close(fd)
        try:
            return np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=shape)
        finally:
            os.unlink(path)

    def row_bytes(self) -> int:
        """Bytes of one coalition's working arrays: FID's mixed lower triangle and r x r
        matrix dominate."""
        L, d = self.mean.shape
        r = d if self.fid_rank is None else self.fid_rank
        return 8 * (r * r + r * (r + 1) // 2 + 4 * d + 2 * L)

    def rows_per_call(self) -> int:
        """How many coalitions one call evaluates within the memory budget (one row's
        worth kept for the eigensolver's copy of the matrix it works on)."""
        return max(1, self.memory_budget // self.row_bytes() - 1)

    def eig_backend_used(self) -> str:
        """The backend FID's eigensolves run on: ``eig_backend``, or its default."""
        cuda = self.device is not None and self.device.startswith("cuda")
        return self.eig_backend or ("torch" if cuda else "numpy")

    def utility(self, name: str, weights: np.ndarray) -> np.ndarray:
        w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        if w.shape[1] != len(self.mean):
            raise ValueError(f"weights must have {len(self.mean)} columns, got {w.shape}")
        if name not in _UTILITY_FNS:
            raise KeyError(f"unknown utility {name!r}; known: {', '.join(available_utilities())}")
        step = self.rows_per_call()
        fn = _UTILITY_FNS[name]
        return np.concatenate([np.asarray(fn(self, w[i : i + step]), dtype=float).reshape(-1)
                               for i in range(0, max(len(w), 1), step)])


@register_utility("neg_fid")
def _neg_fid(bank: StatsBank, w: np.ndarray) -> np.ndarray:
    basis, top, rest, rotated, traces = bank.whitened()
    mu = w @ bank.mean
    scale = _unbiased_scale((w > 0) @ bank.count)
    tr_cov = scale * (w @ traces - (mu**2).sum(1))
    tr_sqrt = basis.tr_sqrt(w @ top, w @ rest, w @ rotated, scale, bank.eig_backend_used(), bank.device)
    return -(((mu - bank.real.mean) ** 2).sum(1) + tr_cov + basis.trace_r - 2 * tr_sqrt)


@register_utility("inception_score")
def _inception_score(bank: StatsBank, w: np.ndarray) -> np.ndarray:
    pbar = w @ bank.pbar
    kl = w @ bank.neg_entropy - (pbar * np.log(np.clip(pbar, 1e-12, None))).sum(1)
    return np.exp(kl)


@register_utility("coverage")
def _coverage(bank: StatsBank, w: np.ndarray) -> np.ndarray:
    return np.minimum(w @ bank.modes, bank.real.modes).sum(1)


@register_utility("neg_intra_fid", per_label=True)
def _neg_intra_fid(bank: StatsBank, w: np.ndarray) -> np.ndarray:
    """Minus intra-FID (Miyato & Koyama, 2018): the FID of each label's samples against
    the real images of that label, averaged over the K labels with equal weight, so a
    sample is judged against its own label and a label's share of the mixture does not
    weigh it. A label the mixture lacks counts the empty coalition's FID for it (the
    prior's samples of that label): the mean is always over all K labels, v(empty) is
    the prior's, and a coalition gains by covering a label as well as by its quality."""
    if bank.real.label_share is None:
        raise ValueError("neg_intra_fid needs the real statistics' per-label moments")
    n_labels = len(bank.real.label_share)
    out = np.zeros(len(w))
    for k in range(n_labels):
        units, sub, prior = bank.given_label(k)
        wk = w[:, units] * bank.label_share[units, k]  # the mixture's joint weights of label k
        p = wk.sum(1)
        some = p > 0
        if not some.all():
            if prior is None:
                raise ValueError(f"a mixture lacks label {k}: neg_intra_fid then reads the empty coalition's "
                                 "statistics (the bank's prior), which this bank was not given")
            out[~some] += prior.utility("neg_fid", np.ones((1, 1)))[0]
        if some.any():
            out[some] += sub.utility("neg_fid", wk[some] / p[some, None])
    return out / n_labels


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


def utility_from_stats(name: str, gen: LabelStats, real: LabelStats, prior: LabelStats | None = None) -> float:
    """One utility of generated statistics ``gen`` against the real data's ``real``
    (``prior``: the empty coalition's, for a per-label utility; see :class:`StatsBank`).

    FID uses the unbiased (n - 1) covariance, as torchmetrics does.
    """
    return float(StatsBank([gen], real, prior=prior).utility(name, np.ones((1, 1)))[0])
