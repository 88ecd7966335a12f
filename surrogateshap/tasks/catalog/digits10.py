"""``digits10``: the exact task. scikit-learn's bundled digits, 10 classes = 10 contributors.

1,797 8x8 images ship inside scikit-learn, so this task runs anywhere with no download.
With 10 players all 1,024 coalitions can be retrained, which gives the exact Shapley
values of a real diffusion retraining game (shipped under datasets/digits10/).

Model family ``mlp`` (:mod:`surrogateshap.tasks.models.mlp`): a residual-MLP DDPM trained
32 coalitions at a time, about 1 s a model on a CPU; the whole 3 x 1,024 table fits a
session (the dataset card has the settings' FIDs). Utilities use a small classifier
trained on the real digits whose weights ship with the package
(``surrogateshap/data/digits10_featurenet.pt``), so the shipped table and a user's run
score images with the same network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from surrogateshap.tasks.base import DiffusionTask
from surrogateshap.tasks.common import DATA_DIR
from surrogateshap.tasks.config import (
    DiffusionSettings,
    EvaluationSettings,
    PresetConfig,
    RunSettings,
    run_field,
)
from surrogateshap.tasks.data.images import digits_dataset
from surrogateshap.tasks.features.statistics import UTILITIES

__all__ = ["Digits10Config", "Digits10Task", "FEATURE_NET_PATH"]

FEATURE_NET_PATH = DATA_DIR / "digits10_featurenet.pt"


@dataclass(frozen=True)
class Digits10Config(RunSettings, EvaluationSettings, DiffusionSettings, PresetConfig):
    """Model, training and evaluation settings. ``preset(scale)`` gives ci/default/paper.

    No family group (``family``, ``skip``, ``featurizer``): the task's family is the MLP
    without the skip path, and adding a field would change the config id of the shipped
    table."""

    hidden: int = 128
    blocks: int = 2
    steps: int = 1000
    guidance: float = 0.5  # best FID of w in {0, 0.5, 1, 2} (see dataset card)
    bank_per_label: int = 1000  # proxy sample bank, per label
    models_per_batch: int = run_field(32)

    PRESETS: ClassVar[dict[str, dict]] = {
        # hidden 64 stays near noise at this budget; 128 wide, 400 steps is ~2 s a model
        "ci": dict(steps=400, batch_size=128, n_samples=200, bank_per_label=100,
                   n_modes=20, models_per_batch=8),
        "default": {},
        "paper": dict(steps=3000, n_samples=2000, bank_per_label=2000),
    }


class Digits10Task(DiffusionTask):
    name = "digits10"
    utilities = UTILITIES  # -FID, Inception Score, coverage
    players = tuple(f"digit_{d}" for d in range(10))
    config_cls = Digits10Config
    family_name = "mlp"
    shipped_nets = {"features": FEATURE_NET_PATH}

    def load_dataset(self):
        return digits_dataset()
