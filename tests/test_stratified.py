"""Stratified SVARM and kADD-SHAP (baselines.stratified, baselines.kadd).

Accuracy bounds are relative L2 errors against exact values on random unanimity
games, about 1.5-2x the largest error seen in measurement (n = 10: 3 game seeds x 6
estimator seeds; n = 50: 3 x 2 or 3 x 3), and each is checked to be failed by the
exact values shuffled and by the same estimator at 5% of the budget.
"""

from __future__ import annotations

import numpy as np
import pytest

import baselines  # noqa: F401  (registers the estimators)
from baselines.stratified import StratifiedReference, stratified_reference
from surrogateshap import (
    AirportGame,
    CachedGame,
    FunctionGame,
    UnanimityGame,
    WeightedVotingGame,
    exact_shapley,
    get_estimator,
    random_unanimity_game,
)
from surrogateshap.sampling import anchor_masks, mask_key


def rel_l2(est, ref):
    return float(np.linalg.norm(np.asarray(est) - ref) / np.linalg.norm(ref))


# (name, n, budget) -> bound; measured worst: svarm 0.19 (10, 300), 0.19 (50, 2000);
# kadd 0.055 (10, 300), 0.17 (50, 800)
BOUNDS = {
    ("stratified-svarm", 10, 300): 0.3,
    ("stratified-svarm", 50, 2000): 0.3,
    ("kadd-shap", 10, 300): 0.1,
    ("kadd-shap", 50, 800): 0.3,
}


@pytest.mark.parametrize("name,n,budget", list(BOUNDS))
def test_reaches_error_bound(name, n, budget):
    bound = BOUNDS[(name, n, budget)]
    for game_seed in (0, 1):
        game = random_unanimity_game(n, seed=game_seed, offset=1.0)
        truth = game.exact_values()
        att = get_estimator(name).estimate(game, budget, seed=game_seed)
        assert rel_l2(att.values, truth) < bound, (name, n, game_seed)
        small = get_estimator(name).estimate(game, budget * 5 // 100, seed=game_seed)
        assert rel_l2(small.values, truth) > bound
        shuffled = np.random.default_rng(game_seed).permutation(truth)
        assert rel_l2(shuffled, truth) > bound


@pytest.mark.parametrize("name", ["stratified-svarm", "kadd-shap"])
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
def test_exact_with_every_coalition(name, game):
    n = game.n_players
    for budget in (2**n, 2**n + 100):  # more than 2**n must not run away either
        att = get_estimator(name).estimate(game, budget, seed=3)
        np.testing.assert_allclose(att.values, game.exact_values(), rtol=0, atol=1e-8)
        assert att.exact and att.n_evaluations == 2**n
        np.testing.assert_allclose(att.stderr, 0.0, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("name", ["stratified-svarm", "kadd-shap"])
def test_tiny_games(name, n):
    game = random_unanimity_game(n, seed=1, offset=0.7)
    att = get_estimator(name).estimate(game, 2**n, seed=0)
    np.testing.assert_allclose(att.values, exact_shapley(game), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["stratified-svarm", "kadd-shap"])
def test_same_seed_same_values_other_seed_other_values(name):
    game = random_unanimity_game(12, seed=3)
    est = get_estimator(name)
    a, b, c = (est.estimate(game, 300, seed=s).values for s in (11, 11, 12))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("name", ["stratified-svarm", "kadd-shap"])
@pytest.mark.parametrize("budget", [4, 37, 500])
def test_efficient_and_within_budget(name, budget):
    game = random_unanimity_game(20, seed=6, offset=3.0)
    v_empty, v_full = game(anchor_masks(20))
    counted = CachedGame(game)
    att = get_estimator(name).estimate(counted, budget, seed=0)
    assert att.values.sum() == pytest.approx(v_full - v_empty, abs=1e-8)
    assert counted.n_evaluations == att.n_evaluations <= budget
    assert att.n_evaluations >= budget - 1


def test_svarm_plain_estimator_is_not_efficient_but_projection_only_helps():
    # the projection onto sum(phi) = v(N) - v(empty) removes the error's mean, which
    # can only shorten the error vector
    game = random_unanimity_game(30, seed=2, offset=1.0)
    truth = game.exact_values()
    total = truth.sum()
    for seed in range(5):
        plain = get_estimator("stratified-svarm", efficient=False).estimate(game, 400, seed=seed)
        proj = get_estimator("stratified-svarm").estimate(game, 400, seed=seed)
        assert abs(plain.values.sum() - total) > 1e-6
        np.testing.assert_allclose(
            proj.values, plain.values + (total - plain.values.sum()) / 30, atol=1e-10
        )
        assert rel_l2(proj.values, truth) <= rel_l2(plain.values, truth) + 1e-12


def recording(game):
    """The game as a FunctionGame that records every coalition it evaluates."""
    seen: set[bytes] = set()

    def fn(masks):
        seen.update(mask_key(m) for m in masks)
        return game(masks)

    return FunctionGame(fn, game.n_players), seen


@pytest.mark.parametrize("name", ["stratified-svarm", "kadd-shap", "kernelshap", "leverageshap"])
def test_border_sizes_are_enumerated(name):
    # 2 anchors + sizes 1 and n-1 (2n) + 100 more: the planner's share of sizes 1 and
    # n-1 (kernel or SVARM weights) exceeds their 2n coalitions, so all are evaluated
    n = 12
    game, seen = recording(random_unanimity_game(n, seed=0))
    att = get_estimator(name).estimate(game, 2 + 2 * n + 100, seed=0)
    assert set(att.extra["border_sizes"]) == {1, n - 1}
    eye = np.eye(n, dtype=bool)
    assert all(mask_key(m) in seen for m in np.concatenate([eye, ~eye]))
    assert att.n_evaluations == len(seen) <= 2 + 2 * n + 100


def test_svarm_stderr_covers_the_true_error():
    game = random_unanimity_game(30, seed=1)
    truth = game.exact_values()
    errs, ses = [], []
    for seed in range(10):
        att = get_estimator("stratified-svarm", efficient=False).estimate(game, 3000, seed=seed)
        errs.append(np.abs(att.values - truth))
        ses.append(att.stderr)
    errs, ses = np.concatenate(errs), np.concatenate(ses)
    assert np.isfinite(ses).all()
    assert np.mean(errs <= 3 * ses + 1e-9) >= 0.9
    assert np.mean(errs <= 3 * ses / 5 + 1e-9) < 0.9


def test_kadd_recovers_a_2_additive_game_and_its_interactions():
    # a 2-additive game is fitted exactly from fewer coalitions than 2**n
    n = 8
    terms = [(i,) for i in range(n)] + [(0, 1), (2, 5), (3, 7)]
    coefs = list(np.linspace(-1, 2, n)) + [1.5, -2.0, 0.7]
    game = UnanimityGame(n, terms, coefs, offset=0.4)
    att = get_estimator("kadd-shap").estimate(game, 120, seed=0)
    assert att.n_evaluations <= 120 < 2**n
    np.testing.assert_allclose(att.values, game.exact_values(), atol=1e-8)
    np.testing.assert_allclose(att.interactions, game.exact_interactions(), atol=1e-8)
    # KernelSHAP (k = 1) cannot do that
    ks = get_estimator("kadd-shap", k=1).estimate(game, 120, seed=0)
    assert rel_l2(ks.values, game.exact_values()) > 1e-3


def test_invalid_parameters_are_refused():
    game = random_unanimity_game(5, seed=0)
    with pytest.raises(ValueError, match="size_weights"):
        get_estimator("stratified-svarm", size_weights="nope").estimate(game, 20)
    with pytest.raises(ValueError, match="k must be"):
        get_estimator("kadd-shap", k=0).estimate(game, 20)
    with pytest.raises(ValueError, match="unknowns"):
        get_estimator("kadd-shap", k=3).estimate(random_unanimity_game(40, seed=0), 100)


# --------------------------------------------------------------------------- the reference


#: 10- and 12-player games with known values; the airport and voting games put most of a
#: player's value in its first or last steps, as the proxy game does
REFERENCE_GAMES = {
    "unanimity10": random_unanimity_game(10, seed=0, offset=1.0),
    "airport12": AirportGame(np.arange(1, 13) ** 1.5),
    "voting12": WeightedVotingGame(np.arange(1, 13), 40),
}


def test_reference_is_exact_when_the_border_holds_every_size():
    game = random_unanimity_game(4, seed=2, offset=0.5)
    att = stratified_reference(game, permutations=10, border=2)
    assert att.exact
    np.testing.assert_allclose(att.values, exact_shapley(game), atol=1e-12)
    np.testing.assert_array_equal(att.stderr, 0.0)


@pytest.mark.parametrize("name", list(REFERENCE_GAMES))
def test_reference_is_unbiased(name):
    # the mean over 200 seeds lies within 4.5 standard errors of that mean of the
    # exact values: a wrong weight on the exact border or on the middle fails by far
    game = REFERENCE_GAMES[name]
    truth = game.exact_values()
    runs = np.array([stratified_reference(game, permutations=20, seed=s).values for s in range(200)])
    se = runs.std(axis=0, ddof=1) / np.sqrt(len(runs)) + 1e-12
    assert np.abs((runs.mean(axis=0) - truth) / se).max() < 4.5
    assert runs.std(axis=0).max() > 0  # the middle is sampled, not enumerated


@pytest.mark.parametrize("name", ["unanimity10", "mixture12"])
def test_reference_stderr_covers_its_error(name):
    # (the airport and voting games' middle marginals are rare jumps: a few pairs'
    # spread says little of their variance, so they are left to the unbiasedness test)
    game = REFERENCE_GAMES[name] if name in REFERENCE_GAMES else mixture_game()
    truth = exact_shapley(game)
    errs, ses = [], []
    for seed in range(10):
        att = stratified_reference(game, permutations=100, seed=seed)
        assert att.n_evaluations < 2**game.n_players and not att.exact
        assert att.extra["border_sizes"] == [1, 2, game.n_players - 2, game.n_players - 1]
        assert rel_l2(att.values, truth) < 0.3
        errs.append(np.abs(att.values - truth))
        ses.append(att.stderr)
    errs, ses = np.concatenate(errs), np.concatenate(ses)
    assert np.mean(errs <= 3 * ses + 1e-12) >= 0.9
    assert np.mean(errs <= 3 * ses / 5 + 1e-12) < 0.9  # the stderr is not inflated


def mixture_game(n: int = 12, seed: int = 0) -> FunctionGame:
    """Like the proxy game: v(S) = the mean of S's qualities (a mixture's utility) plus a
    small additive part, so a player's marginal at position p is about 1/(p + 1)."""
    rng = np.random.default_rng(seed)
    c, w = rng.normal(0.0, 10.0, n), rng.normal(0.3, 0.1, n)

    def v(m):
        size = m.sum(axis=1)
        return np.where(size > 0, (m @ c) / np.maximum(size, 1), -20.0) + m @ w

    return FunctionGame(v, n, identity=f"mixture{n}-{seed}")


def test_reference_beats_permutations_where_the_first_steps_dominate():
    # exact border strata remove the first steps' variance; antithetic permutations at
    # the same budget keep it
    game = mixture_game()
    truth = exact_shapley(game)
    ref = [rel_l2(stratified_reference(game, permutations=40, seed=s).values, truth) for s in range(5)]
    budget = StratifiedReference().budget_for(12, 40)
    perm = [rel_l2(get_estimator("permutation-antithetic").estimate(game, budget, seed=s).values, truth)
            for s in range(5)]
    assert np.mean(ref) < 0.5 * np.mean(perm)


def test_reference_flags_a_player_with_no_middle_sample():
    att = stratified_reference(random_unanimity_game(10, seed=0), permutations=2, seed=0)
    assert np.isnan(att.stderr).any() and (att.counts == 0).any()
    assert np.isnan(att.stderr[att.counts == 0]).all()


def test_reference_refuses_bad_parameters():
    game = random_unanimity_game(10, seed=0)
    with pytest.raises(ValueError, match="border must be an integer >= 1; got 0"):
        stratified_reference(game, border=0)
    with pytest.raises(ValueError, match="permutations must be an integer >= 2"):
        stratified_reference(game, permutations=1)
