"""Command line: ``surrogateshap run`` (value contributors), ``build-table``, ``report``."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from surrogateshap.evaluation import ALPHAS


def _run(args) -> int:
    import pandas as pd

    from surrogateshap.metrics import compare_to_exact, lds_summary
    from surrogateshap.registry import get_estimator
    from surrogateshap.tasks import get_task
    from surrogateshap.tasks.reference import load_reference

    task = get_task(args.task, scale=args.scale)
    print(f"task {task.name} ({task.n_players} contributors, scale {args.scale}); "
          f"utility {args.utility}; cache {task.cache_dir}", flush=True)
    proxy = task.proxy_game(args.utility)
    proxy(np.ones((1, task.n_players), bool))  # trains the full model if not cached
    names = [args.estimator, *args.compare]
    results = {name: get_estimator(name).estimate(proxy, args.budget, seed=args.seed) for name in names}
    table = pd.DataFrame({name: a.values for name, a in results.items()}, index=task.players)
    try:
        ref = load_reference(task, args.reference)
    except FileNotFoundError as e:
        ref = None
        print(f"(no ground truth: {e})")
    exact = None
    if ref is not None and ref.complete_seeds() and args.scale == "default":
        exact = ref.exact_shapley(args.utility)
        table["exact (retraining)"] = exact
    print(f"\nShapley values of the proxy game, budget {args.budget} evaluations:")
    print(table.to_string(float_format=lambda v: f"{v:9.3f}"))
    for name, a in results.items():
        print(f"{name}: {a.n_evaluations} evaluations, {a.seconds:.2f} s")
    if exact is not None:
        print(f"\nAgainst the retraining game (seeds {ref.complete_seeds()}):")
        test_sets = {alpha: ref.lds_ground_truth(args.utility, alpha) for alpha in ALPHAS}
        rows = []
        for name, a in {**results, "exact (retraining)": None}.items():
            vals = exact if a is None else a.values
            row = {"estimator": name}
            for alpha, (masks, utils) in test_sets.items():
                s = lds_summary(vals, masks, utils)
                row[f"LDS@{alpha}"] = f"{s['mean']:.1f} ± {s['ci95']:.1f}"
            if a is not None:
                row.update({k: round(v, 3) for k, v in compare_to_exact(vals, exact, k=3).items()})
            rows.append(row)
        print(pd.DataFrame(rows).set_index("estimator").to_string())
    return 0


def _build_table(args) -> int:
    import dataclasses

    from surrogateshap.execution import get_executor
    from surrogateshap.tasks import get_task
    from surrogateshap.tasks.reference import build_retraining_table

    task = get_task(args.task, scale=args.scale)
    resources = {f"{k}_per_job": v for k, v in (("cpus", args.cpus_per_job), ("gpus", args.gpus_per_job))
                 if v is not None}
    if resources:  # speed only: the configuration id (and the cache) stay the same
        unknown = [f for f in resources if not hasattr(task.config, f)]
        if unknown:
            raise SystemExit(f"task {task.name}'s config has no field {', '.join(unknown)}")
        task = get_task(args.task, scale=args.scale, config=dataclasses.replace(task.config, **resources))
    executor = get_executor(args.executor, workers=args.workers, max_retries=args.retries,
                            address=args.address)
    failures: dict = {}
    try:
        table = build_retraining_table(task, args.seeds, out_dir=args.out, train=not args.export_only,
                                       executor=executor, failures=failures)
    finally:
        executor.close()
    print(f"{len(table.frame)} rows; complete seeds {table.complete_seeds()}")
    for seed, failed in failures.items():
        print(f"seed {seed}: {len(failed)} coalition(s) failed (logged in the cache's "
              f"*.failures.jsonl; run again to retry them):", file=sys.stderr)
        for key, rec in failed.items():
            print(f"  {key} after {rec['attempts']} attempts: {rec['error'].strip().splitlines()[0]}",
                  file=sys.stderr)
    return 1 if failures else 0


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
    b.add_argument("--executor", default="serial", choices=["serial", "processes", "ray"],
                   help="where trainings run; the cache is the same for all, so a run resumes on another")
    b.add_argument("--workers", type=int, default=None,
                   help="jobs in flight (processes: worker processes; default from CPUs and the task's resources)")
    b.add_argument("--address", default=None,
                   help="ray: address of a running cluster ('auto', HOST:PORT); default a local instance")
    b.add_argument("--retries", type=int, default=3,
                   help="extra attempts of a coalition whose training raised or whose worker died")
    b.add_argument("--cpus-per-job", type=float, default=None, help="CPUs one training job asks for")
    b.add_argument("--gpus-per-job", type=float, default=None,
                   help="GPUs one training job asks for (ray; fractions share a GPU)")
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
