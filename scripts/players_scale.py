"""SurrogateSHAP's own cost and error as the number of players grows (issue: ArtBench
protocol, item 3), on clipart-artists' proxy game.

    python scripts/players_scale.py [--n 30 100 258] [--budgets 300 800] [--seeds 0 1 2]

The task has 30 artists; ArtBench has 258. For n > 30 each artist's images are split
into shards, each shard one contributor (n shards in all, allotted to the artists in
proportion to their image counts, at least one each, items dealt at random under seed
0), so a coalition's samples are still the artists' conditionals mixed in proportion
to its images: exactly the proxy game of a task whose contributors are not its units
(the fashion-brands seam). n = 30 is the task's own proxy game.

Per n, the reference is :func:`baselines.stratified.stratified_reference`: every coalition
of the first and last ``--ref-border`` sizes (so the first and last positions' marginals,
which dominate this game, are exact) plus ``--ref-permutations`` antithetic orders for
the middle (its standard error is reported). Per (n, budget, setting, seed):
relative L2 error and Spearman against the reference, and seconds split into game
evaluations and SurrogateSHAP's own work (XGBoost fit + interventional TreeSHAP).
Settings: the published defaults (900 trees, depth 5), paired (antithetic) coalition
sampling, and a cheaper surrogate (300 trees, learning rate 0.15); beside them permutation
sampling and KernelSHAP at the same budget, for scale. Writes --out.md/.csv.

``--anytime`` runs the study of issue 34 instead (results/players_scale_anytime.md):

    OMP_NUM_THREADS=1 python scripts/players_scale.py --anytime --n 30 258

per n, two stratified references (seeds 12345 and 54321; their agreement is the
reference's own noise; estimators are scored against their mean), then every
``--estimators`` spec at every ``--budgets`` (per n: ``--budgets-30``, ``--budgets-258``,
else the defaults below) and seed, and every ``--until`` run (an estimator spec with its
stopping rule, at the largest budget): Spearman and relative L2 against the reference,
distinct evaluations, seconds in all and in the game, the estimate's max relative stderr.
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from baselines.stratified import stratified_reference
from surrogateshap import get_estimator
from surrogateshap.game import Game, stable_hash
from surrogateshap.tasks import get_task

#: setting -> (estimator, parameters): SurrogateSHAP's settings, then peers at the same budget
SETTINGS = {
    "default (900 trees)": ("surrogateshap", {}),
    "paired sampling": ("surrogateshap", {"paired": True}),
    "300 trees, lr 0.15": ("surrogateshap", {"model_params": {"n_estimators": 300, "learning_rate": 0.15}}),
    "peer: permutation": ("permutation", {}),
    "peer: KernelSHAP": ("kernelshap", {}),
}


def shard_counts(unit_counts: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """(n, n_units) item counts of n contributors made by splitting each artist's items
    into shards: artist a gets max(1, ~n * share_a) shards (largest remainders fill up
    to n), its items dealt to them at random."""
    per_artist = unit_counts.sum(0) if unit_counts.ndim == 2 else unit_counts
    k = len(per_artist)
    if n < k:
        raise ValueError(f"n = {n} is below the {k} artists")
    if per_artist.sum() < n:
        raise ValueError(f"{per_artist.sum()} items cannot make {n} non-empty contributors")
    exact = n * per_artist / per_artist.sum()
    shards = np.maximum(1, np.floor(exact).astype(int))
    while shards.sum() < n:
        gaps = np.where(shards < per_artist, exact - shards, -np.inf)
        shards[int(np.argmax(gaps))] += 1
    while shards.sum() > n:
        shards[int(np.argmax(np.where(shards > 1, shards - exact, -np.inf)))] -= 1
    rng = np.random.default_rng(seed)
    out = []
    for a, (items, s) in enumerate(zip(per_artist, shards)):
        owner = rng.permutation(np.arange(items) % s)  # s shards of near-equal size
        for j in range(s):
            row = np.zeros(k, dtype=np.int64)
            row[a] = int((owner == j).sum())
            out.append(row)
    return np.array(out)


class ShardedProxyGame(Game):
    """The proxy game with contributors = shards of units: v(S) = the task's proxy
    utility of unit weights (S's items per unit) / (S's items). Keeps its own
    evaluation seconds so a study can split the estimator's time."""

    def __init__(self, proxy, counts: np.ndarray):
        super().__init__(len(counts))
        self.proxy, self.counts, self.seconds = proxy, np.asarray(counts), 0.0
        proxy.utility_of_weights(np.zeros(proxy.task.n_units))  # builds the bank now, not in the timing

    chunk = 2048  # coalitions per bank call: the mixture statistics are (m, d, d)

    def cache_id(self):
        # the proxy game's (task configuration and utility) and the shards
        return f"sharded:{self.proxy.cache_id()}:{stable_hash(self.counts.tolist())}"

    def _evaluate(self, masks):
        t0 = time.perf_counter()
        out = np.empty(len(masks))
        for i in range(0, len(masks), self.chunk):
            part = masks[i : i + self.chunk]
            out[i : i + self.chunk] = self.proxy.utility_of_weights(part.astype(np.int64) @ self.counts)
        self.seconds += time.perf_counter() - t0
        return out


#: the anytime study's estimators, budgets per n and stopping-rule runs
ANYTIME_ESTIMATORS = ("stratified-svarm", "surrogateshap", "permutation-antithetic")
ANYTIME_BUDGETS = {30: (300, 1000, 3000, 10000), 258: (1000, 3000, 10000, 30000, 60000)}
ANYTIME_UNTIL = ("auto(cheap=True)",)


def _score(att, ref_v, game, t0) -> dict:
    v = np.asarray(att.values)
    se = att.stderr
    return {"spearman": float(spearmanr(v, ref_v).statistic),
            "rel_l2": float(np.linalg.norm(v - ref_v) / np.linalg.norm(ref_v)),
            "evaluations": att.n_evaluations, "seconds": time.perf_counter() - t0,
            "game_seconds": game.seconds,
            "rel_stderr": float(np.max(se) / np.ptp(v)) if se is not None and np.isfinite(se).all() else np.nan,
            "stopped_by": att.stopped_by}


def plot_anytime(df: pd.DataFrame, path: str) -> None:
    """Spearman against evaluations, one panel per n, one line per estimator (seed means)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted(df["n"].unique())
    fig, axes = plt.subplots(1, len(ns), figsize=(5 * len(ns), 3.6), squeeze=False)
    for ax, n in zip(axes[0], ns):
        part = df[df["n"] == n].groupby(["estimator", "budget"], sort=False)[["evaluations", "spearman"]].mean()
        for est, g in part.groupby(level=0, sort=False):
            ax.plot(g["evaluations"], g["spearman"], "o" if len(g) == 1 else "o-", label=est)
        ax.axhline(0.97, color="grey", lw=0.8, ls="--")
        ax.set(xscale="log", xlabel="distinct evaluations", ylabel="Spearman vs reference", title=f"n = {n}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def reference_file(folder, game: Game, border: int, permutations: int, seed: int) -> Path:
    """Where ``--ref-cache`` keeps a reference: named by the game (utility, task
    configuration, shards), so a reference of another game is never read back."""
    return Path(folder, f"ref-n{game.n_players}-{stable_hash(game.cache_id())}-b{border}-p{permutations}"
                        f"-s{seed}.pkl")


def anytime_study(a, task, proxy):
    rows, refs = [], []
    for n in a.n:
        counts = task.unit_counts() if n == task.n_players else shard_counts(task.unit_counts(), n)
        game = ShardedProxyGame(proxy, counts)
        pair = []
        for seed in (12345, 54321):
            t0 = time.perf_counter()
            kept = reference_file(a.ref_cache or "", game, a.ref_border, a.ref_permutations, seed)
            if a.ref_cache and kept.exists():
                pair.append(pickle.loads(kept.read_bytes()))
            else:
                pair.append(stratified_reference(game, a.ref_permutations, a.ref_border, seed=seed))
                if a.ref_cache:
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    kept.write_bytes(pickle.dumps(pair[-1]))
            refs.append({"n": n, "seed": seed, "evaluations": pair[-1].n_evaluations,
                         "seconds": round(time.perf_counter() - t0, 1),
                         "rel. stderr (L2)": float(np.linalg.norm(pair[-1].stderr) / np.linalg.norm(pair[-1].values))})
            print(refs[-1], flush=True)
        va, vb = (np.asarray(r.values) for r in pair)
        refs[-1].update({"A vs B spearman": float(spearmanr(va, vb).statistic),
                         "A vs B rel. L2": float(np.linalg.norm(va - vb) / np.linalg.norm((va + vb) / 2))})
        ref_v = (va + vb) / 2
        if a.permutation_border and n > 10:
            table = permutation_border_study(game, ref_v)
            print(table.round(3).to_markdown(index=False), flush=True)
            continue
        budgets = getattr(a, f"budgets_{n}", None) or ANYTIME_BUDGETS.get(n, a.budgets)
        plan = [(spec, b, None) for spec in a.estimators for b in budgets]
        plan += [(spec, max(budgets) * 4, "until") for spec in a.until]
        for spec, budget, kind in plan:
            for s in a.seeds:
                game.seconds = 0.0
                t0 = time.perf_counter()
                att = get_estimator(spec).estimate(game, budget, seed=s)
                rows.append({"n": n, "estimator": spec, "budget": budget, "seed": s,
                             "chosen": att.extra.get("auto", {}).get("chose", ""),
                             **_score(att, ref_v, game, t0)})
                print(rows[-1], flush=True)
    if a.permutation_border:
        return
    df = pd.DataFrame(rows)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(f"{a.out}.csv", index=False)
    agg = df.groupby(["n", "estimator", "budget"], sort=False).agg(
        evaluations=("evaluations", "mean"), spearman=("spearman", "mean"), spearman_min=("spearman", "min"),
        rel_l2=("rel_l2", "mean"), rel_stderr=("rel_stderr", "mean"), seconds=("seconds", "mean"),
        game_seconds=("game_seconds", "mean")).reset_index()
    lines = ["# Players scale, anytime: error against budget and time at n = 30 and n = 258", "",
             f"`OMP_NUM_THREADS=1 python scripts/players_scale.py {' '.join(a.argv)}`", "",
             f"clipart-artists' proxy game, utility `{a.utility}` (n > 30: artists split into shards). "
             "Reference: the mean of two stratified references (border "
             f"{a.ref_border}, {a.ref_permutations} antithetic permutations each, seeds 12345 and 54321). "
             f"Mean (and min Spearman) over seeds {' '.join(map(str, a.seeds))}; seconds in all (estimator "
             "+ game) on one thread of a shared 2-core machine; rel_stderr: the estimate's max stderr "
             "over its value range.", "",
             "## The references", "", pd.DataFrame(refs).round(4).to_markdown(index=False), "",
             "## Error and cost", "", agg.round(4).to_markdown(index=False), "",
             f"![Spearman against evaluations]({Path(a.out).name}.png)", ""]
    Path(f"{a.out}.md").write_text("\n".join(lines) + "\n")
    plot_anytime(df, f"{a.out}.png")
    print(f"wrote {a.out}.md", flush=True)


def permutation_border_study(game, truth, pairs: int = 116, seed: int = 7) -> pd.DataFrame:
    """Why antithetic permutations rank worse with more orders: Spearman against ``truth``
    of the first k pairs' estimate, with and without the border positions (the first and
    last two), and the share of players that drew a border position."""
    from surrogateshap.sampling import order_marginals, permutation_units

    n = game.n_players
    masks = permutation_units(n, pairs, np.random.default_rng(seed), True)
    v = game(masks.reshape(-1, n)).reshape(pairs, -1)
    unit, pos = order_marginals(masks, v), n - masks[:, : n + 1].sum(axis=1)
    border = (pos < 2) | (pos >= n - 2)
    rows = []
    for k in sorted({1, 2, 4, 8, 16, 32, 64, pairs}):
        inside = ~border[:k]
        middle = np.where(inside, unit[:k], 0.0).sum(0) / np.maximum(inside.sum(0), 1)
        rows.append({"pairs": k, "evaluations": 2 * k * (n - 1) + 2,
                     "spearman, all positions": spearmanr(unit[:k].mean(0), truth).statistic,
                     "spearman, middle positions only": spearmanr(middle, truth).statistic,
                     "players with a border draw": border[:k].any(0).mean()})
    steps = np.diff(v[:, : n + 1], axis=1)
    print(f"v(empty) {v[0, 0]:.1f}; mean marginal at positions 0..3 {steps[:, :4].mean(0).round(1)} "
          f"(sd at 0: {steps[:, 0].std():.1f}); middle {steps[:, 10:-10].mean():.3f}", flush=True)
    return pd.DataFrame(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[30, 100, 258])
    p.add_argument("--budgets", type=int, nargs="+", default=[300, 800])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--utility", default="neg_fid")
    p.add_argument("--ref-permutations", type=int, default=300)
    p.add_argument("--ref-border", type=int, default=2)
    p.add_argument("--scale", default="default")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="default results/clipart_artists_players_scale, "
                   "with --anytime results/players_scale_anytime")
    p.add_argument("--anytime", action="store_true", help="the anytime study (see the docstring)")
    p.add_argument("--estimators", nargs="+", default=list(ANYTIME_ESTIMATORS))
    p.add_argument("--until", nargs="*", default=list(ANYTIME_UNTIL))
    p.add_argument("--budgets-30", type=int, nargs="+", default=None)
    p.add_argument("--budgets-258", type=int, nargs="+", default=None)
    p.add_argument("--ref-cache", default=None, help="a folder keeping the references between runs")
    p.add_argument("--permutation-border", action="store_true",
                   help="with --anytime: only print why permutation sampling ranks worse with more orders")
    a = p.parse_args(argv)
    a.argv = list(argv or [])
    a.out = a.out or ("results/players_scale_anytime" if a.anytime else "results/clipart_artists_players_scale")
    import torch

    torch.set_num_threads(a.threads)
    task = get_task("clipart-artists", scale=a.scale)
    proxy = task.proxy_game(a.utility)
    if a.anytime:
        return anytime_study(a, task, proxy)
    rows, refs = [], []
    for n in a.n:
        counts = task.unit_counts() if n == task.n_players else shard_counts(task.unit_counts(), n)
        game = ShardedProxyGame(proxy, counts)
        t0 = time.perf_counter()
        ref = stratified_reference(game, a.ref_permutations, a.ref_border, seed=12345)
        ref_v, ref_se = np.asarray(ref.values), np.asarray(ref.stderr)
        refs.append({"n": n, "items per contributor": f"{counts.sum(1).min()}-{counts.sum(1).max()}",
                     "reference evaluations": ref.n_evaluations,
                     "reference rel. stderr": float(np.linalg.norm(ref_se) / np.linalg.norm(ref_v)),
                     "reference seconds": round(time.perf_counter() - t0, 1)})
        print(refs[-1], flush=True)
        for budget in a.budgets:
            for label, (name, params) in SETTINGS.items():
                for s in a.seeds:
                    game.seconds = 0.0
                    t0 = time.perf_counter()
                    att = get_estimator(name, **params).estimate(game, budget, seed=s)
                    total = time.perf_counter() - t0
                    v = np.asarray(att.values)
                    rows.append({"n": n, "budget": budget, "setting": label, "seed": s,
                                 "rel_l2": float(np.linalg.norm(v - ref_v) / np.linalg.norm(ref_v)),
                                 "ref_rel_stderr": refs[-1]["reference rel. stderr"],
                                 "spearman": float(spearmanr(v, ref_v).statistic),
                                 "game_seconds": game.seconds, "estimator_seconds": total - game.seconds})
                    print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(f"{a.out}.csv", index=False)
    # the reference's own noise adds in quadrature: E|v - ref|^2 = |v - phi|^2 + |ref - phi|^2
    df["rel_l2_net"] = np.sqrt(np.maximum(df["rel_l2"] ** 2 - df["ref_rel_stderr"] ** 2, 0.0))
    s = df.groupby(["n", "budget", "setting"], sort=False).agg(
        rel_l2=("rel_l2", "mean"), rel_l2_sd=("rel_l2", "std"), rel_l2_net=("rel_l2_net", "mean"),
        spearman=("spearman", "mean"),
        estimator_s=("estimator_seconds", "mean"), game_s=("game_seconds", "mean")).reset_index()
    lines = ["# clipart-artists: SurrogateSHAP's cost and error against the number of players", "",
             f"`python scripts/players_scale.py {' '.join(argv or [])}`".replace(" `", "`"), "",
             f"Utility `{a.utility}` of the proxy game; n > 30 splits each artist into shards "
             "(see the script's docstring). Error against the stratified reference "
             "(rel_l2_net: less the reference's own relative standard error, in quadrature); "
             f"mean (sd) over seeds {' '.join(map(str, a.seeds))}. Seconds on one thread of this "
             "machine: estimator = everything but the game (for SurrogateSHAP, XGBoost fit + TreeSHAP).", "",
             "## Reference per n", "", pd.DataFrame(refs).to_markdown(index=False), "",
             "## Error and cost", "", s.round(4).to_markdown(index=False), ""]
    Path(f"{a.out}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}.md", flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
