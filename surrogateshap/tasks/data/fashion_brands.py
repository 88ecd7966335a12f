"""The fashion-brands dataset: synthetic brands sharing real Fashion-MNIST images, each
with its own garment mix and visual signature (see :mod:`surrogateshap.tasks.catalog.fashion_brands`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from surrogateshap.tasks.common import allocate_counts
from surrogateshap.tasks.data.images import (
    FASHION_CLASSES,
    ImageDataset,
    load_fashion_mnist,
    resize,
)

__all__ = ["BrandSignature", "brand_signatures", "brand_class_counts", "fashion_brands_dataset", "TEXTURES"]

TEXTURES = ("plain", "hstripes", "vstripes", "diagonal")


@dataclass(frozen=True)
class BrandSignature:
    """A brand's deterministic look: in [0, 1] pixel units u -> gain * u * (1 - amp * P)
    for a 0/1 texture P of the given period, then an optional 1-pixel frame at ``frame``."""

    gain: float
    texture: str
    period: int
    amp: float
    frame: float | None

    def pattern(self, size: int) -> np.ndarray:
        i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        p = {"plain": np.zeros_like(i), "hstripes": i % self.period == 0,
             "vstripes": j % self.period == 0, "diagonal": (i + j) % self.period == 0}[self.texture]
        return p.astype(np.float32)

    def apply(self, images: np.ndarray) -> np.ndarray:
        """images (N, C, H, W) in [-1, 1] -> the brand's version, same range."""
        u = (np.asarray(images, np.float32) + 1) / 2
        u = self.gain * u * (1 - self.amp * self.pattern(u.shape[-1]))
        if self.frame is not None:
            u[..., [0, -1], :] = self.frame
            u[..., :, [0, -1]] = self.frame
        return (np.clip(u, 0, 1) * 2 - 1).astype(np.float32)


def brand_signatures(n_brands: int, seed: int = 0) -> list[BrandSignature]:
    """Brand b's texture, period and frame follow b's digits in a mixed radix (4 textures
    x 3 periods x frame or not), so the first 24 brands all differ in structure; gain,
    amplitude and frame level are drawn under ``seed``."""
    rng = np.random.default_rng([seed, 1])
    out = []
    for b in range(n_brands):
        gain, amp, level = rng.uniform(0.6, 1.0), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.7)
        out.append(BrandSignature(gain=float(gain), texture=TEXTURES[b % 4], period=2 + (b // 4) % 3,
                                  amp=float(amp), frame=float(level) if (b // 12) % 2 else None))
    return out


def brand_class_counts(n_brands: int, per_brand: int, alpha: float, seed: int = 0) -> np.ndarray:
    """(n_brands, 10) garment counts: brand b's Dirichlet(alpha) mix, rounded to
    ``per_brand`` items by largest remainder."""
    rng = np.random.default_rng([seed, 0])
    mixes = rng.dirichlet(np.full(len(FASHION_CLASSES), alpha), size=n_brands)
    return np.stack([allocate_counts(per_brand, m) for m in mixes])


def fashion_brands_dataset(n_brands: int = 24, per_brand: int = 100, alpha: float = 0.5, seed: int = 0,
                           size: int = 16, fashion_root=None) -> ImageDataset:
    """Brand b takes, for each garment class, the next unused Fashion-MNIST training
    images of that class in file order (no image is shared), resized to ``size`` and
    then given b's signature. Units = the (brand, class) pairs present, brand-major."""
    fx, fy = load_fashion_mnist("train", fashion_root)
    counts = brand_class_counts(n_brands, per_brand, alpha, seed)
    by_class = [np.flatnonzero(fy == c) for c in range(len(FASHION_CLASSES))]
    need = counts.sum(0)
    for c, n in enumerate(need):
        if n > len(by_class[c]):
            raise ValueError(f"{n_brands} brands x {per_brand} items need {n} images of class "
                             f"{FASHION_CLASSES[c]}; Fashion-MNIST has {len(by_class[c])}")
    signatures = brand_signatures(n_brands, seed)
    used = np.zeros(len(FASHION_CLASSES), dtype=int)
    images, labels, brands, classes, units = [], [], [], [], []
    for b in range(n_brands):
        for c in np.flatnonzero(counts[b]):
            idx = by_class[c][used[c] : used[c] + counts[b, c]]
            used[c] += counts[b, c]
            images.append(signatures[b].apply(resize(fx[idx][:, None], size)))
            labels.append(np.full(len(idx), len(units)))
            brands.append(np.full(len(idx), b))
            classes.append(np.full(len(idx), c))
            units.append(f"brand_{b:02d}/{FASHION_CLASSES[c]}")
    players = tuple(f"brand_{b:02d}" for b in range(n_brands))
    cat = lambda xs: np.concatenate(xs).astype(np.int64)  # noqa: E731
    return ImageDataset("fashion-brands", np.concatenate(images), cat(labels), players, units=tuple(units),
                        contributors=cat(brands), classes=cat(classes))
