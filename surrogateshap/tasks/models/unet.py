"""The ``unet`` model family: a class-conditional diffusers UNet DDPM with
classifier-free guidance (the paper's model; the family for a GPU and the paper preset).

The paper's CIFAR-20 model: ``diffusers.UNet2DModel`` with a class embedding of
``n_labels + 1`` entries (the null label of guidance is index ``n_labels``, its own
entry; the authors' code reused class 0), trained with ``DDPMScheduler`` (the label
dropped with probability ``p_uncond``) and sampled with ``DDIMScheduler`` (eta = 0)
and guidance eps = (1 + w) eps(x, y) - w eps(x, null). Built from a config, nothing
downloaded; images (C, H, W) in [-1, 1]; the device is the caller's.

One model per coalition, trained one after the other. Each model's initial weights and
every random draw of its training come from its own generator seeded per
(seed, coalition), so a model does not depend on which coalitions share its call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from surrogateshap.model_access import Generated
from surrogateshap.tasks.models.access import TaskDenoiserAccess
from surrogateshap.tasks.models.mlp import ImageFamily, check_members_and_seeds, step_bar

__all__ = ["UNetConfig", "CFGUNet", "denoising_loss", "train_unets", "sample_unets", "UNetFamily",
           "UNetModelAccess"]


@dataclass(frozen=True)
class UNetConfig:
    shape: tuple[int, int, int] = (1, 16, 16)  # (C, H, W)
    n_labels: int = 10
    channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    attention: bool = False  # self-attention in the lowest-resolution blocks
    T: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"


class CFGUNet(nn.Module):
    """eps(x_t, t, y) of a UNet2DModel; y = n_labels is the null (unconditional) label.

    Carries its noise schedule (``alphas_cumprod``) so that :func:`denoising_loss`
    needs only the model and the example.
    """

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        from diffusers import DDPMScheduler, UNet2DModel

        self.cfg = cfg
        C, H, W = cfg.shape
        if H != W:
            raise ValueError(f"square images only, got {cfg.shape}")
        down = tuple("AttnDownBlock2D" if cfg.attention and i == len(cfg.channels) - 1 else "DownBlock2D"
                     for i in range(len(cfg.channels)))
        up = tuple("AttnUpBlock2D" if cfg.attention and i == 0 else "UpBlock2D"
                   for i in range(len(cfg.channels)))
        groups = int(np.gcd.reduce([32, *cfg.channels]))
        self.unet = UNet2DModel(
            sample_size=H, in_channels=C, out_channels=C, block_out_channels=tuple(cfg.channels),
            layers_per_block=cfg.layers_per_block, down_block_types=down, up_block_types=up,
            num_class_embeds=cfg.n_labels + 1, norm_num_groups=groups,
        )
        self.scheduler_config = dict(num_train_timesteps=cfg.T, beta_schedule=cfg.beta_schedule,
                                     clip_sample=True, prediction_type="epsilon")
        ab = DDPMScheduler(**self.scheduler_config).alphas_cumprod.float()
        self.register_buffer("alphas_cumprod", ab, persistent=False)

    @property
    def null_label(self) -> int:
        return self.cfg.n_labels

    def forward(self, x, t, y):
        return self.unet(x, t, class_labels=y).sample


def denoising_loss(model: CFGUNet, x, label, t, noise) -> torch.Tensor:
    """Per-example DDPM loss ||eps(x_t, t, label) - noise||^2 (mean over pixels), (B,).

    x_t = sqrt(ab_t) x + sqrt(1 - ab_t) noise. ``label`` = model.null_label is the
    unconditional branch. The training objective is its mean; a model-access adapter
    (TRAK and kin) can differentiate it per example.
    """
    ab = model.alphas_cumprod.to(x.device)[t].view(-1, *([1] * (x.dim() - 1)))
    xt = ab.sqrt() * x + (1 - ab).sqrt() * noise
    return ((model(xt, t, label) - noise) ** 2).flatten(1).mean(1)


def _warmup_cosine(steps: int):
    """Linear warm-up over 5% of the steps, then cosine decay to 0 (any step count)."""
    warm = max(1, steps // 20)

    def f(i):
        if i < warm:
            return (i + 1) / warm
        return 0.5 * (1 + np.cos(np.pi * (i - warm) / max(1, steps - warm)))

    return f


def _build(cfg: UNetConfig, seed: int) -> CFGUNet:
    with torch.random.fork_rng(devices=[]):  # diffusers initialises from the global RNG
        torch.manual_seed(int(seed) + 7919)
        return CFGUNet(cfg)


def train_unets(data: torch.Tensor, labels: torch.Tensor, members: list[np.ndarray], cfg: UNetConfig,
                steps: int, batch_size: int, lr: float, p_uncond: float = 0.1,
                seeds: list[int] | int = 0, device="cpu", progress=None) -> nn.ModuleList:
    """Train one CFGUNet per entry of ``members`` (item indices of its coalition).

    Model k draws items only from ``members[k]``; the label is replaced by the null label
    with probability ``p_uncond``; noise is added by ``DDPMScheduler.add_noise``.
    ``progress``: called after every step of every model.
    """
    from diffusers import DDPMScheduler

    seeds = check_members_and_seeds(members, seeds)
    device = torch.device(device)
    data, labels = data.to(device), labels.to(device)
    models = nn.ModuleList()
    for mem, seed in zip(members, seeds):
        model = _build(cfg, seed).to(device).train()
        sched = DDPMScheduler(**model.scheduler_config)
        g = torch.Generator(device="cpu").manual_seed(seed)
        mem = torch.as_tensor(np.asarray(mem), dtype=torch.long)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(steps))
        for _ in range(steps):
            idx = mem[torch.randint(len(mem), (batch_size,), generator=g)].to(device)
            x0, y = data[idx], labels[idx]
            drop = (torch.rand(batch_size, generator=g) < p_uncond).to(device)
            y = torch.where(drop, torch.full_like(y, cfg.n_labels), y)
            t = torch.randint(cfg.T, (batch_size,), generator=g).to(device)
            noise = torch.randn(x0.shape, generator=g).to(device)
            xt = sched.add_noise(x0, noise, t)
            loss = ((model(xt, t, y) - noise) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            lr_sched.step()
            if progress is not None:
                progress()
        models.append(model.eval())
    return models


@torch.no_grad()
def sample_unets(models, labels, steps: int = 20, guidance: float = 1.0, seed=0,
                 batch: int = 512) -> torch.Tensor:
    """DDIM (eta = 0) with classifier-free guidance; row k of ``labels`` (K, B) from
    model k, from noise seeded by ``seed`` (one int or one per model). (K, B, C, H, W)."""
    from diffusers import DDIMScheduler

    labels = torch.as_tensor(labels, dtype=torch.long)
    K, B = labels.shape
    seeds = [int(seed)] * K if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    out = []
    for model, lab, s in zip(models, labels, seeds):
        device = next(model.parameters()).device
        sched = DDIMScheduler(**model.scheduler_config)
        sched.set_timesteps(steps)
        x_all = torch.randn(B, *model.cfg.shape, generator=torch.Generator().manual_seed(s))
        chunks = []
        for i in range(0, B, batch):
            x, y = x_all[i : i + batch].to(device), lab[i : i + batch].to(device)
            null = torch.full_like(y, model.null_label)
            for t in sched.timesteps:
                tt = torch.full((len(x),), int(t), device=device, dtype=torch.long)
                if guidance != 0:
                    e = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([y, null]))
                    eps = (1 + guidance) * e[: len(x)] - guidance * e[len(x):]
                else:
                    eps = model(x, tt, y)
                x = sched.step(eps, t, x, eta=0.0).prev_sample
            chunks.append(x.clamp(-1, 1).cpu())
        out.append(torch.cat(chunks))
    return torch.stack(out)


# --- the family ------------------------------------------------------------------------
@dataclass(frozen=True)
class UNetFamily(ImageFamily):
    channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    attention: bool = False
    batch_size: int = 64
    lr: float = 1e-3
    name = "unet"
    OWN: ClassVar[tuple[str, ...]] = ("channels", "layers_per_block", "attention")

    def unet_config(self) -> UNetConfig:
        return UNetConfig(shape=tuple(self.shape), n_labels=self.n_labels, channels=tuple(self.channels),
                          layers_per_block=self.layers_per_block, attention=self.attention)

    def train(self, data, members, seeds, progress: bool = False):
        """One UNet per coalition; ``progress``: a bar over the steps (:func:`step_bar`)."""
        x, y = data
        with step_bar(self.steps * len(members), f"training {len(members)} unet model(s)", progress) as bar:
            return train_unets(x, y, members, self.unet_config(), steps=self.steps, batch_size=self.batch_size,
                               lr=self.lr, p_uncond=self.p_uncond, seeds=seeds, device=self.device,
                               progress=bar.update)

    def sample(self, model, labels, seed, guidance: float | None = None):
        g = self.guidance if guidance is None else guidance
        return sample_unets(model, np.asarray(labels), steps=self.sample_steps, guidance=g, seed=seed)

    def empty_model(self):
        return nn.ModuleList([CFGUNet(self.unet_config())]).to(self.device)

    def model_access(self, task, items=None, shuffle: bool = False):
        return UNetModelAccess(task, items=items, shuffle=shuffle)


class UNetModelAccess(TaskDenoiserAccess):
    """The full-data model of a task of the unet family (a one-element ``ModuleList`` of
    ``CFGUNet``); ``denoise`` is its pure ``functional_call``. Sampling paths
    (Journey-TRAK) are not recorded by this family."""

    def __init__(self, task, items=None, shuffle: bool = False, seed: int = 0):
        self._setup(task, task.full_model[0].eval(), items, shuffle, seed)

    @property
    def alphas_cumprod(self):
        return self.module.alphas_cumprod

    def denoise(self, params, x_t, cond, t):
        from torch.func import functional_call

        return functional_call(self.module, params, (x_t, t, cond))

    def generate(self, n, seed, path=False):
        if path:
            raise NotImplementedError("the unet family does not record sampling paths "
                                      "(Journey-TRAK needs them; use the mlp family)")
        labels = self._full_units(n)
        images = self.task.family.sample(self.task.full_model, labels[None], seed=int(seed))[0]
        return Generated(torch.as_tensor(images).cpu(), torch.as_tensor(labels))
