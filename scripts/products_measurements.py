"""The dataset cards' numbers for fashion-brands and spurious-sites (default presets,
one torch thread).

    python scripts/products_measurements.py brands    # ~3 CPU minutes
    python scripts/products_measurements.py spurious  # ~5 CPU minutes

brands: real / noise-prior utilities, the wall time of one retraining (the 12
even-numbered brands), the proxy on that coalition and the full one. spurious: the
detector's and classifier's accuracies, each unit's marker rate in the proxy's bank,
exact Shapley values of the proxy game (all 4,096 coalitions) and their precision@3
against the planted sites, one retraining's wall time. Prints one JSON object.
"""

import argparse
import json
import time

import numpy as np
import torch

from surrogateshap.exact import exact_shapley
from surrogateshap.metrics import precision_at_k
from surrogateshap.tasks import get_task
from surrogateshap.tasks.data.images import load_fashion_mnist, resize


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def brands(cache):
    t = get_task("fashion-brands", cache_dir=cache)
    out = dict(items=len(t.dataset.labels), units=t.n_units, brands=t.n_players,
               real=t.score(t.real_stats()), empty=t.score(t.empty_stats()))
    mask = np.zeros(t.n_players, bool)
    mask[::2] = True
    st, out["retrain_seconds"] = _timed(lambda: t.retrain_stats(mask[None], 0)[0])
    out["retrain_even"] = t.score(st)
    _, out["full_model_seconds"] = _timed(lambda: t.full_model)
    _, out["bank_seconds"] = _timed(t.bank_stats)
    for name, m in (("proxy_even", mask), ("proxy_full", np.ones(t.n_players, bool))):
        out[name] = {u: float(t.proxy_game(u)(m[None])[0]) for u in t.utilities}
    return out


def spurious(cache):
    from surrogateshap.tasks.data.spurious_sites import stamp_marker

    t = get_task("spurious-sites", cache_dir=cache)
    ds, clean = t.dataset, t._built[1]
    tx, ty = load_fashion_mnist("test")
    tx = resize(tx[:2000, None], t.config.size)
    out = dict(items=len(ds.labels), units=t.n_units, stamped=int(t.stamped.sum()),
               planted=t.planted_sites.tolist(),
               detector_train_acc=float(((t.marker_detector.predict(ds.images) == 1) == t.stamped).mean()),
               detector_test_false_pos=float((t.marker_detector.predict(tx) == 1).mean()),
               detector_test_stamped_found=float((t.marker_detector.predict(stamp_marker(tx)) == 1).mean()),
               class_train_acc=float((t.class_classifier.predict(clean) == ds.classes).mean()),
               class_test_acc=float((t.class_classifier.predict(tx) == ty[:2000]).mean()),
               real=t.score(t.real_stats()), empty=t.score(t.empty_stats()))
    _, out["full_model_seconds"] = _timed(lambda: t.full_model)
    banks, out["bank_seconds"] = _timed(t.bank_stats)
    out["bank_marker_rate"] = {u: round(b.scores["marker"], 3) for u, b in zip(t.units, banks)
                               if b.scores["marker"] > 0.02}
    phi = exact_shapley(t.proxy_game("marker_correlation"))
    out["proxy_shapley"] = np.round(phi, 4).tolist()
    out["precision_at_3"] = precision_at_k(phi, t.planted_sites, 3)
    mask = np.zeros(t.n_players, bool)
    mask[[0, 1, 3]] = True
    st, out["retrain_seconds"] = _timed(lambda: t.retrain_stats(mask[None], 0)[0])
    out["retrain_013"] = t.score(st)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", choices=["brands", "spurious"])
    ap.add_argument("--cache", default=None, help="task cache (default $SURROGATESHAP_CACHE)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(json.dumps({"brands": brands, "spurious": spurious}[a.which](a.cache), indent=1))


if __name__ == "__main__":
    main()
