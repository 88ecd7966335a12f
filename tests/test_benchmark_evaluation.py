"""The benchmark's library seam: GroundTruth, evaluate(), the regression check, the
benchmark tasks and cases, the reference file, and the digits10 table handling."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from surrogateshap import AdditiveGame, Attribution, random_unanimity_game
from surrogateshap.evaluation import (
    GroundTruth,
    aggregate_figures,
    check_regression,
    evaluate,
    regression_figures,
    tolerance,
)
from surrogateshap.game import all_coalitions, coalition_key
from surrogateshap.metrics import sample_test_coalitions
from surrogateshap.registry import get_estimator
from surrogateshap.benchmark import (
    BenchmarkCase,
    KnownGameTask,
    benchmark_cases,
    get_benchmark_task,
    read_reference,
    reference_entries,
    removal_fractions,
    run_case,
    write_reference,
)


def _truth(game, seeds=1, noise=0.0):
    n = game.n_players
    sets = {}
    for alpha in (0.25, 0.5):
        masks = sample_test_coalitions(n, alpha, m=40, seed=1)
        rng = np.random.default_rng(0)
        u = np.stack([game(masks) + noise * rng.normal(size=len(masks)) for _ in range(seeds)])
        sets[alpha] = (masks, u)
    return GroundTruth(game.players, exact=game.exact_values(), lds_sets=sets,
                       removal_game=game, fractions=(0.1, 0.3))


# ---------------------------------------------------------------- evaluate


def test_evaluate_exact_values_are_perfect():
    game = AdditiveGame(np.arange(1.0, 11.0))
    truth = _truth(game)
    att = Attribution(values=game.exact_values(), players=game.players, estimator="x",
                      n_evaluations=7, cost=7.0, seconds=0.5)
    f = evaluate(att, truth)
    assert f["lds_0.5_mean"] == pytest.approx(100.0) and f["lds_0.25_mean"] == pytest.approx(100.0)
    assert f["relative_l2"] == 0.0 and f["spearman"] == pytest.approx(1.0) and f["topk_recall"] == 1.0
    assert f["efficiency_gap"] == pytest.approx(0.0)
    # additive game: removing the top players hurts most, the bottom least
    assert f["removal_0.1_top"] == -10.0 and f["removal_0.1_bottom"] == -1.0
    assert f["removal_0.3_top"] < f["removal_0.3_random_mean"] < f["removal_0.3_bottom"]
    assert (f["n_evaluations"], f["cost"], f["seconds"], f["cost_unit"]) == (7, 7.0, 0.5, "evaluations")
    assert truth.ceiling()["lds_0.5_mean"] == pytest.approx(100.0)


def test_evaluate_plain_values_and_seed_spread():
    game = random_unanimity_game(8, seed=3)
    truth = _truth(game, seeds=4, noise=0.5)
    f = evaluate(game.exact_values()[::-1].copy(), truth)
    assert f["lds_0.5_n_seeds"] == 4 and f["lds_0.5_std"] > 0
    assert f["lds_0.5_ci95"] == pytest.approx(1.96 * f["lds_0.5_std"] / 2)
    assert f["relative_l2"] > 0 and "n_evaluations" not in f


def test_evaluate_constant_values_give_nan_lds_not_a_crash():
    truth = _truth(AdditiveGame(np.arange(1.0, 6.0)))
    f = evaluate(np.zeros(5), truth)
    assert math.isnan(f["lds_0.5_mean"]) and math.isnan(f["spearman"])


def test_evaluate_rejects_mismatches():
    game = AdditiveGame(np.ones(4))
    truth = _truth(game)
    with pytest.raises(ValueError, match="3 values for 4 players"):
        evaluate(np.ones(3), truth)
    with pytest.raises(ValueError, match="do not match"):
        evaluate(Attribution(np.ones(4), players=("a", "b", "c", "d")), truth)
    with pytest.raises(ValueError, match=r"must be \(n_seeds, 5\)"):
        GroundTruth(game.players, lds_sets={0.5: (np.ones((5, 4), bool), np.ones((2, 4)))})


def test_fingerprint_tracks_the_ground_truth():
    game = AdditiveGame(np.arange(1.0, 6.0))
    a, b = _truth(game), _truth(game)
    assert a.fingerprint() == b.fingerprint()
    c = _truth(AdditiveGame(np.arange(1.0, 6.0) * 1.01))
    assert c.fingerprint() != a.fingerprint()


# ---------------------------------------------------------------- regression


def test_aggregate_and_tolerance():
    per_seed = [{"lds_0.5_mean": v, "relative_l2": r, "spearman": 0.9}
                for v, r in ((70.0, 0.2), (72.0, 0.25), (74.0, 0.3))]
    agg = aggregate_figures(per_seed)
    assert set(agg) == {"lds_0.5_mean", "relative_l2"}  # spearman is not checked
    assert agg["lds_0.5_mean"]["mean"] == 72.0 and agg["lds_0.5_mean"]["std"] == 2.0
    assert agg["lds_0.5_mean"]["tolerance"] == 6.0  # 3 x seed std beats the 2-point floor
    assert agg["relative_l2"]["tolerance"] == pytest.approx(0.15)
    # deterministic estimator: the floors hold
    assert tolerance("lds_0.25_mean", 50.0, 0.0) == 2.0
    assert tolerance("relative_l2", 0.05, 0.0) == 0.02
    assert tolerance("relative_l2", 0.9, 0.0) == pytest.approx(0.09)
    assert regression_figures({"lds_0.75_mean": 1, "lds_0.75_std": 1, "cost": 3}) == ["lds_0.75_mean"]


def test_check_regression_messages():
    ref = aggregate_figures([{"lds_0.5_mean": 70.0, "relative_l2": 0.2}] * 3)
    assert check_regression({"lds_0.5_mean": 69.0, "relative_l2": 0.21}, ref) == []
    # better is never a failure
    assert check_regression({"lds_0.5_mean": 95.0, "relative_l2": 0.01}, ref) == []
    fails = check_regression({"lds_0.5_mean": 60.0, "relative_l2": 0.5}, ref)
    assert len(fails) == 2
    assert fails[0].startswith("lds_0.5_mean = 60 is 10 lower (worse) than the reference mean 70")
    assert "tolerance 2, exceeded by 8" in fails[0]
    assert fails[1].startswith("relative_l2 = 0.5 is 0.3 higher (worse)")
    nan_fail = check_regression({"lds_0.5_mean": float("nan"), "relative_l2": 0.2}, ref)
    assert len(nan_fail) == 1 and "lds_0.5_mean is nan" in nan_fail[0]
    # a nan reference is not checked
    ref_nan = aggregate_figures([{"lds_0.5_mean": float("nan")}])
    assert check_regression({"lds_0.5_mean": 1.0}, ref_nan) == []


def test_reference_file_roundtrip(tmp_path):
    records = {"t/u/g/e/32": [{"lds_0.5_mean": 50.0, "relative_l2": 0.3, "seed": s} for s in (0, 1)]}
    records["t/u/g/e/64"] = [{"lds_0.5_mean": float("nan"), "seed": 0}]
    entries = reference_entries(records, {"t/u/g/e/32": "abc"})
    path = tmp_path / "ref.json"
    write_reference(path, entries, command="pytest benchmarks/ --update-reference", scale="ci")
    doc = read_reference(path)
    assert doc["meta"]["command"].endswith("--update-reference") and doc["meta"]["date"]
    assert doc["meta"]["tolerance"]["sigma"] == 3.0
    e = doc["cases"]["t/u/g/e/32"]
    assert e["truth"] == "abc" and e["seeds"] == [0, 1]
    assert e["figures"]["lds_0.5_mean"]["mean"] == 50.0
    assert math.isnan(doc["cases"]["t/u/g/e/64"]["figures"]["lds_0.5_mean"]["mean"])


# ---------------------------------------------------------------- tasks and cases


def test_known_task_games_and_truth():
    bt = get_benchmark_task("unanimity10", "ci")
    assert bt.games == ("known",) and bt.utilities == ("clean", "noisy")
    clean, noisy = bt.truth("clean"), bt.truth("noisy")
    np.testing.assert_allclose(clean.exact, noisy.exact)
    masks, u = noisy.lds_sets[0.5]
    assert u.shape == (5, len(masks)) and (masks.sum(1) == 5).all()
    assert clean.lds_sets[0.25][1].shape[0] == 1
    assert len(clean.lds_sets[0.25][0]) == 45  # all C(10, 2) coalitions, not 100 with repeats
    assert clean.fractions == (0.1, 0.2, 0.3, 0.4)
    g = bt.game("noisy", "known")
    assert g(np.ones((1, 10), bool))[0] != bt.base(np.ones((1, 10), bool))[0]
    with pytest.raises(KeyError, match="no utility"):
        bt.truth("neg_fid")
    with pytest.raises(KeyError, match="no game"):
        bt.game("clean", "proxy")


def test_removal_fractions():
    assert removal_fractions(10) == (0.1, 0.2, 0.3, 0.4)
    assert removal_fractions(20) == (0.05, 0.1, 0.2, 0.3, 0.4)
    assert removal_fractions(2) == (0.5,)


def test_cases_skip_reasons_budgets_and_marks():
    cases = benchmark_cases("ci", tasks=["unanimity10"], estimators=["exact", "loo", "kernelshap"],
                            budgets=[8, 64, 256], seeds=[0, 1])
    by = {(c.estimator, c.budget, c.utility, c.seed): c for c in cases}
    assert by[("exact", 1024, "clean", 0)].skip is None  # exact also gets budget 2**n
    assert "at least 1024" in by[("exact", 64, "clean", 0)].skip
    assert "loo needs a budget of at least 11" in by[("loo", 8, "noisy", 1)].skip
    assert by[("kernelshap", 8, "clean", 0)].skip is None
    assert by[("kernelshap", 256, "clean", 0)].slow and not by[("kernelshap", 64, "clean", 0)].slow
    assert not by[("exact", 1024, "clean", 0)].slow
    assert len({c.key for c in cases}) == len(cases) // 2
    with pytest.raises(KeyError, match="unknown estimator"):
        benchmark_cases("ci", estimators=["no-such-estimator"])
    with pytest.raises(KeyError, match="unknown benchmark task"):
        benchmark_cases("ci", tasks=["no-such-task"])
    big = benchmark_cases("default", tasks=["unanimity50"], estimators=["kernelshap"], seeds=[0])
    assert all(c.slow for c in big)


def test_the_default_selection_leaves_out_an_estimator_that_reruns_another():
    # auto (not cheap) runs stratified-svarm at the whole budget: its cases would repeat those
    att = get_estimator("auto").estimate(random_unanimity_game(10, seed=1), 64, seed=0)
    assert att.extra["auto"]["chose"] == "stratified-svarm"
    default = {c.estimator for c in benchmark_cases("ci", tasks=["unanimity10"])}
    assert "stratified-svarm" in default and "auto" not in default
    named = benchmark_cases("ci", tasks=["unanimity10"], estimators=["auto"], seeds=[0])
    assert named and all(c.estimator == "auto" and c.skip is None for c in named)


def test_proxy_requirement_is_served_or_skipped():
    from surrogateshap import Estimator
    from surrogateshap.registry import register, unregister

    @register("needs-proxy-test")
    class NeedsProxy(Estimator):
        requires = ("proxy",)

        def _estimate(self, game, budget, rng, proxy):
            from surrogateshap.exact import exact_shapley

            return exact_shapley(proxy)  # exact values of the free proxy game

    try:
        case = BenchmarkCase("unanimity10", "noisy", "known", "needs-proxy-test", 8, 0, "ci")
        att, figures = run_case(case)
        assert att.n_evaluations == 0 and figures["lds_0.5_mean"] > 50
        assert 0 < figures["relative_l2"] < 0.5  # the proxy is close to the game, not equal

        class NoProxyTask(KnownGameTask):
            offers = ()

        from surrogateshap.benchmark import tasks as suites

        suites.BENCHMARK_TASKS["noproxy-test"] = lambda s: NoProxyTask(
            "noproxy-test", random_unanimity_game(6, seed=1), s)
        try:
            cases = benchmark_cases("ci", tasks=["noproxy-test"], estimators=["needs-proxy-test"], seeds=[0])
            assert all("requires ['proxy']" in c.skip for c in cases)
        finally:
            del suites.BENCHMARK_TASKS["noproxy-test"]
    finally:
        unregister("needs-proxy-test")


# ---------------------------------------------------------------- digits10 table handling


def _fake_table(path, seeds, n_rows=None):
    rng = np.random.default_rng(0)
    masks = all_coalitions(10)
    w = rng.normal(1, 0.3, 10)
    rows = []
    for s in seeds:
        for m in masks[: n_rows or len(masks)]:
            base = float(m @ w)
            rows.append({"coalition": coalition_key(m), "seed": s, "neg_fid": 5 * base + rng.normal(),
                         "inception_score": 1 + 0.5 * base + 0.1 * rng.normal(),
                         "coverage": 0.1 * base, "seconds": 1.0})
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_digits10_table_missing_partial_and_complete(tmp_path):
    pytest.importorskip("torch")
    from surrogateshap.benchmark import Digits10Benchmark

    missing = Digits10Benchmark("ci", table_path=tmp_path / "none.csv")
    reason = missing.unavailable()
    assert "no retraining table at" in reason and "build-table" in reason

    partial = Digits10Benchmark("ci", table_path=_fake_table(tmp_path / "p.csv", [0], n_rows=300))
    assert "no complete seed yet" in partial.unavailable() and "300" in partial.unavailable()

    full = Digits10Benchmark("ci", table_path=_fake_table(tmp_path / "f.csv", [0, 1, 2]))
    assert full.unavailable() is None
    truth = full.truth("neg_fid")
    masks, u = truth.lds_sets[0.5]
    assert masks.shape == (252, 10) and u.shape == (3, 252)
    game = full.game("neg_fid", "retraining")
    assert game.cost_unit == "model trainings"
    np.testing.assert_allclose(truth.exact, game.exact_values())
    from surrogateshap import get_estimator

    att = get_estimator("kernelshap").estimate(game, 64, seed=0)
    f = evaluate(att, truth)
    assert f["cost"] == 3 * att.n_evaluations - 3  # the empty coalition costs no training
    assert f["relative_l2"] < 0.5 and f["lds_0.5_mean"] > 50


def test_replayed_game_is_the_game():
    from surrogateshap import NoisyGame, exact_shapley
    from surrogateshap.benchmark import ReplayedGame

    base = NoisyGame(random_unanimity_game(7, seed=2), sigma=0.3, seed=4)
    rep = ReplayedGame(base)
    masks = np.random.default_rng(0).random((50, 7)) < 0.5
    np.testing.assert_array_equal(rep(masks), base(masks))
    np.testing.assert_allclose(rep.exact_values(), exact_shapley(base))
    assert rep.cost_of(masks) == base.cost_of(masks) and rep.cost_unit == base.cost_unit
    assert rep.seconds_per_evaluation > 0
    with pytest.raises(ValueError, match="n=13"):
        ReplayedGame(random_unanimity_game(13, seed=0))


def test_a_table_of_sampled_coalitions_gives_lds_without_exact_values(tmp_path):
    # the protocol of a task too large to enumerate: retrained test coalitions per alpha
    # and seeds; no exact values; a coalition the table lacks goes to the fallback
    import pandas as pd

    from surrogateshap.evaluation import evaluate, ground_truth_from_table
    from surrogateshap.table import CoalitionTable

    n = 12
    game = random_unanimity_game(n, seed=5)
    rows = []
    sets = {a: sample_test_coalitions(n, a, m=30, seed=s) for a, s in ((0.25, 1), (0.5, 2), (0.75, 3))}
    masks = np.concatenate([np.zeros((1, n), bool), np.ones((1, n), bool), *sets.values()])
    for seed in (0, 1):
        for m, v in zip(masks, game(masks) + 0.01 * seed):
            rows.append({"coalition": coalition_key(m), "seed": seed, "u": float(v)})
    table = CoalitionTable(pd.DataFrame(rows).drop_duplicates(["coalition", "seed"]), game.players, ["u"])
    calls = []

    def fallback(seed, m):  # per seed: only the seed that lacks a coalition computes it
        calls.append((seed, len(m)))
        return game(m) + 0.01 * seed

    truth = ground_truth_from_table(table, "u", fallback=fallback)
    assert truth.exact is None and not truth.exact_other
    for alpha, (m, u) in truth.lds_sets.items():
        assert u.shape == (2, len(m)) and len(m) == 30
        assert (m.sum(1) == max(1, int(alpha * n))).all()
    figs = evaluate(Attribution(game.exact_values(), game.players, estimator="t"), truth)
    assert "relative_l2" not in figs and figs["lds_0.5_mean"] > 50
    assert calls and any(k.startswith("removal_") for k in figs)  # removal sets: the fallback
    assert {s for s, _ in calls} == {0, 1}
    # a coalition held on seed 0 only is computed on seed 1 only
    calls.clear()
    extra = pd.DataFrame([{"coalition": coalition_key(np.eye(n, dtype=bool)[0]), "seed": 0, "u": 1.0}])
    partial = CoalitionTable(pd.concat([table.frame, extra]), game.players, ["u"])
    v = partial.game("u", fallback=fallback)(np.eye(n, dtype=bool)[:1])
    assert calls == [(1, 1)] and v[0] == pytest.approx((1.0 + game(np.eye(n, dtype=bool)[:1])[0] + 0.01) / 2)
    # replayed as it is (no fallback): a removal fraction the table lacks is left out,
    # and a missing coalition is named
    replay = ground_truth_from_table(table, "u")
    figs = evaluate(Attribution(game.exact_values(), game.players, estimator="t"), replay)
    assert figs["removal_fractions_scored"] == 0 and not any(k.endswith("_top") for k in figs)
    with pytest.raises(KeyError, match="not in the table"):
        table.game("u")(np.eye(n, dtype=bool)[:1])


def test_a_sampled_table_s_retraining_game_pays_one_seed_and_its_truth_keeps_the_mean(tmp_path):
    # an estimator on a table of sampled coalitions sees one retraining seed per
    # coalition (what it would pay in practice); the truth's removal game averages both
    pytest.importorskip("torch")
    from surrogateshap.benchmark import Digits10Benchmark

    bt = Digits10Benchmark("ci", table_path=_fake_table(tmp_path / "s.csv", [0, 1], n_rows=400))
    assert bt.unavailable() is None and not bt.table.complete_seeds()
    calls = []

    class _Retrain:  # stands in for the task's retraining game: records what it is asked
        n_trained = 0

        def __init__(self, seed):
            self.seed = seed

        def records(self, masks):
            calls.append((self.seed, len(masks)))
            return [{"neg_fid": 100.0 + self.seed} for _ in masks]

    class _Task:
        utilities = ("neg_fid",)

        def retraining_game(self, utility, seed=0, allow_train=True, executor=None):
            return _Retrain(seed)

    bt._task = _Task()
    game = bt.game("neg_fid", "retraining")
    held = bt.table.coalitions()[:5]
    np.testing.assert_allclose(game(held), bt.table.values(held, "neg_fid", seed=0))
    assert game.cost_of(held) == float(held.any(1).sum())  # one training per coalition
    lacking = np.ones((1, 10), dtype=bool)
    lacking[0, :3] = False
    assert not bt.table.held(lacking)[0]
    assert game(lacking)[0] == 100.0 and calls == [(0, 1)]  # only seed 0 is retrained
    calls.clear()
    removal = bt.truth("neg_fid").removal_game
    assert removal(lacking)[0] == pytest.approx(100.5) and sorted(calls) == [(0, 1), (1, 1)]


def test_scores_of_another_index_get_a_rescaled_error_against_shapley():
    from surrogateshap import Attribution
    from surrogateshap.evaluation import GroundTruth, shapley_agreement

    phi = np.array([3.0, 1.0, -1.0, 0.5])
    assert shapley_agreement(5 * phi, phi)["shapley_relative_l2_rescaled"] == pytest.approx(0.0, abs=1e-12)
    worse = shapley_agreement(phi + np.array([0, 2.0, 0, 0]), phi)
    assert 0.2 < worse["shapley_relative_l2_rescaled"] < 1 and worse["shapley_spearman"] < 1
    orth = np.array([1.0, -3.0, 0.0, 0.0])  # orthogonal to phi: the best multiple is 0
    assert orth @ phi == 0 and shapley_agreement(orth, phi)["shapley_relative_l2_rescaled"] == pytest.approx(1.0)
    masks = np.random.default_rng(0).random((30, 4)) < 0.5
    truth = GroundTruth(players=tuple("abcd"), exact=phi, lds_sets={0.5: (masks, (masks @ phi)[None])})
    dm = Attribution(players=tuple("abcd"), values=-2 * phi, index="datamodel")
    f = evaluate(dm, truth)
    assert "relative_l2" not in f and f["shapley_spearman"] == pytest.approx(-1.0)
    assert f["shapley_relative_l2_rescaled"] == pytest.approx(0.0, abs=1e-12)  # a = -1/2
    sh = evaluate(Attribution(players=tuple("abcd"), values=phi), truth)
    assert sh["relative_l2"] == pytest.approx(0.0) and "shapley_spearman" not in sh


def test_a_sampled_table_runs_its_selection_by_default(tmp_path):
    # a task too large to enumerate runs the paper's comparison at equal retrainings
    # (what its shipped table holds), unless estimators or budgets are named
    pytest.importorskip("torch")
    from surrogateshap.benchmark import Digits10Benchmark, benchmark_cases
    from surrogateshap.benchmark import tasks as suites
    from surrogateshap.benchmark.scales import SCALE_SETTINGS

    path = _fake_table(tmp_path / "s.csv", [0, 1], n_rows=400)
    suites.BENCHMARK_TASKS["sampled-test"] = lambda s: Digits10Benchmark(s, table_path=path)
    suites.get_benchmark_task.cache_clear()
    try:
        cases = benchmark_cases("ci", tasks=["sampled-test"])
        sel = SCALE_SETTINGS["ci"].sampled
        runs = {(c.estimator, c.game, c.budget) for c in cases}
        assert runs == {(e, g, 20 if b is None else b) for e, g, b in sel.runs}
        assert {c.seed for c in cases} == set(sel.seeds)
        # the default selection replays its table: nothing trained, nothing slow
        assert all(c.retrain == "replay" and not c.slow for c in cases)
        assert {c.utility for c in cases} == {"neg_fid", "inception_score", "coverage"}
        assert all(c.skip is None for c in cases)
        named = benchmark_cases("ci", tasks=["sampled-test"], estimators=["permutation"])
        assert {c.budget for c in named} == set(SCALE_SETTINGS["ci"].budgets)
        assert all(c.retrain == "train" and c.slow for c in named)  # named cases may retrain
        refused = benchmark_cases("ci", tasks=["sampled-test"], estimators=["permutation"], no_retrain=True)
        assert all(c.retrain == "refuse" for c in refused)
        assert len(benchmark_cases("ci", tasks=["sampled-test"], seeds=[5, 6])) == 2 * len(cases)
    finally:
        del suites.BENCHMARK_TASKS["sampled-test"]
        suites.get_benchmark_task.cache_clear()


def test_a_sampled_table_s_lds_sets_are_the_drawn_test_coalitions_only():
    # a removal set or an estimator's coalition of the test size, retrained for every
    # seed, must not join the LDS test set of a sampled table
    import pandas as pd

    from surrogateshap.evaluation import ground_truth_from_table
    from surrogateshap.table import CoalitionTable

    n, rng = 12, np.random.default_rng(3)
    drawn = sample_test_coalitions(n, 0.5, m=8, seed=1)
    other = np.zeros((1, n), bool)
    other[0, :6] = True  # size 6 = int(0.5 n), not drawn
    assert not any((d == other[0]).all() for d in drawn)
    rows = [{"coalition": coalition_key(m), "seed": s, "u": float(rng.normal())}
            for s in (0, 1) for m in [*drawn, other[0]]]
    table = CoalitionTable(pd.DataFrame(rows), tuple(f"p{i}" for i in range(n)), ("u",))
    by_size = ground_truth_from_table(table, "u", (0.5,)).lds_sets[0.5][0]
    assert len(by_size) == 9  # without the protocol's sets: every held coalition of the size
    masks, utils = ground_truth_from_table(table, "u", (0.5,), test_sets={0.5: drawn}).lds_sets[0.5]
    np.testing.assert_array_equal(masks, drawn)  # in draw order, the extra one left out
    assert utils.shape == (2, 8)
