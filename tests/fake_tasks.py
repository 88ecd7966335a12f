"""A cheap, deterministic task for executor tests, importable by worker processes
(its module registers it, so a worker rebuilds it from its name and config)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from surrogateshap.game import coalition_key
from surrogateshap.tasks import register_task
from surrogateshap.tasks.base import DiffusionTask
from surrogateshap.tasks.common import coalition_seed
from surrogateshap.tasks.features.statistics import LabelStats


@dataclass(frozen=True)
class FakeConfig:
    models_per_batch: int = 2
    n_samples: int = 10
    log_dir: str = ""  # every training appends its coalition key to log_dir/trained.log
    kill: str = ""  # coalition whose first attempt kills its worker (marker file in log_dir)
    poison: str = ""  # coalition whose training always raises
    sleep: float = 0.0  # seconds per model


class FakeTask(DiffusionTask):
    name = "fake-exec"
    players = ("a", "b", "c", "d")
    utilities = ("neg_fid", "inception_score", "coverage")

    def __init__(self, config: FakeConfig | None = None, cache_dir=None):
        super().__init__(config or FakeConfig(), cache_dir)

    @property
    def item_contributor(self):
        return np.array([0, 0, 1, 2, 3, 3])

    @staticmethod
    def _stats(rng) -> LabelStats:
        mean = rng.normal(size=2)
        return LabelStats(mean=mean, second=np.outer(mean, mean) + np.eye(2) * (1 + rng.random()),
                          pbar=rng.dirichlet(np.ones(4)), neg_entropy=-rng.random(),
                          modes=rng.random(3), count=10)

    def _log(self, name, keys):
        if self.config.log_dir:
            with open(Path(self.config.log_dir) / name, "a") as f:
                f.write("".join(k + "\n" for k in keys))

    def retrain_stats(self, masks, seed):
        keys = [coalition_key(m) for m in masks]
        c = self.config
        if c.kill in keys:
            marker = Path(c.log_dir) / f"killed-{c.kill}"
            if not marker.exists():
                marker.touch()
                os._exit(17)  # the worker dies mid-training, on the first attempt only
        if c.poison in keys:
            self._log("poison.log", [c.poison])
            raise RuntimeError(f"cannot train coalition {c.poison}")
        time.sleep(c.sleep * len(masks))
        self._log("trained.log", keys)
        self._log("jobs.log", [str(len(keys))])  # one line per job: the models it trained
        return [self._stats(np.random.default_rng(coalition_seed(seed, m))) for m in masks]

    def real_stats(self):
        return self._stats(np.random.default_rng(0))

    def empty_stats(self):
        return self._stats(np.random.default_rng(1))

    def bank_stats(self):
        return [self._stats(np.random.default_rng(10 + i)) for i in range(4)]

    def regenerate_stats(self, mask, seed):
        return self._stats(np.random.default_rng(coalition_seed(seed + 7, mask)))


@register_task("fake-exec")
def fake_exec(scale="default", config=None, cache_dir=None):
    return FakeTask(config, cache_dir)
