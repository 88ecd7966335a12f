"""``fashion-product``: the paper's Fashion-Product task at full scale.

Reads a local copy of the Fashion Product Images dataset: ``styles.csv`` (columns
id, gender, masterCategory, subCategory, articleType, baseColour, season, year, usage,
productDisplayName) and ``images/{id}.jpg``. The dataset has no brand column; as in the
paper the brand is the first whitespace token of the display name (``brand_fn``).
Players = the top ``n_brands`` (100) brands by item count, each subsampled to
``fraction`` (25%) of its items under a fixed seed; prompts = display names; each item
is its own conditioning unit (prompts repeat, so units = the distinct prompts).

:class:`FashionProductTask` (registered as ``fashion-product``) is the paper's task on
that data: FLUX + LoRA per coalition (the LoRA family, :mod:`surrogateshap.tasks.models.lora`), with
:class:`FashionProductConfig` naming the local files. Nothing downloads: every file is
named in the error when it is absent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from surrogateshap.tasks.base import DiffusionTask
from surrogateshap.tasks.config import PaperT2IConfig
from surrogateshap.tasks.data.fashion_product import (
    FashionProductData,
    load_fashion_product,
)
from surrogateshap.tasks.data.images import DataMissingError
from surrogateshap.tasks.data.t2i import T2IDataset, T2IItem

__all__ = ["FashionProductConfig", "FashionProductTask"]


@dataclass(frozen=True)
class FashionProductConfig(PaperT2IConfig):
    """The Fashion-Product task's settings: the data folder and its selection, and the
    text-to-image set-up (a :class:`~surrogateshap.tasks.config.T2IConfig`). Paper preset:
    FLUX.1-dev from a local diffusers folder, LoRA rank 128, 512 px, guidance 3.5, 50
    images per coalition, diversity entropy over 20 clusters of CLIP embeddings, LPIPS to
    the prompt's training image. Every display name is its own unit (thousands of
    them), so the proxy's bank holds ``bank_per_unit`` = 2 images per prompt. ``ci`` is
    the tiny random FLUX pipeline (mechanics only). Nothing downloads: every file is
    named when it is absent."""

    data_dir: str = ""  # holds styles.csv and images/; "" = $SURROGATESHAP_DATA/fashion-product
    n_brands: int = 100
    fraction: float = 0.25
    seed: int = 0
    # the paper's text-to-image settings (T2IConfig fields)
    family: str = "flux"
    model_path: str | None = None  # a diffusers FLUX.1-dev folder (model_index.json, transformer/, ...)
    dtype: str = "bfloat16"
    resolution: int = 512
    rank: int = 128
    guidance: float | None = 3.5  # FLUX's default
    n_samples: int = 50
    bank_per_unit: int = 2
    clip_path: str | None = None  # CLIP ViT-L/14 (diversity's embedding)
    #: LPIPS backbone: torchvision's ImageNet AlexNet weights (what LPIPS(net="alex") loads)
    lpips_backbone: str | None = "alexnet-owt-7be5be79.pth"
    n_clusters: int = 20  # diversity entropy
    LABEL, CPU_TWIN = "Fashion-Product", "fashion-brands"
    MODEL_FILES = (("model_path", "the FLUX.1-dev diffusers folder", "model_index.json"),
                   ("lpips_backbone", "the LPIPS backbone weights", ""),
                   ("clip_path", "the CLIP ViT-L/14 weights (diversity)", ""))

    def missing_files(self) -> list[str]:
        """The inputs this config needs that are not configured or not present."""
        styles = self.data_folder() / "styles.csv"
        data = [] if styles.exists() else [f"data_dir: the Fashion Product data folder, {styles} not found"]
        return data + self.missing_model_files()

    def check_files(self) -> None:
        """Raise one clear error naming every absent input."""
        missing = self.missing_files()
        if missing:
            raise DataMissingError("; ".join(missing))

    def data_folder(self) -> Path:
        if self.data_dir:
            return Path(self.data_dir)
        return Path(os.environ.get("SURROGATESHAP_DATA", ".")) / "fashion-product"

    def load(self) -> FashionProductData:
        return load_fashion_product(self.data_folder(), self.n_brands, self.fraction, self.seed)


class FashionProductTask(DiffusionTask):
    """Brands of Fashion Product Images as the contributors of FLUX + LoRA (the paper's
    task): players = the top brands, an item = a product with its display name as
    prompt, units = the distinct display names (the proxy mixes per-prompt banks
    weighted by the coalition's items)."""

    name = "fashion-product"
    scorer_name = "t2i"
    cost_unit = "LoRA fine-tunings"
    utilities = ("neg_lpips", "diversity")
    config_cls = FashionProductConfig

    @cached_property
    def data(self) -> FashionProductData:
        return self.config.load()

    @property
    def players(self) -> tuple[str, ...]:
        return self.data.brands

    def load_dataset(self) -> T2IDataset:
        d = self.data
        return T2IDataset(self.name, d.brands, tuple(T2IItem(str(p), int(b), prompt)
                                                     for p, b, prompt in d.items))
