"""Games with known Shapley values: closed forms against enumeration, and input checks."""

from itertools import combinations
from math import factorial

import numpy as np
import pytest

from surrogateshap import (
    AdditiveGame,
    AirportGame,
    FunctionGame,
    NoisyGame,
    NonFiniteUtilityError,
    UnanimityGame,
    WeightedVotingGame,
    all_coalitions,
    exact_shapley,
    random_unanimity_game,
)

KNOWN_GAMES = {
    "additive": lambda: AdditiveGame([1.5, -2.0, 0.0, 3.25, 0.5, -0.75, 2.0], offset=4.0),
    "unanimity": lambda: UnanimityGame(
        6, [(0,), (1, 2), (0, 3, 4), (2, 3, 4, 5), (5,)], [1.0, 2.0, -3.0, 4.0, 0.5], offset=1.0
    ),
    "random_unanimity": lambda: random_unanimity_game(10, n_terms=25, max_order=4, seed=7),
    "voting": lambda: WeightedVotingGame([5, 3, 3, 2, 2, 1, 1, 1, 4, 6, 2, 1], quota=16),
    "airport": lambda: AirportGame([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0]),
    "noisy": lambda: NoisyGame(AdditiveGame([1.0, 2.0, 3.0]), sigma=0.0, seed=1),
}


@pytest.mark.parametrize("name", sorted(KNOWN_GAMES))
def test_closed_form_matches_enumeration(name):
    game = KNOWN_GAMES[name]()
    np.testing.assert_allclose(game.exact_values(), exact_shapley(game), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", sorted(KNOWN_GAMES))
def test_efficiency(name):
    game = KNOWN_GAMES[name]()
    n = game.n_players
    v_empty, v_full = game(np.array([np.zeros(n, bool), np.ones(n, bool)]))
    assert game.exact_values().sum() == pytest.approx(v_full - v_empty, abs=1e-9)


def test_voting_dp_at_n30_matches_enumeration_at_n12():
    # 18 extra null players (weight 0) change nobody's value: the 30-player DP must
    # reproduce the 12-player enumeration and give the null players zero
    weights = [5, 3, 3, 2, 2, 1, 1, 1, 4, 6, 2, 1]
    small = WeightedVotingGame(weights, quota=16)
    big = WeightedVotingGame(weights + [0] * 18, quota=16)
    phi = big.exact_values()
    np.testing.assert_allclose(phi[:12], exact_shapley(small), atol=1e-9)
    np.testing.assert_allclose(phi[12:], 0.0, atol=1e-12)
    assert phi.sum() == pytest.approx(1.0)


def test_voting_symmetric_and_degenerate_quotas():
    np.testing.assert_allclose(WeightedVotingGame([1] * 30, quota=16).exact_values(), 1 / 30)
    # quota above the total: nobody can win; quota <= 0: everyone (the empty set) wins
    assert (WeightedVotingGame([1, 2, 3], quota=7).exact_values() == 0).all()
    assert (WeightedVotingGame([1, 2, 3], quota=0).exact_values() == 0).all()
    with pytest.raises(ValueError, match="non-negative"):
        WeightedVotingGame([1, -2, 3], quota=2)


def _interaction_by_enumeration(game):
    """Pairwise Shapley interaction index:
    sum_{S subset N minus ij} |S|! (n-|S|-2)! / (n-1)! [v(S+ij) - v(S+i) - v(S+j) + v(S)]."""
    n = game.n_players
    masks = all_coalitions(n)
    v = dict(zip(map(bytes, masks.astype(np.uint8)), game(masks)))

    def val(members):
        z = np.zeros(n, np.uint8)
        z[list(members)] = 1
        return v[bytes(z)]

    out = np.zeros((n, n))
    for i, j in combinations(range(n), 2):
        rest = [p for p in range(n) if p not in (i, j)]
        total = 0.0
        for s in range(len(rest) + 1):
            w = factorial(s) * factorial(n - s - 2) / factorial(n - 1)
            for S in combinations(rest, s):
                total += w * (val(S + (i, j)) - val(S + (i,)) - val(S + (j,)) + val(S))
        out[i, j] = out[j, i] = total
    return out


def test_unanimity_interactions_match_enumeration():
    game = random_unanimity_game(6, n_terms=8, max_order=4, seed=3)
    assert max(len(t) for t in game.terms) >= 3  # higher-order terms present
    enumerated = _interaction_by_enumeration(game)
    np.testing.assert_allclose(game.exact_interactions(), enumerated, atol=1e-9)


def test_noisy_game_seeding():
    base = AdditiveGame([1.0, 2.0, 3.0, 4.0])
    masks = all_coalitions(4)
    a = NoisyGame(base, sigma=1.0, seed=0)(masks)
    # same seed: same noise, also from a fresh instance and in a different batch order
    np.testing.assert_array_equal(a, NoisyGame(base, sigma=1.0, seed=0)(masks))
    np.testing.assert_array_equal(a[::-1], NoisyGame(base, sigma=1.0, seed=0)(masks[::-1]))
    b = NoisyGame(base, sigma=1.0, seed=1)(masks)
    assert not np.allclose(a, b)
    assert NoisyGame(base, sigma=1.0, seed=0).expected_values().tolist() == [1.0, 2.0, 3.0, 4.0]
    assert NoisyGame(base, sigma=1.0, seed=0).exact_values() is None


def test_noisy_game_mean_over_seeds_is_noise_free():
    base = AdditiveGame([1.0, 2.0, 3.0, 4.0], offset=1.0)
    masks = all_coalitions(4)
    seeds = 400
    draws = np.stack([NoisyGame(base, sigma=1.0, seed=s)(masks) for s in range(seeds)])
    # each coalition's mean has sd 1 / sqrt(400) = 0.05
    np.testing.assert_allclose(draws.mean(0), base(masks), atol=0.25)
    assert draws.std(0).mean() == pytest.approx(1.0, abs=0.1)
    from surrogateshap import shapley_from_table

    phi = np.mean([shapley_from_table(d, 4) for d in draws], axis=0)
    np.testing.assert_allclose(phi, base.exact_values(), atol=0.25)


# ---------------------------------------------------------------- bad input


def _game():
    return AdditiveGame([1.0, 2.0, 3.0])


def test_single_coalition_and_empty_batch():
    g = _game()
    assert g([True, False, True]).tolist() == [4.0]
    assert g(np.zeros((0, 3), bool)).shape == (0,)
    assert g(np.array([[1, 0, 1]])).tolist() == [4.0]  # 0/1 integers are fine


@pytest.mark.parametrize(
    "masks", [np.ones((2, 4), bool), np.ones(4, bool), np.ones((2, 3, 1), bool)]
)
def test_wrong_mask_shape(masks):
    with pytest.raises(ValueError, match="shape"):
        _game()(masks)


def test_float_masks_rejected():
    with pytest.raises(TypeError, match="dtype"):
        _game()(np.ones((2, 3)))


def test_non_binary_int_masks_rejected():
    with pytest.raises(ValueError, match="0 and 1"):
        _game()(np.array([[0, 2, 1]]))


def test_no_players_and_duplicate_names():
    with pytest.raises(ValueError, match="at least one player"):
        AdditiveGame([])
    with pytest.raises(ValueError, match="at least one player"):
        FunctionGame(lambda m: np.zeros(len(m)), 0)
    with pytest.raises(ValueError, match="unique"):
        FunctionGame(lambda m: np.zeros(len(m)), ["a", "b", "a"])


def test_unanimity_bad_terms():
    with pytest.raises(ValueError, match="outside"):
        UnanimityGame(3, [(0, 3)], [1.0])
    with pytest.raises(ValueError, match="empty"):
        UnanimityGame(3, [()], [1.0])
    with pytest.raises(ValueError, match="one coefficient per term"):
        UnanimityGame(3, [(0,), (1,)], [1.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_utility_names_the_coalition(bad):
    def fn(masks):
        out = masks.sum(1).astype(float)
        out[(masks == [True, False, True, False]).all(1)] = bad
        return out

    game = FunctionGame(fn, 4)
    masks = np.array([[1, 1, 0, 0], [1, 0, 1, 0]], bool)
    with pytest.raises(NonFiniteUtilityError) as err:
        game(masks)
    msg = str(err.value)
    assert "1010" in msg and "[0, 2]" in msg  # the coalition, as key and as members
    assert isinstance(err.value, ValueError)


def test_wrong_output_length():
    game = FunctionGame(lambda m: np.zeros(len(m) + 1), 3, name="too_long")
    with pytest.raises(ValueError, match="2 utilities for 1 coalitions"):
        game(np.ones((1, 3), bool))
