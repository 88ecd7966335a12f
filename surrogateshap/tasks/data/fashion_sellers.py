"""The fashion-sellers dataset: several sellers per Fashion-MNIST class, a few of them
planted as low-quality by construction (see :mod:`surrogateshap.tasks.catalog.fashion_sellers`)."""

from __future__ import annotations

import numpy as np

from surrogateshap.tasks.data.images import (
    FASHION_CLASSES,
    ImageDataset,
    load_fashion_mnist,
    resize,
)

__all__ = ["DEFECTS", "degrade", "fashion_sellers_dataset", "clean_reference"]

#: what a planted seller does to its images
DEFECTS = ("blur", "noise", "mislabel", "duplicate")


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(images, sigma=(0, 0, sigma, sigma), mode="nearest").astype(np.float32)


def degrade(images: np.ndarray, defect: str, rng: np.random.Generator, config) -> np.ndarray:
    """A planted seller's version of its (clean, resized) images: ``blur`` (Gaussian,
    ``blur_sigma`` pixels), ``noise`` (Gaussian, ``noise_sd`` in [-1, 1] units, clipped),
    ``duplicate`` (``n_unique`` of its images repeated to fill its share). ``mislabel``
    is made by the caller (other-class images under this label)."""
    if defect == "blur":
        return _blur(images, config.blur_sigma)
    if defect == "noise":
        return np.clip(images + rng.normal(0, config.noise_sd, images.shape), -1, 1).astype(np.float32)
    if defect == "duplicate":
        keep = images[: config.n_unique]
        return keep[np.arange(len(images)) % len(keep)]
    raise ValueError(f"unknown defect {defect!r}; known: {DEFECTS}")


def _check(config) -> None:
    c = config
    n_classes = len(FASHION_CLASSES)
    if not c.classes or len(set(c.classes)) != len(c.classes) or not all(0 <= k < n_classes for k in c.classes):
        raise ValueError(f"classes must be distinct Fashion-MNIST class indices 0..{n_classes - 1}; got {c.classes}")
    if c.sellers_per_class < 1 or c.per_seller < 1:
        raise ValueError("sellers_per_class and per_seller must be >= 1")
    n = len(c.classes) * c.sellers_per_class
    seen = set()
    for entry in c.planted:
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise ValueError(f"planted holds (seller index, defect) pairs; got {entry!r}")
        s, defect = entry
        is_index = isinstance(s, (int, np.integer)) and not isinstance(s, bool)
        if not is_index or not 0 <= s < n or s in seen:
            raise ValueError(f"planted seller {s!r} must be a distinct index in 0..{n - 1}")
        if defect not in DEFECTS:
            raise ValueError(f"planted seller {s}: unknown defect {defect!r}; known: {DEFECTS}")
        seen.add(s)
    if c.mislabel_source in c.classes or not 0 <= c.mislabel_source < n_classes:
        raise ValueError(f"mislabel_source must be a Fashion-MNIST class outside the task's classes {c.classes}; "
                         f"got {c.mislabel_source}")
    if any(d == "duplicate" for _, d in c.planted) and not 1 <= c.n_unique <= c.per_seller:
        raise ValueError(f"n_unique must be in 1..per_seller ({c.per_seller}); got {c.n_unique}")


def fashion_sellers_dataset(config, fashion_root=None) -> ImageDataset:
    """Seller s sells class ``classes[s // sellers_per_class]``: the next ``per_seller``
    unused Fashion-MNIST training images of that class in file order (no image is
    shared), resized to ``size``; a planted seller's images are then degraded (a
    ``mislabel`` seller offers images of ``mislabel_source`` under its label). Units =
    the task's classes (the paper's label proxy conditions on them); ``classes`` = the
    declared class of each item, contributors = sellers."""
    _check(config)
    c = config
    fx, fy = load_fashion_mnist("train", fashion_root)
    planted = dict(c.planted)
    rng = np.random.default_rng([c.seed, 3])
    used: dict[int, int] = {}
    images, labels, sellers = [], [], []
    n_sellers = len(c.classes) * c.sellers_per_class
    for s in range(n_sellers):
        label = s // c.sellers_per_class
        source = c.mislabel_source if planted.get(s) == "mislabel" else c.classes[label]
        pool = np.flatnonzero(fy == source)
        start = used.get(source, 0)
        take = pool[start : start + c.per_seller]
        if len(take) < c.per_seller:
            raise ValueError(f"{n_sellers} sellers x {c.per_seller} images need more images of class "
                             f"{FASHION_CLASSES[source]} than Fashion-MNIST's {len(pool)}")
        used[source] = start + c.per_seller
        x = resize(fx[take][:, None], c.size)
        if planted.get(s) in ("blur", "noise", "duplicate"):
            x = degrade(x, planted[s], rng, c)
        images.append(x)
        labels.append(np.full(len(take), label))
        sellers.append(np.full(len(take), s))
    cat = lambda xs: np.concatenate(xs).astype(np.int64)  # noqa: E731
    players = tuple(f"seller_{s:02d}" for s in range(n_sellers))
    units = tuple(FASHION_CLASSES[k] for k in c.classes)
    return ImageDataset("fashion-sellers", np.concatenate(images), cat(labels), players, units=units,
                        contributors=cat(sellers), classes=cat(labels))


def clean_reference(config, per_class: int, fashion_root=None) -> tuple[np.ndarray, np.ndarray]:
    """(images, label index) of clean images of the task's classes from Fashion-MNIST's
    *test* split (``per_class`` each, file order): what the scoring network learns and
    FID compares with, so no seller's data, good or bad, defines quality."""
    _check(config)
    fx, fy = load_fashion_mnist("test", fashion_root)
    idx, lab = [], []
    for i, k in enumerate(config.classes):
        pool = np.flatnonzero(fy == k)[:per_class]
        if len(pool) < per_class:
            raise ValueError(f"Fashion-MNIST's test split has {len(pool)} images of {FASHION_CLASSES[k]}, "
                             f"fewer than per_class = {per_class}")
        idx.append(pool)
        lab.append(np.full(len(pool), i))
    idx = np.concatenate(idx)
    return resize(fx[idx][:, None], config.size), np.concatenate(lab).astype(np.int64)
