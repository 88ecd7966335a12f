"""The exact proxy game: enumeration in resumable chunks, the shipped reference and its
hash check, the benchmark task that scores estimators against it (a 4-player fake task
and small n: nothing here needs the 2^20 build)."""

from __future__ import annotations

import numpy as np
import pytest
from fake_tasks import FakeTask
from study_scripts import load_script

from surrogateshap.benchmark.proxy_exact import (
    PROXY_EXACT_CSV,
    ProxyExactBenchmark,
    build_proxy_reference,
    read_proxy_reference,
)
from surrogateshap.benchmark.tasks import (
    BENCHMARK_TASKS,
    benchmark_task_names,
    get_benchmark_task,
)
from surrogateshap.enumeration import (
    EnumeratedGame,
    TableMismatchError,
    check_table_sha256,
    enumerate_game,
    table_sha256,
)
from surrogateshap.exact import exact_shapley
from surrogateshap.game import FunctionGame, all_coalitions, stable_hash


class CountingGame(FunctionGame):
    """An irregular game on n players that records every coalition it evaluates (its
    index) and can be made to stop (KeyboardInterrupt) at its ``stop_at``-th call."""

    def __init__(self, n, stop_at=None):
        self.seen, self.calls, self.stop_at = [], 0, stop_at
        w = np.linspace(1.0, 2.0, n)
        super().__init__(lambda m: m @ w + np.sin(3.0 * (m @ 2.0 ** np.arange(n))), n)

    def _evaluate(self, masks):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.seen += list((masks.astype(np.int64) @ (1 << np.arange(self.n_players))).tolist())
        return super()._evaluate(masks)


def _files(folder):
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_enumerated_table_is_the_game_in_coalition_index_order(tmp_path):
    game = CountingGame(7)
    values = enumerate_game(game, tmp_path / "t", chunk=10)  # 13 chunks, the last one short
    assert sorted(game.seen) == list(range(2**7))
    np.testing.assert_array_equal(values, game(all_coalitions(7)))
    np.testing.assert_allclose(EnumeratedGame(game.players, values).exact_values(), exact_shapley(game))


def test_proxy_table_equals_the_proxy_game_coalition_by_coalition(tmp_path):
    proxy = FakeTask(cache_dir=tmp_path / "cache").proxy_game("neg_fid")
    values = enumerate_game(proxy, tmp_path / "t", chunk=3)
    one_by_one = [proxy(m[None])[0] for m in all_coalitions(proxy.n_players)]
    np.testing.assert_allclose(values, one_by_one, rtol=1e-12, atol=0)
    replay = EnumeratedGame(proxy.players, values)
    masks = all_coalitions(proxy.n_players)[::-1]
    np.testing.assert_array_equal(replay(masks), values[::-1])


def test_a_resumed_enumeration_computes_and_writes_nothing_twice(tmp_path, monkeypatch):
    folder = tmp_path / "t"
    with pytest.raises(KeyboardInterrupt):  # stopped while computing the third chunk
        enumerate_game(CountingGame(6, stop_at=3), folder, chunk=8)
    kept = _files(folder)
    assert len(kept) == 2
    real_save, saves = np.save, []

    def save_then_die(f, arr):  # the fifth chunk's write is cut off half-way
        saves.append(len(arr))
        if len(saves) == 3:
            f.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt
        real_save(f, arr)

    monkeypatch.setattr(np, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        enumerate_game(CountingGame(6), folder, chunk=8)
    monkeypatch.setattr(np, "save", real_save)
    after = _files(folder)
    assert len(after) == 4 and {k: after[k] for k in kept} == kept  # no partial or temporary file
    (folder / ".n6-c8-00005-of-00008.npy.x1.tmp").write_bytes(b"a killed write")

    game = CountingGame(6)
    values = enumerate_game(game, folder, chunk=8)
    assert sorted(game.seen) == list(range(32, 64))  # chunks 4..7 only, each coalition once
    done = _files(folder)
    assert len(done) == 8 and {k: done[k] for k in after} == after
    np.testing.assert_array_equal(values, game(all_coalitions(6)))


def test_a_chunk_of_the_wrong_size_is_refused_naming_it(tmp_path):
    folder = tmp_path / "t"
    enumerate_game(CountingGame(4), folder, chunk=8)
    np.save(folder / "n4-c8-00001-of-00002.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"n4-c8-00001-of-00002\.npy holds \(3,\).*delete it"):
        enumerate_game(CountingGame(4), folder, chunk=8)


def test_the_hash_is_of_float64_values_in_order():
    v = np.arange(8.0)
    assert table_sha256(v) == table_sha256(v.astype(np.float32)) != table_sha256(v[::-1])
    assert check_table_sha256(v, table_sha256(v)) == table_sha256(v)
    with pytest.raises(TableMismatchError, match=r"my table: the enumerated table has sha256 [0-9a-f]{16}"):
        check_table_sha256(v + 1e-12, table_sha256(v), "my table")


@pytest.fixture
def fake_reference(tmp_path):
    task = FakeTask(cache_dir=tmp_path / "cache")
    path = tmp_path / "proxy_exact_shapley.csv"
    ref = build_proxy_reference(task, path, chunk=4, made_by="test", progress=False)
    return task, path, ref


def test_reference_round_trips_and_is_labelled(fake_reference):
    task, path, ref = fake_reference
    text = path.read_text()
    assert text.startswith("# reference result: exact Shapley values") and "made by test at commit" in text
    assert ref.players == task.players and ref.utilities == task.utilities and ref.chunk == 4
    assert ref.config == task.config_id()
    for u in task.utilities:
        proxy = task.proxy_game(u)
        table = proxy(all_coalitions(4))
        np.testing.assert_allclose(ref.values[u], exact_shapley(proxy), rtol=1e-12)
        assert ref.sha256[u] == table_sha256(np.concatenate([proxy(table_rows) for table_rows in
                                                             np.split(all_coalitions(4), 4)]))
        assert np.isclose(ref.values[u].sum(), table[-1] - table[0])


def test_benchmark_task_scores_against_the_reference(fake_reference, monkeypatch):
    task, path, _ref = fake_reference
    monkeypatch.setitem(BENCHMARK_TASKS, "fake-exec-proxy",
                        lambda s: ProxyExactBenchmark("fake-exec", s, reference_path=path, task=task))
    get_benchmark_task.cache_clear()
    try:
        from surrogateshap.benchmark import benchmark_cases, run_case

        cases = benchmark_cases(tasks=["fake-exec-proxy"], estimators=["exact", "kernelshap", "proxy-cv"],
                                budgets=[8], seeds=[0])
        by = {(c.estimator, c.budget): c for c in cases if c.utility == "neg_fid"}
        assert all(c.slow for c in cases)
        assert "requires ['proxy']" in by["proxy-cv", 8].skip
        _, exact = run_case(by["exact", 16])
        assert exact["relative_l2"] < 1e-9 and exact["spearman"] > 0.999
        _, kernel = run_case(by["kernelshap", 8])
        assert np.isfinite(kernel["relative_l2"]) and "lds_0.5_mean" in kernel
        assert get_benchmark_task("fake-exec-proxy").costs()["proxy_table_seconds"] >= 0
    finally:
        get_benchmark_task.cache_clear()


def test_a_rebuilt_table_with_another_hash_is_refused(fake_reference):
    task, path, ref = fake_reference
    folder = task.cache.root / f"proxy-exact-{stable_hash(task.proxy_game('neg_fid').cache_id())}"
    chunk = next(folder.glob("*-00001-of-00004.npy"))
    np.save(chunk, np.load(chunk) + 1.0)  # another game's values
    bt = ProxyExactBenchmark("fake-exec", reference_path=path, task=task)
    with pytest.raises(TableMismatchError, match=r"fake-exec-proxy/neg_fid .*sha256 .*reference was computed from "
                                                 + ref.sha256["neg_fid"][:16] + r".*differ .* by up to"):
        bt.game("neg_fid")


def test_without_a_reference_the_cases_are_skipped_naming_the_build(tmp_path):
    bt = ProxyExactBenchmark("fake-exec", reference_path=tmp_path / "none.csv", task=FakeTask(cache_dir=tmp_path))
    assert "scripts/proxy_exact_build.py --task fake-exec" in bt.unavailable()
    assert "fashion-animal20-proxy" in benchmark_task_names()


def test_the_shipped_reference_names_the_task_and_a_preset_that_made_it():
    from surrogateshap.tasks import get_task
    from surrogateshap.tasks.reference import reference_dir

    ref = read_proxy_reference(reference_dir("fashion-animal20") / PROXY_EXACT_CSV)
    task = get_task("fashion-animal20", scale="default")
    assert ref.players == task.players and ref.utilities == task.utilities
    assert ref.config == task.config_id() and ref.chunk == 2**15
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in ref.sha256.values())
    assert all(np.isfinite(v).all() and len(v) == 20 for v in ref.values.values())


def _results_script():
    return load_script("proxy_exact_results")


@pytest.mark.parametrize("argv, match", [
    (["--task", "nope"], r"--task: unknown benchmark task 'nope'"),
    (["--task", "unanimity10"], r"--task: unanimity10 is not an enumerated proxy game"),
    (["--estimators", "kernelshap,nope"], r"--estimators: unknown estimator 'nope'"),
])
def test_the_results_script_refuses_bad_options_before_any_build(argv, match, capsys):
    # checked before the task's table is built (minutes at n = 20): one line naming the option
    with pytest.raises(SystemExit):
        _results_script().main(argv + ["--out", "/nonexistent/never-written.md"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(__import__("re").findall(match, err)) == 1, err


def test_a_reference_with_a_damaged_number_is_named(fake_reference, tmp_path):
    _, path, _ = fake_reference
    lines = path.read_text().splitlines()
    damaged = [("# chunk four" + line[len("# chunk 4"):]) if line.startswith("# chunk") else line for line in lines]
    bad = tmp_path / "damaged.csv"
    bad.write_text("\n".join(damaged) + "\n")
    with pytest.raises(ValueError, match="damaged.csv: a '# chunk' or '# seconds' header line is not a number"):
        read_proxy_reference(bad)
