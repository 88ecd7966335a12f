"""Held-out accuracy of the fashion-animal20 feature network (the task's recipe: trained
on the task's 6,000 images, first 300 per class); held out: the Fashion-MNIST test images
and the Animal-MNIST images past the first 300 of each class.

    python scripts/fashion_animal20_featurenet.py

``surrogateshap scoring-nets --task fashion-animal20`` trains the same network and
compares it with the shipped weights (``--write`` ships it).
"""

import argparse

import numpy as np
import torch

from surrogateshap.tasks import get_task
from surrogateshap.tasks.data.images import load_animal_mnist, load_fashion_mnist, resize


def main():
    argparse.ArgumentParser(description=__doc__).parse_args()
    task = get_task("fashion-animal20")
    cfg, ds = task.config, task.dataset
    x = torch.as_tensor(ds.images).reshape(len(ds.images), -1)
    net = task.scoring_recipes()["features"].train()
    fx, fy = load_fashion_mnist("test")
    ax, ay = load_animal_mnist()
    keep = np.concatenate([np.flatnonzero(ay == c)[cfg.per_class:] for c in range(10)])
    hx = torch.as_tensor(resize(np.concatenate([fx, ax[keep]])[:, None], cfg.size)).reshape(-1, cfg.size**2)
    hy = np.concatenate([fy, ay[keep] + 10])
    with torch.no_grad():
        pred = net.classify(hx).argmax(1).numpy()
        train_acc = (net.classify(x).argmax(1).numpy() == ds.labels).mean()
    acc = (pred == hy).mean()
    per = [(pred[hy == c] == c).mean() for c in range(20)]
    print(f"train accuracy {train_acc:.3f}; held-out accuracy {acc:.3f} on {len(hy)} images "
          f"(fashion {np.mean(per[:10]):.3f}, animal {np.mean(per[10:]):.3f}); "
          f"lowest class {ds.players[int(np.argmin(per))]} {min(per):.3f}")


if __name__ == "__main__":
    main()
