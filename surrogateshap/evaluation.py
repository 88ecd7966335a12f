"""Every figure a benchmark reports, computed by functions a user can call too.

:class:`GroundTruth` holds what an attribution is judged against: exact Shapley values
(where known), LDS test sets per alpha (coalitions and their utilities per retraining
seed), and a removal game for the counterfactual top-k check. :func:`evaluate` turns an
:class:`~surrogateshap.attribution.Attribution` and a ground truth into one flat dict of
figures (LDS per alpha, removal deltas, error against the exact values, cost).

The regression helpers (:func:`aggregate_figures`, :func:`tolerance`,
:func:`check_regression`) compare those figures with reference figures recorded over
several estimator seeds: a figure fails when it is worse than the reference mean by
more than ``max(sigma * seed_std, floor)``.

Plain numpy/pandas on top of :mod:`surrogateshap.metrics`: no task, no model, no
estimator is imported here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from surrogateshap.attribution import Attribution, efficiency_gap
from surrogateshap.exact import banzhaf_from_table
from surrogateshap.game import coalition_key, stable_hash
from surrogateshap.metrics import compare_to_exact, lds_summary, precision_at_k, topk_removal

__all__ = [
    "ALPHAS",
    "proxy_fidelity",
    "REMOVAL_FRACTIONS",
    "removal_fractions",
    "shapley_agreement",
    "ground_truth_from_table",
    "GroundTruth",
    "evaluate",
    "lds_key",
    "removal_key",
    "REGRESSION_RULES",
    "regression_figures",
    "tolerance",
    "aggregate_figures",
    "check_regression",
]


#: the LDS alphas of the protocol (fractions of the players kept in a test coalition)
ALPHAS = (0.25, 0.5, 0.75)
#: the counterfactual removal fractions of the CIFAR protocol
REMOVAL_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.4)


def removal_fractions(n: int, fractions=REMOVAL_FRACTIONS) -> tuple[float, ...]:
    """The protocol's removal fractions for n players, as the fractions actually removed.

    Each f removes k = max(1, round(f n)) players; fractions giving the same k are kept
    once, and each is reported as k / n (so n = 10 gives 0.1, 0.2, 0.3, 0.4).
    """
    ks = sorted({max(1, round(f * n)) for f in fractions} - {n})
    return tuple(k / n for k in ks if k < n)


def lds_key(alpha: float, stat: str = "mean") -> str:
    """Name of an LDS figure: ``lds_0.5_mean``, ``lds_0.25_ci95``, ..."""
    return f"lds_{float(alpha):g}_{stat}"


def removal_key(fraction: float, which: str) -> str:
    """Name of a removal figure: ``removal_0.1_top``, ``removal_0.2_random_mean``, ..."""
    return f"removal_{float(fraction):g}_{which}"


@dataclass
class GroundTruth:
    """What attributions of one game are judged against.

    ``lds_sets`` maps alpha to ``(masks, utilities)``: boolean (m, n) test coalitions
    and their utilities, shape (n_seeds, m) (one row per retraining or noise seed).
    ``removal_game`` is any callable from boolean (m, n) masks to (m,) utilities; the
    top-k removal check removes ``fractions`` of the players from it. ``removal_held``
    (masks -> bool), when given, says whether the removal game answers a batch without
    training (a table replayed as it is, holding it all on some seed): a fraction whose
    batch it does not is left out. ``exact`` are
    the exact Shapley values of the game the estimator approximates (its seed mean for
    a retraining table), None where unknown; ``exact_other`` maps another index
    ("banzhaf", ...) to its exact values. Errors against exact values are computed
    only against truth of the attribution's own index.
    """

    players: tuple[str, ...]
    exact: np.ndarray | None = None
    lds_sets: dict[float, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    removal_game: Callable[[np.ndarray], np.ndarray] | None = None
    fractions: tuple[float, ...] = (0.1, 0.2, 0.3)
    cost_unit: str = "evaluations"
    name: str = ""
    exact_other: dict[str, np.ndarray] = field(default_factory=dict)
    removal_held: Callable[[np.ndarray], bool] | None = None
    #: player indices known to be the true sources (a planted shortcut): precision@k
    planted: np.ndarray | None = None
    #: True where the planted players should carry the *lowest* values (planted
    #: low-quality data on a higher-is-better utility): precision@k of the k lowest
    planted_lowest: bool = False
    #: (masks, utilities) of the ground truth's other coalitions (not in any LDS test set),
    #: seed means: the fit set of the additive reference
    fit_set: tuple[np.ndarray, np.ndarray] | None = None
    #: a callable returning task-level figures (the proxy's Spearman with retraining, the
    #: seed-vs-seed ceiling); computed once, on first use
    fidelity_fn: Callable[[], dict] | None = None

    def __post_init__(self):
        self.players = tuple(self.players)
        n = len(self.players)
        if self.exact is not None:
            self.exact = np.asarray(self.exact, dtype=float).reshape(-1)
            if self.exact.shape[0] != n:
                raise ValueError(f"exact has {self.exact.shape[0]} values for {n} players")
        other = {}
        for index, vals in self.exact_other.items():
            vals = np.asarray(vals, dtype=float).reshape(-1)
            if vals.shape[0] != n:
                raise ValueError(f"exact {index} values: {vals.shape[0]} for {n} players")
            other[str(index)] = vals
        self.exact_other = other
        sets = {}
        for alpha, (masks, utils) in self.lds_sets.items():
            masks = np.asarray(masks, dtype=bool)
            utils = np.atleast_2d(np.asarray(utils, dtype=float))
            if masks.ndim != 2 or masks.shape[1] != n:
                raise ValueError(f"LDS masks for alpha={alpha} must be (m, {n}); got {masks.shape}")
            if utils.shape[1] != masks.shape[0]:
                raise ValueError(
                    f"LDS utilities for alpha={alpha} must be (n_seeds, {masks.shape[0]}); "
                    f"got {utils.shape}"
                )
            sets[float(alpha)] = (masks, utils)
        self.lds_sets = dict(sorted(sets.items()))
        self.fractions = tuple(float(f) for f in self.fractions)
        if self.planted is not None:
            self.planted = np.asarray(self.planted, dtype=int).reshape(-1)
        self._ceiling = None
        self._fingerprint = None
        self._fidelity = None

    @property
    def n_players(self) -> int:
        return len(self.players)

    @property
    def alphas(self) -> tuple[float, ...]:
        return tuple(self.lds_sets)

    def exact_for(self, index: str) -> np.ndarray | None:
        """Exact values of ``index`` ("shapley", "banzhaf", ...), None where unknown."""
        return self.exact if index == "shapley" else self.exact_other.get(index)

    def fingerprint(self) -> str:
        """Short hash of the exact values and LDS test sets (8 significant digits).

        Reference figures are only comparable on the same ground truth; a rebuilt
        retraining table (another seed finished, another config) changes this.
        """

        if getattr(self, "_fingerprint", None) is not None:
            return self._fingerprint

        def r(a):
            return [float(f"{x:.8g}") for x in np.asarray(a, float).ravel()]

        parts = [list(self.players), None if self.exact is None else r(self.exact)]
        parts += [[k, r(v)] for k, v in sorted(self.exact_other.items())]
        for alpha, (m, u) in self.lds_sets.items():
            parts.append([alpha, np.packbits(m).tobytes().hex(), r(u)])
        self._fingerprint = stable_hash(parts)
        return self._fingerprint

    def ceiling(self) -> dict:
        """LDS per alpha of the exact values themselves (what a perfect estimate scores;
        ``lds_{alpha}_mean``; on a noisy game it can be far below 100, or negative), and
        of an additive model fitted by least squares on the ground truth's other
        coalitions (``additive_lds_{alpha}_mean``: what values fitted to the retrained
        utilities alone reach when the exact ones are unknown; a reference, not a bound:
        an estimator can beat it). Empty where neither is known."""
        if self._ceiling is None:
            self._ceiling = {}
            weights = self.additive_fit()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                for alpha, (masks, utils) in self.lds_sets.items():
                    if self.exact is not None:
                        self._ceiling[lds_key(alpha)] = lds_summary(self.exact, masks, utils)["mean"]
                    if weights is not None:
                        self._ceiling["additive_" + lds_key(alpha)] = lds_summary(weights, masks, utils)["mean"]
        return dict(self._ceiling)

    def additive_fit(self) -> np.ndarray | None:
        """Per-player weights of v(S) ~ c + sum_{i in S} w_i fitted by least squares on the
        fit set (None without one, or with fewer coalitions than unknowns)."""
        if self.fit_set is None:
            return None
        masks, utils = self.fit_set
        masks = np.asarray(masks, dtype=bool)
        if len(masks) <= self.n_players + 1:
            return None
        X = np.hstack([np.ones((len(masks), 1)), masks.astype(float)])
        coef, *_ = np.linalg.lstsq(X, np.asarray(utils, dtype=float).reshape(-1), rcond=None)
        return coef[1:]

    def fidelity(self) -> dict:
        """Task-level figures of this utility's games (the proxy's Spearman with
        retraining and the seed-vs-seed ceiling), computed once; {} without them."""
        if self._fidelity is None:
            self._fidelity = dict(self.fidelity_fn()) if self.fidelity_fn is not None else {}
        return dict(self._fidelity)


def evaluate(
    attribution,
    truth: GroundTruth,
    k: int | None = None,
    n_random: int = 5,
    seed: int = 0,
) -> dict:
    """Every figure of one attribution against ``truth``, as a flat JSON-ready dict.

    - ``lds_{alpha}_mean``, ``_std``, ``_ci95``, ``_n_seeds`` per alpha (LDS in points,
      100 x Spearman, mean over the ground truth's seeds; :func:`metrics.lds_summary`),
      and ``lds_{alpha}_s{i}``, the LDS against the i-th retraining seed of the ground
      truth alone, i = 0, 1, ... in the table's seed order (a report's interval pools them
      over estimator seeds);
    - ``precision_at_{k}``, where the truth names planted players (k of them): the share
      of the k highest-valued players (lowest, with ``planted_lowest``) that are planted
      (:func:`metrics.precision_at_k`);
    - ``removal_{fraction}_top``, ``_bottom``, ``_random_mean`` per fraction: change of
      the removal game's utility when the top / bottom / random k players by value are
      removed (:func:`metrics.topk_removal`; ``n_random`` random sets, ``seed``);
    - where exact values of the attribution's ``index`` are known: ``relative_l2``,
      ``spearman``, ``topk_recall`` (``k`` defaults to :func:`metrics.default_topk`),
      and ``efficiency_gap`` = (sum of exact values - sum of values) / sum |exact|
      (:func:`~surrogateshap.attribution.efficiency_gap`, relative);
    - otherwise, where exact Shapley values are known (a datamodel, LOO or heuristic
      score): ``shapley_spearman`` and ``shapley_relative_l2_rescaled``
      (:func:`shapley_agreement`), so every estimator gets an error against them;
    - ``attribution_index``: what the values estimate (a plain array: Shapley values);
    - ``n_evaluations``, ``cost``, ``cost_unit``, ``seconds`` (from the Attribution;
      timing here is informational, benchmarks time with pytest-benchmark).

    ``attribution`` may also be a plain array of values (cost figures are then absent).
    Undefined statistics (LDS of constant values) come back as nan.
    """
    index = "shapley"
    if isinstance(attribution, Attribution):
        values = attribution.values
        index = attribution.index
        if attribution.players != truth.players:
            raise ValueError(
                f"attribution players {attribution.players[:3]}... do not match the ground "
                f"truth's {truth.players[:3]}..."
            )
    else:
        values = np.asarray(attribution, dtype=float).reshape(-1)
    n = truth.n_players
    if values.shape[0] != n:
        raise ValueError(f"{values.shape[0]} values for {n} players")
    out: dict = {"attribution_index": index}
    with warnings.catch_warnings():
        # constant values make Spearman undefined: reported as nan, not as a warning flood
        warnings.simplefilter("ignore", RuntimeWarning)
        for alpha, (masks, utils) in truth.lds_sets.items():
            s = lds_summary(values, masks, utils)
            out[lds_key(alpha, "mean")] = s["mean"]
            out[lds_key(alpha, "std")] = s["std"]
            out[lds_key(alpha, "ci95")] = s["ci95"]
            out[lds_key(alpha, "n_seeds")] = int(s["n_seeds"])
            for i, v in enumerate(np.atleast_1d(s["lds"])):
                out[lds_key(alpha, f"s{i}")] = float(v)
        if truth.removal_game is not None and truth.fractions:
            df = topk_removal(values, truth.removal_game, truth.fractions, n_random=n_random, seed=seed,
                              available=truth.removal_held)
            out["removal_fractions_scored"] = int(len(df))
            for row in df.itertuples():
                for which in ("top", "bottom", "random_mean", "random_std"):
                    out[removal_key(row.fraction, which)] = float(getattr(row, which))
                out[removal_key(row.fraction, "k")] = int(row.k)
        if truth.planted is not None and len(truth.planted):
            kp = len(truth.planted)
            signed = -np.asarray(values, dtype=float) if truth.planted_lowest else values
            out[f"precision_at_{kp}"] = precision_at_k(signed, truth.planted, kp)
        exact = truth.exact_for(index)
        if exact is not None:
            cmp = compare_to_exact(values, exact, k=k)
            out["relative_l2"] = cmp["relative_l2"]
            out["spearman"] = cmp["spearman"]
            out["topk_recall"] = cmp["topk_recall"]
            out["topk_k"] = cmp["k"]
            scale = float(np.abs(exact).sum())
            out["efficiency_gap"] = (
                efficiency_gap(values, exact.sum()) / scale if scale > 0 else float("nan")
            )
        elif truth.exact is not None:
            out.update(shapley_agreement(values, truth.exact))
    if isinstance(attribution, Attribution):
        out["n_evaluations"] = int(attribution.n_evaluations)
        out["cost"] = float(attribution.cost)
        out["cost_unit"] = attribution.cost_unit
        out["seconds"] = float(attribution.seconds)
    return out


def shapley_agreement(values, shapley) -> dict:
    """How close a score of another index (datamodel, LOO, heuristic) comes to the exact
    Shapley values, on its own scale: ``shapley_spearman`` (rank agreement) and
    ``shapley_relative_l2_rescaled`` = min over a of ||a values - shapley|| / ||shapley||
    (least-squares a; 1 for a score orthogonal to the truth, 0 for a multiple of it)."""
    v = np.asarray(values, dtype=float).reshape(-1)
    phi = np.asarray(shapley, dtype=float).reshape(-1)
    vv, pp = float(v @ v), float(phi @ phi)
    a = float(v @ phi) / vv if vv > 0 else 0.0
    rel = float(np.linalg.norm(a * v - phi) / np.sqrt(pp)) if pp > 0 else float("nan")
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant score has no rank correlation: nan
        rho = float(spearmanr(v, phi).statistic)
    return {"shapley_relative_l2_rescaled": rel, "shapley_spearman": rho}


def ground_truth_from_table(table, utility: str, alphas=ALPHAS, fractions=None,
                            name: str = "", fallback=None, test_sets=None, planted=None,
                            fidelity_fn=None, planted_lowest: bool = False) -> GroundTruth:
    """The one ground-truth builder: a coalition table plus alphas.

    ``table`` is a :class:`~surrogateshap.table.CoalitionTable`. With every coalition
    for at least one seed: exact Shapley and Banzhaf values of the seed mean and LDS on
    every coalition keeping int(alpha n) players. With sampled coalitions (a task too
    large to enumerate): no exact values, LDS on the table's retrained test coalitions of
    that size (an alpha with fewer than 2 is left out), among ``test_sets[alpha]`` (the
    protocol's drawn test coalitions) when given. Utilities are per retraining
    seed; the removal game is the seed-mean table, with ``fallback`` (seed, masks ->
    utilities, e.g. that seed's retraining game through the same cache) for the
    coalitions a seed lacks; without a fallback (a table replayed as it is) a removal
    fraction is scored on the seeds that hold all its coalitions, and left out when
    none does.
    The fit set of the additive reference is every other coalition every seed holds (seed
    means); ``planted`` and ``fidelity_fn`` are passed on to the :class:`GroundTruth`.
    The CLI, the scripts and the benchmark all build the ground truth of a table here.
    """
    n = table.n_players
    exact, other = None, {}
    if table.complete_seeds():
        utilities = table.full_utilities(utility)
        exact = table.exact_shapley(utility)
        other = {"banzhaf": banzhaf_from_table(utilities, n)}
    sets = {}
    for alpha in alphas:
        masks, utils = table.lds_ground_truth(utility, alpha, (test_sets or {}).get(alpha))
        if len(masks) >= 2:
            sets[alpha] = (masks, utils)
    held = table.coalitions()
    tested = [m for m, _ in sets.values()] + [np.atleast_2d(np.asarray(t, bool)) for t in (test_sets or {}).values()]
    tested = {coalition_key(m) for part in tested for m in part}  # drawn test coalitions stay out
    rest = held[[coalition_key(m) not in tested for m in held]] if len(held) else held
    fit = (rest, table.values(rest, utility)) if len(rest) else None
    return GroundTruth(
        players=table.players,
        exact=exact,
        exact_other=other,
        lds_sets=sets,
        removal_game=table.game(utility, fallback=fallback, partial=fallback is None),
        removal_held=None if fallback is not None else table.game(utility).held_together,
        fractions=removal_fractions(n) if fractions is None else fractions,
        cost_unit="model trainings",
        name=name or utility,
        planted=planted,
        planted_lowest=planted_lowest,
        fit_set=fit,
        fidelity_fn=fidelity_fn,
    )


def proxy_fidelity(table, utility: str, proxy) -> dict:
    """How well a proxy game ranks coalitions as retraining does, beside the noise ceiling
    of one retraining: Spearman of the proxy's utilities with the table's seed mean over
    the coalitions every seed holds (1..n-1 players), ``proxy_spearman``, and of seed
    against seed, ``seed_spearman`` (nan with one seed); ``fidelity_coalitions`` counts
    them. ``proxy`` is any callable (masks -> utilities)."""
    from scipy.stats import spearmanr

    masks = table.coalitions()
    masks = masks[(masks.sum(1) > 0) & (masks.sum(1) < table.n_players)]
    out = {"fidelity_coalitions": int(len(masks)), "proxy_spearman": float("nan"),
           "seed_spearman": float("nan")}
    if len(masks) < 3:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["proxy_spearman"] = float(spearmanr(np.asarray(proxy(masks), float),
                                                table.values(masks, utility)).statistic)
        seeds = table.mean_seeds
        if len(seeds) > 1:
            out["seed_spearman"] = float(spearmanr(table.values(masks, utility, seeds[0]),
                                                   table.values(masks, utility, seeds[1])).statistic)
    return out


# ---------------------------------------------------------------- regression


#: figures checked against a reference: figure pattern -> (higher_is_better, absolute
#: floor, relative floor). A figure's tolerance is max(sigma * seed std, floor,
#: rel_floor * |reference mean|). LDS floors are in LDS points (of 100).
REGRESSION_RULES: dict[str, tuple[bool, float, float]] = {
    "lds_*_mean": (True, 2.0, 0.0),
    "relative_l2": (False, 0.02, 0.10),
}
SIGMA = 3.0


def _rule(figure: str):
    for pattern, rule in REGRESSION_RULES.items():
        if pattern == figure:
            return rule
        if "*" in pattern:
            head, tail = pattern.split("*", 1)
            if figure.startswith(head) and figure.endswith(tail) and len(figure) > len(head) + len(tail):
                return rule
    return None


def regression_figures(figures: Mapping) -> list[str]:
    """The figures of ``figures`` that the regression check covers."""
    return [f for f in figures if _rule(f) is not None]


def tolerance(figure: str, mean: float, std: float, sigma: float = SIGMA) -> float:
    """How much worse than the reference mean a figure may be: max(sigma std, floors)."""
    rule = _rule(figure)
    if rule is None:
        raise KeyError(f"no regression rule for figure {figure!r}")
    _, floor, rel = rule
    std = 0.0 if std is None or not math.isfinite(std) else float(std)
    m = abs(mean) if mean is not None and math.isfinite(mean) else 0.0
    return max(sigma * std, floor, rel * m)


def aggregate_figures(per_seed: Sequence[Mapping], sigma: float = SIGMA) -> dict:
    """Reference entry of one case from its per-seed figure dicts.

    Returns {figure: {"mean", "std" (ddof=1, 0 for one seed), "n", "tolerance",
    "higher_is_better"}} for every figure the regression check covers. A figure that
    is nan for some seed gets a nan mean (and is then not checked).
    """
    if not per_seed:
        raise ValueError("no per-seed figures to aggregate")
    names = sorted(set().union(*[regression_figures(f) for f in per_seed]))
    out = {}
    for name in names:
        vals = np.array([float(f.get(name, float("nan"))) for f in per_seed])
        mean = float(vals.mean())
        std = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        higher, _, _ = _rule(name)
        out[name] = {
            "mean": mean,
            "std": std,
            "n": int(len(vals)),
            "tolerance": tolerance(name, mean, std, sigma) if math.isfinite(mean) else float("nan"),
            "higher_is_better": higher,
        }
    return out


def check_regression(figures: Mapping, reference: Mapping) -> list[str]:
    """Failures of ``figures`` against one case's reference entry (empty: all good).

    Each failure names the figure, the value, the reference mean +- std, the tolerance
    and by how much the figure is worse beyond it. A figure whose reference mean is nan
    is not checked; a figure that is nan (or missing) now but finite in the reference
    fails.
    """
    failures = []
    for name, ref in reference.items():
        mean = float(ref["mean"])
        if not math.isfinite(mean):
            continue
        tol = float(ref.get("tolerance", float("nan")))
        if not math.isfinite(tol):
            tol = tolerance(name, mean, float(ref.get("std", 0.0)))
        higher = bool(ref.get("higher_is_better", _rule(name)[0] if _rule(name) else True))
        value = figures.get(name)
        if value is None or not math.isfinite(float(value)):
            failures.append(
                f"{name} is {value} but the reference is {mean:.4g} ± {ref.get('std', 0):.2g}"
            )
            continue
        value = float(value)
        worse = (mean - value) if higher else (value - mean)
        if worse > tol:
            direction = "lower" if higher else "higher"
            failures.append(
                f"{name} = {value:.4g} is {worse:.4g} {direction} (worse) than the reference "
                f"mean {mean:.4g} (seed std {float(ref.get('std', 0)):.2g}, n={ref.get('n', '?')}); "
                f"tolerance {tol:.4g}, exceeded by {worse - tol:.4g}"
            )
    return failures
