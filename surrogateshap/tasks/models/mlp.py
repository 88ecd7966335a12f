"""The ``mlp`` model family: a small class-conditional DDPM with classifier-free
guidance, trained K-at-a-time.

Contributor valuation needs many small models, one per coalition. The denoiser here is
a residual MLP on flattened images whose weights carry a leading "model" axis, so one
optimiser step trains K coalition models at once with batched matmuls (each model sees
only its own coalition's items). Sampling is deterministic DDIM with guidance
eps = (1 + w) eps(x, y) - w eps(x, null). Cheap on a CPU: the family of the shipped
CPU tables. :class:`MLPFamily` is the family a task uses (training, sampling, the noise
prior, fine-tuning, model access for the TRAK family).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from surrogateshap.model_access import Generated
from surrogateshap.tasks.models.access import TaskDenoiserAccess

__all__ = ["DenoiserConfig", "check_members_and_seeds", "BatchedDenoiser", "train_denoisers", "ddim_sample",
           "cosine_alphas_cumprod", "ImageFamily", "MLPFamily", "MLPModelAccess", "noise_prior", "step_bar"]

#: seconds a training runs before its bar appears: short trainings stay quiet
BAR_DELAY = 2.0


def step_bar(total: int, desc: str, show: bool):
    """A bar over training steps (the full model's long training): shown only when asked
    for, on a terminal (tqdm's ``disable=None``: quiet when stderr is a file or a pipe),
    after :data:`BAR_DELAY` seconds."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=None if show else True, delay=BAR_DELAY)


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


# --- the family ------------------------------------------------------------------------
def noise_prior(n: int, shape) -> torch.Tensor:
    """What a generator that learned nothing outputs: standard-normal images clipped to
    [-1, 1] (a fixed seed). v(empty) of every image family is the utility of these."""
    g = torch.Generator().manual_seed(12345)
    dim = int(np.prod(shape))
    return torch.randn(n, dim, generator=g).clamp(-1, 1).reshape(-1, *shape)


@dataclass(frozen=True)
class ImageFamily:
    """What the image families share: the image shape, the number of labels (units), the
    training and sampling settings, and the device. A family is built from a task by
    :meth:`from_task`, reading the config's fields of the same names."""

    shape: tuple[int, int, int]
    n_labels: int
    steps: int = 1500  # the defaults of config.DiffusionSettings (a config sets them all)
    batch_size: int = 128
    lr: float = 3e-3
    p_uncond: float = 0.1
    sample_steps: int = 20
    guidance: float = 2.0
    device: str = "cpu"

    model_file: ClassVar[str] = "full_model.pt"
    OWN: ClassVar[tuple[str, ...]] = ()
    SHARED: ClassVar[tuple[str, ...]] = ("steps", "batch_size", "lr", "p_uncond", "sample_steps", "guidance")

    @classmethod
    def from_task(cls, task):
        c = task.config
        kw = {f: getattr(c, f) for f in cls.SHARED + cls.OWN if hasattr(c, f)}
        return cls(shape=tuple(task.dataset.shape), n_labels=task.n_units, device=str(task.device), **kw)

    def prepare(self, dataset):
        """The training data in the family's layout: (inputs, labels) tensors."""
        x = torch.as_tensor(dataset.images, dtype=torch.float32)
        return self.layout(x), torch.as_tensor(dataset.labels, dtype=torch.long)

    def layout(self, images):
        return images

    def prior(self, units) -> torch.Tensor:
        return noise_prior(len(units), self.shape)

    def save(self, model, path) -> None:
        from surrogateshap._files import atomic_write

        with atomic_write(path, "wb") as f:
            torch.save(model.state_dict(), f)

    def load(self, path):
        model = self.empty_model()
        model.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
        return model.eval()


@dataclass(frozen=True)
class MLPFamily(ImageFamily):
    hidden: int = 128
    blocks: int = 2
    skip: bool = False
    name = "mlp"
    OWN: ClassVar[tuple[str, ...]] = ("hidden", "blocks", "skip")

    @property
    def dim(self) -> int:
        return int(np.prod(self.shape))

    def denoiser_config(self) -> DenoiserConfig:
        return DenoiserConfig(dim=self.dim, n_labels=self.n_labels, hidden=self.hidden, blocks=self.blocks,
                              skip=self.skip)

    def layout(self, images):
        """Flattened (N, C*H*W)."""
        return images.reshape(len(images), -1)

    def train(self, data, members, seeds, init: dict | None = None, keep: dict | None = None,
              steps: int | None = None, lr: float | None = None, progress: bool = False):
        """One model per coalition (item indices ``members[k]``, seed ``seeds[k]``), all in
        one batched model; ``init``/``keep``/``steps``/``lr`` fine-tune a given model;
        ``progress``: a bar over the steps (:func:`step_bar`)."""
        x, y = data
        steps = self.steps if steps is None else steps
        with step_bar(steps, f"training {len(members)} mlp model(s)", progress) as bar:
            return train_denoisers(x, y, members, self.denoiser_config(), steps=steps, batch_size=self.batch_size,
                                   lr=self.lr if lr is None else lr, p_uncond=self.p_uncond, seeds=seeds,
                                   device=self.device, init=init, keep=keep, progress=lambda step: bar.update())

    def sample(self, model, labels, seed, guidance: float | None = None):
        """Images (K, B, C, H, W): row k of ``labels`` (K, B) from model k."""
        lab = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        g = self.guidance if guidance is None else guidance
        x = ddim_sample(model, lab, steps=self.sample_steps, guidance=g, seed=seed).cpu()
        return x.reshape(*x.shape[:2], *self.shape)

    def empty_model(self):
        return BatchedDenoiser(1, self.denoiser_config()).to(self.device)

    def model_access(self, task, items=None, shuffle: bool = False):
        return MLPModelAccess(task, items=items, shuffle=shuffle)


class MLPModelAccess(TaskDenoiserAccess):
    """The full-data model of a task of the mlp family (a K = 1 BatchedDenoiser): the
    batched model axis is added and dropped around ``functional_call``.

    ``items`` restricts the training items to a subset of dataset indices (item i of
    the access is dataset item ``items[i]``), e.g. to subsample; ``shuffle=True`` makes
    ``item_batches`` a shuffled DataLoader (results must not change).
    """

    def __init__(self, task, items=None, shuffle: bool = False, seed: int = 0):
        self._setup(task, task.full_model, items, shuffle, seed)
        self._ab = cosine_alphas_cumprod(self.module.cfg.T)

    @property
    def alphas_cumprod(self):
        return self._ab

    def denoise(self, params, x_t, cond, t):
        from torch.func import functional_call

        return functional_call(self.module, params, (x_t[None], t[None], cond[None]))[0]

    def generate(self, n, seed, path=False):
        labels = torch.as_tensor(self._full_units(n))
        fam = self.task.family
        out = ddim_sample(self.module, labels[None], steps=fam.sample_steps, guidance=fam.guidance,
                          seed=int(seed), return_path=path)
        if path:
            x, steps = out
            return Generated(x[0].cpu(), labels, [(t, xt[0].cpu()) for t, xt in steps])
        return Generated(out[0].cpu(), labels)
