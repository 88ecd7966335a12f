"""Reference tables of a task: build them (resumable) and load the shipped copies.

The shipped tables live in the repository's ``datasets/<task>/`` folder beside the
package (a dataset card, the per-coalition retraining table, and the exact Shapley
values computed from it).
"""

from __future__ import annotations

import os
import platform
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from surrogateshap._files import atomic_write
from surrogateshap.game import all_coalitions, coalition_key
from surrogateshap.table import CoalitionTable
from surrogateshap.tasks.base import DiffusionTask, RetrainingGame

__all__ = [
    "reference_dir",
    "load_reference",
    "table_config_id",
    "task_for_table",
    "build_retraining_table",
    "RETRAINING_CSV",
    "EXACT_CSV",
]

RETRAINING_CSV = "retraining_table.csv"
EXACT_CSV = "exact_shapley.csv"


#: where the shipped tables live: the repository's datasets/ folder in a source or
#: editable checkout, the package data surrogateshap/reference_data/ in a wheel
REPOSITORY_DATASETS = Path(__file__).resolve().parents[2] / "datasets"
PACKAGE_DATASETS = Path(__file__).resolve().parents[1] / "reference_data"


def reference_dir(task_name: str) -> Path:
    """Folder of a task's reference tables: $SURROGATESHAP_DATASETS/<task> when set, else
    the checkout's datasets/<task>, else the installed package data (a wheel install)."""
    root = os.environ.get("SURROGATESHAP_DATASETS")
    if root:
        return Path(root) / task_name
    for base in (REPOSITORY_DATASETS, PACKAGE_DATASETS):
        if (base / task_name).is_dir():
            return base / task_name
    return REPOSITORY_DATASETS / task_name


def _header_field(path, field: str) -> str | None:
    """The id a table's ``# <field> <id>: ...`` header line names (None: no such line)."""
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                break
            if line.startswith(f"# {field} "):
                return line[len(f"# {field} "):].split(":", 1)[0].strip()
    return None


def table_config_id(path: str | os.PathLike) -> str | None:
    """The ``config_id`` a table's ``# config <id>: ...`` header names (None: no header)."""
    return _header_field(path, "config")


def table_scoring_id(path: str | os.PathLike) -> str | None:
    """The scoring networks' id a table's ``# scoring <id>: ...`` header names (None: none)."""
    return _header_field(path, "scoring")


def scoring_header(task: DiffusionTask) -> str:
    """The header line naming the networks that scored a task's table ("" if none)."""
    sid = task.scoring_id()
    parts = ", ".join(f"{k} {v}" for k, v in task.scoring_parts().items())
    return f"# scoring {sid}: the networks that scored every row, by weights hash ({parts})\n" if sid else ""


def check_scoring(task: DiffusionTask, path) -> None:
    """Refuse a table whose rows were scored by other networks than this task's (another
    feature network gives other utilities for the same samples), or whose builder header
    does not say which scored them."""
    if table_config_id(path) is None:
        return  # a plain frame (no builder header) is the caller's own: nothing recorded to check
    sid = task.scoring_id()
    if not sid:
        return
    found = table_scoring_id(path)
    if found != sid:
        said = f"scoring networks {found}" if found else "no '# scoring' line (networks unknown)"
        raise ValueError(
            f"{path} was scored with {said}, not this task's {sid} (the networks shipped in "
            "surrogateshap/data or cached): its utilities are of another scorer. Rebuild the table, "
            "or restore the networks that scored it."
        )


def load_reference(task: DiffusionTask, path: str | os.PathLike | None = None) -> CoalitionTable:
    """The shipped retraining table of ``task``, checked against the config that made it.

    A table made under another configuration (another scale preset, other training
    settings) is a different game: loading it for this task raises, naming both.
    """
    path = Path(path) if path is not None else reference_dir(task.name) / RETRAINING_CSV
    if not path.exists():
        raise FileNotFoundError(
            f"no reference table for task {task.name!r} at {path}. Build it with "
            f"`surrogateshap build-table --task {task.name}` or point "
            "SURROGATESHAP_DATASETS at a folder holding <task>/" + RETRAINING_CSV
        )
    found = table_config_id(path)
    if found is not None and found != task.config_id():
        raise ValueError(
            f"{path} was made with configuration {found}, not this task's "
            f"{task.config_id()} (another scale or settings): its utilities are of another "
            "game. Use the matching --scale, or build a table for this configuration."
        )
    check_scoring(task, path)
    return CoalitionTable.read_csv(path, task.players, task.utilities)


def task_for_table(name: str, path: str | os.PathLike, prefer: str = "default",
                   scales=("default", "ci", "paper")) -> DiffusionTask:
    """The task ``name`` at the scale preset whose configuration made the table at
    ``path`` (``prefer`` tried first); the preferred scale when the table names none.
    Raises ValueError when no preset matches."""
    from surrogateshap.tasks import get_task

    found = table_config_id(path)
    order = [prefer, *[s for s in scales if s != prefer]]
    if found is None:
        return get_task(name, scale=prefer)
    for scale in order:
        task = get_task(name, scale=scale)
        if task.config_id() == found:
            return task
    raise ValueError(f"{path} was made with configuration {found}, which no scale preset of "
                     f"{name} ({', '.join(order)}) has")


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
    check_scoring(task, path)
    try:
        frame = pd.read_csv(path, comment="#", dtype={"coalition": str})
        cols = ["coalition", "seed", *task.utilities, "seconds"]
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"no column(s) {missing}")
    except (ValueError, pd.errors.ParserError) as e:
        raise ValueError(
            f"{path} is not a readable retraining table ({e}); it may be a partial write. "
            "Move it away (the task's cache still holds every finished retraining) and run again."
        ) from e
    whole = frame[cols].notna().all(axis=1)
    if not whole.all():
        warnings.warn(f"{path}: ignored {int((~whole).sum())} incomplete row(s) (a cut-short "
                      "write); those coalitions come from the cache or are retrained", stacklevel=3)
    return frame[whole].to_dict("records")


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
        + scoring_header(task) +
        f"# produced by: surrogateshap build-table --task {task.name} --seeds "
        f"{' '.join(map(str, seeds))}  (commit {git_commit()}, {platform.machine()}, "
        f"torch device {getattr(task, 'device', 'cpu')})\n"
    )
    table = CoalitionTable(frame, task.players, task.utilities)
    # each file is replaced whole (tmp + fsync + os.replace): a crash leaves the old
    # file or the new one. The old exact values go first, so a crash between the two
    # replacements never leaves them beside a newer table.
    (out_dir / EXACT_CSV).unlink(missing_ok=True)
    with atomic_write(out_dir / RETRAINING_CSV) as f:
        f.write(header)
        frame.to_csv(f, index=False, float_format="%.6g")
    if table.complete_seeds():
        with atomic_write(out_dir / EXACT_CSV) as f:
            f.write(f"# Exact Shapley values of the retraining game, from {RETRAINING_CSV}.\n")
            table.exact_frame().to_csv(f, index=False, float_format="%.6g")
    return table


def build_coalition_table(task: DiffusionTask, coalitions, seeds, out_dir: str | os.PathLike | None = None,
                          export_every: int = 25, progress: bool = True, train: bool = True,
                          command: str | None = None, note: str = "") -> CoalitionTable:
    """Retrain the given coalitions for each seed and export them as the task's
    reference table (the long format of :func:`build_retraining_table`, any subset of
    coalitions): the ground truth of a task too large to enumerate.

    Resumable and append-only: retrainings go to the task's RetrainingGame store (so an
    interrupted run loses at most one chunk), rows of an earlier table of the same
    configuration in ``out_dir`` are copied into the cache first and kept (any seed,
    any coalition), and the table is rewritten atomically after every
    ``export_every`` coalitions (all seeds) so a cut-short run leaves what finished.
    ``train=False`` exports what the cache holds. ``command`` and ``note`` go in the
    header (how to extend the table; what its coalitions are).
    """
    out_dir = Path(out_dir) if out_dir is not None else reference_dir(task.name)
    masks = np.atleast_2d(np.asarray(coalitions, dtype=bool))
    if masks.shape[1] != task.n_players:
        raise ValueError(f"coalitions must have {task.n_players} columns, got {masks.shape}")
    keys = list(dict.fromkeys(coalition_key(m) for m in masks))
    masks = np.array([[c == "1" for c in k] for k in keys], dtype=bool)
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    earlier = _earlier_rows(task, out_dir / RETRAINING_CSV)
    games = {s: RetrainingGame(task, task.utilities[0], seed=s, progress=progress) for s in seeds}
    for s, game in games.items():
        _resume(task, game, [r for r in earlier if int(r["seed"]) == s])
    rows = {(str(r["coalition"]).zfill(task.n_players), int(r["seed"])): r for r in earlier}
    command = command or f"build_coalition_table(task={task.name!r}, seeds={seeds})"
    step = max(1, int(export_every))
    table = None
    for i in range(0, len(masks), step):
        part = masks[i : i + step]
        for s, game in games.items():
            if train:
                recs = game.records(part)
            else:
                recs = [game.store.get(coalition_key(m)) if m.any() else game.records(m[None])[0]
                        for m in part]
            for m, r in zip(part, recs):
                if r is not None:
                    rows[(coalition_key(m), s)] = {"coalition": coalition_key(m), "seed": s,
                                                   **{u: r[u] for u in task.utilities},
                                                   "seconds": r["seconds"]}
        table = _write_coalition_table(task, list(rows.values()), out_dir, command, note)
    return table if table is not None else _write_coalition_table(task, list(rows.values()), out_dir,
                                                                   command, note)


def _write_coalition_table(task, rows, out_dir: Path, command: str, note: str) -> CoalitionTable:
    frame = pd.DataFrame(rows, columns=["coalition", "seed", *task.utilities, "seconds"])
    frame = frame.sort_values(["seed", "coalition"], kind="stable").reset_index(drop=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = sorted(int(s) for s in frame["seed"].unique())
    counts = ", ".join(f"seed {s}: {int((frame['seed'] == s).sum())}" for s in seeds)
    header = (
        f"# Reference table (shipped on purpose): retrained coalitions of {task.name} "
        f"(a subset of the 2^{task.n_players}; {counts}).\n"
        + (f"# {note}\n" if note else "")
        + f"# config {task.config_id()}: {task.config}\n"
        + scoring_header(task)
        + f"# produced by: {command}  (commit {git_commit()}, {platform.machine()}, "
        f"torch device {getattr(task, 'device', 'cpu')})\n"
    )
    path = out_dir / RETRAINING_CSV
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(header)
        frame.to_csv(f, index=False, float_format="%.6g")
    os.replace(tmp, path)
    return CoalitionTable(frame, task.players, task.utilities)


__all__ += ["build_coalition_table"]
