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
                           progress: bool = True, train: bool = True) -> CoalitionTable:
    """Retrain every coalition for each seed (resuming from the task's cache), then write
    the table and, for complete seeds, the exact Shapley values to ``out_dir``.
    ``train=False`` exports what the cache already holds (a partial table)."""
    out_dir = Path(out_dir) if out_dir is not None else reference_dir(task.name)
    masks = all_coalitions(task.n_players)
    rows = []
    games = [RetrainingGame(task, task.utilities[0], seed=seed, progress=progress) for seed in seeds]
    for game in games:  # before any write replaces the earlier table
        _resume_from_table(task, game, out_dir / RETRAINING_CSV)
    for seed, game in zip(seeds, games):
        if train:
            recs = game.records(masks)
        else:  # export what the cache holds, retraining nothing
            recs = [game.store.get(coalition_key(m)) if m.any() else game.records(m[None])[0] for m in masks]
        for m, r in zip(masks, recs):
            if r is not None:
                rows.append({"coalition": coalition_key(m), "seed": seed,
                             **{u: r[u] for u in task.utilities}, "seconds": r["seconds"]})
        if train:  # write after every seed so a cut-short run keeps finished seeds
            _write(task, rows, seeds, out_dir)
    return _write(task, rows, seeds, out_dir)


def _resume_from_table(task: DiffusionTask, game: RetrainingGame, path: Path) -> int:
    """Copy rows of an earlier table of the same configuration into the cache, so a
    table grows across sessions and machines without retraining what it holds."""
    if game.store is None or not path.exists():
        return 0
    with open(path) as f:
        header = "".join(line for line in f if line.startswith("#"))
    if f"# config {task.config_id()}:" not in header:
        return 0
    frame = pd.read_csv(path, comment="#", dtype={"coalition": str})
    added = 0
    for row in frame[frame["seed"] == game.seed].to_dict("records"):
        key = str(row["coalition"]).zfill(task.n_players)
        if "1" in key and key not in game.store:
            game.store.append(key, {**{u: float(row[u]) for u in task.utilities},
                                    "seconds": float(row["seconds"]), "trainings": 1})
            added += 1
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
    return table
