"""The fine-tuning game of sparsified fine-tuning Shapley (the ICLR 2025 predecessor).

v(S) = utility of the full-data model, magnitude-pruned to a given sparsity, then
fine-tuned on coalition S's data for a few hundred steps (pruned weights held at zero)
and sampled with S's labels in proportion to their data, exactly as the retraining game
samples. It stands in for retraining at a fraction of the steps; any game-based
estimator can play it (the predecessor ran KernelSHAP on it).

v(empty) is the same noise prior as the retraining and proxy games (see
:mod:`surrogateshap.tasks.base`), so the three games' values differ only where the
models do. Records go to a CoalitionStore beside the retraining game's, keyed by
coalition, with a header naming the task configuration, the seed and the pruning and
fine-tuning settings; costs are counted in training steps.

The task must offer ``full_model``, ``finetune_stats(masks, seed, init, keep, steps,
lr)``, ``empty_stats()`` and ``score(stats)``.
"""

from __future__ import annotations

import time

import numpy as np

from surrogateshap.game import Game, coalition_key, stable_hash
from surrogateshap.tasks.base import DiffusionTask, _shared_store

__all__ = ["FineTuningGame", "magnitude_prune", "PRUNE_SCOPES"]

PRUNE_SCOPES = ("layer", "global")


def _prunable(name: str, tensor) -> bool:
    """Weight matrices and kernels (two or more non-trivial axes); not biases, norms."""
    return name.endswith("weight") and sum(s > 1 for s in tensor.shape) >= 2


def magnitude_prune(state: dict, sparsity: float, scope: str = "layer") -> tuple[dict, dict]:
    """Unstructured magnitude pruning of a state dict.

    Zeros the ``sparsity`` fraction of smallest-magnitude entries of every weight matrix
    (``scope="layer"``) or of all of them pooled (``"global"``). Returns the pruned
    state and the boolean keep-masks of the pruned tensors.
    """
    import torch

    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if scope not in PRUNE_SCOPES:
        raise ValueError(f"scope must be one of {PRUNE_SCOPES}, got {scope!r}")
    names = [k for k, v in state.items() if torch.is_floating_point(v) and _prunable(k, v)]
    if not names:
        raise ValueError("no prunable weight tensors (names ending in 'weight', >= 2 axes)")
    out = {k: v.clone() for k, v in state.items()}
    keep = {}

    def threshold(values, frac):
        k = int(frac * values.numel())
        return -np.inf if k == 0 else torch.kthvalue(values.flatten().abs().float(), k).values

    if scope == "global":
        cut = threshold(torch.cat([state[k].flatten() for k in names]), sparsity)
    for k in names:
        c = cut if scope == "global" else threshold(state[k], sparsity)
        keep[k] = state[k].abs() > c
        out[k] = state[k] * keep[k]
    return out, keep


class FineTuningGame(Game):
    """v(S) = utility of the pruned full model fine-tuned on S's data (seeded, cached).

    ``steps`` fine-tuning steps at peak learning rate ``lr`` (one-cycle schedule, the
    task's batch size); ``sparsity`` of ``scope``-wise magnitude pruning. Coalitions are
    fine-tuned ``config.models_per_batch`` at a time, each model from its own seed, so a
    value does not depend on which coalitions were computed together.
    """

    cost_unit = "training steps"

    def __init__(self, task: DiffusionTask, utility: str, seed: int = 0, sparsity: float = 0.5,
                 steps: int = 200, lr: float = 1e-3, scope: str = "layer", cache: bool = True,
                 progress: bool = True):
        task._check_utility(utility)
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if scope not in PRUNE_SCOPES:
            raise ValueError(f"scope must be one of {PRUNE_SCOPES}, got {scope!r}")
        if not 0.0 <= float(sparsity) < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        super().__init__(task.players)
        self.task, self.utility, self.seed = task, utility, int(seed)
        self.sparsity, self.steps, self.lr, self.scope = float(sparsity), int(steps), float(lr), scope
        self.progress = progress
        self.n_trained = 0
        self.settings = {"pruning": "magnitude", "scope": scope, "sparsity": self.sparsity,
                         "steps": self.steps, "lr": self.lr}
        self.store = None
        if cache:
            path = (task.cache_dir / task.config_id()
                    / f"finetune-{stable_hash(self.settings)}-seed{self.seed}.sqlite")
            self.store = _shared_store(path, {"task": task.config_id(), "seed": self.seed,
                                              "game": "finetune", **self.settings})
        self._memo: dict[str, dict] = {}
        self._base = None

    def base(self) -> tuple[dict, dict]:
        """The pruned full model's state and keep-masks (computed once)."""
        if self._base is None:
            state = {k: v.detach().cpu() for k, v in self.task.full_model.state_dict().items()}
            self._base = magnitude_prune(state, self.sparsity, self.scope)
        return self._base

    def records(self, masks) -> list[dict]:
        """All utilities (and seconds, steps) of each coalition, fine-tuning what is missing."""
        from tqdm.auto import tqdm

        keys = [coalition_key(m) for m in masks]
        todo, queued = [], set()
        for k, m in zip(keys, masks):
            if k in self._memo or (self.store is not None and k in self.store) or k in queued:
                continue
            if not m.any():
                self._memo[k] = {**self.task.score(self.task.empty_stats()), "seconds": 0.0, "steps": 0}
                continue
            todo.append((k, m))
            queued.add(k)
        chunk = max(1, int(getattr(self.task.config, "models_per_batch", 1)))
        bar = tqdm(total=len(todo), desc=f"fine-tuning {self.task.name} seed {self.seed}",
                   unit="model", disable=not self.progress or len(todo) <= 1)
        if todo:
            init, keep = self.base()
        for i in range(0, len(todo), chunk):
            part = todo[i : i + chunk]
            t0 = time.perf_counter()
            stats = self.task.finetune_stats(np.stack([m for _, m in part]), self.seed, init=init,
                                             keep=keep, steps=self.steps, lr=self.lr)
            dt = (time.perf_counter() - t0) / len(part)
            for (k, _), s in zip(part, stats):
                rec = {**self.task.score(s), "seconds": dt, "steps": self.steps}
                self._memo[k] = rec
                if self.store is not None:
                    self.store.append(k, rec)
            self.n_trained += len(part)
            bar.update(len(part))
        bar.close()
        return [self._memo.get(k) or self.store.get(k) for k in keys]

    def _evaluate(self, masks):
        return np.array([r[self.utility] for r in self.records(masks)])

    def cost_of(self, masks):
        return float(sum(bool(m.any()) for m in masks) * self.steps)

    def cache_id(self):
        return f"finetune:{self.task.config_id()}:{stable_hash(self.settings)}:{self.utility}:{self.seed}"
