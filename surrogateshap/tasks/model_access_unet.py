"""ModelAccess for the diffusers UNet family (:mod:`surrogateshap.tasks.unet`).

The full model is a one-element ``ModuleList`` of ``CFGUNet`` (eps(x_t, t, y) of a
``UNet2DModel`` whose null label has its own index); ``denoise`` is its pure
``functional_call``, so per-example gradients come from ``torch.func.vmap(grad(...))``
as for the MLP family. Sampling paths (Journey-TRAK) are not recorded by this family.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call

from surrogateshap.model_access import Generated, ModelAccess

__all__ = ["UNetModelAccess"]


class UNetModelAccess(ModelAccess):
    """The full-data model of an :class:`~surrogateshap.tasks.composed.ImageTask` of the
    ``unet`` family; ``items`` restricts the training items (dataset indices)."""

    def __init__(self, task, items=None, shuffle: bool = False, seed: int = 0):
        self.task = task
        self.module = task.full_model[0].eval()
        self.players = tuple(task.players)
        n = len(task.item_contributor)
        self.items = np.arange(n) if items is None else np.asarray(items, dtype=int)
        if self.items.ndim != 1 or len(self.items) == 0 or self.items.min() < 0 or self.items.max() >= n:
            raise ValueError(f"items must be a non-empty 1-D array of dataset indices in [0, {n})")
        self.item_contributor = np.asarray(task.item_contributor)[self.items]
        self.shuffle, self.seed = shuffle, seed

    @property
    def alphas_cumprod(self):
        return self.module.alphas_cumprod

    def denoise(self, params, x_t, cond, t):
        return functional_call(self.module, params, (x_t, t, cond))

    def item_batches(self, batch_size):
        x, y = self.task._data
        sub = torch.as_tensor(self.items)
        ds = torch.utils.data.TensorDataset(torch.arange(len(sub)), x[sub], y[sub])
        g = torch.Generator().manual_seed(self.seed)
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=self.shuffle, generator=g)
        for idx, xb, yb in loader:
            yield idx.numpy(), xb, yb

    def generate(self, n, seed, path=False):
        from surrogateshap.tasks.base import allocate_counts

        if path:
            raise NotImplementedError("the unet family does not record sampling paths "
                                      "(Journey-TRAK needs them; use the mlp family)")
        counts = allocate_counts(int(n), self.task.unit_proportions(np.ones(self.n_players, bool)))
        labels = np.repeat(np.arange(self.task.n_units), counts)
        images = self.task.sample(self.task.full_model, labels[None], seed=int(seed))[0]
        return Generated(torch.as_tensor(images).cpu(), torch.as_tensor(labels))

    def features(self, images):
        return self.task.features(images)[0]
