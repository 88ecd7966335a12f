"""What an estimator can reach and claim (issue #30): the budgeted view hides the game
it wraps, and an estimator's declarations and claimed cost and exactness are checked."""

from __future__ import annotations

import numpy as np
import pytest

from surrogateshap import registry
from surrogateshap.estimator import Estimator
from surrogateshap.game import BudgetedGame, Game, all_coalitions
from surrogateshap.games import AdditiveGame

W = np.array([1.0, 2.0, 4.0])


# ------------------------------------------------------- 3a. the wrapped game is out of reach


def test_the_budgeted_view_holds_no_reference_to_the_game_it_wraps():
    # a plug-in read game._BudgetedGame__game (or scanned vars(game)) and reported exact
    # values at 0 evaluations
    counted = BudgetedGame(AdditiveGame(W), budget=2)
    with pytest.raises(AttributeError):
        counted._BudgetedGame__game  # noqa: B018
    assert [k for k, v in vars(counted).items() if isinstance(v, Game)] == []
    with pytest.raises(AttributeError, match="passes on only"):
        counted._ask("exact_values")
    # what it passes on still works, and is counted
    assert counted(np.eye(3, dtype=bool)[:2]).tolist() == [1.0, 2.0] and counted.n_evaluations == 2
    assert counted.cost_of(np.eye(3, dtype=bool)) == 3.0 and counted.cache_id() == AdditiveGame(W).cache_id()


# ------------------------------------------------------- 3b. declarations and claims


@pytest.fixture
def register_temp():
    names = []

    def reg(name, cls):
        names.append(name)
        return registry.register(name)(cls)

    yield reg
    for name in names:
        registry.unregister(name)


@pytest.mark.parametrize("field, value, error", [
    ("index", "shap", ValueError),
    ("is_exact", "yes", TypeError),
    ("uses_budget", 1, TypeError),
    ("requires", ["model"], TypeError),
])
def test_malformed_declarations_are_refused_at_registration(register_temp, field, value, error):
    cls = type("Declared", (Estimator,), {field: value, "_estimate": lambda self, g, b, r: np.zeros(g.n_players)})
    with pytest.raises(error, match=rf"estimator '_test-declared': {field} must"):
        register_temp("_test-declared", cls)
    assert "_test-declared" not in registry.available_estimators()


def _claiming(evaluate: int, **claims):
    class Claiming(Estimator):
        exact_at_full_budget = False  # run its own procedure at 2**n

        def _estimate(self, game, budget, rng):
            if evaluate:
                game(all_coalitions(game.n_players)[:evaluate])
            return {"values": W.copy(), **claims}

    return Claiming


@pytest.mark.parametrize("evaluate, claims, match", [
    (0, {"cost": 0, "exact": True}, r"exact=True after evaluating 0 of the 2\*\*3"),
    (7, {"exact": True}, r"exact=True after evaluating 7 of the 2\*\*3"),
    (0, {"cost": -1.0}, "cost=-1.0: a cost must be a finite number >= 0"),
    (0, {"cost": float("nan")}, "cost=nan"),
    (0, {"cost": "free"}, "cost='free'"),
    (2, {"cost": 0.0}, r"cost=0.0 evaluations, below the 2.0 its 2 game evaluations cost"),
    (0, {"exact": "yes"}, "exact='yes'"),
])
def test_false_claims_of_cost_or_exactness_are_refused(register_temp, evaluate, claims, match):
    register_temp("_test-claiming", _claiming(evaluate, **claims))
    with pytest.raises((ValueError, TypeError), match=rf"_test-claiming reported {match}"):
        registry.get_estimator("_test-claiming").estimate(AdditiveGame(W), budget=7)


def test_true_claims_pass(register_temp):
    # every coalition evaluated: exact; a model-based cost in its own unit may be anything >= 0
    register_temp("_test-claiming", _claiming(8, exact=True))
    att = registry.get_estimator("_test-claiming").estimate(AdditiveGame(W), budget=8)
    assert att.exact and att.cost == 8.0 and att.n_evaluations == 8
    registry.unregister("_test-claiming")
    register_temp("_test-claiming", _claiming(0, cost=0.0, cost_unit="gradients"))
    assert registry.get_estimator("_test-claiming").estimate(AdditiveGame(W), budget=7).cost == 0.0


# ------------------------------------------------------- 6. utilities beyond float32's range


@pytest.mark.parametrize("efficiency", ["equal-split", "centered", "none"])
def test_surrogateshap_on_huge_utilities_is_the_unscaled_fit_scaled(efficiency):
    # xgboost's float32 labels: a C++ trace at 1e39; at 1e19 its gains overflowed and
    # the fit was silently empty (every player gap / n)
    from surrogateshap.game import FunctionGame

    def values(scale):
        game = FunctionGame(lambda m: scale * (m @ np.array([1.0, 2.0, 3.0, 4.0]) + 3.0), 4,
                            identity=f"scaled-{scale}")
        est = registry.get_estimator("surrogateshap", efficiency=efficiency, model_params={"n_estimators": 50})
        return est.estimate(game, budget=12, seed=0)

    base = values(1.0)
    for scale in (1e19, 1e39, 1e300):
        att = values(scale)
        np.testing.assert_allclose(att.values / scale, base.values, rtol=1e-6)
        assert att.extra["label_scale"] > 1.0 and base.extra["label_scale"] == 1.0
        if efficiency != "none":  # efficiency: the values share v(N) - v(empty) = 10 * scale
            assert abs(att.values.sum() / scale - 10.0) < 1e-9


def test_fit_surrogate_names_the_range_it_cannot_fit():
    from surrogateshap.estimators.surrogate import fit_surrogate

    masks = all_coalitions(3)
    with pytest.raises(ValueError, match=r"utilities up to 1e\+39 .*float32 .*divide them by a power of two"):
        fit_surrogate(masks, np.full(8, 1e39), rng=0, n_estimators=2)
