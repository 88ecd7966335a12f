"""ModelAccess for the residual-MLP DDPM family (:mod:`surrogateshap.tasks.diffusion`).

The BatchedDenoiser carries a leading "model" axis; the full model has K = 1, so the
per-example noise prediction adds and drops that axis around ``functional_call``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call

from surrogateshap.model_access import Generated, ModelAccess
from surrogateshap.tasks.diffusion import cosine_alphas_cumprod

__all__ = ["MLPModelAccess"]


class MLPModelAccess(ModelAccess):
    """The full-data model of a task built on BatchedDenoiser (``digits10``).

    The task must offer ``full_model`` (a K = 1 BatchedDenoiser), ``_data`` (x, labels
    tensors in dataset order), ``item_contributor``, ``players``, ``sample(model,
    labels, seed)`` and ``features(images)``, and ``_coalition_labels(mask)``.
    ``items`` restricts the training items to a subset of dataset indices (item i of
    the access is dataset item ``items[i]``), e.g. to subsample; ``shuffle=True`` makes
    ``item_batches`` a shuffled DataLoader (results must not change).
    """

    def __init__(self, task, items=None, shuffle: bool = False, seed: int = 0):
        self.task = task
        self.module = task.full_model
        self.players = tuple(task.players)
        n = len(task.item_contributor)
        self.items = np.arange(n) if items is None else np.asarray(items, dtype=int)
        if self.items.ndim != 1 or len(self.items) == 0 or self.items.min() < 0 or self.items.max() >= n:
            raise ValueError(f"items must be a non-empty 1-D array of dataset indices in [0, {n})")
        self.item_contributor = np.asarray(task.item_contributor)[self.items]
        self.shuffle, self.seed = shuffle, seed
        self._ab = cosine_alphas_cumprod(self.module.cfg.T)

    @property
    def alphas_cumprod(self):
        return self._ab

    def denoise(self, params, x_t, cond, t):
        return functional_call(self.module, params, (x_t[None], t[None], cond[None]))[0]

    def item_batches(self, batch_size):
        x, y = self.task._data
        sub = torch.as_tensor(self.items)
        ds = torch.utils.data.TensorDataset(torch.arange(len(sub)), x[sub], y[sub])
        g = torch.Generator().manual_seed(self.seed)
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=self.shuffle,
                                             generator=g)
        for idx, xb, yb in loader:
            yield idx.numpy(), xb, yb

    def generate(self, n, seed, path=False):
        from surrogateshap.tasks.base import allocate_counts

        counts = allocate_counts(int(n), self.task.unit_proportions(np.ones(self.n_players, bool)))
        labels = torch.as_tensor(np.repeat(np.arange(self.task.n_units), counts))
        from surrogateshap.tasks.diffusion import ddim_sample

        c = self.task.config
        steps = getattr(getattr(self.task, "family", None), "sample_steps", None) or c.sample_steps
        out = ddim_sample(self.module, labels[None], steps=steps, guidance=c.guidance,
                          seed=int(seed), return_path=path)
        if path:
            x, steps = out
            return Generated(x[0].cpu(), labels, [(t, xt[0].cpu()) for t, xt in steps])
        return Generated(out[0].cpu(), labels)

    def features(self, images):
        return self.task.features(images)[0]
