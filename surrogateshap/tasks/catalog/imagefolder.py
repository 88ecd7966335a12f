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

The configuration id holds the folder's content identity (every image's path, bytes,
contributor and label), so a changed folder never replays a stale cache or table. A
config that does not fit the folder (too few images for a contributor or for
``n_modes``, a family this task does not train) is refused when the task is made,
before anything is trained. The LoRA family (a text-to-image pipeline) is not offered
for folders.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from surrogateshap.game import stable_hash
from surrogateshap.tasks.base import DiffusionTask
from surrogateshap.tasks.config import ImageTaskConfig, run_field
from surrogateshap.tasks.data.imagefolder import check_counts, imagefolder_dataset, scan_folder
from surrogateshap.tasks.data.images import DataMissingError
from surrogateshap.tasks.features.statistics import UTILITIES

__all__ = ["ImageFolderConfig", "ImageFolderTask", "FOLDER_ENV"]

#: where the task finds its folder when no ``data_dir`` is given (the benchmark's way)
FOLDER_ENV = "SURROGATESHAP_IMAGEFOLDER"


@dataclass(frozen=True)
class ImageFolderConfig(ImageTaskConfig):
    """The folder and how to read it, then the image task groups. Where the folder lives
    (``data_dir``, ``mapping``'s path) and what to do with bad files are run settings:
    the folder's content identity, not its place, enters the configuration id."""

    data_dir: str | None = run_field(None)  # None = $SURROGATESHAP_IMAGEFOLDER
    mapping: str = run_field("auto")  # "auto" (DIR/metadata.csv if present), "sub-folders", or a CSV path
    bad_files: str = run_field("skip")  # "skip" (listed on stderr) or "refuse"
    size: int = 16
    image_channels: int | None = None  # 1 or 3; None = 1 when every image is grayscale, else 3
    min_images: int = 5  # a contributor with fewer images is refused, by name
    inception_weights: str | None = run_field(None)  # local FID Inception-v3 weights (featurizer "inception")

    # fashion-animal20's presets (a folder of its images gives its values)
    PRESETS: ClassVar[dict[str, dict]] = {
        "ci": dict(hidden=128, steps=400, n_samples=200, bank_per_label=100, n_modes=20, models_per_batch=8),
        "default": {},
        "paper": dict(family="unet", steps=3000, batch_size=64, lr=1e-3, guidance=1.4,
                      n_samples=2000, bank_per_label=1000, models_per_batch=1),
    }

    def folder(self) -> str | None:
        return self.data_dir or os.environ.get(FOLDER_ENV) or None


class ImageFolderTask(DiffusionTask):
    name = "imagefolder"
    utilities = UTILITIES  # -FID, Inception Score, coverage
    config_cls = ImageFolderConfig
    #: the image families; the LoRA family needs prompts and a pipeline, not offered here
    FAMILIES = ("mlp", "unet")

    def validate(self) -> None:
        """Refuse a config that does not fit the folder, before anything is trained."""
        super().validate()
        c = self.config
        problems = []
        if c.family not in self.FAMILIES:
            problems.append(f"family {c.family!r}: imagefolder trains {' or '.join(self.FAMILIES)} (the LoRA "
                            "family, a text-to-image pipeline, is not offered for folders)")
        if c.featurizer not in ("net", "inception"):
            problems.append(f"featurizer {c.featurizer!r}: choose net (trained on the folder) or inception")
        elif c.featurizer == "inception" and not (c.inception_weights and os.path.isfile(c.inception_weights)):
            problems.append(f"featurizer 'inception' needs inception_weights= a local file "
                            f"(pt_inception-2015-12-05-6726825d.pth); got {c.inception_weights!r}")
        if c.image_channels not in (None, 1, 3):
            problems.append(f"image_channels {c.image_channels!r}: 1, 3 or None (from the images)")
        if c.size < 4:
            problems.append(f"size {c.size}: at least 4 pixels")
        if c.bad_files not in ("skip", "refuse"):
            problems.append(f"bad_files {c.bad_files!r}: 'skip' or 'refuse'")
        if problems:
            raise ValueError("imagefolder: " + "; ".join(problems))
        if c.folder() is None:
            return  # nothing to check against: data_missing() names the fix, players raise it
        listing = self.listing
        n = len(listing.items)
        if len(listing.players) < 2:
            raise DataMissingError(f"image folder {listing.root}: one contributor ({listing.players[0]!r}) "
                                   f"in {listing.source}; a valuation needs two or more")
        check_counts(listing, listing.counts(), c.min_images)
        if c.n_modes > n:
            raise ValueError(f"imagefolder: n_modes={c.n_modes} coverage modes but {listing.root} holds {n} "
                             "images; lower n_modes")

    @cached_property
    def listing(self):
        """The folder's contributors, candidate images and content identity (no decoding)."""
        return scan_folder(self.config.folder(), self.config.mapping)

    @property
    def players(self) -> tuple[str, ...]:
        return self.listing.players

    def config_id(self) -> str:
        """The configuration's id with the folder's content identity in it."""
        return f"{self.name}-{stable_hash([super().config_id(), self.listing.identity])}"

    @cached_property
    def _loaded(self):
        c = self.config
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
