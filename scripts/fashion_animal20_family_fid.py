"""Full-model cost and FID of fashion-animal20's model families at candidate settings.

    python scripts/fashion_animal20_family_fid.py mlp steps=2000
    python scripts/fashion_animal20_family_fid.py unet steps=1000 batch_size=64 lr=1e-3 guidances=0,1

Trains the full-data model (seed 0; one torch thread), samples ``n_samples`` images at
each guidance weight and prints seconds and the task's utilities (FID = -neg_fid).
"""

import argparse
import time

import numpy as np
import torch

from surrogateshap.tasks.common import coalition_seed
from surrogateshap.tasks.catalog.fashion_animal20 import FashionAnimal20Task
from surrogateshap.tasks.models import FAMILIES


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("family", choices=FAMILIES.names(), help="model family")
    ap.add_argument("settings", nargs="*", metavar="KEY=VALUE",
                    help="config overrides; guidances=W,W (default 0,0.5,1,2) and channels=C,C take comma lists")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    fam, kw, guid = a.family, {}, [0.0, 0.5, 1.0, 2.0]
    config = FashionAnimal20Task.config_cls()
    for setting in a.settings:
        k, eq, v = setting.partition("=")
        if not eq or not (k in ("guidances", "channels") or hasattr(config, k)):
            ap.error(f"{setting!r}: not KEY=VALUE with KEY guidances, channels or a config field")
        if k == "guidances":
            guid = [float(g) for g in v.split(",")]
        elif k == "channels":
            kw[k] = tuple(map(int, v.split(",")))
        else:
            kw[k] = type(getattr(config, k))(v)
    t = FashionAnimal20Task(scale="default", family=fam, models_per_batch=1, cache_dir="/tmp/fa_fid", **kw)
    full = np.ones((1, t.n_players), bool)
    t0 = time.perf_counter()
    model = t.train(full, 0)
    train_s = time.perf_counter() - t0
    labels = t.coalition_units(full[0])[None]
    for w in guid:
        t0 = time.perf_counter()
        imgs = t.sample(model, labels, seed=[coalition_seed(1000, full[0])], guidance=w)
        s = time.perf_counter() - t0
        u = t.score(t.stats_of(imgs[0]))
        print(f"{fam} {kw} w={w}: train {train_s:.0f} s, sample {s:.1f} s, FID {-u['neg_fid']:.2f}, "
              f"IS {u['inception_score']:.2f}, coverage {u['coverage']:.3f}", flush=True)


if __name__ == "__main__":
    main()
