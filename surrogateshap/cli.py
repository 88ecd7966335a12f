"""Command line: ``surrogateshap run`` (value contributors), ``build-table``, ``report``."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from surrogateshap.evaluation import ALPHAS


def _run(args) -> int:
    import pandas as pd

    from surrogateshap.evaluation import evaluate, ground_truth_from_table
    from surrogateshap.registry import get_estimator
    from surrogateshap.tasks import get_task
    from surrogateshap.tasks.reference import load_reference

    task = get_task(args.task, scale=args.scale)
    print(f"task {task.name} ({task.n_players} contributors, scale {args.scale}); "
          f"utility {args.utility}; cache {task.cache_dir}", flush=True)
    try:
        ref = load_reference(task, args.reference)
    except (FileNotFoundError, ValueError) as e:
        ref = None
        print(f"(no ground truth: {e})")
    proxy = task.proxy_game(args.utility)
    proxy(np.ones((1, task.n_players), bool))  # trains the full model if not cached
    names = [args.estimator, *args.compare]
    results = {name: get_estimator(name).estimate(proxy, args.budget, seed=args.seed) for name in names}
    table = pd.DataFrame({name: a.values for name, a in results.items()}, index=task.players)
    truth = None
    if ref is not None and ref.complete_seeds():
        truth = ground_truth_from_table(ref, args.utility, ALPHAS)
        table["exact (retraining)"] = truth.exact
    print(f"\nShapley values of the proxy game, budget {args.budget} evaluations:")
    print(table.to_string(float_format=lambda v: f"{v:9.3f}"))
    for name, a in results.items():
        print(f"{name}: {a.n_evaluations} evaluations, {a.seconds:.2f} s")
    if truth is not None:
        print(f"\nAgainst the retraining game (seeds {ref.complete_seeds()}):")
        rows = []
        for name, a in {**results, "exact (retraining)": truth.exact}.items():
            figs = evaluate(a, truth)
            row = {"estimator": name}
            for alpha in ALPHAS:
                row[f"LDS@{alpha}"] = f"{figs[f'lds_{alpha:g}_mean']:.1f} ± {figs[f'lds_{alpha:g}_ci95']:.1f}"
            if name in results:
                row.update({k: round(figs[k], 3) for k in ("relative_l2", "spearman", "topk_recall")})
            rows.append(row)
        print(pd.DataFrame(rows).set_index("estimator").to_string())
    return 0


def _build_table(args) -> int:
    from surrogateshap.tasks import get_task
    from surrogateshap.tasks.reference import build_retraining_table

    task = get_task(args.task, scale=args.scale)
    table = build_retraining_table(task, args.seeds, out_dir=args.out, train=not args.export_only)
    print(f"{len(table.frame)} rows; complete seeds {table.complete_seeds()}")
    return 0


def _report(args) -> int:
    from surrogateshap.report import write_report

    write_report(args.json, args.out)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="surrogateshap", description=__doc__)
    sub = p.add_subparsers(dest="cmd")
    r = sub.add_parser("run", help="value a task's contributors with an estimator on the proxy game")
    r.add_argument("--task", default="digits10")
    r.add_argument("--utility", default="neg_fid")
    r.add_argument("--estimator", default="surrogateshap")
    r.add_argument("--compare", nargs="*", default=["permutation-antithetic", "kernelshap"])
    r.add_argument("--budget", type=int, default=256)
    r.add_argument("--scale", default="default", choices=["ci", "default", "paper"])
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--reference", default=None, help="path to a retraining table CSV")
    r.set_defaults(fn=_run)
    b = sub.add_parser("build-table", help="retrain every coalition (resumable) and write the reference table")
    b.add_argument("--task", default="digits10")
    b.add_argument("--scale", default="default", choices=["ci", "default", "paper"])
    b.add_argument("--seeds", type=int, nargs="+", default=[0])
    b.add_argument("--out", default=None)
    b.add_argument("--export-only", action="store_true", help="write what the cache holds; train nothing")
    b.set_defaults(fn=_build_table)
    rep = sub.add_parser("report", help="turn a --benchmark-json file into a markdown report and plots")
    rep.add_argument("json")
    rep.add_argument("--out", default="results/report")
    rep.set_defaults(fn=_report)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in sub.choices and argv[0] not in ("-h", "--help"):
        argv = ["run", *argv]  # `surrogateshap --budget 64` means `surrogateshap run --budget 64`
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
