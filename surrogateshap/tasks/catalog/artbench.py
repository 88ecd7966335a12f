"""ArtBench-10 Post-Impressionism at paper scale: artists as players, for a text-to-image
model (Stable Diffusion + LoRA) trained on a coalition's paintings.

Reads a local copy of ArtBench-10's ImageFolder release (nothing downloads): the folder
``<data_dir>/<split>/<style>/`` (default ``$SURROGATESHAP_DATA/artbench/train/
post_impressionism/``, 5,000 JPEGs, 258 artists). Each file is named
``<artist-slug>_<title-slug>.jpg``: the artist is the prefix before the first
underscore (``vincent-van-gogh_the-starry-night-1889.jpg`` -> ``vincent-van-gogh``).

:func:`load_artbench` returns an :class:`ArtBenchData`: the items (path, artist index,
training caption), the players (artist slugs, sorted) and one generation prompt per
player. :class:`ArtBenchTask` (registered as ``artbench``) is the paper's task on that
data: Stable Diffusion + LoRA per coalition (the LoRA family, :mod:`surrogateshap.tasks.models.lora`),
with :class:`ArtBenchConfig` naming the paper preset's local files and settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from surrogateshap.tasks.base import DiffusionTask
from surrogateshap.tasks.config import PaperT2IConfig
from surrogateshap.tasks.data.artbench import (
    ARTBENCH_ARTISTS,
    ARTBENCH_IMAGES,
    ARTBENCH_STYLE,
    ArtBenchData,
    load_artbench,
)
from surrogateshap.tasks.data.t2i import T2IDataset, T2IItem

__all__ = ["ArtBenchConfig", "ArtBenchTask"]


@dataclass(frozen=True)
class ArtBenchConfig(PaperT2IConfig):
    """The ArtBench task's settings: where the paintings are, and the text-to-image
    set-up (a :class:`~surrogateshap.tasks.config.T2IConfig`). Paths are local: nothing
    downloads. The paper preset follows the predecessor's public LoRA script (batch 64,
    lr 3e-4, 256 px, rank 256; 100 epochs of the 5,000 paintings is about 7,800 steps,
    and every coalition's LoRA gets the same number of steps) and scores the LAION
    aesthetic head on open_clip's ViT-L/14. ``ci`` is the tiny random pipeline
    (mechanics only).

    ``train_prompt``: "artist" trains every painting on its artist's prompt, so the
    proxy's units are the artists (258 banks); "caption" trains on each painting's own
    caption, making every painting a unit (5,000 banks)."""

    data_dir: str | None = None  # holds <split>/<style>/; None = $SURROGATESHAP_DATA/artbench
    split: str = "train"
    style: str = ARTBENCH_STYLE
    prompt_template: str = "a Post-Impressionism painting by {artist}"
    caption_template: str = "{title}, a Post-Impressionism painting by {artist}"
    train_prompt: str = "artist"
    expect_images: int | None = ARTBENCH_IMAGES
    expect_artists: int | None = ARTBENCH_ARTISTS
    # the paper's text-to-image settings (T2IConfig fields)
    family: str = "sd"
    model_path: str | None = None  # diffusers folder of the base model (lambdalabs/miniSD-diffusers)
    resolution: int = 256
    rank: int = 256
    steps: int = 7800
    batch_size: int = 64
    lr: float = 3e-4
    guidance: float | None = 7.5
    sample_steps: int | None = 50
    n_samples: int = 50  # the authors' T2I default
    bank_per_unit: int = 50
    clip_backend: str = "open_clip"  # clip_path: open_clip's ViT-L-14 weights file
    aesthetic_head: str | None = None  # LAION's sa_0_4_vit_l_14_linear.pth
    LABEL, CPU_TWIN = "ArtBench", "clipart-artists"
    MODEL_FILES = (("model_path", "the base model's diffusers folder (miniSD)", ""),
                   ("clip_path", "the CLIP ViT-L/14 weights", ""),
                   ("aesthetic_head", "the LAION aesthetic head (.pth)", ""))
    CI_OVERRIDES = {"expect_images": None, "expect_artists": None}

    def load(self) -> ArtBenchData:
        return load_artbench(self.data_dir, self.split, self.style, self.prompt_template,
                             self.caption_template, self.expect_images, self.expect_artists)


class ArtBenchTask(DiffusionTask):
    """Artists of ArtBench Post-Impressionism as the contributors of Stable Diffusion +
    LoRA (the paper's many-player task): players = the folder's artists, an item = a
    painting, utilities = the LAION aesthetic score (mean and quantiles) of the
    coalition model's samples. """

    name = "artbench"
    utilities = ("aesthetic", "aesthetic_q50", "aesthetic_q75", "aesthetic_q90")
    config_cls = ArtBenchConfig

    scorer_name = "t2i"
    cost_unit = "LoRA fine-tunings"

    def __init__(self, config=None, cache_dir=None, *, scale: str = "paper", **overrides):
        super().__init__(config, cache_dir, scale=scale, **overrides)

    def validate(self):
        super().validate()
        if self.config.train_prompt not in ("artist", "caption"):
            raise ValueError(f"train_prompt must be 'artist' or 'caption', got {self.config.train_prompt!r}")

    @cached_property
    def data(self) -> ArtBenchData:
        return self.config.load()

    @property
    def players(self) -> tuple[str, ...]:
        return self.data.players

    def load_dataset(self) -> T2IDataset:
        d, by_artist = self.data, self.config.train_prompt == "artist"
        return T2IDataset(self.name, d.players, tuple(
            T2IItem(str(it.path), it.artist, d.prompts[it.artist] if by_artist else it.prompt) for it in d.items))
