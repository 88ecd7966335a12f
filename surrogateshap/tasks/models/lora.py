"""The LoRA model family of the text-to-image tasks: a pretrained pipeline (Stable
Diffusion for ArtBench, FLUX.1 for Fashion-Product) taken as trained on everything, and
the model "trained on coalition S" = that base model plus a LoRA adapter fine-tuned on
S's items.

- :func:`fine_tune_lora`: a fresh seeded LoRA (rank r, alpha) on the denoiser's
  attention projections, trained on the items with AdamW; base weights frozen. Returns
  a :class:`LoRAAdapter` (the adapter's state dict, on the CPU).
- :class:`LoRAFamily`: the family a T2I task uses ("sd", "flux"): trains adapters,
  samples image j of unit u from its own seed (so an image does not depend on its
  batch), and its prior (the empty coalition) is the base model without an adapter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from surrogateshap.model_access import Generated, ModelAccess
from surrogateshap.tasks.common import image_seed, resolve_device
from surrogateshap.tasks.data.t2i import T2IItem
from surrogateshap.tasks.models.access import TaskItems
from surrogateshap.tasks.models.pipelines import DEFAULT_TARGETS, T2IPipeline

__all__ = ["LoRASpec", "LoRAAdapter", "fine_tune_lora", "LoRAFamily", "LoRAModelAccess"]

@dataclass(frozen=True)
class LoRASpec:
    """The adapter's shape: rank, alpha (scale alpha / rank) and target module names."""

    rank: int
    alpha: float
    target_modules: tuple[str, ...]

    def config(self):
        from peft import LoraConfig

        return LoraConfig(r=int(self.rank), lora_alpha=float(self.alpha), init_lora_weights=True,
                          target_modules=list(self.target_modules))


@dataclass
class LoRAAdapter:
    """A trained LoRA: peft's adapter state dict (CPU, float32), its spec, and how it
    was trained (``info``: steps, lr, seed, number of items, losses)."""

    state: dict
    spec: LoRASpec
    kind: str
    info: dict = field(default_factory=dict)

    def digest(self) -> str:
        import hashlib

        h = hashlib.sha1()
        for k in sorted(self.state):
            h.update(k.encode())
            h.update(self.state[k].numpy().tobytes())
        return h.hexdigest()[:12]

    def save(self, path):
        import torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"state": self.state, "spec": dataclasses.asdict(self.spec), "kind": self.kind,
                    "info": {k: v for k, v in self.info.items() if k != "losses"}}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path) -> "LoRAAdapter":
        import torch

        d = torch.load(path, map_location="cpu", weights_only=True)
        spec = d["spec"]
        return cls(d["state"], LoRASpec(int(spec["rank"]), float(spec["alpha"]), tuple(spec["target_modules"])),
                   d["kind"], dict(d["info"]))


def fine_tune_lora(family: T2IPipeline, items: Sequence, steps: int, rank: int, lr: float, seed: int,
                   alpha: float | None = None, batch_size: int = 4, target_modules: Sequence[str] | None = None,
                   weight_decay: float = 1e-2, max_grad_norm: float = 1.0, latents=None,
                   progress: bool = False) -> LoRAAdapter:
    """A LoRA of ``rank`` (alpha = rank unless given) fine-tuned on ``items`` (their
    images and prompts) for ``steps`` AdamW steps of ``batch_size`` from ``seed``: the
    paper's model "trained on coalition S". Each call starts from fresh seeded LoRA
    weights, so the result does not depend on what was trained before. ``latents``:
    the items' VAE latents when already encoded (:meth:`T2IPipeline.encode_images`)."""
    import torch

    from surrogateshap.tasks.models.mlp import step_bar

    items = [T2IItem(*it) for it in items]
    if not items:
        raise ValueError("fine_tune_lora needs at least one item")
    if int(steps) < 1 or int(rank) < 1 or float(lr) <= 0:
        raise ValueError(f"need steps >= 1, rank >= 1 and lr > 0; got {steps}, {rank}, {lr}")
    if latents is None:
        latents = family.encode_items([it.image for it in items],
                                      [image_seed(seed, "latent", i) for i in range(len(items))])
    if len(latents) != len(items):
        raise ValueError(f"{len(latents)} latents for {len(items)} items")
    prompts = [it.prompt for it in items]
    spec = LoRASpec(int(rank), float(rank if alpha is None else alpha),
                    tuple(target_modules or DEFAULT_TARGETS[family.kind]))
    family.reset_adapter(spec, seed)
    params = family._lora_params()
    opt = torch.optim.AdamW(params, lr=float(lr), weight_decay=weight_decay)
    g = torch.Generator().manual_seed(int(seed))
    den = family.denoiser
    den.train()
    order: list[int] = []
    losses = []
    with step_bar(int(steps), "LoRA", progress) as bar:
        for _ in range(int(steps)):
            while len(order) < batch_size:
                order += torch.randperm(len(items), generator=g).tolist()
            idx, order = order[:batch_size], order[batch_size:]
            lat = latents[idx].to(family.device, family.dtype)
            loss = family.loss(lat, family.encode_prompts([prompts[i] for i in idx]), g)
            loss.backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            bar.update()
    den.eval()
    for p in params:
        p.requires_grad_(False)
    return LoRAAdapter(family.adapter_state(), spec, family.kind,
                       info={"steps": int(steps), "lr": float(lr), "seed": int(seed), "n_items": len(items),
                             "batch_size": int(batch_size), "losses": losses})


# --- the family ------------------------------------------------------------------------
@dataclass
class LoRAFamily:
    """Base pipeline + one LoRA per coalition: the T2I tasks' family ("sd", "flux").

    ``units``: the unit names (prompts) a label index stands for. Sampling: image j of
    unit u in a call seeded ``s`` comes from :func:`image_seed` (s, u, j), so an image
    does not depend on its batch, and the bank's images are the very images the
    per-coalition protocol generates with the bank's seed.
    """

    pipeline: T2IPipeline
    units: tuple[str, ...]
    rank: int = 4
    lora_alpha: float | None = None
    target_modules: tuple[str, ...] | None = None
    steps: int = 4
    batch_size: int = 2
    lr: float = 1e-3
    sample_batch: int = 8
    bank_seed: int = 0
    name = "lora"
    model_file = "full_lora.pt"

    @classmethod
    def from_task(cls, task, pipeline: T2IPipeline | None = None) -> "LoRAFamily":
        """The family of a T2I task's config: its local pipeline (the tiny random one
        when ``model_path`` is None), or ``pipeline`` when one is given (tests)."""
        c = task.config
        if pipeline is None:
            task.require_files()
            kw = dict(guidance=c.guidance, sample_steps=c.sample_steps, max_sequence_length=c.max_sequence_length)
            if c.model_path is None:
                pipeline = T2IPipeline.tiny(c.family, resolution=c.resolution, device=resolve_device(c.device), **kw)
            else:
                pipeline = T2IPipeline.from_pretrained(c.family, c.model_path, dtype=c.dtype, device=c.device,
                                                       resolution=c.resolution, **kw)
        return cls(pipeline, tuple(task.units), rank=c.rank, lora_alpha=c.lora_alpha,
                   target_modules=c.target_modules, steps=c.steps, batch_size=c.batch_size, lr=c.lr,
                   sample_batch=c.sample_batch, bank_seed=c.bank_seed)

    @property
    def kind(self) -> str:
        return self.pipeline.kind

    def prepare(self, dataset):
        """(items, every item's VAE latent encoded once on the CPU)."""
        items = dataset.items
        latents = self.pipeline.encode_items([it.image for it in items],
                                             [image_seed(0, "latent", i) for i in range(len(items))])
        return items, latents

    def train(self, data, members, seeds, progress: bool = False) -> list[LoRAAdapter]:
        """One LoRA per coalition; ``progress``: a bar over each one's steps (asked for the
        full model's training, the long one)."""
        items, latents = data
        return [fine_tune_lora(self.pipeline, [items[i] for i in mem], steps=self.steps, rank=self.rank, lr=self.lr,
                               seed=int(seed), alpha=self.lora_alpha, batch_size=self.batch_size,
                               target_modules=self.target_modules, latents=latents[mem], progress=progress)
                for mem, seed in zip(members, seeds)]

    def sample_pairs(self, adapter, pairs, seed: int, guidance: float | None = None):
        """Images (N, 3, R, R) of the (unit name, index) pairs, image j of unit u from
        :func:`image_seed` (seed, u, j); ``adapter`` None: the base model."""
        return self.pipeline.sample([u for u, _ in pairs], [image_seed(seed, u, j) for u, j in pairs],
                                    adapter=adapter, guidance=guidance, batch_size=self.sample_batch)

    def sample(self, models, labels, seed, guidance: float | None = None):
        """Images (K, N, 3, R, R): row k of ``labels`` (unit indices, grouped by unit)
        from adapter ``models[k]`` (None: the base model), seeded ``seed`` (one int or one
        per model); ``guidance`` None: the pipeline's."""
        import torch

        seeds = [int(seed)] * len(models) if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
        out = []
        for adapter, row, s in zip(models, labels, seeds):
            seen: dict[int, int] = {}
            pairs = []
            for u in np.asarray(row).tolist():
                pairs.append((self.units[u], seen.get(u, 0)))
                seen[u] = seen.get(u, 0) + 1
            out.append(self.sample_pairs(adapter, pairs, s, guidance))
        return torch.stack(out)

    def prior(self, units):
        """The empty coalition's images: the base model (no adapter) with the bank's seed."""
        return self.sample([None], [units], self.bank_seed)[0]

    def save(self, models: list[LoRAAdapter], path) -> None:
        """Save the one adapter of ``models`` (the full model is a list of one)."""
        models[0].save(path)

    def load(self, path) -> list[LoRAAdapter]:
        return [LoRAAdapter.load(path)]

    def model_access(self, task, items=None, shuffle: bool = False):
        return LoRAModelAccess(task, items=items, shuffle=shuffle)


class LoRAModelAccess(TaskItems, ModelAccess):
    """The full-data LoRA as the minimum a model-based estimator needs: gradients are
    taken with respect to the adapter's weights only (the base model is frozen), the
    items are the training images' VAE latents with their unit (prompt) index as the
    condition, and the loss is the pipeline's own training loss at a given timestep and
    noise. No sampling paths (Journey-TRAK). ``items`` restricts the training items."""

    def __init__(self, task, items=None, shuffle: bool = False, seed: int = 0):
        import torch

        self.pipeline = task.family.pipeline
        self.adapter = task.full_model[0]
        self.pipeline.use_adapter(self.adapter)
        self._setup(task, self.pipeline.denoiser, items, shuffle, seed)
        self._latents = task.training_data[1]
        self._unit = torch.as_tensor(np.asarray(task.item_unit), dtype=torch.long)
        self._cond = self.pipeline.encode_prompts(list(task.units))  # one row per unit

    @property
    def T(self) -> int:
        return self.pipeline.n_timesteps

    def params(self) -> dict:
        self.pipeline.use_adapter(self.adapter)  # the slot may have served another adapter meanwhile
        return {k: v.detach() for k, v in self.module.named_parameters() if "lora_" in k}

    def _pair(self, params, x0, cond, t, noise):
        from torch.func import functional_call

        dev = next(iter(params.values())).device
        # per-prompt conditioning rows picked by each item's unit; FLUX's text position ids
        # are one table for every prompt
        c = {k: v.to(dev) if k == "txt_ids" else v.to(dev)[cond] for k, v in self._cond.items()}

        def den(*args, **kwargs):
            return functional_call(self.module, params, args, kwargs)

        return self.pipeline.prediction(x0, c, t, noise, denoiser=den)

    def loss(self, params, x0, cond, t, noise):
        pred, target = self._pair(params, x0, cond, t, noise)
        return (pred.float() - target.float()).pow(2).reshape(pred.shape[0], -1).mean(1)

    def output(self, params, x0, cond, t, noise):
        pred, _ = self._pair(params, x0, cond, t, noise)
        return pred.float().pow(2).reshape(pred.shape[0], -1).mean(1)

    def item_batches(self, batch_size):
        import torch

        order = np.arange(len(self.items))
        if self.shuffle:
            order = np.random.default_rng(self.seed).permutation(order)
        for s in range(0, len(order), batch_size):
            pos = order[s : s + batch_size]
            sub = torch.as_tensor(self.items[pos])
            yield pos, self._latents[sub], self._unit[sub]

    def generate(self, n, seed, path=False):
        import torch

        if path:
            raise NotImplementedError("the LoRA family does not record sampling paths (Journey-TRAK)")
        labels = self._full_units(n)
        images = self.task.family.sample([self.adapter], labels[None], int(seed))[0]
        latents = self.pipeline.encode_images(images, [image_seed(seed, "latent", i) for i in range(len(images))])
        return Generated(latents, torch.as_tensor(labels))

    def features(self, images):
        return images.reshape(len(images), -1).detach().cpu().double().numpy()
