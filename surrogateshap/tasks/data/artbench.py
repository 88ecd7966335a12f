"""A local copy of ArtBench-10's ImageFolder release (nothing downloads): the folder
``<data_dir>/<split>/<style>/`` (default ``$SURROGATESHAP_DATA/artbench/train/
post_impressionism/``, 5,000 JPEGs, 258 artists). Each file is named
``<artist-slug>_<title-slug>.jpg``: the artist is the prefix before the first
underscore (``vincent-van-gogh_the-starry-night-1889.jpg`` -> ``vincent-van-gogh``).

:func:`load_artbench` returns an :class:`ArtBenchData`: the items (path, artist index,
training caption), the players (artist slugs, sorted) and one generation prompt per
player.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from surrogateshap.tasks.data.images import DataMissingError

__all__ = ["ARTBENCH_STYLE", "ARTBENCH_IMAGES", "ARTBENCH_ARTISTS", "ArtBenchFormatError", "ArtBenchItem",
           "ArtBenchData", "artbench_folder", "parse_artbench_name", "artist_display_name", "load_artbench"]

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
