"""The coalition store shared by processes and read back (issue #30): claims keep two
CachedGames from computing a coalition twice; a record that is JSON but not a record is
named, with its file and row."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time

import numpy as np
import pytest

from surrogateshap.game import CachedGame, FunctionGame, all_coalitions

N = 5
W = np.arange(1.0, N + 1)


def _logging_game(log: str) -> FunctionGame:
    """A slow game that appends the coalition of each evaluation to ``log``."""

    def utility(masks):
        with open(log, "a") as f:
            f.writelines("".join("1" if b else "0" for b in m) + "\n" for m in masks)
        time.sleep(0.01)
        return masks @ W

    return FunctionGame(utility, N, name="logged")


def _run(store: str, log: str, start, out):
    game = CachedGame(_logging_game(log), path=store)
    start.wait()
    values = game(all_coalitions(N))
    out.put((values.tolist(), game.n_evaluations))


# ------------------------------------------------------- 4. two processes, one store


def test_two_processes_on_one_store_compute_each_coalition_once(tmp_path):
    # CachedGame had no claims: two processes on one store computed every coalition twice
    ctx = multiprocessing.get_context("fork")
    store, log = str(tmp_path / "store.sqlite"), str(tmp_path / "evaluations.log")
    start, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_run, args=(store, log, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    evaluated = open(log).read().split()
    expected = (all_coalitions(N) @ W).tolist()
    assert sorted(evaluated) == sorted(set(evaluated)) and len(evaluated) == 2**N  # each once
    assert [r[0] for r in results] == [expected, expected]  # both have every value
    assert sum(r[1] for r in results) == 2**N  # the work was split, not repeated


def test_a_coalition_whose_evaluation_failed_is_released_to_the_next_process(tmp_path):
    # a claim that stayed after its evaluation raised would make every other writer wait
    path = tmp_path / "store.sqlite"

    def fails(masks):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        CachedGame(FunctionGame(fails, N, name="g", identity="same"), path=path)(all_coalitions(N)[:1])
    db = sqlite3.connect(path)
    assert db.execute("SELECT key FROM claims").fetchall() == []
    db.close()
    ok = CachedGame(FunctionGame(lambda m: m @ W, N, name="g", identity="same"), path=path)
    assert ok(all_coalitions(N)[:2]).tolist() == [0.0, 1.0] and ok.n_evaluations == 2


def test_claims_of_a_finished_process_lapse_and_a_running_ones_hold(tmp_path):
    # a writer killed mid-evaluation leaves its claim: waiting on it would wait forever
    import os
    import subprocess

    from surrogateshap.store import CoalitionStore, writer_id

    done = subprocess.Popen(["true"])
    done.wait()
    host = os.uname().nodename
    store = CoalitionStore(tmp_path / "store.sqlite", {"game": "g"})
    assert store.claim(["00001"], 1, f"{host}:{done.pid}:1") == ["00001"]  # ended since
    assert store.claim(["00010"], 1, f"{host}:{os.getppid()}:1") == ["00010"]  # running
    me = writer_id(object())
    assert store.claim(["00001", "00010", "00100"], 3, me, free_only=True) == ["00001", "00100"]
    store.append("00100", {"utility": 4.0})
    assert store.claim(["00100"], 1, "another", free_only=True) == []  # stored: nothing to take
