"""Model families of the image tasks: one small interface, two implementations.

A family trains one class-conditional guided diffusion model per coalition
(``train(images, labels, members, seeds)``), samples row k of a (K, B) label array from
model k (``sample``), and saves / loads one model. Images are (N, C, H, W) in [-1, 1].

- ``mlp``: the batched residual-MLP DDPM of :mod:`surrogateshap.tasks.diffusion`
  (flattened images, K coalition models in one loop of batched matmuls). Cheap on a
  CPU: the family of the shipped CPU tables.
- ``unet``: the diffusers UNet DDPM of :mod:`surrogateshap.tasks.unet` (the paper's
  model; one coalition model after another). The family for a GPU and the paper preset.

:func:`make_family` builds either from a task config (its fields ``hidden``/``blocks``
/``skip`` or ``channels``/``layers_per_block``/``attention``, plus the shared training fields).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MLPFamily", "UNetFamily", "make_family", "FAMILIES"]


@dataclass(frozen=True)
class MLPFamily:
    shape: tuple[int, int, int]
    n_labels: int
    hidden: int = 128
    blocks: int = 2
    skip: bool = False
    steps: int = 1000
    batch_size: int = 128
    lr: float = 3e-3
    p_uncond: float = 0.1
    sample_steps: int = 20
    name = "mlp"

    @property
    def dim(self) -> int:
        return int(np.prod(self.shape))

    def denoiser_config(self):
        from surrogateshap.tasks.diffusion import DenoiserConfig

        return DenoiserConfig(dim=self.dim, n_labels=self.n_labels, hidden=self.hidden, blocks=self.blocks,
                              skip=self.skip)

    def prepare(self, images):
        """The family's input layout: flattened (N, C*H*W)."""
        return images.reshape(len(images), -1)

    def train(self, data, labels, members, seeds, device):
        from surrogateshap.tasks.diffusion import train_denoisers

        return train_denoisers(data, labels, members, self.denoiser_config(), steps=self.steps,
                               batch_size=self.batch_size, lr=self.lr, p_uncond=self.p_uncond,
                               seeds=seeds, device=device)

    def sample(self, model, labels, seed, guidance):
        import torch

        from surrogateshap.tasks.diffusion import ddim_sample

        lab = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        x = ddim_sample(model, lab, steps=self.sample_steps, guidance=guidance, seed=seed).cpu()
        return x.reshape(*x.shape[:2], *self.shape)

    def empty_model(self, device):
        from surrogateshap.tasks.diffusion import BatchedDenoiser

        return BatchedDenoiser(1, self.denoiser_config()).to(device)


@dataclass(frozen=True)
class UNetFamily:
    shape: tuple[int, int, int]
    n_labels: int
    channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    attention: bool = False
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    p_uncond: float = 0.1
    sample_steps: int = 20
    name = "unet"

    def unet_config(self):
        from surrogateshap.tasks.unet import UNetConfig

        return UNetConfig(shape=tuple(self.shape), n_labels=self.n_labels, channels=tuple(self.channels),
                          layers_per_block=self.layers_per_block, attention=self.attention)

    def prepare(self, images):
        return images

    def train(self, data, labels, members, seeds, device):
        from surrogateshap.tasks.unet import train_unets

        return train_unets(data, labels, members, self.unet_config(), steps=self.steps,
                           batch_size=self.batch_size, lr=self.lr, p_uncond=self.p_uncond,
                           seeds=seeds, device=device)

    def sample(self, model, labels, seed, guidance):
        from surrogateshap.tasks.unet import sample_unets

        return sample_unets(model, np.asarray(labels), steps=self.sample_steps, guidance=guidance, seed=seed)

    def empty_model(self, device):
        from torch import nn

        from surrogateshap.tasks.unet import CFGUNet

        return nn.ModuleList([CFGUNet(self.unet_config())]).to(device)


FAMILIES = {"mlp": MLPFamily, "unet": UNetFamily}
_SHARED = ("steps", "batch_size", "lr", "p_uncond", "sample_steps")
_OWN = {"mlp": ("hidden", "blocks", "skip"), "unet": ("channels", "layers_per_block", "attention")}


def make_family(name: str, config, shape, n_labels: int):
    """The family ``name`` with its settings read from ``config``'s fields of the same names."""
    if name not in FAMILIES:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    kw = {f: getattr(config, f) for f in _SHARED + _OWN[name] if hasattr(config, f)}
    return FAMILIES[name](shape=tuple(shape), n_labels=n_labels, **kw)
