"""The one-way flow task -> game -> estimator -> Attribution -> metrics, and plug-ins.

Each layer is imported alone in a fresh interpreter and may load only what it is
allowed to (../shared/STYLE.md); a task, a model family, an estimator and a utility are then
added from outside the package, each as one file and one registry line; and
import-linter's contracts (pyproject.toml), which see function-level imports too, hold.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
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
"""A user's plug-in: one utility, one task, one model family, one estimator, one
registry line each."""
import dataclasses
import numpy as np

from surrogateshap import Estimator, register
from surrogateshap.tasks import DiffusionTask, register_task
from surrogateshap.tasks.data.images import ImageDataset
from surrogateshap.tasks.features.statistics import LabelStats, register_utility
from surrogateshap.tasks.models import register_family


@register_family("mean-image")
class MeanImageFamily:
    """A toy family: a coalition's model is the mean of its images; a sample is that
    mean plus a little seeded noise; a model that learned nothing outputs zeros."""

    @classmethod
    def from_task(cls, task):
        return cls()

    def prepare(self, dataset):
        return dataset.images

    def train(self, data, members, seeds):
        return [data[m].mean(0) for m in members]

    def sample(self, models, labels, seed):
        seeds = [seed] * len(models) if np.isscalar(seed) else seed
        return np.stack([m[None] + 0.01 * np.random.default_rng(int(s)).normal(size=(len(row), *m.shape))
                         for m, row, s in zip(models, np.asarray(labels), seeds)])

    def prior(self, units):
        return np.zeros((len(units), 1, 2, 2), np.float32)

    def save(self, models, path):
        np.save(path, np.stack(models))

    def load(self, path):
        return list(np.load(str(path)))

    model_file = "full_model.npy"


@dataclasses.dataclass(frozen=True)
class ImagesConfig:
    family: str = "mean-image"
    n_samples: int = 8
    bank_per_label: int = 4
    n_modes: int = 2

    @classmethod
    def preset(cls, scale="default", **kw):
        return dataclasses.replace(cls(), **kw)


@register_task("toy-images")
class ToyImages(DiffusionTask):
    name = "toy-images"
    players = ("a", "b", "c", "d")
    utilities = ("neg_fid", "top_class_mass")
    config_cls = ImagesConfig

    def load_dataset(self):
        rng = np.random.default_rng(0)
        labels = np.repeat(np.arange(4), 5)
        images = (labels[:, None, None, None] / 4 + 0.1 * rng.normal(size=(20, 1, 2, 2))).astype(np.float32)
        return ImageDataset(self.name, images, labels, self.players)


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
from surrogateshap import all_coalitions, available_estimators, get_estimator
from surrogateshap.tasks import get_task

assert "my-loo" in available_estimators(), available_estimators()  # found via the entry point
assert "surrogateshap" in available_estimators()  # the built-ins register the same way
task = get_task("toy4")
game = task.proxy_game("top_class_mass")
att = get_estimator("my-loo").estimate(game, 5, seed=0)
images = get_task("toy-images")  # the family, the task and the utility from outside
retrained = images.retraining_game("top_class_mass", cache=False)(all_coalitions(4))
proxy = images.proxy_game("neg_fid")(all_coalitions(4))
print(json.dumps({"values": att.values.tolist(), "index": att.index,
                  "full": float(game(np.ones((1, 4), bool))[0]), "family": type(images.family).__name__,
                  "retrained": retrained.tolist(), "proxy": proxy.tolist()}))
'''


def test_task_family_estimator_and_utility_plug_in_from_outside(tmp_path):
    pytest.importorskip("torch")  # the toy image task scores with the project's feature network
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
    # the toy family trained and sampled every coalition, scored by the registered utility
    assert res["family"] == "MeanImageFamily"
    assert len(res["retrained"]) == 16 and all(np.isfinite(res["retrained"] + res["proxy"]))
    assert len(set(np.round(res["retrained"], 9))) > 4  # coalitions differ
    # the proxy mixes the banks' pbar in proportion to the coalition's items (2, 1, 1, 3)
    counts = [2, 1, 1, 3]
    p = [[0.9 if j == k else 0.1 / 3 for j in range(4)] for k in range(4)]

    def top(members):
        total = sum(counts[k] for k in members)
        return max(sum(counts[k] * p[k][j] for k in members) / total for j in range(4))

    assert res["full"] == pytest.approx(top(range(4)), rel=1e-12)
    loo = [top(range(4)) - top([k for k in range(4) if k != i]) for i in range(4)]
    assert res["values"] == pytest.approx(loo, rel=1e-12)


def test_import_contracts_hold_function_level_imports_included():
    """import-linter reads every import, those inside functions too (what a sys.modules
    check after a bare import cannot see): the one-way flow and no cycle in the tasks wing."""
    import shutil
    from pathlib import Path

    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    out = subprocess.run([exe, "--config", str(Path(__file__).parents[1] / "pyproject.toml")],
                         capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


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
