"""A folder of images as a task's data: contributors from sub-folders or a CSV, no code.

Two layouts, as in torchvision's ``ImageFolder`` and Hugging Face ``datasets``'
``imagefolder``:

- **sub-folders**: ``DIR/<contributor>/**/<image>``; every image under a top-level
  folder belongs to that contributor (files directly in ``DIR`` belong to none and are
  listed as skipped);
- **a CSV** (``DIR/metadata.csv`` by default, found automatically, or any file named by
  ``mapping``): one row per image with the columns ``file_name`` (relative to ``DIR``)
  and ``contributor``, and optionally ``label``, the unit the model is conditioned on
  (default: the contributor), and ``caption``, the prompt of the text-to-image (LoRA)
  family (:func:`imagefolder_t2i_dataset`; the image families ignore it). Other columns
  are ignored.

Contributors and labels are sorted by name (``ImageFolder``'s order) and the items by
contributor, then path. Files and folders whose name starts with a dot are ignored.
Images are decoded with Pillow, transparent ones composited on white, centre-cropped to
a square and resized (antialiased bilinear, :func:`~surrogateshap.tasks.data.images.resize`)
to ``size``; ``channels`` None picks 1 when every image is grayscale, else 3.

The folder's identity (:attr:`FolderListing.identity`) is a hash of every candidate
image's path and bytes, who owns it, its label and its caption: a changed folder is a new
configuration, never a stale cache, and a copy on another machine is the same one.
Unreadable, truncated and non-image files are listed with the reason and skipped (or
refused); a contributor left with too few images is named.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from surrogateshap._files import atomic_write
from surrogateshap.tasks.data.images import DataMissingError, ImageDataset, resize

__all__ = ["IMAGE_SUFFIXES", "METADATA_CSV", "FolderItem", "FolderListing", "scan_folder", "read_images",
           "imagefolder_dataset", "imagefolder_t2i_dataset", "skipped_report", "check_counts"]

#: what is decoded as an image (by suffix, case-insensitive); other files are listed as skipped
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: the CSV found in the folder when no mapping is named (Hugging Face imagefolder's name)
METADATA_CSV = "metadata.csv"
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
#: folders with more files than this show a progress bar while hashed and decoded
PROGRESS_FROM = 500


@dataclass(frozen=True)
class FolderItem:
    path: str  # relative to the folder, '/'-separated
    contributor: int
    label: int
    caption: str = ""  # the CSV's caption ("" when none)


@dataclass(frozen=True)
class FolderListing:
    """What a folder holds, before any image is decoded."""

    root: Path
    source: str  # "sub-folders" or the CSV's path
    players: tuple[str, ...]
    units: tuple[str, ...]
    items: tuple[FolderItem, ...]  # the candidate images, in item order
    skipped: tuple[tuple[str, str], ...]  # (path, why) of files that are not candidates
    identity: str
    captioned: bool = False  # the CSV has a caption column

    def counts(self) -> np.ndarray:
        return np.bincount([it.contributor for it in self.items], minlength=len(self.players))


def _files(root: Path) -> list[str]:
    """Every file under ``root`` (relative, '/'-separated, sorted), hidden ones left out."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
        out += [str(rel / f) if str(rel) != "." else f for f in filenames if not f.startswith(".")]
    return sorted(out)


def _is_image(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in IMAGE_SUFFIXES


def _progress(items, what: str, total: int):
    from tqdm.auto import tqdm

    return tqdm(items, desc=what, total=total, unit="file", file=sys.stderr, disable=total < PROGRESS_FROM)


def _read_csv(root: Path, csv_path: Path, files: set[str]):
    """(path, contributor, label, caption) rows of a mapping CSV, the files it names that
    are absent, and whether it has a caption column; a malformed CSV is one error naming
    its line."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            need = [c for c in ("file_name", "contributor") if c not in columns]
            if need:
                raise DataMissingError(f"mapping {csv_path}: no column {', '.join(need)} (it has "
                                       f"{', '.join(columns) or 'none'}; needs file_name, contributor, "
                                       "optionally label and caption)")
            has_label = "label" in columns
            rows, absent, seen = [], [], {}
            for line, row in enumerate(reader, start=2):
                name = (row.get("file_name") or "").strip()
                who = (row.get("contributor") or "").strip()
                label = (row.get("label") or "").strip() if has_label else who
                if not name or not who or not label:
                    empty = "file_name" if not name else "contributor" if not who else "label"
                    raise DataMissingError(f"mapping {csv_path} line {line}: empty {empty}")
                rel = PurePosixPath(name.replace("\\", "/"))
                if rel.is_absolute() or ".." in rel.parts:
                    raise DataMissingError(f"mapping {csv_path} line {line}: file_name {name!r} is not a "
                                           f"path inside {root}")
                rel = str(rel)
                if rel in seen:
                    raise DataMissingError(f"mapping {csv_path} line {line}: {rel} is named again "
                                           f"(first on line {seen[rel]})")
                seen[rel] = line
                if rel not in files:
                    absent.append((rel, f"named on {csv_path.name} line {line}, not found"))
                elif not _is_image(rel):
                    absent.append((rel, f"not an image file (suffix {PurePosixPath(rel).suffix or 'none'})"))
                else:
                    rows.append((rel, who, label, (row.get("caption") or "").strip()))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataMissingError(f"mapping {csv_path} cannot be read as a CSV ({type(e).__name__}: {e})") from e
    return rows, absent, "caption" in columns


def _file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: a file unchanged for this long before it is hashed keeps its digest while its stat
#: holds: a later write gets a later time stamp (git's "racily clean" rule; FAT's 2 s)
SETTLED_NS = 2_000_000_000
#: the digests this process knows: absolute path -> (stat key, SHA-1)
_DIGESTS: dict[str, tuple[tuple[int, ...], str]] = {}


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)  # ctime: a write that restores mtime moves it


def _digests(root: Path, paths, store: Path | None) -> list[str]:
    """Each file's SHA-1, hashed again only where its stat key changed since this process,
    or one sharing ``store`` (a JSON file; None: this process only), last hashed it."""
    if store is not None:
        try:
            saved = json.loads(store.read_text())
            _DIGESTS.update({p: (tuple(int(k) for k in key), str(d)) for p, (key, d) in saved.items()
                             if p not in _DIGESTS})
        except (OSError, ValueError, TypeError, AttributeError):
            pass  # no store yet, or not one: hash again
    full = [os.path.abspath(root / rel) for rel in paths]
    out, new = [], False
    for path in _progress(full, f"hashing {root}", len(full)):
        st = os.stat(path)
        key, known = _stat_key(st), _DIGESTS.get(path)
        if known is not None and known[0] == key:
            out.append(known[1])
            continue
        out.append(_file_digest(Path(path)))
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > SETTLED_NS:
            _DIGESTS[path], new = (key, out[-1]), True
    if store is not None and new:
        try:
            with atomic_write(store) as f:
                json.dump({p: _DIGESTS[p] for p in full if p in _DIGESTS}, f)
        except OSError:
            pass  # a read-only cache: this process still remembers them
    return out


def scan_folder(data_dir, mapping: str = "auto", digest_dir: Path | None = None) -> FolderListing:
    """List a folder's contributors, labels and candidate images, and hash its content.

    ``mapping``: "auto" (``DIR/metadata.csv`` when present, else sub-folders),
    "sub-folders", or the path of a CSV (relative to ``DIR`` or absolute).
    ``digest_dir``: where the images' digests are kept for the next process (one JSON file
    per folder; only a file whose size, times or inode changed is hashed again)."""
    if data_dir is None:
        raise DataMissingError("imagefolder needs a folder of images: pass --data DIR (command line), "
                               "data_dir= (Python), or set SURROGATESHAP_IMAGEFOLDER")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataMissingError(f"image folder {root} " + ("is not a folder" if root.exists() else "not found"))
    files = _files(root)
    csv_path = None
    if mapping not in ("auto", "sub-folders"):
        csv_path = Path(mapping) if Path(mapping).is_absolute() else root / mapping
        if not csv_path.is_file():
            raise DataMissingError(f"mapping {csv_path} not found (mapping= names a CSV with the columns "
                                   "file_name, contributor and optionally label)")
    elif mapping == "auto" and (root / METADATA_CSV).is_file():
        csv_path = root / METADATA_CSV
    skipped: list[tuple[str, str]] = []
    captioned = False
    if csv_path is not None:
        own = csv_path.resolve().relative_to(root.resolve()).as_posix() \
            if csv_path.resolve().is_relative_to(root.resolve()) else None
        rows, skipped, captioned = _read_csv(root, csv_path, set(files))
        named = {r[0] for r in rows} | {p for p, _ in skipped}
        skipped += [(f, f"not named in {csv_path.name}") for f in files if f not in named and f != own]
        source = str(csv_path)
    else:
        rows = []
        for f in files:
            parts = PurePosixPath(f).parts
            if len(parts) == 1:
                skipped.append((f, "not in a contributor's sub-folder"))
            elif not _is_image(f):
                skipped.append((f, f"not an image file (suffix {PurePosixPath(f).suffix or 'none'})"))
            else:
                rows.append((f, parts[0], parts[0], ""))
        source = "sub-folders"
    players = tuple(sorted({r[1] for r in rows}))
    units = tuple(sorted({r[2] for r in rows}))
    if not players:
        raise DataMissingError(f"image folder {root}: no image found in {source} "
                               f"({len(files)} file(s), {len(skipped)} skipped; images end in "
                               f"{', '.join(IMAGE_SUFFIXES)})")
    pi, ui = {p: i for i, p in enumerate(players)}, {u: i for i, u in enumerate(units)}
    items = tuple(sorted((FolderItem(p, pi[c], ui[lab], cap) for p, c, lab, cap in rows),
                         key=lambda it: (it.contributor, it.path)))
    h = hashlib.sha1()
    store = None if digest_dir is None else \
        Path(digest_dir) / f"{hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:16]}.json"
    for it, digest in zip(items, _digests(root, [it.path for it in items], store)):
        caption = f"\0{it.caption}" if it.caption else ""  # folders without captions keep their identity
        h.update(f"{it.path}\0{players[it.contributor]}\0{units[it.label]}\0{digest}{caption}\n".encode())
    return FolderListing(root, source, players, units, items, tuple(sorted(skipped)), h.hexdigest()[:16],
                         captioned)


def _square(a: np.ndarray) -> np.ndarray:
    """The centred square crop of an (H, W, C) array."""
    h, w = a.shape[:2]
    s = min(h, w)
    return a[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]


def _decode(path: Path):
    """(uint8 (H, W, 3) or (H, W, 1) array, grayscale?) of one image; raises what Pillow
    raises for an unreadable or truncated file."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # a truncated file raises here, not at open
        gray = im.mode in GRAY_MODES
        if "A" in im.getbands() or "transparency" in im.info:
            rgba = im.convert("RGBA")
            im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        a = np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8)
    return (a[..., None] if a.ndim == 2 else a), gray


def _decoded(listing: FolderListing, bad: list):
    """(item index, (H, W, C) array, grayscale?) of each image that decodes; the (path,
    why) of those that do not are appended to ``bad``."""
    from PIL import Image

    for i, it in enumerate(_progress(listing.items, f"reading {listing.root}", len(listing.items))):
        try:
            a, gray = _decode(listing.root / it.path)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            why = "truncated" if "truncated" in str(e) else "unreadable"
            bad.append((it.path, f"{why} image ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"))
            continue
        yield i, a, gray


def read_images(listing: FolderListing, size: int, channels: int | None = None):
    """Decode the listing's images: (float32 (N, C, size, size) in [-1, 1] of the images
    that decode, their item indices, (path, why) of those that do not)."""
    arrays, kept, bad, grays = [], [], [], []
    for i, a, gray in _decoded(listing, bad):
        arrays.append(_square(a))
        kept.append(i)
        grays.append(gray)
    c = channels if channels is not None else (1 if all(grays) else 3)
    out = np.zeros((len(arrays), c, size, size), np.float32)
    shapes: dict = {}
    for j, a in enumerate(arrays):
        if a.shape[2] != c:  # gray to colour: repeat; colour to gray: ITU-R 601 luma, as Pillow's "L"
            a = np.repeat(a, 3, axis=2) if c == 3 else np.round(a @ np.array([0.299, 0.587, 0.114]))[..., None]
        shapes.setdefault(a.shape, []).append((j, a))
    for group in shapes.values():  # one antialiased resize per input shape
        idx = [j for j, _ in group]
        out[idx] = resize(np.stack([a for _, a in group]).transpose(0, 3, 1, 2), size)
    return out, np.asarray(kept, dtype=np.int64), bad


def skipped_report(root, skipped, total: int, show: int = 10, what: str = "skipped") -> str:
    """One paragraph naming the files left out and why (the first ``show`` of them)."""
    lines = [f"  {p}: {why}" for p, why in skipped[:show]]
    more = [f"  ... and {len(skipped) - show} more"] if len(skipped) > show else []
    return "\n".join([f"image folder {root}: {what} {len(skipped)} of {total} file(s):", *lines, *more])


def imagefolder_dataset(listing: FolderListing, size: int, channels: int | None = None, min_images: int = 1,
                        bad_files: str = "skip", name: str = "imagefolder"):
    """The folder's :class:`ImageDataset` and the (path, why) of every file left out.

    Bad files (``bad_files="skip"``) are left out and reported on stderr; ``"refuse"``
    raises one :class:`DataMissingError` naming them. A contributor left with fewer than
    ``min_images`` images is an error naming it."""
    images, kept, bad = read_images(listing, size, channels)
    skipped, contributors = _keep(listing, kept, bad, min_images, bad_files)
    labels = np.array([listing.items[i].label for i in kept], dtype=np.int64)
    same = listing.units == listing.players and np.array_equal(labels, contributors)
    return ImageDataset(name, images, labels, listing.players, units=None if same else listing.units,
                        contributors=None if same else contributors), skipped


def imagefolder_t2i_dataset(listing: FolderListing, template: str, captions: bool = True, min_images: int = 1,
                            bad_files: str = "skip", name: str = "imagefolder"):
    """The folder as a text-to-image :class:`~surrogateshap.tasks.data.t2i.T2IDataset`
    (each image's path, contributor and prompt) and the (path, why) of every file left
    out. The prompt is the image's caption (``captions``) or, where it has none,
    ``template`` formatted with its ``contributor`` and ``label``. Every image is decoded
    once here, so bad files are handled as by :func:`imagefolder_dataset`; the family
    reads them again at its own resolution."""
    from surrogateshap.tasks.data.t2i import T2IDataset, T2IItem

    bad: list = []
    kept = [i for i, _, _ in _decoded(listing, bad)]
    skipped, _ = _keep(listing, kept, bad, min_images, bad_files)
    items = []
    for i in kept:
        it = listing.items[i]
        prompt = it.caption if captions and it.caption else \
            template.format(contributor=listing.players[it.contributor], label=listing.units[it.label])
        items.append(T2IItem(str(listing.root / it.path), it.contributor, prompt))
    return T2IDataset(name, listing.players, tuple(items)), skipped


def _keep(listing: FolderListing, kept, bad, min_images: int, bad_files: str):
    """Report (or refuse) the files left out, check what is left, and return them all as
    (path, why), with the contributor of each kept image."""
    skipped = sorted([*listing.skipped, *bad])
    total = len(listing.items) + len(listing.skipped)
    if bad and bad_files == "refuse":
        raise DataMissingError(skipped_report(listing.root, bad, len(listing.items),
                                              what="refused (bad_files='refuse'): cannot read"))
    if skipped:
        print(skipped_report(listing.root, skipped, total), file=sys.stderr, flush=True)
    contributors = np.array([listing.items[i].contributor for i in kept], dtype=np.int64)
    check_counts(listing, np.bincount(contributors, minlength=len(listing.players)), min_images,
                 "after skipping unreadable files")
    return skipped, contributors


def check_counts(listing: FolderListing, counts, min_images: int, when: str = "") -> None:
    """Every contributor holds at least ``min_images`` images, or one error naming those
    that do not."""
    short = [(p, int(c)) for p, c in zip(listing.players, counts) if c < min_images]
    if short:
        shown = ", ".join(f"{p!r} ({c})" for p, c in short[:10]) + (" ..." if len(short) > 10 else "")
        raise DataMissingError(
            f"image folder {listing.root}: {len(short)} contributor(s) have fewer than min_images={min_images} "
            f"images{' ' + when if when else ''}: {shown}. Add images, move those out, or lower min_images")
