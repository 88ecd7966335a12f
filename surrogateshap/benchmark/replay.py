"""A small game tabulated once on every coalition, then replayed by lookup."""

from __future__ import annotations

import time

from surrogateshap.game import Game
from surrogateshap.table import CoalitionTable, TableGame

__all__ = ["ReplayedGame"]


class ReplayedGame(TableGame):
    """A small game evaluated once on all 2**n coalitions, then replayed by lookup (a
    :class:`~surrogateshap.table.TableGame` of its own one-seed table).

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
        t0 = time.perf_counter()
        table = CoalitionTable.of_game(game)
        self.seconds_per_evaluation = (time.perf_counter() - t0) / 2**game.n_players
        super().__init__(table, "value", seed=0)
        self.game = game
        self.cost_unit = game.cost_unit

    def cost_of(self, masks):
        return self.game.cost_of(masks)

    def exact_values(self):
        return self.table.exact_shapley("value", 0)

    def cache_id(self):
        return self.game.cache_id()
