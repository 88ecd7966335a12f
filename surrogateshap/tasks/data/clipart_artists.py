"""The clipart-artists selection: which Openclipart images are kept, and whose.

An image is kept when its PNG has an artist (the SVG's ``dc:creator``), is not
near-blank at :data:`FILTER_SIZE` px (at least ``min_ink`` of its pixels are ink,
:data:`~surrogateshap.tasks.data.clipart.INK_LEVEL`), and is not a pixel-identical copy
of another (copies naming two different artists are dropped as ambiguous). Each artist
keeps at most ``per_artist`` images (a fixed pseudo-random subset: smallest SHA-1 of
the file path).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from surrogateshap.tasks.data.images import DataMissingError, ImageDataset

__all__ = ["CLIPART_ARTISTS", "ClipartSelection", "select_clipart", "rank_artists", "select_players",
           "clipart_artists_dataset", "FILTER_SIZE", "MIN_PER_ARTIST"]

#: the 30 artists with the most kept images at the default filter (min_ink 0.05 at
#: 16 px, any training size), most first; the 31st and 32nd keep 20 each, the 30th 22
CLIPART_ARTISTS = (
    "codifiedivining", "Danny Allen", "Nicu Buculei", "Jose Hevia", "Architetto Francesco Rollandin",
    "Gerald G.", "Jean-Victor Balin", "Juliane Krug", "Alan Horkan", "Andy Fitzsimon", "Benji Park",
    "yves GUILLOU", "Jarno Vasamaa", "John Cliff", "Caleb Moore", "Tobias Jakobs", "Jon Phillips",
    "Patricia Fidi", "International Code of Signals", "Nathan Eady", "Cezary Biele", "Chris Goerner",
    "Jakob [chaosinfaith@hotmail.com]", "Royal Navy", "Linda Kim", "Yutaka Kachi",
    "Lauris Kaplinski", "Marko J. Kolehmainen", "Bryce W. Harrington", "mo",
)
#: the resolution at which the near-blank filter measures ink
FILTER_SIZE = 16
#: an artist keeping fewer images than this means another package version: refuse
MIN_PER_ARTIST = 20


@dataclass(frozen=True)
class ClipartSelection:
    """The kept images of every artist (before the per-artist cap) and why others went."""

    files: tuple[str, ...]  # PNG file of each kept image (relative to the install root)
    artists: tuple[str, ...]  # its dc:creator
    images: np.ndarray  # float32 (N, 3, size, size), 0..255
    dropped: dict[str, int]  # reason -> number of distinct PNG files dropped for it
    seconds: dict[str, float]  # time the index and the decode took when they were built


def _thumb_ink(images: np.ndarray) -> np.ndarray:
    from surrogateshap.tasks.data.clipart import INK_LEVEL

    return (images.min(1) <= INK_LEVEL).mean((1, 2))


def select_clipart(size: int = 8, min_ink: float = 0.05, root=None, cache_dir=None) -> ClipartSelection:
    """Every kept Openclipart image with its artist (see the module docstring)."""
    from surrogateshap.tasks.data.clipart import build_index, load_clipart_images

    index = build_index(root, cache_dir)
    imgs = load_clipart_images(index, size, cache_dir)
    # the blank filter reads one resolution whatever the training size: the same images
    # are kept at every size
    thumb_ink = _thumb_ink(imgs.images if size == FILTER_SIZE else
                           load_clipart_images(index, FILTER_SIZE, cache_dir).images)
    creator = {}
    for f, c in zip(index.file, index.creator):
        creator.setdefault(f, c)
    dropped = Counter()
    by_digest: dict[str, list[int]] = {}
    for i, f in enumerate(imgs.file):
        if np.isnan(imgs.ink[i]):
            dropped["oversized (not decoded)"] += 1
        elif creator[f] is None:
            dropped["no dc:creator"] += 1
        elif thumb_ink[i] < min_ink:
            dropped[f"near-blank (ink < {min_ink:g} at {FILTER_SIZE} px)"] += 1
        else:
            by_digest.setdefault(imgs.digest[i], []).append(i)
    keep = []
    for group in by_digest.values():
        names = {creator[imgs.file[i]] for i in group}
        if len(names) > 1:
            dropped["identical copies naming different artists"] += len(group)
            continue
        keep.append(group[0])  # files are in path order: the first path of the group
        dropped["identical copy of a kept image"] += len(group) - 1
    keep.sort()
    return ClipartSelection(tuple(imgs.file[i] for i in keep), tuple(creator[imgs.file[i]] for i in keep),
                            imgs.images[keep], dict(dropped),
                            {"index": index.seconds, "decode": imgs.seconds})


def rank_artists(selection: ClipartSelection) -> list[tuple[str, int]]:
    """(artist, kept images), most first, ties by name."""
    return sorted(Counter(selection.artists).items(), key=lambda kv: (-kv[1], kv[0]))


def _cap_order(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()


def select_players(selection: ClipartSelection, players=CLIPART_ARTISTS, per_artist: int | None = 100):
    """(indices into ``selection``, label of each): the ``players``' kept images, at most
    ``per_artist`` each (smallest SHA-1 of the file path first), player by player."""
    owned = {p: [] for p in players}
    for i, a in enumerate(selection.artists):
        if a in owned:
            owned[a].append(i)
    idx, labels = [], []
    for k, p in enumerate(players):
        mine = owned[p]
        if len(mine) < MIN_PER_ARTIST:
            raise DataMissingError(
                f"Openclipart artist {p!r} has {len(mine)} kept images, fewer than {MIN_PER_ARTIST}: "
                "the installed openclipart-png / openclipart-svg differ from the version this task "
                "was built on (Debian 1:0.18+dfsg-19)")
        mine = sorted(mine, key=lambda i: _cap_order(selection.files[i]))[:per_artist]
        idx.extend(sorted(mine))
        labels.extend([k] * len(mine))
    return np.asarray(idx, np.int64), np.asarray(labels, np.int64)


def clipart_artists_dataset(per_artist: int | None = 100, size: int = 8, min_ink: float = 0.05,
                            players=CLIPART_ARTISTS, root=None, cache_dir=None) -> ImageDataset:
    """The ``players``' kept images (:func:`select_players`) as an :class:`ImageDataset`
    (RGB in [-1, 1]; label = player)."""
    sel = select_clipart(size, min_ink, root, cache_dir)
    idx, labels = select_players(sel, players, per_artist)
    x = sel.images[idx].astype(np.float32) / 127.5 - 1.0
    return ImageDataset("clipart-artists", x, labels, tuple(players))
