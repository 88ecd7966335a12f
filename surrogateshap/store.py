"""Persistence of per-coalition results: a store safe to resume and to share between
processes, with its ledger of claims and failures.

Everything the project keeps on disk per coalition goes through here: a game's memo
(:class:`~surrogateshap.game.CachedGame`) and the retraining cache of a task.

A store is one SQLite database (the standard library's :mod:`sqlite3`) in WAL mode with
``synchronous=FULL``: each record is its own transaction, fsynced at commit, so a crash
(or a power cut) loses at most the record being written, and a writer killed
mid-transaction leaves no trace of it. Records, claims and failures are tables of that
one database; its own locks replace a lock file, and its journal replaces any repair
of torn writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import threading
import time
from pathlib import Path

from surrogateshap._files import fsync_dir

__all__ = ["CoalitionStore", "CorruptStoreError", "StoreMismatchError", "writer_id", "writer_alive"]

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
    " record TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS claims (id INTEGER PRIMARY KEY, by TEXT NOT NULL, key TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS failures (id INTEGER PRIMARY KEY, key TEXT NOT NULL, record TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS claims_key ON claims (key)",  # a claim looks up its candidates
)
_TABLES = {"meta", "records", "claims", "failures"}


class CorruptStoreError(ValueError):
    """A coalition store's database file is damaged (or is not a database at all)."""


class StoreMismatchError(ValueError):
    """A store's header names another game or configuration than the one opening it.
    ``advice`` says what to do (the caller may know better than the store: keep it)."""

    def __init__(self, path, found: dict, expected: dict, advice: str = "use another cache path"):
        self.path, self.found, self.expected = path, found, expected
        super().__init__(f"{path} holds results of a different game or configuration:\n"
                         f"  file:     {found}\n  expected: {expected}\n{advice}")


class CoalitionStore:
    """Store of per-coalition records in one SQLite database, safe to resume and to share.

    The database holds a header naming what the records belong to; opening a store whose
    header differs raises instead of mixing results of two games. Each :meth:`append` is
    one transaction, committed and fsynced on its own (WAL, ``synchronous=FULL``), so a
    crash loses at most the record being written and never leaves part of one.

    Several processes may write one store: :meth:`append` takes the database's write
    lock (``BEGIN IMMEDIATE``), reads what others appended and skips a key already
    present (the key is also the table's unique key), so no key is stored twice.
    :meth:`locked` holds that lock across several operations (a read-modify-write that
    other processes cannot interleave); appends made inside it commit together when it
    ends. The store must be on a local file system: SQLite's WAL mode shares memory
    between the processes of one machine and does not work over a network file system.
    """

    #: seconds a writer waits for another process's write lock before giving up
    lock_timeout = 3600.0
    #: FULL: the WAL is fsynced at each commit, so a committed record survives a power
    #: cut or an OS crash too (NORMAL, in WAL mode, survives only a killed process)
    synchronous = "FULL"

    def __init__(self, path: str | os.PathLike, header: dict):
        self.path = Path(path)
        self.header = dict(header)
        self.records: dict[str, dict] = {}
        self._last = 0  # id of the last record read
        self._conn: sqlite3.Connection | None = None
        self._pid = None  # process the connection belongs to
        self._ident = None  # (device, inode) of the database read from
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._pending: list[str] = []  # keys appended in the open transaction
        with self._thread_lock:
            self._connection()
            self._read_new()

    # ------------------------------------------------------------------ connection
    def _errors(self):
        return _translate(self.path)

    def _file_ident(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def _connection(self) -> sqlite3.Connection:
        """This process's connection to the database as it is on disk now: a new one in
        a new process (after pickling or a fork), or when the file was deleted or
        replaced meanwhile (a deleted store starts again, with its header)."""
        if self._conn is not None and self._pid == os.getpid() and self._file_ident() == self._ident:
            return self._conn
        if self._conn is not None and self._pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn = None  # a connection inherited through fork() is left alone
        self._check_file()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            conn = sqlite3.connect(self.path, timeout=self.lock_timeout, isolation_level=None,
                                   check_same_thread=False)
        except (OSError, sqlite3.OperationalError) as e:
            raise _not_writable(self.path, e) from e
        try:
            with self._errors():
                try:  # two creators of a new file both switching it to WAL can deadlock,
                    # and SQLite then answers BUSY at once instead of waiting: poll
                    mode = self._poll(conn, "PRAGMA journal_mode=WAL").fetchone()[0]
                except sqlite3.OperationalError as e:  # read-only file or folder (its WAL cannot be made)
                    if _code(e) in (3, 8, 14):  # SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN
                        raise _not_writable(self.path, e) from e
                    raise
                if mode.lower() != "wal":
                    raise OSError(f"cannot use WAL mode for coalition store {self.path} (got {mode!r}); "
                                  "keep the cache on a local file system")
                if self.synchronous not in ("FULL", "EXTRA", "NORMAL"):
                    raise ValueError(f"synchronous={self.synchronous!r}: FULL, EXTRA or NORMAL")
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
                self._check_schema(conn)
        except BaseException:
            conn.close()
            raise
        if created:
            fsync_dir(self.path.parent)  # the new file's entry is durable (SQLite syncs the WAL's)
        ident = self._file_ident()
        if ident != self._ident:
            self._last = 0  # another database than the one read so far: read it from the start
        self._conn, self._pid, self._ident = conn, os.getpid(), ident
        return conn

    def _check_file(self):
        """Refuse, before SQLite touches it, a file that is no SQLite database."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except FileNotFoundError:
            return
        except OSError:
            return  # unreadable: connecting says why
        if not head or head == _SQLITE_MAGIC:
            return  # empty (a creator killed before its first write): started below
        if head.startswith(b'{"header"'):
            raise ValueError(
                f"{self.path} is a JSON-lines coalition store written by an older version of "
                "surrogateshap; stores are SQLite databases now and it is not read: use another "
                "cache path (new caches are named *.sqlite) or delete the file"
            )
        raise ValueError(f"{self.path} is not a coalition store (not an SQLite database)")

    def _check_schema(self, conn: sqlite3.Connection):
        """Create the tables and the header of a new database, or check the header of an
        existing one."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        indexed = conn.execute("SELECT 1 FROM sqlite_master WHERE name='claims_key'").fetchone()
        if "meta" not in tables or not _TABLES <= tables or not indexed:  # new, or made before the index
            if tables - _TABLES or (tables and "meta" not in tables):
                raise ValueError(f"{self.path} is not a coalition store (a database without its tables)")
            self._begin(conn)  # several creators: one makes the tables
            try:
                for statement in _SCHEMA:
                    conn.execute(statement)
                if conn.execute("SELECT 1 FROM meta WHERE name='header'").fetchone() is None:
                    conn.execute("INSERT INTO meta VALUES ('header', ?)",
                                 (json.dumps(self.header, sort_keys=True),))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        row = conn.execute("SELECT value FROM meta WHERE name='header'").fetchone()
        if row is None:
            raise ValueError(f"{self.path} is not a coalition store (no header)")
        head = self._parse(row[0], "meta", "header")
        if head != json.loads(json.dumps(self.header, sort_keys=True)):
            raise StoreMismatchError(self.path, head, self.header)

    def close(self):
        """Close this process's connection (a later use opens it again)."""
        with self._thread_lock:
            if self._depth:
                raise RuntimeError(f"coalition store {self.path}: close() inside locked()")
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ locking
    @contextlib.contextmanager
    def locked(self):
        """Hold the database's write lock (``BEGIN IMMEDIATE``): no other process writes
        meanwhile, and what this one reads and writes inside is one transaction,
        committed when the block ends (on an exception too: what was appended is kept).
        Re-entrant for this object."""
        with self._thread_lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            conn = self._connection()
            with self._errors():
                self._begin(conn)
            self._depth = 1
            try:
                self._read_new()
                yield self
            finally:
                self._depth = 0
                self._commit(conn)

    def _begin(self, conn: sqlite3.Connection):
        """``BEGIN IMMEDIATE``, waiting for another process's write lock."""
        self._poll(conn, "BEGIN IMMEDIATE")

    def _poll(self, conn: sqlite3.Connection, statement: str) -> sqlite3.Cursor:
        """Run ``statement``, retrying about every millisecond while another process holds
        the lock it needs, up to :attr:`lock_timeout`. (SQLite's own busy handler backs
        off to 100 ms sleeps, so a writer appending back to back would starve a waiting
        one, and it is not called at all where SQLite sees a possible deadlock.)"""
        conn.execute("PRAGMA busy_timeout=0")
        t0 = time.monotonic()
        try:
            while True:
                try:
                    return conn.execute(statement)
                except sqlite3.OperationalError as e:
                    waited = time.monotonic() - t0
                    if not _busy(e) or waited > self.lock_timeout:
                        raise
                time.sleep(random.uniform(0.5, 1.5) * min(0.01, 0.001 * (1 + waited)))
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(1000 * self.lock_timeout)}")

    def _commit(self, conn: sqlite3.Connection):
        try:
            with self._errors():
                if conn.in_transaction:
                    conn.execute("COMMIT")
                else:  # rolled back by SQLite (an I/O error, a full disk)
                    raise sqlite3.OperationalError("the transaction was rolled back")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            for key in self._pending:  # nothing of the transaction reached the disk
                self.records.pop(key, None)
            self._pending.clear()
            self._last = 0  # read what is there again
            self._read_new()
            raise
        self._pending.clear()

    def __getstate__(self):  # picklable (process executors): connections are per process
        state = dict(self.__dict__)
        state.update(_conn=None, _pid=None, _thread_lock=None, _depth=0, _pending=[])
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._thread_lock = threading.RLock()

    # ------------------------------------------------------------------ reading
    def refresh(self) -> int:
        """Read records other writers committed since the last read; returns how many
        new keys arrived."""
        with self._thread_lock:
            if not self._depth and self._file_ident() is None:
                return 0  # deleted: the next append starts it again
            self._connection()
            return self._read_new()

    def _read_new(self) -> int:
        with self._errors():
            rows = self._conn.execute("SELECT id, key, record FROM records WHERE id > ? ORDER BY id",
                                      (self._last,)).fetchall()
        new = 0
        for rid, key, text in rows:
            if key not in self.records:
                self.records[key] = self._parse(text, "records", rid, key)
                new += 1
            self._last = rid
        return new

    def _parse(self, text: str, table: str, rid, key=None) -> dict:
        """A row's JSON object; a row that is not one (hand-edited, another tool's) is a
        :class:`CorruptStoreError` naming the file, table and row, not a KeyError later."""
        try:
            rec = json.loads(text)
        except (TypeError, ValueError) as e:
            why = f"not JSON: {e}"
        else:
            if isinstance(rec, dict) and (key is None or rec.get("key") == key):
                return rec
            why = (f"{type(rec).__name__}, not an object" if not isinstance(rec, dict)
                   else f"its key {rec.get('key')!r} is not the row's {key!r}")
        fix = "Move the file away" if table == "meta" else (
            f"Delete that row (sqlite3 {self.path} \"DELETE FROM {table} WHERE id={rid}\") or move the file away")
        raise CorruptStoreError(
            f"{self.path}: row {rid} of table {table!r} is not a record ({why}): {str(text)[:80]!r}. {fix}")

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
        """Store one record unless ``key`` is already stored (by anyone): under the write
        lock, read what others committed, then insert and commit (fsynced). Returns
        whether it was written."""
        with self.locked():
            if key in self.records:
                return False
            rec = {"key": key, **record}
            text = json.dumps(rec, sort_keys=True)
            with self._errors():
                cur = self._conn.execute("INSERT OR IGNORE INTO records (key, record) VALUES (?, ?)",
                                         (key, text))
            if cur.rowcount != 1:  # cannot happen under the lock; stay correct if it does
                self._read_new()
                return False
            self._last = cur.lastrowid
            self.records[key] = rec
            self._pending.append(key)
            return True

    # ------------------------------------------------------------------ ledger
    # Tables of the same database, written under its lock: which keys a writer has
    # taken (``claims``: several drivers on one cache share the work) and which failed
    # (``failures``: never among the records, reported).
    def claim(self, candidates: list[str], n: int, by: str, free_only: bool = False) -> list[str]:
        """Take up to ``n`` of ``candidates``, preferring keys no other writer has claimed,
        and log the claim. Claims only order the work: what another writer claimed but
        never stored is taken too, last. With ``free_only`` they exclude: only keys not
        stored and not claimed by another writer still running (:func:`writer_alive`)
        are taken, maybe none, so that the caller waits for the others' records."""
        candidates = list(candidates)
        with self._unsynced(), self.locked(), self._errors():
            claimed = {}
            for a in range(0, len(candidates), 500):  # SQLite's limit on bound parameters
                part = candidates[a : a + 500]
                rows = self._conn.execute(
                    f"SELECT DISTINCT by, key FROM claims WHERE by != ? AND key IN ({','.join('?' * len(part))})",
                    (by, *part))
                for who, key in rows:
                    claimed.setdefault(key, []).append(who)
            if free_only:
                part = [k for k in candidates if k not in self.records
                        and not any(map(writer_alive, claimed.get(k, ())))][:n]
            else:
                part = ([k for k in candidates if k not in claimed] or candidates)[:n]
            self._conn.executemany("INSERT INTO claims (by, key) VALUES (?, ?)", [(by, k) for k in part])
        return part

    @contextlib.contextmanager
    def _unsynced(self):
        """Commit without an fsync (``synchronous=NORMAL``, still atomic): for claims, which
        only order the work, so losing the last ones in a power cut costs nothing, while
        an fsync each would double what a record costs."""
        with self._thread_lock:
            if self._depth:  # inside locked(): the outer transaction decides
                yield
                return
            conn = self._connection()
            conn.execute("PRAGMA synchronous=NORMAL")
            try:
                yield
            finally:
                conn.execute(f"PRAGMA synchronous={self.synchronous}")

    def release(self, keys: list[str], by: str) -> None:
        """Withdraw ``by``'s claims on ``keys`` (it gave up on them: another writer may
        take them at once)."""
        keys = list(keys)
        with self.locked(), self._errors():
            for a in range(0, len(keys), 500):
                part = keys[a : a + 500]
                self._conn.execute(f"DELETE FROM claims WHERE by = ? AND key IN ({','.join('?' * len(part))})",
                                   (by, *part))

    def record_failure(self, key: str, error: str, attempts: int, **info) -> dict:
        """Log that ``key`` failed (durably); returns the record."""
        rec = {"key": key, "error": error, "attempts": int(attempts),
               "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        with self.locked(), self._errors():
            self._conn.execute("INSERT INTO failures (key, record) VALUES (?, ?)",
                               (key, json.dumps(rec, sort_keys=True)))
        return rec

    def failures(self) -> dict[str, dict]:
        """The last failure of each key that no writer has stored since."""
        self.refresh()
        with self._thread_lock:
            if self._file_ident() is None:
                return {}
            with self._errors():
                rows = self._connection().execute("SELECT id, key, record FROM failures ORDER BY id").fetchall()
        out = {key: self._parse(text, "failures", rid, key) for rid, key, text in rows}
        return {k: r for k, r in out.items() if k not in self.records}


def writer_id(owner) -> str:
    """Who claims in a store: machine, process and the claiming object ("host:pid:id")."""
    return f"{os.uname().nodename}:{os.getpid()}:{id(owner)}"


def writer_alive(by: str) -> bool:
    """Whether the writer ``by`` (:func:`writer_id`) may still be running: False only for
    a process of this machine that has ended (another machine's cannot be asked)."""
    host, _, rest = by.partition(":")
    pid = rest.partition(":")[0]
    if host != os.uname().nodename or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


@contextlib.contextmanager
def _translate(path: Path):
    """SQLite's errors, said with the store's file: a damaged database is a
    :class:`CorruptStoreError`, a lock not obtained in time a :class:`TimeoutError`."""
    try:
        yield
    except sqlite3.DatabaseError as e:
        code = _code(e)
        text = str(e)
        if code in (11, 26) or (code is None and ("malformed" in text or "not a database" in text)):
            raise CorruptStoreError(
                f"{path} is damaged ({text}): its records cannot be read. Move it away (its "
                "coalitions will be computed again) or salvage it with the sqlite3 shell's "
                "'.recover' command"
            ) from e
        if _busy(e):
            raise TimeoutError(f"coalition store {path}: another process held its write lock "
                               f"for more than {CoalitionStore.lock_timeout:.0f} s ({text})") from e
        raise


def _not_writable(path: Path, e: Exception) -> PermissionError:
    return PermissionError(
        f"cannot open coalition store {path}: {getattr(e, 'strerror', None) or e} "
        f"(its folder must be writable; set SURROGATESHAP_CACHE to a writable folder)"
    )


def _code(e: sqlite3.Error) -> int | None:
    """SQLite's primary result code of an error (SQLITE_BUSY 5, SQLITE_CORRUPT 11,
    SQLITE_NOTADB 26), or None where Python does not say (before 3.11)."""
    code = getattr(e, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _busy(e: sqlite3.Error) -> bool:
    code = _code(e)
    return code == 5 if code is not None else "locked" in str(e)
