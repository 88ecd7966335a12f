"""Error vs expensive budget: the control-variate estimator "proxy-cv" against the baselines.

Budgets count evaluations of the expensive game only (retrainings); the cheap proxy's
evaluations are free here and reported by proxy-cv in ``extra["proxy_evaluations"]``.

Known pairs (n = 10, exact values by linearity): cheap p = random_unanimity_game(10,
seed=1); expensive v = a p + d with d five small unanimity terms (the tests' pair):
"same-scale" a = 1, "2x-scale" a = 2 (a proxy on another scale: c must be estimated); "weak proxy"
v = p + 0.5 q, q = random_unanimity_game(10, seed=7) (a proxy that misses much of v).

digits10 (only when datasets/digits10/retraining_table.csv holds a seed with all 1,024
coalitions): expensive = the retraining table replayed (TableGame, mean over the
complete seeds), cheap = task.proxy_game(utility) (the first call trains the full-data
model, ~10-30 s, cached), ground truth = the table's exact Shapley values; utilities
neg_fid and inception_score. LDS at alpha 0.25 / 0.5 / 0.75 over every coalition of
that size, against each retraining seed (evaluation.evaluate); "exact" is the LDS of the
exact values (the ceiling), "proxy only" the proxy's own exact values (0 retrainings).

Methods: proxy-cv (permutation residual, c estimated and cross-fitted: the default),
proxy-cv c=1 (the plain difference v - p), proxy-cv kernel (paired KernelSHAP residual),
permutation-antithetic, kernelshap. Figures: mean +- std over estimator seeds; "n/a"
where the budget is under the method's minimum (2n = 20 for the permutation samplers).

Usage: python scripts/control_variate_demo.py [--seeds 20] [--budgets 16 32 64 128 256]
       [--skip-digits] [--csv results/control_variate_demo.csv]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from surrogateshap import CachedGame, UnanimityGame, random_unanimity_game
from surrogateshap.exact import exact_shapley
from surrogateshap.evaluation import ALPHAS, GroundTruth, evaluate, ground_truth_from_table
from surrogateshap.registry import get_estimator

METHODS = {
    "proxy-cv": ("proxy-cv", {}),
    "proxy-cv c=1": ("proxy-cv", {"c": 1.0}),
    "proxy-cv kernel": ("proxy-cv", {"residual": "kernel"}),
    "permutation-antithetic": ("permutation-antithetic", {}),
    "kernelshap": ("kernelshap", {}),
}
SMALL = [((0, 1), 0.8), ((2, 3, 4), -1.0), ((5,), 0.5), ((6, 7), 0.7), ((1, 8, 9), 0.6)]
UTILITIES = ("neg_fid", "inception_score")


def known_pairs():
    cheap = random_unanimity_game(10, seed=1)
    out = {}
    for name, a in (("same-scale", 1.0), ("2x-scale", 2.0)):
        exp = UnanimityGame(
            10, cheap.terms + [t for t, _ in SMALL],
            list(a * cheap.coefficients) + [c for _, c in SMALL],
        )
        out[name] = (exp, cheap, exp.exact_values())
    other = random_unanimity_game(10, seed=7)
    weak = UnanimityGame(10, cheap.terms + other.terms,
                         list(cheap.coefficients) + list(0.5 * other.coefficients))
    out["weak proxy"] = (weak, cheap, weak.exact_values())
    return out


def run_method(label, exp, cheap, budget, seeds):
    """Attributions of one method over seeds, or None when the budget is too small."""
    name, params = METHODS[label]
    est = get_estimator(name, **params)
    if budget < est.min_budget(exp.n_players):
        return None
    res = {"proxy": cheap} if "proxy" in est.requires else {}
    return [est.estimate(exp, budget, seed=s, **res) for s in seeds]


def evaluate_pair(game_name, exp, cheap, exact, budgets, seeds, lds_truth=None):
    """Rows (game, method, budget, metric, mean, std) for every method and budget."""
    rows = []

    def add(method, budget, metric, vals):
        vals = np.asarray(vals, dtype=float)
        rows.append({"game": game_name, "method": method, "budget": budget, "metric": metric,
                     "mean": vals.mean(), "std": vals.std(), "n": len(vals)})

    truth = lds_truth or GroundTruth(players=exp.players, exact=exact)

    def score(method, budget, values_list):
        figs = [evaluate(v, truth) for v in values_list]
        add(method, budget, "rel_l2", [f["relative_l2"] for f in figs])
        for alpha in truth.alphas:
            add(method, budget, f"lds@{alpha}", [f[f"lds_{alpha:g}_mean"] for f in figs])

    # 0 retrainings: the proxy's own values (what SurrogateSHAP's proxy game says)
    score("proxy only", 0, [exact_shapley(cheap)])
    if lds_truth:
        score("exact", 0, [exact])
    for budget in budgets:
        for label in METHODS:
            atts = run_method(label, exp, cheap, budget, seeds)
            if atts is None:
                continue
            score(label, budget, [a.values for a in atts])
            if label == "proxy-cv":
                add(label, budget, "c", [a.extra["c"] for a in atts])
                add(label, budget, "correlation", [a.extra["correlation"] for a in atts])
    return rows


def show(rows, metric, title):
    df = pd.DataFrame([r for r in rows if r["metric"] == metric])
    if df.empty:
        return
    digits = 1 if metric.startswith("lds") else 3
    df["cell"] = [f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(df["mean"], df["std"])]
    order = ["exact", "proxy only", *METHODS]
    df["method"] = pd.Categorical(df["method"], categories=order, ordered=True)
    df["game"] = pd.Categorical(df["game"], categories=list(dict.fromkeys(df["game"])))
    table = df.pivot_table(index=["game", "method"], columns="budget", values="cell",
                           aggfunc="first", observed=True).fillna("n/a")
    print(f"\n== {title} ==")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string())


def digits_pairs(utilities):
    """(name, expensive, cheap, exact, lds truth) per utility, or a reason to skip."""
    from surrogateshap.tasks import get_task
    from surrogateshap.tasks.reference import RETRAINING_CSV, load_reference, reference_dir

    task = get_task("digits10")
    path = reference_dir(task.name) / RETRAINING_CSV
    if not path.exists():
        return [], f"{path} not found"
    table = load_reference(task)
    complete = table.complete_seeds()
    if not complete:
        return [], f"{path} has no seed with all {2**task.n_players} coalitions"
    out = []
    for u in utilities:
        exp = table.game(u)  # mean over the complete seeds
        cheap = CachedGame(task.proxy_game(u))  # memo shared by every estimate
        truth = ground_truth_from_table(table, u, ALPHAS)
        out.append((f"digits10 {u}", exp, cheap, table.exact_shapley(u), truth))
    return out, f"{path}: complete seeds {complete}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budgets", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--skip-digits", action="store_true")
    ap.add_argument("--csv", type=Path, default=None, help="write the long table here")
    args = ap.parse_args(argv)
    if args.seeds < 5:
        ap.error("use at least 5 seeds")
    seeds = range(args.seeds)
    t0 = time.perf_counter()
    rows = []
    for name, (exp, cheap, exact) in known_pairs().items():
        rows += evaluate_pair(name, exp, cheap, exact, args.budgets, seeds)
    if args.skip_digits:
        print("digits10: skipped (--skip-digits)")
    else:
        pairs, note = digits_pairs(UTILITIES)
        print(f"digits10: {note}" + ("" if pairs else "; skipped"))
        for name, exp, cheap, exact, truth in pairs:
            rows += evaluate_pair(name, exp, cheap, exact, args.budgets, seeds, truth)
    print(f"\n{args.seeds} seeds; budgets = expensive evaluations; mean ± std over seeds "
          f"({time.perf_counter() - t0:.0f} s)")
    show(rows, "rel_l2", "relative L2 error vs exact values")
    for alpha in ALPHAS:
        show(rows, f"lds@{alpha}", f"LDS at alpha = {alpha} (mean over retraining seeds)")
    show(rows, "c", "proxy-cv: control-variate coefficient c")
    show(rows, "correlation", "proxy-cv: pooled correlation of expensive and cheap marginals")
    if args.csv is not None:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(args.csv, index=False)
        print(f"\nwrote {args.csv}")


if __name__ == "__main__":
    main()
