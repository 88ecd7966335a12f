"""``clipart-artists``: the ArtBench protocol (artists as players) on real art that ships
in Debian packages.

Players: the 30 Openclipart artists (the SVG's ``dc:creator``, as written) with the most
kept images in ``openclipart-png`` / ``openclipart-svg``. An image is kept when its
PNG has an artist, is not near-blank at the training resolution (at least
``min_ink`` of its pixels are ink, :data:`~surrogateshap.tasks.data.clipart.INK_LEVEL`),
and is not a pixel-identical copy of another (copies naming two different artists are
dropped as ambiguous). Each artist keeps at most ``per_artist`` images (a fixed
pseudo-random subset: smallest SHA-1 of the file path), so the most prolific artist
(1,253 kept images) does not own most of the data. Images are composited on white,
cropped to their ink, padded square and area-resized to ``size`` (8; see the config) RGB.

Model and utilities: an artist-conditional DDPM with classifier-free guidance, family ``mlp`` (default, ci) or
``unet`` (paper); -FID, Inception Score and coverage on a small artist classifier
trained on the task's images (shipped in ``surrogateshap/data/``). The dataset card
(``datasets/clipart-artists/README.md``) says what each measures here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from surrogateshap.tasks.base import DiffusionTask
from surrogateshap.tasks.common import DATA_DIR
from surrogateshap.tasks.config import ImageTaskConfig, run_field
from surrogateshap.tasks.data.clipart_artists import (
    CLIPART_ARTISTS,
    clipart_artists_dataset,
)
from surrogateshap.tasks.features.statistics import UTILITIES

__all__ = ["ClipartArtistsConfig", "ClipartArtistsTask", "FEATURE_NET_PATH"]

FEATURE_NET_PATH = DATA_DIR / "clipart_artists_featurenet.pt"


@dataclass(frozen=True)
class ClipartArtistsConfig(ImageTaskConfig):
    openclipart_dir: str | None = run_field(None)  # the install root; None = /usr/share/openclipart
    per_artist: int | None = 100  # cap of images per artist (None = all kept images)
    # 8 px: at 16 px the MLP family ignores the artist (samples' classifier posterior of
    # the conditioned artist at chance for w up to 10; the dataset card has the numbers)
    size: int = 8
    min_ink: float = 0.05  # near-blank filter: least fraction of ink pixels at FILTER_SIZE px
    bank_per_label: int = 300

    PRESETS: ClassVar[dict[str, dict]] = {
        "ci": dict(per_artist=20, hidden=128, steps=300, n_samples=300, bank_per_label=50,
                   n_modes=20, models_per_batch=8),
        "default": {},
        # the paper's family: a UNet DDPM, guidance 1.4, condition dropout 0.1
        "paper": dict(size=32, family="unet", steps=5000, batch_size=64, lr=1e-3, guidance=1.4,
                      n_samples=2000, bank_per_label=500, models_per_batch=1),
    }


class ClipartArtistsTask(DiffusionTask):
    name = "clipart-artists"
    utilities = UTILITIES  # -FID, Inception Score, coverage
    players = CLIPART_ARTISTS
    config_cls = ClipartArtistsConfig
    shipped_nets = {"features": FEATURE_NET_PATH}

    def load_dataset(self):
        c = self.config
        return clipart_artists_dataset(c.per_artist, c.size, c.min_ink, self.players,
                                       c.openclipart_dir, self.cache_dir)
