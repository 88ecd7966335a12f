"""Arrays built once and read, memory-mapped, by every process: the proxy's bank on disk.

An :class:`ArrayStore` is a folder of ``.npy`` files and a ``header.json`` naming what
made them (an identity: the task's configuration, its scoring networks, the bank's seed
and size) and each file's shape, dtype, size and digest. Every file is written to a
temporary name, fsynced and renamed, the header last, so a reader sees a whole store or
none (a process still mapping an old file keeps it until it lets go). Reading checks the
header against the identity asked for and every file against the header; a store that
fails (damaged, cut short, made with other settings) is named in a warning and read as
absent, so its owner rebuilds it. Large arrays are never read whole: ``np.load`` with
``mmap_mode='r'``, and written row by row through :meth:`Writer.array`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from surrogateshap._files import fsync_dir

__all__ = ["ArrayStore", "Writer", "array_digest"]

FORMAT = "surrogateshap-arrays/1"
#: files up to this size are digested whole; larger ones by their first and last
#: ``_EDGE`` bytes and their size (a full read of an 8 GiB file at every start would cost
#: what the store saves)
_WHOLE = 64 * 2**20
_EDGE = 4 * 2**20


def _file_digest(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= _WHOLE:
            for block in iter(lambda: f.read(2**20), b""):
                h.update(block)
        else:
            h.update(f.read(_EDGE))
            f.seek(size - _EDGE)
            h.update(f.read(_EDGE))
    return h.hexdigest()


def array_digest(*arrays: np.ndarray) -> str:
    """A digest of arrays' dtypes, shapes and values (to key what is derived from them)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


class Writer:
    """The arrays of one store being written (see :meth:`ArrayStore.writing`)."""

    def __init__(self, root: Path):
        self.root = root
        self._tmp: dict[str, tuple[str, np.memmap]] = {}

    def array(self, name: str, shape, dtype=np.float64) -> np.memmap:
        """A writable array ``name`` in a temporary file: fill it (row by row, say)."""
        if name in self._tmp or not name.isidentifier():
            raise ValueError(f"array name {name!r} is taken or not an identifier")
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".npy.tmp", dir=self.root)
        os.close(fd)
        self._tmp[name] = (tmp, np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape)))
        return self._tmp[name][1]

    def put(self, name: str, value) -> None:
        """Store a whole array ``name``."""
        value = np.asarray(value)
        self.array(name, value.shape, value.dtype)[...] = value

    def _commit(self, identity: dict) -> None:
        umask = os.umask(0)
        os.umask(umask)
        arrays = {}
        for name, (tmp, mm) in self._tmp.items():
            mm.flush()
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide a shared cache from others
            arrays[name] = {"shape": list(mm.shape), "dtype": mm.dtype.str, "bytes": os.path.getsize(tmp),
                            "digest": _file_digest(Path(tmp))}
        self._tmp = {n: (t, None) for n, (t, _) in self._tmp.items()}
        for name, (tmp, _) in self._tmp.items():
            os.replace(tmp, self.root / f"{name}.npy")
        header = {"format": FORMAT, "identity": identity, "arrays": arrays}
        fd, tmp = tempfile.mkstemp(prefix=".header.", suffix=".json.tmp", dir=self.root)
        with os.fdopen(fd, "w") as f:
            json.dump(header, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, self.root / "header.json")
        fsync_dir(self.root)

    def _discard(self) -> None:
        for tmp, _ in self._tmp.values():
            with contextlib.suppress(OSError):
                os.unlink(tmp)


class ArrayStore:
    """The folder ``root`` of arrays made with ``identity`` (a JSON-able dict)."""

    def __init__(self, root: str | os.PathLike, identity: dict):
        self.root = Path(root)
        self.identity = json.loads(json.dumps(identity, sort_keys=True, default=str))
        #: a digest of the files' digests, once read
        self.contents: str | None = None

    def __repr__(self):
        return f"ArrayStore({str(self.root)!r})"

    def child(self, name: str, identity: dict) -> ArrayStore:
        """The store of arrays derived from this one's (as last read) with settings
        ``identity``: a folder inside this one, keyed by both identities and this one's
        contents, so a rebuilt parent never serves the old derived arrays."""
        if self.contents is None:
            raise ValueError(f"{self}: read the store before deriving from it")
        identity = {**identity, "of": self.identity, "contents": self.contents}
        key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return ArrayStore(self.root / f"{name}-{key}", identity)

    @contextlib.contextmanager
    def writing(self):
        """Yields a :class:`Writer`; on a clean exit its arrays replace the store's, the
        header last; on an exception nothing is replaced and the temporary files go."""
        self.root.mkdir(parents=True, exist_ok=True)
        w = Writer(self.root)
        try:
            yield w
            w._commit(self.identity)
        except BaseException:
            w._discard()
            raise

    def read(self, need=()) -> dict[str, np.ndarray] | None:
        """name -> array (memory-mapped, read-only), or None when the folder holds no
        store, or one that fails its checks or lacks an array named in ``need`` (named
        in a warning: rebuild it)."""
        path = self.root / "header.json"
        if not path.exists():
            return None
        try:
            out = self._read(path)
            missing = sorted(set(need) - set(out))
            if missing:
                raise _Refused(f"they lack the arrays {', '.join(missing)}")
            return out
        except _Refused as e:
            warnings.warn(f"the stored arrays at {self.root} are refused: {e}; they will be built again",
                          RuntimeWarning, stacklevel=3)
            return None

    def _read(self, path: Path) -> dict[str, np.ndarray]:
        try:
            header = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise _Refused(f"its header is not JSON ({e})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(header.get("arrays"), dict):
            raise _Refused(f"its header is not a {FORMAT} header")
        if header.get("identity") != self.identity:
            old = header.get("identity") if isinstance(header.get("identity"), dict) else {}
            diff = sorted(k for k in set(old) | set(self.identity) if old.get(k) != self.identity.get(k))
            raise _Refused(f"they were made with other settings ({', '.join(diff) or 'the identity'} differ)")
        out = {}
        for name, meta in header["arrays"].items():
            file = self.root / f"{name}.npy"
            try:
                if file.stat().st_size != meta["bytes"] or _file_digest(file) != meta["digest"]:
                    raise _Refused(f"{file.name} is not the file the header names (size or digest differ)")
                a = np.load(file, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise _Refused(f"{file.name} cannot be read ({e})") from None
            if list(a.shape) != meta["shape"] or a.dtype.str != meta["dtype"]:
                raise _Refused(f"{file.name} holds {a.dtype.str} {a.shape}, not the header's "
                               f"{meta['dtype']} {tuple(meta['shape'])}")
            out[name] = a
        self.contents = hashlib.sha256(json.dumps(header["arrays"], sort_keys=True).encode()).hexdigest()[:16]
        return out


class _Refused(Exception):
    pass
