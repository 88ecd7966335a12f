"""Train and save the clipart-artists feature network; report its held-out artist accuracy.

    python scripts/clipart_artists_featurenet.py

Held-out accuracy of the recipe: trained on 80% of each artist's task images, tested on
the other 20% (split by a seeded permutation); also on the kept images past the
per-artist cap (the prolific artists' images no retraining sees). The shipped network
is then trained on all the task's images, as fashion-animal20's is.
"""

import argparse
import time

import numpy as np
import torch

from surrogateshap.tasks.catalog.clipart_artists import ClipartArtistsConfig
from surrogateshap.tasks.data.clipart_artists import CLIPART_ARTISTS, clipart_artists_dataset, select_clipart, select_players
from surrogateshap.tasks.common import default_cache_dir
from surrogateshap.tasks.features.nets import train_feature_net


def accuracy(net, x, y):
    with torch.no_grad():
        pred = net.classify(torch.as_tensor(x).reshape(len(x), -1)).argmax(1).numpy()
    return float((pred == y).mean()), pred


def main():
    argparse.ArgumentParser(description=__doc__).parse_args()
    torch.set_num_threads(1)
    cfg = ClipartArtistsConfig()
    cache = default_cache_dir()
    ds = clipart_artists_dataset(cfg.per_artist, cfg.size, cfg.min_ink, cache_dir=cache)
    n = len(CLIPART_ARTISTS)
    rng = np.random.default_rng(0)
    test = np.zeros(len(ds.labels), bool)
    for k in range(n):
        idx = np.flatnonzero(ds.labels == k)
        test[rng.permutation(idx)[: max(1, round(0.2 * len(idx)))]] = True
    x = torch.as_tensor(ds.images).reshape(len(ds.images), -1)
    y = torch.as_tensor(ds.labels)
    t0 = time.perf_counter()
    net = train_feature_net(x[~test], y[~test], n_classes=n)
    t_split = time.perf_counter() - t0
    acc, pred = accuracy(net, ds.images[test], ds.labels[test])
    per = [float((pred[ds.labels[test] == k] == k).mean()) for k in range(n)]
    print(f"80/20 split: train accuracy {accuracy(net, ds.images[~test], ds.labels[~test])[0]:.3f}, "
          f"held-out accuracy {acc:.3f} on {int(test.sum())} images (chance {1 / n:.3f}); "
          f"per-artist median {np.median(per):.3f}, lowest {CLIPART_ARTISTS[int(np.argmin(per))]} "
          f"{min(per):.3f}; training {t_split:.1f} s")

    # the shipped network: the task's recipe (all task images; `surrogateshap scoring-nets
    # --task clipart-artists` trains the same and compares it with the shipped weights)
    t0 = time.perf_counter()
    from surrogateshap.tasks import get_task

    net = get_task("clipart-artists").scoring_recipes()["features"].train()
    t_all = time.perf_counter() - t0
    # kept images past the cap (never in the task's data)
    sel = select_clipart(cfg.size, cfg.min_ink, cache_dir=cache)
    used = set(select_players(sel, CLIPART_ARTISTS, cfg.per_artist)[0].tolist())
    extra = [(i, CLIPART_ARTISTS.index(art)) for i, art in enumerate(sel.artists)
             if art in CLIPART_ARTISTS and i not in used]
    if extra:
        ex = sel.images[[i for i, _ in extra]].astype(np.float32) / 127.5 - 1
        ey = np.array([k for _, k in extra])
        acc_ex, _ = accuracy(net, ex, ey)
        print(f"shipped net (all {len(ds.labels)} images, {t_all:.1f} s): accuracy {acc_ex:.3f} on the "
              f"{len(ey)} kept images past the cap of {len(set(ey.tolist()))} artists")


if __name__ == "__main__":
    main()
