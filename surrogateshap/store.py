"""Persistence of per-coalition results: an append-only store safe to resume and to
share between processes, with its ledger of claims and failures.

Everything the project keeps on disk per coalition goes through here: a game's memo
(:class:`~surrogateshap.game.CachedGame`) and the retraining cache of a task.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import warnings
from pathlib import Path

from surrogateshap._files import fsync_dir

try:
    import fcntl
except ImportError:  # not POSIX: no inter-process lock (one writer per store)
    fcntl = None

__all__ = ["CoalitionStore", "CorruptStoreWarning"]


class CorruptStoreWarning(UserWarning):
    """A coalition store held lines that are not records (torn or damaged); they were
    skipped, kept in ``<store>.corrupt``, and their coalitions will be recomputed."""


class CoalitionStore:
    """Append-only JSON-lines store of per-coalition records, safe to resume and to share.

    The first line is a header naming what the records belong to; opening a store whose
    header differs raises instead of mixing results of two games. Each record is one
    line, written and fsynced on its own, so a crash loses at most the record being
    written.

    Several processes may write one store: :meth:`append` takes an exclusive
    ``fcntl.flock`` on the sidecar ``<path>.lock``, re-reads what others appended and
    skips a key already present, so no key is stored twice. The file is never
    rewritten: a torn last line (a writer killed mid-write) is terminated, under the
    lock, by appending a newline, and a line that is not a record is skipped with a
    :class:`CorruptStoreWarning` naming its line number and copied to ``<path>.corrupt``.
    """

    def __init__(self, path: str | os.PathLike, header: dict):
        self.path = Path(path)
        self.header = dict(header)
        self.records: dict[str, dict] = {}
        self._n_torn = 0
        self._offset = 0  # bytes of the file already read
        self._lines = 0  # lines already read (the header is line 1)
        self._ino = None  # inode read from: a replaced file is read again from the start
        self._thread_lock = threading.RLock()
        self._depth = 0
        with self.locked():
            if not self.path.exists() or self.path.stat().st_size == 0:
                self._write_header()
            elif self._torn_header_only():
                # a creator killed while writing the header: the file holds no record,
                # and under the lock nobody is writing it, so it is started again
                warnings.warn(f"{self.path}: its header was cut short (no records); "
                              "starting the store again", CorruptStoreWarning, stacklevel=2)
                os.truncate(self.path, 0)
                self._write_header()
            self._scan(repair=True)

    def _torn_header_only(self) -> bool:
        data = self.path.read_bytes()
        if b"\n" in data:
            return False
        try:
            json.loads(data)["header"]
        except (ValueError, KeyError, TypeError):
            return True
        return False

    # ------------------------------------------------------------------ locking
    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def locked(self):
        """Hold the store's exclusive lock (``fcntl.flock`` on ``<path>.lock``): no other
        process appends or repairs meanwhile. Re-entrant for this object."""
        with self._thread_lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise PermissionError(
                    f"cannot lock coalition store {self.path}: {e.strerror or e} "
                    f"(its folder must be writable; set SURROGATESHAP_CACHE to a writable folder)"
                ) from e
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                self._depth = 1
                try:
                    yield self
                finally:
                    self._depth = 0
                    if fcntl is not None:
                        fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __getstate__(self):  # picklable (process executors): locks are per process
        state = dict(self.__dict__)
        state["_thread_lock"] = None
        state["_depth"] = 0
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._thread_lock = threading.RLock()

    # ------------------------------------------------------------------ reading
    def refresh(self) -> int:
        """Read records other writers appended since the last read; returns how many
        new keys arrived. Without the lock a partial last line is left for later (a
        writer may be mid-write); under it, it is a torn line and gets terminated."""
        with self._thread_lock:
            return self._scan(repair=self._depth > 0)

    def _header_line(self) -> bytes:
        return (json.dumps({"header": self.header}, sort_keys=True) + "\n").encode()

    def _write_header(self):
        """Start the file (new, empty, or deleted during the session); lock held."""
        line = self._header_line()
        with open(self.path, "ab") as f:
            if f.tell() == 0:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        fsync_dir(self.path.parent)

    def _scan(self, repair: bool) -> int:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return 0
        with f:
            st = os.fstat(f.fileno())
            if self._ino is not None and (st.st_ino != self._ino or st.st_size < self._offset):
                self._offset, self._lines = 0, 0  # replaced or truncated: read it again
            self._ino = st.st_ino
            if st.st_size == self._offset:
                return 0
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data) and repair:
            if self._offset == 0 and end == 0:
                self._check_header(data)  # a torn header is no store; a whole one is kept
            # under the lock nobody is writing: an unterminated last line is a writer
            # killed mid-line; terminate it (appending, never rewriting the file)
            with open(self.path, "ab") as out:
                out.write(b"\n")
                out.flush()
                os.fsync(out.fileno())
            data += b"\n"
            end = len(data)
        new, bad = 0, []
        for raw in data[:end].split(b"\n")[:-1]:
            self._lines += 1
            if self._lines == 1:
                self._check_header(raw)
                continue
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                key = rec["key"]
            except (ValueError, KeyError, TypeError):
                bad.append((self._lines, raw))
                continue
            if key not in self.records:
                self.records[key] = rec
                new += 1
        self._offset += end
        if bad:
            self._n_torn += len(bad)
            self._keep_corrupt(bad)
        return new

    def _check_header(self, raw: bytes):
        try:
            head = json.loads(raw)["header"]
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise ValueError(f"{self.path} is not a coalition store (bad header)") from e
        if head != json.loads(json.dumps(self.header, sort_keys=True)):
            raise ValueError(
                f"{self.path} holds results of a different game or configuration:\n"
                f"  file:     {head}\n  expected: {self.header}\n"
                "use another cache path or delete the file"
            )

    @property
    def corrupt_path(self) -> Path:
        return self.path.with_name(self.path.name + ".corrupt")

    def _keep_corrupt(self, bad: list[tuple[int, bytes]]):
        """Copy skipped lines to the side file and warn, once per line."""
        side = self.corrupt_path
        try:
            known = set(side.read_bytes().split(b"\n")) if side.exists() else set()
        except OSError:
            known = set()
        fresh = [(n, raw) for n, raw in bad if f"line {n}: ".encode() + raw not in known]
        if not fresh:
            return
        with contextlib.suppress(OSError), open(side, "ab") as f:
            for n, raw in fresh:
                f.write(f"line {n}: ".encode() + raw + b"\n")
        lines = ", ".join(str(n) for n, _ in fresh[:10]) + (" ..." if len(fresh) > 10 else "")
        warnings.warn(
            f"{self.path}: skipped {len(fresh)} line(s) that are not records (line {lines}: "
            f"torn or damaged writes); kept in {side}; their coalitions will be recomputed",
            CorruptStoreWarning, stacklevel=3,
        )

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def __bool__(self) -> bool:  # an empty store is still a store
        return True

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    # ------------------------------------------------------------------ writing
    def append(self, key: str, record: dict) -> bool:
        """Append one record unless ``key`` is already stored (by anyone): under the
        lock, read what others appended, then write and fsync. Returns whether it was
        written."""
        with self.locked():
            if not self.path.exists() or self.path.stat().st_size == 0:
                # deleted (or emptied) during the session: start it again with its header
                self._offset, self._lines, self._ino = 0, 0, None
                self._write_header()
            self._scan(repair=True)
            if key in self.records:
                return False
            rec = {"key": key, **record}
            line = (json.dumps(rec, sort_keys=True) + "\n").encode()
            with open(self.path, "ab") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self._offset += len(line)
            self._lines += 1
            self.records[key] = rec
            return True

    # ------------------------------------------------------------------ ledger
    # Side files beside the store, appended under its lock: which keys a writer has
    # taken (``<stem>.claims.jsonl``: several drivers on one cache share the work) and
    # which failed (``<stem>.failures.jsonl``: never among the records, reported).
    @property
    def claims_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".claims.jsonl")

    @property
    def failures_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".failures.jsonl")

    @staticmethod
    def _ledger(path: Path) -> list[dict]:
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a torn line: a writer killed mid-write
                continue
        return out

    def claim(self, candidates: list[str], n: int, by: str) -> list[str]:
        """Take up to ``n`` of ``candidates``, preferring keys no other writer has claimed,
        and log the claim. Claims only order the work: what another writer claimed but
        never stored is taken too, last."""
        with self.locked():
            others = set()
            for c in self._ledger(self.claims_path):
                if c.get("by") != by:
                    others.update(c.get("keys", ()))
            free = [k for k in candidates if k not in others]
            part = (free or list(candidates))[:n]
            with open(self.claims_path, "a") as f:
                f.write(json.dumps({"by": by, "keys": part}) + "\n")
        return part

    def record_failure(self, key: str, error: str, attempts: int, **info) -> dict:
        """Log that ``key`` failed (durably); returns the record."""
        rec = {"key": key, "error": error, "attempts": int(attempts),
               "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        with self.locked(), open(self.failures_path, "a") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return rec

    def failures(self) -> dict[str, dict]:
        """The last failure of each key that no writer has stored since."""
        self.refresh()
        out = {rec["key"]: rec for rec in self._ledger(self.failures_path) if "key" in rec}
        return {k: r for k, r in out.items() if k not in self.records}

