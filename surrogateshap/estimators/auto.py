"""``auto``: an estimator chosen from (n, budget, whether evaluations are cheap).

The rules, each with the measurement behind it:

- **cheap evaluations** (a proxy game: milliseconds a coalition): stratified SVARM,
  refined until every standard error is at most ``rel_stderr`` of the values' range,
  or ``seconds`` pass, or the budget is spent (``estimate(until=...)``). On
  clipart-artists' proxy game it is the most accurate per evaluation and per second at
  n = 30 and n = 258 of SVARM, SurrogateSHAP and antithetic permutations, and every run
  whose max stderr was within 5% of the value range ranked at Spearman >= 0.97 against
  the reference, at both n (the default ``rel_stderr=0.05``); at n = 258 its stderr stays
  unknown (a size's sample misses a player) below about 60,000 evaluations, so there the
  30 s limit ends it, at about 0.97 (results/players_scale_anytime.md);
- **expensive evaluations** (retraining: the budget is what one can afford): stratified
  SVARM at the whole budget, the best project estimator on the real retraining game
  with exact values (digits10, -FID and IS, at 64 and 256 retrainings:
  results/peers.md).

A budget of 2**n or more is exact whatever the choice (:class:`Estimator` enumerates).
The choice is never silent: ``extra["auto"]`` holds the estimator chosen and the rule
(and ``stopped_by`` what ended a refined run); a budget the chosen estimator cannot run
on is refused naming it.
"""

from __future__ import annotations

import numpy as np

from surrogateshap.estimator import Estimator, Until
from surrogateshap.registry import get_estimator, register

__all__ = ["Auto"]


@register("auto")
class Auto(Estimator):
    """Picks an estimator by the module's rules; ``cheap``: whether a game evaluation is
    cheap (a proxy game), ``rel_stderr`` and ``seconds``: the cheap rule's stopping
    criteria."""

    delegates = True

    def __init__(self, cheap: bool = False, rel_stderr: float = 0.05, seconds: float | None = 30.0):
        self.cheap = cheap
        self.rel_stderr = rel_stderr
        self.seconds = seconds

    def validate(self):
        if not isinstance(self.cheap, (bool, np.bool_)):
            raise TypeError(f"cheap must be True or False; got {self.cheap!r}")
        if self.rel_stderr is None and self.seconds is None:
            if self.cheap:
                raise ValueError("auto: cheap=True needs rel_stderr or seconds to stop on; got neither")
            return
        try:  # checked whether or not the rule uses them: a bad value is refused either way
            self._until()
        except ValueError as e:
            raise ValueError(f"auto: {e}") from None

    def _until(self) -> Until:
        return Until(rel_stderr=self.rel_stderr, seconds=self.seconds)

    def choose(self, n_players: int, budget: int) -> tuple[str, Until | None, str]:
        """(estimator name, stopping rule or None, the rule that chose them)."""
        if self.cheap:
            rule = (f"cheap evaluations: stratified-svarm until max stderr <= {self.rel_stderr} of the "
                    f"value range, {self.seconds} s or the budget (results/players_scale_anytime.md)")
            return "stratified-svarm", self._until(), rule
        return ("stratified-svarm", None,
                "expensive evaluations: stratified-svarm at the whole budget (results/peers.md, digits10)")

    def min_budget(self, n_players: int) -> int:
        return get_estimator(self.choose(n_players, 0)[0]).min_budget(n_players)

    def _estimate(self, game, budget, rng: np.random.Generator):
        name, until, rule = self.choose(game.n_players, budget)
        att = get_estimator(name).estimate(game, budget, seed=int(rng.integers(2**31 - 1)), until=until)
        return {"values": att.values, "stderr": att.stderr, "counts": att.counts,
                "stopped_by": att.stopped_by,
                "extra": {**att.extra, "auto": {"chose": name, "rule": rule}}}
