"""The one result type every estimator returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Attribution"]


@dataclass
class Attribution:
    """Per-player values with what they cost.

    ``n_evaluations`` counts distinct evaluations of the game the estimator was given
    (for a two-game estimator: the expensive one; cheap evaluations go in ``extra``).
    ``cost`` is in ``cost_unit`` (model trainings, images generated). ``stderr`` is the
    per-player standard error where the method has one. ``interactions`` is an optional
    (n, n) matrix of pairwise Shapley interaction values.
    """

    values: np.ndarray
    players: tuple[str, ...]
    estimator: str = ""
    n_evaluations: int = 0
    seconds: float = 0.0
    budget: int | None = None
    seed: int | None = None
    stderr: np.ndarray | None = None
    cost: float = 0.0
    cost_unit: str = "evaluations"
    interactions: np.ndarray | None = None
    exact: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.values = np.asarray(self.values, dtype=float).reshape(-1)
        self.players = tuple(self.players)
        if self.values.shape[0] != len(self.players):
            raise ValueError(
                f"{len(self.values)} values for {len(self.players)} players"
            )
        if not np.isfinite(self.values).all():
            bad = [self.players[i] for i in np.flatnonzero(~np.isfinite(self.values))]
            raise ValueError(f"{self.estimator or 'estimator'} produced non-finite values for {bad}")
        if self.stderr is not None:
            self.stderr = np.asarray(self.stderr, dtype=float).reshape(-1)

    @property
    def n_players(self) -> int:
        return len(self.players)

    def ranking(self) -> list[str]:
        """Players from most to least valuable."""
        return [self.players[i] for i in np.argsort(-self.values, kind="stable")]

    def to_frame(self):
        """A pandas table: player, value, stderr, rank."""
        import pandas as pd

        df = pd.DataFrame({"player": self.players, "value": self.values})
        if self.stderr is not None:
            df["stderr"] = self.stderr
        df["rank"] = df["value"].rank(ascending=False, method="min").astype(int)
        return df.set_index("player")

    def __repr__(self):
        return (
            f"Attribution({self.estimator!r}, n_players={self.n_players}, "
            f"n_evaluations={self.n_evaluations}, seconds={self.seconds:.3g})"
        )
