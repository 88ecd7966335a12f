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
from functools import cached_property
from typing import ClassVar

import numpy as np

from surrogateshap.tasks.base import DiffusionTask
from surrogateshap.tasks.common import DATA_DIR
from surrogateshap.tasks.config import ImageTaskConfig
from surrogateshap.tasks.data.fashion_brands import (
    BrandSignature,
    brand_signatures,
    fashion_brands_dataset,
)

__all__ = ["FashionBrandsConfig", "FashionBrandsTask"]


@dataclass(frozen=True)
class FashionBrandsConfig(ImageTaskConfig):
    n_brands: int = 24
    per_brand: int = 100
    alpha: float = 0.5  # Dirichlet concentration of each brand's garment mix
    seed: int = 0  # the brands' mixes and signatures
    size: int = 16
    # 4,000 steps: at 1,500 the samples' class matched their unit's in 34% (58% at 4,000;
    # dataset card)
    steps: int = 4000
    bank_per_label: int = 20  # per (brand, garment) unit
    n_modes: int = 20  # the paper's 20 diversity clusters

    PRESETS: ClassVar[dict[str, dict]] = {
        "ci": dict(per_brand=30, hidden=128, steps=300, n_samples=200, bank_per_label=4),
        "default": {},
        "paper": dict(family="unet", steps=3000, batch_size=64, lr=1e-3, guidance=1.4,
                      n_samples=2000, bank_per_label=50, models_per_batch=1),
    }


class FashionBrandsTask(DiffusionTask):
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
