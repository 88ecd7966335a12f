"""Openclipart readers: real clip-art images and their artists, from Debian packages.

The Debian packages ``openclipart-png`` and ``openclipart-svg`` install the same
drawings twice under /usr/share/openclipart/: ``png/<category>/<name>.png`` (a
rendering, RGBA or palette) and ``svg/<category>/<name>.svg`` (the source, whose RDF
metadata names the artist in ``dc:creator``). Some paths are symbolic links to a twin.

Pipeline, each step a function a test can check:

1. :func:`build_index`: every PNG path, matched to the SVG at the same relative path,
   with the SVG's ``dc:creator`` (:func:`svg_creator`). Parsing ~7,500 SVGs takes
   seconds, so the index is cached as JSON under the cache folder, keyed by a
   fingerprint of the files (names, sizes, modification times).
2. :func:`load_clipart_images`: each distinct PNG file composited on white
   (:func:`composite_on_white`), its ink fraction measured (:func:`ink_fraction`),
   cropped to its ink, padded to a white square and area-resized to 32 px
   (:func:`square_thumbnail`), then box-averaged to the training size; a digest of the
   full-size pixels finds identical images. Decoding takes minutes, so the 32 px
   arrays are cached as ``.npz``.

The selection of players and images (blank filter, dedupe, per-artist cap) is the
task's (:mod:`surrogateshap.tasks.data.clipart_artists`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from surrogateshap.tasks.data.images import DataMissingError

__all__ = [
    "OPENCLIPART_DIR", "INSTALL_HINT", "INK_LEVEL", "MAX_PIXELS", "BASE_SIZE", "png_size", "box_downsample", "svg_creator", "composite_on_white",
    "ink_fraction", "square_thumbnail", "ClipartIndex", "build_index", "ClipartImages",
    "load_clipart_images",
]

OPENCLIPART_DIR = Path("/usr/share/openclipart")
INSTALL_HINT = "apt-get install openclipart-png openclipart-svg"
#: a pixel is ink when some channel is at most this (of 255) after compositing on white:
#: antialiasing haze and off-white paper tints above it do not count
INK_LEVEL = 240
#: PNGs larger than this (pixels, read from the header) are skipped, not decoded: a few
#: renderings are up to 623 Mpx, gigabytes once decoded, for a 16x16 thumbnail
MAX_PIXELS = 2**24
#: files are decoded once to thumbnails of this size; smaller sizes are box-averaged
BASE_SIZE = 32
#: bump when the preprocessing changes, so cached arrays are rebuilt
_IMAGES_VERSION = 1
_INDEX_VERSION = 1

_DC = "{http://purl.org/dc/elements/1.1/}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_CC = "{http://web.resource.org/cc/}"


def _clean(text: str | None) -> str | None:
    text = re.sub(r"\s+", " ", text or "").strip()
    return text or None


def svg_creator(path: str | os.PathLike) -> str | None:
    """The artist of an SVG: the first ``dc:creator`` of its RDF metadata, written
    ``dc:creator/cc:Agent/dc:title`` (Openclipart's form), a bare ``dc:creator`` text,
    or an ``rdf:li`` inside it. None when the file names no creator; a file that is
    not XML raises ValueError naming it."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{path} is not a readable SVG (XML error: {e})") from e
    # the work's own metadata first (rdf:RDF/cc:Work), then any dc:creator in the file
    creators = root.findall(f".//{_RDF}RDF/{_CC}Work/{_DC}creator") or root.findall(f".//{_DC}creator")
    for c in creators:
        for tag in (f".//{_DC}title", f".//{_RDF}li"):  # cc:Agent/dc:title, or a Bag / Seq
            hit = c.find(tag)
            if hit is not None and _clean(hit.text):
                return _clean(hit.text)
        if _clean(c.text):
            return _clean(c.text)
    return None


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 4) RGBA -> uint8 (H, W, 3): each pixel alpha-blended over white."""
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[-1] != 4:
        raise ValueError(f"need an (H, W, 4) RGBA array, got shape {rgba.shape}")
    rgb = rgba[..., :3].astype(np.float32)
    a = rgba[..., 3:].astype(np.float32) / 255.0
    return np.rint(rgb * a + 255.0 * (1.0 - a)).astype(np.uint8)


def ink_fraction(rgb: np.ndarray, level: int = INK_LEVEL) -> float:
    """Fraction of pixels of an RGB image (H, W, 3) whose darkest channel is <= ``level``."""
    rgb = np.asarray(rgb)
    if rgb.size == 0:
        return 0.0
    return float((rgb.min(-1) <= level).mean())


def square_thumbnail(rgb: np.ndarray, size: int, level: int = INK_LEVEL, margin: float = 0.05):
    """uint8 (H, W, 3) on white -> uint8 (size, size, 3): cropped to the ink's bounding
    box (drawings often sit on a page much larger than themselves), padded with white to
    a square with a ``margin`` border, then area-averaged down (box filter). An image
    without ink is resized whole."""
    from PIL import Image

    rgb = np.asarray(rgb, dtype=np.uint8)
    ink = rgb.min(-1) <= level
    if ink.any():
        rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        rgb = rgb[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = rgb.shape[:2]
    side = int(np.ceil(max(h, w) * (1 + 2 * margin)))
    canvas = np.full((side, side, 3), 255, np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = rgb
    img = Image.fromarray(canvas).resize((size, size), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.uint8)


def _check_root(root: Path) -> None:
    for sub, pkg in (("png", "openclipart-png"), ("svg", "openclipart-svg")):
        d = root / sub
        if not d.is_dir() or not any(d.iterdir()):
            raise DataMissingError(f"Openclipart folder {d} not found or empty (Debian package {pkg}): "
                                   f"install them with `{INSTALL_HINT}`")


def _fingerprint(root: Path) -> str:
    """A digest of the installed files (relative name, size, mtime; link targets), so a
    cache built from another package version is never reused."""
    h = hashlib.sha1()
    for sub in ("png", "svg"):
        for p in sorted((root / sub).rglob("*")):
            st = p.lstat()
            target = os.readlink(p) if p.is_symlink() else ""
            h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\0{target}\n".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class ClipartIndex:
    """One row per PNG path: its distinct file (link resolved), its SVG and the artist."""

    root: Path
    png: tuple[str, ...]  # PNG paths relative to root (links included)
    file: tuple[str, ...]  # the regular file each PNG path resolves to, relative to root
    svg: tuple[str, ...]  # the matching SVG path, relative to root ("" if none)
    creator: tuple[str | None, ...]  # dc:creator of that SVG (None: none named / no SVG)
    fingerprint: str
    seconds: float  # time it took to build (parse the SVGs), not counting a cache hit


def build_index(root: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                ) -> ClipartIndex:
    """The PNG -> SVG -> artist index of an Openclipart install (cached under
    ``cache_dir/clipart/`` when given)."""
    root = Path(root) if root is not None else OPENCLIPART_DIR
    _check_root(root)
    fp = _fingerprint(root)
    cache = Path(cache_dir) / "clipart" / f"index-v{_INDEX_VERSION}-{fp}.json" if cache_dir else None
    if cache is not None and cache.exists():
        try:
            d = json.loads(cache.read_text())
            return ClipartIndex(root, tuple(d["png"]), tuple(d["file"]), tuple(d["svg"]), tuple(d["creator"]),
                                fp, float(d["seconds"]))
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:  # derived data: rebuilt
            warnings.warn(f"the Openclipart index cache {cache} is damaged ({type(e).__name__}: {e}); "
                          "indexing the install again", stacklevel=2)
    t0 = time.perf_counter()
    creators: dict[Path, str | None] = {}
    rows = []
    inside = root.resolve()
    for p in sorted((root / "png").rglob("*.png")):
        real = p.resolve()
        if not real.is_file():
            continue  # a dangling link
        svg = root / "svg" / p.relative_to(root / "png").with_suffix(".svg")
        svg_real = svg.resolve() if svg.exists() else None
        for link, target in ((p, real), (svg, svg_real)):
            if target is not None and not target.is_relative_to(inside):
                raise DataMissingError(f"Openclipart file {link} links to {target}, outside {root}: refusing "
                                       f"to read files outside the data folder; reinstall `{INSTALL_HINT}`")
        if svg_real is not None and svg_real not in creators:
            try:
                creators[svg_real] = svg_creator(svg_real)
            except ValueError:
                creators[svg_real] = None  # an unreadable SVG names no artist
        rows.append((str(p.relative_to(root)), str(real.relative_to(root.resolve())),
                     str(svg.relative_to(root)) if svg_real else "",
                     creators.get(svg_real) if svg_real else None))
    seconds = time.perf_counter() - t0
    if not rows:
        raise DataMissingError(f"no PNG files under {root / 'png'}: install `{INSTALL_HINT}`")
    png, file, svg, creator = (tuple(c) for c in zip(*rows))
    index = ClipartIndex(root, png, file, svg, creator, fp, seconds)
    if cache is not None:
        from surrogateshap._files import atomic_write

        with atomic_write(cache) as f:
            json.dump({"png": png, "file": file, "svg": svg, "creator": creator, "seconds": seconds}, f)
    return index


@dataclass(frozen=True)
class ClipartImages:
    """Each distinct PNG file of an index, preprocessed at one size."""

    file: tuple[str, ...]  # relative to the root, as in ClipartIndex.file
    images: np.ndarray  # (M, 3, size, size) 0..255, on white, cropped to the ink, squared
    ink: np.ndarray  # (M,) ink fraction of the full-size image on white (NaN: over MAX_PIXELS, skipped)
    digest: tuple[str, ...]  # sha1 of the full-size composited pixels (identical images)
    seconds: float  # time it took to decode and preprocess, not counting a cache hit


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, without decoding it."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise DataMissingError(f"Openclipart image {path} is not a PNG file: reinstall `{INSTALL_HINT}`")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return composite_on_white(np.asarray(im.convert("RGBA")))


def _decode_all(index: ClipartIndex, size: int, cache: Path | None) -> ClipartImages:
    """Every distinct file of ``index`` decoded to uint8 thumbnails of ``size`` (cached)."""
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return ClipartImages(tuple(z["files"].tolist()), z["images"], z["ink"],
                                 tuple(z["digest"].tolist()), float(z["seconds"]))
    t0 = time.perf_counter()
    files = tuple(dict.fromkeys(index.file))
    images = np.empty((len(files), 3, size, size), np.uint8)
    ink = np.empty(len(files))
    digests = []
    for i, rel in enumerate(files):
        path = index.root / rel
        w, h = png_size(path)
        if w * h > MAX_PIXELS:
            images[i], ink[i] = 255, np.nan  # skipped: never selected
            digests.append("")
            continue
        try:
            rgb = _read_png(path)
        except OSError as e:
            raise DataMissingError(f"Openclipart image {path} is unreadable ({e}): reinstall "
                                   f"`{INSTALL_HINT}`") from e
        ink[i] = ink_fraction(rgb)
        digests.append(hashlib.sha1(f"{rgb.shape}".encode() + rgb.tobytes()).hexdigest())
        images[i] = square_thumbnail(rgb, size).transpose(2, 0, 1)
    out = ClipartImages(files, images, ink, tuple(digests), time.perf_counter() - t0)
    if cache is not None:
        from surrogateshap._files import atomic_write

        with atomic_write(cache, "wb") as f:
            np.savez(f, files=np.array(files), images=images, ink=ink, digest=np.array(digests),
                     seconds=out.seconds)
    return out


def box_downsample(images: np.ndarray, size: int) -> np.ndarray:
    """(M, C, S, S) -> float32 (M, C, size, size): means of (S / size)^2 blocks (S a
    multiple of size): the same area average as resizing the page to ``size`` directly."""
    m, c, s, _ = images.shape
    if s % size:
        raise ValueError(f"cannot box-downsample {s} px to {size} px (not a divisor)")
    f = s // size
    return images.reshape(m, c, size, f, size, f).astype(np.float32).mean((3, 5))


def load_clipart_images(index: ClipartIndex, size: int = 16, cache_dir: str | os.PathLike | None = None,
                        ) -> ClipartImages:
    """Each distinct file of ``index`` preprocessed to ``size`` px (float32 0..255).

    Files are decoded once to :data:`BASE_SIZE` px thumbnails (cached under
    ``cache_dir/clipart/`` when given); a size dividing it is box-averaged from them,
    any other size decoded on its own."""
    base = BASE_SIZE if BASE_SIZE % size == 0 else size
    cache = (Path(cache_dir) / "clipart" / f"images-v{_IMAGES_VERSION}-{index.fingerprint}-{base}.npz"
             if cache_dir else None)
    dec = _decode_all(index, base, cache)
    return dataclasses.replace(dec, images=box_downsample(dec.images, size))
