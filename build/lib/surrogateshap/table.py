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

    def values(self, masks, utility: str, seed: int | None = None) -> np.ndarray:
        """Utilities of the coalitions; seed=None averages over the complete seeds."""
        seeds = self.complete_seeds() if seed is None else [seed]
        if not seeds:
            raise ValueError("no seed has every coalition in this table")
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

    def lds_ground_truth(self, utility: str, alpha: float):
        """All coalitions keeping int(alpha * n) players, and their utilities per seed.

        Returns (masks (m, n), utilities (n_seeds, m)). With the full table the test
        set is every coalition of that size, not a sample.
        """
        k = int(alpha * self.n_players)
        masks = all_coalitions(self.n_players)
        masks = masks[masks.sum(1) == k]
        seeds = self.complete_seeds()
        return masks, np.stack([self.values(masks, utility, s) for s in seeds])

    def game(self, utility: str, seed: int | None = None) -> "TableGame":
        return TableGame(self, utility, seed)


class TableGame(Game):
    """Replays a :class:`CoalitionTable` as a game (one seed, or the seed mean)."""

    cost_unit = "model trainings"

    def __init__(self, table: CoalitionTable, utility: str, seed: int | None = None):
        if utility not in table.utilities:
            raise KeyError(f"table has no utility {utility!r}; it has {table.utilities}")
        super().__init__(table.players)
        self.table, self.utility, self.seed = table, utility, seed

    def _evaluate(self, masks):
        return self.table.values(masks, self.utility, self.seed)

    def cost_of(self, masks):
        n_seeds = 1 if self.seed is not None else len(self.table.complete_seeds())
        return float(sum(bool(m.any()) for m in masks) * n_seeds)

    def exact_values(self):
        return self.table.exact_shapley(self.utility, self.seed)

    def cache_id(self):
        return f"table:{self.table.content_id()}:{json.dumps([self.utility, self.seed])}"
