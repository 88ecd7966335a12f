"""Anytime estimates: ``Estimator.estimate(game, budget, until=...)`` refines in steps,
keeps what it paid for, and stops on the first criterion that holds."""

from __future__ import annotations

import time
from math import comb

import numpy as np
import pytest

import baselines  # noqa: F401  (registers the estimators)
from surrogateshap import (
    AdditiveGame,
    FunctionGame,
    Until,
    get_estimator,
    random_unanimity_game,
)

GAME = random_unanimity_game(30, seed=0, offset=1.0)
#: never holds: the run goes to its budget
NEVER = Until(top_k=30, stable_steps=50)
SMALL_TREES = {"model_params": {"n_estimators": 60}}


def rel_l2(est, ref):
    return float(np.linalg.norm(np.asarray(est) - ref) / np.linalg.norm(ref))


@pytest.mark.parametrize("name", ["permutation", "permutation-antithetic"])
@pytest.mark.parametrize("budget", [700, 5000])
def test_refined_permutations_equal_one_run_at_the_final_budget(name, budget):
    one = get_estimator(name).estimate(GAME, budget, seed=7)
    refined = get_estimator(name).estimate(GAME, budget, seed=7, until=NEVER)
    assert refined.stopped_by == "budget" and len(refined.extra["steps"]) >= 3
    assert refined.n_evaluations == one.n_evaluations
    assert refined.extra["n_permutations"] == one.extra["n_permutations"]
    np.testing.assert_allclose(refined.values, one.values, rtol=1e-12, atol=0)
    np.testing.assert_allclose(refined.stderr, one.stderr, rtol=1e-9, atol=1e-15)
    # the steps spent increasing budgets, each a prefix of the next
    evals = [s["n_evaluations"] for s in refined.extra["steps"]]
    assert evals == sorted(evals) and evals[-1] == one.n_evaluations


@pytest.mark.parametrize("budget", [3000, 30000])
def test_refined_svarm_follows_the_one_shot_plan(budget):
    # explained in StratifiedSVARM._refine: the same plan (border sizes, counts per size,
    # where no floor of an earlier step binds, as at these budgets), other draws; every
    # coalition paid for is in the estimate, and the error is the one-shot's in size
    truth = GAME.exact_values()
    errs = {"one": [], "refined": []}
    for seed in range(3):
        one = get_estimator("stratified-svarm").estimate(GAME, budget, seed=seed)
        refined = get_estimator("stratified-svarm").estimate(GAME, budget, seed=seed, until=NEVER)
        assert refined.extra["border_sizes"] == one.extra["border_sizes"]
        assert refined.extra["samples_per_size"] == one.extra["samples_per_size"]
        held = 2 + sum(comb(30, s) for s in refined.extra["border_sizes"])
        assert held + sum(refined.extra["samples_per_size"].values()) == refined.n_evaluations == budget
        errs["one"].append(rel_l2(one.values, truth))
        errs["refined"].append(rel_l2(refined.values, truth))
    assert np.mean(errs["refined"]) < 1.5 * np.mean(errs["one"])


def test_refined_svarm_first_step_is_a_one_shot_run():
    one = get_estimator("stratified-svarm").estimate(GAME, 500, seed=2)
    refined = get_estimator("stratified-svarm").estimate(GAME, 500, seed=2, until=Until(top_k=3, first=500))
    assert len(refined.extra["steps"]) == 1
    np.testing.assert_array_equal(refined.values, one.values)


def test_refined_surrogateshap_fits_every_row_it_drew():
    # explained in SurrogateSHAP._refine: the first step is a one-shot run, later steps
    # add rows and refit on all of them
    est = get_estimator("surrogateshap", **SMALL_TREES)
    first = est.estimate(GAME, 240, seed=1)
    single = est.estimate(GAME, 240, seed=1, until=Until(top_k=3, first=240))
    np.testing.assert_array_equal(single.values, first.values)
    truth = GAME.exact_values()
    errs = {"one": [], "refined": []}
    for seed in range(3):
        one = est.estimate(GAME, 2000, seed=seed)
        refined = est.estimate(GAME, 2000, seed=seed, until=NEVER)
        assert refined.n_evaluations == 2000 and refined.stopped_by == "budget"
        # kernel draws, repeats kept: more rows than distinct coalitions, all of the steps'
        assert refined.extra["n_rows"] == refined.extra["n_draws"] + 2 > 2000
        errs["one"].append(rel_l2(one.values, truth))
        errs["refined"].append(rel_l2(refined.values, truth))
    assert np.mean(errs["refined"]) < 1.5 * np.mean(errs["one"])


@pytest.mark.parametrize("name", ["permutation-antithetic", "stratified-svarm"])
def test_stops_when_the_standard_errors_are_small_enough(name):
    att = get_estimator(name).estimate(GAME, 200_000, seed=0, until={"rel_stderr": 0.05})
    assert att.stopped_by == "rel_stderr" and att.n_evaluations < 200_000
    steps = [s["rel_stderr"] for s in att.extra["steps"]]
    assert steps[-1] <= 0.05 and not steps[-2] <= 0.05  # the first step that met it (NaN: unknown)
    assert att.stderr.max() <= 0.05 * np.ptp(att.values)


def test_stops_when_the_top_k_is_stable():
    # well separated values: permutation sampling ranks the top 3 right at once
    game = AdditiveGame(np.r_[10.0, 8.0, 6.0, np.linspace(0, 1, 27)])
    att = get_estimator("permutation").estimate(game, 100_000, seed=0, until=Until(top_k=3, stable_steps=2))
    assert att.stopped_by == "top_k" and len(att.extra["steps"]) == 3
    assert list(np.argsort(-att.values)[:3]) == [0, 1, 2]


def test_an_unstable_top_k_runs_to_the_budget():
    # equal players: the ranking is noise and never holds still for 4 steps
    game = AdditiveGame(np.ones(30) + np.random.default_rng(0).normal(0, 1e-9, 30))
    noisy = FunctionGame(lambda m: game(m) + 0.3 * np.sin(m @ np.arange(1.0, 31.0)), 30, identity="noisy")
    att = get_estimator("permutation").estimate(noisy, 6000, seed=0, until=Until(top_k=5, stable_steps=3))
    assert att.stopped_by == "budget" and att.n_evaluations > 5000


def test_stops_before_a_step_that_would_overrun_the_time_limit():
    def slow(m):
        time.sleep(0.05)  # per game call: a step costs at least one call
        return GAME(m)

    game = FunctionGame(slow, 30, identity="slow")
    att = get_estimator("stratified-svarm").estimate(game, 10**6, seed=0, until={"seconds": 0.5})
    assert att.stopped_by == "seconds" and att.n_evaluations < 10**6
    assert len(att.extra["steps"]) >= 2


def test_a_fixed_budget_says_nothing_stopped_it():
    assert get_estimator("permutation").estimate(GAME, 300).stopped_by is None


def test_until_is_refused_where_it_cannot_work():
    with pytest.raises(ValueError, match="kernelshap does not support until="):
        get_estimator("kernelshap").estimate(GAME, 300, until={"top_k": 3})
    with pytest.raises(ValueError, match="surrogateshap reports no standard error"):
        get_estimator("surrogateshap", **SMALL_TREES).estimate(GAME, 300, until={"rel_stderr": 0.1})
    with pytest.raises(ValueError, match="until= needs adjustment=None"):
        get_estimator("surrogateshap", adjustment="permutation").estimate(GAME, 300, until={"top_k": 3})
    with pytest.raises(ValueError, match="until needs a criterion"):
        Until()
    with pytest.raises(ValueError, match="until rel_stderr must be a number > 0"):
        Until(rel_stderr=-1)
    # fields that are not optional, and a growth that overflows the next step's budget
    with pytest.raises(ValueError, match="until stable_steps must be an integer >= 1"):
        Until(top_k=3, stable_steps=None)
    with pytest.raises(ValueError, match="until growth must be a finite number > 1"):
        Until(top_k=3, growth=float("inf"))
    with pytest.raises(ValueError, match=r"unknown criteria \['topk'\]"):
        get_estimator("permutation").estimate(GAME, 300, until={"topk": 3})
    with pytest.raises(TypeError, match="until must be an Until or a dict"):
        get_estimator("permutation").estimate(GAME, 300, until=0.1)


# --------------------------------------------------------------------------- auto and large n


def test_auto_on_cheap_evaluations_refines_svarm_until_precise():
    att = get_estimator("auto", cheap=True, rel_stderr=0.05).estimate(GAME, 200_000, seed=0)
    assert att.extra["auto"]["chose"] == "stratified-svarm"
    assert "cheap evaluations" in att.extra["auto"]["rule"]
    assert att.stopped_by == "rel_stderr" and att.n_evaluations < 200_000
    assert att.stderr.max() <= 0.05 * np.ptp(att.values)


def test_auto_on_expensive_evaluations_spends_the_budget():
    att = get_estimator("auto").estimate(GAME, 300, seed=0)
    assert att.extra["auto"]["chose"] == "stratified-svarm"
    assert "expensive evaluations" in att.extra["auto"]["rule"]
    assert att.stopped_by is None and att.n_evaluations == 300


def test_auto_refuses_bad_parameters():
    with pytest.raises(TypeError, match="cheap must be True or False"):
        get_estimator("auto", cheap="yes").estimate(GAME, 300)
    with pytest.raises(ValueError, match="until rel_stderr must be a number > 0"):
        get_estimator("auto", cheap=True, rel_stderr=0).estimate(GAME, 300)
    with pytest.raises(ValueError, match="auto: until seconds must be a number > 0"):
        get_estimator("auto", seconds=-1).estimate(GAME, 300)  # unused when not cheap, still refused
    with pytest.raises(ValueError, match="auto: cheap=True needs rel_stderr or seconds"):
        get_estimator("auto", cheap=True, rel_stderr=None, seconds=None).estimate(GAME, 300)


@pytest.mark.parametrize("n,params,expected", [(100, None, "large"), (30, None, {}), (100, {}, {})])
def test_surrogateshap_trees_default_by_n(n, params, expected):
    from surrogateshap.estimators.surrogate import LARGE_N_MODEL_PARAMS

    game = AdditiveGame(np.linspace(0, 1, n))
    att = get_estimator("surrogateshap", model_params=params).estimate(game, 3 * n, seed=0)
    assert att.extra["model_params"] == (LARGE_N_MODEL_PARAMS if expected == "large" else expected)


def test_the_step_schedule_is_the_one_estimate_runs():
    # Until.steps is the schedule _refine_until runs (and scripts/proxy_target.py reads)
    u = Until(top_k=3, stable_steps=50, first=40)
    assert u.steps(10, 1, 400) == [40, 80, 160, 320, 400]
    assert Until(seconds=1.0, growth=1.5).steps(4, 50, 100) == [50, 75, 100]  # first: max(8 n, minimum)
    a = get_estimator("permutation").estimate(random_unanimity_game(10, seed=1), 400, seed=0, until=u)
    assert [s["n_evaluations"] for s in a.extra["steps"]][-1] == a.n_evaluations
    assert len(a.extra["steps"]) == len(u.steps(10, get_estimator("permutation").min_budget(10), 400))
