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
from surrogateshap.store import CoalitionStore, CorruptStoreError

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

    from surrogateshap.store import writer_id

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


# ------------------------------------------------------- 5. a row that is JSON but no record


def _weighted() -> FunctionGame:
    return FunctionGame(lambda m: m @ W, N, name="w")


def _store_with(tmp_path, text: str, table: str = "records") -> tuple:
    path = tmp_path / "store.sqlite"
    CachedGame(_weighted(), path=path)(all_coalitions(N)[1:3]).tolist()
    db = sqlite3.connect(path)
    if table == "records":
        db.execute("INSERT INTO records (key, record) VALUES ('00011', ?)", (text,))
    elif table == "failures":
        db.execute("INSERT INTO failures (key, record) VALUES ('00011', ?)", (text,))
    else:
        db.execute("UPDATE meta SET value = ? WHERE name = 'header'", (text,))
    db.commit()
    rid = db.execute(f"SELECT max(id) FROM {table}").fetchone()[0] if table != "meta" else None
    db.close()
    return path, rid


@pytest.mark.parametrize("text, why", [
    ("[1, 2]", "list, not an object"),
    ('"a note"', "str, not an object"),
    ('{"key": "11111", "utility": 3.0}', "its key '11111' is not the row's '00011'"),
    ("not json", "not JSON"),  # unparsable: the same error, consistently
])
def test_a_stored_row_that_is_no_record_names_the_file_and_row(tmp_path, text, why):
    # valid JSON that was not a record (a list, a string) stopped every later run with a
    # KeyError or TypeError naming neither file nor row
    path, rid = _store_with(tmp_path, text)
    with pytest.raises(CorruptStoreError, match=rf"store\.sqlite: row {rid} of table 'records' is not a record") as err:
        CachedGame(_weighted(), path=path)
    assert why in str(err.value) and f"DELETE FROM records WHERE id={rid}" in str(err.value)


@pytest.mark.parametrize("text", ['{"key": "00011"}', '{"key": "00011", "utility": "3"}',
                                  '{"key": "00011", "utility": NaN}'])
def test_a_record_without_a_finite_utility_names_the_file_and_coalition(tmp_path, text):
    path, _ = _store_with(tmp_path, text)
    with pytest.raises(CorruptStoreError, match=r"store\.sqlite: the record of coalition 00011 has utility"):
        CachedGame(_weighted(), path=path)


def test_a_failure_or_header_row_that_is_no_record_is_named(tmp_path):
    path, rid = _store_with(tmp_path, "[]", table="failures")
    store = CoalitionStore(path, {"game": _weighted().cache_id()})
    with pytest.raises(CorruptStoreError, match=rf"row {rid} of table 'failures' is not a record"):
        store.failures()
    path, _ = _store_with(tmp_path / "h", "7", table="meta")
    with pytest.raises(CorruptStoreError, match=r"row header of table 'meta' is not a record .*Move the file away"):
        CachedGame(_weighted(), path=path)
