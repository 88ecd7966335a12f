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
data: Stable Diffusion + LoRA per coalition through :mod:`surrogateshap.tasks.t2i`,
with :class:`ArtBenchConfig` naming the paper preset's local files and settings.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from surrogateshap.tasks.datasets import DataMissingError
from surrogateshap.tasks.t2i import PaperT2IConfig, T2IDataset, T2IItem, T2ITask

__all__ = [
    "ARTBENCH_STYLE", "ARTBENCH_IMAGES", "ARTBENCH_ARTISTS", "ArtBenchFormatError", "ArtBenchItem",
    "ArtBenchData", "artbench_folder", "parse_artbench_name", "artist_display_name", "load_artbench",
    "ArtBenchConfig", "ArtBenchTask",
]

ARTBENCH_STYLE = "post_impressionism"
#: the Post-Impressionism training folder of the release: 5,000 images by 258 artists
ARTBENCH_IMAGES, ARTBENCH_ARTISTS = 5000, 258
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_SLUG = re.compile(r"^[^\W_][\w.'-]*$")  # letters/digits/hyphens..., no underscore


class ArtBenchFormatError(ValueError):
    """An ArtBench file name that does not read as ``<artist>_<title>.jpg``."""


@dataclass(frozen=True)
class ArtBenchItem:
    path: Path
    artist: int  # index into ArtBenchData.players
    prompt: str  # the training caption (caption_template)
    title: str  # the title slug from the file name


@dataclass(frozen=True)
class ArtBenchData:
    """The paintings of one ArtBench style folder, each owned by its artist."""

    folder: Path
    items: tuple[ArtBenchItem, ...]
    players: tuple[str, ...]  # artist slugs, sorted
    prompts: tuple[str, ...]  # one generation prompt per player (prompt_template)

    @property
    def item_contributor(self) -> np.ndarray:
        return np.array([it.artist for it in self.items], dtype=np.int64)

    def counts(self) -> np.ndarray:
        return np.bincount(self.item_contributor, minlength=len(self.players))

    @property
    def names(self) -> tuple[str, ...]:
        """The players as display names ("Vincent Van Gogh")."""
        return tuple(artist_display_name(p) for p in self.players)


def artbench_folder(data_dir: str | os.PathLike | None = None, split: str = "train",
                    style: str = ARTBENCH_STYLE) -> Path:
    """``<data_dir>/<split>/<style>``; data_dir defaults to ``$SURROGATESHAP_DATA/artbench``."""
    if data_dir is None:
        base = os.environ.get("SURROGATESHAP_DATA")
        if base is None:
            raise DataMissingError(
                f"ArtBench-10 not located: pass data_dir= (the folder holding {split}/{style}/, the "
                "ImageFolder release artbench-10-imagefolder-split) or set SURROGATESHAP_DATA "
                f"(then $SURROGATESHAP_DATA/artbench/{split}/{style}/ is read)")
        data_dir = Path(base) / "artbench"
    return Path(data_dir) / split / style


def parse_artbench_name(name: str) -> tuple[str, str]:
    """(artist slug, title slug) of ``<artist>_<title>.<jpg|jpeg|png>``; raises
    ArtBenchFormatError naming the file otherwise."""
    stem, dot, suffix = name.rpartition(".")
    artist, sep, title = stem.partition("_")
    if not dot or f".{suffix.lower()}" not in _IMAGE_SUFFIXES or not sep or not title \
            or not _SLUG.match(artist):
        raise ArtBenchFormatError(
            f"ArtBench file {name!r} is not named <artist-slug>_<title>.jpg (the artist is the "
            "part before the first underscore, e.g. vincent-van-gogh_the-starry-night-1889.jpg)")
    return artist, title


def artist_display_name(slug: str) -> str:
    """"vincent-van-gogh" -> "Vincent Van Gogh"; roman-numeral suffixes stay upper case."""
    words = [w.capitalize() for w in slug.split("-") if w]
    if len(words) > 1 and re.fullmatch(r"[ivx]+", words[-1].lower()):
        words[-1] = words[-1].upper()
    return " ".join(words)


def load_artbench(data_dir: str | os.PathLike | None = None, split: str = "train",
                  style: str = ARTBENCH_STYLE,
                  prompt_template: str = "a Post-Impressionism painting by {artist}",
                  caption_template: str = "{title}, a Post-Impressionism painting by {artist}",
                  expect_images: int | None = None, expect_artists: int | None = None,
                  ) -> ArtBenchData:
    """The items of an ArtBench style folder, players = its artists (sorted slugs).

    Templates take ``{artist}`` (display name), ``{slug}`` (the artist slug) and, for
    captions, ``{title}`` (the title slug as words). Hidden files and non-images are
    ignored; an image whose name does not parse raises, naming it. ``expect_images`` /
    ``expect_artists`` check a complete copy (the paper preset: 5,000 and 258).
    """
    folder = artbench_folder(data_dir, split, style)
    if not folder.is_dir():
        raise DataMissingError(
            f"ArtBench-10 folder {folder} not found: expected the {style} folder of the "
            f"ImageFolder release (<data_dir>/{split}/{style}/ holding <artist>_<title>.jpg files)")
    rows = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in _IMAGE_SUFFIXES:
            continue
        try:
            artist, title = parse_artbench_name(p.name)
        except ArtBenchFormatError as e:
            raise ArtBenchFormatError(f"{e} (in {folder})") from None
        rows.append((p, artist, title))
    if not rows:
        raise DataMissingError(f"ArtBench-10 folder {folder} holds no images (<artist>_<title>.jpg)")
    players = tuple(sorted({a for _, a, _ in rows}))
    if expect_images is not None and len(rows) != expect_images or \
            expect_artists is not None and len(players) != expect_artists:
        raise DataMissingError(
            f"ArtBench-10 folder {folder} holds {len(rows)} images by {len(players)} artists; "
            f"expected {expect_images} images by {expect_artists} artists (an incomplete copy?)")
    pos = {a: k for k, a in enumerate(players)}

    def fill(template, slug, title=""):
        return template.format(artist=artist_display_name(slug), slug=slug,
                               title=title.replace("-", " ").replace("_", " ").strip().capitalize())

    items = tuple(ArtBenchItem(p, pos[a], fill(caption_template, a, t), t) for p, a, t in rows)
    prompts = tuple(fill(prompt_template, a) for a in players)
    return ArtBenchData(folder, items, players, prompts)


@dataclass(frozen=True)
class ArtBenchConfig(PaperT2IConfig):
    """The ArtBench task's settings: where the paintings are, and the text-to-image
    set-up (a :class:`~surrogateshap.tasks.t2i.T2IConfig`). Paths are local: nothing
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


class ArtBenchTask(T2ITask):
    """Artists of ArtBench Post-Impressionism as the contributors of Stable Diffusion +
    LoRA (the paper's many-player task): players = the folder's artists, an item = a
    painting, utilities = the LAION aesthetic score (mean and quantiles) of the
    coalition model's samples. Both games are :class:`~surrogateshap.tasks.t2i.T2ITask`'s."""

    name = "artbench"
    utilities = ("aesthetic", "aesthetic_q50", "aesthetic_q75", "aesthetic_q90")
    config_cls = ArtBenchConfig

    def __init__(self, config=None, scale: str = "paper", cache_dir=None, family=None, featurizer=None,
                 **overrides):
        super().__init__(config, scale, cache_dir, family=family, featurizer=featurizer, **overrides)
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
