"""Reference tables of a task: build them (one builder, resumable) and load the shipped
copies.

The shipped tables live in the repository's ``datasets/<task>/`` folder beside the
package (a dataset card, the per-coalition retraining table, and for a complete table
the exact Shapley values computed from it). A table's header names the configuration
and the scoring networks that made it; loading it for another is refused.
"""

from __future__ import annotations

import os
import platform
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from surrogateshap._files import atomic_writes
from surrogateshap.game import all_coalitions, coalition_key
from surrogateshap.provenance import git_commit
from surrogateshap.table import CoalitionTable, DamagedTableError

if TYPE_CHECKING:  # pragma: no cover
    from surrogateshap.tasks.base import DiffusionTask

__all__ = ["reference_dir", "load_reference", "table_config_id", "table_scoring_id",
           "build_table", "check_scoring", "RETRAINING_CSV", "EXACT_CSV"]

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
    if not Path(path).is_file():
        raise DamagedTableError(f"reference table {path} is not a file")
    try:
        with open(path) as f:
            for line in f:
                if not line.startswith("#"):
                    break
                if line.startswith(f"# {field} "):
                    return line[len(f"# {field} "):].split(":", 1)[0].strip()
    except UnicodeDecodeError as e:
        raise DamagedTableError(f"reference table {path} is not a text (CSV) file ({e})") from e
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


def build_table(task: DiffusionTask, coalitions, seeds, out_dir: str | os.PathLike | None = None,
                executor=None, train: bool = True, export_every: int = 16, progress: bool = True,
                command: str | None = None, note: str = "", failures: dict | None = None) -> CoalitionTable:
    """Retrain ``coalitions`` (boolean (m, n), or "all") for each seed and write the task's
    reference table: the one builder of ground truth, for a complete table (every
    coalition: the exact Shapley values of the complete seeds go beside it) and for the
    paper's sampled protocol alike.

    Resumable and append-only: retrainings go to the task's cache (an interrupted run
    loses at most the chunks in flight), the rows of an earlier table of the same
    configuration and scoring networks in ``out_dir`` (or, where it holds none, the
    task's shipped table) are served and kept (any seed, any coalition), and the table
    is rewritten atomically after every ``export_every`` new retrainings per seed, so a
    cut-short run leaves what finished. ``train=False``
    exports what the cache and the earlier table hold. ``executor`` (a name or an
    :class:`~surrogateshap.execution.Executor`) runs the trainings; results land in the
    same cache whichever runs them. Coalitions that fail after the retries are left out
    (the table is then partial) and added to ``failures`` (seed -> {coalition: record}).
    ``command`` and ``note`` go in the header (how to extend the table; what it holds).
    """
    from surrogateshap.execution import get_executor

    out_dir = Path(out_dir) if out_dir is not None else reference_dir(task.name)
    path = out_dir / RETRAINING_CSV
    earlier, source = _earlier_rows(task, path), path
    shipped = reference_dir(task.name) / RETRAINING_CSV
    if earlier is None and shipped.exists() and shipped.resolve() != path.resolve():
        # a new folder extends the shipped table: its rows are served (not retrained) and kept
        try:
            earlier, source = _earlier_rows(task, shipped), shipped
        except ValueError:  # another configuration or other scoring networks: start afresh
            earlier = None
    if isinstance(coalitions, str):
        if coalitions != "all":
            raise ValueError(f"coalitions must be a boolean (m, n) array or 'all', got {coalitions!r}")
        coalitions = all_coalitions(task.n_players)
    masks = np.atleast_2d(np.asarray(coalitions, dtype=bool))
    if masks.shape[1] != task.n_players:
        raise ValueError(f"coalitions must have {task.n_players} columns, got {masks.shape}")
    keys = list(dict.fromkeys(coalition_key(m) for m in masks))
    masks = np.array([[c == "1" for c in k] for k in keys], dtype=bool).reshape(-1, task.n_players)
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    executor = get_executor(executor)
    # the earlier table's sound rows are served, not retrained (its cut-short rows are not)
    task.cache.use_reference(None if earlier is None else source, table=earlier)
    games = {s: task.retraining_game(task.utilities[0], seed=s, progress=progress, executor=executor)
             for s in seeds}
    held = earlier.frame.to_dict("records") if earlier is not None else []
    rows = {(r["coalition"], int(r["seed"])): r for r in held}
    command = command or f"build_table(task={task.name!r}, seeds={seeds})"
    step = max(1, int(export_every))

    def collect(s, part, recs):
        for m, r in zip(part, recs):
            if r is not None:
                rows[(coalition_key(m), s)] = {"coalition": coalition_key(m), "seed": s,
                                               **{u: r[u] for u in task.utilities}, "seconds": r["seconds"]}

    # what the earlier table or the cache holds is exported first, training nothing; the
    # chunks between two writes then hold ``step`` coalitions *to train* per seed, so a
    # table that is mostly built still keeps every worker busy (chunks of the listed
    # coalitions ran one small job at a time where most of a chunk was held)
    todo = {}
    for s, game in games.items():
        lacking = set(game.missing(masks))
        have = np.array([k not in lacking for k in keys], dtype=bool)
        collect(s, masks[have], game.records(masks[have]))
        todo[s] = masks[~have] if train else masks[:0]
    table = _write_table(task, list(rows.values()), out_dir, command, note)
    for i in range(0, max((len(t) for t in todo.values()), default=0), step):
        for s, game in games.items():
            part = todo[s][i : i + step]
            if len(part):
                collect(s, part, game.records(part, allow_failed=True))
        table = _write_table(task, list(rows.values()), out_dir, command, note)
    if failures is not None:
        for s, game in games.items():
            if game.failures():
                failures[s] = game.failures()
    return table


def _earlier_rows(task: DiffusionTask, path: Path) -> CoalitionTable | None:
    """The whole rows of the table already at ``path`` (None: no table there); refuses a
    table of another configuration, and a damaged one."""
    if not path.exists():
        return None
    found = table_config_id(path)
    if found != task.config_id():
        raise ValueError(
            f"{path} holds a table of another configuration (config {found or 'none'}); this task is "
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
    # the rows that are whole must be sound: an infinite utility or a coalition given twice
    # with two values would otherwise be copied into the new table (or settled by row order)
    return CoalitionTable(frame[whole], task.players, task.utilities, source=path) if whole.any() else None


def _write_table(task, rows, out_dir: Path, command: str, note: str) -> CoalitionTable:
    """Write the table (and, for its complete seeds, the exact Shapley values), the files
    replaced whole and together: a crash or a failed write leaves the old pair, and a
    stale exact file (of an earlier, complete table) is removed only after the new table
    is in place."""
    frame = pd.DataFrame(rows, columns=["coalition", "seed", *task.utilities, "seconds"])
    frame["coalition"] = frame["coalition"].astype(str).str.zfill(task.n_players)
    frame = frame.sort_values(["seed", "coalition"], kind="stable").reset_index(drop=True)
    table = CoalitionTable(frame, task.players, task.utilities)
    seeds = sorted(int(s) for s in frame["seed"].unique())
    counts = ", ".join(f"seed {s}: {int((frame['seed'] == s).sum())}" for s in seeds)
    what = (f"every coalition, {counts}" if seeds and len(table.complete_seeds()) == len(seeds)
            else f"a subset of the 2^{task.n_players}; {counts}")
    commit = git_commit(ignore=(out_dir / RETRAINING_CSV, out_dir / EXACT_CSV))
    if commit.endswith("-dirty") and out_dir.resolve() == (REPOSITORY_DATASETS / task.name).resolve():
        warnings.warn(f"writing {task.name}'s shipped table from a checkout with uncommitted changes "
                      f"(commit {commit}): export it again from committed code", stacklevel=3)
    header = (
        f"# Reference table (shipped on purpose): retrained coalitions of {task.name} ({what}).\n"
        + (f"# {note}\n" if note else "")
        + f"# config {task.config_id()}: {task.config}\n"
        + scoring_header(task)
        + f"# produced by: {command}  (commit {commit}, {platform.machine()}, "
        f"torch device {getattr(task, 'device', 'cpu')})\n"
    )
    exact = table.exact_frame() if table.complete_seeds() else None
    paths = [out_dir / RETRAINING_CSV] + ([out_dir / EXACT_CSV] if exact is not None else [])
    with atomic_writes(paths) as files:  # the pair is replaced only once both are written
        files[0].write(header)
        frame.to_csv(files[0], index=False, float_format="%.6g")
        if exact is not None:
            files[1].write(f"# Exact Shapley values of the retraining game, from {RETRAINING_CSV}.\n")
            exact.to_csv(files[1], index=False, float_format="%.6g")
    if exact is None:
        (out_dir / EXACT_CSV).unlink(missing_ok=True)  # of an older table: never beside this one
    return table
