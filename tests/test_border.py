"""The size-strata planner (sampling.border_sizes / border_masks / water_fill), the
border trick of KernelSHAP and Leverage SHAP, and exact.shapley_of_partial_game."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

import baselines  # noqa: F401  (registers the estimators)
from surrogateshap import get_estimator, random_unanimity_game
from surrogateshap.exact import shapley_from_table, shapley_of_partial_game
from surrogateshap.game import all_coalitions
from surrogateshap.sampling import (
    anchor_masks,
    border_masks,
    border_sizes,
    distinct_subsets,
    kernel_size_distribution,
    mask_key,
    sample_kernel_coalitions,
    water_fill,
)


def rel_l2(est, ref):
    return float(np.linalg.norm(np.asarray(est) - ref) / np.linalg.norm(ref))


def test_border_sizes_plan():
    # n = 10: sizes 1 and 9 cost 20 evaluations; with 64 - 2 left their kernel share
    # (0.35) draws 22 > 20, so they are enumerated; sizes 2 and 8 (90) are not
    assert border_sizes(10, 64) == ((1, 9), 42)
    assert border_sizes(10, 20) == ((), 18)  # 18 * 0.35 < 20
    # the whole power set: every size, nothing left
    assert border_sizes(10, 1024) == (tuple(range(1, 10)), 0)
    assert border_sizes(10, 5000)[0] == tuple(range(1, 10))
    # enumerated sizes come in complement pairs, from the outside in
    for n in (5, 8, 13, 30):
        for budget in (10, 100, 1000, 10**5):
            sizes, left = border_sizes(n, budget)
            assert set(sizes) == {n - s for s in sizes}
            k = max((s for s in sizes if 2 * s <= n), default=0)
            assert set(sizes) == set(range(1, k + 1)) | set(range(n - k, n))
            assert left == budget - 2 - sum(comb(n, s) for s in sizes) >= 0
    with pytest.raises(ValueError, match="weights"):
        border_sizes(5, 30, weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="anchors"):
        border_sizes(5, 1)


def test_border_masks_are_every_coalition_of_those_sizes_in_complement_pairs():
    for n, sizes in [(6, (1, 5)), (6, (1, 2, 3, 4, 5)), (7, (2, 5)), (8, (4,)), (5, (2,))]:
        M = border_masks(n, sizes)
        keys = {mask_key(m) for m in M}
        assert len(keys) == len(M) == sum(comb(n, s) for s in sizes)
        assert set(M.sum(axis=1)) == set(sizes)
        if all(n - s in sizes for s in sizes):
            np.testing.assert_array_equal(M[1::2], ~M[0::2])


def test_water_fill_caps_and_spreads():
    counts = water_fill([10, 45, 120, 210], np.ones(4), 200)
    assert counts.tolist()[0] == 10 and counts.sum() == 200 and (counts <= [10, 45, 120, 210]).all()
    assert water_fill([3, 3], np.ones(2), 100).tolist() == [3, 3]


def test_distinct_subsets():
    rng = np.random.default_rng(0)
    for n, k, m in [(10, 3, 50), (10, 3, 120), (30, 5, 40), (6, 0, 3)]:
        Z = distinct_subsets(n, k, m, rng)
        assert len(Z) == min(m, comb(n, k)) == len({mask_key(z) for z in Z})
        assert (Z.sum(axis=1) == k).all()


def test_restricted_kernel_sampling_draws_only_those_sizes_with_kernel_odds():
    rng = np.random.default_rng(1)
    Z = sample_kernel_coalitions(10, 20000, rng, paired=True, sizes=[2, 3, 7, 8])
    k = Z.sum(axis=1)
    assert set(k) == {2, 3, 7, 8}
    p = kernel_size_distribution(10)[[1, 2]]
    assert np.mean(k == 2) / np.mean(k == 3) == pytest.approx(p[0] / p[1], rel=0.1)
    np.testing.assert_array_equal(Z[1::2], ~Z[0::2])


@pytest.mark.parametrize("name", ["kernelshap", "leverageshap"])
def test_border_is_exact_with_every_coalition_and_plain_sampling_stays_reachable(name):
    game = random_unanimity_game(10, seed=2, offset=0.5)
    truth = game.exact_values()
    att = get_estimator(name).estimate(game, 2**10, seed=0)
    np.testing.assert_allclose(att.values, truth, rtol=0, atol=1e-8)
    assert att.exact  # every coalition fits: answered by enumeration
    plain = get_estimator(name, border=False).estimate(game, 64, seed=0)
    assert plain.extra["border_sizes"] == []
    bordered = get_estimator(name).estimate(game, 64, seed=0)
    assert bordered.extra["border_sizes"] == [1, 9]
    assert not np.allclose(plain.values, bordered.values)


@pytest.mark.parametrize("name", ["kernelshap", "leverageshap"])
@pytest.mark.parametrize("budget", [4, 30, 64, 300, 1000])
def test_border_estimators_are_efficient(name, budget):
    game = random_unanimity_game(10, seed=6, offset=3.0)
    v_empty, v_full = game(anchor_masks(10))
    att = get_estimator(name).estimate(game, budget, seed=0)
    assert att.values.sum() == pytest.approx(v_full - v_empty, abs=1e-8)
    assert att.n_evaluations <= budget


def test_kernelshap_border_stderr_covers_the_error():
    game = random_unanimity_game(30, seed=1)
    truth = game.exact_values()
    errs, ses = [], []
    for seed in range(6):
        att = get_estimator("kernelshap").estimate(game, 1500, seed=seed)
        assert att.extra["border_sizes"]  # the border part is in use
        errs.append(np.abs(att.values - truth))
        ses.append(att.stderr)
    errs, ses = np.concatenate(errs), np.concatenate(ses)
    assert np.mean(errs <= 3 * ses + 1e-9) >= 0.9
    assert np.mean(errs <= 3 * ses / 5 + 1e-9) < 0.9


def test_shapley_of_partial_game():
    n = 7
    rng = np.random.default_rng(0)
    v = rng.normal(size=2**n)
    M = all_coalitions(n)
    np.testing.assert_allclose(shapley_of_partial_game(M, v, n), shapley_from_table(v, n),
                               atol=1e-12)
    keep = rng.random(2**n) < 0.3
    np.testing.assert_allclose(shapley_of_partial_game(M[keep], v[keep], n),
                               shapley_from_table(np.where(keep, v, 0.0), n), atol=1e-12)
    # on the anchors alone: the equal-split correction
    d = shapley_of_partial_game(anchor_masks(n), np.array([-2.0, 5.0]), n)
    np.testing.assert_allclose(d, np.full(n, 7.0 / n))
