"""The seam for estimators that look inside the model (TRAK, influence, similarity).

A game-based estimator sees only coalitions and utilities. A model-based one declares
``requires = ("model",)`` and is handed a :class:`ModelAccess`, the minimum TRAK needs:
the full-data model's parameters, its training items with their contributors, a pure
loss and output function of the parameters, sampling, and a feature embedding. A
noise-predicting DDPM implements the optional :class:`DenoiserAccess` part instead
(``denoise`` and its schedule), from which the loss, the D-TRAK output and Journey-TRAK's
path loss are built here, once. Estimators import this module, never a task; each model
family implements the few abstract members in its own module.

This module imports neither torch nor any task at import time: torch is imported
inside the methods that need it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ModelAccess", "DenoiserAccess", "Generated", "aggregate_to_contributors", "check_model_access",
           "AGGREGATIONS"]

AGGREGATIONS = ("sum", "mean")


@dataclass
class Generated:
    """Samples of the full model with the conditioning they were drawn with.

    ``path`` holds the sampling trajectory as (t, x_t) pairs, first step first, where
    x_t is the (n, ...) batch the denoiser saw at timestep t (Journey-TRAK's targets);
    empty unless asked for.
    """

    images: "torch.Tensor"
    cond: "torch.Tensor"
    path: list[tuple[int, "torch.Tensor"]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])


class ModelAccess(ABC):
    """The minimum a model-based estimator needs (TRAK, D-TRAK, influence, similarity).

    A family implements the abstract members. Shapes: ``x0`` is (b, *item_shape) (items
    as the model takes them: pixels, or latents for a latent model), ``cond`` is (b,)
    conditioning indices, ``t`` is (b,) integer timesteps, ``noise`` is like ``x0``.
    ``loss`` and ``output`` must be pure functions of ``params`` (use
    ``torch.func.functional_call``), so ``torch.func.vmap(grad(...))`` gives
    per-example gradients.
    """

    #: the full-data model (eval mode); parameters are read from it
    module: Any
    #: (n_items,) contributor index of every training item, in the access's item order
    item_contributor: np.ndarray
    #: names of the contributors (the game's players), in index order
    players: tuple[str, ...]

    @property
    @abstractmethod
    def T(self) -> int:
        """Number of diffusion timesteps (timesteps are drawn from 0..T-1)."""

    @abstractmethod
    def loss(self, params: dict, x0, cond, t, noise):
        """The training loss of each row at timestep t with this noise, (b,)."""

    @abstractmethod
    def output(self, params: dict, x0, cond, t, noise):
        """D-TRAK's output function of each row: the mean squared norm of the model's
        prediction, (b,)."""

    @abstractmethod
    def item_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, Any, Any]]:
        """Training items as (item indices, x0, cond) batches. The order may be
        shuffled: consumers must place rows by the indices, never by position."""

    @abstractmethod
    def generate(self, n: int, seed: int, path: bool = False) -> Generated:
        """``n`` samples of the full model as x0 (the items' space), conditioning in
        proportion to the training data, optionally with the sampling path."""

    @abstractmethod
    def features(self, images) -> np.ndarray:
        """(b, f) feature embedding of x0 rows (the similarity baselines' space)."""

    @property
    def n_items(self) -> int:
        return int(len(self.item_contributor))

    @property
    def n_players(self) -> int:
        return len(self.players)

    def params(self) -> dict:
        """Detached parameters the gradients are taken with respect to (all, by default;
        a LoRA family returns only its adapter weights)."""
        return {k: v.detach() for k, v in self.module.named_parameters()}

    def path_loss(self, params: dict, x_t, x0, cond, t):
        """Journey-TRAK's loss at a point of the sampling path; a family without
        sampling paths does not offer it."""
        raise NotImplementedError(f"{type(self).__name__} has no sampling paths (Journey-TRAK)")


class DenoiserAccess(ModelAccess):
    """The optional diffusion-paths part: a DDPM that predicts noise from
    ``denoise(params, x_t, cond, t)`` under a noise schedule ``alphas_cumprod``. The
    loss, the D-TRAK output and Journey-TRAK's path loss are written here, once, for
    every such family."""

    @property
    @abstractmethod
    def alphas_cumprod(self) -> "torch.Tensor":
        """(T,) the noise schedule's alpha-bar_t, t = 0..T-1."""

    @abstractmethod
    def denoise(self, params: dict, x_t, cond, t):
        """Predicted noise eps_theta(x_t, t, cond), shape of ``x_t``; pure in ``params``."""

    @property
    def T(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def add_noise(self, x0, t, noise):
        """The forward process x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise."""
        a = self.alphas_cumprod.to(x0.device)[t].reshape(-1, *([1] * (x0.dim() - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def loss(self, params: dict, x0, cond, t, noise):
        """Denoising loss of each row: mean squared error of the predicted noise, (b,)."""
        err = self.denoise(params, self.add_noise(x0, t, noise), cond, t) - noise
        return err.pow(2).reshape(err.shape[0], -1).mean(1)

    def output(self, params: dict, x0, cond, t, noise):
        """D-TRAK's output function: mean squared norm of the predicted noise, (b,)."""
        eps = self.denoise(params, self.add_noise(x0, t, noise), cond, t)
        return eps.pow(2).reshape(eps.shape[0], -1).mean(1)

    def path_loss(self, params: dict, x_t, x0, cond, t):
        """Journey-TRAK's loss at a point of the sampling path: the error in predicting
        the noise that separates x_t from where the path ended, x0, (b,)."""
        a = self.alphas_cumprod.to(x_t.device)[t].reshape(-1, *([1] * (x_t.dim() - 1)))
        target = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        err = self.denoise(params, x_t, cond, t) - target
        return err.pow(2).reshape(err.shape[0], -1).mean(1)


def check_model_access(access, players) -> None:
    """A clear error when ``access`` is not a usable ModelAccess for these players."""
    if not isinstance(access, ModelAccess):
        raise TypeError(
            f"model must be a surrogateshap.model_access.ModelAccess (e.g. task.model_access()), "
            f"got {type(access).__name__}"
        )
    if tuple(access.players) != tuple(players):
        raise ValueError(
            f"the model's contributors {tuple(access.players)} differ from the game's players "
            f"{tuple(players)}"
        )
    c = np.asarray(access.item_contributor)
    if c.ndim != 1 or c.size == 0 or c.min() < 0 or c.max() >= len(players):
        raise ValueError("item_contributor must be a non-empty 1-D array of contributor indices "
                         f"in [0, {len(players)})")


def aggregate_to_contributors(item_scores, contributors, n_players: int, how: str = "sum",
                              ) -> np.ndarray:
    """Contributor values from per-item scores: the sum or the mean over each
    contributor's items.

    ``contributors`` is the contributor of each *row of item_scores*, taken from the
    indices the loader yielded with that row, never from the dataset's order: reading a
    shuffled loader's rows in dataset order silently scrambles contributors. A
    contributor with no scored item gets 0.
    """
    s = np.asarray(item_scores, dtype=float).reshape(-1)
    c = np.asarray(contributors).reshape(-1)
    if s.shape != c.shape:
        raise ValueError(f"{s.size} item scores for {c.size} contributor labels")
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {how!r}")
    if c.size and (c.min() < 0 or c.max() >= n_players):
        raise ValueError(f"contributor indices must lie in [0, {n_players})")
    total = np.bincount(c, weights=s, minlength=n_players)
    if how == "sum":
        return total
    count = np.bincount(c, minlength=n_players)
    return np.divide(total, count, out=np.zeros(n_players), where=count > 0)
