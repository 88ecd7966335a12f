"""Memoisation, cost accounting, crash-safe persistence, budgets and the estimator base."""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import surrogateshap
from surrogateshap import (
    AdditiveGame,
    BudgetedGame,
    BudgetExceededError,
    CachedGame,
    Estimator,
    FunctionGame,
    Game,
    register,
    registry,
)
from surrogateshap.store import CoalitionStore

N = 4
W = np.array([1.0, 2.0, 4.0, 8.0])


class Counter:
    """A game function that records every batch it is asked for."""

    def __init__(self):
        self.calls = []

    def __call__(self, masks):
        self.calls.append(np.array(masks))
        return masks @ W

    @property
    def rows(self):
        return sum(len(c) for c in self.calls)


def counting_game():
    fn = Counter()
    return FunctionGame(fn, N, name="counted"), fn


def rows(*members):
    out = np.zeros((len(members), N), bool)
    for r, m in enumerate(members):
        out[r, list(m)] = True
    return out


def store_records(path):
    """Keys of the store's committed records, read with SQLite itself (not the store),
    after checking that the database is intact and has its header."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert "game" in json.loads(db.execute("SELECT value FROM meta WHERE name='header'").fetchone()[0])
        return [r[0] for r in db.execute("SELECT key FROM records ORDER BY id")]
    finally:
        db.close()


KILLED_WRITER = """
    import json, os, signal, sys
    from surrogateshap.store import CoalitionStore

    # what CachedGame(counting_game()[0], path) writes for [0] and [1]: two records, committed
    store = CoalitionStore(sys.argv[1], json.loads(sys.argv[3]))
    store.append("1000", {"utility": 1.0, "seconds": 0.0, "cost": 1.0})
    store.append("0100", {"utility": 2.0, "seconds": 0.0, "cost": 1.0})
    if sys.argv[2] == "mid-transaction":
        # killed while writing the record of [2, 3]: its pages reach the WAL (a cache of
        # one page spills them before the commit), the commit never does
        store._conn.execute("PRAGMA cache_size=1")
        with store.locked():
            store.append("0011", {"utility": 12.0, "seconds": 0.0, "cost": 1.0, "padding": "x" * 20000})
            os.kill(os.getpid(), signal.SIGKILL)
    else:  # killed right after the record's commit, before any checkpoint or close
        store.append("0011", {"utility": 12.0, "seconds": 0.0, "cost": 1.0})
        os.kill(os.getpid(), signal.SIGKILL)
"""


def kill_a_writer(tmp_path, path, when):
    """A process that stores [0] and [1], then is SIGKILLed in the middle of storing
    [2, 3] (``mid-transaction``) or right after it (``after-commit``)."""
    script = tmp_path / "killed_writer.py"
    script.write_text(textwrap.dedent(KILLED_WRITER))
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    header = json.dumps({"game": counting_game()[0].cache_id()})
    done = subprocess.run([sys.executable, str(script), str(path), when, header], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == -9, done.stderr


# ---------------------------------------------------------------- memoisation and cost


def test_cached_game_memoises():
    game, fn = counting_game()
    cached = CachedGame(game)
    out = cached(rows([0], [1, 2], [0], []))  # a repeat inside one batch
    assert out.tolist() == [1.0, 6.0, 1.0, 0.0]
    assert cached.n_evaluations == 3 and cached.n_queries == 4 and fn.rows == 3
    out = cached(rows([1, 2], [3], [0]))
    assert out.tolist() == [6.0, 8.0, 1.0]
    assert cached.n_evaluations == 4 and cached.n_queries == 7 and fn.rows == 4
    assert cached.seconds >= 0.0


class CostlyGame(Game):
    """Each coalition costs one model training per member (a toy cost model)."""

    cost_unit = "model trainings"

    def _evaluate(self, masks):
        return masks.sum(1).astype(float)

    def cost_of(self, masks):
        return float(masks.sum())


def test_cost_accounting():
    cached = CachedGame(CostlyGame(N))
    assert cached.cost_unit == "model trainings"
    cached(rows([0, 1], [2]))
    assert cached.cost == 3.0
    cached(rows([0, 1], [0, 1, 2, 3]))  # the repeat costs nothing
    assert cached.cost == 7.0
    budgeted = BudgetedGame(CostlyGame(N), budget=10)
    budgeted(rows([0, 1], [2], [0, 1]))
    assert budgeted.cost == 3.0 and budgeted.cost_unit == "model trainings"


# ---------------------------------------------------------------- persistence


def test_persisted_results_reload_without_recomputation(tmp_path):
    path = tmp_path / "sub" / "store.sqlite"  # parent folders are created
    game, fn = counting_game()
    first = CachedGame(game, path=path)
    expected = first(rows([0], [1, 2], [0, 1, 2, 3]))
    assert fn.rows == 3

    game2, fn2 = counting_game()
    second = CachedGame(game2, path=path)
    np.testing.assert_array_equal(second(rows([0], [1, 2], [0, 1, 2, 3])), expected)
    assert fn2.calls == [] and second.n_evaluations == 0 and second.n_queries == 3


def test_writer_killed_mid_transaction_loses_only_that_entry(tmp_path):
    # a crash while writing the last record: its uncommitted pages in the WAL are
    # ignored, the record is absent (never half there) and the others all survive
    path = tmp_path / "store.sqlite"
    kill_a_writer(tmp_path, path, "mid-transaction")
    assert (tmp_path / "store.sqlite-wal").stat().st_size > 20000  # the record's pages did reach it
    coalitions = rows([0], [1], [2, 3])
    game2, fn2 = counting_game()
    resumed = CachedGame(game2, path=path)
    assert sorted(resumed.store.records) == ["0100", "1000"]
    assert resumed(coalitions).tolist() == [1.0, 2.0, 12.0]
    assert len(fn2.calls) == 1 and fn2.calls[0].tolist() == rows([2, 3]).tolist()
    keys = store_records(path)
    assert len(keys) == len(set(keys)) == 3

    game3, fn3 = counting_game()
    assert CachedGame(game3, path=path)(coalitions).tolist() == [1.0, 2.0, 12.0]
    assert fn3.calls == []


def test_record_committed_before_a_kill_is_kept_and_next_append_survives(tmp_path):
    # a crash right after a record's commit (still only in the WAL, never checkpointed):
    # the record is whole and must be kept, and the next append must survive with it
    path = tmp_path / "store.sqlite"
    kill_a_writer(tmp_path, path, "after-commit")
    game2, fn2 = counting_game()
    assert CachedGame(game2, path=path)(rows([0], [1], [2, 3], [0, 3])).tolist() == [1.0, 2.0, 12.0, 9.0]
    assert fn2.rows == 1
    game3, fn3 = counting_game()
    assert CachedGame(game3, path=path)(rows([0], [1], [2, 3], [0, 3])).tolist() == [1.0, 2.0, 12.0, 9.0]
    assert fn3.calls == []
    keys = store_records(path)
    assert len(keys) == len(set(keys)) == 4


def test_store_of_a_different_game_raises(tmp_path):
    path = tmp_path / "store.sqlite"
    CachedGame(AdditiveGame(W), path=path)(rows([0]))
    with pytest.raises(ValueError, match="different game"):
        CachedGame(AdditiveGame(W * 2), path=path)
    # a file that is not a store at all
    other = tmp_path / "other.sqlite"
    other.write_text("hello\n")
    with pytest.raises(ValueError, match="not a coalition store"):
        CachedGame(AdditiveGame(W), path=other)


def test_a_new_store_waits_for_a_writer_that_holds_the_file(tmp_path):
    """Two processes creating one store at once: switching the new file to WAL mode
    needs a lock the other holds, and SQLite answers BUSY at once (a possible deadlock)
    instead of calling its busy handler. The store must wait, not fail."""
    path = tmp_path / "store.sqlite"
    path.write_bytes(b"")  # the other creator's empty file
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: other.execute("ROLLBACK"))
    release.start()
    try:
        store = CoalitionStore(path, {"game": "g"})
        assert store.append("1", {"utility": 1.0})
    finally:
        release.join()
        other.close()
    assert CoalitionStore(path, {"game": "g"}).get("1")["utility"] == 1.0


# ---------------------------------------------------------------- budgets


def test_budgeted_game_enforces_budget_and_repeats_are_free():
    game, fn = counting_game()
    b = BudgetedGame(game, budget=3)
    b(rows([0], [1]))
    b(rows([0], [1], [0]))  # repeats: free
    assert b.n_evaluations == 2 and b.remaining == 1 and fn.rows == 2
    b(rows([2], [0]))
    assert b.n_evaluations == 3 and b.remaining == 0
    with pytest.raises(BudgetExceededError, match="budget of 3"):
        b(rows([3]))
    with pytest.raises(BudgetExceededError):
        b(rows([0], [1, 2]))  # one new coalition is one too many
    assert b.n_evaluations == 3 and fn.rows == 3  # nothing evaluated past the budget
    assert b(rows([2], [1], [0])).tolist() == [4.0, 2.0, 1.0]
    assert b.is_cached(rows([2])[0]) and not b.is_cached(rows([3])[0])
    assert BudgetedGame(game, budget=None)(rows([0, 1, 2, 3])).tolist() == [15.0]


# ---------------------------------------------------------------- estimator base


@pytest.fixture
def tiny_estimators(monkeypatch):
    """Two throwaway estimators, registered for one test and unregistered after.

    The built-in estimator modules are kept out (``_loaded``): these tests are about the
    registry and the base class, not about which estimators ship.
    """
    monkeypatch.setattr(registry, "_loaded", True)

    @register("_test-tiny")
    class Tiny(Estimator):
        def min_budget(self, n_players):
            return n_players + 1

        def _estimate(self, game, budget, rng, **resources):
            n = game.n_players
            v_full = game(np.ones((1, n), bool))[0]
            game(np.zeros((1, n), bool))
            return np.full(n, v_full / n)

    @register("_test-needs-proxy")
    class NeedsProxy(Estimator):
        requires = ("proxy",)

        def _estimate(self, game, budget, rng, proxy=None):
            return proxy(np.eye(game.n_players, dtype=bool))

    @register("_test-greedy")
    class Greedy(Estimator):
        def _estimate(self, game, budget, rng):
            return game(np.eye(game.n_players, dtype=bool))  # n evaluations, any budget

    yield Tiny, NeedsProxy, Greedy
    for name in ("_test-tiny", "_test-needs-proxy", "_test-greedy"):
        registry.unregister(name)


def test_unknown_estimator_lists_known_ones(tiny_estimators):
    with pytest.raises(KeyError) as err:
        surrogateshap.get_estimator("nope")
    assert "nope" in str(err.value) and "_test-tiny" in str(err.value)
    assert "_test-tiny" in surrogateshap.available_estimators()
    assert isinstance(surrogateshap.get_estimator("_test-tiny"), tiny_estimators[0])


def test_unregister_removes_the_name(tiny_estimators):
    registry.unregister("_test-tiny")
    with pytest.raises(KeyError):
        surrogateshap.get_estimator("_test-tiny")


def test_estimate_counts_and_returns_an_attribution(tiny_estimators):
    att = surrogateshap.get_estimator("_test-tiny").estimate(AdditiveGame(W), budget=5, seed=1)
    assert att.estimator == "_test-tiny" and att.budget == 5 and att.seed == 1
    assert att.n_evaluations == 2 and att.values.tolist() == [3.75] * 4


def test_budget_below_min_budget_raises(tiny_estimators):
    est = surrogateshap.get_estimator("_test-tiny")
    with pytest.raises(ValueError, match="at least 5"):
        est.estimate(AdditiveGame(W), budget=4)


@pytest.mark.parametrize("budget", [10.0, "10", True, None])
def test_non_integer_budget_raises(tiny_estimators, budget):
    est = surrogateshap.get_estimator("_test-tiny")
    with pytest.raises(TypeError, match="budget"):
        est.estimate(AdditiveGame(W), budget=budget)


def test_numpy_integer_budget_is_accepted(tiny_estimators):
    est = surrogateshap.get_estimator("_test-tiny")
    assert est.estimate(AdditiveGame(W), budget=np.int64(5)).budget == 5


def test_missing_or_unexpected_resource_raises(tiny_estimators):
    est = surrogateshap.get_estimator("_test-needs-proxy")
    with pytest.raises(TypeError, match="proxy"):
        est.estimate(AdditiveGame(W), budget=4)
    with pytest.raises(TypeError, match="unexpected resources"):
        est.estimate(AdditiveGame(W), budget=4, proxy=AdditiveGame(W), task=object())
    att = est.estimate(AdditiveGame(W), budget=4, proxy=AdditiveGame(W))
    assert att.values.tolist() == W.tolist() and att.n_evaluations == 0


def test_estimator_cannot_overspend(tiny_estimators):
    est = surrogateshap.get_estimator("_test-greedy")
    with pytest.raises(BudgetExceededError):
        est.estimate(AdditiveGame(W), budget=3)
    assert est.estimate(AdditiveGame(W), budget=4).n_evaluations == 4


def test_estimate_rejects_non_game(tiny_estimators):
    with pytest.raises(TypeError, match="Game"):
        surrogateshap.get_estimator("_test-tiny").estimate(lambda m: m.sum(1), budget=10)


def test_registry_rejects_name_clash_and_non_estimators(tiny_estimators):
    class Other(Estimator):
        def _estimate(self, game, budget, rng):
            return np.zeros(game.n_players)

    with pytest.raises(ValueError, match="already registered"):
        register("_test-tiny")(Other)
    with pytest.raises(TypeError, match="not an Estimator"):
        register("_test-not-estimator")(object)


def test_failed_builtin_import_is_not_silently_forgotten(monkeypatch):
    # if importing a built-in estimator module fails, the next lookup must fail again
    # rather than proceed with a registry missing those estimators
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "plugin_modules", lambda: ["surrogateshap._no_such_module"])
    for _ in range(2):
        with pytest.raises(ImportError):
            registry.available_estimators()


def test_a_cached_game_costs_what_the_wrapped_game_costs():
    # a proxy game in stats mode costs nothing per coalition: its cache must not bill
    # one unit per coalition
    from surrogateshap import get_estimator
    from surrogateshap.game import CachedGame, FunctionGame

    class Free(FunctionGame):
        cost_unit = "images generated"

        def cost_of(self, masks):
            return 0.0

    free = Free(lambda m: m.sum(1).astype(float), 5)
    masks = np.eye(5, dtype=bool)
    assert CachedGame(free).cost_of(masks) == 0.0
    att = get_estimator("permutation").estimate(CachedGame(free), 16, seed=0)
    assert att.cost == 0.0 and att.n_evaluations > 0
