"""``spurious-sites``: the clinical audit's protocol with a spurious correlation planted
where we know it is, so an attribution can be checked for finding its sources.

Players are "sites" whose images are real Fashion-MNIST garments (Debian
``dataset-fashion-mnist``; each site its own Dirichlet mix of the 10 classes, images
disjoint across sites). A few planted sites (``config.planted``) stamp a small bright
square in the top-left corner on a fraction (``marker_fraction``) of their images of
one class (``target_class``). The model is conditioned on (site, class) units by
default (``condition_on_class``; with it off, on the site alone, as the paper's prompt
"a dermoscopic lesion from hospital {site}": the small CPU model then does not tie the
marker to the class, see the dataset card). The utility ``marker_correlation`` is the
phi coefficient between "a marker is detected" and "the image shows the target class"
over generated images, from a marker detector and a class classifier the task trains
on its own images (detector: clean vs stamped copies of every image; classifier: both
copies with the same class label, so the marker tells it nothing). It measures how much of
the shortcut a coalition's model learned, not image quality: the planted sites should
carry the largest values (:func:`surrogateshap.metrics.precision_at_k` on
``planted_sites``).

The paper-scale audit (real dermoscopy, hospital sites, a sex-melanoma correlation) is
the ``dermoscopy-sites`` task (:mod:`surrogateshap.tasks.catalog.dermoscopy_sites`,
Stable Diffusion + LoRA).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from surrogateshap.tasks.base import DiffusionTask
from surrogateshap.tasks.common import DATA_DIR
from surrogateshap.tasks.config import ImageTaskConfig
from surrogateshap.tasks.data.images import FASHION_CLASSES
from surrogateshap.tasks.data.spurious_sites import spurious_sites_dataset, stamp_marker
from surrogateshap.tasks.features.statistics import (
    StatsBank,
    bank_score,
    register_utility,
)
from surrogateshap.tasks.features.t2i import phi_from_means

__all__ = ["SpuriousSitesConfig", "SpuriousSitesTask"]


@dataclass(frozen=True)
class SpuriousSitesConfig(ImageTaskConfig):
    n_sites: int = 12
    per_site: int = 150
    planted: tuple[int, ...] = (2, 5, 9)  # sites that stamp the marker
    target_class: int = 3  # dress
    marker_fraction: float = 0.8  # of a planted site's target-class images
    marker_size: int = 3
    alpha: float = 2.0  # Dirichlet concentration of each site's class mix
    condition_on_class: bool = True  # units = (site, class) pairs; False: units = sites
    seed: int = 0
    size: int = 16
    # 4,000 steps: at 1,500 the samples' class matched their unit's in 32% and the marker
    # correlation of the full model's samples was 0.09 (dataset card)
    steps: int = 4000
    bank_per_label: int = 200  # per (site, class) unit (23,800 images: the proxy's one-off set-up)
    n_modes: int = 20

    PRESETS: ClassVar[dict[str, dict]] = {
        "ci": dict(per_site=60, hidden=128, steps=300, n_samples=200, bank_per_label=10),
        "default": {},
        "paper": dict(family="unet", steps=3000, batch_size=64, lr=1e-3, guidance=1.4,
                      n_samples=2000, bank_per_label=200, models_per_batch=1),
    }


@register_utility("marker_correlation")
def _marker_correlation(bank: StatsBank, w: np.ndarray) -> np.ndarray:
    """Phi coefficient of (marker detected, target class) over the samples, from the
    mixed means of the scores ``marker``, ``target``, ``marker_target`` (0/1 per
    sample); 0 where either is constant (no association can be measured)."""
    return phi_from_means(*(w @ bank_score(bank, k) for k in ("marker", "target", "marker_target")))


class SpuriousSitesTask(DiffusionTask):
    name = "spurious-sites"
    shipped_nets = {k: DATA_DIR / f"spurious_sites_{k}net.pt" for k in ("features", "marker", "class")}
    config_cls = SpuriousSitesConfig
    utilities = ("marker_correlation", "neg_fid")

    @property
    def players(self) -> tuple[str, ...]:
        return tuple(f"site_{s:02d}" for s in range(self.config.n_sites))

    @property
    def planted_sites(self) -> np.ndarray:
        """Player indices of the sites that planted the marker (precision@k's truth)."""
        return np.array(sorted(self.config.planted), dtype=int)

    @cached_property
    def _built(self):
        return spurious_sites_dataset(self.config)

    def load_dataset(self):
        return self._built[0]

    @property
    def stamped(self) -> np.ndarray:
        """(n_items,) whether each training image carries the marker."""
        return self._built[2]

    def scoring_recipes(self) -> dict:
        """The featurizer's network, the marker detector (clean (0) vs stamped (1), trained
        on both versions of every image) and the class classifier (the garment class,
        trained on clean and stamped copies under the same label, so the marker is no cue
        to the class)."""
        clean = self._built[1]
        x = np.concatenate([clean, stamp_marker(clean, self.config.marker_size)])
        return {**super().scoring_recipes(),
                "marker": self.net_recipe("marker", x, np.repeat([0, 1], len(clean)), 2),
                "class": self.net_recipe("class", x, np.tile(self.dataset.classes, 2), len(FASHION_CLASSES))}

    def scoring_networks(self) -> dict:
        return {**super().scoring_networks(), "marker": self.marker_detector, "class": self.class_classifier}

    @cached_property
    def marker_detector(self):
        return self.scoring_recipes()["marker"].load()

    @cached_property
    def class_classifier(self):
        return self.scoring_recipes()["class"].load()

    def sample_scores(self, images, feats, units) -> dict:
        m = (self.marker_detector.predict(images) == 1).astype(float)
        t = (self.class_classifier.predict(images) == self.config.target_class).astype(float)
        return {"marker": m, "target": t, "marker_target": m * t}
