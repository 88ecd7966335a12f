"""surrogateshap: Shapley values of training-data contributors to generative models.

Data flows one way: a task makes games; an estimator sees a game and a budget and
returns an :class:`Attribution`; metrics compare attributions with ground truth.
"""

from surrogateshap.attribution import Attribution
from surrogateshap.estimator import Estimator, Until
from surrogateshap.exact import exact_shapley, shapley_from_table
from surrogateshap.game import (
    BudgetedGame,
    BudgetExceededError,
    CachedGame,
    FunctionGame,
    Game,
    NonFiniteUtilityError,
    all_coalitions,
)
from surrogateshap.games import (
    AdditiveGame,
    AirportGame,
    NoisyGame,
    UnanimityGame,
    WeightedVotingGame,
    random_unanimity_game,
)
from surrogateshap.registry import available_estimators, get_estimator, register
from surrogateshap.store import CoalitionStore, CorruptStoreError

__version__ = "0.1.0"

__all__ = [
    "Attribution", "Estimator", "Until", "Game", "FunctionGame", "CachedGame", "BudgetedGame",
    "CoalitionStore", "CorruptStoreError", "BudgetExceededError", "NonFiniteUtilityError", "all_coalitions",
    "exact_shapley", "shapley_from_table", "AdditiveGame", "AirportGame", "NoisyGame",
    "UnanimityGame", "WeightedVotingGame", "random_unanimity_game",
    "available_estimators", "get_estimator", "register",
]
