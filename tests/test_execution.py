"""Executors (serial, processes, Ray): identical results, retried worker deaths,
recorded failures, resumed drivers, and two drivers on one cache."""

from __future__ import annotations

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from surrogateshap.execution import ProcessExecutor, RayExecutor, SerialExecutor, get_executor
from surrogateshap.tasks.jobs import TaskSpec
from surrogateshap.game import all_coalitions, coalition_key
from surrogateshap.store import CoalitionStore
from surrogateshap.tasks.games import RetrainingFailedError, RetrainingGame
from surrogateshap.tasks.reference import build_table

sys.path.insert(0, str(Path(__file__).parent))
from fake_tasks import FakeConfig, FakeTask  # noqa: E402

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
HAS_RAY = importlib.util.find_spec("ray") is not None
ray_only = [pytest.mark.ray, pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed: pip install -e '.[ray]'")]
MASKS = all_coalitions(4)


@pytest.fixture(scope="module")
def ray_instance():
    import ray

    # 2 shared cores; workers must import this checkout and the tests' fake task
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}"}})
    yield ray
    ray.shutdown()


_OPEN = []


def make_executor(name, request, max_retries=3):
    if name == "serial":
        return SerialExecutor(max_retries=max_retries)
    if name == "processes":
        _OPEN.append(ProcessExecutor(workers=2, max_retries=max_retries))
        return _OPEN[-1]
    request.getfixturevalue("ray_instance")
    return RayExecutor(workers=2, max_retries=max_retries)


REMOTE = ["processes", pytest.param("ray", marks=ray_only)]


def fake(tmp_path, **cfg):
    (tmp_path / "log").mkdir(parents=True, exist_ok=True)
    return FakeTask(FakeConfig(log_dir=str(tmp_path / "log"), **cfg), cache_dir=tmp_path / "cache")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def store_keys(task, seed=0) -> list[str]:
    """Keys of the committed retrainings, read with SQLite itself (not the store); a
    damaged database fails the integrity check here."""
    path = task.cache_dir / task.config_id() / f"retrain-seed{seed}.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        db.execute("BEGIN")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        try:
            return [r[0] for r in db.execute("SELECT key FROM records ORDER BY id")]
        except sqlite3.OperationalError:  # being created: no table yet
            return []
    finally:
        db.close()


KILLED_MID_TRANSACTION = """
import os, signal, sys
from surrogateshap.store import CoalitionStore
store = CoalitionStore(sys.argv[1], {"g": 1})
with store.locked():
    store.append("11", {"v": 5.0})
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(autouse=True)
def _fresh_stores():
    yield
    while _OPEN:  # end the worker processes of this test
        _OPEN.pop().close()


@pytest.mark.parametrize("name", REMOTE)
def test_remote_results_are_bit_identical_to_serial(tmp_path, request, name):
    serial = RetrainingGame(fake(tmp_path / "s"), "neg_fid", progress=False).records(MASKS)
    task = fake(tmp_path / "r")
    recs = RetrainingGame(task, "neg_fid", progress=False, executor=make_executor(name, request)).records(MASKS)
    for a, b in zip(serial, recs):
        assert {u: a[u] for u in task.utilities} == {u: b[u] for u in task.utilities}
    assert sorted(store_keys(task)) == sorted(coalition_key(m) for m in MASKS[1:])
    assert len(lines(tmp_path / "r" / "log" / "trained.log")) == 15


def test_a_few_coalitions_are_spread_over_the_workers(tmp_path, request):
    """Fewer coalitions than the workers' batches hold go out as one job per worker (4 on 2
    workers: 2 jobs of 2, not one job of 4 and an idle worker); more fill whole batches."""
    task = fake(tmp_path, models_per_batch=8)
    game = RetrainingGame(task, "neg_fid", progress=False, executor=make_executor("processes", request))
    game.records(MASKS[1:5])
    assert sorted(lines(tmp_path / "log" / "jobs.log")) == ["2", "2"]
    game.records(MASKS[5:])  # 11 to train: chunks of min(8, ceil(11 / 2)) = 6
    assert sorted(lines(tmp_path / "log" / "jobs.log"))[2:] == ["5", "6"]
    assert len(lines(tmp_path / "log" / "trained.log")) == 15


DIGITS_MASKS = np.array([[1, 0, 1, 0, 0, 0, 0, 0, 0, 1], [0, 1] * 5, [1] * 5 + [0] * 5], bool)


def digits10_values(cache_dir, executor):
    """Utilities of 3 retrained digits10 ci models (models_per_batch 2: a chunk of 2, then 1)."""
    from surrogateshap.tasks import get_task
    from surrogateshap.tasks.catalog.digits10 import Digits10Config

    task = get_task("digits10", config=Digits10Config.preset("ci", models_per_batch=2), cache_dir=cache_dir)
    game = RetrainingGame(task, "neg_fid", progress=False, executor=executor)
    values = [{u: r[u] for u in task.utilities} for r in game.records(DIGITS_MASKS)]
    assert game.n_trained == 3
    return values


@pytest.fixture(scope="module")
def digits10_serial(tmp_path_factory):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)  # workers run 1 thread each (cpus_per_job=1): the same arithmetic
    return digits10_values(tmp_path_factory.mktemp("serial"), SerialExecutor())


@pytest.mark.slow
@pytest.mark.parametrize("name", REMOTE)
def test_digits10_retraining_is_bit_identical_across_executors(digits10_serial, tmp_path, request, name):
    assert digits10_values(tmp_path, make_executor(name, request)) == digits10_serial


@pytest.mark.parametrize("name", REMOTE)
@pytest.mark.parametrize("chunk", [1, 2])
def test_killed_worker_is_retried_and_the_table_ends_complete(tmp_path, request, name, chunk):
    task = fake(tmp_path, kill="0110", models_per_batch=chunk)
    table = build_table(task, "all", [0], out_dir=tmp_path / "ref", progress=False,
                                   executor=make_executor(name, request))
    assert (tmp_path / "log" / "killed-0110").exists()  # the first attempt did die
    assert table.complete_seeds() == [0]
    keys = store_keys(task)
    assert len(keys) == len(set(keys)) == 15
    trained = lines(tmp_path / "log" / "trained.log")
    assert sorted(trained) == sorted(keys)  # each coalition trained to completion once
    expected = RetrainingGame(fake(tmp_path / "serial"), "neg_fid", progress=False).records(MASKS)
    got = table.frame.set_index("coalition")["neg_fid"]
    for m, r in zip(MASKS[1:], expected[1:]):
        assert got[coalition_key(m)] == pytest.approx(r["neg_fid"], rel=1e-5)  # csv keeps 6 digits


@pytest.mark.parametrize("name", ["serial", *REMOTE])
def test_always_failing_coalition_is_recorded_as_failed_and_others_finish(tmp_path, request, name):
    task = fake(tmp_path, poison="1010", models_per_batch=2)
    game = RetrainingGame(task, "neg_fid", progress=False, executor=make_executor(name, request, max_retries=1))
    with pytest.raises(RetrainingFailedError, match="1010") as err:
        game(MASKS)
    rec = err.value.failures["1010"]
    assert "cannot train coalition 1010" in rec["error"] and rec["attempts"] == 2
    # its chunk failed once, then it alone 1 + max_retries times: bounded
    assert len(lines(tmp_path / "log" / "poison.log")) == 3
    keys = store_keys(task)
    assert "1010" not in keys and len(keys) == len(set(keys)) == 14
    # a failure is never read back as a result, and is reported from the cache
    again = RetrainingGame(task, "neg_fid", progress=False, executor="serial")
    assert "1010" not in again.store and set(again.failures()) == {"1010"}
    failures = {}
    table = build_table(task, "all", [0], out_dir=tmp_path / "ref", progress=False,
                                   executor=SerialExecutor(max_retries=0), failures=failures)
    assert set(failures[0]) == {"1010"} and table.complete_seeds() == [] and len(table.frame) == 15
    assert len(lines(tmp_path / "log" / "trained.log")) == 14  # nothing finished was retrained


DRIVER = """
import sys
sys.path[:0] = [{tests!r}, {root!r}]
from fake_tasks import FakeConfig, FakeTask
from surrogateshap.execution import get_executor
from surrogateshap.tasks.reference import build_table
task = FakeTask(FakeConfig(**{cfg!r}), cache_dir={cache!r})
build_table(task, "all", [0], out_dir={out!r}, progress=False,
                       executor=get_executor({executor!r}, workers=2))
"""


def resume_trains_only_the_rest(tmp_path, task):
    """Resume a killed build of all 15 coalitions serially: only what was not stored is
    trained, and every coalition ends stored once. Returns the table."""
    done = store_keys(task)
    (tmp_path / "log" / "trained.log").unlink()
    table = build_table(task, "all", [0], out_dir=tmp_path / "ref", progress=False)
    trained = lines(tmp_path / "log" / "trained.log")
    assert len(trained) == 15 - len(done) and set(trained).isdisjoint(done)
    assert table.complete_seeds() == [0]
    keys = store_keys(task)
    assert len(keys) == len(set(keys)) == 15
    return table


def driver(tmp_path, out, executor, **cfg):
    code = DRIVER.format(tests=str(TESTS), root=str(ROOT), cache=str(tmp_path / "cache"), out=str(out),
                         executor=executor, cfg={"log_dir": str(tmp_path / "log"), **cfg})
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_interrupted_driver_resumes_without_recomputing(tmp_path):
    cfg = dict(models_per_batch=1, sleep=0.3)
    task = fake(tmp_path, **cfg)
    proc = driver(tmp_path, tmp_path / "ref", "processes", **cfg)
    deadline = time.time() + 60
    while len(store_keys(task) if (task.cache_dir / task.config_id()).exists() else []) < 4:
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-run
    proc.wait()
    assert 4 <= len(store_keys(task)) < 15
    resume_trains_only_the_rest(tmp_path, task)


@pytest.mark.parametrize("executor", ["serial", "processes"])
def test_two_drivers_on_one_cache_neither_duplicate_nor_tear(tmp_path, executor):
    cfg = dict(models_per_batch=1, sleep=0.15)
    task = fake(tmp_path, **cfg)
    procs = [driver(tmp_path, tmp_path / f"ref{i}", executor, **cfg) for i in range(2)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stdout.read().decode()
    keys = store_keys(task)  # every line parses: none torn
    assert len(keys) == len(set(keys)) == 15
    trained = lines(tmp_path / "log" / "trained.log")
    # claims keep the drivers apart; at most the other's jobs in flight at the end overlap
    assert 15 <= len(trained) <= 15 + 2 * (2 if executor == "processes" else 1)
    a, b = (CoalitionTableFrame(tmp_path / f"ref{i}") for i in range(2))
    assert a.equals(b)


def CoalitionTableFrame(out):
    import pandas as pd

    frame = pd.read_csv(out / "retraining_table.csv", comment="#", dtype={"coalition": str})
    return frame.drop(columns="seconds").sort_values("coalition").reset_index(drop=True)


def test_store_append_is_once_per_key_across_writers(tmp_path):
    a = CoalitionStore(tmp_path / "s.sqlite", {"g": 1})
    b = CoalitionStore(tmp_path / "s.sqlite", {"g": 1})
    assert a.append("01", {"v": 1.0}) is True
    assert b.append("01", {"v": 2.0}) is False and b.get("01")["v"] == 1.0
    assert b.append("10", {"v": 3.0}) is True
    assert a.refresh() == 1 and a.get("10")["v"] == 3.0 and a.refresh() == 0
    # a writer died mid-transaction, holding the write lock: the lock is released with
    # its process and its record is not there
    died = subprocess.run([sys.executable, "-c", KILLED_MID_TRANSACTION, str(tmp_path / "s.sqlite")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert a.refresh() == 0 and "11" not in a
    assert a.append("11", {"v": 4.0}) is True
    c = CoalitionStore(tmp_path / "s.sqlite", {"g": 1})
    assert {k: r["v"] for k, r in c.records.items()} == {"01": 1.0, "10": 3.0, "11": 4.0}


def test_worker_refuses_a_task_of_another_configuration(tmp_path):
    task = fake(tmp_path)
    spec = TaskSpec.of(task)
    assert spec.build().config_id() == task.config_id()
    wrong = TaskSpec(spec.name, spec.scale, spec.kwargs, spec.module, config_id="fake-exec-000")
    with pytest.raises(RuntimeError, match="configuration"):
        wrong.build()


def test_bad_executor_arguments_are_named():
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        get_executor("dask")
    with pytest.raises(ValueError, match="workers"):
        ProcessExecutor(workers=0)
    with pytest.raises(ValueError, match="max_retries"):
        SerialExecutor(max_retries=-1)


@pytest.mark.parametrize("name", REMOTE)
def test_proxy_generation_runs_on_the_executor(tmp_path, request, name):
    task = fake(tmp_path)
    ex = make_executor(name, request)
    for mode in ("stats", "regenerate"):
        local = task.proxy_game("neg_fid", mode=mode)(MASKS)
        remote = task.proxy_game("neg_fid", mode=mode, executor=ex)(MASKS)
        np.testing.assert_array_equal(local, remote)


def test_cli_build_table_on_processes_then_resumed_serially(tmp_path, monkeypatch, capsys):
    from surrogateshap.cli import main

    monkeypatch.setenv("SURROGATESHAP_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "ref"
    args = ["build-table", "--task", "fake-exec", "--scale", "ci", "--out", str(out), "--seeds", "0", "1"]
    assert main([*args, "--executor", "processes", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "32 rows in " in printed and "complete seeds [0, 1]" in printed
    first = CoalitionTableFrame(out)
    assert main([*args, "--executor", "serial"]) == 0  # resumes: everything is cached
    assert CoalitionTableFrame(out).equals(first)
    capsys.readouterr()
    # usage errors: one line, exit status 2, before any work
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--executor", "dask"])
    assert exit_.value.code == 2 and "invalid choice: 'dask'" in capsys.readouterr().err
    assert main([*args, "--cpus-per-job", "2"]) == 2
    assert "no field cpus_per_job" in capsys.readouterr().err
