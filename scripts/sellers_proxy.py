"""The label proxy against the seller proxy on ``fashion-sellers``, with no retraining.

    python scripts/sellers_proxy.py [--budget 512] [--seeds 0 1 2] [--reference-budget 20000]

The paper's proxy conditions the full model on a coalition's labels, so sellers of one
label are symmetric players of it; the seller proxy (the task's ``seller_view``)
conditions it on the seller too. Per utility and proxy: SurrogateSHAP's values at
``--budget`` proxy evaluations (``--seeds``), and a reference from
``--reference-budget`` evaluations of stratified SVARM (cheap on a proxy game); for the label
proxy also its exact values (:func:`surrogateshap.exact.grouped_shapley`: with equal data
per seller, the label proxy depends only on how many sellers of each label a coalition
holds, 5**6 evaluations). For each:
precision@k of the planted low-quality sellers among the k lowest values (k = the number
planted; chance is k/n), the planted sellers' ranks, and the largest spread of values
among the sellers of one label relative to the values' range (0 for an exactly
symmetric game). Writes ``--out``.md and .csv.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from surrogateshap import get_estimator
from surrogateshap.exact import grouped_shapley
from surrogateshap.metrics import precision_at_k
from surrogateshap.tasks import get_task


def within_label_spread(values, labels) -> float:
    """Largest (max - min) of the values among the players of one label, over the values' range."""
    v, labels = np.asarray(values, float), np.asarray(labels)
    spread = max(np.ptp(v[labels == k]) for k in np.unique(labels))
    return float(spread / max(np.ptp(v), 1e-300))


def lowest_ranks(values, players) -> list[int]:
    """1-based rank of each of ``players`` when values are sorted lowest first."""
    order = np.argsort(np.asarray(values, float), kind="stable")
    rank = np.empty(len(order), int)
    rank[order] = np.arange(1, len(order) + 1)
    return [int(rank[p]) for p in players]


def lowest_in_label(values, planted, labels) -> float:
    """Share of the planted players that hold the lowest value among the players of
    their label, a tie at the lowest shared equally (chance: 1 / players per label)."""
    v, labels = np.asarray(values, float), np.asarray(labels)
    score = []
    for p in planted:
        mine = v[labels == labels[p]]
        score.append(1.0 / np.sum(mine == mine.min()) if v[p] == mine.min() else 0.0)
    return float(np.mean(score))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=int, default=512)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--reference-budget", type=int, default=20000)
    p.add_argument("--scale", default="default", help="task preset (ci: a smoke test)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results/fashion_sellers_proxy")
    p.add_argument("--summarize", metavar="CSV", help="rescore the values in a CSV this script wrote; no game is played")
    p.add_argument("--table", metavar="CSV", help="a retraining table of the task holding the empty, full and "
                   "leave-one-out coalitions: also score retrained leave-one-out (v(N) - v(N - i)) and its "
                   "Spearman with each proxy's reference values (written to --out with _loo)")
    a = p.parse_args(argv)
    if a.budget < 2 or a.reference_budget < 2 or not a.seeds:
        p.error("--budget and --reference-budget must be >= 2, and --seeds non-empty")
    for flag, path in (("--summarize", a.summarize), ("--table", a.table)):
        if path and not Path(path).is_file():
            p.error(f"{flag} {path}: no such file")
    import torch

    torch.set_num_threads(a.threads)
    task = get_task("fashion-sellers", scale=a.scale)
    planted = task.planted_players
    k = len(planted)
    seller_label = np.array([s // task.config.sellers_per_class for s in range(task.n_players)])
    if a.summarize:
        df, setup = pd.read_csv(a.summarize), {}
        for i, r in df.iterrows():  # the scores again from the stored values (a fix to a score applies)
            v = np.array([float(x) for x in r["values"].split()])
            df.loc[i, f"precision_at_{k}_lowest"] = precision_at_k(-v, planted, k)
            df.loc[i, "lowest_in_label"] = lowest_in_label(v, planted, seller_label)
            df.loc[i, "within_label_spread"] = within_label_spread(v, seller_label)
    else:
        df, setup = play(task, a, planted, seller_label)
    write(df, setup, task, a, planted, seller_label)
    if a.table:
        write_loo(df, task, a, planted, seller_label)


def write_loo(df, task, a, planted, seller_label):
    """Retrained leave-one-out from ``--table`` (seed mean), scored like the proxies'
    values, and its Spearman with each proxy's reference (stratified SVARM) values."""
    from scipy.stats import spearmanr

    from surrogateshap.tasks.reference import load_reference

    table = load_reference(task, a.table)
    n, k = task.n_players, len(planted)
    full = np.ones((1, n), bool)
    loo_masks = ~np.eye(n, dtype=bool)
    lines = [f"# fashion-sellers: retrained leave-one-out against the proxies ({a.scale} preset)", "",
             f"Produced by `python scripts/sellers_proxy.py --summarize {a.summarize or a.out + '.csv'} --table "
             f"{a.table}`: LOO_i = v(N) - v(N - i) of the retraining table (seeds {table.mean_seeds}, mean), "
             f"planted sellers {planted.tolist()}; the proxies' values are their stratified SVARM references.", "",
             f"| utility | precision@{k} (lowest LOO) | planted = lowest of its label | planted ranks | "
             "Spearman with the label proxy | Spearman with the seller proxy |", "|---|---|---|---|---|---|"]
    for utility in task.utilities:
        if not table.held(np.vstack([full, loo_masks])).all():
            raise SystemExit(f"{a.table} lacks the full or a leave-one-out coalition")
        loo = table.values(full, utility)[0] - table.values(loo_masks, utility)
        ref = {r.proxy: np.array([float(x) for x in r["values"].split()]) for _, r in df.iterrows()
               if r.utility == utility and str(r.estimator).startswith("reference")}
        rho = {name: float(spearmanr(loo, v).statistic) for name, v in ref.items()}
        lines.append(f"| {utility} | {precision_at_k(-loo, planted, k):.2f} | "
                     f"{lowest_in_label(loo, planted, seller_label):.2f} | "
                     f"{' '.join(map(str, lowest_ranks(loo, planted)))} | "
                     f"{rho.get('label proxy (paper)', float('nan')):.3f} | {rho.get('seller proxy', float('nan')):.3f} |")
    out = Path(a.out + "_loo.md")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def play(task, a, planted, seller_label):
    """Every estimator on both proxies: (rows, set-up seconds per proxy)."""
    k = len(planted)
    views = {"label proxy (paper)": task, "seller proxy": task.seller_view()}
    rows, setup = [], {}
    for name, view in views.items():
        t0 = time.perf_counter()
        view.bank()
        setup[name] = (time.perf_counter() - t0, view.full_model_trained)
        for utility in task.utilities:
            game = view.proxy_game(utility)
            runs = [("SurrogateSHAP", "surrogateshap", a.budget, s) for s in a.seeds]
            runs.append(("reference: stratified-svarm", "stratified-svarm", a.reference_budget, 0))
            if view is task:  # sellers of a label are symmetric: exact values from label counts
                runs.append(("exact (label counts)", None, int(np.prod(np.bincount(seller_label) + 1)), 0))
            for label, spec, budget, seed in runs:
                if spec is None:
                    t1 = time.perf_counter()
                    v = grouped_shapley(game, seller_label)
                    att = type("Exact", (), {"values": v, "seconds": time.perf_counter() - t1})
                else:
                    att = get_estimator(spec).estimate(game, budget, seed=seed)
                v = att.values
                rows.append({"proxy": name, "utility": utility, "estimator": label, "budget": budget, "seed": seed,
                             f"precision_at_{k}_lowest": precision_at_k(-v, planted, k),
                             "planted_ranks_lowest_first": " ".join(map(str, lowest_ranks(v, planted))),
                             "lowest_in_label": lowest_in_label(v, planted, seller_label),
                             "within_label_spread": within_label_spread(v, seller_label),
                             "values": " ".join(f"{x:.6g}" for x in v),
                             "seconds": round(att.seconds, 3)})
                print(rows[-1], flush=True)
    return pd.DataFrame(rows), setup


def write(df, setup, task, a, planted, seller_label):
    k = len(planted)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out.with_suffix(".csv"), index=False)
    col = f"precision_at_{k}_lowest"
    summary = (df.groupby(["utility", "proxy", "estimator"], sort=False)
               .agg(precision=(col, "mean"), sd=(col, "std"), seeds=(col, "size"),
                    in_label=("lowest_in_label", "mean"), spread=("within_label_spread", "mean"),
                    ranks=("planted_ranks_lowest_first", "first"))
               .reset_index())
    lines = [f"# fashion-sellers: the label proxy against the seller proxy ({a.scale} preset, 0 retrainings)", "",
             f"Produced by `python scripts/sellers_proxy.py --budget {a.budget} --seeds "
             f"{' '.join(map(str, a.seeds))} --reference-budget {a.reference_budget} --scale {a.scale}`. "
             f"Planted sellers {planted.tolist()} ({', '.join(f'{s}: {d}' for s, d in task.config.planted)}); "
             f"precision@{k} counts them among the {k} lowest values (chance {k / task.n_players:.2f}; ties "
             "share places). Lowest of its label: the share of planted sellers valued below every other seller of their label (chance 0.25). Spread: the largest range of values among the sellers of one label, over the "
             "values' range (0: sellers of a label are indistinguishable). Ranks: the planted sellers' "
             "ranks, lowest value first, of the first seed.", "",
             ("Set-up (full model and bank, once): " + "; ".join(
                 f"{n}: {s:.0f} s{' (trained)' if tr else ' (cached)'}" for n, (s, tr) in setup.items())
              if setup else f"Rescored from `{a.summarize}` (`--summarize`)."), "",
             f"| utility | proxy | estimator | precision@{k} (mean ± sd) | seeds | planted = lowest of its label | "
             "within-label spread | planted ranks |",
             "|---|---|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        sd = "" if r.seeds < 2 else f" ± {r.sd:.2f}"
        lines.append(f"| {r.utility} | {r.proxy} | {r.estimator} | {r.precision:.2f}{sd} | {r.seeds} | "
                     f"{r.in_label:.2f} | {r.spread:.3f} | {r.ranks} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
