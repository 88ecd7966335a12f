"""Utilities of text-to-image tasks, computed from per-image features.

The paper's T2I utilities are not sufficient statistics (quantiles of aesthetic scores,
an entropy over clusters fitted to the generated set), so a coalition's samples are kept
as a :class:`FeatureSet`: per-image feature arrays plus per-image weights. A proxy
mixture of sample banks is then one FeatureSet with weights pi_S(unit) / n_unit per
image, and a freshly generated set is one with equal weights: the same functions
score both.

Features (names used by the featurizers and utilities):
- ``embedding``: (N, d) L2-normalised CLIP image embeddings (diversity clusters them);
- ``aesthetic``: (N,) LAION aesthetic score of each image;
- ``lpips``: (N,) LPIPS distance of each image to its prompt's training image;
- one (N,) 0/1 array per attribute classifier (``sex``, ``melanoma`` in the clinical
  audit): whether the classifier calls the image positive.

LPIPS is :class:`~surrogateshap.tasks.features.lpips.LPIPS`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from surrogateshap.tasks.data.t2i import load_images

__all__ = [
    "FeatureSet", "weighted_quantile", "diversity_entropy", "T2I_UTILITIES",
    "register_t2i_utility", "t2i_utility", "T2IFeaturizer", "phi_from_means", "load_attribute_classifier",
    "attribute_positive",
]


@dataclass
class FeatureSet:
    """Per-image features of a set of generated images and their mixture weights.

    ``weights`` (N,) are normalised to sum to 1; None means equal weights. A weight is
    the image's share of the distribution being scored (a bank image of unit u in a
    proxy mixture carries pi_S(u) / n_u).
    """

    features: dict[str, np.ndarray]
    weights: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.features:
            raise ValueError("a FeatureSet needs at least one feature array")
        n = {len(v) for v in self.features.values()}
        if len(n) != 1:
            raise ValueError(f"feature arrays have different lengths: "
                             f"{ {k: len(v) for k, v in self.features.items()} }")
        (self._n,) = n
        if self._n == 0:
            raise ValueError("a FeatureSet needs at least one image")
        if self.weights is None:
            self.weights = np.full(self._n, 1.0 / self._n)
        else:
            w = np.asarray(self.weights, dtype=np.float64)
            if w.shape != (self._n,) or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
                raise ValueError(f"weights must be {self._n} non-negative finite numbers, not all zero")
            self.weights = w / w.sum()

    def __len__(self) -> int:
        return self._n

    def get(self, name: str) -> np.ndarray:
        if name not in self.features:
            raise KeyError(f"this utility needs the feature {name!r}; the set has {sorted(self.features)} "
                           "(configure the featurizer that computes it)")
        return self.features[name]


# --- weighted statistics ------------------------------------------------------------
def weighted_quantile(values, weights, q) -> float:
    """The q-quantile of a weighted sample: the smallest value whose cumulative weight
    reaches q (numpy's "inverted_cdf" rule, so integer weights equal repeated values)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    w = np.asarray(weights, dtype=np.float64).ravel()
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    keep = w > 0
    v, w = v[keep], w[keep]
    order = np.argsort(v, kind="stable")
    cum = np.cumsum(w[order])
    cum /= cum[-1]
    # a tolerance so that q = k/n with equal weights lands on value k, as numpy's does
    return float(v[order][np.searchsorted(cum, q - 1e-12, side="left").clip(0, len(v) - 1)])


def diversity_entropy(embeddings, weights=None, k: int = 20, seed: int = 0, n_init: int = 4) -> float:
    """Entropy (nats) of the cluster proportions of a weighted set of image embeddings,
    with k-means (k clusters) fitted to this set, as the paper scores diversity.

    More even use of more clusters = higher. Needs at least k distinct embeddings.
    """
    from sklearn.cluster import KMeans

    x = np.asarray(embeddings, dtype=np.float64)
    w = np.full(len(x), 1.0 / len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = w > 0
    x, w = x[keep], w[keep]
    if len(np.unique(x, axis=0)) < k:
        raise ValueError(f"diversity over {k} clusters needs at least {k} distinct images, got "
                         f"{len(np.unique(x, axis=0))}")
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x, sample_weight=w)
    p = np.bincount(km.labels_, weights=w, minlength=k)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


# --- the utility registry -----------------------------------------------------------
#: name -> fn(FeatureSet) -> float, higher is better
T2I_UTILITIES: dict = {}


def register_t2i_utility(name: str):
    """Decorator registering a T2I utility ``fn(FeatureSet) -> float`` (higher is better)."""

    def deco(fn):
        if name in T2I_UTILITIES and T2I_UTILITIES[name] is not fn:
            raise ValueError(f"T2I utility {name!r} is already registered")
        T2I_UTILITIES[name] = fn
        return fn

    return deco


def t2i_utility(name: str, fs: FeatureSet, **kwargs) -> float:
    if name not in T2I_UTILITIES:
        raise KeyError(f"unknown T2I utility {name!r}; known: {', '.join(sorted(T2I_UTILITIES))}")
    return float(T2I_UTILITIES[name](fs, **kwargs))


@register_t2i_utility("aesthetic")
def _aesthetic_mean(fs: FeatureSet) -> float:
    """Mean LAION aesthetic score."""
    return float(fs.weights @ fs.get("aesthetic"))


def _aesthetic_quantile(q):
    def fn(fs: FeatureSet) -> float:
        return weighted_quantile(fs.get("aesthetic"), fs.weights, q)

    fn.__doc__ = f"The {q} quantile of the LAION aesthetic scores."
    return fn


for _q, _name in ((0.5, "aesthetic_q50"), (0.75, "aesthetic_q75"), (0.9, "aesthetic_q90")):
    register_t2i_utility(_name)(_aesthetic_quantile(_q))


@register_t2i_utility("neg_lpips")
def _neg_lpips(fs: FeatureSet) -> float:
    """Minus the mean LPIPS distance to the prompts' training images (higher = closer)."""
    return -float(fs.weights @ fs.get("lpips"))


@register_t2i_utility("diversity")
def _diversity(fs: FeatureSet, k: int = 20) -> float:
    """Entropy over k = 20 k-means clusters of the CLIP image embeddings."""
    return diversity_entropy(fs.get("embedding"), fs.weights, k=k)


def phi_from_means(a, b, ab):
    """Phi coefficient of two 0/1 variables from the (weighted) means of a, b and a*b;
    0 where either is constant (no association can be measured). Broadcasts."""
    a, b, ab = (np.asarray(x, dtype=np.float64) for x in (a, b, ab))
    var = a * (1 - a) * b * (1 - b)
    return np.where(var > 1e-12, (ab - a * b) / np.sqrt(np.maximum(var, 1e-12)), 0.0)


@register_t2i_utility("sex_melanoma_correlation")
def _sex_melanoma_correlation(fs: FeatureSet) -> float:
    """Phi between the sex and melanoma classifiers' calls over the generated images
    (the clinical audit's spurious correlation; 0 where either call is constant)."""
    s, m = fs.get("sex"), fs.get("melanoma")
    w = fs.weights
    return float(phi_from_means(w @ s, w @ m, w @ (s * m)))


# --- attribute classifiers (the clinical audit's; user-supplied local files) --------
def load_attribute_classifier(path, name: str, device="cpu"):
    """A TorchScript attribute classifier (image batch (N, 3, H, W) in [0, 1] -> logits,
    (N,) / (N, 1) for one positive logit or (N, 2) with the positive class second).

    Trusted files only: a TorchScript file is a program (``torch.jit.load`` reads it, and
    scoring runs its code), unlike a state dict of weights, so load only classifiers you
    made or got from a source you trust. The classifiers are the user's own networks of
    any architecture, so there is no known model to read bare weights into."""
    import torch

    from surrogateshap.tasks.data.images import require_file

    path = require_file(path, f"the {name} classifier", "a TorchScript file (torch.jit.save of a model "
                        "from image batches to logits; it runs code: use only a file you trust)")
    try:
        return torch.jit.load(os.fspath(path), map_location=device).eval()
    except (RuntimeError, ValueError) as e:
        said = (str(e).strip().splitlines() or [""])[0][:160]
        raise ValueError(f"the {name} classifier {path} is not a TorchScript model: {said}") from e


def attribute_positive(logits, name: str = "attribute") -> np.ndarray:
    """0/1 calls from a classifier's logits: one logit > 0, or class 1 of two."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 2 and z.shape[1] == 1:
        z = z[:, 0]
    if z.ndim == 1:
        return (z > 0).astype(np.float64)
    if z.ndim == 2 and z.shape[1] == 2:
        return (z[:, 1] > z[:, 0]).astype(np.float64)
    raise ValueError(f"the {name} classifier must return (N,), (N, 1) or (N, 2) logits; got shape {z.shape}")


# --- the featurizer of generated images ---------------------------------------------
class T2IFeaturizer:
    """Generated images (and their units) -> the per-image features the utilities need.

    ``embedder``: images (N, 3, H, W) in [0, 1] -> (N, d) embeddings (a
    :class:`~surrogateshap.tasks.features.clip.CLIPImageEmbedder` or any callable; they are
    L2-normalised here). ``aesthetic``: embeddings -> (N,) scores (an
    :class:`~surrogateshap.tasks.features.clip.AestheticHead`). ``lpips`` with
    ``references`` (unit -> its training image, anything :func:`load_images` reads,
    loaded when used): the distance of each image to its unit's reference, resized
    to the generated images' size. ``attributes``: name -> classifier (images ->
    logits, :func:`attribute_positive`), each image's 0/1 call, the images resized to
    ``attribute_size`` first (None: as generated). ``name`` identifies the featurizer in
    bank headers (banks of different featurizers never mix).
    """

    def __init__(self, embedder=None, aesthetic=None, lpips=None,
                 references: dict | None = None, name: str = "t2i", attributes: dict | None = None,
                 attribute_size: int | None = None):
        if aesthetic is not None and embedder is None:
            raise ValueError("the aesthetic head scores CLIP embeddings: give an embedder too")
        if lpips is not None and not references:
            raise ValueError("LPIPS compares each image to its prompt's training image: give references")
        self.embedder, self.aesthetic, self.lpips = embedder, aesthetic, lpips
        self.references = references or {}
        self.attributes, self.attribute_size = dict(attributes or {}), attribute_size
        self.name = name

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(n for n, on in (("embedding", self.embedder), ("aesthetic", self.aesthetic),
                                     ("lpips", self.lpips)) if on is not None) + tuple(self.attributes)

    def __call__(self, images, units) -> dict[str, np.ndarray]:
        import torch

        x = torch.as_tensor(images, dtype=torch.float32)
        if len(units) != len(x):
            raise ValueError(f"{len(x)} images but {len(units)} units")
        out = {}
        if self.embedder is not None:
            with torch.no_grad():
                e = torch.as_tensor(self.embedder(x)).float().cpu()
            e = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            out["embedding"] = e.numpy().astype(np.float32)
            if self.aesthetic is not None:
                out["aesthetic"] = np.asarray(self.aesthetic(e), dtype=np.float64).reshape(-1)
        if self.lpips is not None:
            missing = [u for u in dict.fromkeys(units) if u not in self.references]
            if missing:
                raise KeyError(f"no LPIPS reference image for unit(s) {missing[:3]}")
            ref = load_images([self.references[u] for u in units], x.shape[-1])
            out["lpips"] = self.lpips(x, ref)
        if self.attributes:
            xa = x if self.attribute_size is None or x.shape[-1] == self.attribute_size else \
                torch.nn.functional.interpolate(x, size=(self.attribute_size,) * 2, mode="bilinear",
                                                align_corners=False, antialias=True)
            for name, net in self.attributes.items():
                params = net.parameters() if hasattr(net, "parameters") else ()
                dev = next(iter(params), xa).device  # a classifier on the GPU gets its input there
                with torch.no_grad():
                    logits = torch.as_tensor(net(xa.to(dev))).float().cpu().numpy()
                calls = attribute_positive(logits, name)
                if len(calls) != len(x):
                    raise ValueError(f"the {name} classifier returned {len(calls)} calls for {len(x)} images")
                out[name] = calls
        if not out:
            raise ValueError("the featurizer computes nothing: give an embedder, LPIPS or attribute classifiers")
        return out
