"""Tables of utilities for every coalition (and seed): ground truth and replayable games.

When every coalition of a game has been evaluated (e.g. all 1,024 retrainings of
``digits10``), the table *is* the game: :class:`TableGame` replays it so estimators can
be benchmarked on the real retraining game at any budget without retraining, with the
recorded cost (model trainings, seconds) charged per coalition looked up.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from surrogateshap.exact import shapley_from_table
from surrogateshap.game import Game, all_coalitions, coalition_key, coalition_keys

__all__ = ["CoalitionTable", "TableGame", "MissingCoalitionsError", "DamagedTableError"]


class DamagedTableError(ValueError):
    """A table's rows cannot be ground truth: a non-finite or non-numeric utility, a
    coalition or seed that is not one, or one (coalition, seed) given twice with two
    different values. The message names the file (or "table"), the row, coalition and seed."""


class MissingCoalitionsError(KeyError):
    """A table replayed as it is lacks coalitions it was asked for (``keys``, on ``seed``)."""

    def __init__(self, keys: list[str], seed=None, message: str = ""):
        self.keys, self.seed = list(keys), seed
        where = f"seed {seed}: " if seed is not None else ""
        super().__init__(message or f"{where}{len(self.keys)} coalition(s) not in the table, e.g. {self.keys[:3]}")

    def __str__(self):
        return self.args[0]


class CoalitionTable:
    """Utilities of every coalition for one or more seeds.

    A long-format frame with columns ``coalition`` (bit string, player i = character
    i), ``seed``, one column per utility, and optional ``seconds``.
    """

    def __init__(self, frame: pd.DataFrame, players, utilities, source=None):
        self.players = tuple(players)
        self.utilities = tuple(utilities)
        self.frame = _checked(frame, len(self.players), self.utilities, str(source or "table"))
        frame = self.frame
        self.seeds = tuple(sorted(int(s) for s in frame["seed"].unique()))
        self._index = {
            int(s): g.set_index("coalition") for s, g in frame.groupby("seed")
        }
        self._lookups: dict = {}

    @classmethod
    def read_csv(cls, path, players, utilities) -> "CoalitionTable":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"reference table {path} not found")
        if not path.is_file():
            raise DamagedTableError(f"reference table {path} is not a file")
        try:
            frame = pd.read_csv(path, dtype={"coalition": str}, comment="#")
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise DamagedTableError(f"reference table {path} is not a readable CSV table ({e})") from e
        return cls(frame, players, utilities, source=path)

    @property
    def n_players(self) -> int:
        return len(self.players)

    def content_id(self) -> str:
        """Hash of the players, utilities and every row: two different tables never
        share an on-disk cache."""
        if getattr(self, "_content_id", None) is None:
            rows = pd.util.hash_pandas_object(self.frame.sort_index(axis=1), index=False).to_numpy()
            head = json.dumps([list(self.players), list(self.utilities)]).encode()
            self._content_id = hashlib.sha1(head + rows.tobytes()).hexdigest()[:16]
        return self._content_id

    def is_complete(self, seed: int) -> bool:
        return len(self._index[seed]) == 2**self.n_players

    def complete_seeds(self) -> list[int]:
        return [s for s in self.seeds if self.is_complete(s)]

    @property
    def mean_seeds(self) -> list[int]:
        """The seeds a seed mean runs over: the complete ones, or every seed of a table
        of sampled coalitions (a task too large to enumerate)."""
        return self.complete_seeds() or list(self.seeds)

    def row(self, key: str, seed: int) -> dict | None:
        """The row of coalition ``key`` (a bit string) on ``seed`` as a dict, or None."""
        idx = self._index.get(int(seed))
        if idx is None or key not in idx.index:
            return None
        return idx.loc[key].to_dict()

    def held(self, masks) -> np.ndarray:
        """Which of the coalitions every seed of :attr:`mean_seeds` holds, (m,) bools."""
        keys = pd.Index(self._keys(masks))
        ok = np.ones(len(keys), dtype=bool)
        for s in self.mean_seeds:
            ok &= keys.isin(self._index[s].index)
        return ok

    def coalitions(self) -> np.ndarray:
        """Every coalition that all seeds of :attr:`mean_seeds` hold, (m, n) bools."""
        keys = sorted(set.intersection(*[set(self._index[s].index) for s in self.mean_seeds]))
        return np.array([[c == "1" for c in k] for k in keys], dtype=bool).reshape(-1, self.n_players)

    def _lookup(self, seed: int, utility: str):
        """(dense array indexed by coalition bits, or None; dict key -> value) of one seed."""
        key = (int(seed), utility)
        if key not in self._lookups:
            idx = self._index[int(seed)]
            vals = idx[utility].to_numpy(float)
            if len(idx) == 2**self.n_players:
                bits = np.array([int(k[::-1], 2) for k in idx.index], dtype=np.int64)
                dense = np.empty(2**self.n_players)
                dense[bits] = vals
                self._lookups[key] = (dense, None)
            else:
                self._lookups[key] = (None, dict(zip(idx.index, vals)))
        return self._lookups[key]

    def _keys(self, masks) -> list[str]:
        """The keys of (m, n) masks, built at once (one at a time they were most of a
        replayed estimate's own time at large n)."""
        return coalition_keys(np.asarray(masks, dtype=bool).reshape(-1, self.n_players))

    def held_on(self, masks, seed: int) -> np.ndarray:
        """Which coalitions ``seed`` holds, (m,) bools."""
        if int(seed) not in self._index:
            return np.zeros(len(masks), dtype=bool)
        if self.is_complete(seed):
            return np.ones(len(masks), dtype=bool)
        # pandas' hashed isin: np.isin on key strings compared them pairwise (54 s for
        # 10,000 coalitions against a 20,000-row seed at n = 258)
        return pd.Index(self._keys(masks)).isin(self._index[int(seed)].index)

    def values(self, masks, utility: str, seed: int | None = None) -> np.ndarray:
        """Utilities of the coalitions; seed=None averages over :attr:`mean_seeds`.
        A coalition the table lacks raises KeyError naming it."""
        seeds = self.mean_seeds if seed is None else [seed]
        if not seeds:
            raise ValueError("the table holds no seed")
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        out = np.zeros(len(masks))
        for s in seeds:
            if int(s) not in self._index:
                raise KeyError(f"the table has no seed {s} (it has {list(self.seeds)})")
            dense, lookup = self._lookup(s, utility)
            if dense is not None:
                out += dense[masks.astype(np.int64) @ (1 << np.arange(self.n_players))]
                continue
            keys = self._keys(masks)
            missing = [k for k in keys if k not in lookup]
            if missing:
                raise MissingCoalitionsError(missing, s, f"seed {s}: coalitions {missing[:3]} not in the table")
            out += np.array([lookup[k] for k in keys])
        return out / len(seeds)

    def full_utilities(self, utility: str, seed: int | None = None) -> np.ndarray:
        """Utilities in :func:`all_coalitions` order."""
        return self.values(all_coalitions(self.n_players), utility, seed)

    def exact_shapley(self, utility: str, seed: int | None = None) -> np.ndarray:
        return shapley_from_table(self.full_utilities(utility, seed), self.n_players)

    def exact_frame(self) -> pd.DataFrame:
        """Exact Shapley values for every utility and complete seed (and their mean)."""
        rows = []
        for u in self.utilities:
            for s in [*self.complete_seeds(), None]:
                vals = self.exact_shapley(u, s)
                rows.append({"utility": u, "seed": "mean" if s is None else s,
                             **dict(zip(self.players, vals))})
        return pd.DataFrame(rows)

    def lds_ground_truth(self, utility: str, alpha: float, candidates=None):
        """The test coalitions keeping int(alpha * n) players, and their utilities per seed.

        Returns (masks (m, n), utilities (n_seeds, m)). With a complete table the test
        set is every coalition of that size, not a sample. A table of sampled coalitions
        gives those of that size that every seed holds: among ``candidates`` (the
        protocol's drawn test coalitions, kept in draw order) when given, so that other
        coalitions of that size the table holds (an estimator's, a removal set) never
        join the test set; m may be 0 while the table is being built.
        """
        k = max(1, int(alpha * self.n_players))
        if self.complete_seeds():
            masks = all_coalitions(self.n_players)
        elif candidates is not None:
            masks = np.atleast_2d(np.asarray(candidates, dtype=bool))
            masks = masks[self.held(masks)] if len(masks) else masks
        else:
            masks = self.coalitions()
        masks = masks[masks.sum(1) == k]
        seeds = self.mean_seeds
        if len(masks) == 0:
            return masks, np.zeros((len(seeds), 0))
        return masks, np.stack([self.values(masks, utility, s) for s in seeds])

    def game(self, utility: str, seed: int | None = None, fallback=None, partial: bool = False) -> "TableGame":
        return TableGame(self, utility, seed, fallback, partial)

    @classmethod
    def of_game(cls, game, utility: str = "value", max_players: int = 12) -> "CoalitionTable":
        """A small game evaluated once on every coalition, as a one-seed table."""
        n = game.n_players
        if n > max_players:
            raise ValueError(f"tabulating needs 2**n evaluations; n={n} > {max_players}")
        masks = all_coalitions(n)
        frame = pd.DataFrame({"coalition": coalition_keys(masks), "seed": 0,
                              utility: np.asarray(game(masks), dtype=float)})
        return cls(frame, game.players, (utility,))


def _checked(frame: pd.DataFrame, n: int, utilities, source: str) -> pd.DataFrame:
    """``frame`` with n-character 0/1 coalitions and integer seeds, every utility finite
    and each (coalition, seed) once: one NaN would make every exact value NaN, and a
    repeated row would drop its seed from the complete seeds. A row repeated with the same
    utilities (tables that share rows, concatenated) is kept once, as it changes no value;
    one repeated with other utilities raises."""
    def row(i) -> str:  # the data row (1 = the first under the column names: the frame's index
        r = frame.iloc[i]  # as read_csv gives it), its coalition and seed
        return f"data row {_data_row(frame, i)} (coalition {r.get('coalition')}, seed {r.get('seed')})"

    lacking = [c for c in ("coalition", "seed", *utilities) if c not in frame.columns]
    if lacking:
        raise DamagedTableError(f"{source} lacks column(s) {lacking}; it has {list(frame.columns)}")
    keys = frame["coalition"].astype(str).str.zfill(n)
    bad = ~keys.str.fullmatch(f"[01]{{{n}}}")
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DamagedTableError(f"{source}: {row(i)}: a coalition must be {n} characters 0/1 "
                                f"({int(bad.sum())} row(s) are not)")
    seeds = pd.to_numeric(frame["seed"], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(seeds) | (seeds != np.round(seeds))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DamagedTableError(f"{source}: {row(i)}: the seed must be an integer ({int(bad.sum())} row(s) are not)")
    frame = frame.assign(coalition=keys)
    if not pd.api.types.is_integer_dtype(frame["seed"]):
        frame["seed"] = seeds.astype(np.int64)
    for u in utilities:
        vals = pd.to_numeric(frame[u], errors="coerce").to_numpy(float)
        bad = ~np.isfinite(vals)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DamagedTableError(
                f"{source}: {row(i)}: utility {u!r} is {frame[u].iloc[i]!r}, not a finite number "
                f"({int(bad.sum())} row(s) of {u!r} are not); a damaged or cut-short table: "
                "restore or rebuild it")
    frame = frame.drop_duplicates(["coalition", "seed", *utilities])
    twice = frame.duplicated(["coalition", "seed"], keep=False)
    if twice.any():
        dup = frame[twice]
        c, s = dup.iloc[0]["coalition"], dup.iloc[0]["seed"]
        shown = ", ".join(str(_data_row(frame, i)) for i in np.flatnonzero(twice.to_numpy())[:6])
        raise DamagedTableError(
            f"{source}: coalition {c} on seed {s} appears in more than one row with different values "
            f"({int(twice.sum())} rows share a (coalition, seed), data rows {shown}); keep one of each")
    return frame


def _data_row(frame: pd.DataFrame, i: int):
    """The 1-based data row of the frame's ``i``-th row: its index label + 1 (read_csv's
    numbering, kept through filtering), or i + 1 for a frame of another index."""
    label = frame.index[i]
    return int(label) + 1 if isinstance(label, (int, np.integer)) else i + 1


class TableGame(Game):
    """A game read from a table of values: one seed, or the mean over seeds.

    The one lookup game of the project: a shipped retraining table replayed at any
    budget (the recorded cost charged per coalition looked up), and a small game
    tabulated once on every coalition (:class:`~surrogateshap.benchmark.replay.ReplayedGame`).
    ``fallback(seed, masks) -> utilities`` computes the coalitions a seed lacks (e.g. the
    task's retraining game of that seed, through the same cache): only the missing
    seed is computed. With ``partial=True`` and no fallback, a batch is averaged over the
    seeds that hold all of it (``last_seeds`` says which); otherwise a missing coalition
    raises KeyError naming it.
    """

    cost_unit = "model trainings"

    def __init__(self, table: CoalitionTable, utility: str, seed: int | None = None, fallback=None,
                 partial: bool = False):
        if utility not in table.utilities:
            raise KeyError(f"table has no utility {utility!r}; it has {table.utilities}")
        super().__init__(table.players)
        self.table, self.utility, self.seed, self.fallback = table, utility, seed, fallback
        self.partial = partial
        self.seeds = list(table.mean_seeds if seed is None else [seed])
        self.last_seeds: list[int] = []

    def held(self, masks) -> np.ndarray:
        """Which coalitions every seed of this game holds (evaluating them costs nothing)."""
        ok = np.ones(len(masks), dtype=bool)
        for s in self.seeds:
            ok &= self.table.held_on(masks, s)
        return ok

    def held_together(self, masks) -> bool:
        """Whether some seed of this game holds every one of these coalitions (a batch a
        partial game answers from that seed)."""
        return any(self.table.held_on(masks, s).all() for s in self.seeds)

    def _evaluate(self, masks):
        per, used = [], []
        for s in self.seeds:
            held = self.table.held_on(masks, s)
            if held.all():
                per.append(self.table.values(masks, self.utility, s))
            elif self.fallback is not None:
                out = np.empty(len(masks))
                if held.any():
                    out[held] = self.table.values(masks[held], self.utility, s)
                out[~held] = np.asarray(self.fallback(s, masks[~held]), dtype=float).reshape(-1)
                per.append(out)
            elif self.partial:
                continue
            else:
                missing = [coalition_key(m) for m in masks[~held]]
                raise MissingCoalitionsError(missing, s, f"seed {s}: coalitions {missing[:3]} not in the table")
            used.append(s)
        if not per:
            lacks = {s: [coalition_key(m) for m in masks[~self.table.held_on(masks, s)]] for s in self.seeds}
            shown = "; ".join(f"seed {s} lacks {len(k)}, e.g. {k[:2]}" for s, k in lacks.items())
            raise MissingCoalitionsError(sorted({k for v in lacks.values() for k in v}), None,
                                         f"no seed of the table holds all of these coalitions ({shown})")
        self.last_seeds = used
        total = np.zeros(len(masks))
        for v in per:  # the order and arithmetic of CoalitionTable.values
            total += v
        return total / len(per)

    def cost_of(self, masks):
        return float(sum(bool(m.any()) for m in masks) * len(self.seeds))

    def exact_values(self):
        if not (self.table.complete_seeds() if self.seed is None else self.table.is_complete(self.seed)):
            return None
        return self.table.exact_shapley(self.utility, self.seed)

    def cache_id(self):
        return f"table:{self.table.content_id()}:{json.dumps([self.utility, self.seed])}"
