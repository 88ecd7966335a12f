"""SurrogateSHAP: fit a tree surrogate to sampled coalitions, read exact Shapley values off it.

The method (arXiv 2601.22276): sample coalitions with the Shapley kernel's size
distribution, evaluate the game on them plus the empty and full anchors, fit an
XGBoost regressor f on the 0/1 masks, and return the exact Shapley values of the
surrogate game g(S) = f(1_S), which interventional TreeSHAP with the all-zeros
background computes in polynomial time.

Budget convention (differs from the authors' code): the budget counts *distinct*
game evaluations, anchors included, as every estimator in this project is compared
on. Sampled rows are drawn until the number of distinct coalitions reaches the
budget; repeated draws are kept as rows (the paper's weighting) and cost nothing.

The efficiency trap: the surrogate's values sum to f(1) - f(0), not v(N) - v(empty).
A depth-5 ensemble cannot represent the indicator of the empty coalition (an
order-n interaction), so when v(empty) is an outlier (untrained model, -FID) the
fitted f(0) misses it and every value carries the miss. ``efficiency=`` selects a
fix; "equal-split" adds the gap / n to every player, which is exactly the Shapley
value of the *anchor-pinned* surrogate game (g with g(empty) := v(empty) and
g(N) := v(N)): changing a game at the empty set by d shifts every Shapley value by
-d / n, at the full set by +d / n. The variants are compared in
``results/surrogate_variants.md`` (``scripts/compare_surrogate_variants.py``).

``adjustment=`` adds shapiq ProxySHAP's residual step
(:mod:`surrogateshap.estimators.residual`): part of the budget fits the surrogate, the
rest estimates the Shapley values of v - g with any registered estimator.
"""

from __future__ import annotations

import math

import numpy as np

from surrogateshap.attribution import efficiency_gap
from surrogateshap.estimator import Estimator
from surrogateshap.estimators.residual import adjust, as_estimator
from surrogateshap.exact import shapley_interactions_from_table, shapley_of_partial_game
from surrogateshap.game import BudgetedGame, all_coalitions
from surrogateshap.registry import register
from surrogateshap.sampling import (
    BudgetPlanner,
    anchor_masks,
    border_masks,
    border_sizes,
    mask_key,
    sample_distinct,
    sample_kernel_coalitions,
)

__all__ = [
    "DEFAULT_MODEL_PARAMS",
    "LARGE_N",
    "LARGE_N_MODEL_PARAMS",
    "EFFICIENCY_MODES",
    "fit_surrogate",
    "label_scale",
    "surrogate_values",
    "surrogate_interactions",
    "SurrogateSHAP",
    "PublishedSurrogateSHAP",
]

#: the authors' surrogate (README "Surrogate")
DEFAULT_MODEL_PARAMS = {
    "n_estimators": 900,
    "max_depth": 5,
    "learning_rate": 0.05,
    "subsample": 0.8,
    "objective": "reg:squarederror",
}

#: from this many players on, the surrogate's default is :data:`LARGE_N_MODEL_PARAMS`
LARGE_N = 100
#: 300 trees at learning rate 0.15: the 900-tree default's error at a third of its fit time
#: at n = 30, 100 and 258 (results/clipart_artists_players_scale.md); the default from
#: LARGE_N players on, where the fit is most of the method's own time
LARGE_N_MODEL_PARAMS = {"n_estimators": 300, "learning_rate": 0.15}

#: "none" is the published method; the others end with the exact gap correction
EFFICIENCY_MODES = ("none", "anchor-weight", "centered", "equal-split")

#: interactions are enumerated up to this many players, sampled above
MAX_EXACT_INTERACTION_PLAYERS = 12

#: the largest label magnitude given to xgboost (float32 gains overflow near 1e19)
MAX_LABEL = 2.0**32


# --------------------------------------------------------------------------- surrogate


def _as_dense_float32(masks) -> np.ndarray:
    if hasattr(masks, "toarray") or hasattr(masks, "tocsr"):
        # scipy.sparse: xgboost would read absent entries as "missing", not 0
        raise TypeError("pass coalition masks as a dense array, not scipy.sparse")
    arr = np.asarray(masks)
    if arr.ndim != 2:
        raise ValueError(f"masks must be 2-D (m, n); got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _seed_from(rng) -> int:
    return int(np.random.default_rng(rng).integers(2**31 - 1))


def fit_surrogate(
    masks,
    y,
    rng=None,
    sample_weight=None,
    n_jobs: int = 1,
    **params,
):
    """Fit the SurrogateSHAP regressor on coalition masks (m, n) and utilities (m,).

    ``params`` override :data:`DEFAULT_MODEL_PARAMS` (any XGBRegressor argument);
    ``random_state`` defaults to a draw from ``rng``. Returns the fitted
    ``xgboost.XGBRegressor``; its surrogate game is g(S) = model.predict(1_S).
    """
    import xgboost as xgb

    X = _as_dense_float32(masks)
    y = np.asarray(y, dtype=float).reshape(-1)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"{X.shape[0]} masks but {y.shape[0]} utilities")
    if y.size and not np.abs(y).max() <= MAX_LABEL:
        raise ValueError(
            f"utilities up to {np.abs(y).max():.3g} in magnitude: xgboost fits float32 labels and "
            f"split gains, which overflow beyond about 1e19 (labels beyond 3.4e38 are refused); "
            f"divide them by a power of two to within {MAX_LABEL:.3g} first (SurrogateSHAP does, "
            "exactly: see label_scale)")
    kw = {**DEFAULT_MODEL_PARAMS, "n_jobs": n_jobs, **params}
    kw.setdefault("random_state", _seed_from(rng))
    model = xgb.XGBRegressor(**kw)
    model.fit(X, y, sample_weight=sample_weight)
    return model


def label_scale(y) -> float:
    """1, or the power of two that brings utilities beyond :data:`MAX_LABEL` to within 1:
    dividing by a power of two is exact, and the Shapley values of the surrogate game
    scale back exactly (TreeSHAP is linear in the leaf values). Utilities within range
    are not scaled, so their fits are unchanged."""
    top = float(np.max(np.abs(y))) if np.size(y) else 0.0
    return 1.0 if top <= MAX_LABEL else 2.0 ** math.frexp(top)[1]


def _predict(model, masks, chunk: int = 1 << 17) -> np.ndarray:
    X = np.asarray(masks)
    out = np.empty(X.shape[0])
    for a in range(0, X.shape[0], chunk):
        out[a : a + chunk] = model.predict(_as_dense_float32(X[a : a + chunk]))
    return out


def surrogate_values(model, n: int) -> np.ndarray:
    """Exact Shapley values of g(S) = model.predict(1_S), by interventional TreeSHAP.

    With the single all-zeros background row, interventional TreeSHAP at the all-ones
    point is the Shapley value of g; the values sum to f(1) - f(0) (float32 trees).
    Not xgboost's ``pred_contribs`` (path-dependent TreeSHAP: a different quantity).
    """
    import shap

    explainer = shap.TreeExplainer(
        model, data=np.zeros((1, n)), feature_perturbation="interventional"
    )
    vals = explainer.shap_values(np.ones((1, n)))
    return np.asarray(vals, dtype=float).reshape(-1)


# --------------------------------------------------------------------------- interactions


def surrogate_interactions(
    predict_fn,
    n: int,
    rng=None,
    n_samples: int = 100,
    method: str = "auto",
    max_rows: int = 1 << 18,
) -> np.ndarray:
    """Pairwise Shapley interaction index of the game ``predict_fn`` (bool (m, n) -> (m,)).

    Phi_ij = sum_{S ⊆ N \\ {i,j}} |S|! (n-|S|-2)! / (n-1)! [g(S+ij) - g(S+i) - g(S+j) + g(S)].
    ``method="exact"`` enumerates all 2**n coalitions (the "auto" choice for
    n <= 12). ``"sample"`` is Monte Carlo: merge {i, j} into one unit, take a random
    order of the n-1 units and S = the unit's predecessors, i.e. |S| uniform in
    0..n-2 and S uniform given its size; the sizes are stratified (systematic
    sampling over ``n_samples`` draws per pair), which keeps the estimate unbiased.
    Costs 4 * n_samples * n(n-1)/2 predictions, in batches of ``max_rows``.
    Returns a symmetric (n, n) matrix with a zero diagonal.
    """
    if method not in ("auto", "exact", "sample"):
        raise ValueError(f"method must be 'auto', 'exact' or 'sample'; got {method!r}")
    if n < 2:
        return np.zeros((n, n))
    if method == "exact" or (method == "auto" and n <= MAX_EXACT_INTERACTION_PLAYERS):
        masks = all_coalitions(n)
        return shapley_interactions_from_table(np.asarray(predict_fn(masks), float), n)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1; got {n_samples}")
    rng = np.random.default_rng(rng)
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)])
    out = np.zeros((n, n))
    per_pair = 4 * n_samples
    step = max(1, max_rows // per_pair)
    for a in range(0, len(pairs), step):
        pp = pairs[a : a + step]
        P = len(pp)
        # stratified sizes: s = floor((k + u) (n-1) / m), k = 0..m-1, one u per pair
        u = rng.random((P, 1))
        sizes = np.floor((np.arange(n_samples)[None, :] + u) * (n - 1) / n_samples)
        sizes = sizes.astype(int).reshape(-1)  # (P * m,)
        keys = rng.random((P * n_samples, n))
        rows = np.arange(P * n_samples)
        pi = np.repeat(pp[:, 0], n_samples)
        pj = np.repeat(pp[:, 1], n_samples)
        keys[rows, pi] = np.inf  # i and j are never in S
        keys[rows, pj] = np.inf
        S = keys.argsort(axis=1).argsort(axis=1) < sizes[:, None]
        Si, Sj, Sij = S.copy(), S.copy(), S.copy()
        Si[rows, pi] = True
        Sj[rows, pj] = True
        Sij[rows, pi] = True
        Sij[rows, pj] = True
        g = np.asarray(predict_fn(np.concatenate([Sij, Si, Sj, S])), float)
        g = g.reshape(4, P, n_samples)
        est = (g[0] - g[1] - g[2] + g[3]).mean(axis=1)
        out[pp[:, 0], pp[:, 1]] = est
        out[pp[:, 1], pp[:, 0]] = est
    return out


# --------------------------------------------------------------------------- the estimator


def _sample_and_evaluate(game: BudgetedGame, budget: int, rng, paired, max_draws_factor,
                         border: bool = False):
    """Anchors (+ with ``border``, every coalition of the sizes the budget would draw
    whole) + kernel-sampled rows of the other sizes (repeats kept) up to ``budget``
    distinct coalitions, evaluated. Returns (masks, y, info, n_known): the first
    ``n_known`` rows are the anchors and the enumerated coalitions."""
    n = game.n_players
    known = anchor_masks(n)
    sizes: tuple[int, ...] = ()
    if border:
        sizes, _ = border_sizes(n, budget, reserve=1)
        known = np.concatenate([known, border_masks(n, sizes)])
    planner = BudgetPlanner(game, limit=budget)
    planner.take(known)
    y_known = planner.evaluate(known)
    rest = [s for s in range(1, n) if s not in sizes]
    rows, n_draws = np.zeros((0, n), dtype=bool), 0
    if rest and planner.left > 0:
        draw = lambda k: sample_kernel_coalitions(n, k, rng, paired, sizes=rest)  # noqa: E731
        rows, n_draws = sample_distinct(
            planner, draw, n, max_draws=max_draws_factor * budget, keep_repeats=True
        )
    y = planner.evaluate(rows) if len(rows) else np.zeros(0)
    masks = np.concatenate([known, rows])
    info = {"n_draws": int(n_draws), "border_sizes": [int(s) for s in sizes]}
    return masks, np.concatenate([y_known, y]), info, len(known)


def _anchor_rows(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return ~masks.any(axis=1), masks.all(axis=1)


def _surrogate_game(fitted, v0: float, v1: float, pinned: bool, known=None):
    """g(S) = fitted(1_S); with ``pinned`` the true anchors at empty and full, and
    the true values at ``known`` = (masks, values), the coalitions evaluated whole."""
    table = {} if known is None or not pinned else {mask_key(m): float(v) for m, v in zip(*known)}

    def fn(masks):
        masks = np.asarray(masks, dtype=bool)
        out = fitted(masks)
        if pinned:
            empty, full = _anchor_rows(masks)
            out[empty] = v0
            out[full] = v1
            for r, m in enumerate(masks) if table else ():
                v = table.get(mask_key(m))
                if v is not None:
                    out[r] = v
        return out

    return fn


@register("surrogateshap")
class SurrogateSHAP(Estimator):
    """SurrogateSHAP, with an efficiency fix and an optional residual adjustment.

    Kernel-sampled coalitions plus the empty and full anchors (the budget counts
    distinct evaluations, anchors included), an XGBoost surrogate with the authors'
    settings (``model_params`` overrides them; from :data:`LARGE_N` players on, the default
    is :data:`LARGE_N_MODEL_PARAMS`), exact TreeSHAP values of the surrogate,
    then ``efficiency``:

    - "equal-split" (default): add gap / n to every value, gap = (v(N) - v(empty)) -
      sum(values): exactly the Shapley value of the anchor-pinned surrogate game;
    - "anchor-weight": the two anchor rows get sample weight ``anchor_weight``
      (default: the number of sampled rows), then the equal-split correction of what
      gap is left (a depth-5 ensemble cannot fit an isolated anchor exactly);
    - "centered": fit y - v(empty) with base_score 0, then the equal-split correction;
    - "none": the published method (``surrogateshap-published``).

    ``adjustment``: None, or an estimator (registry name or instance, parameters in
    ``adjustment_params``) run on the residual game v - g with the budget left after
    fitting g on ``surrogate_fraction`` of it (:func:`~surrogateshap.estimators.residual.adjust`).
    g is the surrogate game the efficiency mode defines (anchor-pinned unless "none").
    An unbiased adjustment ("permutation-antithetic") makes the result unbiased for
    phi(v) whatever the fit; its stderr is reported.

    ``extra`` reports the pre-correction gap ``efficiency_gap``, the fitted anchors
    ``f_empty``/``f_full`` against ``v_empty``/``v_full``, the per-player correction and
    ``label_scale``: utilities beyond 2**32 are fitted divided by a power of two
    (:func:`label_scale`; xgboost is float32) and their values scaled back, exactly.
    With ``interactions=True`` the Attribution carries the pairwise Shapley interaction
    index of the same surrogate game: enumerated for n <= 12, sampled with
    ``interaction_samples`` per pair above. ``max_draws_factor`` caps the kernel draws
    at that many times the budget (reached only when the budget nears 2**n).

    ``border=True``: the coalition sizes the budget would draw whole
    (:func:`~surrogateshap.sampling.border_sizes`) are evaluated whole, the surrogate
    fits them with the sampled rest, and its values are pinned to every coalition
    evaluated (the Shapley value of the residual there; with an efficiency mode other
    than "none"). Off by default: measured in ``results/surrogate_border.md`` it cuts
    the error at small budgets (0.4-0.7x at 64 on digits10) but loses at 256 on some
    games (1.3-1.4x on voting n = 30 and digits10 coverage).
    """

    def __init__(
        self,
        efficiency: str = "equal-split",
        adjustment=None,
        adjustment_params: dict | None = None,
        surrogate_fraction: float = 0.5,
        model_params: dict | None = None,
        n_jobs: int = 1,
        paired: bool = False,
        anchor_weight: float | None = None,
        interactions: bool = False,
        interaction_samples: int = 100,
        max_draws_factor: int = 50,
        border: bool = False,
    ):
        self.border = border
        self.efficiency = efficiency
        self.adjustment = adjustment
        self.adjustment_params = adjustment_params
        self.surrogate_fraction = surrogate_fraction
        self.model_params = model_params
        self.n_jobs = n_jobs
        self.paired = paired
        self.anchor_weight = anchor_weight
        self.interactions = interactions
        self.interaction_samples = interaction_samples
        self.max_draws_factor = max_draws_factor

    def _adjuster(self) -> Estimator | None:
        return None if self.adjustment is None else as_estimator(self.adjustment, self.adjustment_params)

    def min_budget(self, n_players: int) -> int:
        base = min(3, 2**n_players)  # both anchors and one sampled coalition
        adj = self._adjuster()
        if adj is None:
            return base
        return min(base + adj.min_budget(n_players), 2**n_players)

    def validate(self):
        if self.efficiency not in EFFICIENCY_MODES:
            raise ValueError(
                f"efficiency must be one of {EFFICIENCY_MODES}; got {self.efficiency!r}"
            )
        f = self.max_draws_factor
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 1:
            raise ValueError(f"max_draws_factor must be an integer >= 1; got {f!r}")
        trees = (self.model_params or {}).get("n_estimators", DEFAULT_MODEL_PARAMS["n_estimators"])
        if isinstance(trees, bool) or not isinstance(trees, (int, np.integer)) or trees < 1:
            raise ValueError(f"model_params n_estimators must be an integer >= 1; got {trees!r}")
        if self.adjustment is not None and not 0.0 < self.surrogate_fraction < 1.0:
            raise ValueError(
                f"surrogate_fraction must be in (0, 1); got {self.surrogate_fraction!r}"
            )

    def _fit(self, masks, y, n_known: int, info: dict, rng):
        """The surrogate of the rows (masks, y) (the first ``n_known`` evaluated whole),
        its corrected values, ``extra`` and its surrogate game g."""
        n = masks.shape[1]
        empty, full = _anchor_rows(masks)
        v0, v1 = float(y[empty][0]), float(y[full][0])
        params = dict(self.model_params if self.model_params is not None
                      else LARGE_N_MODEL_PARAMS if n >= LARGE_N else {})
        weight, shift = None, 0.0
        if self.efficiency == "anchor-weight":
            n_sampled = int((~(empty | full)).sum())
            aw = max(n_sampled, 1) if self.anchor_weight is None else float(self.anchor_weight)
            weight = np.where(empty | full, aw, 1.0)
        elif self.efficiency == "centered":
            shift = v0
            params.setdefault("base_score", 0.0)
        scale = label_scale(np.append(y, shift))  # 1 unless beyond float32's comfort
        model = fit_surrogate(
            masks, y / scale - shift / scale, rng, sample_weight=weight, n_jobs=self.n_jobs, **params
        )

        def fitted(m):  # the surrogate f, in the game's units
            return _predict(model, m) * scale + shift

        values = surrogate_values(model, n) * scale
        f0, f1 = fitted(anchor_masks(n)).tolist()
        gap = efficiency_gap(values, v1 - v0)
        correction = 0.0 if self.efficiency == "none" else gap / n
        if self.efficiency != "none" and self.border and n_known > 2:
            # pin the surrogate to every coalition evaluated whole: add the Shapley value
            # of the residual v - f on them (equal-split is its anchors-only case)
            known = masks[:n_known]
            resid = y[:n_known] - fitted(known)
            values = values + shapley_of_partial_game(known, resid, n)
            correction = float("nan")  # not one number per player
        else:
            values = values + correction
        g = _surrogate_game(fitted, v0, v1, pinned=self.efficiency != "none",
                            known=(masks[:n_known], y[:n_known]) if self.border else None)
        extra = {
            "efficiency": self.efficiency,
            "efficiency_gap": gap,
            "correction_per_player": correction,
            "f_empty": f0,
            "f_full": f1,
            "v_empty": v0,
            "v_full": v1,
            "n_rows": int(len(masks)),
            "label_scale": scale,
            "model_params": params,
            **info,
        }
        return values, extra, g

    def _refine(self, state, game, budget, rng):
        """Draw more kernel rows until ``budget`` distinct coalitions in all (the rows
        held are kept, repeats included) and refit on every row. The first step is a
        one-shot run; later steps draw from where the last stopped, so a refined
        estimate is the surrogate of all the rows its steps drew (a one-shot run of the
        same rows would fit the same data), not of a one-shot run's rows: equal in
        distribution, not value for value. Each step refits, so doubling steps cost
        about twice the final fit."""
        for name, v, plain in (("adjustment", self.adjustment, None), ("border", self.border, False),
                               ("interactions", self.interactions, False)):
            if v != plain:
                raise ValueError(f"surrogateshap: until= needs {name}={plain!r} (got {v!r})")
        n = game.n_players
        if state is None:
            masks, y, info, n_known = _sample_and_evaluate(game, budget, rng, self.paired,
                                                           self.max_draws_factor)
            state = {"masks": masks, "y": y, "info": info, "n_known": n_known}
        elif game.n_evaluations < budget:
            planner = BudgetPlanner(game, limit=budget)
            draw = lambda k: sample_kernel_coalitions(n, k, rng, self.paired)
            rows, n_draws = sample_distinct(planner, draw, n, max_draws=self.max_draws_factor * budget,
                                            keep_repeats=True)
            y = planner.evaluate(rows) if len(rows) else np.zeros(0)
            state["masks"] = np.concatenate([state["masks"], rows])
            state["y"] = np.concatenate([state["y"], y])
            state["info"] = {**state["info"], "n_draws": state["info"]["n_draws"] + int(n_draws)}
        values, extra, _ = self._fit(state["masks"], state["y"], state["n_known"], state["info"], rng)
        return state, {"values": values, "extra": extra}

    def _estimate(self, game, budget, rng, **resources):
        n = game.n_players
        adj = self._adjuster()
        fit_budget = budget
        if adj is not None:
            reserve = adj.min_budget(n)
            fit_budget = min(max(int(round(self.surrogate_fraction * budget)), 3), budget - reserve)
        masks, y, info, n_known = _sample_and_evaluate(
            game, fit_budget, rng, self.paired, self.max_draws_factor, self.border
        )
        values, extra, g = self._fit(masks, y, n_known, info, rng)
        out = {"values": values, "extra": extra}
        if adj is not None:
            rest = budget - game.n_evaluations
            values, stderr, att = adjust(adj, game, g, values, rest, int(rng.integers(2**31 - 1)))
            out["values"], out["stderr"], out["counts"] = values, stderr, att.counts
            extra.update({"adjustment": adj.name or type(adj).__name__,
                          "surrogate_budget": int(fit_budget),
                          "adjustment_evaluations": int(att.n_evaluations)})
        if self.interactions:
            out["interactions"] = surrogate_interactions(
                g, n, rng, n_samples=self.interaction_samples
            )
        return out


@register("surrogateshap-published")
class PublishedSurrogateSHAP(SurrogateSHAP):
    """SurrogateSHAP exactly as published: no efficiency fix (values sum to f(1) - f(0)).

    Kept for comparison; ``extra["efficiency_gap"]`` = (v(N) - v(empty)) - sum(values)
    shows how far off the sum is, ``f_empty``/``f_full`` the fitted anchors.
    """

    def __init__(self, efficiency: str = "none", **kwargs):
        super().__init__(efficiency=efficiency, **kwargs)

    def validate(self):
        if self.efficiency != "none":
            raise ValueError(
                "surrogateshap-published has no efficiency fix; use 'surrogateshap' "
                f"with efficiency={self.efficiency!r}"
            )
        super().validate()
