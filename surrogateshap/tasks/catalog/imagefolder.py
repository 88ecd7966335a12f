"""``imagefolder``: the contributors of your own folder of images, with no code.

The folder (``data_dir``; the command line's ``--data DIR``, else
``$SURROGATESHAP_IMAGEFOLDER``) gives the contributors by sub-folder or by a CSV
(:mod:`surrogateshap.tasks.data.imagefolder`); each image is resized to ``size`` with
``image_channels`` channels (None: 1 when every image is grayscale, else 3). The model
is an image family (``mlp`` on a CPU, ``unet`` for the ``paper`` preset) conditioned on
the labels (default: the contributors). Utilities -FID, Inception Score and coverage are
scored by a classifier of the labels trained on the folder's own images (seeded, one
thread, cached; its weights hash goes in every table's header), or by the FID
Inception-v3 of a local weights file (``featurizer="inception"``, ``inception_weights``).

The LoRA family (``family="sd"`` or ``"flux"``; :class:`ImageFolderT2IConfig`, the
project's :class:`~surrogateshap.tasks.config.T2IConfig` with the folder's settings) is
a local diffusers pipeline (``model_path``; nothing downloads) fine-tuned with one LoRA
per coalition on the images and their prompts: the CSV's ``caption`` column, or
``caption_template`` (default "an image by {contributor}") for an image without one.
Its utilities are the T2I scorer's (``t2i_utilities``; CLIP, the LAION aesthetic head
and LPIPS from local files, as the other T2I tasks take them).

The configuration id holds the folder's content identity (every image's path, bytes,
contributor, label and caption), so a changed folder never replays a stale cache or
table. A config that does not fit the folder (too few images for a contributor or for
``n_modes``, a family this task does not train, a missing pipeline or scorer file,
captions asked for and absent) is refused when the task is made, before anything is
trained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np

from surrogateshap.game import stable_hash
from surrogateshap.tasks.base import DiffusionTask
from surrogateshap.tasks.config import ImageTaskConfig, T2IConfig, run_field
from surrogateshap.tasks.data.imagefolder import (
    check_counts,
    imagefolder_dataset,
    imagefolder_t2i_dataset,
    scan_folder,
)
from surrogateshap.tasks.data.images import DataMissingError
from surrogateshap.tasks.features.statistics import UTILITIES

__all__ = ["ImageFolderConfig", "ImageFolderT2IConfig", "ImageFolderTask", "FOLDER_ENV", "LORA_FAMILIES",
           "FOLDER_T2I_UTILITIES"]

#: where the task finds its folder when no ``data_dir`` is given (the benchmark's way)
FOLDER_ENV = "SURROGATESHAP_IMAGEFOLDER"
#: the LoRA family's kinds (a Stable Diffusion or a FLUX pipeline)
LORA_FAMILIES = ("sd", "flux")
#: the T2I utilities a folder's files can score (no attribute classifiers)
FOLDER_T2I_UTILITIES = ("aesthetic", "aesthetic_q50", "aesthetic_q75", "aesthetic_q90", "diversity", "neg_lpips")


@dataclass(frozen=True)
class FolderSettings:
    """The folder and how to read it. Where it lives (``data_dir``, ``mapping``'s path)
    and what to do with bad files are run settings: the folder's content identity, not
    its place, enters the configuration id."""

    data_dir: str | None = run_field(None)  # None = $SURROGATESHAP_IMAGEFOLDER
    mapping: str = run_field("auto")  # "auto" (DIR/metadata.csv if present), "sub-folders", or a CSV path
    bad_files: str = run_field("skip")  # "skip" (listed on stderr) or "refuse"
    min_images: int = 5  # a contributor with fewer images is refused, by name

    def folder(self) -> str | None:
        return self.data_dir or os.environ.get(FOLDER_ENV) or None


@dataclass(frozen=True)
class ImageFolderConfig(FolderSettings, ImageTaskConfig):
    """The folder, then the image task groups (the ``mlp`` and ``unet`` families)."""

    size: int = 16
    image_channels: int | None = None  # 1 or 3; None = 1 when every image is grayscale, else 3
    inception_weights: str | None = run_field(None)  # local FID Inception-v3 weights (featurizer "inception")

    # fashion-animal20's presets (a folder of its images gives its values)
    PRESETS: ClassVar[dict[str, dict]] = {
        "ci": dict(hidden=128, steps=400, n_samples=200, bank_per_label=100, n_modes=20, models_per_batch=8),
        "default": {},
        "paper": dict(family="unet", steps=3000, batch_size=64, lr=1e-3, guidance=1.4,
                      n_samples=2000, bank_per_label=1000, models_per_batch=1),
    }


@dataclass(frozen=True)
class ImageFolderT2IConfig(FolderSettings, T2IConfig):
    """The folder, then the LoRA family's settings (:class:`T2IConfig`: ``model_path``, a
    local diffusers folder, is required; ``ci`` is its small preset, not a random
    pipeline). ``captions``: "auto" (the CSV's ``caption`` where an image has one),
    "csv" (every image's, refused where the CSV lacks it) or "template" (none); an image
    without a caption is prompted with ``caption_template`` ({contributor}, {label})."""

    captions: str = "auto"
    caption_template: str = "an image by {contributor}"
    t2i_utilities: tuple[str, ...] = ("aesthetic", "diversity")

    @classmethod
    def preset(cls, scale: str = "default", **overrides):
        if scale not in ("ci", "default", "paper"):
            raise KeyError(f"unknown scale {scale!r}; choose from ['ci', 'default', 'paper']")
        return super().preset(scale, **overrides)

    def missing_files(self) -> list[str]:
        """The pipeline and the scorer's files (as ``t2i_utilities`` need them) that are
        not set or not present, one line each."""
        from surrogateshap.tasks.models.pipelines import PIPELINE_PARTS

        parts = ("model_index.json", *PIPELINE_PARTS.get(self.family, ()))
        need = [("model_path", f"the {self.family} pipeline's local diffusers folder ({', '.join(parts)})",
                 "model_index.json")]
        if any(u.startswith("aesthetic") or u == "diversity" for u in self.t2i_utilities):
            need.append(("clip_path", "CLIP ViT-L/14 (a transformers folder, or open_clip weights)", ""))
        if any(u.startswith("aesthetic") for u in self.t2i_utilities):
            need.append(("aesthetic_head", "the LAION aesthetic head (.pth)", ""))
        if "neg_lpips" in self.t2i_utilities:
            need.append(("lpips_backbone", "the LPIPS backbone (torchvision's alexnet-owt-7be5be79.pth)", ""))
        out = []
        for name, what, inside in need:
            value = getattr(self, name)
            if not value:
                out.append(f"{name}: {what}, not set")
            elif not (Path(value) / inside).exists():
                out.append(f"{name}: {what}, {Path(value) / inside if inside else value} not found "
                           "(nothing is downloaded)")
        return out


class ImageFolderTask(DiffusionTask):
    name = "imagefolder"
    config_cls = ImageFolderConfig
    #: the image families (their config: ImageFolderConfig)
    FAMILIES = ("mlp", "unet")

    def __init__(self, config=None, cache_dir=None, *, scale: str = "default", **overrides):
        family = overrides.get("family", "mlp")
        if config is None and isinstance(family, str):  # the family picks the config class
            if family not in (*self.FAMILIES, *LORA_FAMILIES):
                raise ValueError(f"imagefolder: {self._family_choice(family)}")
            lora = family in LORA_FAMILIES
            own = ImageFolderT2IConfig if lora else ImageFolderConfig
            other = ImageFolderConfig if lora else ImageFolderT2IConfig
            wrong = sorted(set(overrides) & ({f.name for f in dataclasses.fields(other)}
                                             - {f.name for f in dataclasses.fields(own)}))
            if wrong:
                hint = "" if lora else f" (the LoRA family: family= {' or '.join(map(repr, LORA_FAMILIES))})"
                raise ValueError(f"imagefolder: {', '.join(wrong)}: settings of the {'image' if lora else 'LoRA'} "
                                 f"families, not of family={family!r}{hint}")
            self.config_cls = own
        super().__init__(config, cache_dir, scale=scale, **overrides)

    @classmethod
    def _family_choice(cls, family) -> str:
        return (f"family {family!r}: imagefolder trains {' or '.join(cls.FAMILIES)}, or the LoRA family with "
                f"family= {' or '.join(map(repr, LORA_FAMILIES))} and model_path= a local diffusers folder")

    @property
    def lora(self) -> bool:
        """Whether the model is the LoRA family (a text-to-image pipeline)."""
        return isinstance(self.config, T2IConfig)

    @property
    def utilities(self) -> tuple[str, ...]:
        return tuple(self.config.t2i_utilities) if self.lora else UTILITIES  # -FID, Inception Score, coverage

    @property
    def scorer_kind(self) -> str:
        return "t2i" if self.lora else self.config.featurizer

    @property
    def cost_unit(self) -> str:
        return "LoRA fine-tunings" if self.lora else "model trainings"

    def validate(self) -> None:
        """Refuse a config that does not fit the folder, before anything is trained."""
        c = self.config
        problems = self._lora_problems() if self.lora else self._image_problems()
        if c.bad_files not in ("skip", "refuse"):
            problems.append(f"bad_files {c.bad_files!r}: 'skip' or 'refuse'")
        if problems:
            raise ValueError("imagefolder: " + "; ".join(problems))
        super().validate()
        if c.folder() is None:
            return  # nothing to check against: data_missing() names the fix, players raise it
        listing = self.listing
        n = len(listing.items)
        if len(listing.players) < 2:
            raise DataMissingError(f"image folder {listing.root}: one contributor ({listing.players[0]!r}) "
                                   f"in {listing.source}; a valuation needs two or more")
        check_counts(listing, listing.counts(), c.min_images)
        if not self.lora and c.n_modes > n:
            raise ValueError(f"imagefolder: n_modes={c.n_modes} coverage modes but {listing.root} holds {n} "
                             "images; lower n_modes")
        if self.lora and c.captions == "csv":
            if not listing.captioned:
                raise ValueError(f"imagefolder: captions='csv' but {listing.source} has no caption column (add "
                                 "one to DIR/metadata.csv, or captions='auto' to prompt with caption_template)")
            bare = [it.path for it in listing.items if not it.caption]
            if bare:
                raise ValueError(f"imagefolder: captions='csv' but {len(bare)} image(s) have an empty caption in "
                                 f"{listing.source}: {', '.join(bare[:5])}{' ...' if len(bare) > 5 else ''}")

    def _image_problems(self) -> list[str]:
        c = self.config
        problems = []
        if c.family not in self.FAMILIES:
            problems.append(self._family_choice(c.family))
        if c.featurizer not in ("net", "inception"):
            problems.append(f"featurizer {c.featurizer!r}: choose net (trained on the folder) or inception")
        elif c.featurizer == "inception" and not (c.inception_weights and os.path.isfile(c.inception_weights)):
            problems.append(f"featurizer 'inception' needs inception_weights= a local file "
                            f"(pt_inception-2015-12-05-6726825d.pth); got {c.inception_weights!r}")
        if c.image_channels not in (None, 1, 3):
            problems.append(f"image_channels {c.image_channels!r}: 1, 3 or None (from the images)")
        if c.size < 4:
            problems.append(f"size {c.size}: at least 4 pixels")
        return problems

    def _lora_problems(self) -> list[str]:
        c = self.config
        problems = []
        if c.family not in LORA_FAMILIES:
            problems.append(self._family_choice(c.family))
        if c.captions not in ("auto", "csv", "template"):
            problems.append(f"captions {c.captions!r}: 'auto', 'csv' or 'template'")
        try:
            c.caption_template.format(contributor="c", label="l")
        except (KeyError, IndexError, ValueError) as e:
            problems.append(f"caption_template {c.caption_template!r}: {type(e).__name__} {e} (it may name "
                            "{contributor} and {label})")
        unknown = [u for u in c.t2i_utilities if u not in FOLDER_T2I_UTILITIES]
        if unknown or not c.t2i_utilities:
            problems.append(f"t2i_utilities {tuple(c.t2i_utilities)}: choose from {', '.join(FOLDER_T2I_UTILITIES)}")
        elif "diversity" in c.t2i_utilities and c.n_samples < c.n_clusters:
            problems.append(f"diversity clusters {c.n_samples} images into n_clusters={c.n_clusters}: raise "
                            "n_samples or lower n_clusters")
        return problems + c.missing_files()

    @cached_property
    def listing(self):
        """The folder's contributors, candidate images and content identity (no decoding;
        an image is hashed again only when it changed)."""
        return scan_folder(self.config.folder(), self.config.mapping, self.cache_dir / "imagefolder-digests")

    @property
    def players(self) -> tuple[str, ...]:
        return self.listing.players

    def config_id(self) -> str:
        """The configuration's id with the folder's content identity in it."""
        return f"{self.name}-{stable_hash([super().config_id(), self.listing.identity])}"

    @cached_property
    def _loaded(self):
        c = self.config
        if self.lora:
            return imagefolder_t2i_dataset(self.listing, c.caption_template, c.captions != "template", c.min_images,
                                           c.bad_files, self.name)
        return imagefolder_dataset(self.listing, c.size, c.image_channels, c.min_images, c.bad_files, self.name)

    def load_dataset(self):
        return self._loaded[0]

    @property
    def skipped_files(self) -> list[tuple[str, str]]:
        """(path, why) of every file of the folder left out of the data."""
        return list(self._loaded[1])

    def net_recipe(self, name: str, images, labels, n_classes: int):
        """The base recipe, its cache keyed by the labels too (a folder's CSV may relabel
        the same images)."""
        recipe = super().net_recipe(name, images, labels, n_classes)
        h = hashlib.sha1(np.ascontiguousarray(images).tobytes())
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
        return dataclasses.replace(recipe, cache=recipe.cache.with_name(f"{self.name}-{name}-{h.hexdigest()[:12]}.pt"))
