"""``fashion-product``: the paper's Fashion-Product task at full scale.

Reads a local copy of the Fashion Product Images dataset: ``styles.csv`` (columns
id, gender, masterCategory, subCategory, articleType, baseColour, season, year, usage,
productDisplayName) and ``images/{id}.jpg``. The dataset has no brand column; as in the
paper the brand is the first whitespace token of the display name (``brand_fn``).
Players = the top ``n_brands`` (100) brands by item count, each subsampled to
``fraction`` (25%) of its items under a fixed seed; prompts = display names; each item
is its own conditioning unit (prompts repeat, so units = the distinct prompts).

:class:`FashionProductTask` (registered as ``fashion-product``) is the paper's task on
that data: FLUX + LoRA per coalition through :mod:`surrogateshap.tasks.t2i`, with
:class:`FashionProductConfig` naming the local files. Nothing downloads: every file is
named in the error when it is absent.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from surrogateshap.game import stable_hash
from surrogateshap.tasks.datasets import DataMissingError
from surrogateshap.tasks.t2i import PaperT2IConfig, T2IDataset, T2IItem, T2ITask

__all__ = ["STYLES_COLUMNS", "StyleRow", "read_styles", "first_token_brand", "subsample_size",
           "FashionProductData", "load_fashion_product", "FashionProductConfig", "FashionProductTask"]

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


@dataclass(frozen=True)
class FashionProductConfig(PaperT2IConfig):
    """The Fashion-Product task's settings: the data folder and its selection, and the
    text-to-image set-up (a :class:`~surrogateshap.tasks.t2i.T2IConfig`). Paper preset:
    FLUX.1-dev from a local diffusers folder, LoRA rank 128, 512 px, guidance 3.5, 50
    images per coalition, diversity entropy over 20 clusters of CLIP embeddings, LPIPS to
    the prompt's training image. Every display name is its own unit (thousands of
    them), so the proxy's bank holds ``bank_per_unit`` = 2 images per prompt. ``ci`` is
    the tiny random FLUX pipeline (mechanics only). Nothing downloads: every file is
    named when it is absent."""

    data_dir: str = ""  # holds styles.csv and images/; "" = $SURROGATESHAP_DATA/fashion-product
    n_brands: int = 100
    fraction: float = 0.25
    seed: int = 0
    # the paper's text-to-image settings (T2IConfig fields)
    family: str = "flux"
    model_path: str | None = None  # a diffusers FLUX.1-dev folder (model_index.json, transformer/, ...)
    dtype: str = "bfloat16"
    resolution: int = 512
    rank: int = 128
    guidance: float | None = 3.5  # FLUX's default
    n_samples: int = 50
    bank_per_unit: int = 2
    clip_path: str | None = None  # CLIP ViT-L/14 (diversity's embedding)
    #: LPIPS backbone: torchvision's ImageNet AlexNet weights (what LPIPS(net="alex") loads)
    lpips_backbone: str | None = "alexnet-owt-7be5be79.pth"
    n_clusters: int = 20  # diversity entropy
    LABEL, CPU_TWIN = "Fashion-Product", "fashion-brands"
    MODEL_FILES = (("model_path", "the FLUX.1-dev diffusers folder", "model_index.json"),
                   ("lpips_backbone", "the LPIPS backbone weights", ""),
                   ("clip_path", "the CLIP ViT-L/14 weights (diversity)", ""))

    def missing_files(self) -> list[str]:
        """The inputs this config needs that are not configured or not present."""
        styles = self.data_folder() / "styles.csv"
        data = [] if styles.exists() else [f"data_dir: the Fashion Product data folder, {styles} not found"]
        return data + self.missing_model_files()

    def check_files(self) -> None:
        """Raise one clear error naming every absent input."""
        missing = self.missing_files()
        if missing:
            raise DataMissingError("; ".join(missing))

    def data_folder(self) -> Path:
        if self.data_dir:
            return Path(self.data_dir)
        return Path(os.environ.get("SURROGATESHAP_DATA", ".")) / "fashion-product"

    def load(self) -> FashionProductData:
        return load_fashion_product(self.data_folder(), self.n_brands, self.fraction, self.seed)


class FashionProductTask(T2ITask):
    """Brands of Fashion Product Images as the contributors of FLUX + LoRA (the paper's
    task): players = the top brands, an item = a product with its display name as
    prompt, units = the distinct display names (the proxy mixes per-prompt banks
    weighted by the coalition's items). Both games are :class:`T2ITask`'s."""

    name = "fashion-product"
    utilities = ("neg_lpips", "diversity")
    config_cls = FashionProductConfig

    @cached_property
    def data(self) -> FashionProductData:
        return self.config.load()

    @property
    def players(self) -> tuple[str, ...]:
        return self.data.brands

    def load_dataset(self) -> T2IDataset:
        d = self.data
        return T2IDataset(self.name, d.brands, tuple(T2IItem(str(p), int(b), prompt)
                                                     for p, b, prompt in d.items))
