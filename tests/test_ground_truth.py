"""The table builder of a task too large to enumerate (`surrogateshap build-table`, the
protocol's coalitions): `--benchmark` leaves a table from which the default benchmark
selection replays without retraining."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from surrogateshap.game import coalition_key  # noqa: E402
from surrogateshap.tasks import register_task  # noqa: E402
from surrogateshap.tasks.common import coalition_seed  # noqa: E402

from fake_tasks import FakeConfig, FakeTask  # noqa: E402


LOG: dict[int, str] = {0: ""}


class Fake14(FakeTask):
    """14 players (beyond enumeration: the sampled protocol), each adding to the
    utilities, so estimators have something to rank."""

    name = "fake14-gt"
    players = tuple(f"p{i}" for i in range(14))
    forbid = False  # a replay must not train: any retraining raises

    @property
    def item_contributor(self):
        return np.repeat(np.arange(14), 2)

    def retrain_stats(self, masks, seed):
        if self.forbid:
            raise AssertionError(f"retrained {[coalition_key(m) for m in masks]} during a replay")
        self._log("trained.log", [f"{seed}:{coalition_key(m)}" for m in masks])
        out = []
        for m in masks:
            st = self._stats(np.random.default_rng(coalition_seed(seed, m)))
            st.mean[:] = m[:2].sum() + 0.1 * m.sum() + 0.01 * st.mean
            out.append(st)
        return out

    def bank_stats(self):
        return [self._stats(np.random.default_rng(10 + i)) for i in range(14)]


@register_task("fake14-gt")
def _fake14(scale="default", config=None, cache_dir=None):
    return Fake14(config or FakeConfig(models_per_batch=8, log_dir=LOG[0]), cache_dir)


def test_benchmark_flag_exports_what_the_default_selection_replays(tmp_path, monkeypatch):
    import dataclasses

    from surrogateshap.benchmark import benchmark_cases, run_case
    from surrogateshap.benchmark.scales import SCALE_SETTINGS, SampledSelection
    from surrogateshap.benchmark.tasks import TableBenchmark
    from surrogateshap.benchmark.protocol import ground_truth_coalitions
    from surrogateshap.cli import main
    from surrogateshap.tasks.reference import RETRAINING_CSV

    small = SampledSelection(runs=(("surrogateshap", "proxy", 64), ("kernelshap", "retraining", None),
                                   ("loo", "retraining", None)), seeds=(0, 1))
    monkeypatch.setitem(SCALE_SETTINGS, "default", dataclasses.replace(SCALE_SETTINGS["default"], sampled=small))
    monkeypatch.setenv("SURROGATESHAP_CACHE", str(tmp_path / "cache"))
    (tmp_path / "log").mkdir()
    monkeypatch.setitem(LOG, 0, str(tmp_path / "log"))
    out = tmp_path / "table"
    from surrogateshap.benchmark import tasks as bench_tasks

    executors = []  # what trained the benchmark pass's coalitions: the command's executor
    made = bench_tasks.TableBenchmark.retraining_game

    def spy(self, seed):
        game = made(self, seed)
        executors.append(type(game.executor).__name__)
        return game

    monkeypatch.setattr(bench_tasks.TableBenchmark, "retraining_game", spy)
    assert main(["build-table", "--task", "fake14-gt", "--seeds", "0", "1", "--out", str(out), "--benchmark",
                 "--executor", "processes", "--workers", "2"]) == 0
    assert executors and set(executors) == {"ProcessExecutor"}
    monkeypatch.setattr(bench_tasks.TableBenchmark, "retraining_game", made)
    trained = (tmp_path / "log" / "trained.log").read_text().split()
    assert len(trained) == len(set(trained))  # nothing trained twice
    table_rows = sum(1 for line in open(out / RETRAINING_CSV) if line[:1] in "01")
    n_gt = len(ground_truth_coalitions(14))
    assert len(trained) == table_rows - 2  # every training was exported (empty: no training)
    assert table_rows > 2 * n_gt  # the benchmark's coalitions too

    # a replay from the exported table, from an empty cache, with retraining forbidden
    monkeypatch.setattr(Fake14, "forbid", True)
    monkeypatch.setenv("SURROGATESHAP_CACHE", str(tmp_path / "fresh-cache"))
    bt = TableBenchmark("fake14-gt", table_path=out / RETRAINING_CSV)
    assert bt.unavailable() is None and bt.sampled
    cases = benchmark_cases("default", tasks=["fake14-gt"])
    assert len(cases) == 3 * 3 * 2
    for c in cases:
        _, figures = run_case(c, _task=bt)
        assert np.isfinite(figures["lds_0.5_mean"])
        assert any(k.startswith("removal_") for k in figures) == (c.seed == 0)


def test_first_asks_for_the_protocol_even_where_the_default_is_every_coalition():
    """A task of up to 12 players defaults to every coalition; `build-table --first K`
    there must build the protocol's prefix, not silently train all 2**n coalitions."""
    import argparse
    import types

    from surrogateshap.benchmark.protocol import ground_truth_coalitions
    from surrogateshap.cli import UsageError, _coalitions

    task = types.SimpleNamespace(n_players=12, name="twelve")
    args = argparse.Namespace(coalitions=None, extra=None, first=3, no_loo=False, limit=None)
    masks, note = _coalitions(args, task)
    assert np.array_equal(masks, ground_truth_coalitions(12, first=3)) and "LDS test sets" in note
    args.first = None  # no protocol option: every coalition
    assert len(_coalitions(args, task)[0]) == 2**12
    with pytest.raises(UsageError, match="--first"):
        _coalitions(argparse.Namespace(coalitions="all", extra=None, first=3, no_loo=False, limit=None), task)


def test_first_takes_a_prefix_of_every_lds_set():
    """--first K builds every alpha early and a later run extends the very same sets."""
    from surrogateshap.benchmark.protocol import LDS_SETS, ground_truth_coalitions, lds_test_coalitions

    n = 14
    full = lds_test_coalitions(n)
    part = ground_truth_coalitions(n, loo=False, first=5)
    keys = {coalition_key(m) for m in part}
    for masks in full.values():  # sets of int(alpha * n) players: disjoint across alphas
        assert {coalition_key(m) for m in masks[:5]} <= keys and coalition_key(masks[5]) not in keys
    assert len(part) == 2 + 5 * len(LDS_SETS)
    assert keys <= {coalition_key(m) for m in ground_truth_coalitions(n, loo=False)}


def test_selection_chooses_the_cases_whose_retrainings_benchmark_builds(tmp_path, monkeypatch, capsys):
    """`--selection report` runs the report scale's cases (here permutation, which the
    default selection lacks), so their coalitions and removal sets land in the table;
    `--selection` without `--benchmark` is refused."""
    import dataclasses

    from surrogateshap.benchmark.scales import SCALE_SETTINGS, SampledSelection
    from surrogateshap.cli import main
    from surrogateshap.tasks.reference import RETRAINING_CSV

    default = SampledSelection(runs=(("loo", "retraining", None),), seeds=(0,))
    report = SampledSelection(runs=(("loo", "retraining", None), ("permutation", "retraining", None)), seeds=(0,))
    monkeypatch.setitem(SCALE_SETTINGS, "default", dataclasses.replace(SCALE_SETTINGS["default"], sampled=default))
    monkeypatch.setitem(SCALE_SETTINGS, "report", dataclasses.replace(SCALE_SETTINGS["report"], sampled=report))
    (tmp_path / "log").mkdir()
    monkeypatch.setitem(LOG, 0, str(tmp_path / "log"))

    def rows(name):
        out = tmp_path / name
        monkeypatch.setenv("SURROGATESHAP_CACHE", str(tmp_path / f"cache-{name}"))
        extra = ["--selection", "report"] if name == "report" else []
        assert main(["build-table", "--task", "fake14-gt", "--seeds", "0", "--out", str(out), "--benchmark",
                     *extra]) == 0
        text = (out / RETRAINING_CSV).read_text()
        assert f"the {name} benchmark selection's retrainings" in text
        return {line.split(",")[0] for line in text.splitlines() if line[:1] in "01"}

    plain, wide = rows("default"), rows("report")
    assert plain < wide  # the report's permutation coalitions besides LOO's
    assert main(["build-table", "--task", "fake14-gt", "--seeds", "0", "--out", str(tmp_path / "x"),
                 "--selection", "report"]) != 0
    assert "add --benchmark" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before anything was built
