"""Every coalition of a game, enumerated in resumable chunks on disk, and the table replayed.

A game too slow to enumerate in one sitting but cheap enough for all 2**n coalitions
(a proxy game at n = 20: about a million evaluations) is evaluated chunk by chunk in
coalition-index order (:func:`~surrogateshap.game.all_coalitions`: row r has bit i =
player i); each chunk is written atomically, so an interrupted run resumes where it
stopped, recomputing nothing it wrote and writing nothing twice. The table's SHA-256
(of its float64 values, little-endian, in that order) identifies it, so a rebuild is
checked against a recorded one.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np

from surrogateshap._files import atomic_write
from surrogateshap.exact import MAX_EXACT_PLAYERS, shapley_from_table
from surrogateshap.game import Game

__all__ = [
    "DEFAULT_CHUNK",
    "EnumeratedGame",
    "TableMismatchError",
    "check_table_sha256",
    "coalition_masks",
    "enumerate_game",
    "table_sha256",
]

#: coalitions per chunk file (2**15: 64 KiB of *8 bytes each; about 2 s of a proxy game at d = 64)
DEFAULT_CHUNK = 2**15


class TableMismatchError(ValueError):
    """An enumerated table is not the one a reference was computed from (its SHA-256 differs)."""


def coalition_masks(start: int, stop: int, n_players: int) -> np.ndarray:
    """Rows ``start .. stop - 1`` of ``all_coalitions(n_players)``, without building the rest."""
    idx = np.arange(start, stop, dtype=np.int64)[:, None]
    return ((idx >> np.arange(n_players)) & 1).astype(bool)


def table_sha256(values) -> str:
    """SHA-256 of a table's float64 values (little-endian) in coalition-index order."""
    return hashlib.sha256(np.ascontiguousarray(values, dtype="<f8").tobytes()).hexdigest()


def check_table_sha256(values, expected: str, what: str = "table") -> str:
    """Refuse a table whose SHA-256 is not ``expected`` (one error naming both); returns it."""
    found = table_sha256(values)
    if found != expected:
        raise TableMismatchError(
            f"{what}: the enumerated table has sha256 {found[:16]}..., the reference was computed from "
            f"{expected[:16]}...: they are different games (another full model, bank, scoring network or "
            "configuration), so the reference's exact values do not hold for it")
    return found


def _chunk_path(directory: Path, n: int, chunk: int, i: int, k: int) -> Path:
    return directory / f"n{n}-c{chunk}-{i:05d}-of-{k:05d}.npy"


def _read_chunk(path: Path, size: int) -> np.ndarray:
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"chunk {path} is unreadable ({e}); delete it to recompute it") from e
    if values.shape != (size,) or values.dtype != np.float64 or not np.isfinite(values).all():
        raise ValueError(f"chunk {path} holds {values.shape} {values.dtype} values, not {size} finite "
                         "float64 ones; delete it to recompute it")
    return values


def enumerate_game(game: Game, directory: str | os.PathLike, chunk: int = DEFAULT_CHUNK,
                   progress: bool = False, label: str = "") -> np.ndarray:
    """The utilities of all 2**n coalitions of ``game`` in coalition-index order, evaluated
    ``chunk`` coalitions at a time and kept in ``directory`` (one file per chunk, written
    atomically): chunks already there are read, not recomputed. One builder per folder.
    ``progress`` prints each chunk's count, rate and time left to stderr."""
    n = game.n_players
    if n > MAX_EXACT_PLAYERS:
        raise ValueError(f"enumerating needs 2**n evaluations; n={n} exceeds {MAX_EXACT_PLAYERS}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be a positive number of coalitions, got {chunk!r}")
    total = 2**n
    chunk = int(min(chunk, total))
    k = -(-total // chunk)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(f".n{n}-c{chunk}-*.tmp"):  # a killed write's leftover
        stale.unlink(missing_ok=True)
    out = np.empty(total)
    t0, done_here = time.perf_counter(), 0
    for i in range(k):
        a, b = i * chunk, min((i + 1) * chunk, total)
        path = _chunk_path(directory, n, chunk, i, k)
        if path.exists():
            out[a:b] = _read_chunk(path, b - a)
            continue
        values = np.asarray(game(coalition_masks(a, b, n)), dtype=np.float64)
        with atomic_write(path, "wb") as f:
            np.save(f, values)
        out[a:b] = values
        done_here += b - a
        if progress:
            rate = done_here / max(time.perf_counter() - t0, 1e-9)
            print(f"{label or 'enumerating'}: {b:,}/{total:,} coalitions ({100 * b / total:.0f}%), "
                  f"{rate:,.0f}/s, ~{(total - b) / rate:.0f} s left", file=sys.stderr, flush=True)
    return out


class EnumeratedGame(Game):
    """A game read from all 2**n of its utilities in coalition-index order: a lookup, no
    coalition keys. ``cost_unit`` and ``cost_per_coalition`` are the enumerated game's,
    so an estimator is charged as if it played that game."""

    def __init__(self, players, values, cost_unit: str = "evaluations", cost_per_coalition: float = 1.0):
        super().__init__(players)
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (2**self.n_players,):
            raise ValueError(f"need {2**self.n_players} utilities for {self.n_players} players, "
                             f"got shape {values.shape}")
        self.values, self.cost_unit, self.cost_per_coalition = values, cost_unit, float(cost_per_coalition)
        self._bits = np.int64(1) << np.arange(self.n_players, dtype=np.int64)
        self._sha = None

    def _evaluate(self, masks):
        return self.values[masks.astype(np.int64) @ self._bits]

    def cost_of(self, masks):
        return self.cost_per_coalition * len(masks)

    def exact_values(self):
        return shapley_from_table(self.values, self.n_players)

    def cache_id(self):
        if self._sha is None:
            self._sha = table_sha256(self.values)
        return f"enumerated:{self._sha}"
