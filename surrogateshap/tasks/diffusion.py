"""A small class-conditional DDPM with classifier-free guidance, trained K-at-a-time.

Contributor valuation needs many small models, one per coalition. The denoiser here is
a residual MLP on flattened images whose weights carry a leading "model" axis, so one
optimiser step trains K coalition models at once with batched matmuls (each model sees
only its own coalition's items). Sampling is deterministic DDIM with guidance
eps = (1 + w) eps(x, y) - w eps(x, null). Device is chosen by the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["DenoiserConfig", "check_members_and_seeds", "BatchedDenoiser", "train_denoisers", "ddim_sample", "cosine_alphas_cumprod"]


@dataclass(frozen=True)
class DenoiserConfig:
    dim: int = 64  # flattened image size
    n_labels: int = 10  # the null label gets index n_labels
    hidden: int = 128
    blocks: int = 2
    expansion: int = 2
    time_dim: int = 32
    T: int = 1000
    #: a learned linear map from x_t straight to the output (zero at start); off for
    #: digits10 (its shipped numbers), on for wider images, where a residual MLP of width
    #: ~dim cannot pass x_t through its SiLUs and stalls (fashion-animal20 at 16x16)
    skip: bool = False


def cosine_alphas_cumprod(T: int) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule, alpha_bar_t for t = 0..T-1."""
    s = 0.008
    t = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    ab = (f / f[0])[1:]
    return ab.clamp(1e-5, 1.0).float()


def _timestep_embedding(t: torch.Tensor, dim: int, T: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = (t.float() / T)[..., None] * 1000.0 * freqs
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class _BLinear(nn.Module):
    """K independent linear layers applied to (K, B, in) with one batched matmul."""

    def __init__(self, K: int, d_in: int, d_out: int, zero: bool = False):
        super().__init__()
        w = torch.randn(K, d_in, d_out) / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.zeros_like(w) if zero else w)
        self.bias = nn.Parameter(torch.zeros(K, 1, d_out))

    def forward(self, x):
        return torch.baddbmm(self.bias, x, self.weight)


class BatchedDenoiser(nn.Module):
    """K residual-MLP noise predictors eps(x_t, t, y), parameters stacked on axis 0."""

    def __init__(self, K: int, cfg: DenoiserConfig):
        super().__init__()
        self.K, self.cfg = K, cfg
        H = cfg.hidden
        self.inp = _BLinear(K, cfg.dim, H)
        self.temb = _BLinear(K, cfg.time_dim, H)
        self.label = nn.Parameter(torch.randn(K, cfg.n_labels + 1, H) * 0.02)
        self.blocks = nn.ModuleList(
            nn.ModuleList([_BLinear(K, H, H * cfg.expansion), _BLinear(K, H * cfg.expansion, H, zero=True)])
            for _ in range(cfg.blocks)
        )
        self.out = _BLinear(K, H, cfg.dim)
        if cfg.skip:
            self.skip = _BLinear(K, cfg.dim, cfg.dim, zero=True)

    def forward(self, x, t, y):
        """x (K, B, dim), t (K, B) ints, y (K, B) labels (n_labels = null)."""
        emb = _timestep_embedding(t, self.cfg.time_dim, self.cfg.T)
        lab = torch.gather(self.label, 1, y[..., None].expand(-1, -1, self.label.shape[-1]))
        h = self.inp(x) + self.temb(emb) + lab
        for up, down in self.blocks:
            h = h + down(nn.functional.silu(up(nn.functional.silu(h))))
        out = self.out(nn.functional.silu(h))
        return out + self.skip(x) if self.cfg.skip else out

    @torch.no_grad()
    def reinit(self, seeds: list[int]) -> None:
        """Draw model k's initial weights from a generator seeded by seeds[k]."""
        for k, seed in enumerate(seeds):
            gk = torch.Generator(device="cpu").manual_seed(int(seed) + 7919)
            for mod in self.modules():
                if isinstance(mod, _BLinear) and mod.weight[k].abs().sum() > 0:
                    w = torch.randn(mod.weight.shape[1:], generator=gk) / math.sqrt(mod.weight.shape[1])
                    mod.weight[k].copy_(w)
            self.label[k].copy_(torch.randn(self.label.shape[1:], generator=gk) * 0.02)

    def select(self, k: int) -> "BatchedDenoiser":
        """A single-model denoiser holding model k's weights."""
        one = BatchedDenoiser(1, self.cfg).to(next(self.parameters()).device)
        with torch.no_grad():
            for (name, p1), (_, p) in zip(one.named_parameters(), self.named_parameters()):
                p1.copy_(p[k : k + 1])
        return one


def check_members_and_seeds(members, seeds) -> list[int]:
    """Validate K coalitions' training items and seeds (one int, or one per model) for
    any family's K-at-a-time training; returns the K seeds."""
    K = len(members)
    if K == 0:
        raise ValueError("no models to train")
    for k, m in enumerate(members):
        if len(m) == 0:
            raise ValueError(f"model {k} has no training items (empty coalition)")
    seeds = [int(seeds)] * K if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if len(seeds) != K:
        raise ValueError(f"need one seed per model: {len(seeds)} seeds for {K} models")
    return seeds


def train_denoisers(
    data: torch.Tensor,
    labels: torch.Tensor,
    members: list[np.ndarray],
    cfg: DenoiserConfig,
    steps: int,
    batch_size: int,
    lr: float,
    p_uncond: float = 0.1,
    seeds: list[int] | int = 0,
    device: str | torch.device = "cpu",
    progress=None,
    init: dict | None = None,
    keep: dict | None = None,
) -> BatchedDenoiser:
    """Train one denoiser per entry of ``members`` (item indices), all in one loop.

    Model k only ever draws items from ``members[k]``: a coalition's data never leaks
    into another coalition's model. The condition is dropped with probability
    ``p_uncond`` (replaced by the null label) for classifier-free guidance. Model k's
    initialisation and every random draw come from its own generator seeded by
    ``seeds[k]``, so a model does not depend on which others it was trained beside.

    Fine-tuning: ``init`` (a one-model state dict) starts every model from those
    weights instead; ``keep`` (name -> boolean mask of a one-model parameter) holds the
    masked-out weights at zero throughout (a pruned model stays sparse).
    """
    K = len(members)
    seeds = check_members_and_seeds(members, seeds)
    gens = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
    model = BatchedDenoiser(K, cfg)
    model.reinit([int(s) for s in seeds])
    if init is not None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(init[name].to(p).expand_as(p))
    keep = {k: v.to(device) for k, v in (keep or {}).items()}
    model = model.to(device)
    params = dict(model.named_parameters())

    def _apply_keep():
        with torch.no_grad():
            for name, m in keep.items():
                params[name].mul_(m)

    _apply_keep()
    data, labels = data.to(device), labels.to(device)
    sizes = torch.tensor([len(m) for m in members], device=device)
    table = torch.zeros(K, int(sizes.max()), dtype=torch.long)
    for k, m in enumerate(members):
        table[k, : len(m)] = torch.as_tensor(np.asarray(m), dtype=torch.long)
    table = table.to(device)
    ab = cosine_alphas_cumprod(cfg.T).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    for step in range(steps):
        # per-model draws: uniform item, dropout, timestep and noise from model k's generator
        r = torch.stack([torch.rand(batch_size, 3 + cfg.dim, generator=gk) for gk in gens]).to(device)
        pick = torch.minimum((r[..., 0] * sizes[:, None]).long(), sizes[:, None] - 1)
        idx = torch.gather(table, 1, pick)  # never past model k's own items
        x0, y = data[idx], labels[idx]
        y = torch.where(r[..., 1] < p_uncond, torch.full_like(y, cfg.n_labels), y)
        t = (r[..., 2] * cfg.T).long().clamp_max(cfg.T - 1)
        # Box-Muller would need two uniforms; the normal CDF inverse keeps one draw per dim
        noise = torch.special.ndtri(r[..., 3:].clamp(1e-7, 1 - 1e-7))
        a = ab[t][..., None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        # mean over batch and dims, summed over models: each model gets its own gradient
        loss = ((model(xt, t, y) - noise) ** 2).mean(dim=(1, 2)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if keep:
            _apply_keep()
        if progress is not None:
            progress(step)
    return model.eval()


@torch.no_grad()
def ddim_sample(
    model: BatchedDenoiser,
    labels: torch.Tensor,
    steps: int = 20,
    guidance: float = 1.0,
    seed: int | list[int] = 0,
    clip: float = 1.0,
    return_path: bool = False,
):
    """Deterministic DDIM (eta = 0) with classifier-free guidance.

    ``labels`` is (K, B): row k is sampled from model k, starting from noise seeded by
    ``seed`` (one int, or one per model). Returns x0 of shape (K, B, dim)
    clipped to [-clip, clip]; with ``return_path`` also the list of (t, x_t) the
    denoiser was run on, first step first.
    """
    device = next(model.parameters()).device
    cfg = model.cfg
    labels = labels.to(device)
    K, B = labels.shape
    seeds = [int(seed)] * K if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    x = torch.stack([
        torch.randn(B, cfg.dim, generator=torch.Generator(device="cpu").manual_seed(s)) for s in seeds
    ]).to(device)
    ab = cosine_alphas_cumprod(cfg.T).to(device)
    ts = torch.linspace(cfg.T - 1, 0, steps).round().long().tolist()
    null = torch.full_like(labels, cfg.n_labels)
    path = []
    for i, t in enumerate(ts):
        if return_path:
            path.append((int(t), x.clone()))
        tt = torch.full((K, B), t, device=device, dtype=torch.long)
        if guidance != 0:
            eps2 = model(torch.cat([x, x], 1), torch.cat([tt, tt], 1), torch.cat([labels, null], 1))
            ec, eu = eps2[:, :B], eps2[:, B:]
            eps = (1 + guidance) * ec - guidance * eu
        else:
            eps = model(x, tt, labels)
        a = ab[t]
        x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-clip, clip)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        a_prev = ab[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, device=device)
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    x = x.clamp(-clip, clip)
    return (x, path) if return_path else x
