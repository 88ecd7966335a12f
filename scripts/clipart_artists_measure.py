"""Measure clipart-artists at a preset: data-build times, one retraining's cost, the full
model's FID at several guidance weights, the reference FIDs, and the proxy.

    python scripts/clipart_artists_measure.py [--scale default] [--guidance 0 1 2 3] [--set size=16 ...]

Everything on one torch thread; times are process CPU seconds (on a shared machine the
wall time says more about the neighbours), wall seconds beside them. The full model is
the task's cached seed-0 model.
Reference points: FID of the noise prior (the empty coalition) and of one half of the
real images against the other half (FID's floor at this sample size). The style
diagnostic is the mean classifier probability of the artist a sample was conditioned
on, per label of the proxy's sample bank (not a game utility: see the dataset card).
"""

import argparse
import ast
import time

import numpy as np
import torch

from surrogateshap.tasks import get_task
from surrogateshap.tasks.features.statistics import utility_from_stats


def _posterior(logits):
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="default")
    ap.add_argument("--guidance", type=float, nargs="*", default=[0.0, 1.0, 2.0, 3.0])
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="config overrides (values read as Python literals)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    overrides = {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    task = get_task("clipart-artists", scale=a.scale, **overrides)
    print(f"config {task.config}")
    t0 = time.perf_counter()
    ds = task.dataset
    print(f"dataset {ds.images.shape} in {time.perf_counter() - t0:.1f} s (cache hits count as fast); "
          f"per artist {np.bincount(ds.labels).tolist()}")
    real = task.real_stats()
    half = np.random.default_rng(0).permutation(len(ds.images))[: len(ds.images) // 2]
    print(f"FID real half vs all {utility_from_stats('neg_fid', task.stats_of(ds.images[half]), real):.2f}; "
          f"noise prior: {task.score(task.empty_stats())}")
    path = task.cache_dir / task.config_id() / "full_model.pt"
    cached = path.exists()
    t0, c0 = time.perf_counter(), time.process_time()
    model = task.full_model
    print(f"full model ({task.config.steps} steps, {task.family.name}): " + (
        "cached" if cached else
        f"trained in {time.process_time() - c0:.1f} CPU s ({time.perf_counter() - t0:.1f} s wall)"))
    labels = task.coalition_units(np.ones(task.n_players, bool))[None]
    for w in a.guidance:
        c0 = time.process_time()
        imgs = task.sample(model, labels, seed=1000, guidance=w)[0]
        dt = time.process_time() - c0
        f, logits = task.features(imgs)
        p_cond = _posterior(logits)[np.arange(len(imgs)), labels[0]].mean()
        print(f"guidance {w:g}: {task.score(task.stats_of(imgs))}, mean p(conditioned artist) "
              f"{p_cond:.3f} (sampling {len(imgs)} in {dt:.1f} CPU s)")
    c0 = time.process_time()
    bank = task.bank_stats()
    print(f"bank {task.config.bank_per_label} per label in {time.process_time() - c0:.1f} CPU s")
    diag = np.array([b.pbar[k] for k, b in enumerate(bank)])
    acc = np.mean([b.pbar.argmax() == k for k, b in enumerate(bank)])
    print(f"labels whose bank's mean posterior peaks at the label: {acc:.2f}")
    print(f"style diagnostic (mean p(conditioned artist | sample)) at w = {task.config.guidance:g}: "
          f"mean {diag.mean():.3f}, min {diag.min():.3f}, max {diag.max():.3f}")
    g = task.proxy_game("neg_fid")
    print(f"proxy v(full) {g(np.ones((1, task.n_players), bool))[0]:.2f}")


if __name__ == "__main__":
    main()
