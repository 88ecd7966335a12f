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
from surrogateshap.game import Game, all_coalitions, coalition_key

__all__ = ["CoalitionTable", "TableGame"]


class CoalitionTable:
    """Utilities of every coalition for one or more seeds.

    A long-format frame with columns ``coalition`` (bit string, player i = character
    i), ``seed``, one column per utility, and optional ``seconds``.
    """

    def __init__(self, frame: pd.DataFrame, players, utilities):
        self.players = tuple(players)
        self.utilities = tuple(utilities)
        n = len(self.players)
        frame = frame.copy()
        frame["coalition"] = frame["coalition"].astype(str).str.zfill(n)
        if (frame["coalition"].str.len() != n).any():
            raise ValueError(f"coalition strings must have {n} characters")
        missing = [u for u in self.utilities if u not in frame.columns]
        if missing:
            raise ValueError(f"table lacks utility columns {missing}")
        self.frame = frame
        self.seeds = tuple(sorted(int(s) for s in frame["seed"].unique()))
        self._index = {
            s: g.set_index("coalition") for s, g in frame.groupby("seed")
        }

    @classmethod
    def read_csv(cls, path, players, utilities) -> "CoalitionTable":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"reference table {path} not found")
        return cls(pd.read_csv(path, dtype={"coalition": str}, comment="#"), players, utilities)

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

    def held(self, masks) -> np.ndarray:
        """Which of the coalitions every seed of :attr:`mean_seeds` holds, (m,) bools."""
        keys = [coalition_key(m) for m in masks]
        ok = np.ones(len(keys), dtype=bool)
        for s in self.mean_seeds:
            ok &= np.isin(keys, self._index[s].index)
        return ok

    def coalitions(self) -> np.ndarray:
        """Every coalition that all seeds of :attr:`mean_seeds` hold, (m, n) bools."""
        keys = sorted(set.intersection(*[set(self._index[s].index) for s in self.mean_seeds]))
        return np.array([[c == "1" for c in k] for k in keys], dtype=bool).reshape(-1, self.n_players)

    def values(self, masks, utility: str, seed: int | None = None) -> np.ndarray:
        """Utilities of the coalitions; seed=None averages over :attr:`mean_seeds`.
        A coalition the table lacks raises KeyError naming it."""
        seeds = self.mean_seeds if seed is None else [seed]
        if not seeds:
            raise ValueError("the table holds no seed")
        keys = [coalition_key(m) for m in masks]
        out = np.zeros(len(keys))
        for s in seeds:
            idx = self._index[s]
            missing = [k for k in keys if k not in idx.index]
            if missing:
                raise KeyError(f"seed {s}: coalitions {missing[:3]} not in the table")
            out += idx.loc[keys, utility].to_numpy(float)
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

    def game(self, utility: str, seed: int | None = None, fallback=None) -> "TableGame":
        return TableGame(self, utility, seed, fallback)


class TableGame(Game):
    """Replays a :class:`CoalitionTable` as a game (one seed, or the seed mean).

    ``fallback``: a callable (masks -> utilities) for the coalitions the table lacks,
    e.g. the task's retraining game through the same cache; without one a missing
    coalition raises KeyError naming it.
    """

    cost_unit = "model trainings"

    def __init__(self, table: CoalitionTable, utility: str, seed: int | None = None, fallback=None):
        if utility not in table.utilities:
            raise KeyError(f"table has no utility {utility!r}; it has {table.utilities}")
        super().__init__(table.players)
        self.table, self.utility, self.seed, self.fallback = table, utility, seed, fallback

    def _evaluate(self, masks):
        if self.fallback is None:
            return self.table.values(masks, self.utility, self.seed)
        held = self.table.held(masks) if self.seed is None else np.isin(
            [coalition_key(m) for m in masks], self.table._index[self.seed].index)
        out = np.empty(len(masks))
        if held.any():
            out[held] = self.table.values(masks[held], self.utility, self.seed)
        if (~held).any():
            out[~held] = np.asarray(self.fallback(masks[~held]), dtype=float).reshape(-1)
        return out

    def cost_of(self, masks):
        n_seeds = 1 if self.seed is not None else len(self.table.mean_seeds)
        return float(sum(bool(m.any()) for m in masks) * n_seeds)

    def exact_values(self):
        if not (self.table.complete_seeds() if self.seed is None else self.table.is_complete(self.seed)):
            return None
        return self.table.exact_shapley(self.utility, self.seed)

    def cache_id(self):
        return f"table:{self.table.content_id()}:{json.dumps([self.utility, self.seed])}"
