"""Enumerate a task's proxy game on every coalition and ship its exact Shapley values.

    python scripts/proxy_exact_build.py                       # datasets/fashion-animal20/proxy_exact_shapley.csv
    python scripts/proxy_exact_build.py --time 4096           # ms per coalition first; writes nothing

All 2^n coalitions of SurrogateSHAP's proxy game (the full model's bank mixed with pi_S;
the full model and bank are trained on first use), every utility, in chunks written
atomically under $SURROGATESHAP_CACHE: an interrupted run resumes where it stopped. Writes
the exact Shapley values and each table's SHA-256 to the reference file the benchmark task
``<task>-proxy`` scores against (the 2^n table itself stays in the cache).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="fashion-animal20")
    p.add_argument("--scale", default="default", help="the task's preset (default: %(default)s)")
    p.add_argument("--chunk", type=int, default=None, help="coalitions per chunk (default: 2^15)")
    p.add_argument("--out", default=None, help="reference file (default: datasets/<task>/proxy_exact_shapley.csv)")
    p.add_argument("--time", type=int, default=0, metavar="M",
                   help="only time the first M coalitions of each utility's proxy game and stop")
    args = p.parse_args(argv)

    from surrogateshap.benchmark.proxy_exact import (
        PROXY_EXACT_CSV,
        build_proxy_reference,
    )
    from surrogateshap.enumeration import DEFAULT_CHUNK, coalition_masks
    from surrogateshap.tasks import available_tasks, get_task
    from surrogateshap.tasks.reference import reference_dir

    if args.task not in available_tasks():
        p.error(f"--task: unknown task {args.task!r}; known: {', '.join(available_tasks())}")
    chunk = DEFAULT_CHUNK if args.chunk is None else args.chunk
    if chunk < 1 or args.time < 0:
        p.error("--chunk must be positive and --time non-negative")
    task = get_task(args.task, scale=args.scale)
    if args.time:  # on one thread, as the build runs (enumerate_proxy)
        from threadpoolctl import threadpool_limits

        from surrogateshap.tasks.features.nets import torch_threads

        masks = coalition_masks(0, min(args.time, 2**task.n_players), task.n_players)
        with torch_threads(1), threadpool_limits(1, user_api="blas"):
            t0 = time.perf_counter()
            task.bank()
            print(f"{task.config_id()}: full model and bank ready in {time.perf_counter() - t0:.0f} s "
                  f"(full model trained now: {task.full_model_trained})")
            for u in task.utilities:
                game = task.proxy_game(u)
                game(masks[:2])  # the game's one-off preparation
                t = time.perf_counter()
                game(masks)
                ms = (time.perf_counter() - t) / len(masks) * 1e3
                print(f"{u}: {ms:.4f} ms per coalition over {len(masks)}: 2^{task.n_players} would take "
                      f"{ms * 2**task.n_players / 1e3:.0f} s")
        return
    out = Path(args.out) if args.out else reference_dir(args.task) / PROXY_EXACT_CSV
    command = "python scripts/proxy_exact_build.py " + " ".join(argv if argv is not None else sys.argv[1:])
    ref = build_proxy_reference(task, out, chunk, made_by=f"`{command.strip()}`")
    for u in ref.utilities:
        print(f"{u}: sha256 {ref.sha256[u]}, {ref.seconds[u]:.0f} s")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
