"""Game identity (what keys a game's on-disk store), the budgeted view's seal and the
players argument: each test names the defect it guards against (issue #30)."""

from __future__ import annotations

import operator

import numpy as np
import pytest

from surrogateshap.game import CachedGame, FunctionGame

N = 3


class Utility:
    """A callable object whose values depend on its attributes (a model it holds)."""

    def __init__(self, weights):
        self.weights = np.asarray(weights, dtype=float)

    def __call__(self, masks):
        return masks @ self.weights


class SlottedUtility:
    __slots__ = ("weights",)

    def __init__(self, weights):
        self.weights = np.asarray(weights, dtype=float)

    def __call__(self, masks):
        return masks @ self.weights


# ------------------------------------------------------- 1. a callable object's state


@pytest.mark.parametrize("kind", [Utility, SlottedUtility])
def test_callable_objects_with_other_state_do_not_share_a_store(tmp_path, kind):
    # FunctionGame(Utility(model_b), n) was served Utility(model_a)'s values from the
    # store: the object's attributes were no part of its identity
    path = tmp_path / "store.sqlite"
    full = np.ones((1, N), dtype=bool)
    assert CachedGame(FunctionGame(kind([1.0, 1.0, 2.0]), N), path=path)(full).tolist() == [4.0]
    with pytest.raises(ValueError, match="different game"):
        CachedGame(FunctionGame(kind([2.0, 2.0, 4.0]), N), path=path)
    assert CachedGame(FunctionGame(kind([2.0, 2.0, 4.0]), N), path=tmp_path / "b.sqlite")(full).tolist() == [8.0]
    # the same state resumes the store without evaluating
    again = CachedGame(FunctionGame(kind([1.0, 1.0, 2.0]), N), path=path)
    assert again(full).tolist() == [4.0] and again.n_evaluations == 0


def test_a_model_nested_deep_inside_a_callable_object_is_part_of_its_identity():
    # the content hash stopped at 8 levels: two torch models two Sequentials deep hashed alike
    torch = pytest.importorskip("torch")

    def model(seed):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(N, 1))))

    assert FunctionGame(Utility(0), N).cache_id() != FunctionGame(Utility(1), N).cache_id()
    a, b = Utility(0), Utility(0)
    a.weights, b.weights = model(0), model(1)
    assert FunctionGame(a, N).cache_id() != FunctionGame(b, N).cache_id()
    b.weights = model(0)
    assert FunctionGame(a, N).cache_id() == FunctionGame(b, N).cache_id()


def test_state_that_cannot_be_hashed_is_refused_with_the_identity_advice():
    # an itemgetter or an object that contains itself would hash alike whatever it holds
    looped = Utility([1.0, 2.0, 3.0])
    looped.me = looped
    for fn in (operator.itemgetter(0), looped):
        with pytest.raises(ValueError, match=r"pass FunctionGame\(\.\.\., identity="):
            FunctionGame(fn, N).cache_id()
    # an identity given by the caller needs no hash
    assert FunctionGame(looped, N, identity="looped-v1").cache_id()
    # bound builtins carry their object; module-level builtins and ufuncs their name
    assert FunctionGame({"a": 1}.get, N).cache_id() != FunctionGame({"a": 2}.get, N).cache_id()
    assert FunctionGame(np.add, N).cache_id() == FunctionGame(np.add, N).cache_id()


# ------------------------------------------------------- 2. state updated as it runs


def _counted():
    calls = [0]  # closure state the function updates: its content identity changes

    def utility(masks):
        calls[0] += 1
        return masks.sum(axis=1) * 1.0

    return utility


def test_a_counter_in_the_closure_gets_advice_that_keeps_the_store(tmp_path):
    # the mismatch said "use another cache path or delete the file": every finished
    # evaluation thrown away for a counter
    path = tmp_path / "store.sqlite"
    game = FunctionGame(_counted(), N, name="u")
    CachedGame(game, path=path)(np.eye(N, dtype=bool))
    with pytest.raises(ValueError, match="different game") as err:
        CachedGame(game, path=path)  # the counter moved: another content identity
    text = str(err.value)
    assert "delete" not in text and "a counter" in text
    stored = text.split("identity=")[1].split(")")[0].strip("'")
    assert stored.startswith("code:")
    # the advice works: the store's 3 records are served, nothing evaluated again
    kept = CachedGame(FunctionGame(_counted(), N, name="u", identity=stored), path=path)
    assert kept(np.eye(N, dtype=bool)).tolist() == [1.0, 1.0, 1.0] and kept.n_evaluations == 0
    # another game on that path is told only to use another path
    with pytest.raises(ValueError, match="different game") as err:
        CachedGame(FunctionGame(_counted(), N, name="other"), path=path)
    assert "identity=" not in str(err.value) and "another cache path" in str(err.value)


# ------------------------------------------------------- 7. players and coalitions


@pytest.mark.parametrize("players", [True, False, np.bool_(True), "abc", b"ab", 3.0, None])
def test_odd_player_specs_are_refused_naming_the_argument(players):
    # players=True was one player, players="abc" three
    with pytest.raises(TypeError, match=r"players must be a number of players or a sequence of names"):
        FunctionGame(lambda m: m.sum(1), players)


def test_player_counts_and_names_still_work_and_bad_ones_are_named():
    assert FunctionGame(lambda m: m.sum(1), 3).players == ("p0", "p1", "p2")
    assert FunctionGame(lambda m: m.sum(1), np.int64(2)).players == ("p0", "p1")
    assert FunctionGame(lambda m: m.sum(1), ["a", "b"]).players == ("a", "b")
    assert FunctionGame(lambda m: m.sum(1), ("x", 7)).players == ("x", "7")
    assert FunctionGame(lambda m: m.sum(1), np.array(["a", "b"])).players == ("a", "b")
    with pytest.raises(ValueError, match="players=-1 given"):
        FunctionGame(lambda m: m.sum(1), -1)
    with pytest.raises(ValueError, match=r"repeats \['a'\]"):
        FunctionGame(lambda m: m.sum(1), ["a", "b", "a"])


def test_an_attribution_refuses_a_text_for_its_players():
    from surrogateshap.attribution import Attribution

    with pytest.raises(TypeError, match="players must be a sequence of names; got str 'abc'"):
        Attribution(values=[1.0, 2.0, 3.0], players="abc")
    assert Attribution(values=[1.0, 2.0], players=["a", "b"]).players == ("a", "b")


def test_a_coalition_key_given_as_a_mask_is_refused_naming_key_to_mask():
    game = FunctionGame(lambda m: m.sum(1), 4)
    with pytest.raises(TypeError, match=r"coalitions must be boolean arrays of shape \(m, 4\), not the text '0110'"):
        game("0110")
