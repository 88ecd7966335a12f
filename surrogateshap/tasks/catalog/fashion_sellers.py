"""``fashion-sellers``: dense contributors, several sellers per label, some of them bad.

The paper's proxy conditions the one full model on a coalition's *labels*, so two
sellers who supply images of the same label get the same proxy value whatever their
quality: its tasks hide this, since each player there owns a label. A data marketplace
is the dense case. Here 24 sellers (``sellers_per_class`` = 4 for each of 6
Fashion-MNIST classes, Debian ``dataset-fashion-mnist``) each supply ``per_seller``
images of one class, and the ``planted`` sellers are low-quality by construction: heavy
blur, heavy noise, images of another class under their label, or a handful of images
repeated (:mod:`surrogateshap.tasks.data.fashion_sellers`).

The model is conditioned on the class (what a marketplace's model is trained on), so
the retraining game is the truth and the paper's proxy is the *label proxy*. The proxy
that sees sellers is the task's :meth:`~surrogateshap.tasks.base.DiffusionTask.seller_view`:
the full model conditioned on (class, seller), one bank per seller.

Quality is measured against clean images that no seller supplied (Fashion-MNIST's test
split, ``reference_per_class`` per class), on a network trained on them alone
(``surrogateshap/data/fashion_sellers_featurenet.pt``): ``neg_fid``, ``inception_score``
over the 6 classes, and ``label_accuracy``, the share of samples that network puts in
the class they were generated for. The planted sellers should carry the *lowest* values
(:func:`surrogateshap.metrics.precision_at_k` on minus the values).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from surrogateshap.tasks.base import DiffusionTask
from surrogateshap.tasks.common import DATA_DIR
from surrogateshap.tasks.config import ImageTaskConfig
from surrogateshap.tasks.data.fashion_sellers import clean_reference, fashion_sellers_dataset
from surrogateshap.tasks.features.statistics import StatsBank, bank_score, register_utility

__all__ = ["FashionSellersConfig", "FashionSellersTask"]


@dataclass(frozen=True)
class FashionSellersConfig(ImageTaskConfig):
    #: T-shirt/top, trouser, dress, sandal, sneaker, bag
    classes: tuple[int, ...] = (0, 1, 3, 5, 7, 8)
    sellers_per_class: int = 4
    per_seller: int = 150
    #: (seller, defect): one planted seller in each of four classes
    planted: tuple[tuple[int, str], ...] = ((1, "blur"), (6, "noise"), (11, "mislabel"), (12, "duplicate"))
    blur_sigma: float = 1.5  # pixels at ``size``
    noise_sd: float = 0.6  # in [-1, 1] pixel units
    n_unique: int = 6  # a duplicating seller's distinct images
    mislabel_source: int = 9  # ankle boots, offered under the mislabelling seller's label
    reference_per_class: int = 1000  # clean test-split images per class (scoring, FID)
    seed: int = 0
    size: int = 16
    steps: int = 4000
    bank_per_label: int = 100  # per unit
    n_modes: int = 20

    PRESETS: ClassVar[dict[str, dict]] = {
        "ci": dict(per_seller=40, hidden=128, steps=300, n_samples=200, bank_per_label=10),
        "default": {},
        "paper": dict(family="unet", steps=3000, batch_size=64, lr=1e-3, guidance=1.4,
                      n_samples=2000, bank_per_label=200, models_per_batch=1),
    }


@register_utility("label_accuracy")
def _label_accuracy(bank: StatsBank, w: np.ndarray) -> np.ndarray:
    """Share of the samples the scoring network puts in the class they were generated
    for (score ``label_hit``, 0/1 per sample, computed by the task)."""
    return w @ bank_score(bank, "label_hit")


class FashionSellersTask(DiffusionTask):
    name = "fashion-sellers"
    shipped_nets = {"features": DATA_DIR / "fashion_sellers_featurenet.pt"}
    config_cls = FashionSellersConfig
    utilities = ("neg_fid", "inception_score", "label_accuracy")

    @property
    def players(self) -> tuple[str, ...]:
        c = self.config
        return tuple(f"seller_{s:02d}" for s in range(len(c.classes) * c.sellers_per_class))

    @property
    def planted_players(self) -> np.ndarray:
        """Player indices of the planted low-quality sellers."""
        return np.array(sorted(s for s, _ in self.config.planted), dtype=int)

    #: the planted sellers should carry the lowest values (precision@k on minus the values)
    planted_direction = "lowest"

    def load_dataset(self):
        return fashion_sellers_dataset(self.config)

    @cached_property
    def reference(self) -> tuple[np.ndarray, np.ndarray]:
        """Clean images of the task's classes that no seller supplied, and their class."""
        return clean_reference(self.config, self.config.reference_per_class)

    def scoring_recipes(self) -> dict:
        """``features``: a classifier of the task's classes trained on the clean reference
        only, so a seller's data, good or bad, does not decide what quality means."""
        x, y = self.reference
        return {"features": self.net_recipe("features", x, y, len(self.config.classes))}

    def real_stats(self):
        """FID's reference: the clean images, not the sellers' (which hold the planted ones)."""
        if not hasattr(self, "_real"):
            x, y = self.reference
            self._real = self.stats_of(x, y)
        return self._real

    def sample_scores(self, images, feats, units) -> dict:
        if units is None:
            raise ValueError("fashion-sellers scores label accuracy: pass the class each image was generated for")
        return {"label_hit": (self.feature_net.predict(images) == np.asarray(units)).astype(float)}
