"""Magnitude pruning of a model's state dict (sparsified fine-tuning Shapley's start)."""

from __future__ import annotations

import numpy as np

__all__ = ["magnitude_prune", "PRUNE_SCOPES"]

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
