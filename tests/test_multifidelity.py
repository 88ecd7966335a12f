"""Tests of the multi-fidelity estimator "multifidelity" (surrogateshap.estimators.multifidelity).

Known games stand in for the three fidelities: the target v is a random unanimity game
(exact values in closed form), the "fine-tuning" game f is v plus a small unanimity
game of its own (a cheap copy with a structured error), the "proxy" p is v plus a
larger one. Every check is paired with a variant that the same check rejects: the
unbiasedness test rejects the (consistent, biased) regression solver, the test that the
cheap games are used rejects the target played alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from surrogateshap import (
    AdditiveGame,
    Game,
    UnanimityGame,
    available_estimators,
    get_estimator,
    random_unanimity_game,
)
from surrogateshap.estimators.multifidelity import UNIT, kernel_moment
from surrogateshap.games import NoisyGame

N = 8
TARGET = random_unanimity_game(N, n_terms=20, seed=0)
TRUTH = TARGET.exact_values()


def _copy(scale: float, seed: int) -> UnanimityGame:
    """The target plus ``scale`` times a random unanimity game of its own."""
    d = random_unanimity_game(N, n_terms=10, seed=seed)
    return UnanimityGame(N, TARGET.terms + d.terms, list(TARGET.coefficients) + list(scale * d.coefficients))


FT = _copy(0.2, 11)
PROXY = _copy(0.6, 12)
ALL = {"target": 1000, "finetune": (FT, 200), "proxy": (PROXY, 0)}


class Paid(Game):
    """A game that charges ``steps`` training steps per non-empty coalition and records
    what it was actually made to compute (every row asked, repeats included)."""

    cost_unit = UNIT

    def __init__(self, game: Game, steps: float):
        super().__init__(game.players)
        self.inner, self.steps, self.paid = game, float(steps), 0.0

    def _evaluate(self, masks):
        self.paid += self.steps * float(masks.any(axis=1).sum())
        return self.inner(masks)

    def cost_of(self, masks):
        return self.steps * float(np.asarray(masks).any(axis=1).sum())

    def exact_values(self):
        return None  # a fidelity with a cost is sampled, never read


def _rel(values) -> float:
    return float(np.linalg.norm(values - TRUTH) / np.linalg.norm(TRUTH))


def _run(budget, seed, fidelities=ALL, **params):
    return get_estimator("multifidelity", **params).estimate(TARGET, budget, seed=seed, fidelities=fidelities)


def test_registered():
    assert "multifidelity" in available_estimators()


def test_kernel_moment_is_the_shapley_kernel_expectation():
    from surrogateshap.sampling import sample_kernel_coalitions

    z = sample_kernel_coalitions(N, 200_000, np.random.default_rng(0)).astype(float)
    np.testing.assert_allclose(kernel_moment(N), z.T @ z / len(z), atol=4e-3)


def test_error_falls_with_budget_and_beats_the_target_alone():
    errors = [np.mean([_rel(_run(b, s).values) for s in range(12)]) for b in (12, 40, 120)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.02
    # the same steps on the target alone (KernelSHAP, and this estimator given no cheap game)
    alone = np.mean([_rel(get_estimator("kernelshap").estimate(TARGET, 40, seed=s).values) for s in range(12)])
    bare = np.mean([_rel(_run(40, s, {"target": 1000}).values) for s in range(12)])
    assert errors[1] < 0.5 * alone and errors[1] < 0.5 * bare


def _z_scores(values: np.ndarray) -> np.ndarray:
    mean, se = values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(len(values))
    return (mean - TRUTH) / se


@pytest.mark.parametrize("fidelities", [ALL, {"target": 1000, "finetune": (FT, 200)}], ids=["ft+proxy", "ft"])
def test_unbiased_solver_is_unbiased(fidelities):
    vals = np.array([_run(12, s, fidelities, solver="unbiased").values for s in range(300)])
    assert np.abs(_z_scores(vals)).max() < 4.0  # a false alarm over 8 players: ~5e-4


def test_unbiasedness_check_rejects_the_regression_solver():
    vals = np.array([_run(12, s, solver="regression").values for s in range(300)])
    assert np.abs(_z_scores(vals)).max() > 4.0


def test_the_regression_solver_has_the_lower_error():
    # the default: at every budget its error is below the unbiased solver's
    for budget in (12, 40):
        reg = np.mean([_rel(_run(budget, s).values) for s in range(12)])
        unb = np.mean([_rel(_run(budget, s, solver="unbiased").values) for s in range(12)])
        assert reg < unb


def test_no_error_peak_where_the_fit_has_as_many_coalitions_as_players():
    # a target with retraining noise: least squares on about n coalitions interpolates the
    # noise (the error rose from B = 10 to B = 20 before the cross-validated ridge)
    base = random_unanimity_game(10, n_terms=30, seed=3)
    d = random_unanimity_game(10, n_terms=10, seed=4)
    proxy = UnanimityGame(10, base.terms + d.terms, list(base.coefficients) + list(0.1 * d.coefficients))
    truth = base.exact_values()

    def error(budget):
        return np.mean([np.linalg.norm(get_estimator("multifidelity").estimate(
            NoisyGame(base, 0.3, seed=s), budget, seed=s, fidelities={"target": 1, "proxy": (proxy, 0)}).values
            - truth) for s in range(30)])

    assert error(20) < error(10)


def test_unbiased_stderr_matches_the_spread_over_seeds():
    atts = [_run(40, s, solver="unbiased") for s in range(150)]
    spread = np.array([a.values for a in atts]).std(axis=0, ddof=1)
    reported = np.sqrt(np.mean([a.stderr**2 for a in atts], axis=0))
    assert np.all(reported > 0.5 * spread) and np.all(reported < 2.0 * spread)


@pytest.mark.parametrize("fidelities", [ALL, {"target": 1000}], ids=["ft+proxy", "target"])
def test_regression_stderr_is_never_zero_on_a_fit_that_interpolates(fidelities):
    # with no more units than n - 1 the kernel regression interpolates them: its sandwich
    # stderr was 0 for every player (27 of seeds 0..59 at B = 6 with all fidelities), though the
    # values are far from exact; the spread of the per-unit estimates is used instead
    for budget in (6, 12):
        covered = []
        for s in range(40):
            att = _run(budget, s, fidelities)
            assert not att.exact and (att.stderr > 0).any(), (budget, s)
            covered.append(np.abs(att.values - TRUTH) <= 3 * att.stderr)
        assert np.mean(covered) > 0.6, budget


@pytest.mark.parametrize("solver", ["regression", "unbiased"])
def test_reported_cost_equals_the_steps_paid(solver):
    target, ft, proxy = Paid(TARGET, 1000), Paid(FT, 200), Paid(PROXY, 0)
    for budget in (12, 40):
        target.paid = ft.paid = proxy.paid = 0.0
        att = get_estimator("multifidelity", solver=solver).estimate(
            target, budget, seed=1, fidelities={"finetune": ft, "proxy": proxy})
        assert att.cost_unit == UNIT
        assert att.cost == target.paid + ft.paid + proxy.paid
        assert att.cost <= budget * 1000
        split = att.extra["split"]
        assert split["target"]["steps"] == target.paid and split["finetune"]["steps"] == ft.paid
        assert att.n_evaluations <= budget
    # a fine-tuning game too dear for the pilot at this budget is dropped before any of it is bought
    target.paid, dear = 0.0, Paid(FT, 900)
    att = get_estimator("multifidelity", solver=solver).estimate(target, 6, seed=1, fidelities={"finetune": dear})
    assert att.extra["dropped"] == ["finetune"] and dear.paid == 0
    assert att.cost == target.paid + dear.paid <= 6 * 1000


@pytest.mark.parametrize("solver", ["regression", "unbiased"])
def test_the_steps_paid_never_exceed_the_budget(solver):
    # at the smallest budgets the target alone fills the steps: a cheap game's anchors
    # must not be bought on top (6,400 steps were paid for a budget of 6,000 before)
    for budget in (6, 7, 8):
        for fid in ({"target": 1000, "finetune": (FT, 200)}, {"target": 1000, "finetune": (FT, 200),
                                                             "proxy": (PROXY, 0)}):
            att = _run(budget, 0, fid, solver=solver)
            assert att.cost <= budget * 1000, (budget, sorted(fid), att.extra["split"])


def test_max_units_caps_a_paid_level_too():
    # as documented: without it a paid level whose coalitions are all drawn (8 players) would
    # play free repeats for ever; a paid level it stops leaves steps unspent
    target, ft = Paid(TARGET, 1000), Paid(FT, 200)
    att = get_estimator("multifidelity", max_units=20).estimate(target, 100, seed=0, fidelities={"finetune": ft})
    assert att.extra["levels"] == ["target", "finetune"] and att.extra["pilot_units"] <= 20
    assert att.extra["main_units"][1] == 20 and att.cost < 0.5 * 100 * 1000


def test_the_split_follows_the_measured_fidelity():
    # a cheap game that tracks the target is bought; one that does not is dropped
    noise = random_unanimity_game(N, n_terms=20, seed=99)
    kept = [_run(60, s, {"target": 1000, "finetune": (FT, 200)}).extra["levels"] for s in range(6)]
    assert all("finetune" in lv for lv in kept)
    junk = [_run(60, s, {"target": 1000, "finetune": (noise, 200)}).extra["levels"] for s in range(6)]
    assert sum("finetune" in lv for lv in junk) <= 1


def test_same_seed_same_values_other_seed_differs():
    a, b, c = _run(30, 5), _run(30, 5), _run(30, 6)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.allclose(a.values, c.values)


def test_full_budget_is_exact_and_one_player():
    att = _run(2**N, 0)
    assert att.exact
    np.testing.assert_allclose(att.values, TRUTH, atol=1e-9)
    one = AdditiveGame([2.5], offset=1.0)
    assert get_estimator("multifidelity").estimate(one, 2, seed=0, fidelities={"target": 1}).values[0] == 2.5


@pytest.mark.parametrize("fidelities, error, match", [
    ([FT], TypeError, "fidelities must be a dict"),
    ({"finetune": (FT, 200)}, ValueError, r"fidelities\['target'\] is missing"),
    ({"target": -1}, ValueError, r"fidelities\['target'\].*finite number >= 0"),
    ({"target": float("nan")}, ValueError, r"fidelities\['target'\]"),
    ({"target": 1000, "finetune": (FT, True)}, ValueError, r"fidelities\['finetune'\].*finite number"),
    ({"target": 1000, "finetune": FT}, ValueError, r"fidelities\['finetune'\]: its cost is in 'evaluations'"),
    ({"target": 1000, "finetune": "ft"}, TypeError, r"fidelities\['finetune'\] must be a Game"),
    ({"target": 1000, "finetune": (FT, 2000)}, ValueError, r"fidelities\['finetune'\] costs 2000.*most expensive"),
    ({"target": 1000, "proxy": (random_unanimity_game(N + 1), 0)}, ValueError,
     r"fidelities\['proxy'\] has players.*same players"),
])
def test_bad_resources_give_one_clear_error(fidelities, error, match):
    with pytest.raises(error, match=match):
        _run(20, 0, fidelities)


def test_bad_parameters():
    for params, match in (({"solver": "mean"}, "solver must be one of"),
                          ({"pilot_fraction": 1.0}, "pilot_fraction"),
                          ({"shrinkage": -1}, "shrinkage"),
                          ({"max_units": 0}, "max_units")):
        with pytest.raises(ValueError, match=match):
            _run(20, 0, **params)
    assert "needs a budget of at least 6" in get_estimator("multifidelity").unsupported(N, 5)


def test_the_benchmark_offers_the_proxy_as_a_free_fidelity():
    """A multifidelity case runs in the benchmark (it was skipped: no task offered
    ``fidelities``): the known game's noisy copy enters free and exact, the game valued
    is paid one step an evaluation, within the case's budget."""
    from surrogateshap.benchmark import BenchmarkCase, run_case

    att, figures = run_case(BenchmarkCase("unanimity10", "noisy", "known", "multifidelity", 64, seed=0))
    split = att.extra["split"]
    assert split["proxy"]["steps"] == 0.0 and split["proxy"]["exact"] == "enumeration"
    assert split["target"]["evaluations"] <= 64 and att.cost <= 64.0 and att.cost_unit == "training steps"
    assert np.isfinite(figures["relative_l2"])


def test_the_benchmark_runs_multifidelity_on_the_target_game_only():
    """On a table task it values the retraining game (the proxy is its free fidelity);
    its cases on the proxy game are skipped naming why (they raised: a proxy evaluation
    costs no training steps)."""
    from surrogateshap.benchmark import benchmark_cases

    cases = benchmark_cases("default", tasks=["digits10"], estimators=["multifidelity"], budgets=[64], seeds=[0])
    by_game = {c.game: c for c in cases if c.utility == "neg_fid"}
    if by_game["retraining"].skip and "table" in by_game["retraining"].skip:
        pytest.skip(by_game["retraining"].skip)
    assert by_game["retraining"].skip is None
    assert "values the retraining game" in by_game["proxy"].skip


def test_a_table_task_costs_the_game_valued_in_its_own_steps(tmp_path):
    """The ``fidelities`` resource prices the game the case values: a retraining at the
    config's training steps, a fine-tuning at its own steps (its cost is in steps
    already, not to be multiplied by the config's); a proxy game valued is free, so it
    is not offered (the multifidelity budget counts steps)."""
    from dataclasses import dataclass

    pytest.importorskip("torch")
    from fake_tasks import FakeConfig, FakeTask

    from surrogateshap.benchmark.tasks import TableBenchmark
    from surrogateshap.estimators.multifidelity import parse_fidelities
    from surrogateshap.tasks.games import FineTuningGame

    @dataclass(frozen=True)
    class Config(FakeConfig):
        steps: int = 1000

    bt = TableBenchmark("fake-fidelities")
    bt._task = FakeTask(Config(), cache_dir=tmp_path)
    full = np.ones((1, bt.n_players), bool)
    for game, steps in (("retraining", 1000.0), ("finetune", 200.0)):
        valued = (bt.task.retraining_game("neg_fid") if game == "retraining"
                  else FineTuningGame(bt.task, "neg_fid", steps=200))  # the benchmark's
        rate, cheap = parse_fidelities(valued, bt.resources("neg_fid", ("fidelities",), game)["fidelities"])
        assert rate * valued.cost_of(full) == steps and [(n, s) for n, _, s in cheap] == [("proxy", 0.0)]
    with pytest.raises(LookupError, match="fidelities"):
        bt.resources("neg_fid", ("fidelities",), "proxy")


@pytest.mark.parametrize("retrain, sampled, offered", [
    ("train", True, True), ("replay", True, False), ("refuse", True, False), ("train", False, False)])
def test_the_fine_tuning_game_is_a_fidelity_where_the_case_trains_anyway(tmp_path, monkeypatch, retrain,
                                                                        sampled, offered):
    """On an image task (a table of sampled coalitions) a multifidelity case that may train
    gets the fine-tuning game as a fidelity beside the proxy (issue 31's three games); a
    replayed or refused case, or a complete table (replayed whole), gets the proxy only,
    so the default selection never fine-tunes."""
    from dataclasses import dataclass

    pytest.importorskip("torch")
    from fake_tasks import FakeConfig, FakeTask

    from surrogateshap.benchmark.tasks import TableBenchmark
    from surrogateshap.estimators.multifidelity import parse_fidelities
    from surrogateshap.tasks.games import FineTuningGame

    @dataclass(frozen=True)
    class Config(FakeConfig):
        steps: int = 1000

    monkeypatch.setattr(TableBenchmark, "sampled", property(lambda self: sampled))
    bt = TableBenchmark("fake-fidelities", retrain=retrain)
    bt._task, bt._checked = FakeTask(Config(), cache_dir=tmp_path), True
    fid = bt.resources("neg_fid", ("fidelities",), "retraining")["fidelities"]
    _, cheap = parse_fidelities(bt.task.retraining_game("neg_fid"), fid)
    assert [n for n, _, _ in cheap] == (["proxy", "finetune"] if offered else ["proxy"])
    if offered:
        ft = fid["finetune"]
        assert isinstance(ft, FineTuningGame) and ft is bt.game("neg_fid", "finetune")  # the benchmark's one
        assert {n: s for n, _, s in cheap}["finetune"] == 1.0  # a fine-tuning costs its own steps
    assert bt.resources("neg_fid", ("fidelities",), "finetune")["fidelities"].keys() == {"target", "proxy"}


def test_regression_stderr_covers_the_exact_values():
    # +-2 stderr covered 79% of (seed, player) pairs at B = 40 with the per-level sandwich
    # alone (it misses the in-sample coefficients and the levels' covariance); the
    # jackknife of the pooled fit brings it near the nominal 95%, without a useless width
    atts = [_run(40, s) for s in range(40)]
    vals, ses = np.array([a.values for a in atts]), np.array([a.stderr for a in atts])
    assert np.mean(np.abs(vals - TRUTH) <= 2 * ses) >= 0.9
    ratio = np.sqrt((ses**2).mean(0)) / np.sqrt(((vals - TRUTH) ** 2).mean(0))
    assert np.median(ratio) < 2.0
