"""Permutation sampling of Shapley values, plain, antithetic and truncated.

phi_i is the expected marginal contribution v(P + i) - v(P) of player i to the set P
of players before it in a uniformly random order. Scanning one random order gives
every player one such marginal from n + 1 prefix coalitions (Castro, Gomez & Tejada
2009, "Polynomial calculation of the Shapley value based on sampling"), so the
per-player sample variance of the marginals gives a standard error.

- "permutation": independent orders.
- "permutation-antithetic": each order followed by its reverse (a player early in
  one is late in the other, which cancels much of the size-driven variance); the
  pair is the independent unit for the standard error.
- "tmc": truncated Monte Carlo (TMC-Shapley, Ghorbani & Zou 2019, "Data Shapley:
  equitable valuation of data for machine learning"): a scan stops once
  |v(N) - v(prefix)| < tolerance * |v(N) - v(empty)|, and the remaining players get
  marginal 0.
  Truncation saves evaluations on saturating utilities at the price of a bias of
  order tolerance * |v(N) - v(empty)|; tolerance=0 is plain permutation sampling.

Budget: the empty and full coalitions are shared by every order and, like any
repeated prefix, are charged once. Sampling stops at the first order (or order pair)
whose new coalitions would not fit in what is left (for "tmc": whose untruncated
scan would not fit, so no scan is ever cut short by the budget), or after
``max_permutations`` orders (default 10 * budget; reached in small games, where every
prefix is soon memoised and orders become free).
"""

from __future__ import annotations

import numpy as np

from surrogateshap.estimator import Estimator
from surrogateshap.registry import register
from surrogateshap.sampling import (
    BudgetPlanner,
    anchor_masks,
    draw_units,
    order_marginals,
    permutation_units,
    prefix_masks,
    random_orders,
)

__all__ = ["PermutationSampling", "AntitheticPermutationSampling", "TMCShapley"]


def _summarise(unit_marginals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over independent units, (U, n) -> (n,), (n,)."""
    u = unit_marginals.shape[0]
    values = unit_marginals.mean(axis=0)
    if u < 2:
        return values, np.full(values.shape, np.nan)
    return values, unit_marginals.std(axis=0, ddof=1) / np.sqrt(u)


def _check_max_permutations(value):
    integer = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if value is not None and not (integer and value >= 1):
        raise ValueError(f"max_permutations must be a positive integer or None, got {value!r}")


class _PermutationBase(Estimator):
    #: each unit an order and its reverse (else one order)
    _antithetic = False

    def __init__(self, max_permutations: int | None = None):
        self.max_permutations = max_permutations

    def min_budget(self, n_players: int) -> int:
        # one unit: the empty and full coalitions plus n - 1 new prefixes per order
        return 2 + (2 if self._antithetic else 1) * (n_players - 1)

    def validate(self):
        _check_max_permutations(self.max_permutations)

    def _estimate(self, game, budget, rng: np.random.Generator):
        return self._refine(None, game, budget, rng)[1]

    def _refine(self, state, game, budget, rng: np.random.Generator):
        """Draw orders until ``budget`` evaluations in all. Orders are drawn in batches
        and the ones a step could not afford wait in ``state`` for the next, so the
        orders used are always the same prefix of one stream: a refined estimate
        equals, value for value, one run at its final budget and seed."""
        n = game.n_players
        per = 2 if self._antithetic else 1
        if state is None:
            state = {"queue": np.zeros((0, per * (n + 1), n), dtype=bool), "marginals": [], "units": 0}
        max_units = (
            (self.max_permutations if self.max_permutations is not None else 10 * budget)
            // per
        )
        left = max(int(max_units), 1) - state["units"]
        queue = state["queue"]
        used = 0

        def make(k):  # the next k units of the stream, drawing what the queue lacks
            nonlocal queue, used
            if len(queue) < used + k:
                queue = np.concatenate([queue, permutation_units(n, used + k - len(queue), rng,
                                                                 self._antithetic)])
            used += k
            return queue[used - k : used]

        if left > 0 and (state["units"] == 0 or BudgetPlanner(game, limit=budget).left > 0):
            try:
                # repeated prefixes are free, so the cost per unit falls as orders accumulate
                masks, v = draw_units(BudgetPlanner(game, limit=budget), make, left,
                                      per * max(n - 1, 1))
            except ValueError:
                if not state["units"]:
                    raise
                masks, v = queue[:0], np.zeros((0, queue.shape[1]))  # no unit fits this step
            state["marginals"].append(order_marginals(masks, v))
            state["units"] += len(masks)
            state["queue"] = queue[len(masks):]
        values, stderr = _summarise(np.concatenate(state["marginals"]))
        return state, {
            "values": values,
            "stderr": stderr,
            "counts": state["units"],
            "extra": {"n_permutations": state["units"] * per},
        }


@register("permutation")
class PermutationSampling(_PermutationBase):
    """Monte Carlo permutation sampling (Castro et al. 2009)."""


@register("permutation-antithetic")
class AntitheticPermutationSampling(_PermutationBase):
    """Permutation sampling with antithetic pairs: each order followed by its reverse."""

    _antithetic = True


@register("tmc")
class TMCShapley(Estimator):
    """Truncated Monte Carlo Shapley (Ghorbani & Zou 2019).

    ``tolerance`` is relative to |v(N) - v(empty)|: a scan stops when the prefix's
    utility is within ``tolerance * |v(N) - v(empty)|`` of the full coalition's, so a
    constant shift of the game changes nothing.
    """

    def __init__(self, tolerance: float = 0.01, max_permutations: int | None = None):
        self.tolerance = tolerance
        self.max_permutations = max_permutations

    def min_budget(self, n_players: int) -> int:
        return n_players + 1

    def validate(self):
        if not self.tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance!r}")
        _check_max_permutations(self.max_permutations)

    def _estimate(self, game, budget, rng: np.random.Generator):
        n = game.n_players
        max_perms = self.max_permutations if self.max_permutations is not None else 10 * budget
        planner = BudgetPlanner(game)
        v_empty, v_full = game(anchor_masks(n))
        # relative to the total to be shared, not to |v(N)|: a constant shift of the
        # game must not change the estimate (with |v(N)| it truncated every scan)
        threshold = self.tolerance * abs(v_full - v_empty)
        marginals: list[np.ndarray] = []
        n_perms, n_steps = 0, 0
        queue = np.zeros((0, n), dtype=np.int64)  # drawn orders not yet scanned
        while n_perms < max_perms:
            # a round scans its orders in lockstep, one batch per position. An order
            # joins the round only if its untruncated scan fits in what is left
            # (reserved with the planner), so no scan is ever cut short by the
            # budget; what truncation leaves unused is released for the next round
            cost = (game.n_evaluations - 2) / n_perms if n_perms else max(n - 1, 1)
            k = int(min(max_perms - n_perms, max(1.25 * planner.left / max(cost, 0.1), 16)))
            if len(queue) < k:
                queue = np.vstack([queue, random_orders(n, k - len(queue), rng)])
            masks = prefix_masks(queue[:k])
            fit = 0
            while fit < k and planner.take(masks[fit]):
                fit += 1
            if fit == 0:
                break
            orders = queue[:fit]
            queue = queue[fit:]
            v_prev = np.full(fit, v_empty)
            marg = np.zeros((fit, n))
            rows = np.arange(fit)
            for j in range(n):
                active = rows[np.abs(v_full - v_prev) >= threshold]
                if active.size == 0:
                    break
                v_new = game(masks[active, j + 1])
                marg[active, orders[active, j]] = v_new - v_prev[active]
                v_prev[active] = v_new
                n_steps += active.size
            planner.release()
            marginals.append(marg)
            n_perms += fit
        values, stderr = _summarise(np.concatenate(marginals))
        return {
            "values": values,
            "stderr": stderr,
            "counts": n_perms,
            "extra": {
                "n_permutations": n_perms,
                # share of the n positions per order actually scanned
                "scanned_fraction": n_steps / (n_perms * n),
            },
        }
