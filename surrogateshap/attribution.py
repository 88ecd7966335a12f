"""The one result type every estimator returns."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["Attribution", "INDICES", "efficiency_gap"]

#: what an attribution's values estimate. Errors against exact values are only
#: computed against truth of the same index; LDS and removal apply to all.
INDICES = ("shapley", "banzhaf", "datamodel", "loo", "heuristic")


def efficiency_gap(values, total: float) -> float:
    """What the values leave of the total they should share: total - sum(values).

    The one definition of the efficiency gap: SurrogateSHAP reports it against
    v(N) - v(empty) before its correction, the benchmark against the exact values' sum
    (relative to their absolute sum). Zero for an efficient estimate.
    """
    return float(total) - float(np.sum(values))


@dataclass
class Attribution:
    """Per-player values, what they estimate, and what they cost.

    ``index`` names the value the estimator targets (see :data:`INDICES`).
    ``n_evaluations`` counts distinct evaluations of the game the estimator was given
    (for a two-game estimator: the expensive one; cheap evaluations go in ``extra``).
    ``cost`` is in ``cost_unit`` (model trainings, images generated). ``stderr`` is the
    per-player standard error where the method has one, ``counts`` the number of
    independent units behind each player's value (a scalar is broadcast): with both,
    two partial results of the same game merge (:meth:`merge`), as pyDVL's
    ``ValuationResult`` does. ``interactions`` is an optional (n, n) matrix of pairwise
    Shapley interaction values. ``stopped_by`` says what ended an anytime estimate
    (``estimate(until=...)``): "rel_stderr", "top_k", "seconds" or "budget"; None for a
    fixed budget.
    """

    values: np.ndarray
    players: tuple[str, ...]
    estimator: str = ""
    index: str = "shapley"
    n_evaluations: int = 0
    seconds: float = 0.0
    budget: int | None = None
    seed: int | None = None
    stderr: np.ndarray | None = None
    counts: np.ndarray | None = None
    cost: float = 0.0
    cost_unit: str = "evaluations"
    interactions: np.ndarray | None = None
    exact: bool = False
    extra: dict = field(default_factory=dict)
    stopped_by: str | None = None

    def __post_init__(self):
        who = self.estimator or "estimator"
        if isinstance(self.players, (str, bytes, bool, np.bool_)) or not np.iterable(self.players):
            raise TypeError(f"{who}: players must be a sequence of names; got "
                            f"{type(self.players).__name__} {self.players!r}")
        self.values = np.asarray(self.values, dtype=float).reshape(-1)
        self.players = tuple(self.players)
        n = len(self.players)
        if self.values.shape[0] != n:
            raise ValueError(f"{who} gave {len(self.values)} values for {n} players")
        if self.index not in INDICES:
            raise ValueError(f"{who}: index must be one of {INDICES}; got {self.index!r}")
        if not np.isfinite(self.values).all():
            bad = [self.players[i] for i in np.flatnonzero(~np.isfinite(self.values))]
            raise ValueError(f"{who} produced non-finite values for {bad}")
        if self.stderr is not None:
            self.stderr = np.asarray(self.stderr, dtype=float).reshape(-1)
            if self.stderr.shape[0] != n:
                raise ValueError(f"{who} gave {len(self.stderr)} standard errors for {n} players")
        if self.counts is not None:
            self.counts = np.broadcast_to(np.asarray(self.counts, dtype=float), (n,)).copy()

    @property
    def n_players(self) -> int:
        return len(self.players)

    @property
    def variances(self) -> np.ndarray | None:
        """Per-unit sample variance of each player's value: stderr^2 * counts."""
        if self.stderr is None or self.counts is None:
            return None
        return self.stderr**2 * self.counts

    def merge(self, other: "Attribution") -> "Attribution":
        """Pool two estimates of the same game and index: count-weighted means, pooled
        variances (the parallel-variance formula), summed costs.

        Both need ``counts``; the merged stderr needs both ``stderr`` as well. Exact
        results stay exact only if both are.
        """
        if other.players != self.players:
            raise ValueError("cannot merge attributions of different players")
        if other.index != self.index:
            raise ValueError(f"cannot merge a {self.index} attribution with a {other.index} one")
        if self.counts is None or other.counts is None:
            raise ValueError(
                f"merging needs per-player counts; {self.estimator if self.counts is None else other.estimator}"
                " reports none"
            )
        na, nb = self.counts, other.counts
        n = na + nb
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, (na * self.values + nb * other.values) / np.maximum(n, 1), 0.0)
            stderr = None
            va, vb = self.variances, other.variances
            if va is not None and vb is not None:
                delta = other.values - self.values
                # sum of squared deviations, pooled, with the between-means term
                # a one-unit piece has no variance of its own (stderr NaN): it adds 0
                ssd = (np.where(na > 1, va * (na - 1), 0.0) + np.where(nb > 1, vb * (nb - 1), 0.0)
                       + delta**2 * na * nb / np.maximum(n, 1))
                var = np.where(n > 1, ssd / np.maximum(n - 1, 1), np.nan)
                stderr = np.sqrt(var / np.maximum(n, 1))
        return replace(
            self,
            values=mean,
            stderr=stderr,
            counts=n,
            estimator=self.estimator if self.estimator == other.estimator else f"{self.estimator}+{other.estimator}",
            n_evaluations=self.n_evaluations + other.n_evaluations,
            seconds=self.seconds + other.seconds,
            budget=None if self.budget is None or other.budget is None else self.budget + other.budget,
            cost=self.cost + other.cost,
            interactions=None,
            exact=self.exact and other.exact,
            stopped_by=None,
            extra={"merged": [self.extra, other.extra]},
        )

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
            f"Attribution({self.estimator!r}, index={self.index!r}, n_players={self.n_players}, "
            f"n_evaluations={self.n_evaluations}, seconds={self.seconds:.3g})"
        )
