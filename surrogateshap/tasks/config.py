"""Task configurations: frozen dataclasses composed of groups, with named scale presets.

A task's config holds everything that decides its game, in groups defined once here
and shared by the tasks (the image family and scorer, diffusion training and sampling,
evaluation sizes), its own data fields, and apart its *run settings*: where and how fast
it runs (device, models trained together, per-job resources, where local data lives).
Run settings are marked by type (:func:`run_field`, the :class:`RunSettings` group);
the configuration id (:meth:`~surrogateshap.tasks.base.DiffusionTask.config_id`) hashes
every other field, so a cache or a table of one configuration is never read by another.
A task's config inherits the groups and restates only the defaults it changes.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

__all__ = ["PresetConfig", "run_field", "run_fields", "RunSettings", "DiffusionSettings", "EvaluationSettings",
           "ImageFamilySettings", "ImageTaskConfig", "T2IConfig", "PaperT2IConfig", "paths_from_env",
           "PAPER_PATH_ENV", "MODEL_PATH_ENV"]


def run_field(default):
    """A run setting: where or how fast, never what (out of the configuration id)."""
    return field(default=default, metadata={"run": True})


def run_fields(config) -> set[str]:
    """The names of a config's run settings (by type: fields made with :func:`run_field`)."""
    return {f.name for f in dataclasses.fields(config) if f.metadata.get("run")}


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


@dataclass(frozen=True)
class RunSettings:
    """Where and how fast (never in the configuration id)."""

    models_per_batch: int = run_field(8)  # coalition models trained together
    device: str = run_field("auto")  # "auto" = cuda if available, else cpu
    cpus_per_job: float = run_field(1.0)  # per-job resources for an executor
    gpus_per_job: float = run_field(0.0)  # e.g. 1 (or 0.25 to share a GPU) on a Ray cluster
    memory_per_job: int = run_field(0)  # bytes; 0 = no limit asked


@dataclass(frozen=True)
class DiffusionSettings:
    """Training (steps of batch_size at lr, the condition dropped with p_uncond) and
    guided sampling of one model, whatever the family."""

    steps: int = 1500
    batch_size: int = 128
    lr: float = 3e-3
    p_uncond: float = 0.1
    guidance: float = 2.0
    sample_steps: int = 20


@dataclass(frozen=True)
class EvaluationSettings:
    """Samples per evaluated model, the proxy's bank per unit, the real data's modes."""

    n_samples: int = 1000
    bank_per_label: int = 500
    n_modes: int = 50


@dataclass(frozen=True)
class ImageFamilySettings:
    """The image families (``mlp``, ``unet``) and the scorer (``net``, ``inception``)."""

    family: str = "mlp"
    hidden: int = 256  # mlp
    blocks: int = 2  # mlp
    skip: bool = True  # mlp: a linear x_t -> output path (without it the MLP stalls at 256 pixels)
    channels: tuple[int, ...] = (32, 64)  # unet
    layers_per_block: int = 1  # unet
    attention: bool = False  # unet
    featurizer: str = "net"


@dataclass(frozen=True)
class ImageTaskConfig(RunSettings, EvaluationSettings, DiffusionSettings, ImageFamilySettings, PresetConfig):
    """An image task's config: the family, diffusion and evaluation groups, the run
    settings; a task adds its data fields and restates the defaults it changes."""


#: config field -> the environment variable a paper preset reads it from when it is not
#: passed (so ``surrogateshap build-table`` and ``pytest benchmarks/``
#: find local weights without code); the gpu tests read the same variables
PAPER_PATH_ENV = {"clip_path": "SURROGATESHAP_CLIP_PATH", "aesthetic_head": "SURROGATESHAP_AESTHETIC_HEAD",
                  "lpips_backbone": "SURROGATESHAP_LPIPS_BACKBONE"}
MODEL_PATH_ENV = {"sd": "SURROGATESHAP_SD_PATH", "flux": "SURROGATESHAP_FLUX_PATH"}


def paths_from_env(family: str, fields) -> dict:
    """The local paths of ``fields`` (config field names) set in the environment."""
    env = {**PAPER_PATH_ENV, "model_path": MODEL_PATH_ENV[family]}
    return {f: os.environ[env[f]] for f in fields if f in env and os.environ.get(env[f])}


@dataclass(frozen=True)
class T2IConfig:
    """Settings of a T2I task. ``model_path`` None builds the tiny random pipeline
    (mechanics only); paths name local files, nothing downloads."""

    family: str = "sd"
    model_path: str | None = None
    dtype: str = "float32"  # or bfloat16 (training has no loss scaler: avoid float16)
    resolution: int = 256
    rank: int = 256
    lora_alpha: float | None = None  # None = rank
    target_modules: tuple[str, ...] | None = None  # None = the family's attention projections
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    guidance: float | None = None  # None = SD 7.5, FLUX 3.5
    sample_steps: int | None = None  # None = SD 50 (DDIM), FLUX 28
    max_sequence_length: int | None = None  # FLUX's T5 length (None = 512)
    n_samples: int = 50  # images per coalition (retraining, regenerate)
    bank_per_unit: int = 50
    proxy_samples: int | None = None  # None: the whole bank, weighted; n: n bank images (= regenerate)
    bank_seed: int = 0
    clip_path: str | None = None  # local transformers CLIP folder (or open_clip weights file)
    clip_backend: str = "transformers"  # or "open_clip"
    clip_model: str = "ViT-L-14"  # open_clip's model name
    aesthetic_head: str | None = None  # LAION aesthetic predictor .pth
    lpips_backbone: str | None = None  # torchvision's alexnet-owt-7be5be79.pth
    n_clusters: int = 20
    # run settings; the weight paths above stay in the config id, so another model or
    # scorer never reads these caches
    sample_batch: int = run_field(16)
    models_per_batch: int = run_field(1)
    device: str = run_field("auto")

    @classmethod
    def preset(cls, scale: str = "default", **overrides):
        """``ci``: the tiny random pipeline at 16 px, a few steps; other scales: the
        class's defaults (task configs subclass this and define their own presets)."""
        base = cls()
        if scale == "ci":
            base = dataclasses.replace(base, model_path=None, resolution=16, rank=4, steps=4, batch_size=2,
                                       lr=1e-3, sample_steps=2, n_samples=8, bank_per_unit=8, sample_batch=8,
                                       n_clusters=3)
        return dataclasses.replace(base, **overrides)


@dataclass(frozen=True)
class PaperT2IConfig(T2IConfig):
    """A paper task's T2I config: the presets ``paper`` (also ``default``: such a task has
    no CPU size) with its local files read from the environment when not passed, and
    ``ci``, the tiny random pipeline (``tiny``: no model files needed). A subclass names
    ``LABEL``, its ``CPU_TWIN`` task, its ``MODEL_FILES`` as (field, what it is, file
    expected inside a folder or "") and ``CI_OVERRIDES`` of its own fields."""

    tiny: bool = False  # True: the tiny random pipeline and no model files (ci)
    LABEL: ClassVar[str] = "this task"
    CPU_TWIN: ClassVar[str] = ""
    MODEL_FILES: ClassVar[tuple] = ()
    CI_OVERRIDES: ClassVar[dict] = {}

    @classmethod
    def preset(cls, scale: str = "paper", **overrides):
        if scale in ("paper", "default"):  # local files not passed come from the environment
            env = paths_from_env(cls.family, [f for f, _, _ in cls.MODEL_FILES])
            return dataclasses.replace(cls(), **{**env, **overrides})
        if scale == "ci":
            tiny = T2IConfig.preset("ci", family=cls.family)
            small = {f.name: getattr(tiny, f.name) for f in dataclasses.fields(T2IConfig)}
            return dataclasses.replace(cls(), **{**small, "tiny": True, **cls.CI_OVERRIDES, **overrides})
        raise KeyError(f"{cls.LABEL} has the paper scale (a GPU task) and ci (tiny random pipeline), "
                       f"not {scale!r}; {cls.CPU_TWIN} is its CPU counterpart")

    def missing_model_files(self) -> list[str]:
        """The model files this config needs that are not configured or not present."""
        if self.tiny:
            return []
        out = []
        for name, what, inside in self.MODEL_FILES:
            value = getattr(self, name)
            if not value:
                out.append(f"{name}: {what}, not set")
            elif not (Path(value) / inside).exists():
                out.append(f"{name}: {what}, {Path(value) / inside if inside else value} not found")
        return out

    def missing_files(self) -> list[str]:
        return self.missing_model_files()
