"""Crash-safe file writes and writability checks shared by the stores, tables and CLI."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "atomic_writes", "fsync_dir", "check_writable_dir"]


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or a new file in ``path`` durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w"):
    """Write ``path`` through a temporary file in the same folder, fsynced, then
    ``os.replace``d: a reader (or the next run after a crash) sees the old file or the
    new one, never a part of either. An exception leaves the old file untouched."""
    with atomic_writes([path], mode) as (f,):
        yield f


@contextlib.contextmanager
def atomic_writes(paths, mode: str = "w"):
    """:func:`atomic_write` for files that belong together (a table and the values
    computed from it): yields one open file per path, and replaces none of them until
    every one is written and fsynced, so an exception while writing any leaves them all
    as they were."""
    paths = [Path(p) for p in paths]
    tmps, files = [], []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            tmps.append(tmp)
            files.append(os.fdopen(fd, mode))
        yield files
        umask = os.umask(0)
        os.umask(umask)
        for f, tmp in zip(files, tmps):
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide a shipped file from others
        for tmp, path in zip(tmps, paths):
            os.replace(tmp, path)
    except BaseException:
        for f in files:
            with contextlib.suppress(OSError):
                f.close()
        for tmp in tmps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    for folder in dict.fromkeys(path.parent for path in paths):
        fsync_dir(folder)


def check_writable_dir(path: str | os.PathLike, what: str = "folder") -> Path:
    """Create ``path`` if needed and prove it takes a file; raise ``OSError`` with one
    clear sentence otherwise (a file in the way, no permission, a read-only disk)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise PermissionError(f"{what} {path} is not writable ({e.strerror or e})") from e
    return path
