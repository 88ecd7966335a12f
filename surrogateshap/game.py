"""Cooperative games over contributors: the one interface every estimator sees.

A game has ``players`` (n names) and maps a batch of coalitions, a boolean array of
shape (m, n), to float utilities of shape (m,). Wrappers add memoisation, cost
accounting, on-disk persistence (resume after a crash) and an enforced budget.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = [
    "Game",
    "FunctionGame",
    "CachedGame",
    "BudgetedGame",
    "CoalitionStore",
    "BudgetExceededError",
    "NonFiniteUtilityError",
    "as_masks",
    "coalition_key",
    "key_to_mask",
    "all_coalitions",
]


class BudgetExceededError(RuntimeError):
    """An estimator asked for more game evaluations than its budget allows."""


class NonFiniteUtilityError(ValueError):
    """A game returned NaN or inf for some coalition."""


def as_masks(coalitions, n_players: int) -> np.ndarray:
    """Validate coalitions and return them as a boolean (m, n) array.

    Accepts booleans, or integers that are all 0/1; a single 1-D coalition of length n
    becomes one row. Floats are rejected: a float mask is almost always a bug (weights,
    probabilities) and xgboost would treat it differently.
    """
    arr = np.asarray(coalitions)
    if arr.ndim == 1 and arr.shape[0] == n_players:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n_players:
        raise ValueError(
            f"coalitions must have shape (m, {n_players}) for a game of {n_players} "
            f"players; got shape {arr.shape}"
        )
    if arr.dtype == bool:
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError("integer coalitions must contain only 0 and 1")
        return arr.astype(bool)
    raise TypeError(
        f"coalitions must be boolean (or 0/1 integer) arrays; got dtype {arr.dtype}"
    )


def coalition_key(mask: np.ndarray) -> str:
    """A stable text key for one coalition: '0101...' in player order."""
    return "".join("1" if b else "0" for b in np.asarray(mask, dtype=bool))


def key_to_mask(key: str) -> np.ndarray:
    return np.frombuffer(key.encode(), dtype=np.uint8) == ord("1")


def all_coalitions(n_players: int) -> np.ndarray:
    """Every coalition of n players, (2**n, n) booleans; row r has bit i = player i."""
    if n_players > 24:
        raise ValueError(f"refusing to enumerate 2**{n_players} coalitions")
    idx = np.arange(2**n_players, dtype=np.int64)[:, None]
    return ((idx >> np.arange(n_players)) & 1).astype(bool)


def _check_finite(values: np.ndarray, masks: np.ndarray, who: str) -> np.ndarray:
    values = np.asarray(values, dtype=float).reshape(-1)
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
    generated"); ``cost_per_evaluation`` is that amount per coalition.
    """

    cost_unit: str = "evaluations"

    def __init__(self, players: Sequence[str] | int):
        if isinstance(players, (int, np.integer)):
            players = [f"p{i}" for i in range(int(players))]
        players = tuple(str(p) for p in players)
        if len(players) == 0:
            raise ValueError("a game needs at least one player (n = 0 given)")
        if len(set(players)) != len(players):
            raise ValueError("player names must be unique")
        self.players = players

    @property
    def n_players(self) -> int:
        return len(self.players)

    def __call__(self, coalitions) -> np.ndarray:
        masks = as_masks(coalitions, self.n_players)
        if masks.shape[0] == 0:
            return np.zeros(0)
        return _check_finite(self._evaluate(masks), masks, type(self).__name__)

    @abstractmethod
    def _evaluate(self, masks: np.ndarray) -> np.ndarray:
        """Utilities of the boolean (m, n) coalitions."""

    def cost_of(self, masks: np.ndarray) -> float:
        """Cost, in ``cost_unit``, of evaluating these coalitions (default: one each)."""
        return float(len(masks))

    def exact_values(self) -> np.ndarray | None:
        """Closed-form Shapley values where the game knows them, else None."""
        return None

    def cache_id(self) -> str:
        """Identifies the game for on-disk caches; override to include configuration."""
        return f"{type(self).__name__}:{','.join(self.players)}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_players={self.n_players})"


class FunctionGame(Game):
    """A game from a callable mapping boolean (m, n) masks to (m,) utilities."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], players, name: str = ""):
        super().__init__(players)
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "function")

    def _evaluate(self, masks):
        return self.fn(masks)

    def cache_id(self) -> str:
        return f"FunctionGame:{self.name}:{','.join(self.players)}"


class CoalitionStore:
    """Append-only JSON-lines store of per-coalition records, safe to resume.

    The first line is a header naming what the records belong to; opening a store whose
    header differs raises instead of mixing results of two games. Each record is written
    and fsynced on its own line, so a crash loses at most the record being written; a
    torn last line is ignored on load.
    """

    def __init__(self, path: str | os.PathLike, header: dict):
        self.path = Path(path)
        self.header = dict(header)
        self.records: dict[str, dict] = {}
        self._n_torn = 0
        self._offset, self._inode = 0, None  # bytes already parsed (refresh reads on from here)
        self._lock_depth = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.locked():  # another driver may be creating or appending to it
            if self.path.exists() and self.path.stat().st_size > 0:
                self._load()
            else:
                with open(self.path, "w") as f:
                    f.write(json.dumps({"header": self.header}, sort_keys=True) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            self._offset, self._inode = self.path.stat().st_size, self.path.stat().st_ino

    def _load(self):
        with open(self.path) as f:
            text = f.read()
        lines = text.split("\n")
        try:
            head = json.loads(lines[0])["header"]
        except (ValueError, KeyError, IndexError) as e:
            raise ValueError(f"{self.path} is not a coalition store (bad header)") from e
        if head != json.loads(json.dumps(self.header, sort_keys=True)):
            raise ValueError(
                f"{self.path} holds results of a different game or configuration:\n"
                f"  file:     {head}\n  expected: {self.header}\n"
                "use another cache path or delete the file"
            )
        for line in lines[1:]:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                self._n_torn += 1  # interrupted write; that coalition is recomputed
                continue
            self.records[rec["key"]] = rec
        if self._n_torn or not text.endswith("\n"):
            # rewrite without the torn line (or with the missing final newline) so
            # appends start on a clean line
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            with open(tmp, "w") as f:
                f.write(json.dumps({"header": self.header}, sort_keys=True) + "\n")
                for rec in self.records.values():
                    f.write(json.dumps(rec, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    # --- several writers (drivers) on one file: an exclusive lock beside it --------
    @contextmanager
    def locked(self):
        """Exclusive ``fcntl.flock`` on ``<path>.lock`` (re-entrant in this object), so
        drivers on one cache never interleave a write or write one key twice."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield self
            finally:
                self._lock_depth -= 1
            return
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            self._lock_depth = 1
            try:
                yield self
            finally:
                self._lock_depth = 0
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def refresh(self) -> int:
        """Read the records other writers appended since the last read; returns how many
        keys are new. A trailing partial line (a write in progress) is left for later."""
        with open(self.path, "rb") as f:
            if os.fstat(f.fileno()).st_ino != self._inode:  # rewritten (torn line dropped)
                self._offset = 0
                self._inode = os.fstat(f.fileno()).st_ino
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        added = 0
        for line in data[:end].decode().split("\n"):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                self._n_torn += 1  # a writer died mid-line; that coalition is recomputed
                continue
            if "header" in rec:
                continue
            added += rec["key"] not in self.records
            self.records[rec["key"]] = rec
        self._offset += end
        return added

    def append(self, key: str, record: dict) -> bool:
        """Append one record unless another writer already stored ``key`` (then False)."""
        rec = {"key": key, **record}
        with self.locked():
            self.refresh()
            if key in self.records:
                return False
            with open(self.path, "ab") as f:
                if f.tell() > self._offset:  # a torn tail of a dead writer: end its line
                    f.write(b"\n")
                f.write((json.dumps(rec, sort_keys=True) + "\n").encode())
                f.flush()
                os.fsync(f.fileno())
                self._offset = f.tell()
            self.records[key] = rec
            return True


class CachedGame(Game):
    """Memoises a game by coalition, counts evaluations and cost, optionally on disk.

    ``n_evaluations`` counts coalitions the wrapped game actually computed (this
    session); ``n_queries`` counts rows asked for, hits included. With ``path`` the
    results persist in a :class:`CoalitionStore`, so an interrupted run resumes.
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
            self.store = CoalitionStore(path, {"game": game.cache_id()})
            for key, rec in self.store.records.items():
                self._memo[key] = float(rec["utility"])

    def _evaluate(self, masks):
        keys = [coalition_key(m) for m in masks]
        self.n_queries += len(keys)
        missing = list(dict.fromkeys(k for k in keys if k not in self._memo))
        if missing:
            miss = np.stack([key_to_mask(k) for k in missing])
            # evaluate one at a time when persisting, so a crash loses at most one
            chunks = [miss[i : i + 1] for i in range(len(miss))] if self.store else [miss]
            for chunk in chunks:
                t0 = time.perf_counter()
                vals = self.game(chunk)
                dt = time.perf_counter() - t0
                cost = self.game.cost_of(chunk)
                self.seconds += dt
                self.cost += cost
                self.n_evaluations += len(chunk)
                for m, v in zip(chunk, vals):
                    k = coalition_key(m)
                    self._memo[k] = float(v)
                    if self.store is not None:
                        self.store.append(
                            k, {"utility": float(v), "seconds": dt, "cost": cost}
                        )
        return np.array([self._memo[k] for k in keys])

    def exact_values(self):
        return self.game.exact_values()

    def cache_id(self):
        return self.game.cache_id()


class BudgetedGame(Game):
    """Counts distinct coalitions an estimator evaluates and enforces its budget.

    Repeated coalitions are memoised and free: the budget is in distinct game
    evaluations, the unit every estimator in this project is compared on.
    """

    def __init__(self, game: Game, budget: int | None):
        super().__init__(game.players)
        self.game = game
        self.budget = budget
        self.cost_unit = game.cost_unit
        self._memo: dict[str, float] = {}
        self.cost = 0.0

    @property
    def n_evaluations(self) -> int:
        return len(self._memo)

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - len(self._memo)

    def _evaluate(self, masks):
        keys = [coalition_key(m) for m in masks]
        missing = list(dict.fromkeys(k for k in keys if k not in self._memo))
        if missing:
            if self.budget is not None and len(self._memo) + len(missing) > self.budget:
                raise BudgetExceededError(
                    f"evaluating {len(missing)} new coalitions would exceed the budget "
                    f"of {self.budget} game evaluations ({len(self._memo)} used)"
                )
            miss = np.stack([key_to_mask(k) for k in missing])
            vals = self.game(miss)
            self.cost += self.game.cost_of(miss)
            self._memo.update(zip(missing, map(float, vals)))
        return np.array([self._memo[k] for k in keys])

    def is_cached(self, mask) -> bool:
        return coalition_key(mask) in self._memo

    def exact_values(self):
        return self.game.exact_values()

    def cache_id(self):
        return self.game.cache_id()


def stable_hash(obj) -> str:
    """Short content hash of a JSON-serialisable object (configs in cache keys)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]
