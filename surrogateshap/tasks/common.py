"""What every room of the tasks wing shares: seeds, sample allocation, where things live.
(The bottom of the wing: it imports nothing of it.)"""

from __future__ import annotations

import os
import importlib
from pathlib import Path

import numpy as np

from surrogateshap.game import coalition_key, stable_hash

__all__ = ["allocate_counts", "coalition_seed", "image_seed", "default_cache_dir", "resolve_device", "DATA_DIR",
           "RUN_FIELDS", "Registry"]

#: the package's shipped weights (the scoring networks of the shipped tables)
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
#: config fields that change where or how fast, not what, is computed (kept out of the
#: configuration id) when a config class declares none of its own (``RUN_FIELDS``)
RUN_FIELDS = ("models_per_batch", "device", "cpus_per_job", "gpus_per_job", "memory_per_job")


def default_cache_dir() -> Path:
    """$SURROGATESHAP_CACHE, else ~/.cache/surrogateshap."""
    return Path(os.environ.get("SURROGATESHAP_CACHE", Path.home() / ".cache" / "surrogateshap"))


def coalition_seed(seed: int, mask) -> int:
    """A seed for one (seed, coalition) pair, so a retrained model does not depend on
    which other coalitions were trained beside it."""
    return int(stable_hash([int(seed), coalition_key(np.asarray(mask, bool))]), 16) % (2**31)


def image_seed(seed: int, unit: str, index: int) -> int:
    """The seed of image ``index`` of ``unit``: one image, one seed, whatever the batch."""
    return int(stable_hash([int(seed), str(unit), int(index)]), 16) % (2**31)


def allocate_counts(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` samples over labels in proportion to ``weights`` (largest remainder)."""
    w = np.asarray(weights, dtype=float)
    raw = total * w / w.sum()
    counts = np.floor(raw).astype(int)
    rest = total - counts.sum()
    counts[np.argsort(-(raw - counts), kind="stable")[:rest]] += 1
    return counts


def resolve_device(name):
    """A torch device from a config's name ("auto": CUDA when available, else the CPU)."""
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Registry:
    """Names -> factories, one per kind (tasks, model families, scorers). The built-ins
    are named as "module:attr" strings and imported on first use (their modules import
    torch), so listing names costs nothing."""

    def __init__(self, what: str, plural: str, builtin: dict[str, str]):
        self.what, self.plural = what, plural
        self._builtin = dict(builtin)
        self._items: dict = {}

    def register(self, name: str):
        """Decorator registering a factory under ``name`` (a name is registered once)."""

        def deco(factory):
            if name in self._items and self._items[name] is not factory:
                raise ValueError(f"{self.what} name {name!r} is already registered to {self._items[name]}")
            self._items[name] = factory
            return factory

        return deco

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._builtin))

    def get(self, name: str):
        if name not in self._items and name in self._builtin:
            module, attr = self._builtin[name].split(":")
            self._items[name] = getattr(importlib.import_module(module), attr)
        if name not in self._items:
            raise KeyError(f"unknown {self.what} {name!r}; known {self.plural}: {', '.join(self.names())}")
        return self._items[name]

