"""Multi-fidelity Shapley values: retraining, fine-tuning and the proxy in one estimator.

A task offers several games over one set of players at very different costs: the
retraining game v (the truth), the fine-tuning game f (a fraction of a retraining's
steps), the proxy game p (free once the sample bank exists). "multifidelity" takes the
game to value (the most expensive one it may play, normally v) and the cheaper ones as
the resource ``fidelities``, all costed in one unit, training steps, and spends
``budget`` evaluations' worth of the target's steps on whichever mix measures best.

Budget and cost. ``budget`` counts evaluations of the target game, as for every
estimator (:class:`~surrogateshap.game.BudgetedGame` enforces it), and is read as that
many target evaluations' worth of training steps: T = budget x (steps of one target
evaluation). A retraining not bought pays for (retraining steps / fine-tuning steps)
fine-tunings, so at equal ``budget`` this estimator and a retraining-only estimator
spend the same steps. The Attribution's ``cost`` is the steps actually paid, summed over
every fidelity (coalitions evaluated twice, and the empty coalition where a game charges
nothing for it, are free); ``extra["split"]`` says what each fidelity got.

``fidelities`` maps a name to a cheaper game, either a Game whose ``cost_unit`` is
"training steps" or (game, steps per unit of the game's own ``cost_of``): e.g.
``{"target": 1000, "finetune": ft_game, "proxy": (proxy_game, 0)}`` for a retraining
game (cost_of counts model trainings, 1,000 steps each), a FineTuningGame (its cost is
in steps) and a bank proxy (free). The key "target" gives the steps per unit of the
target's cost (needed unless the target's cost is in training steps already).

The method: multilevel control variates (MFMC, Peherstorfer et al. 2016, with
regression coefficients as in approximate control variates) on Shapley-kernel units.
A unit is a coalition and its complement drawn from the Shapley kernel; every level
plays the first m_k units of one stream, m_0 <= m_1 <= ... from the most expensive
level to the cheapest (nested: a coalition retrained is fine-tuned and proxied too).
By linearity,

    phi(v) = sum_k W_k phi(r_k) + sum_e W_e phi(p_e),   r_k = y_k - sum_{j>k} a_kj y_j

(y_0 = v; the cheaper levels y_j; a free game p_e whose values are exact, by closed
form or enumeration), and phi(r_k) is estimated from level k's m_k units. The
coefficients a_kj are pooled ridge regressions of level k's per-unit estimates on the
cheaper levels' (shrunk toward the plain difference a_{k,k+1} = 1); W_k collects them.

Two stages. The pilot (``pilot_fraction`` of the steps, at least 2 units) plays every
unit on every level; from it come the pooled variances of the residuals and the
correlations between fidelities, the coefficients, and the allocation for the rest:
for every subset of the cheaper sampled games it predicts the variance
sum_k W_k^2 sigma_k^2 / m_k at the allocation minimising it under the steps left
(m_k proportional to W_k sigma_k / sqrt(cost of a unit on level k), nested), and
keeps the subset and allocation with the least (a cheap game that does not track the
target is dropped). The main stage draws fresh units on those levels until each
level's steps are spent (repeated coalitions are free, so more units fit).

Two solvers, i.e. two ways to turn a level's units into phi(r_k):

- ``solver="regression"`` (default; the candidate of issue 31: a Shapley-kernel
  regression on the retrained coalitions whose prior mean is the cheaper games' values):
  every unit of the level, pilot and main, in one KernelSHAP fit with the sampled
  E[z z^T] (Covert & Lee's constrained form), the coefficients refitted on all of them.
  The fit's ridge (0 to 4n rows' worth of the exact moment, pulling toward the equal
  split) is chosen by cross-validation over units: without it the error peaks where a
  level has about as many coalitions as players and the game is noisy (retraining).
  It had the lower error on every known game and budget measured (tests, and
  ``results/digits10_multifidelity.md``). **Not unbiased**: KernelSHAP's O(1 / units)
  bias, in-sample coefficients and an allocation read off the same pilot units remain;
  it is consistent (each level's fit converges to its residual's values).
- ``solver="unbiased"``: each unit's estimate is the Shapley-kernel estimator with the
  exact E[z z^T] (Covert & Lee's unbiased KernelSHAP) with an additive guess,
  cross-fitted on the other units, taken out of the unit's score and put back in
  expectation (unbiased for any guess fixed before the unit is drawn). The main stage's
  coefficients come from the pilot only, fixed before its units are drawn; the pilot's
  own estimate of the target regresses on the chosen cheaper levels' pilot units with
  each unit's coefficients fitted on the other units, and its weight rho (the pilot's
  planned share of the steps) is fixed before any game is played: the result is
  rho E_pilot + (1 - rho) E_main, the cheaper levels entering with the matching mean
  coefficients. Free games enter by their exact values. **Unbiased for the target's
  Shapley values given the numbers of units**; what that leaves out: the number of
  main-stage units depends on how many drawn coalitions repeat (a stopping rule that
  depends on the coalitions drawn, never on the utilities), whose effect the tests do
  not detect over 300 seeds (max |z| < 4 over the players). A free game with no closed
  form above ``exact_max_players`` is sampled like a paid one and keeps this. It pays
  for unbiasedness with variance: 1.4-3x the regression's error on digits10 at 10-40
  retrainings' worth of steps.

Either way a cheaper game's values never enter without a sampled correction from the
level above, so a biased proxy does not bias the unbiased solver and does not stop the
regression from converging. ``stderr`` per player: each level's standard error (the
sandwich for a regression, the spread of the per-unit estimates otherwise), combined
with the level weights (the covariances between levels are left out); a regression on
no more units than n - 1 interpolates them, so its sandwich would be 0: the per-unit
spread stands in. The regression solver's stderr is the larger of that and a
delete-a-group jackknife of the whole pooled fit (:meth:`MultiFidelityShapley._jackknife_var`),
which sees the in-sample coefficients and the levels' covariance: on known games +-2
stderr covered 74-90% of the players alone at the smaller budgets, 85-95% with it, the
stderr 1.1-1.4x the actual error (results/multifidelity_stderr.md). At a budget of 2**n
the target is enumerated (exact), as for every estimator. ``extra``: ``split``
(evaluations and steps per fidelity), ``levels`` and ``main_units`` (what the main stage
played), ``correlation`` (pooled, target against each cheaper game, on the pilot), ``coefficients``,
``level_weights``, ``predicted_variance``, ``pilot_units``, ``pilot_weight``,
``dropped`` (cheap games the pilot could not afford), ``budget_steps``, ``ridge_rows``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from numbers import Real

import numpy as np

from surrogateshap.estimator import Estimator
from surrogateshap.exact import MAX_EXACT_PLAYERS, shapley_from_table
from surrogateshap.game import CachedGame, Game, all_coalitions
from surrogateshap.registry import register
from surrogateshap.sampling import (
    BudgetPlanner,
    anchor_masks,
    constrained_solve,
    kernel_size_distribution,
    kernel_units,
    mask_key,
    sandwich_stderr,
)

__all__ = ["SOLVERS", "UNIT", "MultiFidelityShapley", "kernel_moment", "parse_fidelities"]

UNIT = "training steps"
SOLVERS = ("unbiased", "regression")
#: the resource key giving the target's steps per unit of its own cost
TARGET_KEY = "target"


# --------------------------------------------------------------------------- resources


def parse_fidelities(game: Game, fidelities) -> tuple[float, list[tuple[str, Game, float]]]:
    """(steps per unit of the target's cost, [(name, cheap game, steps per unit of its
    cost)]) from the ``fidelities`` resource, checked: one ValueError or TypeError naming
    the entry at fault."""
    if not isinstance(fidelities, Mapping):
        raise TypeError("fidelities must be a dict mapping names to games or (game, steps per unit of "
                        f"its cost); got {type(fidelities).__name__}")
    target_rate = fidelities.get(TARGET_KEY)
    if target_rate is None:
        if game.cost_unit != UNIT:
            raise ValueError(
                f"fidelities[{TARGET_KEY!r}] is missing: the game valued counts its cost in "
                f"{game.cost_unit!r}, so give the {UNIT} of one unit of it (e.g. "
                f"{{{TARGET_KEY!r}: 1000}} for a retraining of 1,000 steps)")
        target_rate = 1.0
    target_rate = _rate(TARGET_KEY, target_rate)
    full = np.ones((1, game.n_players), dtype=bool)
    target_steps = target_rate * float(game.cost_of(full))
    if not target_steps > 0:
        raise ValueError(f"fidelities[{TARGET_KEY!r}]: one evaluation of the game valued must cost "
                         f"some {UNIT} (the budget is counted in them); got {target_steps}")
    cheap = []
    for name, spec in fidelities.items():
        if name == TARGET_KEY:
            continue
        who = f"fidelities[{name!r}]"
        if isinstance(spec, Game):
            g, rate = spec, None
        elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], Game):
            g, rate = spec[0], _rate(name, spec[1])
        else:
            raise TypeError(f"{who} must be a Game or (Game, {UNIT} per unit of its cost); "
                            f"got {type(spec).__name__}")
        if rate is None:
            if g.cost_unit != UNIT:
                raise ValueError(f"{who}: its cost is in {g.cost_unit!r}; give ({type(g).__name__}, "
                                 f"{UNIT} per unit of it) instead of the bare game")
            rate = 1.0
        if tuple(g.players) != tuple(game.players):
            raise ValueError(f"{who} has players {list(g.players)[:6]}... ({g.n_players}); the game "
                             f"valued has {list(game.players)[:6]}... ({game.n_players}): they must "
                             "be the same players in the same order")
        steps = rate * float(g.cost_of(full))
        if not steps <= target_steps:
            raise ValueError(f"{who} costs {steps:g} {UNIT} an evaluation, more than the game valued "
                             f"({target_steps:g}): the game valued must be the most expensive one")
        cheap.append((str(name), g, rate))
    return target_rate, cheap


def _rate(name, value) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"fidelities[{name!r}]: {UNIT} per unit of cost must be a finite number >= 0; "
                         f"got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- kernel pieces


def kernel_moment(n: int) -> np.ndarray:
    """E[z z^T] under the Shapley kernel over sizes 1..n-1 (exact): 1/2 on the diagonal,
    sum_k p(k) k (k-1) / (n (n-1)) off it."""
    k = np.arange(1, n)
    p = kernel_size_distribution(n)
    off = float(np.sum(p * k * (k - 1))) / (n * (n - 1))
    A = np.full((n, n), off)
    np.fill_diagonal(A, float(np.sum(p * k)) / n)
    return A


def _unit_scores(Z: np.ndarray, y: np.ndarray, e: float) -> np.ndarray:
    """b_u = mean over the unit's pair of z (y(z) - y(empty)): (U, n)."""
    return np.einsum("upn,up->un", Z.astype(float), y - e) / Z.shape[1]


class _Solver:
    """Shapley values of one game from kernel units and its anchors.

    "unbiased": the mean of per-unit estimates t/n + M (b_u - A 1 t/n) with the exact
    moment A = E[z z^T] (Covert & Lee's unbiased KernelSHAP), where b_u is the unit's
    score with an additive guess phi0 taken out and put back in expectation,
    z (y(z) - y(empty) - z . phi0) + A phi0: unbiased for any phi0 fixed before the unit
    is drawn, and as steady as the regression when phi0 is close. phi0 is cross-fitted:
    the regression on the other folds' units (up to 10 folds; t/n each with one unit).
    "regression": KernelSHAP with the sampled moment on all units (consistent only).
    """

    FOLDS = 10

    def __init__(self, n: int, kind: str):
        self.n, self.kind = n, kind
        A = kernel_moment(n)
        _, Hinv = constrained_solve(A, np.zeros(n), 0.0)
        P = np.eye(n) - 1.0 / n
        self.A, self.M = A, P @ Hinv @ P
        self.chosen_rows: list[float] = []  # the regression's ridge, per level fitted
        self.fixed_rows: list[float] | None = None  # given: those ridges, in order, no cross-validation

    def _regression(self, Z, y, e, f, prior_rows: int = 0):
        """KernelSHAP on the units; ``prior_rows`` rows' worth of the exact moment blended
        into the sampled one keeps a fit on few coalitions well conditioned."""
        Zf = Z.reshape(-1, self.n).astype(float)
        A = (Zf.T @ Zf + prior_rows * self.A) / (len(Zf) + prior_rows)
        b = _unit_scores(Z, y, e).sum(axis=0) * Z.shape[1] / (len(Zf) + prior_rows)
        return constrained_solve(A, b + prior_rows * self.A.sum(axis=1) * (f - e) / self.n / (len(Zf) + prior_rows),
                                 f - e)

    def _cv_prior_rows(self, Z, y, e, f) -> float:
        """The ridge of the regression, by cross-validation over units: of 0 and n/4 ..
        4n rows' worth of the exact moment (which pulls toward the equal split of the
        game's total), the one whose fits on the other folds predict the held-out
        coalitions best. A fit on about as many coalitions as players (the least-squares
        interpolation peak) gets a ridge; a well-determined one keeps none."""
        u = len(Z)
        if u < 2:
            return float(self.n)
        folds = np.arange(u) % min(u, self.FOLDS)
        best, best_err = 0.0, math.inf
        for rows in (0.0, self.n / 4, self.n / 2, float(self.n), 2.0 * self.n, 4.0 * self.n):
            err = 0.0
            for k in range(folds.max() + 1):
                out = folds == k
                phi = self._regression(Z[~out], y[~out], e, f, prior_rows=rows)[0]
                err += float(np.sum((y[out] - e - Z[out].astype(float) @ phi) ** 2))
            if err < best_err * (1 - 1e-9):
                best, best_err = rows, err
        return best

    def per_unit(self, Z, y, e, f) -> np.ndarray:
        """(U, n) per-unit estimates, each unbiased (cross-fitted additive guess)."""
        u, t = len(Z), f - e
        phi0 = np.full((u, self.n), t / self.n)
        folds = np.arange(u) % min(u, self.FOLDS)
        if u >= 2:
            for k in range(folds.max() + 1):
                phi0[folds == k] = self._regression(Z[folds != k], y[folds != k], e, f, prior_rows=self.n)[0]
        Zf = Z.astype(float)
        fit = np.einsum("upn,un->up", Zf, phi0)
        b = np.einsum("upn,up->un", Zf, y - e - fit) / Z.shape[1] + phi0 @ self.A.T
        return t / self.n + (b - self.A.sum(axis=1) * t / self.n) @ self.M.T

    def estimate(self, Z, y, e, f) -> tuple[np.ndarray, np.ndarray]:
        """(values, stderr) of a (residual) game from its units."""
        u = len(Z)
        if self.kind == "unbiased":
            psi = self.per_unit(Z, y, e, f)
            se = psi.std(axis=0, ddof=1) / np.sqrt(u) if u >= 2 else np.full(self.n, np.nan)
            return psi.mean(axis=0), se
        rows = (self.fixed_rows[len(self.chosen_rows)] if self.fixed_rows is not None
                else self._cv_prior_rows(Z, y, e, f))
        self.chosen_rows.append(rows)
        phi, Hinv = self._regression(Z, y, e, f, prior_rows=rows)
        g = (Z.astype(float) * (y - e - Z.astype(float) @ phi)[:, :, None]).mean(axis=1)
        return phi, sandwich_stderr(Hinv @ (np.eye(self.n) - 1.0 / self.n), g)


# --------------------------------------------------------------------------- levels


class _Level:
    """One sampled fidelity: its game (counted), steps per unit of its cost, anchors,
    and the units (Z) it has played with their values (y)."""

    def __init__(self, name: str, game: Game, rate: float, target: bool):
        n = game.n_players
        self.name, self.game, self.rate = name, game, rate
        self.planner = BudgetPlanner(game) if target else None
        self.seen: set[bytes] = set()
        self.pending: dict[bytes, np.ndarray] = {}
        self.pending_steps = 0.0
        self.steps = 0.0
        self.Z = np.zeros((0, 2, n), dtype=bool)
        self.y = np.zeros((0, 2))
        self.unit_steps = 2 * rate * float(game.cost_of(np.ones((1, n), dtype=bool)))

    def reserve(self, masks: np.ndarray, left: float) -> bool:
        """Reserve the coalitions of ``masks`` when their new steps fit ``left`` (steps
        this level may still spend, pending ones included) and, for the target, its
        evaluation budget."""
        new = {}
        for m in masks:
            k = mask_key(m)
            if k not in self.seen and k not in self.pending:
                new[k] = m
        steps = self.rate * float(self.game.cost_of(np.stack(list(new.values())))) if new else 0.0
        if self.pending_steps + steps > left + 1e-9 * max(1.0, left):
            return False
        if self.planner is not None and not self.planner.take(masks):
            return False
        self.pending.update(new)
        self.pending_steps += steps
        return True

    def play(self, units: np.ndarray) -> None:
        """Evaluate reserved units (k, 2, n) and keep them."""
        if len(units):
            flat = units.reshape(-1, units.shape[-1])
            y = self.planner.evaluate(flat) if self.planner is not None else self.game(flat)
            self.Z = np.concatenate([self.Z, units])
            self.y = np.concatenate([self.y, y.reshape(len(units), 2)])
        self.seen.update(self.pending)
        self.steps += self.pending_steps
        self.pending, self.pending_steps = {}, 0.0

    def anchor(self, masks: np.ndarray) -> np.ndarray:
        self.reserve(masks, math.inf)
        y = self.planner.evaluate(masks) if self.planner is not None else self.game(masks)
        self.play(np.zeros((0, 2, masks.shape[1]), dtype=bool))
        return y


class _Units:
    """A level's played units without the game: what the pooled fit reads."""

    def __init__(self, Z: np.ndarray, y: np.ndarray, anchors):
        self.Z, self.y, self.anchors = Z, y, anchors


def _ridge(X: np.ndarray, y: np.ndarray, prior: np.ndarray, strength: float) -> np.ndarray:
    """Pooled ridge coefficients of y (U, n) on the columns X (U, n, J), centred per
    player, shrunk toward ``prior`` with ``strength`` units' worth of weight. The prior
    alone with fewer than 2 units."""
    u = y.shape[0]
    if X.shape[2] == 0:
        return prior
    if u < 2:
        return prior.copy()
    Xc = (X - X.mean(axis=0)).reshape(-1, X.shape[2])
    yc = (y - y.mean(axis=0)).reshape(-1)
    G = Xc.T @ Xc
    d = np.diag(G) * strength / u
    lhs = G + np.diag(d)
    rhs = Xc.T @ yc + d * prior
    return np.linalg.lstsq(lhs, rhs, rcond=None)[0]


def _pooled_var(psi: np.ndarray) -> float:
    return float(np.sum(np.var(psi, axis=0, ddof=1))) if len(psi) >= 2 else float("nan")


# --------------------------------------------------------------------------- the estimator


@register("multifidelity")
class MultiFidelityShapley(Estimator):
    """Shapley values of the most expensive game from it and cheaper fidelities.

    ``estimate(target_game, budget, seed, fidelities={...})``: ``budget`` is that many
    target evaluations' worth of training steps; see the module docstring for the
    resource, the method, and where it is unbiased. Parameters: ``solver`` ("regression",
    consistent, or "unbiased"), ``pilot_fraction`` (share of the steps the pilot plans to
    spend), ``shrinkage`` (units' worth of weight on the plain-difference prior of the
    coefficients), ``exact_max_players`` (a free game is enumerated up to this many
    players; sampled at no cost above), ``max_units`` (the most units any sampled level,
    the target included, plays in the pilot and again in the main stage: what a free level
    plays, and what stops a paid one whose coalitions are all drawn, as its further units
    are free repeats; a paid level it stops leaves the rest of its steps unspent).
    """

    requires = ("fidelities",)
    exact_at_full_budget = True
    _jackknife = True  # False: the per-level sandwich alone (scripts/multifidelity_stderr.py compares)

    def __init__(self, solver: str = "regression", pilot_fraction: float = 0.25, shrinkage: float = 1.0,
                 exact_max_players: int = 12, max_units: int = 4096):
        self.solver = solver
        self.pilot_fraction = pilot_fraction
        self.shrinkage = shrinkage
        self.exact_max_players = exact_max_players
        self.max_units = max_units

    def min_budget(self, n_players: int) -> int:
        return 2 if n_players == 1 else 6  # the anchors and two complement pairs

    def validate(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}; got {self.solver!r}")
        f = self.pilot_fraction
        if isinstance(f, bool) or not isinstance(f, Real) or not 0 < f < 1:
            raise ValueError(f"pilot_fraction must be a number in (0, 1); got {f!r}")
        s = self.shrinkage
        if isinstance(s, bool) or not isinstance(s, Real) or not s >= 0:
            raise ValueError(f"shrinkage must be a number >= 0; got {s!r}")
        for name in ("exact_max_players", "max_units"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {v!r}")

    def check_resources(self, game: Game, fidelities=None, **resources):
        parse_fidelities(game, fidelities)

    # ---------------------------------------------------------------- the estimate

    def _estimate(self, game, budget, rng, fidelities=None):
        n = game.n_players
        target_rate, cheap = parse_fidelities(game, fidelities)
        if n == 1:
            v0, v1 = game(anchor_masks(1))
            return {"values": np.array([v1 - v0]), "stderr": np.zeros(1), "exact": True,
                    "cost": target_rate * game.cost, "cost_unit": UNIT, "extra": {}}
        total = budget * target_rate * float(game.cost_of(np.ones((1, n), dtype=bool)))
        levels = [_Level("target", game, target_rate, True)]
        exact: list[tuple[str, CachedGame, np.ndarray, str]] = []
        for name, g, rate in sorted(cheap, key=lambda c: -c[2] * float(c[1].cost_of(np.ones((1, n), bool)))):
            counted = CachedGame(g)
            free = rate * float(g.cost_of(np.ones((1, n), dtype=bool))) == 0
            closed = g.exact_values() if free else None
            if closed is not None:
                exact.append((name, counted, np.asarray(closed, float).reshape(-1), "closed form"))
            elif free and n <= min(self.exact_max_players, MAX_EXACT_PLAYERS):
                exact.append((name, counted, shapley_from_table(counted(all_coalitions(n)), n), "enumeration"))
            else:
                levels.append(_Level(name, counted, rate, False))
        solver = _Solver(n, self.solver)
        anchors = anchor_masks(n)

        # ---- pilot: every unit on every level (the dearest cheap levels go when they do not
        # fit, decided before their anchors are bought, so the steps never pass the budget's)
        used = levels
        while True:
            spent = sum(lv.rate * float(lv.game.cost_of(anchors)) for lv in used)
            per_unit = sum(lv.unit_steps for lv in used)
            pilot_units = int(min(max((self.pilot_fraction * total - spent) // per_unit, 2), self.max_units))
            if pilot_units * per_unit <= total - spent or len(used) == 1:
                break
            used = used[:1] + used[2:]
        dropped = [lv for lv in levels if lv not in used]  # nothing played: nothing paid
        levels = used
        for lv in levels:
            lv.anchors = tuple(lv.anchor(anchors))
        ex_anchor = [tuple(g(anchors)) for _, g, _, _ in exact]
        phi_e = [v for _, _, v, _ in exact]
        spent = sum(lv.steps for lv in levels)
        planned_pilot = spent + pilot_units * sum(lv.unit_steps for lv in levels)
        Zp = kernel_units(n, pilot_units, rng)
        self._play(levels, [Zp], [math.inf] * len(levels), [pilot_units] * len(levels))
        u0 = len(levels[0].y)  # the target's pilot units (all of them unless its budget ran out)
        psi = [solver.per_unit(lv.Z[:u0], lv.y[:u0], *lv.anchors) for lv in levels]
        Zp = Zp[:u0]
        psi_e = [solver.per_unit(Zp, self._exact_on(g, Zp), *an) for (_, g, _, _), an in zip(exact, ex_anchor)]

        # ---- main: the levels and steps the pilot predicts best, for the steps left
        left = total - sum(lv.steps for lv in levels)
        plan = self._allocate(levels, psi, psi_e, left) if left >= levels[0].unit_steps else None
        chosen, coef, budgets, predicted = plan if plan is not None else ((0,), [None], [0.0], float("nan"))
        rho = 1.0 if plan is None else min(1.0, planned_pilot / total)
        main = [levels[i] for i in chosen]
        start = [len(lv.y) for lv in main]
        if plan is not None:
            batches = (kernel_units(n, 64, rng) for _ in itertools.count())
            self._play(main, batches, budgets, [self.max_units] * len(main))
            if len(main[0].y) == start[0]:  # no main unit of the target fitted: the pilot is all
                rho = 1.0
        if self.solver == "regression":
            values, var, weights, W = self._pooled(main, exact, ex_anchor, phi_e, solver)
            if self._jackknife:
                jack = self._jackknife_var(main, exact, ex_anchor, phi_e, n, solver.chosen_rows)
                var = var if jack is None else np.maximum(var, jack)
            out = self._result(values, var, levels, main, start, exact, psi, psi_e, weights, W, None,
                               pilot_units, dropped, total, predicted)
            out["extra"]["ridge_rows"] = solver.chosen_rows
            return out
        # level 0 on the pilot: regressed on the chosen cheaper levels' pilot units
        cols = [psi[i] for i in chosen[1:]] + psi_e
        r_pilot, se_pilot, a_pilot = self._pilot_residual(psi[0], cols)
        if plan is None:
            coef = [a_pilot]
        a0 = rho * a_pilot + (1 - rho) * np.asarray(coef[0])
        W = np.zeros(len(main))
        W[0] = 1.0
        We = np.zeros(len(exact))
        weights = [a0] + [np.asarray(c) for c in coef[1:]]
        for k in range(len(main)):
            for j in range(k + 1, len(main)):
                W[j] += W[k] * weights[k][j - k - 1]
            We += W[k] * weights[k][len(main) - k - 1:]
        values = rho * r_pilot + sum(w * p for w, p in zip(We, phi_e))
        var = (rho * se_pilot) ** 2
        for k, lv in enumerate(main):
            if len(lv.y) == start[k]:
                continue
            r, se = self._level_residual(k, main, start, coef[k], exact, ex_anchor, solver)
            if np.isnan(se).any():  # one unit: the pilot's spread of the same residual
                own = [psi[i] for i in chosen[k + 1:]] + psi_e
                res = psi[chosen[k]] - sum(c * p for c, p in zip(coef[k], own))
                se = np.sqrt(res.var(axis=0, ddof=1) / (len(lv.y) - start[k]))
            w = (1 - rho) if k == 0 else W[k]
            values = values + w * r
            var = var + (w * se) ** 2
        return self._result(values, var, levels, main, start, exact, psi, psi_e, weights, W, rho,
                            pilot_units, dropped, total, predicted)

    def _pooled(self, main, exact, ex_anchor, phi_e, solver):
        """"regression": every unit of each chosen level (pilot and main), coefficients
        refitted on them, one kernel regression per level's residual."""
        K = len(main)
        weights, var = [], 0.0
        W = np.zeros(K)
        W[0] = 1.0
        We = np.zeros(len(exact))
        values = np.zeros(main[0].Z.shape[-1])
        for k, lv in enumerate(main):
            Z, y = lv.Z, lv.y
            m = len(Z)
            own = [(lv2.y[:m], lv2.anchors) for lv2 in main[k + 1:]]
            own += [(self._exact_on(g, Z), an) for (_, g, _, _), an in zip(exact, ex_anchor)]
            cols = [solver.per_unit(Z, yy, *an) for yy, an in own]
            X = np.stack(cols, axis=2) if cols else np.zeros((m, Z.shape[-1], 0))
            psi_y = solver.per_unit(Z, y, *lv.anchors)
            a = _ridge(X, psi_y, self._prior(len(cols)), self.shrinkage)
            e0, e1 = lv.anchors
            r = y.copy()
            for c, (yy, an) in zip(a, own):
                r, e0, e1 = r - c * yy, e0 - c * an[0], e1 - c * an[1]
            est, se = solver.estimate(Z, r, e0, e1)
            # the sandwich measures the fit's residuals: none (an all-zero stderr) when the fit
            # interpolates, i.e. has no more distinct units (complement pairs: one equation each
            # for the values) than its n - 1 free values
            interpolates = len(np.unique(Z.reshape(m, -1), axis=0)) <= Z.shape[-1] - 1
            if (np.isnan(se).any() or interpolates) and m >= 2:
                se = np.sqrt((psi_y - X @ a).var(axis=0, ddof=1) / m)
            values = values + W[k] * est
            var = var + (W[k] * se) ** 2
            for j in range(k + 1, K):
                W[j] += W[k] * a[j - k - 1]
            We += W[k] * a[K - k - 1:]
            weights.append(a)
        values = values + sum(w * p for w, p in zip(We, phi_e))
        return values, var, weights, W

    def _jackknife_var(self, main, exact, ex_anchor, phi_e, n, rows):
        """Delete-a-group jackknife variance of the pooled ("regression") estimate: the
        whole fit (ridge, coefficients, levels) again without one group of units, a unit
        dropped from every level that played it (the levels are nested prefixes of one
        stream, so a unit's index names it on every level). Unlike the per-level sandwich
        it sees the coefficients fitted on the same units and the covariance between
        levels, which made +-2 stderr cover 74-79% of the players at 12-40 retrainings'
        worth of steps (with it: 85-93%). Each refit keeps the estimate's ridges (``rows``,
        per level), which keeps it cheap. None with fewer than 2 target units."""
        G = min(len(main[0].Z), _Solver.FOLDS)  # one unit a group up to 10 units
        if G < 2:
            return None
        solver = _Solver(n, "regression")
        ests = []
        for g in range(G):
            solver.chosen_rows, solver.fixed_rows = [], list(rows)
            sub = [_Units(lv.Z[keep], lv.y[keep], lv.anchors)
                   for lv in main for keep in [np.arange(len(lv.Z)) % G != g]]
            ests.append(self._pooled(sub, exact, ex_anchor, phi_e, solver)[0])
        ests = np.asarray(ests)
        return (G - 1) / G * ((ests - ests.mean(axis=0)) ** 2).sum(axis=0)

    def _result(self, values, var, levels, main, start, exact, psi, psi_e, weights, W, rho, pilot_units,
                dropped, total, predicted):
        paid = levels + dropped
        split = {lv.name: {"evaluations": len(lv.seen), "steps": lv.steps, "units": len(lv.y)} for lv in paid}
        for name, g, _, how in exact:
            split[name] = {"evaluations": int(g.n_evaluations), "steps": 0.0, "exact": how}
        corr = {lv.name: _correlation(psi[0], p) for lv, p in zip(levels[1:], psi[1:])}
        corr.update({name: _correlation(psi[0], p) for (name, *_), p in zip(exact, psi_e)})
        extra = {"solver": self.solver, "budget_steps": total, "split": split, "pilot_units": pilot_units,
                 "pilot_weight": rho, "dropped": [lv.name for lv in dropped], "correlation": corr,
                 "levels": [lv.name for lv in main], "main_units": [len(lv.y) - s for lv, s in zip(main, start)],
                 "coefficients": [[float(x) for x in w] for w in weights], "level_weights": [float(w) for w in W],
                 "predicted_variance": predicted}
        return {"values": values, "stderr": np.sqrt(var), "cost": float(sum(lv.steps for lv in paid)),
                "cost_unit": UNIT, "extra": extra}

    @staticmethod
    def _exact_on(g: CachedGame, Z: np.ndarray) -> np.ndarray:
        return g(Z.reshape(-1, Z.shape[-1])).reshape(len(Z), 2)

    @staticmethod
    def _play(levels, units, budgets, caps) -> None:
        """Play units nested: a unit goes to level k only when it goes to every cheaper
        level too, level k has not refused one yet, and it fits level k's steps
        (``budgets``, new ones) and unit cap. ``units`` is an iterable of batches
        (k, 2, n); play stops when the cheapest level refuses a unit."""
        K = len(levels)
        spent0 = [lv.steps for lv in levels]
        count = [0] * K
        open_ = [True] * K
        for batch in units:
            taken: list[list[np.ndarray]] = [[] for _ in range(K)]
            for unit in batch:
                for k in range(K - 1, -1, -1):  # cheapest first
                    lv = levels[k]
                    if open_[k] and count[k] < caps[k] and lv.reserve(unit, budgets[k] - (lv.steps - spent0[k])):
                        taken[k].append(unit)
                        count[k] += 1
                        continue
                    for j in range(k + 1):  # a dearer level never takes a unit a cheaper one refused
                        open_[j] = False
                    break
                if not open_[K - 1]:
                    break
            for k, lv in enumerate(levels):
                lv.play(np.stack(taken[k]) if taken[k] else np.zeros((0, 2, batch.shape[-1]), dtype=bool))
            if not open_[K - 1]:
                return

    def _prior(self, j: int) -> np.ndarray:
        prior = np.zeros(j)
        if j:
            prior[0] = 1.0  # the plain difference with the next cheaper game
        return prior

    def _pilot_residual(self, psi0, cols):
        """Level 0's residual on the pilot units ("unbiased"): each unit's coefficients
        fitted on the other folds, so its residual stays unbiased. Returns (values,
        stderr, the units' mean coefficients)."""
        u, n = psi0.shape
        X = np.stack(cols, axis=2) if cols else np.zeros((u, n, 0))
        prior = self._prior(X.shape[2])
        folds = np.arange(u) % min(u, _Solver.FOLDS)
        a_unit = np.zeros((u, X.shape[2]))
        for k in range(folds.max() + 1):
            a_unit[folds == k] = _ridge(X[folds != k], psi0[folds != k], prior, self.shrinkage)
        est = psi0 - np.einsum("unj,uj->un", X, a_unit)
        se = est.std(axis=0, ddof=1) / np.sqrt(u) if u >= 2 else np.full(n, np.nan)
        return est.mean(axis=0), se, a_unit.mean(axis=0)

    def _level_residual(self, k, levels, start, a, exact, ex_anchor, solver):
        """phi(r_k) from level k's main-stage units: its residual after the cheaper chosen
        levels and the exact games, with the pilot's coefficients."""
        lv = levels[k]
        Z, y = lv.Z[start[k]:], lv.y[start[k]:].copy()
        m = len(Z)
        e0, e1 = lv.anchors
        K = len(levels)
        for j in range(k + 1, K):
            c = a[j - k - 1]
            y -= c * levels[j].y[start[j]: start[j] + m]
            e0, e1 = e0 - c * levels[j].anchors[0], e1 - c * levels[j].anchors[1]
        for i, (_, g, _, _) in enumerate(exact):
            c = a[K - k - 1 + i]
            y -= c * self._exact_on(g, Z)
            e0, e1 = e0 - c * ex_anchor[i][0], e1 - c * ex_anchor[i][1]
        return solver.estimate(Z, y, e0, e1)

    def _chain(self, psi, psi_e):
        """Coefficients of each level on the cheaper ones (sampled, then exact), the
        level weights W and the residual variances, from the pilot's per-unit estimates."""
        K = len(psi)
        coef, sig2 = [], []
        for k in range(K):
            cols = psi[k + 1:] + psi_e
            X = np.stack(cols, axis=2) if cols else np.zeros(psi[k].shape + (0,))
            a = _ridge(X, psi[k], self._prior(len(cols)), self.shrinkage)
            coef.append(a)
            sig2.append(_pooled_var(psi[k] - X @ a))
        W = np.zeros(K)
        W[0] = 1.0
        for k in range(K):
            for j in range(k + 1, K):
                W[j] += W[k] * coef[k][j - k - 1]
        return coef, W, np.array(sig2)

    def _allocate(self, levels, psi, psi_e, left):
        """(chosen levels, coefficients, steps per level, predicted variance): the subset
        of cheap sampled levels and the split of ``left`` that minimise the predicted
        variance; None when no plan fits."""
        best = None
        K = len(levels)
        for r in range(K):
            for sub in itertools.combinations(range(1, K), r):
                chosen = (0, *sub)
                coef, W, sig2 = self._chain([psi[i] for i in chosen], psi_e)
                cost = np.array([levels[i].unit_steps for i in chosen])
                m = _nested_allocation(np.abs(W) * np.sqrt(np.nan_to_num(sig2)), cost, left, self.max_units)
                if m is None:
                    continue
                var = float(np.nansum(W**2 * sig2 / m))
                if best is None or var < best[3]:
                    budgets = [float(mk * ck) if ck > 0 else math.inf for mk, ck in zip(m, cost)]
                    best = (chosen, [np.asarray(a) for a in coef], budgets, var)
        return best


def _nested_allocation(g: np.ndarray, cost: np.ndarray, left: float, cap: int):
    """Units per level m_k proportional to g_k / sqrt(cost_k), nondecreasing from the
    dearest level (index 0) to the cheapest (blocks pooled where that fails), scaled to
    spend ``left``; a free level gets ``cap``. None when one unit on every level does
    not fit."""
    paid = cost > 0
    if cost[paid].sum() > left:
        return None
    # pool adjacent violators of the nondecreasing order over the paid levels
    blocks = [[i] for i in np.flatnonzero(paid)]

    def val(b):
        return math.sqrt(sum(g[i] ** 2 for i in b) / sum(cost[i] for i in b))

    i = 0
    while i < len(blocks) - 1:
        if val(blocks[i]) > val(blocks[i + 1]):
            blocks[i] = blocks[i] + blocks.pop(i + 1)
            i = max(i - 1, 0)
        else:
            i += 1
    rate = np.zeros(len(g))
    for b in blocks:
        rate[b] = val(b)
    rate = np.maximum(rate, 1e-12)
    kappa = left / float(np.sum(rate[paid] * cost[paid]))
    m = np.maximum(kappa * rate, 1.0)
    m = np.maximum.accumulate(np.where(paid, m, 0.0))
    while float(np.sum(m[paid] * cost[paid])) > left and kappa > 0:
        kappa *= 0.97
        m = np.maximum.accumulate(np.where(paid, np.maximum(kappa * rate, 1.0), 0.0))
    m = np.where(paid, m, float(cap))
    return np.maximum.accumulate(m)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pooled correlation of two levels' per-unit estimates (centred per player)."""
    if len(a) < 2:
        return float("nan")
    xa, xb = a - a.mean(axis=0), b - b.mean(axis=0)
    d = math.sqrt(float(np.sum(xa * xa)) * float(np.sum(xb * xb)))
    return float(np.sum(xa * xb)) / d if d > 0 else float("nan")
