"""Text-to-image training data: items of (image, contributor, prompt); a unit is a
distinct prompt (the proxy game mixes per-prompt sample banks). :func:`load_images`
reads an item's image (a path, a PIL image, an array) as a float tensor in [0, 1]."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from surrogateshap.tasks.data.images import DataMissingError

__all__ = ["T2IItem", "T2IDataset", "load_images"]


class T2IItem(NamedTuple):
    """One training item: an image (a file path, a PIL image, a uint8 (H, W[, 3]) array
    of 0..255, or a float (3, H, W) array in [0, 1]), its contributor's index and its
    prompt."""

    image: object
    contributor: int
    prompt: str


@dataclass(frozen=True)
class T2IDataset:
    """A text-to-image dataset: ``players`` (contributor names) and ``items``."""

    name: str
    players: tuple[str, ...]
    items: tuple[T2IItem, ...]

    def __post_init__(self):
        items = tuple(T2IItem(*it) for it in self.items)
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "players", tuple(str(p) for p in self.players))
        if not items:
            raise ValueError(f"{self.name}: a dataset needs items")
        n = len(self.players)
        for i, it in enumerate(items):
            if not isinstance(it.contributor, (int, np.integer)) or not 0 <= it.contributor < n:
                raise ValueError(f"{self.name}: item {i} has contributor {it.contributor!r}, not an index "
                                 f"in 0..{n - 1}")
            if not isinstance(it.prompt, str) or not it.prompt.strip():
                raise ValueError(f"{self.name}: item {i} has no prompt (got {it.prompt!r})")
        empty = sorted(set(range(n)) - set(self.item_contributor.tolist()))
        if empty:
            raise ValueError(f"{self.name}: players without items: {[self.players[i] for i in empty[:5]]}")

    @property
    def item_contributor(self) -> np.ndarray:
        return np.array([it.contributor for it in self.items], dtype=np.int64)

    @property
    def prompts(self) -> list[str]:
        return [it.prompt for it in self.items]

    def _units(self) -> tuple[tuple[str, ...], np.ndarray]:
        index: dict[str, int] = {}
        item_unit = np.array([index.setdefault(p, len(index)) for p in self.prompts], dtype=np.int64)
        return tuple(index), item_unit

    @property
    def unit_names(self) -> tuple[str, ...]:
        """The distinct prompts, in order of first appearance."""
        return self._units()[0]

    @property
    def item_unit(self) -> np.ndarray:
        """(n_items,) the unit (prompt index) of each item."""
        return self._units()[1]


def _to_tensor(image):
    """One image -> float (3, H, W) in [0, 1]."""
    import torch

    if isinstance(image, (str, os.PathLike)):
        from PIL import Image

        path = Path(image)
        if not path.exists():
            raise DataMissingError(f"training image {path} not found")
        with Image.open(path) as im:
            image = np.asarray(im.convert("RGB"))
    elif hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.asarray(image.convert("RGB"))
    a = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if a.dtype == np.uint8:
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, -1)
        if a.ndim != 3 or a.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (H, W) or (H, W, 3), got {a.shape}")
        return torch.from_numpy(a.astype(np.float32) / 255.0).permute(2, 0, 1)
    if a.ndim != 3 or a.shape[0] != 3:
        raise ValueError(f"float images must be (3, H, W) in [0, 1], got shape {a.shape}")
    if a.min() < -1e-6 or a.max() > 1 + 1e-6:
        raise ValueError(f"float images must lie in [0, 1], got [{a.min():.3g}, {a.max():.3g}]")
    return torch.as_tensor(a, dtype=torch.float32)


def load_images(images: Sequence, size: int):
    """Images -> (N, 3, size, size) in [0, 1]: the short side resized to ``size``
    (bicubic, antialiased), then centre-cropped."""
    import torch
    import torch.nn.functional as F

    out = []
    for im in images:
        x = _to_tensor(im)[None]
        h, w = x.shape[-2:]
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
        top, left = (nh - size) // 2, (nw - size) // 2
        out.append(x[0, :, top : top + size, left : left + size].clamp(0, 1))
    return torch.stack(out)
