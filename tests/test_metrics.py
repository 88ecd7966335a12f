"""Metrics against hand-computed numbers and games with known values."""

from math import comb, sqrt

import numpy as np
import pandas as pd
import pytest

from surrogateshap import AdditiveGame, Attribution, UnanimityGame
from surrogateshap.metrics import (
    compare_to_exact,
    lds,
    lds_summary,
    relative_l2,
    sample_test_coalitions,
    spearman,
    topk_recall,
    topk_removal,
)

# ---------------------------------------------------------------- test coalitions


@pytest.mark.parametrize("n, alpha", [(20, 0.5), (11, 0.5), (10, 0.3), (12, 0.8), (258, 0.5)])
def test_test_coalitions_keep_exactly_int_alpha_n(n, alpha):
    masks = sample_test_coalitions(n, alpha=alpha, m=50, seed=1)
    assert masks.dtype == bool and masks.shape == (50, n)
    assert (masks.sum(1) == max(1, int(alpha * n))).all()
    assert len({r.tobytes() for r in masks}) == 50  # distinct


def test_test_coalitions_edge_cases():
    # tiny alpha * n keeps one player; n = 1 has only the full coalition
    assert (sample_test_coalitions(10, alpha=0.01, m=5).sum(1) == 1).all()
    assert sample_test_coalitions(1, m=3).all()
    # fewer distinct coalitions (C(5, 2) = 10) than rows: all used, evenly cycled
    masks = sample_test_coalitions(5, alpha=0.5, m=25, seed=0)
    keys, counts = np.unique([r.tobytes() for r in masks], return_counts=True)
    assert len(keys) == comb(5, 2) and counts.max() - counts.min() <= 1


def test_test_coalitions_seeded():
    a = sample_test_coalitions(30, m=20, seed=3)
    assert np.array_equal(a, sample_test_coalitions(30, m=20, seed=3))
    assert not np.array_equal(a, sample_test_coalitions(30, m=20, seed=4))


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5])
def test_test_coalitions_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        sample_test_coalitions(10, alpha=alpha)


@pytest.mark.parametrize("kw", [{"n": 0}, {"n": 2.5}, {"n": 10, "m": 0}])
def test_test_coalitions_bad_sizes(kw):
    with pytest.raises(ValueError):
        sample_test_coalitions(**{"n": 10, **kw})


# ---------------------------------------------------------------- LDS


def test_lds_exact_values_of_additive_game_is_100():
    rng = np.random.default_rng(0)
    game = AdditiveGame(rng.normal(size=15), offset=3.0)
    masks = sample_test_coalitions(15, m=100)
    assert lds(game.exact_values(), masks, game(masks)) == pytest.approx(100.0)
    # an Attribution is accepted as well as an array
    att = Attribution(game.exact_values(), game.players)
    assert lds(att, masks, game(masks)) == pytest.approx(100.0)
    # reversed values: -100
    assert lds(-game.exact_values(), masks, game(masks)) == pytest.approx(-100.0)


def test_lds_of_random_ordering_is_near_zero():
    n = 60
    rng = np.random.default_rng(1)
    w = rng.normal(size=n)
    game = AdditiveGame(w)
    masks = sample_test_coalitions(n, m=400, seed=2)
    util = game(masks)
    scores = [lds(rng.permutation(w), masks, util) for _ in range(30)]
    assert abs(np.mean(scores)) < 6.0  # sd of one score is about 100 / sqrt(n) = 13


def test_quadratic_lds_beats_additive_with_exact_interactions():
    rng = np.random.default_rng(0)
    n = 10
    pairs = [tuple(rng.choice(n, 2, replace=False)) for _ in range(15)]
    terms = [(i,) for i in range(n)] + pairs
    coefs = list(rng.normal(0, 0.3, n)) + list(rng.normal(0, 3, 15))
    game = UnanimityGame(n, terms, coefs)
    masks = sample_test_coalitions(n, m=200, seed=0)
    util = game(masks)
    additive = lds(game.exact_values(), masks, util)
    quadratic = lds(game.exact_values(), masks, util, interactions=game.exact_interactions())
    assert quadratic > additive + 10
    assert quadratic > 85


def test_quadratic_prediction_formula():
    # Phi_01 = 4: prediction on {0,1} = phi0 + phi1 + 1/2 (4 + 4)
    phi = np.array([1.0, 2.0, 2.5])
    P = np.zeros((3, 3))
    P[0, 1] = P[1, 0] = 4.0
    P[2, 2] = 100.0  # diagonal ignored
    masks = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=bool)
    # quadratic predictions 7, 3.5, 4.5 rank like the utilities
    assert lds(phi, masks, [3.0, 1.0, 2.0], interactions=P) == pytest.approx(100.0)
    # additive 3, 3.5, 4.5: ranks 1,2,3 vs 3,1,2, sum d^2 = 6, rho = 1 - 36/24
    assert lds(phi, masks, [3.0, 1.0, 2.0]) == pytest.approx(-50.0)


def test_lds_constant_predictions_give_nan():
    masks = sample_test_coalitions(8, m=10)
    with pytest.warns(RuntimeWarning, match="constant"):
        assert np.isnan(lds(np.ones(8), masks, np.arange(10.0)))
    with pytest.warns(RuntimeWarning, match="constant"):
        assert np.isnan(lds(np.arange(8.0), masks, np.ones(10)))


def test_lds_bad_input():
    masks = sample_test_coalitions(6, m=5)
    phi, util = np.arange(6.0), np.arange(5.0)
    with pytest.raises(ValueError, match="shape"):
        lds(phi[:5], masks, util)  # values and coalitions disagree on n
    with pytest.raises(ValueError, match="test_utilities"):
        lds(phi, masks, util[:4])
    with pytest.raises(ValueError, match="NaN"):
        lds(phi, masks, np.array([1.0, np.nan, 2, 3, 4]))
    with pytest.raises(TypeError, match="dtype"):
        lds(phi, masks.astype(float), util)
    with pytest.raises(ValueError, match="0 and 1"):
        lds(phi, masks.astype(int) * 2, util)
    with pytest.raises(ValueError, match="values"):
        lds(np.array([np.nan] * 6), masks, util)
    with pytest.raises(ValueError, match="interactions"):
        lds(phi, masks, util, interactions=np.zeros((5, 5)))
    with pytest.raises(ValueError, match="symmetric"):
        lds(phi, masks, util, interactions=np.triu(np.ones((6, 6)), 1))
    with pytest.raises(ValueError, match="at least 2"):
        lds(phi, masks[:1], util[:1])


def test_lds_summary_interval_math():
    game = AdditiveGame(np.arange(1.0, 9.0))
    masks = sample_test_coalitions(8, m=30, seed=5)
    u = game(masks)
    U = np.stack([u, -u, u**3])  # LDS 100, -100, 100 (monotone transform)
    out = lds_summary(game.exact_values(), masks, U)
    per_seed = np.array([100.0, -100.0, 100.0])
    assert np.allclose(out["lds"], per_seed)
    assert out["mean"] == pytest.approx(100 / 3)
    std = np.std(per_seed, ddof=1)
    assert out["std"] == pytest.approx(std)
    assert out["ci95"] == pytest.approx(1.96 * std / sqrt(3))
    assert out["half_width"] == out["ci95"] and out["interval"] == "ci95"
    assert out["n_seeds"] == 3
    out_std = lds_summary(game.exact_values(), masks, U, interval="std")
    assert out_std["half_width"] == pytest.approx(std)
    std0 = lds_summary(game.exact_values(), masks, U, ddof=0)["std"]
    assert std0 == pytest.approx(np.std(per_seed))
    # one seed (1-D utilities): no spread to estimate
    one = lds_summary(game.exact_values(), masks, u)
    assert one["n_seeds"] == 1 and one["mean"] == pytest.approx(100.0) and np.isnan(one["std"])
    with pytest.raises(ValueError, match="interval"):
        lds_summary(game.exact_values(), masks, U, interval="ci99")
    with pytest.raises(ValueError, match="test_utilities"):
        lds_summary(game.exact_values(), masks, U[:, :10])


# ---------------------------------------------------------------- top-k removal

WEIGHTS = np.array([5.0, -1.0, 3.0, 0.0, 2.0, 8.0, -4.0, 1.0, 6.0, 7.0])


def test_topk_removal_on_additive_game_exact_deltas():
    calls = []
    base = AdditiveGame(WEIGHTS, offset=2.0)

    def counted(masks):
        calls.append(np.array(masks))
        return base(masks)

    df = topk_removal(WEIGHTS, counted, fractions=(0.1, 0.2, 0.3), n_random=4, seed=0)
    assert list(df.columns) == ["fraction", "k", "top", "bottom", "random_mean", "random_std"]
    assert df["k"].tolist() == [1, 2, 3]
    # removing players of an additive game changes v by minus their weights
    assert df["top"].tolist() == [-8.0, -15.0, -21.0]
    assert df["bottom"].tolist() == [4.0, 5.0, 5.0]  # -(-4), -(-4-1), -(-4-1+0)
    assert len(calls) == 1  # one batched call
    masks = calls[0]
    assert masks.dtype == bool and masks.shape == (1 + 3 * (2 + 4), 10)
    assert masks[0].all()  # the full coalition is in the batch
    assert sorted((10 - masks[1:].sum(1)).tolist()) == sorted([1] * 6 + [2] * 6 + [3] * 6)
    # random deltas: minus the removed weights, averaged
    rand = -((~masks[3:7]) @ WEIGHTS)
    assert df["random_mean"].iloc[0] == pytest.approx(rand.mean())
    assert df["random_std"].iloc[0] == pytest.approx(rand.std(ddof=1))
    assert (df["top"] <= df["random_mean"]).all() and (df["random_mean"] <= df["bottom"]).all()


def test_topk_removal_accepts_games_and_attributions():
    game = AdditiveGame(np.ones(20))
    att = Attribution(np.arange(20.0), game.players)
    df = topk_removal(att, game, fractions=(0.05, 0.5), n_random=3)
    assert isinstance(df, pd.DataFrame)
    assert df["k"].tolist() == [1, 10]
    # all weights equal: every removal of k players costs exactly k
    for col in ("top", "bottom", "random_mean"):
        assert df[col].tolist() == [-1.0, -10.0]
    assert df["random_std"].tolist() == [0.0, 0.0]
    df0 = topk_removal(att, game, n_random=0)
    assert df0["random_mean"].isna().all() and df0["random_std"].isna().all()


def test_topk_removal_bad_input():
    game = AdditiveGame(WEIGHTS)
    with pytest.raises(ValueError, match="players"):
        topk_removal(WEIGHTS[:5], game)
    with pytest.raises(ValueError, match="fractions"):
        topk_removal(WEIGHTS, game, fractions=(0.0, 0.2))
    with pytest.raises(ValueError, match="fractions"):
        topk_removal(WEIGHTS, game, fractions=(1.5,))
    with pytest.raises(ValueError, match="n_random"):
        topk_removal(WEIGHTS, game, n_random=-1)
    with pytest.raises(ValueError, match="utilities"):
        topk_removal(WEIGHTS, lambda masks: np.zeros(2))


# ---------------------------------------------------------------- against exact values

EXACT = np.array([3.0, 1.0, 2.0, 0.0])
EST = np.array([3.0, 2.0, 1.0, 0.0])


def test_hand_computed_comparisons():
    # ranks 4,2,3,1 vs 4,3,2,1: sum d^2 = 2, rho = 1 - 6*2 / (4*15) = 0.8
    assert spearman(EST, EXACT) == pytest.approx(0.8)
    # ||(0,1,-1,0)|| / ||(3,1,2,0)|| = sqrt(2 / 14)
    assert relative_l2(EST, EXACT) == pytest.approx(sqrt(1 / 7))
    assert relative_l2(EXACT, EXACT) == 0.0
    assert topk_recall(EST, EXACT, 1) == 1.0
    assert topk_recall(EST, EXACT, 2) == 0.5  # true {0, 2}, found {0, 1}
    assert topk_recall(EST, EXACT, 3) == 1.0
    assert topk_recall(-EXACT, EXACT, 1) == 0.0
    out = compare_to_exact(EST, EXACT, k=2)
    expected = {"relative_l2": sqrt(1 / 7), "spearman": 0.8, "topk_recall": 0.5, "k": 2}
    assert out == pytest.approx(expected)
    # Attributions work too; default k = max(1, round(0.1 * n)) = 1
    att = Attribution(EST, ("a", "b", "c", "d"))
    assert compare_to_exact(att, EXACT)["k"] == 1


def test_topk_recall_ties_in_exact_count_as_top():
    # players 0 and 1 tie for the top: either pick is a correct top-1
    assert topk_recall([0.0, 1.0, 0.0], [5.0, 5.0, 1.0], 1) == 1.0
    assert topk_recall([1.0, 0.0, 0.0], [5.0, 5.0, 1.0], 1) == 1.0


def test_comparison_undefined_and_bad_input():
    with pytest.warns(RuntimeWarning, match="zero"):
        assert np.isnan(relative_l2(EST, np.zeros(4)))
    with pytest.warns(RuntimeWarning, match="constant"):
        assert np.isnan(spearman(np.ones(4), EXACT))
    with pytest.raises(ValueError, match="exact"):
        relative_l2(EST, EXACT[:3])
    with pytest.raises(ValueError, match="k"):
        topk_recall(EST, EXACT, 0)
    with pytest.raises(ValueError, match="k"):
        topk_recall(EST, EXACT, 5)
    with pytest.raises(ValueError, match="1-D"):
        spearman(np.ones((2, 2)), EXACT)


def test_removal_masks_are_what_topk_removal_evaluates():
    from surrogateshap.metrics import removal_masks, topk_removal

    phi = np.random.default_rng(4).normal(size=9)
    seen = []

    def game(m):
        seen.append(m.copy())
        return m.sum(1).astype(float)

    topk_removal(phi, game, (0.1, 0.3), n_random=3, seed=7)
    masks, plan = removal_masks(phi, (0.1, 0.3), n_random=3, seed=7)
    np.testing.assert_array_equal(seen[0], masks)
    assert [(k, start) for _, k, start in plan] == [(1, 1), (3, 6)]
