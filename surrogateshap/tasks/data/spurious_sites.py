"""The spurious-sites dataset: Fashion-MNIST garments split over sites, a marker stamped
on the planted sites' images of one class (see :mod:`surrogateshap.tasks.catalog.spurious_sites`)."""

from __future__ import annotations

import numpy as np

from surrogateshap.tasks.common import allocate_counts
from surrogateshap.tasks.data.images import (
    FASHION_CLASSES,
    ImageDataset,
    load_fashion_mnist,
    resize,
)

__all__ = ["stamp_marker", "spurious_sites_dataset"]


def stamp_marker(images: np.ndarray, size: int = 3) -> np.ndarray:
    """A copy of images (N, C, H, W) in [-1, 1] with a ``size`` x ``size`` white square
    in the top-left corner (pixel value 1)."""
    out = np.array(images, dtype=np.float32, copy=True)
    out[..., :size, :size] = 1.0
    return out


def spurious_sites_dataset(config,
                           fashion_root=None) -> tuple[ImageDataset, np.ndarray, np.ndarray]:
    """(dataset with the markers, the same images clean, stamped (N,) bool) of a
    :class:`~surrogateshap.tasks.catalog.spurious_sites.SpuriousSitesConfig`.

    Site s takes, per class, the next unused training images of that class in file
    order (counts from its Dirichlet mix). On each planted site, round(marker_fraction
    x n) of its n target-class images, chosen under the seed, are stamped."""
    c = config
    bad = [s for s in c.planted if not 0 <= s < c.n_sites]
    if bad or len(set(c.planted)) != len(c.planted):
        raise ValueError(f"planted sites {c.planted} must be distinct indices in 0..{c.n_sites - 1}")
    if not 0 <= c.target_class < len(FASHION_CLASSES) or not 0 <= c.marker_fraction <= 1:
        raise ValueError("target_class must be a Fashion-MNIST class and marker_fraction in [0, 1]")
    fx, fy = load_fashion_mnist("train", fashion_root)
    rng = np.random.default_rng([c.seed, 2])
    mixes = rng.dirichlet(np.full(len(FASHION_CLASSES), c.alpha), size=c.n_sites)
    counts = np.stack([allocate_counts(c.per_site, m) for m in mixes])
    by_class = [np.flatnonzero(fy == k) for k in range(len(FASHION_CLASSES))]
    used = np.zeros(len(FASHION_CLASSES), dtype=int)
    idx, sites = [], []
    for s in range(c.n_sites):
        for k in np.flatnonzero(counts[s]):
            take = by_class[k][used[k] : used[k] + counts[s, k]]
            if len(take) < counts[s, k]:
                raise ValueError(f"not enough images of class {FASHION_CLASSES[k]} for {c.n_sites} sites")
            used[k] += counts[s, k]
            idx.append(take)
            sites.append(np.full(len(take), s))
    idx, sites = np.concatenate(idx), np.concatenate(sites).astype(np.int64)
    classes = fy[idx].astype(np.int64)
    clean = resize(fx[idx][:, None], c.size)
    stamped = np.zeros(len(idx), bool)
    for s in c.planted:
        pool = np.flatnonzero((sites == s) & (classes == c.target_class))
        k = int(np.floor(c.marker_fraction * len(pool) + 0.5))
        stamped[np.sort(rng.permutation(pool)[:k])] = True
    images = clean.copy()
    images[stamped] = stamp_marker(clean[stamped], c.marker_size)
    players = tuple(f"site_{s:02d}" for s in range(c.n_sites))
    if not c.condition_on_class:
        return ImageDataset("spurious-sites", images, sites, players, classes=classes), clean, stamped
    pairs = sorted(set(zip(sites.tolist(), classes.tolist())))
    index = {p: i for i, p in enumerate(pairs)}
    units = tuple(f"site_{s:02d}/{FASHION_CLASSES[k]}" for s, k in pairs)
    labels = np.array([index[p] for p in zip(sites.tolist(), classes.tolist())], dtype=np.int64)
    ds = ImageDataset("spurious-sites", images, labels, players, units=units, contributors=sites,
                      classes=classes)
    return ds, clean, stamped
