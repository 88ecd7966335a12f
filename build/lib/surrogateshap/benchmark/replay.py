"""A small game tabulated once on every coalition, then replayed by lookup."""

from __future__ import annotations

import time

import numpy as np

from surrogateshap.exact import shapley_from_table
from surrogateshap.game import Game, all_coalitions

__all__ = ["ReplayedGame"]


class ReplayedGame(Game):
    """A small game evaluated once on all 2**n coalitions, then replayed by lookup.

    Values are exactly the wrapped game's; ``cost_of`` and ``cost_unit`` are the
    wrapped game's, so an estimator is charged as if it played the original.
    ``seconds_per_evaluation`` is the wrapped game's mean compute time per coalition,
    measured while tabulating. Benchmarks replay the proxy game this way so that every
    case times the estimator, not the (identical, repeated) proxy evaluations, and the
    same coalitions are not recomputed for every estimator and seed.
    """

    MAX_PLAYERS = 12

    def __init__(self, game: Game):
        if game.n_players > self.MAX_PLAYERS:
            raise ValueError(f"replaying needs 2**n evaluations; n={game.n_players} > {self.MAX_PLAYERS}")
        super().__init__(game.players)
        self.game = game
        self.cost_unit = game.cost_unit
        masks = all_coalitions(game.n_players)
        t0 = time.perf_counter()
        self.table = np.asarray(game(masks), dtype=float)
        self.seconds_per_evaluation = (time.perf_counter() - t0) / len(masks)
        self._bits = 1 << np.arange(game.n_players)

    def _evaluate(self, masks):
        return self.table[masks.astype(np.int64) @ self._bits]

    def cost_of(self, masks):
        return self.game.cost_of(masks)

    def exact_values(self):
        return shapley_from_table(self.table, self.n_players)

    def cache_id(self):
        return self.game.cache_id()
