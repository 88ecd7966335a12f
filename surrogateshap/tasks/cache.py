"""What a task keeps on disk, in one place, and the shipped table beneath it.

Under ``<cache_dir>/<config_id>/``: the retraining records of each seed (a
:class:`~surrogateshap.store.CoalitionStore` keyed by the scoring networks too, so rows
scored by another network never mix), the fine-tuning records, the full model and the
proxy's sample bank. Beneath the stores lies a read-only layer: the task's reference
table (shipped in ``datasets/<task>/`` or given), whose rows are served to the
retraining game as if they had been computed here, so a shipped table replays without
retraining. The layer is used only when the table was made with this configuration and
these scoring networks.
"""

from __future__ import annotations

import os
from pathlib import Path

from surrogateshap.game import stable_hash
from surrogateshap.store import CoalitionStore

__all__ = ["TaskCache"]


class TaskCache:
    """The on-disk state of one task object (one store object per file, shared by the
    games of every utility of the task)."""

    def __init__(self, task):
        self.task = task
        self._stores: dict[str, CoalitionStore] = {}
        self._reference = None
        self._reference_path: Path | None = None
        self._reference_loaded = False

    @property
    def root(self) -> Path:
        return self.task.cache_dir / self.task.config_id()

    def full_model_path(self, name: str = "full_model.pt") -> Path:
        return self.root / name

    def bank_dir(self, header: dict) -> Path:
        """The folder of a sample bank made with the settings in ``header``."""
        return self.root / f"bank-{stable_hash(header)}"

    def store(self, name: str, header: dict) -> CoalitionStore:
        """The store ``<root>/<name>.sqlite`` (created with ``header``; a store made with
        another header is refused by the store itself)."""
        path = self.root / f"{name}.sqlite"
        key = str(path.resolve())
        if key not in self._stores:
            self._stores[key] = CoalitionStore(path, header)
        return self._stores[key]

    def scored_store(self, name: str, seed: int, **header) -> CoalitionStore:
        """The records of one seed of a game that scores samples (``<name>-seed<s>``),
        keyed by the configuration, ``header`` and the scoring networks: records scored by
        other networks are never read."""
        task = self.task
        scoring = task.scoring_id()
        full = f"{name}-seed{int(seed)}" + (f"-scoring-{scoring}" if scoring else "")
        head = {"task": task.config_id(), "seed": int(seed), **header, **({"scoring": scoring} if scoring else {})}
        return self.store(full, head)

    def retraining_store(self, seed: int) -> CoalitionStore:
        """The retraining records of one seed."""
        return self.scored_store("retrain", seed)

    # --- the reference layer ------------------------------------------------------
    def use_reference(self, path: str | os.PathLike | None, table=None) -> None:
        """Serve the rows of the table at ``path`` (None: none at all) instead of the
        task's shipped table; ``table``: that table, already loaded and checked."""
        self._reference_path = None if path is None else Path(path)
        self._reference_loaded = path is None or table is not None
        self._reference = table

    @property
    def reference(self):
        """The reference table served beneath the stores (a
        :class:`~surrogateshap.table.CoalitionTable`), or None: no table, or one made with
        another configuration or other scoring networks."""
        if not self._reference_loaded:
            self._reference_loaded = True
            from surrogateshap.tasks.reference import (
                RETRAINING_CSV,
                load_reference,
                reference_dir,
            )

            path = self._reference_path or reference_dir(self.task.name) / RETRAINING_CSV
            from surrogateshap.table import DamagedTableError

            try:
                self._reference = load_reference(self.task, path) if path.exists() else None
            except DamagedTableError:
                raise  # damaged, not another game's: silently retraining would hide it
            except ValueError:  # another configuration or scorer: not this game's values
                self._reference = None
        return self._reference

    def reference_record(self, key: str, seed: int) -> dict | None:
        """The reference table's row of coalition ``key`` on ``seed`` as a record, or None."""
        table = self.reference
        if table is None or int(seed) not in table.seeds:
            return None
        row = table.row(key, int(seed))
        if row is None:
            return None
        return {**{u: float(row[u]) for u in self.task.utilities},
                "seconds": float(row.get("seconds", 0.0)), "trainings": int("1" in key), "source": "table"}
