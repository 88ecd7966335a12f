"""Cooperative games over contributors: the one interface every estimator sees.

A game has ``players`` (n names) and maps a batch of coalitions, a boolean array of
shape (m, n), to float utilities of shape (m,). Wrappers add memoisation, cost
accounting, on-disk persistence (:mod:`surrogateshap.store`: resume after a crash) and
an enforced budget.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import itertools
import json
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from numbers import Real

import numpy as np

from surrogateshap.store import CoalitionStore, CorruptStoreError, StoreMismatchError, writer_id

__all__ = [
    "Game",
    "FunctionGame",
    "CachedGame",
    "BudgetedGame",
    "PlayersOnly",
    "BudgetExceededError",
    "NonFiniteUtilityError",
    "as_masks",
    "player_names",
    "coalition_key",
    "key_to_mask",
    "all_coalitions",
]


class BudgetExceededError(RuntimeError):
    """An estimator asked for more game evaluations than its budget allows."""


class NonFiniteUtilityError(ValueError):
    """A game returned NaN or inf for some coalition."""


def as_masks(coalitions, n_players: int, name: str = "coalitions") -> np.ndarray:
    """Validate coalitions and return them as a boolean (m, n) array.

    Accepts booleans, or integers that are all 0/1; a single 1-D coalition of length n
    becomes one row. Floats are rejected: a float mask is almost always a bug (weights,
    probabilities) and xgboost would treat it differently. ``name`` is the argument's
    name in error messages.
    """
    if isinstance(coalitions, (str, bytes)):
        raise TypeError(f"{name} must be boolean arrays of shape (m, {n_players}), not the text "
                        f"{coalitions!r} (a coalition key becomes a mask with key_to_mask)")
    arr = np.asarray(coalitions)
    if arr.ndim == 1 and arr.shape[0] == n_players:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n_players:
        raise ValueError(
            f"{name} must have shape (m, {n_players}) for a game of {n_players} "
            f"players; got shape {arr.shape}"
        )
    if arr.dtype == bool:
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"integer {name} must contain only 0 and 1")
        return arr.astype(bool)
    raise TypeError(
        f"{name} must be boolean (or 0/1 integer) arrays; got dtype {arr.dtype}"
    )


def player_names(players, name: str = "players") -> tuple[str, ...]:
    """A game's players: a count n (names p0..p{n-1}) or a sequence of unique names.
    A bool or a text is refused: ``True`` would be one player and ``"abc"`` three."""
    if isinstance(players, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{name} must be a number of players or a sequence of names; got "
                        f"{type(players).__name__} {players!r}")
    if isinstance(players, (int, np.integer)):
        if players < 1:
            raise ValueError(f"a game needs at least one player; {name}={int(players)} given")
        return tuple(f"p{i}" for i in range(int(players)))
    try:
        names = tuple(str(p) for p in players)
    except TypeError:
        raise TypeError(f"{name} must be a number of players or a sequence of names; got "
                        f"{type(players).__name__} {players!r}") from None
    if len(names) == 0:
        raise ValueError(f"a game needs at least one player; {name} is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"player names must be unique; {name} repeats "
                         f"{sorted({p for p in names if names.count(p) > 1})}")
    return names


def coalition_key(mask: np.ndarray) -> str:
    """A stable text key for one coalition: '0101...' in player order (built from the
    bytes at once: a character at a time, keys were most of an estimator's own time at
    n = 258)."""
    return (np.asarray(mask, dtype=bool).reshape(-1).view(np.uint8) + 48).tobytes().decode("ascii")


def key_to_mask(key: str) -> np.ndarray:
    return np.frombuffer(key.encode(), dtype=np.uint8) == ord("1")


def all_coalitions(n_players: int) -> np.ndarray:
    """Every coalition of n players, (2**n, n) booleans; row r has bit i = player i."""
    if n_players > 24:
        raise ValueError(f"refusing to enumerate 2**{n_players} coalitions")
    idx = np.arange(2**n_players, dtype=np.int64)[:, None]
    return ((idx >> np.arange(n_players)) & 1).astype(bool)


def _check_finite(values, masks: np.ndarray, who: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "O" and all(
        isinstance(v, Real) and not isinstance(v, (bool, np.bool_)) for v in arr.reshape(-1)
    ):
        arr = arr.astype(float)  # a list of Python numbers with mixed int/float types
    if arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{who} returned utilities of dtype {arr.dtype} (e.g. {arr.reshape(-1)[:1].tolist()}); "
            "a game must return real numbers (float or int), not complex, text, booleans "
            "or objects"
        )
    values = arr.astype(float).reshape(-1)
    if values.shape[0] != masks.shape[0]:
        raise ValueError(
            f"{who} returned {values.shape[0]} utilities for {masks.shape[0]} coalitions"
        )
    bad = ~np.isfinite(values)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        members = np.flatnonzero(masks[r]).tolist()
        raise NonFiniteUtilityError(
            f"{who} returned {values[r]} for coalition {coalition_key(masks[r])} "
            f"(players {members}); {int(bad.sum())} of {len(values)} utilities non-finite"
        )
    return values


class Game(ABC):
    """A cooperative game over named players.

    Subclasses implement ``_evaluate(masks)`` on validated boolean masks. ``cost_unit``
    names what one evaluation costs in the task's terms ("model trainings", "images
    generated"); ``cost_of(masks)`` is that amount for a batch of coalitions.
    """

    cost_unit: str = "evaluations"

    def __init__(self, players: Sequence[str] | int):
        self.players = player_names(players)

    @property
    def n_players(self) -> int:
        return len(self.players)

    def __call__(self, coalitions) -> np.ndarray:
        masks = as_masks(coalitions, self.n_players)
        if masks.shape[0] == 0:
            return np.zeros(0)
        return _check_finite(self._evaluate(masks), masks, self._label())

    def _label(self) -> str:
        """How error messages name this game."""
        name = getattr(self, "name", "")
        return f"{type(self).__name__} {name!r}" if isinstance(name, str) and name else type(self).__name__

    @abstractmethod
    def _evaluate(self, masks: np.ndarray) -> np.ndarray:
        """Utilities of the boolean (m, n) coalitions."""

    def cost_of(self, masks: np.ndarray) -> float:
        """Cost, in ``cost_unit``, of evaluating these coalitions (default: one each)."""
        return float(len(masks))

    def exact_values(self) -> np.ndarray | None:
        """Closed-form Shapley values where the game knows them, else None."""
        return None

    def is_prepaid(self, mask) -> bool:
        """Whether evaluating this coalition is already paid for (default: never)."""
        return False

    def cache_id(self) -> str:
        """Identifies the game for on-disk caches (the header of its store). Override to
        include everything its values depend on; the default knows only the class and
        the players."""
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}:{json.dumps(list(self.players))}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_players={self.n_players})"


class FunctionGame(Game):
    """A game from a callable mapping boolean (m, n) masks to (m,) utilities.

    ``identity`` names what the function computes, for on-disk caches; without it the
    game is identified by the function's content (module, qualified name, bytecode,
    constants, defaults, closure values and, for a callable object, its attributes): two
    different lambdas, or ``Utility(model_a)`` and ``Utility(model_b)``, never share a
    store. Content it cannot read is refused (pass ``identity``); module globals are not
    read, so pass ``identity`` when the function depends on them. The content is read
    when a store is opened, not frozen when the game is made, so a model trained in
    place is never served its old values; state the function updates as it runs (a
    counter, a memo) changes it too: give such a function an ``identity``.
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], players, name: str = "",
                 identity: str | None = None):
        super().__init__(players)
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "function")
        self.identity = identity

    def _evaluate(self, masks):
        return self.fn(masks)

    def cache_id(self) -> str:
        what = self.identity if self.identity is not None else f"code:{_callable_digest(self.fn)}"
        return f"FunctionGame:{json.dumps([self.name, what, list(self.players)])}"

    def _store_advice(self, found) -> str | None:
        """What to do when a store holds this function under another content identity:
        its code or state changed, maybe only state it updates as it runs (a counter, a
        memo). None when the store is of another game altogether."""
        prefix = "FunctionGame:"
        try:
            name, what, players = json.loads(found[len(prefix):]) if found.startswith(prefix) else [None] * 3
        except (AttributeError, TypeError, ValueError):
            return None
        if self.identity is not None or name != self.name or players != list(self.players):
            return None
        if not (isinstance(what, str) and what.startswith("code:")):
            return None
        return (f"FunctionGame {self.name!r} is identified by its code and the state it holds (closure "
                "values, attributes), and these differ from the store's; state the function updates "
                "as it runs (a counter, a memo) changes them too. If it still computes the same "
                f"utilities, keep the store: pass FunctionGame(..., identity={what!r}) to go on with "
                "it, and give a new store a stable identity of your own. If what it computes has "
                "changed, use another cache path.")


#: how deep :func:`_content` reads an object (a torch module takes 3 levels per submodule)
_MAX_DEPTH = 64


def _content(obj, depth: int = 0):
    """A JSON-able description of ``obj``'s content for :func:`_callable_digest`."""
    if depth > _MAX_DEPTH:  # cut off, two states differing below would hash alike: refuse
        raise _unidentifiable(f"a structure nested over {_MAX_DEPTH} levels deep (or containing itself)")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return [type(obj).__name__, repr(obj)]
    if isinstance(obj, bytes):
        return ["bytes", hashlib.sha1(obj).hexdigest()]
    if isinstance(obj, np.ndarray):
        data = obj.tobytes() if obj.dtype != object else repr(obj.tolist()).encode()
        return ["ndarray", str(obj.dtype), list(obj.shape), hashlib.sha1(data).hexdigest()]
    if isinstance(obj, np.generic):
        return [type(obj).__name__, repr(obj.item())]
    if isinstance(obj, (list, tuple, frozenset, set)):
        items = [_content(v, depth + 1) for v in obj]
        if isinstance(obj, (set, frozenset)):
            items = sorted(items, key=json.dumps)
        return [type(obj).__name__, items]
    if isinstance(obj, dict):
        return ["dict", sorted(([repr(k), _content(v, depth + 1)] for k, v in obj.items()), key=json.dumps)]
    if inspect.iscode(obj):
        return ["code", obj.co_name, obj.co_code.hex(), [_content(c, depth + 1) for c in obj.co_consts],
                list(obj.co_names)]
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if inspect.ismodule(obj) or isinstance(obj, type):
        return ["name", kind, getattr(obj, "__module__", ""), getattr(obj, "__qualname__", getattr(obj, "__name__", ""))]
    if isinstance(obj, Game):  # a game captured by a closure: its own identity
        return ["game", obj.cache_id()]
    if hasattr(obj, "detach") and hasattr(obj, "cpu") and hasattr(obj, "numpy"):  # a tensor
        return ["tensor", _content(obj.detach().cpu().numpy(), depth + 1)]
    if callable(obj) and not hasattr(obj, "__dict__"):
        return ["callable", _callable_description(obj, depth + 1)]
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict):
        # an object's state (a fitted model's arrays): two models with other weights differ
        out = ["object", kind, _content(state, depth + 1)]
        if callable(obj) and not isinstance(obj, type):
            out.append(_callable_description(obj, depth + 1, with_state=False))
        return out
    raise _unidentifiable(f"a {kind}")


def _unidentifiable(what: str) -> ValueError:
    return ValueError(
        f"cannot identify the content of {what} that the game's function is or holds, so two "
        "such games could share a cache; pass FunctionGame(..., identity='a name for this game')"
    )


def _is_global(fn) -> bool:
    """Whether ``fn`` is what its module holds under its qualified name (``len``,
    ``np.add``): a named singleton, identified by that name as a function is by its code."""
    obj = sys.modules.get(getattr(fn, "__module__", None) or "")
    for part in str(getattr(fn, "__qualname__", "") or "-").split("."):
        obj = getattr(obj, part, None)
    return obj is fn


def _own_state(fn, depth: int):
    """What a callable without bytecode carries besides its class: a callable object's
    attributes (``__dict__`` and ``__slots__``), a bound builtin's object. Two
    ``Utility(model)`` objects with other models differ by it."""
    if _is_global(fn):
        return None
    if isinstance(getattr(fn, "__dict__", None), dict):
        return ["attributes", _content(vars(fn), depth)]
    slots = [s for c in type(fn).__mro__ for s in getattr(c, "__slots__", ()) if hasattr(fn, s)]
    if slots:
        return ["slots", _content({s: getattr(fn, s) for s in slots}, depth)]
    owner = getattr(fn, "__self__", None)
    if owner is not None and not inspect.ismodule(owner):
        return ["bound", _content(owner, depth)]
    raise _unidentifiable(f"a {type(fn).__module__}.{type(fn).__qualname__}")


def _callable_description(fn, depth: int = 0, with_state: bool = True):
    if depth > _MAX_DEPTH:
        raise _unidentifiable(f"a callable wrapped over {_MAX_DEPTH} times (or wrapping itself)")
    if isinstance(fn, functools.partial):
        return ["partial", _content(fn.func, depth), _content(fn.args, depth), _content(fn.keywords, depth)]
    if inspect.ismethod(fn):
        return ["method", _callable_description(fn.__func__, depth), _content(fn.__self__, depth)]
    code = getattr(fn, "__code__", None)
    state = None
    if code is None:  # a builtin, ufunc or callable object: its names, class, __call__, state
        state = _own_state(fn, depth) if with_state else None
        call = getattr(type(fn), "__call__", None)
        code = getattr(call, "__code__", None)
        own = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
        name = f"{type(fn).__module__}.{type(fn).__qualname__}:{getattr(fn, '__module__', None)}.{own}"
        wrapped = getattr(fn, "__wrapped__", None)
        if wrapped is not None and wrapped is not fn:
            name += f":{json.dumps(_callable_description(wrapped, depth + 1))}"
    else:
        name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', '')}"
    cells = [c.cell_contents for c in (getattr(fn, "__closure__", None) or ()) if _filled(c)]
    out = ["function", name, None if code is None else _content(code, depth),
           _content(getattr(fn, "__defaults__", None), depth), _content(cells, depth)]
    return out if state is None else out + [state]


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _callable_digest(fn) -> str:
    """Content hash of a callable: what :meth:`FunctionGame.cache_id` keys stores by."""
    return hashlib.sha1(json.dumps(_callable_description(fn)).encode()).hexdigest()[:16]


class PlayersOnly(Game):
    """The players of a game and nothing else: what an estimator that plays no coalition
    (it reads the model) is given. Evaluating a coalition is an error."""

    def _evaluate(self, masks):
        raise RuntimeError("this estimator was given players, not a game: it cannot evaluate coalitions")

    def cache_id(self) -> str:
        return f"players:{json.dumps(list(self.players))}"


class CachedGame(Game):
    """Memoises a game by coalition, counts evaluations and cost, optionally on disk.

    ``n_evaluations`` counts coalitions the wrapped game actually computed (this
    session); ``n_queries`` counts rows asked for, hits included. With ``path`` the
    results persist in a :class:`CoalitionStore`, so an interrupted run resumes, and
    processes sharing the store split the work through its claims: each coalition is
    computed once, by one of them, and the others wait for its record.
    """

    def __init__(self, game: Game, path: str | os.PathLike | None = None):
        super().__init__(game.players)
        self.game = game
        self.cost_unit = game.cost_unit
        self.n_evaluations = 0
        self.n_queries = 0
        self.seconds = 0.0
        self.cost = 0.0
        self._memo: dict[str, float] = {}
        self.store = None
        if path is not None:
            try:
                self.store = CoalitionStore(path, {"game": game.cache_id()})
            except StoreMismatchError as e:
                advice = game._store_advice(e.found.get("game")) if isinstance(game, FunctionGame) else None
                if advice is None:
                    raise
                raise StoreMismatchError(e.path, e.found, e.expected, advice) from None
            self._take_stored()

    def _take_stored(self):
        for key in self.store.records:
            if key not in self._memo:
                self._memo[key] = self._stored(key)

    def _stored(self, key: str) -> float:
        """The stored utility of ``key``; a record without a finite one is named."""
        v = self.store.get(key).get("utility")
        if isinstance(v, bool) or not isinstance(v, Real) or not np.isfinite(v):
            raise CorruptStoreError(
                f"{self.store.path}: the record of coalition {key} has utility {v!r}, not a finite "
                f"number. Delete that row (sqlite3 {self.store.path} \"DELETE FROM records WHERE "
                f"key='{key}'\") or move the file away")
        return float(v)

    def _evaluate(self, masks):
        keys = [coalition_key(m) for m in masks]
        self.n_queries += len(keys)
        missing = list(dict.fromkeys(k for k in keys if k not in self._memo))
        if missing and self.store is None:
            self._compute(missing)
        elif missing:
            self._compute_shared(missing)
        return np.array([self._memo[k] for k in keys])

    def _compute(self, keys: list[str]):
        """Evaluate the wrapped game on ``keys`` in one call, keep (and store) the values."""
        chunk = np.stack([key_to_mask(k) for k in keys])
        t0 = time.perf_counter()
        vals = self.game(chunk)
        dt = time.perf_counter() - t0
        cost = self.game.cost_of(chunk)
        self.seconds += dt
        self.cost += cost
        self.n_evaluations += len(chunk)
        for k, v in zip(keys, vals):
            self._memo[k] = float(v)
            if self.store is not None and not self.store.append(
                k, {"utility": float(v), "seconds": dt, "cost": cost}
            ):  # another writer stored it first: keep one value per coalition
                self._memo[k] = self._stored(k)

    def _compute_shared(self, missing: list[str]):
        """One coalition at a time, so a crash loses at most one, each claimed first in
        the store's ledger: processes sharing the store compute each coalition once, and
        one that finds the rest claimed by another running process waits for its records."""
        me = writer_id(self)
        left = dict.fromkeys(missing)  # ordered
        naps = 0
        while left:
            self.store.refresh()
            for k in [k for k in itertools.islice(left, 64) if k in self.store]:
                self._memo[k] = self._stored(k)  # another process's
                del left[k]
            if not left:
                break
            # the first keys, or all of them when those are all taken
            got = self.store.claim(list(itertools.islice(left, 64)), 1, me, free_only=True)
            if not got and len(left) > 64:
                got = self.store.claim(list(left), 1, me, free_only=True)
            if not got:  # another running process is computing every one left
                time.sleep(min(0.5, 0.005 * 2 ** min(naps, 7)))
                naps += 1
                continue
            naps = 0
            k = got[0]
            try:
                self._compute([k])
            except BaseException:
                self.store.release([k], me)  # another process may take it now
                raise
            del left[k]

    def exact_values(self):
        return self.game.exact_values()

    def cost_of(self, masks):
        # what these coalitions cost in the wrapped game (the memo is this object's own)
        return self.game.cost_of(masks)

    def cache_id(self):
        return self.game.cache_id()


class BudgetedGame(Game):
    """Counts distinct coalitions an estimator evaluates and enforces its budget.

    Repeated coalitions are memoised and free: the budget is in distinct game
    evaluations, the unit every estimator in this project is compared on. This is the
    game an estimator is handed, so it keeps the wrapped game out of reach (no attribute,
    private or name-mangled, holds it: :func:`_sealed` does) and knows no exact values:
    everything an estimator learns about the game goes through the counted ``__call__``.
    A coalition the wrapped game reports as already paid for (:meth:`Game.is_prepaid`,
    e.g. a residual game over coalitions an earlier stage evaluated) is free too.
    """

    def __init__(self, game: Game, budget: int | None):
        super().__init__(game.players)
        self._ask = _sealed(game)
        self.budget = budget
        self.cost_unit = game.cost_unit
        self._memo: dict[str, float] = {}
        self._charged = 0
        self.cost = 0.0

    @property
    def game(self):
        raise AttributeError(
            "a BudgetedGame does not hand out the game it wraps: evaluate coalitions by "
            "calling it, so that every evaluation is counted against the budget"
        )

    @property
    def n_evaluations(self) -> int:
        return self._charged

    @property
    def n_distinct(self) -> int:
        """Distinct coalitions evaluated through this view, prepaid ones included."""
        return len(self._memo)

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - self._charged

    def _evaluate(self, masks):
        keys = [coalition_key(m) for m in masks]
        missing = list(dict.fromkeys(k for k in keys if k not in self._memo))
        if missing:
            miss = np.stack([key_to_mask(k) for k in missing])
            paid = np.array([self._ask("is_prepaid", m) for m in miss], dtype=bool)
            n_new = int((~paid).sum())
            if self.budget is not None and self._charged + n_new > self.budget:
                raise BudgetExceededError(
                    f"evaluating {n_new} new coalitions would exceed the budget "
                    f"of {self.budget} game evaluations ({self._charged} used)"
                )
            vals = self._ask("__call__", miss)
            if n_new:
                self.cost += self._ask("cost_of", miss[~paid])
            self._charged += n_new
            self._memo.update(zip(missing, map(float, vals)))
        return np.array([self._memo[k] for k in keys])

    def is_cached(self, mask) -> bool:
        """True when evaluating ``mask`` costs nothing (memoised or prepaid)."""
        return coalition_key(mask) in self._memo or self._ask("is_prepaid", mask)

    def cost_of(self, masks):
        return self._ask("cost_of", masks)

    def exact_values(self):
        """None: the truth is not the estimator's to read (ground truth lives with the caller)."""
        return None

    def cache_id(self):
        return self._ask("cache_id")


def _sealed(game: Game):
    """The four methods of ``game`` a :class:`BudgetedGame` uses, behind a closure: the
    budgeted view holds this function, not the game, so neither ``vars()`` nor a
    name-mangled attribute reaches the wrapped game or its exact values."""
    allowed = ("__call__", "is_prepaid", "cost_of", "cache_id")

    def ask(method: str, *args):
        if method not in allowed:
            raise AttributeError(f"a BudgetedGame passes on only {allowed} of the game it wraps")
        return getattr(game, method)(*args)

    return ask


def stable_hash(obj) -> str:
    """Short content hash of a JSON-serialisable object (configs in cache keys)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]
