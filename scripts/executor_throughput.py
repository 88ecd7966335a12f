"""Throughput of the executors (coalitions per second) and their per-job overhead.

    python scripts/executor_throughput.py            # writes results/executor_throughput.md

Two workloads, each on serial, processes (2 workers) and Ray (local instance, 2 CPUs,
2 jobs in flight), one coalition per job:
- a cheap game (tests/fake_tasks.py: no training, 0 s and 50 ms of work per model);
- digits10 ``ci`` retraining (real tiny DDPMs), 4 coalitions, 1 CPU thread per job.

Per-job overhead = (wall time x jobs in flight - seconds spent inside the jobs) / jobs:
what the executor adds to each job (dispatch, pickling, result transfer, the driver's
append + fsync). Worker start-up (spawning processes, importing torch, rebuilding the
task) is paid per run and included in the wall time; Ray's own start-up is timed apart.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout, and the cheap fake task

from fake_tasks import FakeConfig, FakeTask  # noqa: E402

from surrogateshap.execution import get_executor  # noqa: E402
from surrogateshap.game import all_coalitions  # noqa: E402
from surrogateshap.tasks.games import RetrainingGame  # noqa: E402


def run(task, masks, seeds, executor):
    """Wall seconds to retrain ``masks`` for each seed, and seconds spent in jobs."""
    t0 = time.perf_counter()
    inside = 0.0
    for seed in seeds:
        recs = RetrainingGame(task, task.utilities[0], seed=seed, progress=False,
                              executor=executor).records(masks)
        inside += sum(r["seconds"] for r in recs)
    return time.perf_counter() - t0, inside


def measure(label, make_task, masks, seeds, executors, slots):
    """A cold run (workers start: fresh processes, imports, task rebuilt), then a warm
    one (the same executor again, a fresh cache: what every later game call pays)."""
    rows = []
    for name, ex in executors.items():
        for state in ("cold", "warm"):
            with tempfile.TemporaryDirectory() as cache:
                wall, inside = run(make_task(cache), masks, seeds, ex)
            n = int(sum(bool(m.any()) for m in masks)) * len(seeds)
            rows.append({"workload": label, "executor": name, "workers": state, "coalitions": n,
                         "wall s": wall, "coalitions / s": n / wall,
                         "overhead ms / job": 1000 * (wall * slots[name] - inside) / n})
            print(rows[-1], flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "results" / "executor_throughput.md"))
    p.add_argument("--cheap-seeds", type=int, default=8, help="15 coalitions per seed")
    args = p.parse_args(argv)

    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}"}})
    ray_start = time.perf_counter() - t0
    executors = {"serial": get_executor("serial"), "processes": get_executor("processes", workers=2),
                 "ray": get_executor("ray", workers=2)}
    slots = {"serial": 1, "processes": 2, "ray": 2}
    rows = []
    masks4 = all_coalitions(4)
    for sleep in (0.0, 0.05):
        rows += measure(f"cheap game, {1000 * sleep:.0f} ms/model", lambda c, s=sleep: FakeTask(
            FakeConfig(models_per_batch=1, sleep=s), cache_dir=c), masks4, range(args.cheap_seeds),
            executors, slots)

    import torch

    from surrogateshap.tasks.catalog.digits10 import Digits10Config, Digits10Task

    torch.set_num_threads(1)  # as each worker (cpus_per_job = 1)
    rng = np.random.default_rng(0)
    masks = rng.random((4, 10)) < 0.5
    masks[:, 0] = True
    rows += measure("digits10 ci retraining", lambda c: Digits10Task(
        Digits10Config.preset("ci", models_per_batch=1), cache_dir=c), masks, [0], executors, slots)
    ray.shutdown()
    executors["processes"].close()

    frame = pd.DataFrame(rows)
    text = (
        "# Executor throughput (scripts/executor_throughput.py)\n\n"
        f"Machine: {os.cpu_count()} CPU cores **shared with other jobs** (numbers are noisy and "
        "pessimistic for the parallel executors); torch CPU, 1 thread per job. processes and Ray run "
        "2 jobs at a time, one coalition per job; serial runs in the driver. Worker start-up is "
        f"inside the wall time; Ray's own start-up (`ray.init`, local instance) took {ray_start:.1f} s "
        "and is not. *cold*: the executor's first run (its workers start: spawn, import torch, rebuild "
        "the task); *warm*: a second run on the same executor (new cache), what later calls pay.\n\n"
        "Per-job overhead = (wall x jobs in flight - seconds inside the jobs) / jobs.\n\n"
        + frame.to_markdown(index=False, floatfmt=".3g") + "\n"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
