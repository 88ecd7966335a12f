"""What every family's model access shares: a task's full model and its training items
(a subset, optionally shuffled), and the conditioning of full-coalition samples
(:mod:`surrogateshap.model_access` is the estimator side)."""

from __future__ import annotations

import numpy as np

from surrogateshap.model_access import DenoiserAccess

__all__ = ["TaskItems", "TaskDenoiserAccess"]


class TaskItems:
    """A task's items as a model access sees them (a mixin of the families' accesses)."""

    def _setup(self, task, module, items, shuffle: bool, seed: int):
        """The common state of a task's access: ``items`` restricts the training items
        to a subset of dataset indices (item i of the access is dataset item
        ``items[i]``); ``shuffle`` makes ``item_batches`` a shuffled loader."""
        self.task, self.module = task, module
        self.players = tuple(task.players)
        n = len(task.item_contributor)
        self.items = np.arange(n) if items is None else np.asarray(items, dtype=int)
        if self.items.ndim != 1 or len(self.items) == 0 or self.items.min() < 0 or self.items.max() >= n:
            raise ValueError(f"items must be a non-empty 1-D array of dataset indices in [0, {n})")
        self.item_contributor = np.asarray(task.item_contributor)[self.items]
        self.shuffle, self.seed = shuffle, seed

    def _full_units(self, n: int) -> np.ndarray:
        """The units of ``n`` samples of the full coalition (in proportion to the data)."""
        return self.task.coalition_units(np.ones(len(self.players), bool), n)


class TaskDenoiserAccess(TaskItems, DenoiserAccess):
    """A task's full-data DDPM as a :class:`DenoiserAccess`; items are the task's
    ``training_data`` rows."""

    def item_batches(self, batch_size):
        import torch

        x, y = self.task.training_data
        sub = torch.as_tensor(self.items)
        ds = torch.utils.data.TensorDataset(torch.arange(len(sub)), x[sub], y[sub])
        g = torch.Generator().manual_seed(self.seed)
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=self.shuffle, generator=g)
        for idx, xb, yb in loader:
            yield idx.numpy(), xb, yb

    def features(self, images):
        return self.task.features(images)[0]
