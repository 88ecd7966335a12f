"""A local copy of the Fashion Product Images dataset: ``styles.csv`` (columns id,
gender, masterCategory, subCategory, articleType, baseColour, season, year, usage,
productDisplayName) and ``images/{id}.jpg``. The dataset has no brand column; as in the
paper the brand is the first whitespace token of the display name (``brand_fn``).
Players = the top ``n_brands`` brands by item count, each subsampled to ``fraction`` of
its items under a fixed seed; prompts = display names. Nothing downloads: every file is
named in the error when it is absent.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from surrogateshap.game import stable_hash
from surrogateshap.tasks.data.images import DataMissingError

__all__ = ["STYLES_COLUMNS", "StyleRow", "read_styles", "first_token_brand", "subsample_size",
           "FashionProductData", "load_fashion_product"]

STYLES_COLUMNS = ("id", "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season",
                  "year", "usage", "productDisplayName")


@dataclass(frozen=True)
class StyleRow:
    id: int
    fields: dict  # column -> text, productDisplayName included
    line: int  # 1-based line in styles.csv

    @property
    def name(self) -> str:
        return self.fields["productDisplayName"]


def read_styles(path: str | os.PathLike) -> list[StyleRow]:
    """Rows of styles.csv. A row is split on its first 9 commas (display names contain
    commas, unquoted); a row with fewer fields or a non-integer id raises, naming its line."""
    path = Path(path)
    if not path.exists():
        raise DataMissingError(f"Fashion Product styles file {path} not found (expected "
                               "<data_dir>/styles.csv of the Fashion Product Images dataset)")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if not lines or tuple(h.strip() for h in lines[0].split(",")) != STYLES_COLUMNS:
        raise ValueError(f"{path} line 1: expected the header {','.join(STYLES_COLUMNS)}, "
                         f"got {lines[0] if lines else '(empty file)'!r}")
    rows, seen = [], {}
    for n, text in enumerate(lines[1:], start=2):
        if not text.strip():
            continue
        parts = text.split(",", len(STYLES_COLUMNS) - 1)
        if len(parts) != len(STYLES_COLUMNS):
            raise ValueError(f"{path} line {n}: {len(parts)} fields, need {len(STYLES_COLUMNS)}: {text!r}")
        try:
            item = int(parts[0])
        except ValueError:
            raise ValueError(f"{path} line {n}: id {parts[0]!r} is not an integer") from None
        if item in seen:
            raise ValueError(f"{path} line {n}: id {item} repeats line {seen[item]}")
        seen[item] = n
        rows.append(StyleRow(item, dict(zip(STYLES_COLUMNS, (p.strip() for p in parts))), n))
    return rows


def first_token_brand(display_name: str) -> str:
    """The paper's brand: the first whitespace token of the product display name."""
    return display_name.split()[0]


def subsample_size(n: int, fraction: float) -> int:
    """Items kept of a brand with n items: fraction x n rounded half up, at least one."""
    return max(1, int(np.floor(fraction * n + 0.5)))


@dataclass(frozen=True)
class FashionProductData:
    """The kept items in brand order (ids ascending within a brand)."""

    brands: tuple[str, ...]  # players, by item count in the whole file (ties: by name)
    ids: np.ndarray  # (n,) style ids
    paths: tuple[Path, ...]
    brand_index: np.ndarray  # (n,) player index of each item
    prompts: tuple[str, ...]  # display names
    skipped: tuple[tuple[int, int], ...]  # (line, id) of rows with an empty display name

    @property
    def items(self) -> list[tuple[Path, int, str]]:
        """(image path, brand index, prompt) per item: what the T2I pipeline trains on."""
        return list(zip(self.paths, self.brand_index.tolist(), self.prompts))

    @property
    def units(self) -> tuple[str, ...]:
        """Conditioning units = the distinct prompts, in order of first appearance."""
        return tuple(dict.fromkeys(self.prompts))

    @property
    def item_unit(self) -> np.ndarray:
        index = {u: i for i, u in enumerate(self.units)}
        return np.array([index[p] for p in self.prompts], dtype=np.int64)


def load_fashion_product(data_dir: str | os.PathLike, n_brands: int = 100, fraction: float = 0.25,
                         seed: int = 0, brand_fn: Callable[[str], str] = first_token_brand,
                         skip_unnamed: bool = True) -> FashionProductData:
    """Top ``n_brands`` brands by item count, ``subsample_size(n, fraction)`` items of each
    drawn under (seed, brand) so a brand's subsample does not depend on the others.

    Rows with an empty display name have no brand and no prompt: with ``skip_unnamed``
    they are left out and listed in ``skipped``, else they raise. Every kept item's
    image must exist (the error names the missing files)."""
    root = Path(data_dir)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    rows, skipped = [], []
    for r in read_styles(root / "styles.csv"):
        if not r.name:
            if not skip_unnamed:
                raise ValueError(f"{root / 'styles.csv'} line {r.line}: id {r.id} has no productDisplayName")
            skipped.append((r.line, r.id))
            continue
        rows.append(r)
    brand_of = [brand_fn(r.name) for r in rows]
    counts = Counter(brand_of)
    if len(counts) < n_brands:
        raise ValueError(f"{root / 'styles.csv'} has {len(counts)} brands, fewer than n_brands={n_brands}")
    brands = tuple(sorted(counts, key=lambda b: (-counts[b], b))[:n_brands])
    keep = []
    for bi, b in enumerate(brands):
        members = sorted(i for i, name in enumerate(brand_of) if name == b)
        rng = np.random.default_rng(int(stable_hash([int(seed), b]), 16) % (2**32))
        chosen = rng.choice(len(members), size=subsample_size(len(members), fraction), replace=False)
        keep.extend((bi, rows[members[j]]) for j in sorted(chosen, key=lambda j: rows[members[j]].id))
    paths = tuple(root / "images" / f"{r.id}.jpg" for _, r in keep)
    missing = [p for p in paths if not p.exists()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:5])
        raise DataMissingError(f"{len(missing)} image(s) of kept items are missing: {shown}"
                               + (" ..." if len(missing) > 5 else ""))
    return FashionProductData(brands, np.array([r.id for _, r in keep], dtype=np.int64), paths,
                              np.array([bi for bi, _ in keep], dtype=np.int64),
                              tuple(r.name for _, r in keep), tuple(skipped))
