"""Train and save the fashion-animal20 feature network; report its held-out accuracy.

    python scripts/fashion_animal20_featurenet.py [--out surrogateshap/data/fashion_animal20_featurenet.pt]

Trained on the task's 6,000 images (first 300 per class); held out: the Fashion-MNIST
test images and the Animal-MNIST images past the first 300 of each class.
"""

import argparse

import numpy as np
import torch

from surrogateshap.tasks.data.images import fashion_animal20_dataset, load_animal_mnist, load_fashion_mnist, resize
from surrogateshap.tasks.catalog.fashion_animal20 import FEATURE_NET_PATH, FashionAnimal20Config
from surrogateshap.tasks.features.nets import train_feature_net


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(FEATURE_NET_PATH))
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = FashionAnimal20Config()
    ds = fashion_animal20_dataset(cfg.per_class, cfg.size)
    x = torch.as_tensor(ds.images).reshape(len(ds.images), -1)
    net = train_feature_net(x, torch.as_tensor(ds.labels), n_classes=20)
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
    torch.save(net.state_dict(), a.out)
    print("saved", a.out)


if __name__ == "__main__":
    main()
