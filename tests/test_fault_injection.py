"""Fault injection: processes killed with SIGKILL mid-run, concurrent writers, interrupted
table writes, corrupted stores. Each test checks that nothing finished is lost, nothing
is stored twice and no file is left half-written.

Workers are real subprocesses running small scripts written to ``tmp_path`` (no torch,
no training: a slow FunctionGame, or a fake DiffusionTask whose ``retrain_stats``
returns synthetic statistics).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from surrogateshap.game import (
    CachedGame,
    FunctionGame,
    all_coalitions,
    coalition_key,
)
from surrogateshap.store import CoalitionStore, CorruptStoreError
from surrogateshap.table import CoalitionTable

REPO = Path(__file__).resolve().parents[1]
N = 6
W = 2.0 ** np.arange(N)


def _env(tmp_path, **extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["SURROGATESHAP_CACHE"] = str(tmp_path / "cache")
    env["SURROGATESHAP_DATASETS"] = str(tmp_path / "datasets")  # never the shipped tables
    env.update(extra)
    return env


def _script(tmp_path, name, body) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def _read_db(path: Path, *queries: str) -> list[list[tuple]]:
    """Rows of ``queries`` on the store's database, read with SQLite itself (not the
    store), in one read transaction of a read-only connection."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        db.execute("BEGIN")
        return [db.execute(q).fetchall() for q in queries]
    finally:
        db.close()


def _lines(path: Path) -> tuple[list[str], list[str]]:
    """(keys of the committed records in the order stored, problems): the database has
    its header and passes SQLite's integrity check, or the problems say what is wrong."""
    keys, check, header = _read_db(path, "SELECT key FROM records ORDER BY id", "PRAGMA integrity_check",
                                   "SELECT value FROM meta WHERE name='header'")
    assert header and json.loads(header[0][0])
    return [k for (k,) in keys], [c for (c,) in check if c != "ok"]


def _header(path: Path) -> dict:
    return json.loads(_read_db(path, "SELECT value FROM meta WHERE name='header'")[0][0][0])


def _whole_keys(path: Path) -> set[str]:
    """Keys of the records committed so far (a writer may be running)."""
    if not path.exists():
        return set()
    try:
        return {k for (k,) in _read_db(path, "SELECT key FROM records")[0]}
    except sqlite3.OperationalError:  # being created: no table yet
        return set()


def _kill_when(proc, ready, timeout=20.0):
    """SIGKILL ``proc`` once ``ready()`` holds (or it exits by itself)."""
    t0 = time.monotonic()
    while proc.poll() is None and not ready():
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("worker made no progress")
        time.sleep(0.005)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


# ---------------------------------------------------------------- CachedGame killed mid-run

GAME_WORKER = """
    import os, sys, time
    import numpy as np
    from surrogateshap.game import CachedGame, FunctionGame, all_coalitions

    W = 2.0 ** np.arange(6)
    PROGRESS = os.environ.get("PROGRESS")

    def slow(masks):
        for _ in masks:  # one coalition at a time, each one reported when computed
            time.sleep(0.004)
            if PROGRESS:
                with open(PROGRESS, "a") as f:
                    f.write(".")
        return masks @ W

    order = all_coalitions(6)
    if sys.argv[2] == "reverse":
        order = order[::-1]
    game = CachedGame(FunctionGame(slow, 6, name="slow"), path=sys.argv[1])
    out = game(order)  # one batch: even the first batch must persist record by record
    assert np.array_equal(out, order @ W)
    print(game.n_evaluations)
"""


def test_kill_during_cached_game_run_then_resume(tmp_path):
    script = _script(tmp_path, "game_worker.py", GAME_WORKER)
    store = tmp_path / "store.sqlite"
    progress = tmp_path / "progress"
    env = _env(tmp_path, PROGRESS=str(progress))
    computed = lambda: len(progress.read_text()) if progress.exists() else 0  # noqa: E731
    rng = np.random.default_rng(0)
    finished: set[str] = set()
    for _ in range(3):  # killed at a random point of the run, three times (first: a fresh store)
        progress.unlink(missing_ok=True)
        target = int(rng.integers(3, 12))
        proc = subprocess.Popen([sys.executable, str(script), str(store), "forward"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _kill_when(proc, lambda: computed() >= target)
        now = _whole_keys(store)
        assert finished <= now  # nothing finished earlier was lost
        # every coalition computed before the kill is stored, but the one in flight
        assert len(now - finished) >= computed() - 1 >= target - 1
        finished = now
    done = subprocess.run([sys.executable, str(script), str(store), "forward"], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == 2**N - len(finished)  # only the unfinished were computed
    keys, _ = _lines(store)
    assert len(keys) == len(set(keys)) == 2**N  # every record exactly once
    assert finished <= set(keys)
    stored = CoalitionStore(store, _header(store))
    masks = all_coalitions(N)
    got = np.array([stored.get(coalition_key(m))["utility"] for m in masks])
    np.testing.assert_array_equal(got, masks @ W)


# ---------------------------------------------------------------- build_table killed

TABLE_WORKER = """
    import os, signal, sys, time
    from dataclasses import dataclass
    import numpy as np
    from surrogateshap.game import coalition_key
    from surrogateshap.tasks.base import DiffusionTask
    from surrogateshap.tasks.reference import build_table
    from surrogateshap.tasks.features.statistics import LabelStats


    @dataclass(frozen=True)
    class Cfg:
        models_per_batch: int = 2
        n_samples: int = 10


    class Fake(DiffusionTask):
        name = "fake4"
        players = ("a", "b", "c", "d")
        utilities = ("neg_fid", "inception_score", "coverage")

        @property
        def item_contributor(self):
            return np.array([0, 0, 1, 2, 3, 3])

        def _stats(self, value):
            return LabelStats(mean=np.array([value]), second=np.array([[value**2 + 1]]),
                              pbar=np.array([0.5, 0.5]), neg_entropy=-0.5, modes=np.array([1.0]), count=10)

        def retrain_stats(self, masks, seed):
            time.sleep(0.03 * len(masks))  # "training"
            return [self._stats(float(m @ np.arange(1, 5)) + seed) for m in masks]

        def real_stats(self):
            return self._stats(0.0)

        def empty_stats(self):
            return self._stats(-1.0)

        def bank_stats(self):
            return [self._stats(float(i + 1)) for i in range(4)]

        def regenerate_stats(self, mask, seed):
            raise NotImplementedError


    KILL_AT = int(os.environ.get("KILL_IN_TABLE_WRITE", "0"))
    if KILL_AT:  # SIGKILL half-way through the KILL_AT-th write of the table
        import pandas as pd
        real, seen = pd.DataFrame.to_csv, []

        def to_csv(self, f=None, **kw):
            if "coalition" in self.columns:
                seen.append(1)
                if len(seen) == KILL_AT:
                    text = real(self, None, **kw)
                    f.write(text[: len(text) // 2]); f.flush(); os.fsync(f.fileno())
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(self, f, **kw)

        pd.DataFrame.to_csv = to_csv

    task = Fake(Cfg())  # cache under $SURROGATESHAP_CACHE
    table = build_table(task, "all", [0, 1], out_dir=sys.argv[1], progress=False, export_every=8)
    print(len(table.frame), table.complete_seeds())
"""


def _tree_digest(root: Path) -> str:
    h = hashlib.sha1()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_kill_during_build_table_then_resume(tmp_path):
    shipped = _tree_digest(REPO / "datasets")
    script = _script(tmp_path, "table_worker.py", TABLE_WORKER)
    out = tmp_path / "ref"
    table_csv = out / "retraining_table.csv"
    utilities = ("neg_fid", "inception_score", "coverage")
    # the result stores, not the executor's claims and failure logs beside them
    stores = lambda: sorted((tmp_path / "cache").rglob("retrain-seed*.sqlite"))  # noqa: E731
    n_done = lambda: sum(len(_whole_keys(p)) for p in stores())  # noqa: E731
    rng = np.random.default_rng(1)

    # 1) killed at a random retraining of seed 0
    target = int(rng.integers(2, 12))
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _kill_when(proc, lambda: n_done() >= target)
    # the table was written once, before any training: what was held (each seed's empty coalition)
    assert n_done() >= target and len(CoalitionTable.read_csv(table_csv, "abcd", utilities).frame) == 2

    # 2) killed half-way through writing the table the second time (after the first 8
    #    coalitions to train of each seed): the first write, of what the cache held when
    #    the run began (the empty coalitions and the killed run's retrainings), stays whole
    held = n_done()
    killed = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, timeout=60,
                            env=_env(tmp_path, KILL_IN_TABLE_WRITE="2"))
    assert killed.returncode == -signal.SIGKILL
    table = CoalitionTable.read_csv(table_csv, "abcd", utilities)
    assert table.complete_seeds() == [] and len(table.frame) == 2 + held

    # 3) a random kill of a fresh run (seed 0 and 1 both cached: mostly table writing)
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, str(script), str(out)], env=_env(tmp_path),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(float(rng.uniform(0.3, 1.5)))
        _kill_when(proc, lambda: True)
        CoalitionTable.read_csv(table_csv, "abcd", utilities)  # whatever a kill left is whole

    done = subprocess.run([sys.executable, str(script), str(out)], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "32"
    frame = pd.read_csv(table_csv, comment="#", dtype={"coalition": str})
    assert len(frame) == 32 and not frame.duplicated(["coalition", "seed"]).any()
    assert sorted(frame.groupby("seed").size().tolist()) == [16, 16]
    for p in stores():
        keys, bad = _lines(p)
        assert len(keys) == len(set(keys)) == 15 and not bad
    assert (out / "exact_shapley.csv").exists()
    assert _tree_digest(REPO / "datasets") == shipped  # the shipped tables untouched


# ---------------------------------------------------------------- concurrent writers

APPEND_WORKER = """
    import os, sys, time

    from surrogateshap.store import CoalitionStore

    store = CoalitionStore(sys.argv[1], {"game": "shared"})
    me = sys.argv[2]
    other = "reverse" if me == "forward" else "forward"
    keys = [format(i, "08b") for i in range(256)]
    if me == "reverse":
        keys = keys[::-1]

    def append(part):
        return sum(store.append(k, {"utility": int(k, 2), "by": me}) for k in part)

    # its own end first (the other writer starts at the far end), then, once both are
    # there, the contested rest together: both write, whatever the scheduler does (a
    # common start alone let one finish before the other began on a loaded machine)
    written = append(keys[:64])
    open(sys.argv[1] + ".ready-" + me, "w").close()
    deadline = time.time() + 60
    while not os.path.exists(sys.argv[1] + ".ready-" + other):
        if time.time() > deadline:
            sys.exit(f"{me}: the {other} writer never wrote its first 64 keys")
        time.sleep(0.005)
    written += append(keys[64:])
    print(written)
"""


def test_two_concurrent_writers_store_each_key_once(tmp_path):
    store = tmp_path / "store.sqlite"
    append = _script(tmp_path, "append_worker.py", APPEND_WORKER)
    procs = [subprocess.Popen([sys.executable, str(append), str(store), order], env=_env(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for order in ("forward", "reverse")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    written = [int(o[0]) for o in outs]
    assert sum(written) == 256 and min(written) >= 64  # both wrote, together each key once
    keys, bad = _lines(store)
    assert not bad and len(keys) == len(set(keys)) == 256

    # and two CachedGame runs of one game, started together, share the work
    game = _script(tmp_path, "game_worker.py", GAME_WORKER)
    shared = tmp_path / "game.sqlite"
    procs = [subprocess.Popen([sys.executable, str(game), str(shared), order], env=_env(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for order in ("forward", "reverse")]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    keys, bad = _lines(shared)
    assert not bad and len(keys) == len(set(keys)) == 2**N
    assert sum(int(o[0]) for o in outs) <= 2**N + 2  # at most the coalition in flight twice


LIVE_WRITER = """
    import sys, time
    from surrogateshap.store import CoalitionStore
    store = CoalitionStore(sys.argv[1], {"game": "g"})
    with store.locked():  # a live writer, half-way through its transaction
        store.append("0011", {"utility": 3.0})
        open(sys.argv[2], "w").close()
        time.sleep(0.8)
"""


def test_reopen_during_a_live_write_sees_none_of_it_and_a_writer_waits(tmp_path):
    # a reopen that "repaired" the half line of a live writer used to rewrite the file
    # under it and lose records; now a reopen only reads what is committed, and a
    # writer waits for the live one's lock and then skips the key it stored
    path = tmp_path / "store.sqlite"
    first = CoalitionStore(path, {"game": "g"})
    first.append("0001", {"utility": 1.0})
    holder = _script(tmp_path, "holder.py", LIVE_WRITER)
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, str(holder), str(path), str(ready)], env=_env(tmp_path))
    t0 = time.monotonic()
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() - t0 < 20
        time.sleep(0.005)
    second = CoalitionStore(path, {"game": "g"})  # reads without waiting for the writer
    assert set(second.records) == {"0001"}
    t0 = time.monotonic()
    assert second.append("0011", {"utility": 99.0}) is False  # waited, then found it stored
    assert time.monotonic() - t0 > 0.3 and proc.wait(timeout=20) == 0
    assert set(second.records) == {"0001", "0011"} and second.get("0011")["utility"] == 3.0
    keys, bad = _lines(path)
    assert keys == ["0001", "0011"] and not bad
    assert first.refresh() == 1 and "0011" in first


# ---------------------------------------------------------------- interrupted table writes


def _load_table_worker_task(tmp_path):
    """The fake task of TABLE_WORKER, in this process (its module body minus the run)."""
    body = textwrap.dedent(TABLE_WORKER).split("task = Fake(")[0]
    ns: dict = {"__name__": "fake_task_module"}
    exec(compile(body, "fake_task_module", "exec", dont_inherit=True), ns)
    return ns["Fake"](ns["Cfg"](), cache_dir=tmp_path / "cache")


def test_crash_during_a_table_write_keeps_the_old_table(tmp_path, monkeypatch):
    from surrogateshap.tasks import reference

    out = tmp_path / "ref"
    reference.build_table(_load_table_worker_task(tmp_path), "all", [0], out_dir=out, progress=False)
    table_csv, exact_csv = out / "retraining_table.csv", out / "exact_shapley.csv"
    old = table_csv.read_bytes()

    # 1) the process dies half-way through writing the rows
    real_to_csv = pd.DataFrame.to_csv

    def half_then_crash(self, f=None, **kw):
        text = real_to_csv(self, None, **kw)
        f.write(text[: len(text) // 2])
        raise KeyboardInterrupt("simulated crash mid-write")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        reference.build_table(_load_table_worker_task(tmp_path), "all", [0, 1], out_dir=out,
                                         progress=False)
    monkeypatch.setattr(pd.DataFrame, "to_csv", real_to_csv)
    assert table_csv.read_bytes() == old
    assert not list(out.glob(".*.tmp"))  # the partial temporary file is removed

    # 2) the process dies between the temporary file's write and the replace
    import surrogateshap._files as files

    def die(*a, **k):
        raise KeyboardInterrupt("simulated crash before os.replace")

    monkeypatch.setattr(files.os, "replace", die)
    with pytest.raises(KeyboardInterrupt):
        reference.build_table(_load_table_worker_task(tmp_path), "all", [0, 1], out_dir=out,
                                         progress=False)
    monkeypatch.undo()
    assert table_csv.read_bytes() == old
    # a crash that leaves a stray temporary file (SIGKILL) does not disturb the next run
    (out / ".retraining_table.csv.stray.tmp").write_text("# partial\ncoalition,se")
    table = reference.build_table(_load_table_worker_task(tmp_path), "all", [0, 1], out_dir=out,
                                             progress=False)
    assert table.complete_seeds() == [0, 1] and exact_csv.exists()


def test_a_truncated_table_left_by_an_old_version_is_a_clear_error_or_skipped(tmp_path):
    from surrogateshap.tasks import reference

    out = tmp_path / "ref"
    task = _load_table_worker_task(tmp_path)
    reference.build_table(task, "all", [0], out_dir=out, progress=False)
    csv = out / "retraining_table.csv"
    text = csv.read_text()
    csv.write_text(text[: text.rfind("\n", 0, len(text) - 1) + 12])  # last row cut short
    with pytest.warns(UserWarning, match="incomplete row"):
        table = reference.build_table(_load_table_worker_task(tmp_path), "all", [0], out_dir=out,
                                                 progress=False)
    assert table.complete_seeds() == [0]  # the cut row came back from the cache
    csv.write_text(text.split("\n")[0] + '\n"unclosed')
    with pytest.raises(ValueError, match="not a readable retraining table|another configuration"):
        reference.build_table(_load_table_worker_task(tmp_path), "all", [0], out_dir=out,
                                         progress=False)


# ---------------------------------------------------------------- corrupted store


def test_corrupted_store_is_a_clear_error_naming_the_file_and_is_left_as_it_was(tmp_path):
    path = tmp_path / "store.sqlite"
    game = FunctionGame(lambda m: m @ W, N, name="w")
    masks = all_coalitions(N)[:8]
    CachedGame(game, path=path)(masks).tolist()
    import gc

    gc.collect()  # the store's connection closes: the WAL is checkpointed into the file
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name='records'").fetchone()[0]
    db.close()
    assert not (tmp_path / "store.sqlite-wal").exists()
    with open(path, "r+b") as f:  # a damaged block: the records' page is overwritten
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * page_size)
    before = path.read_bytes()

    with pytest.raises(CorruptStoreError, match=r"store\.sqlite is damaged") as err:
        CachedGame(FunctionGame(lambda m: m @ W, N, name="w"), path=path)
    assert str(path) in str(err.value) and "'.recover'" in str(err.value)
    assert path.read_bytes() == before  # never rewritten, truncated or deleted
    # a damaged first page (the file's header) is not taken for an empty store either
    with open(path, "r+b") as f:
        f.write(b"\xff" * 100)
    with pytest.raises(ValueError, match=r"store\.sqlite is not a coalition store"):
        CachedGame(FunctionGame(lambda m: m @ W, N, name="w"), path=path)
    assert path.stat().st_size == len(before)
