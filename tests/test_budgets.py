"""Budgets above the number of coalitions: capped at 2**n and answered exactly.

Before the cap, sampling loops drew free repeats up to 10-50x a huge budget (4 players
at 1e5: permutation ran past 60 s; KernelSHAP at 1e9 grew to 24 GB; Banzhaf and
datamodels raised MemoryError), and SurrogateSHAP at 2**n returned 1.006 / 1.991 / ...
for an additive game's 1 / 2 / ...
"""

from __future__ import annotations

import numpy as np
import pytest

from surrogateshap import AdditiveGame, FunctionGame, available_estimators, get_estimator, random_unanimity_game
from surrogateshap.exact import banzhaf_from_table
from surrogateshap.game import all_coalitions

HUGE = 10**9


def _needs_resources(name):
    return bool(get_estimator(name).requires)


@pytest.mark.parametrize("name", [n for n in available_estimators() if not _needs_resources(n)])
def test_a_huge_budget_costs_at_most_every_coalition(name):
    game = random_unanimity_game(4, seed=0)
    est = get_estimator(name)
    att = est.estimate(game, HUGE, seed=0)
    assert att.n_evaluations <= 2**4
    assert att.budget == 2**4  # the budget is capped at the number of coalitions
    table = game(all_coalitions(4))
    if est.index == "shapley":
        np.testing.assert_allclose(att.values, game.exact_values(), atol=1e-9)
        assert att.exact
    elif est.index == "banzhaf":
        np.testing.assert_allclose(att.values, banzhaf_from_table(table, 4), atol=1e-9)
        assert att.exact


def test_surrogateshap_at_every_coalition_is_exact_on_an_additive_game():
    game = AdditiveGame([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    att = get_estimator("surrogateshap").estimate(game, 2**6, seed=0)
    np.testing.assert_allclose(att.values, [1, 2, 3, 4, 5, 6], atol=1e-12)
    assert att.exact and att.n_evaluations == 64


def test_proxy_cv_at_every_coalition_is_exact():
    game = random_unanimity_game(5, seed=2)
    proxy = random_unanimity_game(5, seed=3)
    att = get_estimator("proxy-cv").estimate(game, HUGE, seed=0, proxy=proxy)
    np.testing.assert_allclose(att.values, game.exact_values(), atol=1e-9)


def test_bad_parameters_are_refused_even_where_the_answer_is_exact():
    game = random_unanimity_game(4, seed=0)
    with pytest.raises(ValueError, match="max_draws_factor"):
        get_estimator("surrogateshap", max_draws_factor=0).estimate(game, 16)
    with pytest.raises(ValueError, match="n_estimators"):
        get_estimator("surrogateshap", model_params={"n_estimators": 0}).estimate(game, 8)
    with pytest.raises(ValueError, match="efficiency"):
        get_estimator("surrogateshap", efficiency="magic").estimate(game, HUGE)


def test_tmc_is_unchanged_by_a_constant_shift():
    # its truncation tolerance is relative to v(N) - v(empty), not |v(N)|: shifting the
    # game by 1e6 used to truncate every scan and return all zeros
    base = random_unanimity_game(8, seed=1)
    shifted = FunctionGame(lambda m: base(m) + 1e6, base.n_players, identity="shifted-unanimity-8")
    a = get_estimator("tmc").estimate(base, 200, seed=0)
    b = get_estimator("tmc").estimate(shifted, 200, seed=0)
    np.testing.assert_allclose(a.values, b.values, atol=1e-6)
    assert np.abs(b.values).sum() > 0


def test_a_wrong_number_of_values_names_the_estimator():
    from surrogateshap import Estimator

    class Short(Estimator):
        name = "short-test"

        def _estimate(self, game, budget, rng):
            return np.zeros(game.n_players - 1)

    with pytest.raises(ValueError, match="short-test returned 3 values for 4 players"):
        Short().estimate(random_unanimity_game(4, seed=0), 10)
