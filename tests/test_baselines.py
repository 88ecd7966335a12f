"""Tests of the game-based baseline estimators (package ``baselines``).

Accuracy bounds are relative L2 errors ||est - exact|| / ||exact|| chosen from
measurement: about 1.5-2x the largest error seen over 20 estimator seeds x 3 game
seeds (n = 10) or 8 x 3 (n = 50). Each bound is also checked to be failed by a wrong
estimate (the exact values shuffled, or the same estimator at 3% of the budget), so
it measures something.
"""

from __future__ import annotations

import numpy as np
import pytest

import baselines  # noqa: F401  (registers the estimators)
from surrogateshap import (
    AdditiveGame,
    AirportGame,
    CachedGame,
    FunctionGame,
    UnanimityGame,
    WeightedVotingGame,
    exact_shapley,
    get_estimator,
    random_unanimity_game,
)
from surrogateshap.exact import banzhaf_from_table
from surrogateshap.game import all_coalitions

ALL = [
    "exact", "permutation", "permutation-antithetic", "tmc", "kernelshap",
    "leverageshap", "loo", "banzhaf-msr", "datamodels", "stratified-svarm", "kadd-shap",
]
STOCHASTIC = [
    "permutation", "permutation-antithetic", "tmc", "kernelshap", "leverageshap",
    "banzhaf-msr", "datamodels", "stratified-svarm", "kadd-shap",
]
SHAPLEY = [  # (name, params) of the sampling Shapley estimators
    ("permutation", {}),
    ("permutation-antithetic", {}),
    ("tmc", {"tolerance": 0.0}),
    ("kernelshap", {}),
    ("leverageshap", {}),
]


def make(name, **params):
    """An estimator through the registry."""
    return get_estimator(name, **params)


def rel_l2(est, ref):
    return float(np.linalg.norm(np.asarray(est) - ref) / np.linalg.norm(ref))


def test_every_baseline_is_registered():
    for name in ALL:
        assert make(name).name == name


# ---------------------------------------------------------------- exact enumeration


@pytest.mark.parametrize(
    "game",
    [
        random_unanimity_game(9, seed=4, offset=1.5),
        UnanimityGame(6, [(0, 1, 2), (3,), (2, 5)], [2.0, -1.0, 0.5], offset=0.3),
        AirportGame([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]),
        WeightedVotingGame([4, 3, 2, 2, 1, 1, 1], quota=8),
    ],
    ids=["random-unanimity", "unanimity", "airport", "voting"],
)
def test_exact_matches_closed_forms(game):
    n = game.n_players
    att = make("exact").estimate(game, 2**n)
    np.testing.assert_allclose(att.values, game.exact_values(), rtol=0, atol=1e-9)
    assert att.exact and att.n_evaluations == 2**n
    assert make("exact").is_exact


# ---------------------------------------------------------- Shapley estimator accuracy

# (n, budget) -> estimator -> bound on relative L2 error
BOUNDS = {
    (10, 1000): {
        "permutation": 0.13, "permutation-antithetic": 0.08, "tmc": 0.13,
        "kernelshap": 0.05, "leverageshap": 0.01,
    },
    (50, 5000): {
        "permutation": 0.15, "permutation-antithetic": 0.07, "tmc": 0.15,
        "kernelshap": 0.05, "leverageshap": 0.05,
    },
}


@pytest.mark.parametrize("n,budget", list(BOUNDS))
@pytest.mark.parametrize("name,params", SHAPLEY, ids=[s[0] for s in SHAPLEY])
def test_shapley_estimators_reach_error_bound(name, params, n, budget):
    bound = BOUNDS[(n, budget)][name]
    for game_seed in (0, 1):
        # an offset (v(empty) != 0) changes no Shapley value but catches estimators
        # that forget to subtract v(empty)
        game = random_unanimity_game(n, seed=game_seed, offset=1.0)
        truth = game.exact_values()
        att = make(name, **params).estimate(game, budget, seed=game_seed)
        assert rel_l2(att.values, truth) < bound, (name, n, game_seed)
        # the bound is meaningful: 3% of the budget, or the right values in the wrong
        # order, do not meet it
        small = make(name, **params).estimate(game, budget * 3 // 100, seed=game_seed)
        assert rel_l2(small.values, truth) > bound
        shuffled = np.random.default_rng(game_seed).permutation(truth)
        assert rel_l2(shuffled, truth) > bound


def test_leverageshap_is_exact_with_every_coalition():
    for n in (1, 2, 5, 8):
        game = random_unanimity_game(n, seed=7, offset=0.4)
        att = make("leverageshap").estimate(game, 2**n)
        np.testing.assert_allclose(att.values, exact_shapley(game), rtol=0, atol=1e-9)


def test_kernelshap_unbiased_variant_runs_and_is_consistent():
    # exact A (Covert & Lee's unbiased KernelSHAP): noisier, but converges
    game = random_unanimity_game(10, seed=0)
    att = make("kernelshap", unbiased=True).estimate(game, 1000)
    assert rel_l2(att.values, game.exact_values()) < 0.15
    assert abs(att.values.sum() - (game(np.ones(10, bool))[0] - game(np.zeros(10, bool))[0])) < 1e-8


# ------------------------------------------------- Banzhaf, datamodels, leave-one-out


def _banzhaf(game):
    return banzhaf_from_table(game(all_coalitions(game.n_players)), game.n_players)


def test_banzhaf_msr_estimates_banzhaf_values():
    game = random_unanimity_game(10, seed=0)
    truth = _banzhaf(game)
    bound = 0.3  # observed at most 0.18 over 60 runs
    att = make("banzhaf-msr").estimate(game, 500, seed=0)
    assert rel_l2(att.values, truth) < bound
    assert rel_l2(make("banzhaf-msr").estimate(game, 15, seed=0).values, truth) > bound
    assert rel_l2(np.random.default_rng(0).permutation(truth), truth) > bound
    # sampling is without replacement, so the whole power set gives the exact values
    full = make("banzhaf-msr").estimate(game, 2**10, seed=0)
    np.testing.assert_allclose(full.values, truth, rtol=0, atol=1e-9)
    # and these are Banzhaf, not Shapley values: on this game the two differ
    assert rel_l2(full.values, game.exact_values()) > 0.1


def test_datamodels_recovers_additive_weights():
    rng = np.random.default_rng(1)
    game = AdditiveGame(rng.normal(size=30), offset=2.0)
    for alpha in (0.5, 0.2):
        att = make("datamodels", alpha=alpha, ridge_alpha=1e-8).estimate(game, 200, seed=0)
        np.testing.assert_allclose(att.values, game.weights, rtol=0, atol=1e-6)
        assert att.extra["intercept"] == pytest.approx(2.0, abs=1e-6)


def test_datamodels_on_all_coalitions_gives_banzhaf_values():
    # least squares over the uniform power set = Banzhaf values (Hammer & Holzman)
    game = random_unanimity_game(8, seed=3)
    att = make("datamodels", ridge_alpha=1e-10).estimate(game, 2**8, seed=0)
    np.testing.assert_allclose(att.values, _banzhaf(game), rtol=0, atol=1e-6)


def test_loo():
    rng = np.random.default_rng(2)
    additive = AdditiveGame(rng.normal(size=12), offset=-1.0)
    att = make("loo").estimate(additive, 13)
    np.testing.assert_allclose(att.values, additive.weights, rtol=0, atol=1e-12)
    assert att.n_evaluations == 13

    game = random_unanimity_game(12, seed=5)
    full = np.ones(12, dtype=bool)
    without = ~np.eye(12, dtype=bool)
    expected = [game(full)[0] - game(without[i])[0] for i in range(12)]
    np.testing.assert_allclose(make("loo").estimate(game, 13).values, expected, rtol=0, atol=1e-12)


# ------------------------------------------------------------------- budget honesty


def _min_budget(name, n):
    return make(name).min_budget(n)


@pytest.mark.parametrize("name", ALL)
def test_budget_is_never_exceeded_and_is_used(name):
    n = 7
    game = random_unanimity_game(n, seed=2, offset=0.5)
    need = _min_budget(name, n)
    for budget in sorted({need, need + 1, 37, 100, 2**n}):
        if budget < need:
            continue
        counted = CachedGame(game)  # counts what really reached the game
        att = make(name).estimate(counted, budget, seed=1)  # raises if exceeded
        assert att.n_evaluations <= budget
        assert counted.n_evaluations == att.n_evaluations
        assert np.isfinite(att.values).all()
        # sampling methods spend (nearly) all of it; permutation methods can leave
        # less than one permutation's worth, pair-based ones one coalition
        slack = {"permutation": n - 1, "permutation-antithetic": 2 * (n - 1), "tmc": n - 1,
                 "kernelshap": 1, "leverageshap": 1, "banzhaf-msr": 0, "datamodels": 0,
                 "stratified-svarm": 0, "kadd-shap": 1}
        if name in slack:
            assert att.n_evaluations >= min(budget, 2**n) - slack[name], (budget, att.n_evaluations)


@pytest.mark.parametrize("name", ALL)
def test_budget_below_minimum_is_refused(name):
    game = random_unanimity_game(6, seed=0)
    need = _min_budget(name, 6)
    with pytest.raises(ValueError, match=f"at least {need} "):
        make(name).estimate(game, need - 1)


def test_stated_minimum_budgets():
    n = 6
    assert {name: _min_budget(name, n) for name in ALL} == {
        "exact": 64, "permutation": 7, "permutation-antithetic": 12, "tmc": 7,
        "kernelshap": 4, "leverageshap": 4, "loo": 7, "banzhaf-msr": 2, "datamodels": 2,
        "stratified-svarm": 2, "kadd-shap": 4,
    }


@pytest.mark.parametrize("name", STOCHASTIC)
def test_coalitions_are_evaluated_in_batches(name):
    n, calls = 30, []
    base = random_unanimity_game(n, seed=1)

    def fn(masks):
        calls.append(len(masks))
        return base(masks)

    att = make(name).estimate(FunctionGame(fn, n), 1000, seed=0)
    # one call per coalition would be ~1000 calls; tmc scans its orders in lockstep,
    # one call per position per round of orders
    assert len(calls) <= (3 * n if name == "tmc" else 4), calls
    assert sum(calls) == att.n_evaluations


# ------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("name", STOCHASTIC)
def test_same_seed_same_values_other_seed_other_values(name):
    game = random_unanimity_game(12, seed=3)
    est = make(name)
    a, b, c = (est.estimate(game, 300, seed=s).values for s in (11, 11, 12))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("name", ["exact", "loo"])
def test_deterministic_estimators_ignore_the_seed(name):
    game = random_unanimity_game(8, seed=3)
    est = make(name)
    a, b = (est.estimate(game, 256, seed=s).values for s in (1, 2))
    np.testing.assert_array_equal(a, b)


# -------------------------------------------------------------------- efficiency


@pytest.mark.parametrize("name", ["kernelshap", "leverageshap"])
@pytest.mark.parametrize("budget", [4, 21, 400])
def test_regression_estimators_are_efficient(name, budget):
    game = random_unanimity_game(20, seed=6, offset=3.0)
    v_empty, v_full = game(np.array([np.zeros(20, bool), np.ones(20, bool)]))
    att = make(name).estimate(game, budget, seed=0)
    assert att.values.sum() == pytest.approx(v_full - v_empty, abs=1e-8)


# ----------------------------------------------------------------------- stderr


@pytest.mark.parametrize("name", ["permutation", "permutation-antithetic", "kernelshap"])
def test_stderr_covers_the_true_error(name):
    game = random_unanimity_game(50, seed=1)
    truth = game.exact_values()
    att = make(name).estimate(game, 3000, seed=0)
    err = np.abs(att.values - truth)
    # players with only a singleton term have constant marginals: error and stderr
    # are both rounding noise, hence the small absolute slack
    covered = np.mean(err <= 3 * att.stderr + 1e-9)
    assert covered >= 0.9
    # a stderr five times too small (e.g. a forgotten sqrt(#samples)) would fail
    assert np.mean(err <= 3 * att.stderr / 5 + 1e-9) < 0.9


# --------------------------------------------------------------------------- tmc


def test_tmc_truncation_saves_evaluations():
    # a saturating game: v(S) = 1 - 0.8**|S|, so late prefixes are within tolerance
    n = 30
    game = FunctionGame(lambda m: 1.0 - 0.8 ** m.sum(1), n, name="saturating")
    truth = np.full(n, (1.0 - 0.8**n) / n)
    plain = make("tmc", tolerance=0.0).estimate(game, 600, seed=0)
    trunc = make("tmc", tolerance=0.05).estimate(game, 600, seed=0)
    assert plain.extra["scanned_fraction"] == 1.0
    assert trunc.extra["scanned_fraction"] < 0.5
    assert trunc.extra["n_permutations"] > 2 * plain.extra["n_permutations"]
    assert trunc.n_evaluations <= 600
    # truncation biases by at most the tolerance times |v(N)| in total
    assert abs(trunc.values.sum() - truth.sum()) <= 0.05 * (1.0 - 0.8**n) + 1e-12


def test_invalid_parameters_are_refused():
    game = random_unanimity_game(5, seed=0)
    with pytest.raises(ValueError, match="tolerance"):
        make("tmc", tolerance=-1.0).estimate(game, 50)
    with pytest.raises(ValueError, match="alpha"):
        make("datamodels", alpha=1.5).estimate(game, 50)
    with pytest.raises(ValueError, match="max_permutations"):
        make("permutation", max_permutations=0).estimate(game, 50)


def test_partial_results_merge_like_one_run():
    # two runs of permutation sampling on the same game pool into one estimate with the
    # count-weighted mean and the pooled standard error (pyDVL's ValuationResult)
    game = random_unanimity_game(8, seed=3)
    a = make("permutation").estimate(game, 60, seed=0)
    b = make("permutation").estimate(game, 200, seed=1)
    m = a.merge(b)
    na, nb = a.counts[0], b.counts[0]
    np.testing.assert_allclose(m.values, (na * a.values + nb * b.values) / (na + nb), rtol=1e-12)
    assert m.counts[0] == na + nb and m.n_evaluations == a.n_evaluations + b.n_evaluations
    # the pooled stderr: that of all units together, so below the larger run's typically
    assert np.median(m.stderr) < np.median(b.stderr)
    va, vb, vm = (x.stderr**2 * x.counts for x in (a, b, m))
    d = b.values - a.values
    pooled = (va * (na - 1) + vb * (nb - 1) + d**2 * na * nb / (na + nb)) / (na + nb - 1)
    np.testing.assert_allclose(vm, pooled, rtol=1e-9)
    # closer to the truth than the smaller run, on average over players
    exact = game.exact_values()
    assert np.linalg.norm(m.values - exact) < np.linalg.norm(a.values - exact)
    with pytest.raises(ValueError, match="banzhaf"):
        a.merge(make("banzhaf-msr").estimate(game, 60, seed=0))
    with pytest.raises(ValueError, match="counts"):
        a.merge(make("leverageshap").estimate(game, 60, seed=0))
