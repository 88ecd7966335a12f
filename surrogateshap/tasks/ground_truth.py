"""Ground truth of a task too large to enumerate (the paper's protocol).

Retrained test coalitions at alpha = 0.25 / 0.5 / 0.75 (LDS), drawn with
:func:`surrogateshap.metrics.sample_test_coalitions` and the seeds of ``LDS_SETS``, so a
benchmark rebuilds the very same sets with ``lds_test_coalitions(n)``; the empty and
full coalitions (anchors, and the removal baseline), and leave-one-out (the LOO
baseline). Everything goes in the task's RetrainingGame store and is exported as the
task's reference table (:func:`surrogateshap.tasks.reference.build_coalition_table`).

    python -m surrogateshap.tasks.ground_truth --task fashion-animal20 --seeds 0 1

resumes and extends the table (``--extra FILE`` adds coalitions, one bit string a line,
e.g. top-k / bottom-k removal sets; ``--export-only`` writes what the cache holds).

    python -m surrogateshap.tasks.ground_truth --task fashion-animal20 --seeds 0 1 --benchmark

then runs the task's default benchmark selection once
(:class:`~surrogateshap.benchmark.scales.SampledSelection`: the retraining-game
baselines' coalitions, one seed each, and the top-k / bottom-k / random removal sets of
their rankings, every seed), retraining what the table lacks, and exports every
coalition the cache holds, so ``pytest benchmarks/ --task <task>`` replays the table
without retraining.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from surrogateshap.metrics import sample_test_coalitions

__all__ = ["LDS_SETS", "RETRAIN_SEEDS", "lds_test_coalitions", "ground_truth_coalitions", "lds_ground_truth",
           "main"]

#: alpha -> (number of test coalitions, sample_test_coalitions seed)
LDS_SETS = {0.5: (100, 2050), 0.25: (50, 2025), 0.75: (50, 2075)}
#: retraining seeds of the shipped tables
RETRAIN_SEEDS = (0, 1)


def lds_test_coalitions(n: int, sets=None) -> dict[float, np.ndarray]:
    """alpha -> boolean (m, n) test coalitions, exactly as the shipped tables hold them."""
    sets = LDS_SETS if sets is None else sets
    return {a: sample_test_coalitions(n, alpha=a, m=m, seed=s) for a, (m, s) in sets.items()}


def lds_ground_truth(table, utility: str, alpha: float, sets=None):
    """(masks (m, n), utilities (n_seeds, m)) of the alpha test set held by a (partial)
    reference table: the test coalitions that every one of the table's seeds has
    retrained, in draw order. The counterpart of ``CoalitionTable.lds_ground_truth``
    for a table that is not every coalition."""
    masks, utils = table.lds_ground_truth(utility, alpha, lds_test_coalitions(table.n_players, sets)[alpha])
    if len(masks) == 0:
        raise ValueError(f"the table holds none of the alpha = {alpha} test coalitions for all its seeds")
    return masks, utils


def ground_truth_coalitions(n: int, sets=None, loo: bool = True, first: int | None = None) -> np.ndarray:
    """The table's coalitions in build order: empty and full, the LDS sets (alpha 0.5
    first), then leave-one-out. Duplicates are kept once. ``first``: only the first
    ``first`` coalitions of each LDS set (a prefix in draw order, so every alpha gets
    test coalitions early and a later run extends the very same sets)."""
    lds = [m[:first] for m in lds_test_coalitions(n, sets).values()]
    rows = [np.zeros((1, n), bool), np.ones((1, n), bool), *lds]
    if loo:
        rows.append(~np.eye(n, dtype=bool))
    masks = np.concatenate(rows)
    _, first = np.unique(masks, axis=0, return_index=True)
    return masks[np.sort(first)]


def read_coalitions(path, n: int) -> np.ndarray:
    lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    bad = [ln for ln in lines if len(ln) != n or set(ln) - {"0", "1"}]
    if bad:
        raise ValueError(f"{path}: coalitions must be {n}-character bit strings; bad line {bad[0]!r}")
    return np.array([[c == "1" for c in ln] for ln in lines], dtype=bool).reshape(-1, n)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m surrogateshap.tasks.ground_truth", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="fashion-animal20")
    ap.add_argument("--scale", default="default")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(RETRAIN_SEEDS))
    ap.add_argument("--out", default=None, help="table folder (default datasets/<task>)")
    ap.add_argument("--extra", default=None, help="file of extra coalitions (bit strings)")
    ap.add_argument("--no-loo", action="store_true")
    ap.add_argument("--export-every", type=int, default=16)
    ap.add_argument("--export-only", action="store_true", help="export the cache, train nothing")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--limit", type=int, default=None, help="only the first N coalitions (build order)")
    ap.add_argument("--first", type=int, default=None,
                    help="only the first K test coalitions of each LDS set (a prefix: every alpha early)")
    ap.add_argument("--benchmark", action="store_true",
                    help="then run the default benchmark selection (retraining what it needs) and "
                         "export every cached coalition")
    a = ap.parse_args(argv)

    import torch

    from surrogateshap.tasks import get_task
    from surrogateshap.tasks.reference import build_coalition_table

    torch.set_num_threads(a.threads)
    task = get_task(a.task, scale=a.scale)
    masks = ground_truth_coalitions(task.n_players, loo=not a.no_loo, first=a.first)
    if a.extra:
        masks = np.concatenate([masks, read_coalitions(a.extra, task.n_players)])
    if a.limit is not None:
        masks = masks[: a.limit]
    sets = ", ".join(f"alpha {al}: m={m}, seed={s}" for al, (m, s) in LDS_SETS.items())
    note = (f"coalitions: empty, full, LDS test sets sample_test_coalitions(n, alpha, m, seed) "
            f"[{sets}]" + (", leave-one-out" if not a.no_loo else "") + (", extra" if a.extra else ""))
    argv_s = " ".join(shlex.quote(x) for x in (sys.argv[1:] if argv is None else argv))
    table = build_coalition_table(task, masks, a.seeds, a.out, export_every=a.export_every,
                                  train=not a.export_only,
                                  command=f"python -m surrogateshap.tasks.ground_truth {argv_s}".strip(),
                                  note=note)
    if a.benchmark:
        table = _benchmark_and_export(task, masks, a, table, note)
    print(f"{len(table.frame)} rows ({', '.join(str(s) for s in table.seeds)} seeds) in "
          f"{Path(a.out) if a.out else 'datasets/' + task.name}")


def _benchmark_and_export(task, masks, a, table, note):
    """Run the default benchmark selection of ``task`` on the table just written (its
    retraining game and removal checks retrain what the table lacks, through the task's
    cache), then export every coalition the cache holds for the table's seeds."""
    from surrogateshap.benchmark import benchmark_cases, run_case
    from surrogateshap.benchmark.tasks import TableBenchmark
    from surrogateshap.tasks.base import RetrainingGame
    from surrogateshap.tasks.reference import RETRAINING_CSV, build_coalition_table, reference_dir

    out = Path(a.out) if a.out else reference_dir(task.name)
    bt = TableBenchmark(task.name, a.scale, table_path=out / RETRAINING_CSV)
    reason = bt.unavailable()
    if reason:
        raise SystemExit(reason)
    from surrogateshap.registry import get_estimator

    cases = [c for c in benchmark_cases(a.scale, tasks=[task.name])  # skips judged on this table
             if get_estimator(c.estimator).unsupported(bt.n_players, c.budget, bt.offers) is None]
    for i, case in enumerate([] if a.export_only else cases, 1):  # export-only: train nothing
        print(f"[{i}/{len(cases)}] {case.id}", flush=True)
        run_case(case, _task=bt)
    cached = set()
    for s in a.seeds:
        store = RetrainingGame(task, task.utilities[0], seed=s, progress=False).store
        store.refresh()
        cached |= set(store.records)
    extra = np.array([[c == "1" for c in k] for k in sorted(cached)], dtype=bool).reshape(-1, task.n_players)
    argv_s = " ".join(shlex.quote(x) for x in sys.argv[1:])
    return build_coalition_table(task, np.concatenate([masks, extra]), a.seeds, out, train=False,
                                 command=f"python -m surrogateshap.tasks.ground_truth {argv_s}".strip(),
                                 note=note + ", the default benchmark selection's retrainings")


if __name__ == "__main__":
    main()
