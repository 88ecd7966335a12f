"""Multi-fidelity Shapley on digits10 against the exact retraining values, at equal training steps.

The held-out check of issue 31: digits10's table holds every coalition retrained on 3
seeds, so the exact Shapley values of the retraining game (the seed mean) are known.
Three games of the same 10 contributors, costed in training steps:

- retraining: the table's seed 0 replayed (one retraining per coalition, as it would be
  paid in practice; ``config.steps`` = 1,000 steps each);
- fine-tuning: the benchmark's ``FineTuningGame`` (the full model pruned to sparsity 0.5,
  fine-tuned 200 steps on the coalition; seed 0), cached under $SURROGATESHAP_CACHE, so
  an interrupted run resumes; ``--tabulate`` fine-tunes every coalition first;
- proxy: SurrogateSHAP's proxy game over the full model's sample bank (0 steps a
  coalition).

The full model (1,000 steps) is shared by the proxy and the fine-tuning game and counted
in no row. At each budget B (retrainings' worth of steps, B x 1,000) every estimator gets
the same steps: "multifidelity" splits them itself; the retraining-only estimators get B
retrainings, the fine-tuning-only KernelSHAP gets 5 B fine-tunings, proxy-cv and
SurrogateSHAP's ``adjustment=`` get B retrainings plus the free proxy. SurrogateSHAP on
the proxy alone (512 proxy coalitions, 0 steps) is one row for every budget. Figures:
relative L2 error against the exact values, mean +- sd over estimator seeds; "n/a" where
B is under the estimator's minimum. The text from "## Notes" on in ``--out`` is kept.

Usage: SURROGATESHAP_CACHE=... nice python scripts/digits10_multifidelity.py
       [--budgets 10 20 40] [--seeds 5] [--utilities neg_fid inception_score coverage]
       [--tabulate] [--out results/digits10_multifidelity.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

UTILITIES = ("neg_fid", "inception_score", "coverage")
FT_STEPS = 200
NOTES = "## Notes"


def methods(ft_per_retraining: int):
    """(label, estimator spec, game played, resources, budget of B) for each method."""
    mf = {"target": None, "finetune": "ft", "proxy": "proxy"}
    return [
        ("multifidelity (retraining + FT + proxy)", "multifidelity", "retraining", mf, 1),
        ("multifidelity, solver='unbiased'", "multifidelity(solver='unbiased')", "retraining", mf, 1),
        ("multifidelity (retraining + proxy)", "multifidelity", "retraining",
         {"target": None, "proxy": "proxy"}, 1),
        ("multifidelity (retraining + FT)", "multifidelity", "retraining", {"target": None, "finetune": "ft"}, 1),
        ("proxy-cv (permutation residual)", "proxy-cv", "retraining", "proxy", 1),
        ("proxy-cv (kernel residual)", "proxy-cv(residual='kernel')", "retraining", "proxy", 1),
        ("SurrogateSHAP + adjustment kernelshap (retraining)", "surrogateshap(adjustment='kernelshap')",
         "retraining", None, 1),
        ("SurrogateSHAP + adjustment permutation-antithetic (retraining)",
         "surrogateshap(adjustment='permutation-antithetic')", "retraining", None, 1),
        ("KernelSHAP (retraining)", "kernelshap", "retraining", None, 1),
        ("permutation-antithetic (retraining)", "permutation-antithetic", "retraining", None, 1),
        ("KernelSHAP (fine-tuning, 5 B fine-tunings)", "kernelshap", "ft", None, ft_per_retraining),
    ]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budgets", type=int, nargs="+", default=[10, 20, 40],
                   help="retrainings' worth of training steps")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--utilities", nargs="+", default=list(UTILITIES))
    p.add_argument("--tabulate", action="store_true", help="fine-tune every coalition first (resumable)")
    p.add_argument("--out", default="results/digits10_multifidelity.md")
    args = p.parse_args(argv)

    import torch

    from surrogateshap.benchmark.tasks import TableBenchmark
    from surrogateshap.exact import shapley_from_table
    from surrogateshap.game import all_coalitions
    from surrogateshap.metrics import relative_l2
    from surrogateshap.registry import get_estimator
    from surrogateshap.tasks.games import FineTuningGame

    torch.set_num_threads(1)
    bt = TableBenchmark("digits10")
    table, task = bt.table, bt.task
    steps = int(task.config.steps)
    masks = all_coalitions(table.n_players)
    fts = {u: FineTuningGame(task, u, seed=0, sparsity=0.5, steps=FT_STEPS, progress=False) for u in args.utilities}
    t0 = time.perf_counter()
    if args.tabulate:
        sizes = masks.sum(1)
        order = np.argsort(np.minimum(sizes, table.n_players - sizes), kind="stable")  # kernel's likeliest first
        for i in range(0, len(order), 32):
            fts[args.utilities[0]](masks[order[i:i + 32]])
    tabulate_s = time.perf_counter() - t0
    rows, splits, floors = [], [], []
    for u in args.utilities:
        truth = shapley_from_table(table.game(u)(masks), table.n_players)
        games = {"retraining": table.game(u, seed=0), "ft": fts[u], "proxy": bt.proxy(u)}
        floors.append((u, "exact values of the seed-0 retraining game",
                       relative_l2(shapley_from_table(games["retraining"](masks), table.n_players), truth)))
        floors.append((u, "exact values of the proxy game",
                       relative_l2(shapley_from_table(games["proxy"](masks), table.n_players), truth)))
        if len(fts[u].store.records) >= len(masks) - 1:
            floors.append((u, "exact values of the fine-tuning game",
                           relative_l2(shapley_from_table(fts[u](masks), table.n_players), truth)))
        for s in range(args.seeds):
            t = time.perf_counter()
            att = get_estimator("surrogateshap").estimate(games["proxy"], 512, seed=s)
            rows.append({"utility": u, "method": "SurrogateSHAP (proxy, 512 coalitions)", "budget": 0, "seed": s,
                         "rel_l2": relative_l2(att.values, truth), "steps": 0.0,
                         "seconds": time.perf_counter() - t})
        for label, spec, played, res, scale in methods(steps // FT_STEPS):
            for b in args.budgets:
                est = get_estimator(spec)
                budget = b * scale
                if est.unsupported(table.n_players, budget):
                    continue
                for s in range(args.seeds):
                    kw = {}
                    if isinstance(res, dict):
                        kw["fidelities"] = {k: (steps if v is None else games[v] if v == "ft" else (games[v], 0))
                                            for k, v in res.items()}
                    elif res:
                        kw[res] = games[res]
                    t = time.perf_counter()
                    att = est.estimate(games[played], budget, seed=s, **kw)
                    paid = att.cost if att.cost_unit == "training steps" else att.cost * steps
                    rows.append({"utility": u, "method": label, "budget": b, "seed": s,
                                 "rel_l2": relative_l2(att.values, truth), "steps": paid,
                                 "seconds": time.perf_counter() - t})
                    if spec == "multifidelity":
                        split = att.extra.get("split", {})
                        splits.append({"utility": u, "method": label, "budget": b, "seed": s,
                                       **{f"{k} evaluations": v["evaluations"] for k, v in split.items()},
                                       **{f"{k} steps": v["steps"] for k, v in split.items() if "units" in v},
                                       "levels": "+".join(att.extra.get("levels", ["(exact)"]))})
                print(f"{u} {label} B={b}: {np.mean([r['rel_l2'] for r in rows[-args.seeds:]]):.3f}", flush=True)
    write(args, pd.DataFrame(rows), pd.DataFrame(splits), floors, steps, tabulate_s,
          {u: fts[u].n_trained for u in args.utilities})


def _cell(x: pd.Series) -> str:
    return f"{x.mean():.3f} ± {x.std(ddof=1):.3f}" if len(x) > 1 else f"{x.mean():.3f}"


def write(args, df, splits, floors, steps, tabulate_s, tuned):
    out = Path(args.out)
    kept = ""
    if out.exists() and NOTES in out.read_text():
        kept = out.read_text()[out.read_text().index(NOTES):]
    lines = ["# Multi-fidelity Shapley on digits10: error against the exact retraining values", "",
             (f"Produced by `nice python scripts/digits10_multifidelity.py --budgets {' '.join(map(str, args.budgets))} "
             f"--seeds {args.seeds} --utilities {' '.join(args.utilities)}` (fine-tuned this run: {sum(tuned.values())}; tabulation {tabulate_s:.0f} s). "
             f"Budget B = B retrainings' worth of training steps (B x {steps}); every row at B paid at most "
             "that (column `steps`, the mean actually paid). Relative L2 error against the exact Shapley "
             "values of the retraining game (mean of the table's 3 seeds), mean ± sd over "
             f"{args.seeds} estimator seeds."), ""]
    lines += ["## Floors (no sampling error)", "", "| utility | values | rel L2 |", "|---|---|---|"]
    lines += [f"| {u} | {what} | {v:.3f} |" for u, what, v in floors]
    for u in args.utilities:
        d = df[df.utility == u]
        lines += ["", f"## {u}", "", "| method | " + " | ".join(f"B = {b}" for b in args.budgets) + " | steps at B = "
                  f"{args.budgets[-1]} | seconds |", "|---" * (len(args.budgets) + 3) + "|"]
        for label in dict.fromkeys(d.method):
            m = d[d.method == label]
            cells = [(_cell(m[m.budget == b].rel_l2) if (m.budget == b).any() else
                      (_cell(m.rel_l2) if (m.budget == 0).all() else "n/a")) for b in args.budgets]
            last = m[m.budget == max(m.budget)]
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {last.steps.mean():.0f} | {m.seconds.mean():.2f} |")
        best = []
        for b in args.budgets:
            db = d[((d.budget == b) | (d.budget == 0)) & ~d.method.str.startswith("multifidelity")]
            means = db.groupby("method").rel_l2.mean()
            mf = d[(d.budget == b) & (d.method == "multifidelity (retraining + FT + proxy)")].rel_l2.mean()
            best.append(f"B = {b}: best other {means.idxmin()} {means.min():.3f}; multifidelity {mf:.3f} "
                        f"({mf / means.min():.2f}x)")
        lines += ["", "Best single- or two-fidelity estimator per budget: " + "; ".join(best) + "."]
    if len(splits):
        lines += ["", "## The split multifidelity chose (mean over seeds)", ""]
        cols = [c for c in splits.columns if c.endswith(("evaluations", "steps"))]
        g = splits.groupby(["utility", "method", "budget"])
        tab = g[cols].mean().round(1)
        tab["levels chosen"] = g.levels.agg(lambda s: ", ".join(f"{k} x{v}" for k, v in s.value_counts().items()))
        lines += [tab.reset_index().to_markdown(index=False)]
    out.write_text("\n".join(lines) + "\n\n" + (kept or f"{NOTES}\n"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
