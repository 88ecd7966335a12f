"""``digits10``: the exact task. scikit-learn's bundled digits, 10 classes = 10 contributors.

1,797 8x8 images ship inside scikit-learn, so this task runs anywhere with no download.
With 10 players all 1,024 coalitions can be retrained, which gives the exact Shapley
values of a real diffusion retraining game (shipped under datasets/digits10/).

Model family ``mlp`` (:mod:`surrogateshap.tasks.diffusion`): a residual-MLP DDPM trained
32 coalitions at a time, about 1 s a model on a CPU; the whole 3 x 1,024 table fits a
session (the dataset card has the settings' FIDs). Utilities use a small classifier
trained on the real digits whose weights ship with the package
(``surrogateshap/data/digits10_featurenet.pt``), so the shipped table and a user's run
score images with the same network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from surrogateshap.tasks.composed import DATA_DIR, ImageTask, PresetConfig
from surrogateshap.tasks.datasets import digits_dataset

__all__ = ["Digits10Config", "Digits10Task", "FEATURE_NET_PATH"]

FEATURE_NET_PATH = DATA_DIR / "digits10_featurenet.pt"


@dataclass(frozen=True)
class Digits10Config(PresetConfig):
    """Model, training and evaluation settings. ``preset(scale)`` gives ci/default/paper.

    No ``family`` field: the task's family is the MLP (adding a field would change the
    config id of the shipped table)."""

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
    # per-job resources for an executor (speed only: kept out of the config id)
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0  # e.g. 1 (or 0.25 to share a GPU) on a Ray cluster with GPUs
    memory_per_job: int = 0  # bytes; 0 = no limit asked

    PRESETS: ClassVar[dict[str, dict]] = {
        # hidden 64 stays near noise at this budget; 128 wide, 400 steps is ~2 s a model
        "ci": dict(steps=400, batch_size=128, n_samples=200, bank_per_label=100,
                   n_modes=20, models_per_batch=8),
        "default": {},
        "paper": dict(steps=3000, n_samples=2000, bank_per_label=2000),
    }


class Digits10Task(ImageTask):
    name = "digits10"
    players = tuple(f"digit_{d}" for d in range(10))
    config_cls = Digits10Config
    family_name = "mlp"
    shipped_nets = {"features": FEATURE_NET_PATH}

    def load_dataset(self):
        return digits_dataset()
