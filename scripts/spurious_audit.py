"""The clinical audit on ``spurious-sites``: does each estimator find the planted sites?

    python scripts/spurious_audit.py [--budget 512] [--seeds 0 1 2] [--removal] [--loo]

Per estimator, precision@k (k = the number of planted sites) of its values against
``task.planted_sites``, on the utility ``marker_correlation``:
- on the proxy game (no retraining) at ``--budget`` evaluations: SurrogateSHAP,
  permutation, KernelSHAP, Leverage SHAP, and the proxy's exact Shapley values
  (all 2^n coalitions) as the proxy's own ceiling;
- the model-based baselines on the full model (TRAK family, influence, gradient and
  pixel / feature similarity): one ranking each, no game;
- with ``--loo``, leave-one-out on the retraining game (n + 1 retrainings, seed 0).

With ``--removal``, the audit's counterfactual: the utility of the model retrained
without each estimator's top-k sites (seed 0), beside the full model retrained and
``--n-random`` random k-site removals. Every retraining goes through the task's cache,
so an interrupted run resumes. Writes ``--out``.md and .csv.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from surrogateshap.benchmark.scales import MODEL_BASELINES as MODEL
from surrogateshap import get_estimator
from surrogateshap.exact import exact_shapley
from surrogateshap.metrics import precision_at_k
from surrogateshap.tasks import get_task

UTILITY = "marker_correlation"
PROXY = (("SurrogateSHAP", "surrogateshap"), ("permutation", "permutation"),
         ("KernelSHAP", "kernelshap"), ("Leverage SHAP", "leverageshap"))


def top_k(values, k: int) -> np.ndarray:
    """Indices of the k largest values, ties broken by player order (as topk_removal)."""
    return np.argsort(-np.asarray(values, float), kind="stable")[:k]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=int, default=512)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--no-model-baselines", action="store_true")
    p.add_argument("--loo", action="store_true", help="also LOO on the retraining game (n + 1 retrainings)")
    p.add_argument("--removal", action="store_true", help="retrain without each estimator's top-k sites")
    p.add_argument("--n-random", type=int, default=5)
    p.add_argument("--scale", default="default", help="task preset (ci: a smoke test)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results/spurious_sites_audit")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    task = get_task("spurious-sites", scale=a.scale)
    planted = np.asarray(task.planted_sites)
    k, n = len(planted), task.n_players
    proxy = task.proxy_game(UTILITY)
    rows, rankings = [], {}

    def record(label, game_name, att, seed, seconds):
        values = np.asarray(att.values, float)
        rows.append({"estimator": label, "game": game_name, "seed": seed, "budget": att.n_evaluations,
                     "cost": att.cost, "cost_unit": att.cost_unit, "seconds": round(seconds, 1),
                     f"precision@{k}": precision_at_k(values, planted, k),
                     "top": " ".join(map(str, top_k(values, k)))})
        rankings.setdefault(label, values)  # the first seed's ranking drives removal
        print(rows[-1], flush=True)

    t0 = time.perf_counter()
    phi = exact_shapley(proxy)
    rows.append({"estimator": "exact Shapley (proxy game)", "game": "proxy", "seed": 0, "budget": 2 ** n,
                 "cost": 0, "cost_unit": "images generated", "seconds": round(time.perf_counter() - t0, 1),
                 f"precision@{k}": precision_at_k(phi, planted, k), "top": " ".join(map(str, top_k(phi, k)))})
    rankings["exact Shapley (proxy game)"] = phi
    print(rows[-1], flush=True)
    for label, name in PROXY:
        for s in a.seeds:
            est = get_estimator(name)
            t0 = time.perf_counter()
            att = est.estimate(proxy, a.budget, seed=s)
            record(label, "proxy", att, s, time.perf_counter() - t0)
    if not a.no_model_baselines:
        access = task.model_access()
        for spec in MODEL:
            t0 = time.perf_counter()
            att = get_estimator(spec).estimate(task.players, 0, seed=0, model=access)
            record(spec, "model", att, 0, time.perf_counter() - t0)
    if a.loo:
        t0 = time.perf_counter()
        att = get_estimator("loo").estimate(task.retraining_game(UTILITY, seed=0), n + 1, seed=0)
        record("LOO", "retraining", att, 0, time.perf_counter() - t0)

    table = pd.DataFrame(rows)
    removal = None
    if a.removal:
        rng = np.random.default_rng(0)
        sets = {label: tuple(sorted(top_k(v, k))) for label, v in rankings.items()}
        randoms = [tuple(sorted(rng.choice(n, k, replace=False))) for _ in range(a.n_random)]
        wanted = list(dict.fromkeys([()] + list(sets.values()) + randoms))
        masks = np.ones((len(wanted), n), bool)
        for i, removed in enumerate(wanted):
            masks[i, list(removed)] = False
        util = dict(zip(wanted, task.retraining_game(UTILITY, seed=0)(masks)))
        full = util[()]
        removal = pd.DataFrame(
            [{"estimator": label, "removed": " ".join(map(str, r)), "planted removed": len(set(r) & set(planted)),
              "utility": util[r], "delta": util[r] - full} for label, r in sets.items()]
            + [{"estimator": f"random {i}", "removed": " ".join(map(str, r)),
                "planted removed": len(set(r) & set(planted)), "utility": util[r], "delta": util[r] - full}
               for i, r in enumerate(randoms)])
        removal.to_csv(f"{a.out}_removal.csv", index=False)
        print(removal.to_string(), flush=True)

    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(f"{a.out}.csv", index=False)
    summary = table.groupby(["estimator", "game"], sort=False).agg(
        **{f"precision@{k}": (f"precision@{k}", "mean"), "seeds": ("seed", "count"),
           "budget": ("budget", "first"), "cost": ("cost", "first"), "unit": ("cost_unit", "first"),
           "top (first seed)": ("top", "first")}).reset_index()
    lines = ["# spurious-sites: which estimators find the planted sites", "",
             f"`python scripts/spurious_audit.py {' '.join(argv) if argv else ''}`".replace(" `", "`"), "",
             f"Planted sites: {' '.join(map(str, planted))} (k = {k}); utility `{UTILITY}`. "
             "precision@k is the mean over the estimator's seeds.", "",
             summary.to_markdown(index=False), ""]
    if removal is not None:
        lines += [f"## Retrained without the top {k} sites (seed 0; full model retrained: "
                  f"{full:.4f})", "", removal.round(4).to_markdown(index=False), ""]
    Path(f"{a.out}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}.md", flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
