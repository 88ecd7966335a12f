"""``dermoscopy-sites``: the paper's clinical audit at full scale. Hospital sites are the
contributors of Stable Diffusion + LoRA fine-tuned on dermoscopy images, and the
utility is the sex-melanoma correlation in what the coalition's model generates.

Data (local, nothing downloads): ``<data_dir>/metadata.csv`` with an image and a site
column, the images it names, and two user-supplied TorchScript attribute classifiers
(``sex_classifier.pt``, ``melanoma_classifier.pt``; images (N, 3, H, W) in [0, 1] ->
logits) in the same folder (:func:`~surrogateshap.tasks.data.dermoscopy.load_dermoscopy`).
Every image trains on its site's prompt "a dermoscopic lesion from hospital {site}", so
the proxy's units are the sites. Utility ``sex_melanoma_correlation``: the phi
coefficient between the two classifiers' calls over the generated images. A site whose
data carries the shortcut should get a large value; ``planted`` names sites known to
carry it (e.g. ones biased on purpose), which makes ``planted_sites`` and precision@k
available. Its CPU twin with a known answer is ``spurious-sites``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from surrogateshap.tasks.base import DiffusionTask
from surrogateshap.tasks.config import PaperT2IConfig
from surrogateshap.tasks.data.dermoscopy import (
    DermoscopyConfig,
    DermoscopyData,
    load_dermoscopy,
)
from surrogateshap.tasks.data.t2i import T2IDataset, T2IItem
from surrogateshap.tasks.features.t2i import load_attribute_classifier

__all__ = ["DermoscopySitesConfig", "DermoscopySitesTask", "load_attribute_classifiers"]


@dataclass(frozen=True)
class DermoscopySitesConfig(PaperT2IConfig):
    """The clinical audit's settings: the data folder and its columns, the attribute
    classifiers, and the text-to-image set-up. The paper does not state its fine-tuning
    settings for this task; these are the project's (the ArtBench recipe at rank 64),
    with 200 images per coalition and per site bank, as a correlation between two
    binary calls needs more samples than a mean score. ``ci`` is the tiny random
    pipeline (mechanics only)."""

    data_dir: str = ""  # holds metadata.csv, the images and the classifiers; "" = $SURROGATESHAP_DATA/dermoscopy
    metadata: str = "metadata.csv"
    image_column: str = "image"
    site_column: str = "site"
    sex_classifier: str = "sex_classifier.pt"  # TorchScript in data_dir; it runs code: a file you trust
    melanoma_classifier: str = "melanoma_classifier.pt"  # likewise
    attribute_size: int | None = 224  # the classifiers' input size (None: as generated)
    planted: tuple[str, ...] = ()  # sites known to carry the correlation (precision@k)
    family: str = "sd"
    model_path: str | None = None  # a diffusers Stable Diffusion folder
    resolution: int = 256
    rank: int = 64
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-4
    guidance: float | None = 7.5
    sample_steps: int | None = 50
    n_samples: int = 200
    bank_per_unit: int = 200
    LABEL, CPU_TWIN = "The clinical audit (dermoscopy-sites)", "spurious-sites"
    MODEL_FILES = (("model_path", "the Stable Diffusion diffusers folder", "model_index.json"),)
    CI_OVERRIDES = {"attribute_size": None}

    def data_folder(self) -> Path:
        if self.data_dir:
            return Path(self.data_dir)
        return Path(os.environ.get("SURROGATESHAP_DATA", ".")) / "dermoscopy"

    def audit(self) -> DermoscopyConfig:
        """The loader's view of the folder."""
        return DermoscopyConfig(str(self.data_folder()), self.metadata, self.image_column, self.site_column,
                                self.sex_classifier, self.melanoma_classifier)

    def classifier_files(self) -> dict[str, str]:
        root = self.data_folder()
        return {"sex": str(root / self.sex_classifier), "melanoma": str(root / self.melanoma_classifier)}

    def missing_files(self) -> list[str]:
        """Every input this config needs that is not present, one line each."""
        root = self.data_folder()
        out = [] if (root / self.metadata).exists() else [f"data_dir: the dermoscopy folder, {root / self.metadata} "
                                                          "not found"]
        out += [f"{name} classifier: {path} not found (TorchScript, images -> logits; it runs code: "
                "use only a file you trust)"
                for name, path in self.classifier_files().items() if not Path(path).exists()]
        return out + self.missing_model_files()


class DermoscopySitesTask(DiffusionTask):
    """Hospital sites as the contributors of a dermoscopy text-to-image model."""

    name = "dermoscopy-sites"
    scorer_name = "t2i"
    cost_unit = "LoRA fine-tunings"
    utilities = ("sex_melanoma_correlation",)
    config_cls = DermoscopySitesConfig

    @cached_property
    def data(self) -> DermoscopyData:
        return load_dermoscopy(self.config.audit())

    @property
    def players(self) -> tuple[str, ...]:
        return self.data.sites

    @property
    def planted_sites(self) -> np.ndarray | None:
        """Indices of the configured ``planted`` sites (None when none are named)."""
        if not self.config.planted:
            return None
        unknown = [s for s in self.config.planted if s not in self.players]
        if unknown:
            raise ValueError(f"planted sites {unknown} are not in the data; the sites are {list(self.players)}")
        return np.array(sorted(self.players.index(s) for s in self.config.planted), dtype=int)

    def load_dataset(self) -> T2IDataset:
        d = self.data
        return T2IDataset(self.name, d.sites, tuple(T2IItem(str(p), int(s), prompt) for p, s, prompt in d.items))

    def attribute_files(self) -> dict[str, str]:
        return self.config.classifier_files()


def load_attribute_classifiers(config: DermoscopyConfig, device="cpu") -> dict:
    """The audit's attribute classifiers (TorchScript: image batch -> logits), read from
    local files: {"sex": module, "melanoma": module}. A TorchScript file runs code: use
    only files you trust."""
    return {name: load_attribute_classifier(Path(config.data_dir) / file, name, device)
            for name, file in (("sex", config.sex_classifier), ("melanoma", config.melanoma_classifier))}
