"""``digits10``: the exact task. scikit-learn's bundled digits, 10 classes = 10 contributors.

1,797 8x8 images ship inside scikit-learn, so this task runs anywhere with no download.
With 10 players all 1,024 coalitions can be retrained, which gives the exact Shapley
values of a real diffusion retraining game (shipped under datasets/digits10/).

Model: a residual-MLP DDPM (see :mod:`surrogateshap.tasks.diffusion`), trained K coalitions
at a time. Utilities use a small classifier trained on the real digits whose weights
ship with the package (``surrogateshap/data/digits10_featurenet.pt``), so the shipped
table and a user's run score images with the same network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from surrogateshap.tasks.base import DiffusionTask, allocate_counts, coalition_seed
from surrogateshap.tasks.statistics import UTILITIES, LabelStats, stats_from_features

__all__ = ["Digits10Config", "Digits10Task", "FEATURE_NET_PATH"]

FEATURE_NET_PATH = Path(__file__).resolve().parent.parent / "data" / "digits10_featurenet.pt"


@dataclass(frozen=True)
class Digits10Config:
    """Model, training and evaluation settings. ``preset(scale)`` gives ci/default/paper."""

    hidden: int = 128
    blocks: int = 2
    steps: int = 1000
    batch_size: int = 128
    lr: float = 3e-3
    p_uncond: float = 0.1
    guidance: float = 0.5  # best FID of w in {0, 0.5, 1, 2} (see dataset card)
    sample_steps: int = 20
    n_samples: int = 1000  # images per retraining evaluation (and per re-generated proxy coalition)
    bank_per_label: int = 1000  # proxy sample bank, per label
    n_modes: int = 50  # k-means modes of the real features (coverage utility)
    models_per_batch: int = 32  # coalition models trained together (speed only)
    device: str = "auto"  # "auto" = cuda if available, else cpu
    # what one training job asks of an executor (processes / Ray); speed only
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0  # e.g. 1 (or 0.25 to share a GPU) on a Ray cluster with GPUs
    memory_per_job: int = 0  # bytes; 0 = no limit asked

    @classmethod
    def preset(cls, scale: str = "default", **overrides) -> "Digits10Config":
        presets = {
            # hidden 64 stays near noise at this budget; 128 wide, 400 steps is ~2 s a model
            "ci": dict(steps=400, batch_size=128, n_samples=200, bank_per_label=100,
                       n_modes=20, models_per_batch=8),
            "default": {},
            "paper": dict(steps=3000, n_samples=2000, bank_per_label=2000),
        }
        if scale not in presets:
            raise KeyError(f"unknown scale {scale!r}; choose from {sorted(presets)}")
        return dataclasses.replace(cls(), **{**presets[scale], **overrides})


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Digits10Task(DiffusionTask):
    name = "digits10"
    players = tuple(f"digit_{d}" for d in range(10))
    utilities = UTILITIES

    def __init__(self, config: Digits10Config | None = None, scale: str = "default",
                 cache_dir=None):
        super().__init__(config or Digits10Config.preset(scale), cache_dir)
        self.device = _device(self.config.device)

    # --- data -----------------------------------------------------------------
    @cached_property
    def _data(self):
        import torch
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.data / 8.0 - 1.0, dtype=torch.float32)  # [-1, 1]
        y = torch.tensor(d.target, dtype=torch.long)
        return x, y

    @property
    def item_contributor(self) -> np.ndarray:
        return self._data[1].numpy()

    # --- feature network -------------------------------------------------------
    @cached_property
    def feature_net(self):
        import torch

        from surrogateshap.tasks.features import FeatureNet, train_feature_net

        if FEATURE_NET_PATH.exists():
            net = FeatureNet()
            net.load_state_dict(torch.load(FEATURE_NET_PATH, map_location="cpu", weights_only=True))
            return net.eval()
        x, y = self._data
        return train_feature_net(x, y, n_classes=10)

    def features(self, images):
        """(features, logits) of images in [-1, 1], as float64 numpy arrays."""
        import torch

        with torch.no_grad():
            x = torch.as_tensor(images, dtype=torch.float32).reshape(-1, 64).cpu()
            f = self.feature_net.features(x)
            return f.double().numpy(), self.feature_net.head(f).double().numpy()

    @cached_property
    def _centroids(self):
        from sklearn.cluster import KMeans

        f, _ = self.features(self._data[0])
        km = KMeans(self.config.n_modes, n_init=4, random_state=0).fit(f)
        return km.cluster_centers_

    def stats_of(self, images) -> LabelStats:
        f, logits = self.features(images)
        return stats_from_features(f, logits, self._centroids)

    def real_stats(self) -> LabelStats:
        if not hasattr(self, "_real"):
            self._real = self.stats_of(self._data[0])
        return self._real

    def empty_stats(self) -> LabelStats:
        import torch

        g = torch.Generator().manual_seed(12345)
        noise = torch.randn(self.config.n_samples, 64, generator=g).clamp(-1, 1)
        return self.stats_of(noise)

    # --- training and sampling --------------------------------------------------
    def denoiser_config(self):
        from surrogateshap.tasks.diffusion import DenoiserConfig

        return DenoiserConfig(dim=64, n_labels=10, hidden=self.config.hidden, blocks=self.config.blocks)

    def train(self, masks: np.ndarray, seed: int):
        """Train one model per coalition row (batched); returns a BatchedDenoiser."""
        from surrogateshap.tasks.diffusion import train_denoisers

        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        members = [self.members(m) for m in masks]
        for m, mem in zip(masks, members):
            if len(mem) == 0:
                raise ValueError(f"coalition {m.astype(int).tolist()} has no training data")
        x, y = self._data
        c = self.config
        return train_denoisers(x, y, members, self.denoiser_config(), steps=c.steps,
                               batch_size=c.batch_size, lr=c.lr, p_uncond=c.p_uncond,
                               seeds=[coalition_seed(seed, m) for m in masks], device=self.device)

    def sample(self, model, labels: np.ndarray, seed=0, guidance: float | None = None):
        """Images (K, B, 64) in [-1, 1] from each of the K models, labels (K, B);
        ``seed`` is one int or one per model."""
        import torch

        from surrogateshap.tasks.diffusion import ddim_sample

        g = self.config.guidance if guidance is None else guidance
        lab = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        return ddim_sample(model, lab, steps=self.config.sample_steps, guidance=g, seed=seed).cpu()

    def _coalition_labels(self, mask) -> np.ndarray:
        counts = allocate_counts(self.config.n_samples, self.proportions(mask))
        return np.repeat(np.arange(self.n_players), counts)

    def finetune_stats(self, masks, seed: int, init: dict, keep: dict, steps: int, lr: float):
        """Fine-tune ``init`` (a one-model state dict, e.g. the pruned full model) on each
        coalition's data for ``steps`` steps, ``keep`` masks held at zero, and return the
        statistics of ``config.n_samples`` samples from each (as retrain_stats)."""
        from surrogateshap.tasks.diffusion import train_denoisers

        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        members = [self.members(m) for m in masks]
        x, y = self._data
        c = self.config
        model = train_denoisers(x, y, members, self.denoiser_config(), steps=steps,
                                batch_size=c.batch_size, lr=lr, p_uncond=c.p_uncond,
                                seeds=[coalition_seed(seed, m) for m in masks], device=self.device,
                                init=init, keep=keep)
        labels = np.stack([self._coalition_labels(m) for m in masks])
        imgs = self.sample(model, labels, seed=[coalition_seed(seed + 1000, m) for m in masks])
        return [self.stats_of(imgs[k]) for k in range(len(masks))]

    def model_access(self, items=None, shuffle: bool = False):
        """The full model for model-based estimators (TRAK, influence, similarity);
        ``items`` optionally subsamples the training items (dataset indices)."""
        from surrogateshap.tasks.model_access_mlp import MLPModelAccess

        return MLPModelAccess(self, items=items, shuffle=shuffle)

    def retrain_stats(self, masks, seed):
        model = self.train(masks, seed)
        labels = np.stack([self._coalition_labels(m) for m in masks])
        imgs = self.sample(model, labels, seed=[coalition_seed(seed + 1000, m) for m in masks])
        return [self.stats_of(imgs[k]) for k in range(len(masks))]

    # --- the full model and the proxy's sample bank -----------------------------
    @cached_property
    def full_model(self):
        """The full-data model (seed 0), trained once and cached on disk."""
        import torch

        from surrogateshap.tasks.diffusion import BatchedDenoiser

        path = self.cache_dir / self.config_id() / "full_model.pt"
        model = BatchedDenoiser(1, self.denoiser_config()).to(self.device)
        if path.exists():
            model.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
            return model.eval()
        model = self.train(np.ones((1, self.n_players), bool), seed=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(path)
        return model

    def bank_stats(self) -> list[LabelStats]:
        if not hasattr(self, "_banks"):
            B = self.config.bank_per_label
            labels = np.repeat(np.arange(self.n_players), B)[None]
            imgs = self.sample(self.full_model, labels, seed=777)[0]
            self._banks = [self.stats_of(imgs[i * B : (i + 1) * B]) for i in range(self.n_players)]
        return self._banks

    def regenerate_stats(self, mask, seed: int) -> LabelStats:
        labels = self._coalition_labels(np.asarray(mask, bool))[None]
        return self.stats_of(self.sample(self.full_model, labels, seed=seed)[0])
