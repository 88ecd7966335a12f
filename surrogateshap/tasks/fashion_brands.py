"""``fashion-brands``: the Fashion-Product protocol on images that ship in a package.

Contributors are synthetic brands sharing real Fashion-MNIST images (Debian
``dataset-fashion-mnist``): each brand owns ``per_brand`` training images whose garment
types follow its own Dirichlet mix over the 10 classes, and stamps a visual signature
of its own on them (a contrast gain, a stripe texture of some period and direction, for
half the brands a frame), so coalitions differ in diversity and in what "faithful to
the brand" means. The model is conditioned on (garment type, brand) units, the
Fashion-Product analogue of a product's prompt, so the proxy mixes one sample bank per
unit (:meth:`DiffusionTask.unit_weights`).

Utilities, as in the paper's Fashion-Product task: ``diversity`` (entropy of the
samples over 20 k-means clusters of the real features) and ``neg_fidelity`` (minus an
LPIPS-style distance of each sample to the training images of its unit: mean squared
distance between unit-normalised features of the project's own classifier), plus
``neg_fid``. The classifier is trained on the task's images with the units as classes,
so its features see both the garment and the brand's signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar
from functools import cached_property

import numpy as np

from surrogateshap.tasks.base import allocate_counts
from surrogateshap.tasks.composed import DATA_DIR, ImageTask, PresetConfig
from surrogateshap.tasks.datasets import FASHION_CLASSES, ImageDataset, load_fashion_mnist, resize

__all__ = ["FashionBrandsConfig", "FashionBrandsTask", "BrandSignature", "brand_signatures",
           "brand_class_counts", "fashion_brands_dataset", "TEXTURES"]

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


@dataclass(frozen=True)
class FashionBrandsConfig(PresetConfig):
    n_brands: int = 24
    per_brand: int = 100
    alpha: float = 0.5  # Dirichlet concentration of each brand's garment mix
    seed: int = 0  # the brands' mixes and signatures
    size: int = 16
    family: str = "mlp"
    hidden: int = 256  # mlp
    blocks: int = 2  # mlp
    skip: bool = True  # mlp (see fashion-animal20's card)
    channels: tuple[int, ...] = (32, 64)  # unet
    layers_per_block: int = 1  # unet
    attention: bool = False  # unet
    # 4,000 steps: at 1,500 the samples' class matched their unit's in 34% (58% at 4,000;
    # dataset card)
    steps: int = 4000
    batch_size: int = 128
    lr: float = 3e-3
    p_uncond: float = 0.1
    guidance: float = 2.0
    sample_steps: int = 20
    n_samples: int = 1000
    bank_per_label: int = 20  # per (brand, garment) unit
    n_modes: int = 20  # the paper's 20 diversity clusters
    featurizer: str = "net"
    models_per_batch: int = 8  # speed only
    device: str = "auto"

    PRESETS: ClassVar[dict[str, dict]] = {
        "ci": dict(per_brand=30, hidden=128, steps=300, n_samples=200, bank_per_label=4),
        "default": {},
        "paper": dict(family="unet", steps=3000, batch_size=64, lr=1e-3, guidance=1.4,
                      n_samples=2000, bank_per_label=50, models_per_batch=1),
    }


class FashionBrandsTask(ImageTask):
    name = "fashion-brands"
    shipped_nets = {"features": DATA_DIR / "fashion_brands_featurenet.pt"}
    config_cls = FashionBrandsConfig
    utilities = ("diversity", "neg_fidelity", "neg_fid")

    @property
    def players(self) -> tuple[str, ...]:
        return tuple(f"brand_{b:02d}" for b in range(self.config.n_brands))

    def load_dataset(self):
        c = self.config
        return fashion_brands_dataset(c.n_brands, c.per_brand, c.alpha, c.seed, c.size)

    @cached_property
    def signatures(self) -> list[BrandSignature]:
        return brand_signatures(self.config.n_brands, self.config.seed)

    @staticmethod
    def _normalised(feats) -> np.ndarray:
        f = np.asarray(feats, dtype=np.float64)
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)

    @cached_property
    def _unit_features(self):
        """Per unit: mean unit-normalised feature m_u and mean squared norm s_u of its
        training images, so E_t ||a - t||^2 = ||a||^2 - 2 a.m_u + s_u is exact."""
        f = self._normalised(self.features(self.dataset.images)[0])
        u = self.item_unit
        n = np.bincount(u, minlength=self.n_units)[:, None]
        mean = np.zeros((self.n_units, f.shape[1]))
        np.add.at(mean, u, f)
        sq = np.bincount(u, weights=(f**2).sum(1), minlength=self.n_units)
        return mean / n, sq / n[:, 0]

    def sample_scores(self, images, feats, units) -> dict:
        """``fidelity_dist``: mean squared distance of each image's normalised feature to
        those of its unit's training images (LPIPS's normalise-then-compare, one layer)."""
        if units is None:
            raise ValueError("fashion-brands scores fidelity to a unit: pass the unit of each image")
        units = np.asarray(units, dtype=np.int64)
        a = self._normalised(feats)
        mean, sq = self._unit_features
        dist = (a**2).sum(1) - 2 * (a * mean[units]).sum(1) + sq[units]
        return {"fidelity_dist": dist}
