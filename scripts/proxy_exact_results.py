"""Score every registered Shapley estimator against the exact values of an enumerated proxy game.

    python scripts/proxy_exact_results.py        # results/fashion_animal20_proxy_exact.md

Runs the benchmark's cases of task ``fashion-animal20-proxy`` (the proxy game replayed
from its table of all 2^20 coalitions, rebuilt under $SURROGATESHAP_CACHE on first use
and checked against the shipped hash) for every registered estimator of Shapley values
that plays a game alone, at each budget and seed, and writes the relative L2 error and
Spearman correlation against the exact values (mean +- sd over seeds), with the winner.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="fashion-animal20-proxy", help="benchmark task (default: %(default)s)")
    p.add_argument("--budgets", default="256,1024,4096", help="evaluations (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=5, help="estimator seeds 0..S-1 (default: %(default)s)")
    p.add_argument("--estimators", default=None, help="comma-separated (default: every Shapley estimator)")
    p.add_argument("--out", default="results/fashion_animal20_proxy_exact.md")
    args = p.parse_args(argv)

    from surrogateshap.benchmark import benchmark_cases, get_benchmark_task, run_case
    from surrogateshap.benchmark.proxy_exact import ProxyExactBenchmark
    from surrogateshap.provenance import git_commit
    from surrogateshap.registry import available_estimators, get_estimator, parse_spec

    try:
        budgets = [int(b) for b in args.budgets.split(",")]
    except ValueError:
        p.error(f"--budgets: {args.budgets!r} is not a comma-separated list of integers")
    if args.seeds < 1 or min(budgets) < 1:
        p.error("--seeds and --budgets must be positive")
    names = args.estimators.split(",") if args.estimators else [
        e for e in available_estimators() if get_estimator(e).index == "shapley"]
    try:
        unknown = [e for e in names if parse_spec(e)[0] not in available_estimators()]
    except ValueError as e:
        p.error(f"--estimators: {e}")
    if unknown:  # checked before the minutes of building the tables
        p.error(f"--estimators: unknown estimator {unknown[0]!r}; registered: {', '.join(available_estimators())}")
    try:
        bt = get_benchmark_task(args.task)
    except KeyError as e:
        p.error(f"--task: {e.args[0]}")
    if not isinstance(bt, ProxyExactBenchmark):
        p.error(f"--task: {args.task} is not an enumerated proxy game (a <task>-proxy benchmark task)")
    commit = git_commit()  # the code that runs, before minutes of cases
    reason = bt.unavailable()
    if reason:
        sys.exit(reason)
    t0 = time.perf_counter()
    for u in bt.utilities:
        bt.game(u)  # the table: enumerated now, or read from the cache
    build = time.perf_counter() - t0
    cases = benchmark_cases(tasks=[args.task], estimators=names, budgets=budgets, seeds=range(args.seeds))
    rows, skipped = {}, {}
    for i, c in enumerate(cases):
        if c.skip:
            skipped[c.estimator] = c.skip
            continue
        _, fig = run_case(c)
        rows.setdefault((c.utility, c.estimator, c.budget), []).append(
            (fig["relative_l2"], fig["spearman"], fig["seconds"]))
        print(f"[{i + 1}/{len(cases)}] {c.id}: relative L2 {fig['relative_l2']:.4f}", file=sys.stderr)
    ref = bt.reference
    Path(args.out).write_text(report(bt, ref, rows, skipped, budgets, args, build, commit))
    print(f"wrote {args.out}")


def report(bt, ref, rows, skipped, budgets, args, build, commit) -> str:
    """The results page: provenance, the exact values, the error table, the winners."""
    n = bt.n_players
    ests = sorted({e for (_, e, _) in rows})
    out = [f"# Every Shapley estimator on the exact proxy game of {bt.task_name} ({n} players, 2^{n} coalitions)\n",
           (f"Made by `python scripts/proxy_exact_results.py --budgets {args.budgets} --seeds {args.seeds}` at "
           f"commit {commit}. Ground truth: the exact Shapley values of SurrogateSHAP's proxy game "
           f"(the full model's sample bank mixed with pi_S), every one of the {2**n:,} coalitions enumerated "
           f"(`{bt.reference_path.relative_to(bt.reference_path.parents[2])}`, which records each table's "
           "SHA-256; the rebuilt table matched it). Each estimator plays that game (replayed from the table) "
           f"at each budget (evaluations), seeds 0..{args.seeds - 1}; figures are mean +- sd over seeds.\n"),
           "## Build\n",
           ("The run that wrote the reference file (its `# seconds` header; the first utility's time includes "
           "sampling the full model's bank, and the rest is serial, one thread, on a shared machine):\n"),
           "| utility | enumeration (s) | ms per coalition | table sha256 |", "|---|---|---|---|"]
    for u in ref.utilities:
        sec = ref.seconds.get(u, float("nan"))
        out.append(f"| {u} | {sec:.0f} | {sec / 2**n * 1e3:.4f} | `{ref.sha256[u][:16]}...` |")
    out += ["", f"This run: tables ready in {build:.0f} s (read from the cache when already built).\n",
            "## Exact Shapley values\n", "| player | " + " | ".join(ref.utilities) + " |",
            "|---|" + "---|" * len(ref.utilities)]
    out += [f"| {p} | " + " | ".join(f"{ref.values[u][i]:.4g}" for u in ref.utilities) + " |"
            for i, p in enumerate(ref.players)]
    winners, wins = [], []
    for u in ref.utilities:
        out += ["", f"## {u}: relative L2 error (Spearman) against the exact values\n",
                "| estimator | " + " | ".join(f"{b:,}" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
        best = {}
        for e in ests:
            cells = []
            for b in budgets:
                r = np.array(rows.get((u, e, b), []), dtype=float).reshape(-1, 3)
                if not len(r):
                    cells.append("-")
                    continue
                m = r[:, 0].mean()
                best.setdefault(b, []).append((m, e))
                cells.append(f"{m:.4f} +- {r[:, 0].std(ddof=1) if len(r) > 1 else 0:.4f} "
                             f"({r[:, 1].mean():.3f})")
            out.append(f"| {e} | " + " | ".join(cells) + " |")
        win = {b: min(v)[1] for b, v in best.items()}
        wins += list(win.values())
        winners.append(f"- {u}: " + ", ".join(f"{win[b]} at {b:,}" for b in budgets if b in win))
    tally = sorted({e: wins.count(e) for e in wins}.items(), key=lambda kv: -kv[1])
    out += ["", "## Which estimator wins (lowest mean relative L2 error)\n", *winners, "",
            f"Overall: {tally[0][0]} has the lowest error in {tally[0][1]} of {len(wins)} (utility, budget) "
            "pairs" + "".join(f"; {e} in {k}" for e, k in tally[1:]) + "."]
    if skipped:
        out += ["", "Not run: " + "; ".join(f"{e} ({why})" for e, why in sorted(skipped.items()))]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
