"""Cost of one fashion-animal20 retraining per model family (one torch thread).

    python scripts/fashion_animal20_timing.py [--steps 100] [--families mlp unet]

Trains K coalition models for a few steps (K = 16 together for the MLP family, as the
table build does; 1 for the UNet), samples n_samples images from each and computes
their statistics; prints ms per training step per model, so a retraining costs
steps x that + sampling + statistics.
"""

import argparse
import time

import numpy as np
import torch

from surrogateshap.metrics import sample_test_coalitions
from surrogateshap.tasks.catalog.fashion_animal20 import FashionAnimal20Task


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--families", nargs="+", default=["mlp", "unet"])
    a = ap.parse_args()
    torch.set_num_threads(1)
    masks = sample_test_coalitions(20, 0.5, 16, seed=0)
    for fam, kw, K in [("mlp", {}, 16), ("unet", dict(batch_size=64, lr=1e-3), 1)]:
        if fam not in a.families:
            continue
        t = FashionAnimal20Task(scale="default", cache_dir="/tmp/fa_timing", family=fam,
                                steps=a.steps if fam == "mlp" else max(5, a.steps // 10), **kw)
        t.training_data
        t0 = time.perf_counter()
        model = t.train(masks[:K], 0)
        dt = time.perf_counter() - t0
        labels = np.stack([t.coalition_units(m) for m in masks[:K]])
        t0 = time.perf_counter()
        imgs = t.sample(model, labels, seed=list(range(K)))
        ds = time.perf_counter() - t0
        t0 = time.perf_counter()
        [t.stats_of(imgs[k]) for k in range(K)]
        dst = time.perf_counter() - t0
        print(f"{fam} (K={K}): train {dt / K / t.config.steps * 1000:.1f} ms/step/model; "
              f"sampling {t.config.n_samples} images {ds / K:.1f} s/model; statistics {dst / K:.2f} s/model; "
              f"one retraining at {FashionAnimal20Task.config_cls().steps} steps ~ "
              f"{dt / K / t.config.steps * FashionAnimal20Task.config_cls().steps + (ds + dst) / K:.0f} s",
              flush=True)


if __name__ == "__main__":
    main()
