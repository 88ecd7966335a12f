"""Reliability of the store, cache identity, budgets, game outputs, CLI validation and
reports: each test names the defect it guards against."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from surrogateshap import registry
from surrogateshap.estimator import Estimator
from surrogateshap.game import (
    BudgetedGame,
    CachedGame,
    FunctionGame,
    Game,
    all_coalitions,
)
from surrogateshap.games import AdditiveGame
from surrogateshap.registry import register
from surrogateshap.store import CoalitionStore, CorruptStoreError
from surrogateshap.table import CoalitionTable

N = 4
W = np.array([1.0, 2.0, 4.0, 8.0])


def _keys(path: Path) -> list[str]:
    """Keys of the committed records in the order stored, read with SQLite itself."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT key FROM records ORDER BY id")]
    finally:
        db.close()


def _damage_page(path: Path, table: str):
    """Overwrite the first byte (the b-tree page type) of ``table``'s root page, as a
    bad disk block or a stray write would; the rest of the file is left as it was."""
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (table,)).fetchone()[0]
    db.close()  # the last connection: the WAL is checkpointed into the file and removed
    assert not Path(f"{path}-wal").exists()
    with open(path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\x00")


# ---------------------------------------------------------------- 1. first batch persists


def test_first_batch_of_a_fresh_store_persists_record_by_record(tmp_path):
    # an empty store was falsy, so the whole first batch ran in one call and a crash in
    # it kept nothing
    calls = []

    def dies_on_third(masks):
        calls.append(len(masks))
        if sum(calls) > 2:
            raise KeyboardInterrupt("killed")
        return masks @ W

    path = tmp_path / "store.sqlite"
    game = CachedGame(FunctionGame(dies_on_third, N, name="f"), path=path)
    assert len(game.store) == 0 and bool(game.store)
    with pytest.raises(KeyboardInterrupt):
        game(all_coalitions(N)[1:5])
    assert calls == [1, 1, 1]
    assert sorted(_keys(path)) == ["0100", "1000"]


# ---------------------------------------------------------------- 2. game identity


def test_different_functions_on_the_same_players_do_not_share_a_store(tmp_path):
    path = tmp_path / "store.sqlite"
    first = CachedGame(FunctionGame(lambda m: m @ W, N), path=path)
    first(np.eye(N, dtype=bool))
    with pytest.raises(ValueError, match="different game"):
        CachedGame(FunctionGame(lambda m: -(m @ W), N), path=path)
    # the same function (same code) resumes
    again = CachedGame(FunctionGame(lambda m: m @ W, N), path=path)
    assert again(np.eye(N, dtype=bool)).tolist() == W.tolist() and again.n_evaluations == 0


def test_function_identity_sees_closures_and_the_callers_identity():
    def scaled(c):
        return lambda m: c * (m @ W)

    assert FunctionGame(scaled(1.0), N).cache_id() != FunctionGame(scaled(2.0), N).cache_id()
    assert FunctionGame(scaled(1.0), N).cache_id() == FunctionGame(scaled(1.0), N).cache_id()
    arr = lambda w: (lambda m: m @ w)  # noqa: E731
    assert FunctionGame(arr(W), N).cache_id() != FunctionGame(arr(W * 2), N).cache_id()
    # builtins and numpy functions have no bytecode: told apart by name
    ids = {FunctionGame(f, N).cache_id() for f in (np.sum, np.max, np.add, np.multiply, len, abs)}
    assert len(ids) == 6
    # a caller-given identity wins over the code
    a = FunctionGame(lambda m: m @ W, N, identity="v1")
    b = FunctionGame(lambda m: m.sum(1), N, identity="v1")
    assert a.cache_id() == b.cache_id()
    assert a.cache_id() != FunctionGame(lambda m: m @ W, N, identity="v2").cache_id()


def test_player_names_with_commas_do_not_collide():
    f = lambda m: m.sum(1)  # noqa: E731
    assert FunctionGame(f, ["a,b", "c"]).cache_id() != FunctionGame(f, ["a", "b,c"]).cache_id()

    class Plain(Game):
        def _evaluate(self, masks):
            return masks.sum(1)

    assert Plain(["a,b", "c"]).cache_id() != Plain(["a", "b,c"]).cache_id()


def test_tables_with_different_content_do_not_share_a_store():
    masks = all_coalitions(2)
    rows = [{"coalition": "".join("1" if b else "0" for b in m), "seed": 0, "u": float(m.sum())}
            for m in masks]
    t1 = CoalitionTable(pd.DataFrame(rows), ["a", "b"], ["u"])
    rows[1]["u"] = 5.0
    t2 = CoalitionTable(pd.DataFrame(rows), ["a", "b"], ["u"])
    assert t1.game("u").cache_id() != t2.game("u").cache_id()
    assert t1.game("u").cache_id() == CoalitionTable(t1.frame, ["a", "b"], ["u"]).game("u").cache_id()


# ---------------------------------------------------------------- 4. store API: lock, refresh, append


def test_append_skips_keys_another_writer_stored_and_refresh_counts_new(tmp_path):
    path = tmp_path / "store.sqlite"
    a = CoalitionStore(path, {"game": "g"})
    b = CoalitionStore(path, {"game": "g"})  # another process, in effect
    assert a.append("0001", {"utility": 1.0}) is True
    assert b.append("0001", {"utility": 99.0}) is False  # refreshed under the lock: skipped
    assert b.get("0001")["utility"] == 1.0
    assert b.append("0010", {"utility": 2.0}) is True
    assert a.refresh() == 1 and a.get("0010")["utility"] == 2.0
    assert a.refresh() == 0
    assert _keys(path) == ["0001", "0010"]


def test_locked_excludes_other_processes(tmp_path):
    path = tmp_path / "store.sqlite"
    store = CoalitionStore(path, {"game": "g"})
    probe = (  # another process tries to take the database's write lock, without waiting
        "import sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
        "try:\n    db.execute('BEGIN IMMEDIATE')\n    print('free')\n"
        "except sqlite3.OperationalError as e:\n    print('held' if 'locked' in str(e) else e)\n"
    )
    run = lambda: subprocess.run([sys.executable, "-c", probe, str(store.path)],  # noqa: E731
                                 capture_output=True, text=True, timeout=30).stdout.strip()
    with store.locked():
        with store.locked():  # re-entrant for the same object
            assert run() == "held"
        assert run() == "held"
    assert run() == "free"


def test_reopen_during_an_open_transaction_sees_no_part_of_it_and_loses_nothing(tmp_path):
    # a reopen used to rewrite the store (tmp + replace) to drop a torn line; a live
    # writer's records appended meanwhile were lost. A reopen now only reads: it sees
    # what is committed, never part of a transaction, and never replaces the file
    path = tmp_path / "store.sqlite"
    s = CoalitionStore(path, {"game": "g"})
    s.append("0001", {"utility": 1.0})
    ino = path.stat().st_ino
    with s.locked():
        s.append("0010", {"utility": 2.0})  # not committed yet
        again = CoalitionStore(path, {"game": "g"})  # does not wait for the writer
        assert set(again.records) == {"0001"}
    assert path.stat().st_ino == ino
    assert again.refresh() == 1 and set(again.records) == {"0001", "0010"}
    again.append("0100", {"utility": 4.0})
    assert set(CoalitionStore(path, {"game": "g"}).records) == {"0001", "0010", "0100"}


def test_store_pickles_for_process_executors(tmp_path):
    import pickle

    s = CoalitionStore(tmp_path / "store.sqlite", {"game": "g"})
    s.append("0001", {"utility": 1.0})
    t = pickle.loads(pickle.dumps(s))
    assert t.append("0010", {"utility": 2.0}) and not t.append("0001", {"utility": 3.0})
    assert s.refresh() == 1


# ---------------------------------------------------------------- 6. budget cannot be bypassed


@pytest.fixture
def cheat(monkeypatch):
    monkeypatch.setattr(registry, "_loaded", True)

    @register("_test-cheater")
    class Cheater(Estimator):
        def _estimate(self, game, budget, rng):
            truth = game.exact_values()
            if truth is not None:
                return truth
            inner = game.game  # the wrapped game, uncounted
            return inner(np.eye(game.n_players, dtype=bool))

    yield Cheater
    registry.unregister("_test-cheater")


def test_an_estimator_cannot_reach_the_wrapped_game_or_the_truth(cheat):
    # a plug-in calling game.game(...) got exact values and reported 0 evaluations
    with pytest.raises(AttributeError, match="counted against the budget"):
        registry.get_estimator("_test-cheater").estimate(AdditiveGame(W), budget=2)
    counted = BudgetedGame(AdditiveGame(W), budget=2)
    assert counted.exact_values() is None
    public = [k for k, v in vars(counted).items() if isinstance(v, Game) and not k.startswith("_")]
    assert public == []
    # wrappers that are not handed to estimators still pass exact values on (proxy-cv's proxy)
    assert CachedGame(AdditiveGame(W)).exact_values().tolist() == W.tolist()


# ---------------------------------------------------------------- 8. smaller defects


def test_damaged_database_is_named_and_never_rewritten_or_deleted(tmp_path):
    path = tmp_path / "store.sqlite"
    game = CachedGame(FunctionGame(lambda m: m @ W, N, name="w"), path=path)
    game(all_coalitions(N)[1:4])
    game.store.close()
    _damage_page(path, "records")
    before = path.read_bytes()
    with pytest.raises(CorruptStoreError, match=r"store\.sqlite is damaged .*malformed.*Move it away"):
        CachedGame(FunctionGame(lambda m: m @ W, N, name="w"), path=path)
    assert path.read_bytes() == before  # not repaired, replaced or deleted behind the user's back
    assert isinstance(CorruptStoreError("x"), ValueError)


def test_store_deleted_during_a_session_comes_back_with_its_header(tmp_path):
    path = tmp_path / "store.sqlite"
    game = CachedGame(FunctionGame(lambda m: m @ W, N, name="w"), path=path)
    game(all_coalitions(N)[1:3])
    path.unlink()
    game(all_coalitions(N)[3:5])
    reopened = CachedGame(FunctionGame(lambda m: m @ W, N, name="w"), path=path)
    assert sorted(reopened.store.records) == sorted(_keys(path)) and len(_keys(path)) == 2


@pytest.mark.parametrize("bad", [
    lambda m: (m @ W).astype(complex),
    lambda m: (m @ W).astype(str),
    lambda m: m.any(axis=1),
    lambda m: np.array([object()] * len(m)),
])
def test_non_real_utilities_are_refused_naming_the_game(bad):
    with pytest.raises(TypeError, match="FunctionGame 'mine'.*real numbers"):
        FunctionGame(bad, N, name="mine")(all_coalitions(N))
    # ints and Python number lists are fine
    assert FunctionGame(lambda m: m.sum(1), N)(all_coalitions(N)).dtype == float
    assert FunctionGame(lambda m: [1, 2.5] * (len(m) // 2), N)(all_coalitions(N)).dtype == float


def test_report_markdown_escapes_html_in_names(tmp_path):
    from surrogateshap.report import write_report

    bench = []
    for seed in (0, 1):
        bench.append({"group": "g", "stats": {"mean": 0.01}, "extra_info": {
            "task": "t<b>&", "utility": "u", "game": "known", "estimator": "<script>alert(1)</script>",
            "budget": 8, "seed": seed, "scale": "ci", "lds_0.5_mean": 50.0 + seed, "relative_l2": 0.1,
            "spearman": 0.9, "n_evaluations": 8, "cost": 8}})
    doc = tmp_path / "b.json"
    doc.write_text(json.dumps({"benchmarks": bench}))
    text = write_report(doc, tmp_path / "r", plots=False).read_text()
    assert "<script>" not in text and "<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "t&lt;b&gt;&amp;" in text


# ---------------------------------------------------------------- 5. CLI validation


@pytest.fixture
def no_training(monkeypatch, tmp_path):
    """Any training or file-writing work is an error here: validation must come first."""
    torch = pytest.importorskip("torch")  # noqa: F841
    from surrogateshap.tasks import games
    from surrogateshap.tasks.catalog.digits10 import Digits10Task

    def boom(*a, **k):
        raise AssertionError("the expensive work started before the arguments were checked")

    monkeypatch.setattr(games.ProxyGame, "_prepare", boom)
    monkeypatch.setattr(Digits10Task, "retrain_stats", boom)
    monkeypatch.setenv("SURROGATESHAP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SURROGATESHAP_DATASETS", str(tmp_path / "datasets"))


def _cli(capsys, *argv):
    from surrogateshap.cli import main

    try:
        rc = main(list(argv))
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err.strip()
    return rc, err


def _read_only_dir(tmp_path) -> Path:
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        (ro / "probe").write_text("")
    except OSError:
        return ro / "cache"
    (ro / "probe").unlink()  # root ignores permissions: use a folder no one can write
    return Path("/proc/surrogateshap-cache")


@pytest.mark.parametrize("argv, message", [
    (["run", "--budget", "-1"], "--budget must be a positive"),
    (["run", "--budget", "0"], "--budget must be a positive"),
    (["run", "--seed", "-1"], "--seed must be >= 0"),
    (["run", "--estimator", "nope"], "unknown estimator 'nope'; known estimators:"),
    (["run", "--compare", "permutation", "nope2"], "unknown estimator 'nope2'"),
    (["run", "--utility", "aesthetics"], "no utility 'aesthetics'; it offers neg_fid"),
    (["run", "--task", "cifar"], "unknown task 'cifar'"),
    (["run", "--estimator", "kernelshap", "--budget", "3", "--compare"], "needs --budget >= "),
    (["run", "--estimator", "proxy-cv", "--compare"], "needs ['proxy'] beside the game"),
    (["run", "--reference", "/no/such.csv"], "--reference /no/such.csv: no such file"),
    (["run", "--budget", "many"], "invalid int value"),
    (["build-table", "--seeds", "0", "-1"], "--seeds must be >= 0; got -1"),
    (["build-table", "--task", "cifar"], "unknown task 'cifar'"),
])
def test_cli_usage_errors_are_one_line_and_exit_2_before_any_work(no_training, capsys, argv, message):
    rc, err = _cli(capsys, *argv)
    assert rc == 2 and "\n" not in err and message in err, err


def test_cli_refuses_an_unwritable_cache_before_training(no_training, capsys, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for cache, message in [(blocker, "is a file, not a folder"), (blocker / "sub", "not writable"),
                           (_read_only_dir(tmp_path), "not writable")]:
        monkeypatch.setenv("SURROGATESHAP_CACHE", str(cache))
        for argv in (["run"], ["build-table", "--out", str(tmp_path / "out")]):
            rc, err = _cli(capsys, *argv)
            assert rc == 2 and "\n" not in err and message in err and "SURROGATESHAP_CACHE" in err, err
    monkeypatch.setenv("SURROGATESHAP_CACHE", str(tmp_path / "cache"))
    rc, err = _cli(capsys, "build-table", "--out", str(blocker))
    assert rc == 2 and "is a file, not a folder" in err and "\n" not in err


def test_cli_build_table_refuses_a_table_of_another_configuration_before_training(no_training, capsys,
                                                                                 tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "retraining_table.csv").write_text("# config other-123: x\ncoalition,seed\n")
    rc, err = _cli(capsys, "build-table", "--out", str(out))
    assert rc == 2 and "another configuration" in err and "\n" not in err


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("", "is empty"),
    ('{"benchmarks": [{"extra_info": {"task": "t", "bud', "not valid JSON"),
    ('{"benchmarks": []}', "holds no surrogateshap benchmark cases"),
    ("[1, 2]", "not a pytest-benchmark JSON file"),
])
def test_cli_report_on_a_bad_json_is_one_line_exit_2(capsys, tmp_path, content, message):
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content)
    rc, err = _cli(capsys, "report", str(path), "--out", str(tmp_path / "r"))
    assert rc == 2 and "\n" not in err and message in err, err
    assert not (tmp_path / "r" / "report.md").exists()


def test_failed_cases_get_a_table_in_the_report(tmp_path):
    from surrogateshap.report import FAILED_KEY, load_failed_cases, write_report

    doc = {"benchmarks": [], FAILED_KEY: [
        {"task": "t", "utility": "u", "game": "known", "estimator": "<bad>", "budget": 8, "seed": 0,
         "scale": "ci", "error": "ValueError: boom | x"}]}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(doc))
    assert load_failed_cases(path).to_dict("records")[0]["error"] == "ValueError: boom | x"
    text = write_report(path, tmp_path / "r", plots=False).read_text()
    assert "## Failed cases" in text and "0 cases run" in text and "1 cases failed" in text
    assert "| t | u | known | &lt;bad&gt; | 8 | 0 | ValueError: boom \\| x |" in text


def test_a_store_whose_creator_was_killed_before_its_header_starts_again(tmp_path):
    # a creator killed before its first commit leaves an empty file, or a database with
    # no tables yet (the tables and the header are created in one transaction): no
    # record is in it, so it is started again
    empty = tmp_path / "s.sqlite"
    empty.write_bytes(b"")
    wal_only = tmp_path / "t.sqlite"
    db = sqlite3.connect(wal_only)
    assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    db.close()
    for path in (empty, wal_only):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            store = CoalitionStore(path, {"game": "g"})
        assert len(store) == 0 and store.append("01", {"utility": 1.0})
        assert CoalitionStore(path, {"game": "g"}).get("01")["utility"] == 1.0
    # a file that is some other text, with lines, is still refused
    other = tmp_path / "other.sqlite"
    other.write_text("not a store\nat all\n")
    with pytest.raises(ValueError, match="not a coalition store"):
        CoalitionStore(other, {"game": "g"})
    # and so is another program's database
    foreign = tmp_path / "foreign.sqlite"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE things (x)")
    db.commit()
    db.close()
    with pytest.raises(ValueError, match="not a coalition store"):
        CoalitionStore(foreign, {"game": "g"})
    # a JSON-lines store of an older version is not read (nor mixed with new records)
    old = tmp_path / "retrain-seed0.jsonl"
    old.write_text('{"header": {"game": "g"}}\n{"key": "01", "utility": 1.0}\n')
    with pytest.raises(ValueError, match="JSON-lines coalition store written by an older version"):
        CoalitionStore(old, {"game": "g"})
    assert old.read_text().count("\n") == 2
