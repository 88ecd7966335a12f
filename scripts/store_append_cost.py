"""Cost of one locked, deduplicated, fsynced CoalitionStore append, and of a reopen.

    python scripts/store_append_cost.py [N]

Each append takes the store's flock, reads what other writers appended, writes one
line and fsyncs it; the fsync dominates, so this is mostly the disk's sync latency.
"""

import os
import sys
import tempfile
import time

from surrogateshap.store import CoalitionStore

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "store.jsonl")
    store = CoalitionStore(path, {"game": "cost"})
    t0 = time.perf_counter()
    for i in range(n):
        store.append(format(i, "020b"), {"utility": float(i), "seconds": 0.1, "cost": 1.0})
    append = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    CoalitionStore(path, {"game": "cost"})
    reopen = time.perf_counter() - t0
print(f"{n} appends: {1e3 * append:.2f} ms each; reopen of {n} records: {1e3 * reopen:.1f} ms")
