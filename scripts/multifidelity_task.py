"""multifidelity on an image task against every estimator of its report, at equal cost (issue 31).

    pytest benchmarks/ --task fashion-animal20 --scale report --estimator multifidelity \\
        --game retraining --budget 40 --seeds 1 --benchmark-json mf.json
    python scripts/multifidelity_task.py --json report.json mf.json [--task fashion-animal20] \\
        [--out results/fashion_animal20_multifidelity.md]

From the benchmark JSON files (the task report's run and multifidelity's, read as one by
:func:`surrogateshap.report.load_runs`): per utility and alpha, multifidelity's LDS
against the best estimator's (best, within the best's interval, or below), the mean at
alpha 0.5 against the best single-fidelity estimator's (one game: the proxy, retraining
or fine-tuning; not proxy-cv, the model-based baselines or multifidelity), and the split
multifidelity chose: from the JSON (``estimator_extra``), or for a run made before the
JSON kept it, replayed from the cache (the games' coalitions were trained by the
benchmark run: a coalition that is not cached is refused, nothing trains here).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SINGLE = {"proxy", "retraining", "finetune"}


def comparison(df, task: str) -> tuple[list[str], dict]:
    from surrogateshap.report import case_label, lds_alphas, pooled_lds

    t = df[df.task == task].copy()
    t["label"] = [case_label(r) for r in t.to_dict("records")]
    lines = ["| utility | alpha | multifidelity | best other | verdict |", "|---|---|---|---|---|"]
    cells, at_half = [], {}
    for util, u in t.groupby("utility", sort=True):
        for a in lds_alphas(u):
            lds = {lab: pooled_lds(c, a) for lab, c in u.groupby("label")}
            mf = next((v for k, v in lds.items() if k.startswith("multifidelity")), None)
            if mf is None:
                continue
            others = {k: v for k, v in lds.items() if not k.startswith("multifidelity") and v[0] == v[0]}
            best = max(others, key=lambda k: others[k][0])
            bm, bh = others[best][0], np.nan_to_num(others[best][1])
            verdict = "best" if mf[0] >= bm else "within the best's interval" if mf[0] >= bm - bh else "below"
            cells.append(verdict != "below")
            lines.append(f"| {util} | {a} | {mf[0]:.1f} ± {np.nan_to_num(mf[1]):.1f} | {best}: {bm:.1f} ± {bh:.1f} "
                         f"| {verdict} |")
            if a == "0.5":
                single = {k: v for k, v in others.items()
                          if u[u.label == k]["game"].iloc[0] in SINGLE and not k.startswith("proxy-cv")}
                sb = max(single, key=lambda k: single[k][0])
                at_half[util] = (mf[0], sb, single[sb][0])
    return lines, {"cells": cells, "at_half": at_half}


def _split_table(extras: dict) -> list[str]:
    """The split per utility (``extras``: utility -> multifidelity's extra), as the task
    report shows it (:func:`surrogateshap.report.split_cells`)."""
    import pandas as pd

    from surrogateshap.report import markdown_table, split_cells

    rows = [{"utility": u, **split_cells(extras[u])} for u in sorted(extras)]
    return markdown_table(pd.DataFrame(rows)).splitlines()


def split_from_json(mf, seed: int) -> list[str] | None:
    """multifidelity's split per utility from the benchmark JSON's ``estimator_extra``
    (None: a run made before the JSON kept it)."""
    import json

    rows = mf[mf.seed == seed]
    if rows.empty or "estimator_extra" not in rows or not rows["estimator_extra"].astype(bool).all():
        return None
    extras = {r.utility: json.loads(r.estimator_extra) for r in rows.itertuples()}
    if not all("split" in x for x in extras.values()):
        return None
    return _split_table(extras)


def split(task: str, budget: int, seed: int, scale: str, utilities) -> list[str]:
    """multifidelity's split per utility, replayed from the cache (refuses to train): for a
    run whose JSON lacks it."""
    from surrogateshap.benchmark import BenchmarkCase, small_extras
    from surrogateshap.benchmark.cases import prepare_case
    from surrogateshap.benchmark.tasks import get_benchmark_task

    extras = {}
    for u in utilities:
        call, _ = prepare_case(BenchmarkCase(task, u, "retraining", "multifidelity", budget, seed, scale,
                                             retrain="train"))
        extras[u] = small_extras(call().extra)  # what the JSON would have kept
    trained = get_benchmark_task(task, scale, "train").costs()
    if trained.get("coalition_models_trained") or trained.get("fine_tunings"):
        raise RuntimeError(f"the split was not replayed from the cache: {trained}")
    return _split_table(extras)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", nargs="+", required=True, help="the report's and multifidelity's benchmark JSON files")
    p.add_argument("--task", default="fashion-animal20")
    p.add_argument("--scale", default="report")
    p.add_argument("--seed", type=int, default=0, help="multifidelity's estimator seed in the JSON")
    p.add_argument("--out", default=None, help="markdown file (default results/<task>_multifidelity.md)")
    args = p.parse_args(argv)
    from surrogateshap.report import load_runs

    _, df, _ = load_runs(args.json)
    mf = df[(df.task == args.task) & (df.estimator == "multifidelity")]
    if mf.empty:
        raise SystemExit(f"no multifidelity case of {args.task} in {', '.join(args.json)}")
    budget = int(mf.budget.iloc[0])
    table, summary = comparison(df, args.task)
    cells = summary["cells"]
    lines = [f"# multifidelity on {args.task} at {budget} retrainings' worth of training steps", "",
             f"Produced by `python scripts/multifidelity_task.py --json {' '.join(Path(j).name for j in args.json)}` "
             "(the runs named in `results/" + args.task.replace('-', '_') + "_report.md`). LDS: mean ± the task "
             "report's interval (1.96 sd / sqrt(k) over (estimator seed, retraining seed) pairs).", "",
             *table, "",
             f"Best or within the best's interval in {sum(cells)} of {len(cells)} cells "
             f"({100 * sum(cells) / max(len(cells), 1):.0f}%; the issue's goal: 80%).", "",
             "At alpha 0.5 against the best single-fidelity estimator (the goal: 10 points above):", ""]
    lines += [f"- {u}: multifidelity {m:.1f}, {b} {v:.1f} ({m - v:+.1f})"
              for u, (m, b, v) in summary["at_half"].items()]
    from_json = split_from_json(mf, args.seed)
    lines += ["", "## The split it chose (" + ("from the benchmark JSON" if from_json else "replayed from the cache")
              + ")", "", *(from_json or split(args.task, budget, args.seed, args.scale, sorted(mf.utility.unique())))]
    out = Path(args.out or f"results/{args.task.replace('-', '_')}_multifidelity.md")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
