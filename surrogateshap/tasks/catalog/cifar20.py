"""``cifar20``: the paper's task. CIFAR-100 fine labels 40-44, 55-64, 80-84 (lamp ...
table), 500 training images each, from a local copy of the binary release
(``<data_dir>/cifar-100-binary/train.bin``; ``data_dir`` option or $SURROGATESHAP_DATA).

Presets:
- ``paper``: 32x32 RGB, diffusers UNet DDPM, condition dropout 0.1, guidance 1.4,
  10,240 samples per evaluation, FID / IS on the FID Inception-v3 read from the local
  file ``inception_weights`` (``pt_inception-2015-12-05-6726825d.pth``, torch-fidelity's
  release, the weights of torchmetrics' FID; needs ``torch-fidelity``). A GPU task.
- ``default``: runs on a CPU: 16x16, the MLP family, 1,000 samples, utilities on a
  classifier trained once on the real CIFAR-20 images (cached under the task cache).
- ``ci``: 100 images a class, tiny.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from surrogateshap.tasks.base import DiffusionTask
from surrogateshap.tasks.config import ImageTaskConfig, run_field
from surrogateshap.tasks.data.images import CIFAR20_NAMES, cifar20_dataset
from surrogateshap.tasks.features.statistics import UTILITIES

__all__ = ["Cifar20Config", "Cifar20Task"]


@dataclass(frozen=True)
class Cifar20Config(ImageTaskConfig):
    data_dir: str | None = run_field(None)  # folder holding cifar-100-binary/; None = $SURROGATESHAP_DATA
    per_class: int | None = None  # None = all 500
    size: int = 16
    channels: tuple[int, ...] = (64, 128, 128)  # unet
    layers_per_block: int = 2  # unet
    attention: bool = True  # unet
    guidance: float = 1.4
    models_per_batch: int = run_field(16)
    inception_weights: str | None = run_field(None)  # local FID Inception-v3 weights (featurizer "inception")

    PRESETS: ClassVar[dict[str, dict]] = {
        "ci": dict(per_class=100, hidden=128, steps=300, n_samples=200, bank_per_label=100,
                   n_modes=20, models_per_batch=8),
        "default": {},
        "paper": dict(size=32, family="unet", steps=20000, batch_size=128, lr=2e-4, guidance=1.4,
                      p_uncond=0.1, sample_steps=50, n_samples=10240, bank_per_label=10240 // 20,
                      featurizer="inception", models_per_batch=1),
    }

    @classmethod
    def preset(cls, scale: str = "default", **overrides) -> "Cifar20Config":
        cfg = super().preset(scale, **overrides)
        if cfg.featurizer == "inception" and not cfg.inception_weights:
            raise ValueError(
                "the Inception featurizer needs inception_weights= the local path of "
                "pt_inception-2015-12-05-6726825d.pth (torch-fidelity's FID Inception-v3)")
        return cfg


class Cifar20Task(DiffusionTask):
    name = "cifar20"
    utilities = UTILITIES  # -FID, Inception Score, coverage
    players = CIFAR20_NAMES
    config_cls = Cifar20Config

    def load_dataset(self):
        return cifar20_dataset(self.config.data_dir, self.config.per_class, self.config.size)
