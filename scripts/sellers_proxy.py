"""The label proxy against the seller proxy on ``fashion-sellers``, with no retraining.

    python scripts/sellers_proxy.py [--budget 512] [--seeds 0 1 2] [--reference-budget 20000] [--utilities U ...]

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

``--finetune-steps`` (default 200; 0: not): also the issue's other seller proxy, per-seller
banks from short fine-tunes of the label model (:class:`FinetunedBanks`; 4 minutes on one
thread). ``--utilities``: the task's utilities and ``neg_intra_fid`` (FID per label against that
label's clean images, averaged over labels), which the task does not list because its
retraining table has no column for it: this run's task object scores it for the proxies.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from surrogateshap import get_estimator
from surrogateshap.exact import grouped_shapley, separable_shapley
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


def centred_in_label(values, labels) -> np.ndarray:
    """Each value less the mean value of its label's players: a seller against its peers,
    its label's worth (shared by the label's sellers) taken out."""
    v, labels = np.asarray(values, float), np.asarray(labels)
    means = {k: v[labels == k].mean() for k in np.unique(labels)}
    return v - np.array([means[k] for k in labels])


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
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    p.add_argument("--utilities", nargs="+", help="utilities to measure (default: the task's and neg_intra_fid)")
    p.add_argument("--finetune-steps", type=int, default=200, help="also the proxy of per-seller banks from "
                   "fine-tunes of the label model this many steps (0: not)")
    p.add_argument("--out", default="results/fashion_sellers_proxy")
    p.add_argument("--summarize", metavar="CSV", help="rescore the values in a CSV this script wrote; no game is played")
    p.add_argument("--table", metavar="CSV", help="a retraining table of the task holding the empty, full and "
                   "leave-one-out coalitions: also score retrained leave-one-out (v(N) - v(N - i)) and its "
                   "Spearman with each proxy's reference values (written to --out with _loo)")
    a = p.parse_args(argv)
    if a.budget < 2 or a.reference_budget < 2 or not a.seeds or a.finetune_steps < 0:
        p.error("--budget and --reference-budget must be >= 2, --seeds non-empty and --finetune-steps >= 0")
    for flag, path in (("--summarize", a.summarize), ("--table", a.table)):
        if path and not Path(path).is_file():
            p.error(f"{flag} {path}: no such file")
    import torch
    from threadpoolctl import threadpool_limits

    from surrogateshap.tasks.features.statistics import available_utilities

    torch.set_num_threads(a.threads)
    threadpool_limits(a.threads)  # FID's small batched eigensolves: threads only contend
    task = get_task("fashion-sellers", scale=a.scale)
    a.utilities = a.utilities or [*task.utilities, "neg_intra_fid"]
    unknown = sorted(set(a.utilities) - set(available_utilities()))
    if unknown:
        p.error(f"--utilities: unknown {unknown}; known: {', '.join(available_utilities())}")
    planted = task.planted_players
    seller_label = np.array([s // task.config.sellers_per_class for s in range(task.n_players)])
    if a.summarize:
        df, setup = pd.read_csv(a.summarize), {}
        for i, r in df.iterrows():  # the scores again from the stored values (a fix to a score applies)
            v = np.array([float(x) for x in r["values"].split()])
            for key, value in scores(v, planted, seller_label).items():
                df.loc[i, key] = value
        defects = []
    else:
        df, setup = play(task, a, planted, seller_label)
        defects = bank_defects(task, planted, seller_label)
    write(df, setup, task, a, planted, seller_label, defects)
    if a.table:
        write_loo(df, task, a, planted, seller_label)


def scores(v, planted, seller_label) -> dict:
    """The figures of one set of values (a CSV row's columns)."""
    k = len(planted)
    return {f"precision_at_{k}_lowest": precision_at_k(-v, planted, k),
            "planted_ranks_lowest_first": " ".join(map(str, lowest_ranks(v, planted))),
            "lowest_in_label": lowest_in_label(v, planted, seller_label),
            "within_label_spread": within_label_spread(v, seller_label),
            f"precision_at_{k}_centred": precision_at_k(-centred_in_label(v, seller_label), planted, k)}


def bank_defects(task, planted, seller_label, k: int = 5) -> list[str]:
    """Does the seller model's bank carry each planted seller's defect? Per seller, of its
    ``bank_per_label`` bank samples: the label accuracy, the median pixel distance to the
    nearest of the seller's own training images (memorisation: near 0), the mean pairwise
    pixel distance (diversity) and the k-NN recall (Kynkaanniemi et al., 2019) against the
    clean reference of its label, in the scoring network's features; beside the range of
    its label's other sellers. Markdown lines."""
    from scipy.spatial.distance import cdist
    from sklearn.neighbors import NearestNeighbors

    from surrogateshap.tasks.features.image_scoring import BANK_SEED

    view, B = task.seller_view(), task.config.bank_per_label
    units = np.repeat(np.arange(view.n_units), B)  # unit s = seller s (one label each)
    images = view.sample(view.full_model, units[None], seed=BANK_SEED)[0]
    flat, feats = images.reshape(len(images), -1), task.features(images)[0]
    hits = task.feature_net.predict(images) == view.unit_parent[units]
    train = task.dataset.images.reshape(len(task.dataset.images), -1)
    ref_x, ref_y = task.reference
    ref = task.features(ref_x)[0]

    def radii(x):  # distance to the k-th nearest other point
        return NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)[0][:, -1]

    rows = {}
    for s in range(task.n_players):
        g, f = flat[units == s], feats[units == s]
        own = train[task.item_contributor == s]
        real = ref[ref_y == seller_label[s]]
        pair = cdist(g, g)[np.triu_indices(len(g), 1)]
        recall = (cdist(real, f) < radii(f)[None]).any(1).mean()
        rows[s] = (hits[units == s].mean(), np.median(cdist(g, own).min(1)), pair.mean(), recall)
    names = ("label accuracy", "distance to own nearest", "pairwise distance", f"recall (k={k})")
    lines = [(f"Does the seller model's bank carry the defect? Each planted seller's {B} bank samples against "
              f"its label's clean sellers (min-max): {', '.join(names)}: label accuracy by the scoring network, "
              "pixel distances in [-1, 1] units (memorised samples: distance to own nearest near 0), recall "
              "against the label's clean reference in the network's features."), "",
             "| seller | defect | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for s, defect in sorted(task.config.planted):
        peers = [q for q in range(task.n_players) if seller_label[q] == seller_label[s] and q not in planted]
        cells = [f"{rows[s][j]:.2f} ({min(rows[q][j] for q in peers):.2f}-{max(rows[q][j] for q in peers):.2f})"
                 for j in range(len(names))]
        lines.append(f"| {s} | {defect} | " + " | ".join(cells) + " |")
    return lines


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


#: utilities that are a mean of per-label terms, each reading only its label's units: on
#: the seller proxy (each unit within one label) a sum of per-label games, checked by :func:`separable`
SEPARABLE = ("neg_intra_fid",)


def separable(game, groups, pairs: int = 16, seed: int = 0) -> bool:
    """Whether v(S) + v(T) = v(S_G + T_rest) + v(T_G + S_rest) (to 1e-9 relative) for random
    S, T and groups G: what a sum of per-group games satisfies."""
    rng = np.random.default_rng(seed)
    groups = np.asarray(groups)
    S, T = rng.random((2, pairs, game.n_players)) < 0.5
    G = groups[None, :] == rng.choice(np.unique(groups), pairs)[:, None]
    lhs = game(S) + game(T)
    rhs = game(np.where(G, S, T)) + game(np.where(G, T, S))
    return bool(np.allclose(lhs, rhs, rtol=1e-9, atol=0))


class FinetunedBanks:
    """The issue's other proxy that sees sellers: per seller, ``n_samples`` samples of the
    label model fine-tuned ``steps`` steps at peak rate ``lr`` (the fine-tuning game's
    defaults) on that seller's data alone, so each seller's statistics carry what its own
    data does to the model; a coalition mixes its sellers' statistics in proportion to
    their images (the seller proxy's rule), the empty one is the prior."""

    full_model_trained = False

    def __init__(self, task, steps: int, lr: float = 1e-3):
        self.task, self.steps, self.lr, self._bank = task, int(steps), float(lr), None

    def bank(self):
        if self._bank is None:
            from surrogateshap.tasks.features.statistics import StatsBank

            t = self.task
            init = {k: v.detach().cpu() for k, v in t.full_model.state_dict().items()}
            alone = np.eye(t.n_players, dtype=bool)
            stats = [t.finetune_stats(m[None], 0, init=init, keep={}, steps=self.steps, lr=self.lr)[0] for m in alone]
            self._bank = StatsBank(stats, t.real_stats(), prior=t.empty_stats())
        return self._bank

    def proxy_game(self, utility: str):
        from surrogateshap.game import FunctionGame

        bank, counts = self.bank(), self.task.counts()
        empty = self.task.score(self.task.empty_stats())[utility]

        def v(masks):
            w = masks * counts
            some = w.sum(1) > 0
            out = np.full(len(masks), empty)
            if some.any():
                out[some] = bank.utility(utility, w[some] / w[some].sum(1, keepdims=True))
            return out

        return FunctionGame(v, self.task.n_players, identity=f"finetuned-banks:{self.steps}:{self.lr}:{utility}")


def play(task, a, planted, seller_label):
    """Every estimator on every proxy: (rows, set-up seconds per proxy)."""
    task = get_task("fashion-sellers", scale=a.scale)  # this run's own: it scores --utilities
    task.utilities = tuple(dict.fromkeys([*task.utilities, *a.utilities]))
    views = {"label proxy (paper)": task, "seller proxy": task.seller_view()}
    if a.finetune_steps:
        views[f"seller proxy, fine-tuned banks ({a.finetune_steps} steps)"] = FinetunedBanks(task, a.finetune_steps)
    rows, setup = [], {}
    for name, view in views.items():
        t0 = time.perf_counter()
        view.bank()
        setup[name] = (time.perf_counter() - t0, view.full_model_trained)
        for utility in a.utilities:
            game = view.proxy_game(utility)
            runs = [("SurrogateSHAP", "surrogateshap", a.budget, s) for s in a.seeds]
            runs.append(("reference: stratified-svarm", "stratified-svarm", a.reference_budget, 0))
            if view is task:  # sellers of a label are symmetric: exact values from label counts
                runs.append(("exact (label counts)", grouped_shapley, int(np.prod(np.bincount(seller_label) + 1)), 0))
            elif utility in SEPARABLE and separable(game, seller_label):  # a sum of per-label games
                runs.append(("exact (per label)", separable_shapley, int((2 ** np.bincount(seller_label)).sum()), 0))
            for label, spec, budget, seed in runs:
                if callable(spec):
                    t1 = time.perf_counter()
                    v = spec(game, seller_label)
                    att = type("Exact", (), {"values": v, "seconds": time.perf_counter() - t1})
                else:
                    att = get_estimator(spec).estimate(game, budget, seed=seed)
                v = att.values
                rows.append({"proxy": name, "utility": utility, "estimator": label, "budget": budget, "seed": seed,
                             **scores(v, planted, seller_label),
                             "values": " ".join(f"{x:.6g}" for x in v),
                             "seconds": round(att.seconds, 3)})
                print(rows[-1], flush=True)
    return pd.DataFrame(rows), setup


def write(df, setup, task, a, planted, seller_label, defects=()):
    k = len(planted)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out.with_suffix(".csv"), index=False)
    col = f"precision_at_{k}_lowest"
    summary = (df.groupby(["utility", "proxy", "estimator"], sort=False)
               .agg(precision=(col, "mean"), sd=(col, "std"), seeds=(col, "size"),
                    in_label=("lowest_in_label", "mean"), spread=("within_label_spread", "mean"),
                    centred=(f"precision_at_{k}_centred", "mean"),
                    ranks=("planted_ranks_lowest_first", "first"))
               .reset_index())
    lines = [f"# fashion-sellers: the label proxy against the seller proxy ({a.scale} preset, 0 retrainings)", "",
             f"Produced by `python scripts/sellers_proxy.py --budget {a.budget} --seeds "
             f"{' '.join(map(str, a.seeds))} --reference-budget {a.reference_budget} --scale {a.scale}"
             f"{' --utilities ' + ' '.join(a.utilities) if a.utilities else ''}"
             f"{'' if a.summarize else f' --finetune-steps {a.finetune_steps}'}`. "
             f"Planted sellers {planted.tolist()} ({', '.join(f'{s}: {d}' for s, d in task.config.planted)}); "
             f"precision@{k} counts them among the {k} lowest values (chance {k / task.n_players:.2f}; ties "
             "share places). Lowest of its label: the share of planted sellers valued below every other seller of their label (chance 0.25). Spread: the largest range of values among the sellers of one label, over the "
             "values' range (0: sellers of a label are indistinguishable). Ranks: the planted sellers' "
             "ranks, lowest value first, of the first seed. Exact (label counts): the label proxy's values "
             "from 5**6 label-count coalitions (`grouped_shapley`); exact (per label): the seller proxy on a "
             "per-label utility is a sum of one game per label (checked on random coalitions), so its values "
             "take 6 x 2**4 evaluations (`separable_shapley`). Centred: precision@4 of each value less its "
             "label's mean value (a seller against its label's peers; chance 0.17).", "",
             ("Set-up (full model and bank, once): " + "; ".join(
                 f"{n}: {s:.0f} s{' (trained)' if tr else ' (cached)'}" for n, (s, tr) in setup.items())
              if setup else f"Rescored from `{a.summarize}` (`--summarize`)."), "",
             f"| utility | proxy | estimator | precision@{k} (mean ± sd) | seeds | planted = lowest of its label | "
             f"within-label spread | planted ranks | precision@{k}, centred |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        sd = "" if r.seeds < 2 else f" ± {r.sd:.2f}"
        lines.append(f"| {r.utility} | {r.proxy} | {r.estimator} | {r.precision:.2f}{sd} | {r.seeds} | "
                     f"{r.in_label:.2f} | {r.spread:.3f} | {r.ranks} | {r.centred:.2f} |")
    if defects:
        lines += ["", *defects]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
