"""Reference tables of a task: build them (resumable) and load the shipped copies.

The shipped tables live in the repository's ``datasets/<task>/`` folder beside the
package (a dataset card, the per-coalition retraining table, and the exact Shapley
values computed from it).
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from surrogateshap.game import all_coalitions, coalition_key
from surrogateshap.table import CoalitionTable
from surrogateshap.tasks.base import DiffusionTask, RetrainingGame

__all__ = ["reference_dir", "load_reference", "build_retraining_table", "RETRAINING_CSV", "EXACT_CSV"]

RETRAINING_CSV = "retraining_table.csv"
EXACT_CSV = "exact_shapley.csv"


def reference_dir(task_name: str) -> Path:
    """$SURROGATESHAP_DATASETS/<task>, else the repository's datasets/<task>."""
    root = os.environ.get("SURROGATESHAP_DATASETS")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "datasets"
    return base / task_name


def load_reference(task: DiffusionTask, path: str | os.PathLike | None = None) -> CoalitionTable:
    """The shipped retraining table of ``task``, with a clear error when absent."""
    path = Path(path) if path is not None else reference_dir(task.name) / RETRAINING_CSV
    if not path.exists():
        raise FileNotFoundError(
            f"no reference table for task {task.name!r} at {path}. Build it with "
            f"`surrogateshap build-table --task {task.name}` or point "
            "SURROGATESHAP_DATASETS at a folder holding <task>/" + RETRAINING_CSV
        )
    return CoalitionTable.read_csv(path, task.players, task.utilities)


def git_commit(root: str | os.PathLike | None = None) -> str:
    """The checkout's commit (with "-dirty" when tracked files changed): provenance of
    reference files."""
    root = root or Path(__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=root, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=root, timeout=10).stdout.strip()
        return (head or "unknown") + ("-dirty" if dirty else "")
    except Exception:  # noqa: BLE001 - provenance only
        return "unknown"


def build_retraining_table(task: DiffusionTask, seeds, out_dir: str | os.PathLike | None = None,
                           progress: bool = True, train: bool = True, executor=None,
                           failures: dict | None = None) -> CoalitionTable:
    """Retrain every coalition for each seed (resuming from the task's cache and from an
    earlier table of the same configuration in ``out_dir``), then write the table and,
    for complete seeds, the exact Shapley values. Rows of other seeds already in the
    table are kept; a table of another configuration is never overwritten.
    ``train=False`` exports what the cache already holds (a partial table).

    ``executor`` (a name or an :class:`~surrogateshap.execution.Executor`) runs the
    trainings; results land in the same cache whichever runs them, so a table can be
    started on one machine and finished on a cluster. Coalitions that fail after the
    retries are left out of the table (it is then partial) and added to ``failures``
    (seed -> {coalition: record}) when a dict is given."""
    from surrogateshap.execution import get_executor

    executor = get_executor(executor)
    out_dir = Path(out_dir) if out_dir is not None else reference_dir(task.name)
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    earlier = _earlier_rows(task, out_dir / RETRAINING_CSV)
    kept = [r for r in earlier if int(r["seed"]) not in seeds]
    all_seeds = sorted(set(seeds) | {int(r["seed"]) for r in kept})
    masks = all_coalitions(task.n_players)
    games = [RetrainingGame(task, task.utilities[0], seed=seed, progress=progress, executor=executor)
             for seed in seeds]
    for game in games:
        _resume(task, game, [r for r in earlier if int(r["seed"]) == game.seed])
    rows = list(kept)
    for seed, game in zip(seeds, games):
        if train:
            recs = game.records(masks, allow_failed=True)
            if failures is not None and game.failures():
                failures[seed] = game.failures()
        else:  # export what the cache holds, retraining nothing
            recs = [game.store.get(coalition_key(m)) if m.any() else game.records(m[None])[0] for m in masks]
        for m, r in zip(masks, recs):
            if r is not None:
                rows.append({"coalition": coalition_key(m), "seed": seed,
                             **{u: r[u] for u in task.utilities}, "seconds": r["seconds"]})
        if train:  # write after every seed so a cut-short run keeps finished seeds
            _write(task, rows, all_seeds, out_dir)
    return _write(task, rows, all_seeds, out_dir)


def _earlier_rows(task: DiffusionTask, path: Path) -> list[dict]:
    """Rows of the table already at ``path``; refuses a table of another configuration."""
    if not path.exists():
        return []
    with open(path) as f:
        header = [line for line in f if line.startswith("#")]
    if not any(line.startswith(f"# config {task.config_id()}:") for line in header):
        found = next((line.split(":")[0][2:] for line in header if line.startswith("# config ")), "none")
        raise ValueError(
            f"{path} holds a table of another configuration ({found}); this task is "
            f"{task.config_id()}. Write elsewhere (--out DIR) or move that file first."
        )
    return pd.read_csv(path, comment="#", dtype={"coalition": str}).to_dict("records")


def _resume(task: DiffusionTask, game: RetrainingGame, rows: list[dict]) -> int:
    """Copy an earlier table's rows of this seed into the cache, so a table grows across
    sessions and machines without retraining what it holds."""
    if game.store is None:
        return 0
    added = 0
    for row in rows:
        key = str(row["coalition"]).zfill(task.n_players)
        if "1" in key and key not in game.store:
            added += game.store.append(key, {**{u: float(row[u]) for u in task.utilities},
                                             "seconds": float(row["seconds"]), "trainings": 1})
    return added


def _write(task, rows, seeds, out_dir: Path) -> CoalitionTable:
    frame = pd.DataFrame(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Reference table (shipped on purpose): every coalition of {task.name} retrained.\n"
        f"# config {task.config_id()}: {task.config}\n"
        f"# produced by: surrogateshap build-table --task {task.name} --seeds "
        f"{' '.join(map(str, seeds))}  (commit {git_commit()}, {platform.machine()}, "
        f"torch device {getattr(task, 'device', 'cpu')})\n"
    )
    with open(out_dir / RETRAINING_CSV, "w") as f:
        f.write(header)
        frame.to_csv(f, index=False, float_format="%.6g")
    table = CoalitionTable(frame, task.players, task.utilities)
    if table.complete_seeds():
        with open(out_dir / EXACT_CSV, "w") as f:
            f.write(f"# Exact Shapley values of the retraining game, from {RETRAINING_CSV}.\n")
            table.exact_frame().to_csv(f, index=False, float_format="%.6g")
    else:  # never leave exact values of an older table beside this one
        (out_dir / EXACT_CSV).unlink(missing_ok=True)
    return table
