"""LDS, top-k removal and proxy fidelity on a task whose reference table holds sampled
coalitions (the paper's protocol for tasks too large to enumerate).

    SURROGATESHAP_CACHE=<cache> python scripts/sampled_task_report.py --task fashion-animal20 \
        [--budget 21] [--proxy-budget 512] [--seeds 0 1 2] [--model-baselines]

What it runs, per utility of the task:
- SurrogateSHAP on the proxy game (0 retrainings; ``--proxy-budget`` proxy evaluations);
- ``proxy-cv``, permutation, KernelSHAP, Leverage SHAP and LOO on the retraining game at
  equal retrainings (``--budget``, default n + 1: what LOO costs). The retraining game
  of a sampled table is one retraining seed per coalition (what an estimator pays in
  practice); a coalition the table lacks is retrained through the task's cache;
- with ``--model-baselines``, the model-based estimators (TRAK family, influence,
  gradient and pixel / feature similarity) on the full model, and sparsified
  fine-tuning Shapley (KernelSHAP on the fine-tuning game, ``--finetune-budget``), LDS
  only (the model-based rankings do not depend on the utility).

On a task with known true sources (``task.planted_sites``, e.g. ``spurious-sites``), also
every estimator's precision@k at finding them (k = the number of planted players), per
estimator seed.

Figures: LDS at each alpha on the table's retrained test coalitions, one value per
(estimator seed, retraining seed), reported as mean with a 95% interval 1.96 sd / sqrt(k)
over those k values; top-k / bottom-k removal against random removal (``--n-random``
sets, shared by every estimator) for the ``--removal-seed`` ranking, on the seed-mean
retraining game (coalitions it lacks are retrained, every seed of the table); the proxy
game's Spearman with the retrained utilities over the table's coalitions, and the
seed-vs-seed Spearman as its noise ceiling. Markdown and CSVs go to ``--out``.
Interrupted runs resume: every retraining is in the task's cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from baselines import MODEL_BASELINES as MODEL
from surrogateshap import get_estimator
from surrogateshap.benchmark import get_benchmark_task
from surrogateshap.metrics import lds_summary, precision_at_k, removal_masks, topk_removal

RETRAINING = (("proxy-cv", "proxy-cv"), ("permutation", "permutation"),
              ("KernelSHAP", "kernelshap"), ("Leverage SHAP", "leverageshap"), ("LOO", "loo"))


def lds_rows(label, values, truth, est_seed, extra):
    out = []
    for alpha, (masks, utils) in truth.lds_sets.items():
        for r, u in enumerate(utils):
            lds = lds_summary(values, masks, u[None, :])["mean"]
            out.append({"estimator": label, "est_seed": est_seed, "retrain_seed": r,
                        "alpha": alpha, "lds": lds, **extra})
    return out


def precision_rows(label, values, utility, est_seed, planted):
    """precision@k (k = number of planted players) and the top k, or nothing without planted."""
    if planted is None:
        return []
    k = len(planted)
    top = np.argsort(-np.asarray(values, float), kind="stable")[:k]
    return [{"utility": utility, "estimator": label, "est_seed": est_seed,
             f"precision@{k}": precision_at_k(values, planted, k), "top": " ".join(map(str, top))}]


def summarise(lds: pd.DataFrame) -> pd.DataFrame:
    """Mean LDS and 1.96 sd / sqrt(k) over the (estimator seed, retraining seed) pairs."""
    g = lds.groupby(["utility", "estimator", "alpha"], sort=False)["lds"]
    s = g.agg(["mean", "std", "count"]).reset_index()
    s["ci95"] = 1.96 * s["std"].fillna(0.0) / np.sqrt(s["count"])
    return s


def fidelity(bt, utility) -> dict:
    """Spearman of the proxy game with the retrained utilities over the table's
    coalitions held by every seed (1..n-1 players), and of seed 0 with seed 1."""
    table = bt.table
    masks = table.coalitions()
    masks = masks[(masks.sum(1) > 0) & (masks.sum(1) < table.n_players)]
    proxy = bt.proxy(utility)(masks)
    seeds = table.mean_seeds
    per_seed = [table.values(masks, utility, s) for s in seeds]
    return {"utility": utility, "coalitions": len(masks),
            "proxy_vs_mean": spearmanr(proxy, table.values(masks, utility)).statistic,
            **{f"proxy_vs_seed{s}": spearmanr(proxy, v).statistic for s, v in zip(seeds, per_seed)},
            "seed_vs_seed": spearmanr(per_seed[0], per_seed[1]).statistic if len(seeds) > 1 else np.nan}


def prefetch_removal(bt, rankings, fractions, n_random, seeds=None):
    """Retrain, once and in batches, every removal coalition the table lacks."""
    masks = np.concatenate([removal_masks(v, fractions, n_random, seed=0)[0] for v in rankings])
    masks = np.unique(masks, axis=0)
    lacking = masks[~bt.table.held(masks)]
    print(f"removal: {len(masks)} coalitions, {len(lacking)} not in the table", flush=True)
    if len(lacking):
        u0 = bt.utilities[0]
        for s in seeds or bt.table.mean_seeds:
            bt.task.retraining_game(u0, seed=s).records(lacking)
    return lacking


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="fashion-animal20")
    p.add_argument("--budget", type=int, default=None,
                   help="retrainings per estimator (default 2n, the least proxy-cv runs with; LOO takes n + 1)")
    p.add_argument("--proxy-budget", type=int, default=512)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of SurrogateSHAP")
    p.add_argument("--retrain-seeds", type=int, nargs="+", default=[0],
                   help="seeds of the estimators that play the retraining game (each seed retrains)")
    p.add_argument("--retraining", nargs="*", default=[name for _, name in RETRAINING],
                   choices=[name for _, name in RETRAINING],
                   help="the retraining-game estimators to run (default all; each retrains its budget)")
    p.add_argument("--removal-utilities", nargs="+", default=None,
                   help="utilities that get the removal check (default all)")
    p.add_argument("--removal-seed", type=int, default=0)
    p.add_argument("--n-random", type=int, default=5)
    p.add_argument("--no-removal", action="store_true")
    p.add_argument("--removal-game-seeds", type=int, nargs="+", default=None,
                   help="retraining seeds the removal game averages (default every seed of the "
                        "table, the ground truth's seed mean)")
    p.add_argument("--removal-train-seeds", type=int, nargs="+", default=None,
                   help="retraining seeds to train the removal sets for first (default every "
                        "seed of the table; a second process can take another seed)")
    p.add_argument("--model-baselines", action="store_true")
    p.add_argument("--reuse-model-baselines", action="store_true",
                   help="with --model-baselines: take the TRAK-family / similarity values from the "
                        "earlier run's <out>_model_values.json instead of recomputing them (they use "
                        "no retraining; their LDS is scored again on the table as it is now)")
    p.add_argument("--finetune-budget", type=int, default=128,
                   help="with --model-baselines: KernelSHAP coalitions on the fine-tuning game "
                        "(sparsified fine-tuning Shapley; 0 = off)")
    p.add_argument("--finetune-steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="output stem (default results/<task>_report)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    bt = get_benchmark_task(args.task, "default")
    reason = bt.unavailable()
    if reason:
        raise SystemExit(reason)
    n = bt.n_players
    budget = args.budget or 2 * n
    out = Path(args.out or f"results/{args.task.replace('-', '_')}_report")
    out.parent.mkdir(parents=True, exist_ok=True)
    lds, removal, fid, cost, precision = [], [], [], [], []
    planted = getattr(bt.task, "planted_sites", None)
    values_file = Path(f"{out}_model_values.json")  # the model baselines' values and cost rows
    if args.model_baselines and args.reuse_model_baselines and not values_file.exists():
        raise SystemExit(f"--reuse-model-baselines: {values_file} not found (run once without it)")
    rankings: dict[tuple[str, str], np.ndarray] = {}

    def run(label, name, game, b, seed, u, truth, **params):
        est = get_estimator(name, **params)
        res = bt.resources(u, est.requires)
        t0 = time.perf_counter()
        att = est.estimate(game, b, seed=seed, **res)
        row = {"utility": u, "estimator": label, "budget": b, "est_seed": seed,
               "evaluations": att.n_evaluations, "cost": att.cost, "cost_unit": att.cost_unit,
               "seconds": time.perf_counter() - t0}
        cost.append(row)
        lds.extend(dict(r, utility=u) for r in lds_rows(label, att.values, truth, seed, {}))
        precision.extend(precision_rows(label, att.values, u, seed, planted))
        if seed == args.removal_seed:
            rankings[(u, label)] = np.asarray(att.values, float)
        print(f"{u} {label} seed {seed}: {att.n_evaluations} evaluations, cost {att.cost:g} "
              f"{att.cost_unit}", flush=True)
        return att

    for u in bt.utilities:
        truth = dataclasses.replace(bt.truth(u), removal_game=None)
        fid.append(fidelity(bt, u))
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in fid[-1].items()}),
              flush=True)
        for s in args.seeds:
            run("SurrogateSHAP (proxy)", "surrogateshap", bt.game(u, "proxy"), args.proxy_budget, s, u, truth)
        rgame = bt.game(u, "retraining")
        for label, name in RETRAINING:
            if name not in args.retraining:
                continue
            for s in (args.retrain_seeds if name != "loo" else args.retrain_seeds[:1]):
                run(label, name, rgame, budget, s, u, truth)
    pd.DataFrame(lds).to_csv(f"{out}_lds.csv", index=False)
    pd.DataFrame(cost).to_csv(f"{out}_cost.csv", index=False)
    pd.DataFrame(fid).to_csv(f"{out}_fidelity.csv", index=False)

    # the removal check first (it retrains): the model-based baselines below are LDS only
    if not args.no_removal:
        fractions = bt.truth(bt.utilities[0]).fractions
        keep = set(args.removal_utilities or bt.utilities)
        model = {m[0] for m in MODEL} | {"sparsified FT Shapley (KernelSHAP, FT game)"}
        game_rankings = {k: v for k, v in rankings.items() if k[0] in keep and k[1] not in model}
        prefetch_removal(bt, list(game_rankings.values()), fractions, args.n_random,
                         args.removal_train_seeds)
        for (u, label), values in game_rankings.items():
            game = bt.truth(u).removal_game
            if args.removal_game_seeds:
                seeds = args.removal_game_seeds
                game = bt.table.game(u, seed=seeds[0], fallback=bt._retrain(u, seeds)) if len(seeds) == 1 \
                    else bt._retrain(u, seeds)
            df = topk_removal(values, game, fractions, n_random=args.n_random, seed=0)
            removal.extend({"utility": u, "estimator": label, **r} for r in df.to_dict("records"))
        pd.DataFrame(removal).to_csv(f"{out}_removal.csv", index=False)

    if args.model_baselines:
        if args.reuse_model_baselines:  # values only: LDS is scored on the table as it is now
            saved = json.loads(values_file.read_text())
        else:
            saved, u0 = {}, bt.utilities[0]
            for label, name, params in MODEL:
                att = run(label, name, bt.game(u0, "proxy"), 0, args.seeds[0], u0, bt.truth(u0), **params)
                lds[:] = [r for r in lds if r["estimator"] != label]  # scored for every utility below
                precision[:] = [r for r in precision if r["estimator"] != label]
                row = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in cost.pop().items()}
                saved[label] = {"values": np.asarray(att.values, float).tolist(), "cost": row}
            values_file.write_text(json.dumps(saved, indent=1) + "\n")
        for label, rec in saved.items():
            for u in bt.utilities:
                cost.append(dict(rec["cost"], utility=u))
                lds.extend(dict(r, utility=u) for r in lds_rows(label, np.asarray(rec["values"]), bt.truth(u),
                                                                 rec["cost"]["est_seed"], {}))
                precision.extend(precision_rows(label, rec["values"], u, rec["cost"]["est_seed"], planted))
    if args.model_baselines and args.finetune_budget:
        from surrogateshap.tasks.games import FineTuningGame

        label = "sparsified FT Shapley (KernelSHAP, FT game)"
        for u in bt.utilities:  # one fine-tuning scores every utility: the store is shared
            ft = FineTuningGame(bt.task, u, seed=0, sparsity=0.5, steps=args.finetune_steps)
            run(label, "kernelshap", ft, args.finetune_budget, args.seeds[0], u, bt.truth(u))
    pd.DataFrame(lds).to_csv(f"{out}_lds.csv", index=False)
    pd.DataFrame(cost).to_csv(f"{out}_cost.csv", index=False)
    if precision:
        pd.DataFrame(precision).to_csv(f"{out}_precision.csv", index=False)
    write_markdown(args, bt, budget, out, pd.DataFrame(lds), pd.DataFrame(cost), pd.DataFrame(fid),
                   pd.DataFrame(removal), pd.DataFrame(precision))


def precision_table(precision: pd.DataFrame, u: str) -> pd.DataFrame:
    """Mean precision@k over estimator seeds, and the top-k players of the first seed."""
    p = precision[precision.utility == u]
    col = next(c for c in p.columns if c.startswith("precision@"))
    return p.groupby("estimator", sort=False).agg(
        **{col: (col, "mean"), "seeds": (col, "size"), "top (first seed)": ("top", "first")}).reset_index()


def write_markdown(args, bt, budget, out, lds, cost, fid, removal, precision=None):
    lines = [f"# {args.task}: estimators against retrained test coalitions",
             "", f"Produced by `python scripts/sampled_task_report.py --task {args.task} --budget {budget} "
             f"--proxy-budget {args.proxy_budget} --seeds {' '.join(map(str, args.seeds))} "
             f"--retrain-seeds {' '.join(map(str, args.retrain_seeds))}"
             f"{' --retraining ' + ' '.join(args.retraining) if len(args.retraining) < len(RETRAINING) else ''}"
             f"{' --removal-utilities ' + ' '.join(args.removal_utilities) if args.removal_utilities else ''}"
             f"{' --removal-game-seeds ' + ' '.join(map(str, args.removal_game_seeds)) if args.removal_game_seeds else ''}"
             f"{' --model-baselines' if args.model_baselines else ''}"
             f"{' --reuse-model-baselines' if args.model_baselines and args.reuse_model_baselines else ''}"
             f"{' --finetune-budget ' + str(args.finetune_budget) if args.model_baselines else ''}` on the shipped table "
             f"({len(bt.table.frame)} retrainings). LDS in points (100 x Spearman), mean over "
             "(estimator seed, retraining seed) pairs with 95% interval 1.96 sd / sqrt(k).", "",
             "## Proxy vs retraining (Spearman over the table's coalitions)", "",
             fid.round(3).to_markdown(index=False), ""]
    s = summarise(lds)
    c = cost.groupby(["utility", "estimator"], sort=False).agg(
        evaluations=("evaluations", "mean"), cost=("cost", "mean"), unit=("cost_unit", "first"),
        seconds=("seconds", "mean")).reset_index()
    for u in bt.utilities:
        t = s[s.utility == u].copy()
        t["LDS"] = [f"{m:.1f} ± {h:.1f}" for m, h in zip(t["mean"], t["ci95"])]
        wide = t.pivot(index="estimator", columns="alpha", values="LDS")
        wide.columns = [f"LDS@{a:g}" for a in wide.columns]
        wide = wide.reindex(t["estimator"].unique())
        cu = c[c.utility == u].set_index("estimator")
        wide["retrainings"] = [cu.loc[e, "cost"] if cu.loc[e, "unit"] == "model trainings" else 0
                               for e in wide.index]
        wide["evaluations"] = [int(cu.loc[e, "evaluations"]) for e in wide.index]
        wide["cost"] = [f"{cu.loc[e, 'cost']:.4g} {cu.loc[e, 'unit']}" for e in wide.index]
        lines += [f"## {u}: LDS", "", wide.reset_index().to_markdown(index=False), ""]
        if precision is not None and len(precision):
            planted = " ".join(map(str, bt.task.planted_sites))
            lines += [f"## {u}: precision@k at finding the planted players ({planted})", "",
                      precision_table(precision, u).round(3).to_markdown(index=False), ""]
        if len(removal):
            r = removal[removal.utility == u]
            if len(r):
                r = r.assign(top=r["top"].round(3), bottom=r["bottom"].round(3),
                             random=[f"{m:.3f} ± {d:.3f}" for m, d in zip(r["random_mean"], r["random_std"])])
                on = ("seed-mean retraining" if not args.removal_game_seeds else
                      f"retraining seed(s) {' '.join(map(str, args.removal_game_seeds))}")
                lines += [f"## {u}: removal (v(N minus removed) - v(N), {on}; "
                          f"ranking of estimator seed {args.removal_seed})", "",
                          r[["estimator", "fraction", "k", "top", "bottom", "random"]].to_markdown(index=False), ""]
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}.md", flush=True)


if __name__ == "__main__":
    main()
