"""Tests of the control-variate estimator "proxy-cv" (surrogateshap.estimators.control_variate).

The backbone is a pair of games with known values: a cheap game p (a random unanimity
game) and an expensive game v = a p + d, d a few small unanimity terms, so that
phi(v) = a phi(p) + phi(d) is known in closed form. Every accuracy claim is paired with
a deliberately broken variant that the same check rejects:

- unbiasedness over 200 seeds (z-score of the mean against the exact values) rejects
  the estimate without the residual (the cheap values alone);
- the RMSE against plain "permutation-antithetic" at the same expensive budget must
  match the ratio predicted from the variances of the antithetic pair marginals of the
  residual game and of v (computed here by brute force, independently of the module),
  which rejects the estimator with the control variate switched off (c = 0).
"""

from __future__ import annotations

import numpy as np
import pytest

from surrogateshap import (
    AdditiveGame,
    CachedGame,
    FunctionGame,
    UnanimityGame,
    available_estimators,
    get_estimator,
    random_unanimity_game,
)
from surrogateshap.estimators.control_variate import ProxyControlVariate, optimal_coefficient

N = 10
BUDGET = 64  # three antithetic pairs at n = 10 (2n for the first, 2(n - 1) after)
SEEDS = range(200)
SMALL = [((0, 1), 0.8), ((2, 3, 4), -1.0), ((5,), 0.5), ((6, 7), 0.7), ((1, 8, 9), 0.6)]
Z_MAX = 4.0  # max |z| over 10 players: a false alarm has probability ~ 6e-4


def _pair(a: float = 1.0, n: int = N, cheap=None, small=SMALL):
    """(cheap, expensive = a * cheap + small terms, the small terms as a game)."""
    cheap = cheap if cheap is not None else random_unanimity_game(n, seed=1)
    terms = [t for t, _ in small]
    coefs = [c for _, c in small]
    exp = UnanimityGame(n, cheap.terms + terms, list(a * cheap.coefficients) + coefs)
    return cheap, exp, UnanimityGame(n, terms, coefs)


def _pair_marginals(game, n_pairs=20000, seed=123) -> np.ndarray:
    """Antithetic pair marginals (n_pairs, n) by brute force: the sampler's unit."""
    n = game.n_players
    rng = np.random.default_rng(seed)
    out = np.zeros((n_pairs, n))
    orders = np.array([rng.permutation(n) for _ in range(n_pairs)])
    for order in (orders, orders[:, ::-1]):
        masks = np.zeros((n_pairs, n + 1, n), dtype=bool)
        for j in range(n):
            masks[:, j + 1] = masks[:, j]
            masks[np.arange(n_pairs), j + 1, order[:, j]] = True
        v = game(masks.reshape(-1, n)).reshape(n_pairs, n + 1)
        out[np.arange(n_pairs)[:, None], order] += np.diff(v, axis=1) / 2
    return out


def _max_z(estimates: np.ndarray, exact: np.ndarray) -> float:
    """Largest |mean - exact| / standard error over players (floored for zero spread:
    antithetic pairs average some marginals of pairwise terms to a constant)."""
    se = estimates.std(axis=0, ddof=1) / np.sqrt(len(estimates))
    floor = 1e-9 * (1.0 + np.linalg.norm(exact))
    return float(np.max(np.abs(estimates.mean(axis=0) - exact) / np.maximum(se, floor)))


def _rmse(estimates: np.ndarray, exact: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((estimates - exact) ** 2, axis=1))))


def _runs(name, exp, budget=BUDGET, seeds=SEEDS, **kw):
    proxy = kw.pop("proxy", None)
    est = get_estimator(name, **kw)
    res = {"proxy": proxy} if proxy is not None else {}
    return [est.estimate(exp, budget, seed=s, **res) for s in seeds]


@pytest.fixture(scope="module")
def runs():
    cheap, exp, small = _pair()
    return {
        "games": (cheap, exp, small),
        "cv": _runs("proxy-cv", exp, proxy=cheap, c=1.0),
        "cv_auto": _runs("proxy-cv", exp, proxy=cheap),
        "cv_off": _runs("proxy-cv", exp, proxy=cheap, c=0.0),
        "perm": _runs("permutation-antithetic", exp),
    }


def _values(atts):
    return np.array([a.values for a in atts])


# ------------------------------------------------------------------ unbiasedness


def test_registered():
    assert "proxy-cv" in available_estimators()
    est = get_estimator("proxy-cv")
    assert isinstance(est, ProxyControlVariate) and est.requires == ("proxy",)


def test_unbiased_with_fixed_c(runs):
    _, exp, _ = runs["games"]
    assert _max_z(_values(runs["cv"]), exp.exact_values()) < Z_MAX


def test_unbiased_with_cross_fitted_c(runs):
    _, exp, _ = runs["games"]
    assert runs["cv_auto"][0].extra["cross_fit"] is True
    assert _max_z(_values(runs["cv_auto"]), exp.exact_values()) < Z_MAX


def test_unbiasedness_check_rejects_the_residual_ignored(runs):
    # broken variant: values = the cheap game's values, the residual estimate dropped
    cheap, exp, _ = runs["games"]
    broken = np.array([a.extra["cheap_values"] for a in runs["cv"]])
    np.testing.assert_allclose(broken[0], cheap.exact_values())
    assert _max_z(broken, exp.exact_values()) > 100 * Z_MAX
    # and the reported decomposition is the estimate: c phi(p) + residual
    a = runs["cv"][0]
    np.testing.assert_allclose(
        a.values, a.extra["c"] * a.extra["cheap_values"] + a.extra["residual_values"]
    )


# ------------------------------------------------------------------ variance reduction


def _predicted_ratio(exp, residual_game) -> float:
    """RMSE(proxy-cv) / RMSE(permutation-antithetic) at equal units, from pair variances."""
    var_v = _pair_marginals(exp).var(axis=0).sum()
    var_r = _pair_marginals(residual_game).var(axis=0).sum()
    return float(np.sqrt(var_r / var_v))


def test_rmse_ratio_matches_the_residual_variance(runs):
    _, exp, small = runs["games"]
    exact = exp.exact_values()
    # same sampler, same budget, so the same number of units (check, then compare)
    units_cv = np.mean([a.extra["n_units"] for a in runs["cv"]])
    units_perm = np.mean([a.extra["n_permutations"] / 2 for a in runs["perm"]])
    assert units_cv == pytest.approx(units_perm, rel=0.05)
    predicted = _predicted_ratio(exp, small)  # c = 1: the residual game is the small terms
    base = _rmse(_values(runs["perm"]), exact)
    measured = _rmse(_values(runs["cv"]), exact) / base
    # 200 seeds estimate each RMSE to ~5%; 1.3 leaves room for the unit count's spread
    assert predicted < 0.35  # the pair is built so the proxy removes most variance
    assert predicted / 1.3 < measured < predicted * 1.3, (measured, predicted)
    # the estimator's own variance-ratio diagnostic agrees with the brute-force one
    reported = np.mean([a.extra["variance_ratio"] for a in runs["cv"]])
    assert np.sqrt(reported) == pytest.approx(predicted, rel=0.3)
    # broken variant: the control variate switched off (c = 0) is plain permutation
    # sampling and fails the same bound
    off = _rmse(_values(runs["cv_off"]), exact) / base
    assert not predicted / 1.3 < off < predicted * 1.3
    assert off == pytest.approx(1.0, abs=0.1)


def test_stderr_is_calibrated(runs):
    _, exp, _ = runs["games"]
    V = _values(runs["cv"])
    se = np.array([a.stderr for a in runs["cv"]])
    ratio = np.sqrt(np.mean(se**2)) / np.sqrt(np.mean(V.var(axis=0, ddof=1)))
    assert 0.8 < ratio < 1.25, ratio


def test_kernel_residual_beats_kernelshap():
    cheap, exp, small = _pair()
    exact = exp.exact_values()
    seeds = range(60)
    cv = _values(_runs("proxy-cv", exp, seeds=seeds, proxy=cheap, residual="kernel"))
    ks = _values(_runs("kernelshap", exp, seeds=seeds))
    ratio = _rmse(cv, exact) / _rmse(ks, exact)
    assert ratio < 1.3 * _predicted_ratio(exp, small), ratio


def test_kernel_coefficient_is_stable_with_few_pairs():
    # a weak proxy (v = p + half of an unrelated game) at 16 evaluations: 7 pairs. A
    # coefficient estimated through the ill-conditioned sandwich map exploded here
    # (one seed's values off by 1e11); the score-based one stays near the baselines'
    cheap = random_unanimity_game(N, seed=1)
    other = random_unanimity_game(N, seed=7)
    exp = UnanimityGame(N, cheap.terms + other.terms,
                        list(cheap.coefficients) + list(0.5 * other.coefficients))
    exact = exp.exact_values()
    V = _values(_runs("proxy-cv", exp, 16, range(40), proxy=cheap, residual="kernel"))
    err = np.linalg.norm(V - exact, axis=1) / np.linalg.norm(exact)
    assert err.max() < 1.0, err.max()


@pytest.mark.parametrize("residual", ["permutation", "kernel"])
def test_efficiency(residual):
    cheap, exp, _ = _pair()
    a = get_estimator("proxy-cv", residual=residual).estimate(exp, 100, seed=3, proxy=cheap)
    total = exp(np.ones(N, bool)) - exp(np.zeros(N, bool))
    assert a.values.sum() == pytest.approx(float(total[0]), abs=1e-9)


# ------------------------------------------------------------------ coefficient c


def test_auto_c_close_to_the_optimum():
    cheap, exp, _ = _pair(a=2.0)
    dv, dp = _pair_marginals(exp), _pair_marginals(cheap)
    xv, xp = dv - dv.mean(0), dp - dp.mean(0)
    c_opt = float(np.sum(xv * xp) / np.sum(xp * xp))
    assert c_opt == pytest.approx(2.0, abs=0.1)
    a = get_estimator("proxy-cv").estimate(exp, 400, seed=0, proxy=cheap)
    assert a.extra["c"] == pytest.approx(c_opt, abs=0.05)
    # the kernel residual minimises the variance of the regression scores, a slightly
    # different criterion (it lands at 1.94-1.95 here)
    k = get_estimator("proxy-cv", residual="kernel").estimate(exp, 400, seed=0, proxy=cheap)
    assert k.extra["c"] == pytest.approx(c_opt, abs=0.15)
    # with the estimated c the error is a fraction of the plain difference's (c = 1)
    exact = exp.exact_values()
    seeds = range(40)
    auto = _rmse(_values(_runs("proxy-cv", exp, 128, seeds, proxy=cheap)), exact)
    plain = _rmse(_values(_runs("proxy-cv", exp, 128, seeds, proxy=cheap, c=1.0)), exact)
    assert auto < 0.5 * plain


def test_optimal_coefficient_edge_cases():
    rng = np.random.default_rng(0)
    dp = rng.normal(size=(50, 4))
    dv = 3.0 * dp + 0.01 * rng.normal(size=(50, 4))
    assert optimal_coefficient(dv, dp, shrinkage=0.0) == pytest.approx(3.0, abs=0.01)
    assert optimal_coefficient(dv, dp) == pytest.approx(3.0, abs=0.01)  # precise: kept
    # a ridge prior worth 50 units pulls halfway to 1
    assert optimal_coefficient(dv, dp, shrinkage=50.0) == pytest.approx(2.0, abs=0.01)
    # pure noise: c_hat ~ 0 with a standard error as large, "auto" shrinks toward 1
    noise = optimal_coefficient(rng.normal(size=(4, 4)), rng.normal(size=(4, 4)))
    raw = optimal_coefficient(rng.normal(size=(4, 4)), rng.normal(size=(4, 4)), 0.0)
    assert abs(noise - 1.0) < 1.0 and np.isfinite(raw)
    assert optimal_coefficient(dv[:1], dp[:1]) == 1.0  # one unit: no covariance
    assert optimal_coefficient(dv, np.ones_like(dp)) == 1.0  # cheap marginals constant


def test_additive_proxy_falls_back_to_c_1():
    # an additive proxy's marginals never vary: c cannot be estimated and does not matter
    cheap = UnanimityGame(N, [(i,) for i in range(N)], np.arange(1.0, N + 1))
    _, exp, _ = _pair(cheap=cheap)
    a = get_estimator("proxy-cv").estimate(exp, 100, seed=0, proxy=cheap)
    assert a.extra["c"] == 1.0
    assert _max_z(_values(_runs("proxy-cv", exp, 64, range(100), proxy=cheap)),
                  exp.exact_values()) < Z_MAX


# ------------------------------------------------------------------ n = 50


def _pair50():
    n = 50
    cheap = random_unanimity_game(n, n_terms=60, seed=1)
    rng = np.random.default_rng(3)
    small = [(tuple(rng.choice(n, size=k, replace=False)), float(rng.normal()))
             for k in (1, 2, 2, 3, 3, 3)]
    return _pair(n=n, cheap=cheap, small=small)


def test_n50_with_exact_cheap_values():
    cheap, exp, small = _pair50()
    exact = exp.exact_values()
    seeds = range(20)
    cv = _runs("proxy-cv", exp, 500, seeds, proxy=cheap, cheap_values="exact")
    assert cv[0].extra["cheap_values_method"] == "closed-form"
    perm = _runs("permutation-antithetic", exp, 500, seeds)
    ratio = _rmse(_values(cv), exact) / _rmse(_values(perm), exact)
    predicted = _predicted_ratio(exp, small)  # 0.31
    assert predicted < 0.4
    assert predicted / 1.5 < ratio < 1.5 * predicted, (ratio, predicted)  # 20 seeds


def test_n50_with_surrogate_cheap_values():
    # the proxy hides its closed form, so n = 50 > exact_max_players falls back to
    # efficiency-exact SurrogateSHAP on the proxy with proxy_budget cheap evaluations
    cheap, exp, _ = _pair50()
    hidden = FunctionGame(cheap, cheap.players, name="hidden-proxy")
    assert hidden.exact_values() is None
    a = get_estimator("proxy-cv").estimate(exp, 500, seed=0, proxy=hidden)
    assert a.extra["cheap_values_method"] == "surrogateshap"
    assert a.extra["cheap_values_exact"] is False
    assert a.extra["proxy_evaluations"] >= 4096 and a.n_evaluations <= 500
    exact, norm = exp.exact_values(), np.linalg.norm(exp.exact_values())
    err = np.linalg.norm(a.values - exact) / norm
    cheap_err = np.linalg.norm(a.extra["cheap_values"] - cheap.exact_values()) / norm
    # the cheap values' error passes through (times c ~ 1): a bias no retraining removes,
    # on top of the residual's small sampling error
    assert err < cheap_err + 0.05
    assert err < 0.15


def test_enumerated_cheap_values_match_the_closed_form():
    cheap, exp, _ = _pair()
    hidden = FunctionGame(cheap, cheap.players, name="hidden-proxy")
    a = get_estimator("proxy-cv").estimate(exp, 80, seed=5, proxy=hidden)
    b = get_estimator("proxy-cv").estimate(exp, 80, seed=5, proxy=cheap)
    assert a.extra["cheap_values_method"] == "enumeration"
    assert b.extra["cheap_values_method"] == "closed-form"
    assert a.extra["proxy_evaluations"] == 2**N
    np.testing.assert_allclose(a.values, b.values, atol=1e-9)


# ------------------------------------------------------------------ interface


def test_budget_counts_expensive_evaluations_only():
    cheap, exp, _ = _pair()
    counted = CachedGame(exp)
    a = get_estimator("proxy-cv").estimate(counted, 100, seed=0, proxy=cheap)
    assert a.n_evaluations == counted.n_evaluations <= 100
    assert a.n_evaluations >= 100 - 2 * (N - 1)  # no unit that would still fit is left
    # each expensive evaluation reuses the cheap value of the same coalition, and the
    # closed-form cheap values cost nothing more
    assert a.extra["proxy_evaluations"] == a.n_evaluations


@pytest.mark.parametrize("residual, need", [("permutation", 2 * N), ("kernel", 4)])
def test_budget_minimum(residual, need):
    cheap, exp, _ = _pair()
    est = get_estimator("proxy-cv", residual=residual)
    with pytest.raises(ValueError, match="at least"):
        est.estimate(exp, need - 1, seed=0, proxy=cheap)
    a = est.estimate(exp, need, seed=0, proxy=cheap)
    assert a.n_evaluations <= need and np.isfinite(a.values).all()


def test_same_seed_identical_other_seed_differs():
    cheap, exp, _ = _pair()
    est = get_estimator("proxy-cv")
    a, b = (est.estimate(exp, 100, seed=7, proxy=cheap) for _ in range(2))
    c = est.estimate(exp, 100, seed=8, proxy=cheap)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.stderr, b.stderr)
    assert not np.allclose(a.values, c.values)


def test_players_must_match():
    cheap, exp, _ = _pair()
    est = get_estimator("proxy-cv")
    renamed = FunctionGame(cheap, [f"q{i}" for i in range(N)], name="renamed")
    with pytest.raises(ValueError, match="same players"):
        est.estimate(exp, 100, seed=0, proxy=renamed)
    reordered = FunctionGame(cheap, list(reversed(cheap.players)), name="reordered")
    with pytest.raises(ValueError, match="different order"):
        est.estimate(exp, 100, seed=0, proxy=reordered)
    with pytest.raises(ValueError, match="same players"):
        est.estimate(exp, 100, seed=0, proxy=random_unanimity_game(N + 1, seed=1))


def test_bad_arguments():
    cheap, exp, _ = _pair()
    with pytest.raises(TypeError, match="requires"):
        get_estimator("proxy-cv").estimate(exp, 100, seed=0)
    for params in ({"residual": "tmc"}, {"c": "optimal"}, {"c": float("nan")},
                   {"shrinkage": -1.0}, {"residual": "kernel", "cross_fit": True},
                   {"c": 1.0, "cross_fit": True}, {"cheap_values": np.zeros(3)}):
        with pytest.raises(ValueError):
            get_estimator("proxy-cv", **params).estimate(exp, 100, seed=0, proxy=cheap)


def test_given_cheap_values_are_used():
    cheap, exp, _ = _pair()
    a = get_estimator("proxy-cv", cheap_values=cheap.exact_values()).estimate(
        exp, 100, seed=0, proxy=cheap)
    b = get_estimator("proxy-cv").estimate(exp, 100, seed=0, proxy=cheap)
    assert a.extra["cheap_values_method"] == "given"
    np.testing.assert_allclose(a.values, b.values)


def test_one_player():
    cheap = AdditiveGame([2.0])
    exp = AdditiveGame([3.0], offset=1.0)
    a = get_estimator("proxy-cv").estimate(exp, 2, seed=0, proxy=cheap)
    assert a.values[0] == pytest.approx(3.0) and a.exact
