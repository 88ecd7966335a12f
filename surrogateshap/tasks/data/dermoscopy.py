"""The clinical audit's local files: dermoscopy images by hospital site, and where its
two user-supplied attribute classifiers are (nothing downloads; every missing file is
named; :func:`~surrogateshap.tasks.catalog.dermoscopy_sites.load_attribute_classifiers`
loads them)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from surrogateshap.tasks.data.images import DataMissingError

__all__ = ["DERMOSCOPY_PROMPT", "DermoscopyConfig", "DermoscopyData", "load_dermoscopy"]

DERMOSCOPY_PROMPT = "a dermoscopic lesion from hospital {site}"


@dataclass(frozen=True)
class DermoscopyConfig:
    """Where the paper-scale audit's files are (nothing downloads)."""

    data_dir: str  # holds the metadata CSV and the images it names
    metadata: str = "metadata.csv"
    image_column: str = "image"  # path of the image, relative to data_dir
    site_column: str = "site"
    sex_classifier: str = "sex_classifier.pt"  # TorchScript files in data_dir
    melanoma_classifier: str = "melanoma_classifier.pt"


@dataclass(frozen=True)
class DermoscopyData:
    """Items (path, site index, prompt) for a text-to-image pipeline; players = sites."""

    sites: tuple[str, ...]
    paths: tuple[Path, ...]
    site_index: np.ndarray
    prompts: tuple[str, ...]

    @property
    def items(self) -> list[tuple[Path, int, str]]:
        return list(zip(self.paths, self.site_index.tolist(), self.prompts))


def load_dermoscopy(config: DermoscopyConfig) -> DermoscopyData:
    """Read the metadata CSV (any columns, two of them named by the config), check every
    image exists, and give each item its site's prompt. Sites in order of first
    appearance."""
    root = Path(config.data_dir)
    path = root / config.metadata
    if not path.exists():
        raise DataMissingError(f"dermoscopy metadata {path} not found (a CSV with columns "
                               f"{config.image_column!r} and {config.site_column!r})")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        for col in (config.image_column, config.site_column):
            if col not in cols:
                raise ValueError(f"{path}: no column {col!r}; the columns are {cols}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{path} has no rows")
    sites, site_of, paths, index = [], {}, [], []
    for line, row in enumerate(rows, start=2):
        site, image = (row[config.site_column] or "").strip(), (row[config.image_column] or "").strip()
        if not site or not image:
            raise ValueError(f"{path} line {line}: empty {config.site_column!r} or {config.image_column!r}")
        if site not in site_of:
            site_of[site] = len(sites)
            sites.append(site)
        paths.append(root / image)
        index.append(site_of[site])
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise DataMissingError(f"{len(missing)} image(s) named in {path} are missing, e.g. {missing[0]}")
    prompts = tuple(DERMOSCOPY_PROMPT.format(site=sites[i]) for i in index)
    return DermoscopyData(tuple(sites), tuple(paths), np.array(index, dtype=np.int64), prompts)
