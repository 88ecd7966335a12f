"""Cost of the coalition store, side by side: the SQLite store (surrogateshap.store) and
the JSON-lines + flock store it replaced (read from git, commit 56b6b22).

    python scripts/store_append_cost.py [--appends 1000] [--sizes 1000 30000] [--repeats 3]
                                        [--concurrent 256] [--baseline 56b6b22]

Prints one table of medians over ``--repeats`` runs:

- append: ms per ``append`` of a new key to a fresh store (lock, read what others
  appended, write one record, fsync), over ``--appends`` appends;
- reopen N: ms to open a store holding N records (all read into memory; the file is in
  the page cache, as on a resume right after a crash);
- 2 writers: two processes append the same ``--concurrent`` keys in opposite orders
  into one fresh store (timed from a common start, after both opened it); wall time,
  and how many keys each wrote (together each key exactly once, which is checked).

Rows: ``jsonl+flock`` (fsync per line), ``sqlite WAL FULL`` (the store: the WAL is
fsynced at every commit, durable across power loss like the fsynced line), and
``sqlite WAL NORMAL`` (for comparison only: in WAL mode a commit then survives a killed
process but not a power cut or an OS crash).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from surrogateshap import store as sqlite_store  # noqa: E402

HEADER = {"game": "cost"}


def record(i: int) -> dict:
    return {"utility": float(i), "seconds": 0.1, "cost": 1.0}


def load_baseline(rev: str, folder: Path) -> Path:
    """The JSON-lines store as it was at ``rev``, as a module file in ``folder``."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:surrogateshap/store.py"],
                         check=True, capture_output=True, text=True).stdout
    if "fcntl.flock" not in src:
        raise SystemExit(f"{rev}:surrogateshap/store.py is not the JSON-lines store")
    path = folder / "jsonl_store.py"
    path.write_text(src)
    return path


def import_file(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# an implementation: (row name, file suffix, factory path -> store, bulk fill, worker setup code)
def implementations(baseline: Path):
    jsonl = import_file(baseline)

    class Normal(sqlite_store.CoalitionStore):
        synchronous = "NORMAL"

    def fill_jsonl(path, n):  # the bytes n appends write, without n fsyncs
        lines = [json.dumps({"header": HEADER}, sort_keys=True)]
        lines += [json.dumps({"key": format(i, "020b"), **record(i)}, sort_keys=True) for i in range(n)]
        Path(path).write_text("\n".join(lines) + "\n")

    def fill_sqlite(path, n):  # the rows n appends write, in one transaction
        s = sqlite_store.CoalitionStore(path, HEADER)
        with s.locked():
            for i in range(n):
                s.append(format(i, "020b"), record(i))
        s.close()

    load_j = f"import importlib.util as u; sp = u.spec_from_file_location('j', {str(baseline)!r}); " \
             "m = u.module_from_spec(sp); sp.loader.exec_module(m); Store = m.CoalitionStore"
    load_s = "from surrogateshap.store import CoalitionStore as Store"
    load_n = load_s + "\nclass Store(Store):\n    synchronous = 'NORMAL'"
    return [
        ("jsonl+flock", ".jsonl", jsonl.CoalitionStore, fill_jsonl, load_j),
        ("sqlite WAL FULL", ".sqlite", sqlite_store.CoalitionStore, fill_sqlite, load_s),
        ("sqlite WAL NORMAL", ".sqlite", Normal, fill_sqlite, load_n),
    ]


def append_cost(cls, suffix, n, folder) -> float:
    with tempfile.TemporaryDirectory(dir=folder) as d:
        s = cls(os.path.join(d, "store" + suffix), HEADER)
        t0 = time.perf_counter()
        for i in range(n):
            s.append(format(i, "020b"), record(i))
        dt = (time.perf_counter() - t0) / n
        if hasattr(s, "close"):
            s.close()
        return 1e3 * dt


def reopen_cost(cls, path) -> float:
    t0 = time.perf_counter()
    s = cls(path, HEADER)
    dt = time.perf_counter() - t0
    assert len(s) > 0
    if hasattr(s, "close"):
        s.close()
    return 1e3 * dt


WORKER = """
import os, sys, time
{load}
path, order, go, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = Store(path, {header!r})
open(go + "." + order, "w").close()  # opened: ready
while not os.path.exists(go):
    time.sleep(0.001)
keys = [format(i, "08b") for i in range(n)]
if order == "reverse":
    keys = keys[::-1]
t0 = time.perf_counter()
written = sum(store.append(k, {{"utility": int(k, 2), "by": order}}) for k in keys)
print(written, time.perf_counter(), time.perf_counter() - t0)
"""


def two_writers(load, cls, suffix, n, folder) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory(dir=folder) as d:
        path, go = os.path.join(d, "store" + suffix), os.path.join(d, "go")
        cls(path, HEADER)  # created before, so both writers open an existing store
        script = Path(d) / "worker.py"
        script.write_text(WORKER.format(load=load, header=HEADER))
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        procs = [subprocess.Popen([sys.executable, str(script), path, o, go, str(n)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for o in ("forward", "reverse")]
        while not all(os.path.exists(f"{go}.{o}") for o in ("forward", "reverse")):
            if any(p.poll() is not None for p in procs):
                raise RuntimeError([p.communicate() for p in procs])
            time.sleep(0.002)
        t0 = time.perf_counter()
        open(go, "w").close()
        outs = [p.communicate(timeout=300) for p in procs]
        if any(p.returncode for p in procs):
            raise RuntimeError(outs)
        written = [int(o[0].split()[0]) for o in outs]
        wall = max(float(o[0].split()[1]) for o in outs) - t0
        # each key stored once: counted in the file itself, not through the store
        if suffix == ".jsonl":
            stored = [json.loads(x)["key"] for x in Path(path).read_text().splitlines()[1:]]
        else:
            with sqlite3.connect(path) as db:
                stored = [r[0] for r in db.execute("SELECT key FROM records")]
            db.close()
        assert sorted(stored) == sorted(format(i, "08b") for i in range(n)), "a key lost or stored twice"
        assert sum(written) == n
        return 1e3 * wall, written[0], written[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--appends", type=int, default=1000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 30000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=256)
    ap.add_argument("--baseline", default="56b6b22", help="git revision of the JSON-lines store")
    ap.add_argument("--dir", default=None, help="folder for the temporary stores (default: $TMPDIR)")
    args = ap.parse_args(argv)
    med = statistics.median

    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        work = Path(work)
        impls = implementations(load_baseline(args.baseline, work))
        rows = {name: {} for name, *_ in impls}
        for rep in range(args.repeats):  # interleaved, so a busy spell hits every row alike
            for name, suffix, cls, fill, load in impls:
                r = rows[name]
                r.setdefault("append", []).append(append_cost(cls, suffix, args.appends, work))
                for size in args.sizes:
                    path = work / f"reopen-{size}-{name.replace(' ', '_')}{suffix}"
                    if rep == 0:
                        fill(path, size)
                    r.setdefault(f"reopen {size}", []).append(reopen_cost(cls, path))
                wall, a, b = two_writers(load, cls, suffix, args.concurrent, work)
                r.setdefault("2 writers", []).append(wall)
                r.setdefault("split", []).append(f"{a}/{b}")
                print(f"  repeat {rep + 1}/{args.repeats} {name}: append {r['append'][-1]:.2f} ms, "
                      + ", ".join(f"reopen {s} {r[f'reopen {s}'][-1]:.1f} ms" for s in args.sizes)
                      + f", 2 writers {wall:.0f} ms ({a}/{b})", file=sys.stderr, flush=True)

    def cell(xs, digits):  # median (min-max)
        return f"{med(xs):.{digits}f} ({min(xs):.{digits}f}-{max(xs):.{digits}f})"

    sizes = " | ".join(f"reopen {s:,} (ms)" for s in args.sizes)
    print(f"\n| store | append (ms/record) | {sizes} | 2 writers x {args.concurrent} keys (ms) "
          "| keys written by each writer, per repeat |")
    print("|---|---:|" + "---:|" * len(args.sizes) + "---:|---|")
    for name, r in rows.items():
        reopen = " | ".join(cell(r[f"reopen {s}"], 1) for s in args.sizes)
        print(f"| {name} | {cell(r['append'], 2)} | {reopen} | {cell(r['2 writers'], 0)} "
              f"| {', '.join(r['split'])} |")
    print(f"\nmedian (min-max) of {args.repeats} repeats; {args.appends} appends; python "
          f"{sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
