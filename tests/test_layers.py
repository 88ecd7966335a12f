"""The one-way flow task -> game -> estimator -> Attribution -> metrics, and plug-ins.

Each layer is imported alone in a fresh interpreter and may load only what it is
allowed to (../shared/STYLE.md); a task, an estimator and a utility are then added
from outside the package, each as one file and one registry line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

#: module -> prefixes it must NOT pull in (directly or transitively)
FORBIDDEN = {
    # the game core knows no estimator, task, benchmark or metric
    "surrogateshap.game": ("surrogateshap.estimators", "surrogateshap.tasks", "surrogateshap.benchmark",
                           "surrogateshap.metrics", "surrogateshap.evaluation", "baselines", "torch"),
    "surrogateshap.games": ("surrogateshap.estimators", "surrogateshap.tasks", "surrogateshap.benchmark",
                            "baselines", "torch"),
    "surrogateshap.sampling": ("surrogateshap.estimators", "surrogateshap.tasks", "surrogateshap.benchmark",
                               "surrogateshap.metrics", "baselines", "torch"),
    "surrogateshap.attribution": ("surrogateshap.estimators", "surrogateshap.tasks",
                                  "surrogateshap.metrics", "baselines", "torch"),
    # estimators see games and budgets, never a task or a metric
    "surrogateshap.estimators": ("surrogateshap.tasks", "surrogateshap.benchmark", "surrogateshap.metrics",
                                 "surrogateshap.evaluation", "baselines", "torch"),
    "baselines": ("surrogateshap.tasks", "surrogateshap.benchmark", "surrogateshap.metrics",
                  "surrogateshap.evaluation", "torch"),
    # the registry finds plug-ins through entry points, it imports none of them
    "surrogateshap.registry": ("surrogateshap.estimators", "baselines", "surrogateshap.tasks", "torch"),
    # metrics are plain numpy/scipy: no model, task or estimator
    "surrogateshap.metrics": ("surrogateshap.estimators", "surrogateshap.tasks", "surrogateshap.benchmark",
                              "baselines", "torch"),
    "surrogateshap.evaluation": ("surrogateshap.estimators", "surrogateshap.tasks", "surrogateshap.benchmark",
                                 "baselines", "torch"),
    # tasks make games; they never reach for an estimator or the benchmark
    "surrogateshap.tasks": ("surrogateshap.estimators", "surrogateshap.benchmark", "baselines", "torch"),
    "surrogateshap.tasks.reference": ("surrogateshap.estimators", "surrogateshap.benchmark", "baselines"),
    "surrogateshap.table": ("surrogateshap.estimators", "surrogateshap.tasks", "baselines", "torch"),
    # the package root exposes the core, not the heavy layers
    "surrogateshap": ("surrogateshap.estimators", "surrogateshap.tasks", "surrogateshap.benchmark",
                      "baselines", "torch"),
}


def _loaded(module: str) -> list[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_each_layer_imports_only_what_it_may(module):
    bad = [m for m in _loaded(module) for p in FORBIDDEN[module] if m == p or m.startswith(p + ".")]
    assert not bad, f"{module} pulls in {sorted(set(bad))}, against the one-way flow"


def test_the_check_has_teeth():
    # the evaluation layer does load the metrics it builds on: a forbidden prefix that is
    # actually imported is found
    assert "surrogateshap.metrics" in _loaded("surrogateshap.evaluation")


PLUGIN = '''
"""A user's plug-in: one utility, one task, one estimator, one registry line each."""
import dataclasses
import numpy as np

from surrogateshap import Estimator, register
from surrogateshap.tasks import DiffusionTask, register_task
from surrogateshap.tasks.statistics import LabelStats, register_utility


@register_utility("top_class_mass")
def top_class_mass(bank, w):
    return (w @ bank.pbar).max(axis=1)


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    n_samples: int = 10


def _stats(k, n=4):
    p = np.full(n, 0.1 / (n - 1)); p[k % n] = 0.9
    return LabelStats(mean=np.full(2, float(k)), second=np.eye(2) + float(k) ** 2, pbar=p,
                      neg_entropy=float((p * np.log(p)).sum()), modes=np.eye(n)[k % n], count=100)


@register_task("toy4")
class ToyTask(DiffusionTask):
    name = "toy4"
    players = ("a", "b", "c", "d")
    utilities = ("neg_fid", "top_class_mass")

    def __init__(self, scale="default", cache_dir=None):
        super().__init__(ToyConfig(), cache_dir)

    @property
    def item_contributor(self):
        return np.array([0, 0, 1, 2, 3, 3, 3])

    def retrain_stats(self, masks, seed):
        raise NotImplementedError

    def bank_stats(self):
        return [_stats(k) for k in range(4)]

    def regenerate_stats(self, mask, seed):
        raise NotImplementedError

    def real_stats(self):
        return _stats(0)

    def empty_stats(self):
        return _stats(1)


@register("my-loo")
class MyLOO(Estimator):
    index = "loo"

    def min_budget(self, n):
        return n + 1

    def _estimate(self, game, budget, rng):
        n = game.n_players
        v = game(np.vstack([np.ones((1, n), bool), ~np.eye(n, dtype=bool)]))
        return v[0] - v[1:]
'''

RUN = '''
import json
import numpy as np
from surrogateshap import available_estimators, get_estimator
from surrogateshap.tasks import get_task

assert "my-loo" in available_estimators(), available_estimators()  # found via the entry point
assert "surrogateshap" in available_estimators()  # the built-ins register the same way
task = get_task("toy4")
game = task.proxy_game("top_class_mass")
att = get_estimator("my-loo").estimate(game, 5, seed=0)
print(json.dumps({"values": att.values.tolist(), "index": att.index,
                  "full": float(game(np.ones((1, 4), bool))[0])}))
'''


def test_task_estimator_and_utility_plug_in_from_outside(tmp_path):
    pkg = tmp_path / "my_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    # the one registry line of a plug-in package: its entry point
    dist = tmp_path / "my_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[surrogateshap.estimators]\nmy_plugin = my_plugin\n")
    env_path = f"{tmp_path}"
    out = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": env_path,
                              "SURROGATESHAP_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["index"] == "loo"
    # the proxy mixes the banks' pbar in proportion to the coalition's items (2, 1, 1, 3)
    counts = [2, 1, 1, 3]
    p = [[0.9 if j == k else 0.1 / 3 for j in range(4)] for k in range(4)]

    def top(members):
        total = sum(counts[k] for k in members)
        return max(sum(counts[k] * p[k][j] for k in members) / total for j in range(4))

    assert res["full"] == pytest.approx(top(range(4)), rel=1e-12)
    loo = [top(range(4)) - top([k for k in range(4) if k != i]) for i in range(4)]
    assert res["values"] == pytest.approx(loo, rel=1e-12)


def test_reference_tables_travel_as_package_data(tmp_path, monkeypatch):
    # a wheel install has no datasets/ folder: the tables come from the package data
    from surrogateshap.tasks import reference

    shipped = tmp_path / "reference_data" / "digits10"
    shipped.mkdir(parents=True)
    (shipped / reference.RETRAINING_CSV).write_text("coalition,seed\n")
    monkeypatch.delenv("SURROGATESHAP_DATASETS", raising=False)
    monkeypatch.setattr(reference, "REPOSITORY_DATASETS", tmp_path / "no-checkout")
    monkeypatch.setattr(reference, "PACKAGE_DATASETS", tmp_path / "reference_data")
    assert reference.reference_dir("digits10") == shipped
    # and the wheel's package data holds the datasets/ folder (pyproject maps it)
    import tomllib
    from pathlib import Path

    cfg = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["package-dir"]["surrogateshap.reference_data"] == "datasets"
    assert "*/*.csv" in cfg["package-data"]["surrogateshap.reference_data"]
