"""``ImageTask``: a diffusion attribution task composed of a dataset, a model family and
a featurizer, so that a new task is a small file of configuration.

A task file sets ``name``, ``players`` and ``config_cls`` (a frozen dataclass with a
``preset(scale, **overrides)`` classmethod) and implements ``load_dataset()``. The
config names the family (field ``family``, else the class's ``family_name``) and
its settings (see :func:`surrogateshap.tasks.families.make_family`), the featurizer
(field ``featurizer``: "net" = the project's classifier trained on the task's real
images, "inception" = FID Inception-v3 from the local file ``inception_weights``),
and the evaluation sizes (``guidance``, ``n_samples``, ``bank_per_label``, ``n_modes``).
Utilities: -FID, Inception Score and coverage from per-unit sufficient statistics
(:mod:`surrogateshap.tasks.statistics`). The model is conditioned on the dataset's
labels: contributors by default, or the dataset's ``units`` (e.g. (class, brand)
pairs); a task adds per-sample scores of its own utilities in ``sample_scores``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np

from surrogateshap.game import stable_hash
from surrogateshap.tasks.base import DiffusionTask, allocate_counts, coalition_seed
from surrogateshap.tasks.datasets import ImageDataset
from surrogateshap.tasks.statistics import UTILITIES, LabelStats, stats_from_features

__all__ = ["ImageTask", "DATA_DIR", "resolve_device"]

#: the package's shipped weights (feature networks)
DATA_DIR = Path(__file__).resolve().parent.parent / "data"


class PresetConfig:
    """Mixin of a frozen task-config dataclass with named scale presets: ``PRESETS``
    maps a scale to the fields it overrides (a class variable: not a field, so not in
    the config id)."""

    PRESETS: ClassVar[dict[str, dict]] = {"default": {}}

    @classmethod
    def preset(cls, scale: str = "default", **overrides):
        if scale not in cls.PRESETS:
            raise KeyError(f"unknown scale {scale!r}; choose from {sorted(cls.PRESETS)}")
        return dataclasses.replace(cls(), **{**cls.PRESETS[scale], **overrides})


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class ImageTask(DiffusionTask):
    """Contributors of an image dataset; one label-conditional model per coalition
    (labels = contributors unless the dataset names other units)."""

    utilities = UTILITIES
    config_cls = None
    family_name = "mlp"
    #: shipped weights of the task's scoring networks, by recipe name (package data; a
    #: network without them is trained on first use and cached)
    shipped_nets: ClassVar[dict[str, Path]] = {}
    execution_fields = ("models_per_batch", "device", "data_dir", "inception_weights",
                        "cpus_per_job", "gpus_per_job", "memory_per_job")

    def __init__(self, config=None, scale: str = "default", cache_dir=None, **overrides):
        if config is None:
            config = self.config_cls.preset(scale, **overrides)
        elif overrides:
            raise TypeError("pass either a config or overrides of a preset, not both")
        super().__init__(config, cache_dir)
        self.device = resolve_device(getattr(config, "device", "auto"))

    # --- data -----------------------------------------------------------------
    def load_dataset(self) -> ImageDataset:
        raise NotImplementedError

    @cached_property
    def dataset(self) -> ImageDataset:
        ds = self.load_dataset()
        if tuple(ds.players) != tuple(self.players):
            raise ValueError(f"{self.name}: the dataset's players {ds.players} are not the task's")
        return ds

    def data_missing(self) -> str | None:
        """None when the task's data files load, else the reason (naming the file and the
        package to install): what a benchmark prints when it skips the task."""
        from surrogateshap.tasks.datasets import DataMissingError

        try:
            self.dataset
        except DataMissingError as e:
            return str(e)
        return None

    @cached_property
    def family(self):
        from surrogateshap.tasks.families import make_family

        name = getattr(self.config, "family", self.family_name)
        return make_family(name, self.config, self.dataset.shape, self.n_units)

    @cached_property
    def _data(self):
        """(training inputs in the family's layout, labels) as torch tensors."""
        import torch

        x = torch.as_tensor(self.dataset.images, dtype=torch.float32)
        return self.family.prepare(x), torch.as_tensor(self.dataset.labels, dtype=torch.long)

    @property
    def item_contributor(self) -> np.ndarray:
        ds = self.dataset
        return ds.labels if ds.contributors is None else ds.contributors

    @property
    def units(self) -> tuple[str, ...]:
        ds = self.dataset
        return tuple(ds.players if ds.units is None else ds.units)

    @property
    def item_unit(self) -> np.ndarray:
        return self.dataset.labels

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.dataset.shape

    # --- featurizer and statistics ---------------------------------------------
    @cached_property
    def featurizer(self):
        from surrogateshap.tasks.featurizers import InceptionFeaturizer, NetFeaturizer

        kind = getattr(self.config, "featurizer", "net")
        if kind == "inception":
            return InceptionFeaturizer(self.config.inception_weights, device=self.device)
        if kind != "net":
            raise KeyError(f"unknown featurizer {kind!r}; known: net, inception")
        return NetFeaturizer.from_recipe(self.scoring_recipes()["features"])

    def scoring_recipes(self) -> dict:
        """name -> :class:`~surrogateshap.tasks.featurizers.NetRecipe` of every network
        the project trains to score this task's samples: ``features`` (the featurizer's
        classifier of the units, on the real images), and any a task adds for its own
        utilities. Empty with the Inception featurizer (a local weights file)."""
        if getattr(self.config, "featurizer", "net") != "net":
            return {}
        ds = self.dataset
        return {"features": self.net_recipe("features", ds.images, ds.labels, self.n_units)}

    def net_recipe(self, name: str, images, labels, n_classes: int):
        """A scoring network's recipe: its shipped weights (``shipped_nets[name]``) or a
        cache file keyed by the task, the name and the training images."""
        from surrogateshap.tasks.featurizers import NetRecipe

        digest = hashlib.sha1(np.ascontiguousarray(images).tobytes()).hexdigest()[:12]
        return NetRecipe(name, images, labels, n_classes, shipped=self.shipped_nets.get(name),
                         cache=self.cache_dir / "featurenets" / f"{self.name}-{name}-{digest}.pt")

    def scoring_networks(self) -> dict:
        """name -> the loaded scoring networks (torch modules) that score this task."""
        return {"features": self.featurizer.net}

    def scoring_parts(self) -> dict[str, str]:
        if getattr(self.config, "featurizer", "net") == "inception":
            return {"inception": self.featurizer.digest()}
        from surrogateshap.tasks.features import state_digest

        return {k: state_digest(net.state_dict()) for k, net in self.scoring_networks().items()}

    @property
    def feature_net(self):
        """The featurizer's torch module (torchmetrics accepts it as ``feature``)."""
        return self.featurizer.net

    def features(self, images):
        """(features, logits) of images in [-1, 1], as float64 numpy arrays."""
        return self.featurizer.features(images)

    @cached_property
    def _centroids(self):
        from sklearn.cluster import KMeans

        f, _ = self.features(self.dataset.images)
        km = KMeans(self.config.n_modes, n_init=4, random_state=0).fit(f)
        return km.cluster_centers_

    def stats_of(self, images, units=None) -> LabelStats:
        """Statistics of images; ``units`` (the unit each was generated for) feeds the
        task's per-sample scores."""
        f, logits = self.features(images)
        return stats_from_features(f, logits, self._centroids, self.sample_scores(images, f, units))

    def sample_scores(self, images, feats, units) -> dict:
        """Per-sample scores (name -> (n,)) a task's own utilities mix; none here."""
        return {}

    def real_stats(self) -> LabelStats:
        if not hasattr(self, "_real"):
            self._real = self.stats_of(self.dataset.images, self.item_unit)
        return self._real

    def empty_stats(self) -> LabelStats:
        """The noise prior: standard-normal images clipped to [-1, 1] (asked for the full
        data's units in proportion)."""
        import torch

        g = torch.Generator().manual_seed(12345)
        dim = int(np.prod(self.image_shape))
        noise = torch.randn(self.config.n_samples, dim, generator=g).clamp(-1, 1)
        units = self._coalition_labels(np.ones(self.n_players, bool))
        return self.stats_of(noise.reshape(-1, *self.image_shape), units)

    # --- training and sampling --------------------------------------------------
    def denoiser_config(self):
        """The MLP family's denoiser config (tests and scripts of that family)."""
        return self.family.denoiser_config()

    def train(self, masks: np.ndarray, seed: int):
        """One model per coalition row, each seeded by (seed, coalition)."""
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        members = [self.members(m) for m in masks]
        for m, mem in zip(masks, members):
            if len(mem) == 0:
                raise ValueError(f"coalition {m.astype(int).tolist()} has no training data")
        x, y = self._data
        return self.family.train(x, y, members, seeds=[coalition_seed(seed, m) for m in masks],
                                 device=self.device)

    def sample(self, model, labels: np.ndarray, seed=0, guidance: float | None = None):
        """Images (K, B, C, H, W) in [-1, 1], row k of labels (K, B) from model k;
        ``seed`` is one int or one per model."""
        g = self.config.guidance if guidance is None else guidance
        return self.family.sample(model, labels, seed=seed, guidance=g)

    def _coalition_labels(self, mask) -> np.ndarray:
        """The units of a coalition's ``n_samples`` samples, in proportion pi_S."""
        counts = allocate_counts(self.config.n_samples, self.unit_proportions(mask))
        return np.repeat(np.arange(self.n_units), counts)

    def finetune_stats(self, masks, seed: int, init: dict, keep: dict, steps: int, lr: float):
        """Fine-tune ``init`` (a one-model state dict, e.g. the pruned full model) on each
        coalition's data for ``steps`` steps with ``keep`` masks held at zero, and return
        the statistics of ``config.n_samples`` samples from each (the fine-tuning game;
        the MLP family)."""
        from surrogateshap.tasks.diffusion import train_denoisers

        self._needs_mlp("the fine-tuning game")
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        members = [self.members(m) for m in masks]
        x, y = self._data
        fam = self.family
        model = train_denoisers(x, y, members, fam.denoiser_config(), steps=steps,
                                batch_size=fam.batch_size, lr=lr, p_uncond=fam.p_uncond,
                                seeds=[coalition_seed(seed, m) for m in masks], device=self.device,
                                init=init, keep=keep)
        labels = np.stack([self._coalition_labels(m) for m in masks])
        imgs = self.sample(model, labels, seed=[coalition_seed(seed + 1000, m) for m in masks])
        return [self.stats_of(imgs[k], labels[k]) for k in range(len(masks))]

    def model_access(self, items=None, shuffle: bool = False):
        """The full model for model-based estimators (TRAK, influence, similarity);
        ``items`` optionally subsamples the training items (dataset indices). Both
        families implement :class:`~surrogateshap.model_access.ModelAccess` (the UNet
        family without sampling paths)."""
        if self.family.name == "unet":
            from surrogateshap.tasks.model_access_unet import UNetModelAccess

            return UNetModelAccess(self, items=items, shuffle=shuffle)
        from surrogateshap.tasks.model_access_mlp import MLPModelAccess

        self._needs_mlp("model access")
        return MLPModelAccess(self, items=items, shuffle=shuffle)

    def _needs_mlp(self, what: str):
        if self.family.name != "mlp":
            raise NotImplementedError(f"{what} is implemented for the mlp family; {self.name} "
                                      f"uses {self.family.name}")

    def retrain_stats(self, masks, seed):
        model = self.train(masks, seed)
        labels = np.stack([self._coalition_labels(m) for m in masks])
        imgs = self.sample(model, labels, seed=[coalition_seed(seed + 1000, m) for m in masks])
        return [self.stats_of(imgs[k], labels[k]) for k in range(len(masks))]

    # --- the full model and the proxy's sample bank -----------------------------
    @cached_property
    def full_model(self):
        """The full-data model (seed 0), trained once and cached on disk."""
        import torch

        path = self.cache_dir / self.config_id() / "full_model.pt"
        if path.exists():
            model = self.family.empty_model(self.device)
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
            B = self.config.bank_per_label  # per unit
            labels = np.repeat(np.arange(self.n_units), B)
            imgs = self.sample(self.full_model, labels[None], seed=777)[0]
            self._banks = [self.stats_of(imgs[i * B : (i + 1) * B], labels[i * B : (i + 1) * B])
                           for i in range(self.n_units)]
        return self._banks

    def regenerate_stats(self, mask, seed: int) -> LabelStats:
        labels = self._coalition_labels(np.asarray(mask, bool))
        return self.stats_of(self.sample(self.full_model, labels[None], seed=seed)[0], labels)
