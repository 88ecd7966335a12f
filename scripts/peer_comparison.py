"""The project's Shapley estimators beside shapiq's and pyDVL's, at equal budgets.

Same games, same budgets, same seeds, one error measure: relative L2 error
||phi_hat - phi|| / ||phi|| against exact values (closed form where the game has one,
``shapley_from_table`` for digits10). Budgets are counted the same way on both sides:
distinct game evaluations, anchors included. The project's estimators run on a
BudgetedGame (which raises past the budget); each peer sees the game through a
memoised counter, and a peer run that evaluates more distinct coalitions than the
budget is reported as over budget and left out of the comparison. Where a peer counts
its budget otherwise (shapiq's permutation, stratified and Owen samplers count
repeats; pyDVL's methods take a number of samples), it is run at the largest nominal
size (found by doubling and bisection, same seed) whose distinct evaluations fit the
budget, so no peer is handed fewer evaluations than the project's estimators.

Peers are optional: install them with the ``peers`` extra in a separate virtualenv
(pyDVL 0.10.0 pins numpy < 2), e.g.

    python3.11 -m venv /work/venv-peers
    /work/venv-peers/bin/pip install -e '.[peers]'
    /work/venv-peers/bin/python scripts/peer_comparison.py

The two sides run in their own environments (the peers' venv has numpy 1.26 and an
older shap, which would change the project's own numbers):

    .venv/bin/python scripts/peer_comparison.py --side project      # project venv
    /work/venv-peers/bin/python scripts/peer_comparison.py --side peers

Each writes its per-run rows to results/peers_<side>.csv; every run then rewrites
results/peers.md (one row per (game, budget): best project estimator, best peer,
ratio; then every estimator's mean error) from both files, whichever are there
(``--summarise-only`` just rewrites it).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", message=".*column-vector y.*")
from pathlib import Path

import numpy as np
import pandas as pd

import baselines  # noqa: F401  (registers the baselines)
from surrogateshap import AirportGame, WeightedVotingGame, random_unanimity_game
from surrogateshap.exact import shapley_from_table
from surrogateshap.game import all_coalitions
from surrogateshap.registry import get_estimator

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "datasets" / "digits10" / "retraining_table.csv"
PLAYERS = [f"digit_{i}" for i in range(10)]
UTILITIES = ["neg_fid", "inception_score", "coverage"]

# (label, registry name, parameters): the project's Shapley estimators
PROJECT = [
    ("surrogateshap", "surrogateshap", {}),
    ("surrogateshap (adjusted)", "surrogateshap", {"adjustment": "permutation-antithetic"}),
    ("kernelshap (paired, border)", "kernelshap", {}),
    ("kernelshap (paired)", "kernelshap", {"border": False}),
    ("leverageshap (border)", "leverageshap", {}),
    ("leverageshap", "leverageshap", {"border": False}),
    ("kadd-shap (k=2, border)", "kadd-shap", {"paired": False}),
    ("stratified-svarm", "stratified-svarm", {}),
    ("permutation-antithetic", "permutation-antithetic", {}),
]


def rel_l2(est, ref) -> float:
    return float(np.linalg.norm(np.asarray(est, float) - ref) / np.linalg.norm(ref))


# --------------------------------------------------------------------------- games


def digits_game(utility: str):
    from surrogateshap.table import CoalitionTable

    table = CoalitionTable.read_csv(DIGITS, PLAYERS, UTILITIES)
    game = table.game(utility)
    exact = shapley_from_table(game(all_coalitions(10)), 10)
    return game, exact


def voting30():
    rng = np.random.default_rng(30)
    w = rng.integers(1, 10, 30)
    return WeightedVotingGame(w, quota=int(w.sum()) // 2 + 1)


def airport20():
    # the benchmark suite's airport20 (surrogateshap.benchmark.tasks)
    rng = np.random.default_rng(20)
    return AirportGame(np.round(rng.uniform(1.0, 10.0, 20), 2))


def known(game):
    return game, game.exact_values()


GAMES = {
    "digits10 -FID": lambda: digits_game("neg_fid"),
    "digits10 IS": lambda: digits_game("inception_score"),
    "unanimity n=10": lambda: known(random_unanimity_game(10, seed=0)),
    "unanimity n=20": lambda: known(random_unanimity_game(20, seed=0)),
    "unanimity n=50": lambda: known(random_unanimity_game(50, seed=0)),
    "voting n=30": lambda: known(voting30()),
    "airport n=20": lambda: known(airport20()),
}


# --------------------------------------------------------------------------- peers


class Counter:
    """The game as a peer sees it: memoised, counting distinct coalitions."""

    def __init__(self, game):
        self.game = game
        self.n = game.n_players
        self.memo: dict[bytes, float] = {}

    def __call__(self, masks) -> np.ndarray:
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        keys = [np.packbits(m).tobytes() for m in masks]
        new = [i for i, k in enumerate(keys) if k not in self.memo]
        if new:
            uniq = {keys[i]: i for i in new}
            vals = self.game(masks[list(uniq.values())])
            self.memo.update(zip(uniq, map(float, vals)))
        return np.array([self.memo[k] for k in keys])

    @property
    def n_evaluations(self) -> int:
        return len(self.memo)


def at_budget(fn, game, budget: int, seed: int, start: int, cap: int):
    """Run ``fn(counter, nominal, seed)`` at the largest nominal size (a budget as the
    peer counts it, or a number of samples) whose distinct evaluations fit ``budget``.

    Starts at ``start`` and doubles while evaluations stay under the budget (and
    under 2**n, after which more samples are free repeats), up to ``cap``; then
    bisects to within 1/16 of the size. Returns (values, distinct evaluations, nominal size).
    """
    full = 2**game.n_players if game.n_players < 60 else math.inf

    def trial(m):
        c = Counter(game)
        return fn(c, m, seed), c.n_evaluations

    m = start
    vals, used = trial(m)
    if used > budget:
        raise RuntimeError(f"{used} distinct evaluations at the smallest size {m}")
    lo, best, best_used, hi = m, vals, used, None
    while used < min(budget, full) and m < cap:
        m = min(2 * m, cap)
        vals, used = trial(m)
        if used > budget:
            hi = m
            break
        lo, best, best_used = m, vals, used
    # to 1/16 of the size: a few evaluations short at most, and far fewer fits
    while hi is not None and hi - lo > max(1, lo // 16):
        mid = (lo + hi) // 2
        vals, used = trial(mid)
        if used <= budget:
            lo, best, best_used = mid, vals, used
        else:
            hi = mid
    return best, best_used, lo


def shapiq_peers():
    """label -> run(game, budget, seed) for shapiq's Shapley approximators."""
    try:
        import shapiq
    except ImportError:
        return {}

    def make(cls, **kw):
        def fn(counter, nominal, seed):
            approx = cls(counter.n, random_state=seed, **kw)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = approx.approximate(nominal, counter)
            return np.asarray(res.get_n_order_values(1), float)

        # most count distinct coalitions; those that count repeats get a larger
        # nominal budget until their distinct evaluations reach ours
        return lambda game, budget, seed: at_budget(fn, game, budget, seed, budget, 8 * budget)

    A = shapiq.approximator
    return {
        "shapiq KernelSHAP (paired, border)": make(A.KernelSHAP, pairing_trick=True),
        "shapiq KernelSHAP (border)": make(A.KernelSHAP),
        "shapiq UnbiasedKernelSHAP": make(A.UnbiasedKernelSHAP),
        "shapiq kADD-SHAP": make(A.kADDSHAP, max_order=2),
        "shapiq stratified SVARM": make(A.SVARM),
        "shapiq StratifiedSamplingSV": make(A.StratifiedSamplingSV),
        "shapiq PermutationSamplingSV": make(A.PermutationSamplingSV),
        "shapiq OwenSamplingSV": make(A.OwenSamplingSV),
    }


def pydvl_peers():
    """label -> run(game, budget, seed) for pyDVL's Shapley valuations (game utility)."""
    try:
        from joblib import parallel_config
        from pydvl.valuation import games as pg
        from pydvl.valuation.methods import ShapleyValuation
        from pydvl.valuation.samplers import (
            AntitheticPermutationSampler,
            PermutationSampler,
        )
        from pydvl.valuation.stopping import MaxSamples
    except ImportError:
        return {}

    class Utility(pg.DummyGameUtility):
        """pyDVL's game utility, but v(empty) from the game (pyDVL's is 0)."""

        def __init__(self, counter):
            super().__init__(score=None, score_range=(-np.inf, np.inf))
            self.counter = counter

        def __call__(self, sample):
            mask = np.zeros(self.counter.n, dtype=bool)
            if sample is not None and len(sample.subset):
                mask[np.asarray(sample.subset, dtype=int)] = True
            return float(self.counter(mask[None, :])[0])

        def with_dataset(self, dataset, copy=True):
            u = Utility(self.counter) if copy else self
            u._training_data = dataset
            return u

    def make(make_sampler):
        def fn(counter, m, seed):
            data = pg.DummyGameDataset(counter.n)
            sampler = make_sampler(seed)
            val = ShapleyValuation(Utility(counter), sampler, MaxSamples(sampler, m),
                                   show_warnings=False)
            with parallel_config(n_jobs=1):
                val.fit(data)
            res = val.result
            out = np.zeros(counter.n)
            out[np.asarray(res.indices, dtype=int)] = res.values
            return out

        # samples, not evaluations: the most samples whose evaluations fit the budget,
        # at most 10 * budget (the project's permutation estimators' draw cap)
        return lambda game, budget, seed: at_budget(fn, game, budget, seed, 1, 10 * budget)

    return {
        "pyDVL permutation": make(lambda s: PermutationSampler(seed=s)),
        "pyDVL antithetic permutation": make(lambda s: AntitheticPermutationSampler(seed=s)),
    }
    # pyDVL's StratifiedShapleyValuation sampler is left out: driven through
    # MaxSamples it evaluated the same 19 coalitions (n = 10) or 100 (n = 50) at any
    # sample count from 1 to 10 * budget, so no sample count spends our budget


# --------------------------------------------------------------------------- runs


def run_all(games, budgets, seeds, side="all", only=None):
    peers = {**shapiq_peers(), **pydvl_peers()} if side in ("all", "peers") else {}
    project = PROJECT if side in ("all", "project") else []
    rows = []
    for gname in games:
        game, exact = GAMES[gname]()
        n = game.n_players
        for budget in budgets:
            for label, name, params in project:
                if only and label not in only:
                    continue
                est = get_estimator(name, **params)
                if budget < est.min_budget(n):
                    continue
                for seed in seeds:
                    t0 = time.perf_counter()
                    att = est.estimate(game, budget, seed=seed)
                    rows.append(dict(game=gname, n=n, budget=budget, side="project",
                                     estimator=label, seed=seed,
                                     rel_l2=rel_l2(att.values, exact),
                                     n_evaluations=att.n_evaluations,
                                     seconds=time.perf_counter() - t0, note=""))
            for label, run in peers.items():
                if only and label not in only:
                    continue
                for seed in seeds:
                    t0 = time.perf_counter()
                    note, err, used, nominal = "", math.nan, 0, 0
                    try:
                        vals, used, nominal = run(game, budget, seed)
                        err = rel_l2(vals, exact)
                        if used > budget:
                            note = "over budget"
                    except Exception as exc:  # a peer failing is a result, not a crash
                        note = f"failed: {type(exc).__name__}: {exc}"[:120]
                    rows.append(dict(game=gname, n=n, budget=budget, side="peer",
                                     estimator=label, seed=seed, rel_l2=err,
                                     n_evaluations=used, nominal=nominal,
                                     seconds=time.perf_counter() - t0, note=note))
            done = pd.DataFrame(rows)
            cell = done[(done.game == gname) & (done.budget == budget)]
            print(f"{gname:>16} {budget:>5}: "
                  + ", ".join(f"{e} {v:.3f}" for e, v in
                              cell.groupby("estimator").rel_l2.mean().sort_values().head(4).items()),
                  flush=True)
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame, seeds) -> str:
    ok = df[df.note == ""]
    mean = ok.groupby(["game", "budget", "side", "estimator"]).rel_l2.agg(["mean", "count"])
    mean = mean[mean["count"] == len(seeds)]["mean"].reset_index()
    order = list(GAMES)
    lines = [
        "# The project's estimators beside shapiq 1.4.1 and pyDVL 0.10.0",
        "",
        f"Relative L2 error against exact values, mean over {len(seeds)} seeds "
        f"({', '.join(map(str, seeds))}); budgets in distinct game evaluations, anchors "
        "included, counted the same way for both sides. Produced by "
        "`scripts/peer_comparison.py` (per-run rows in `results/peers_project.csv` and "
        "`results/peers_peers.csv`).",
        "",
        "| game | budget | best project estimator | error | best peer estimator | error | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    worst = []
    for g in order:
        for b in sorted(mean.budget.unique()):
            cell = mean[(mean.game == g) & (mean.budget == b)]
            if cell.empty:
                continue
            pr = cell[cell.side == "project"].sort_values("mean")
            pe = cell[cell.side == "peer"].sort_values("mean")
            if pr.empty:
                continue
            p0 = pr.iloc[0]
            if pe.empty:
                lines.append(f"| {g} | {b} | {p0.estimator} | {p0['mean']:.3g} | - | - | - |")
                continue
            q0 = pe.iloc[0]
            if max(p0["mean"], q0["mean"]) < 1e-9:
                ratio = 1.0  # both exact (to rounding): a tie
            else:
                ratio = p0["mean"] / q0["mean"] if q0["mean"] > 0 else math.inf
            flag = " **peer wins**" if ratio > 1.2 else ""
            worst.append((ratio, g, b))
            lines.append(f"| {g} | {b} | {p0.estimator} | {p0['mean']:.3g} | {q0.estimator} | "
                         f"{q0['mean']:.3g} | {ratio:.2f}{flag} |")
    lines += ["", "Ratio = best project error / best peer error (below 1: the project is "
              "better; both exact, errors below 1e-9, count as a tie, 1).", ""]
    lost = sorted(((r, g, b) for r, g, b in worst if r > 1.2), reverse=True)
    lines += [f"Cells where a peer is more than 1.2x better: {len(lost)} of {len(worst)}"
              + (": " + "; ".join(f"{g} at {b} ({r:.2f}x)" for r, g, b in lost) if lost else "")
              + "."]
    notes = ROOT / "results" / "peers_notes.md"
    if notes.exists():  # hand-written reading of the table, kept across reruns
        lines += ["", notes.read_text().strip()]
    lines.append("")
    bad = df[df.note != ""]
    if not bad.empty:
        lines += ["Peer runs left out (over budget or failed):", ""]
        for (e, note), grp in bad.groupby(["estimator", "note"]):
            cells = sorted({f"{g} @ {b}" for g, b in zip(grp.game, grp.budget)})
            lines.append(f"- {e}: {note} ({len(grp)} runs: {', '.join(cells[:6])}"
                         f"{' ...' if len(cells) > 6 else ''})")
        lines.append("")
    # every estimator's mean error, one table per game
    lines += ["## Every estimator", ""]
    for g in order:
        cell = mean[mean.game == g]
        if cell.empty:
            continue
        wide = cell.pivot_table(index=["side", "estimator"], columns="budget", values="mean")
        wide = wide.sort_index(level=0, ascending=False)
        lines += [f"### {g}", "", "| side | estimator | " + " | ".join(map(str, wide.columns)) + " |",
                  "|---|---|" + "---|" * len(wide.columns)]
        for (side, est), r in wide.iterrows():
            lines.append(f"| {side} | {est} | " + " | ".join(
                "" if pd.isna(x) else f"{x:.3g}" for x in r.values) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", nargs="+", default=list(GAMES), choices=list(GAMES))
    ap.add_argument("--budgets", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--side", choices=["project", "peers", "all"], default="all")
    ap.add_argument("--only", nargs="+", help="estimator labels to run (default: all)")
    ap.add_argument("--summarise-only", action="store_true",
                    help="rewrite <out>.md from the <out>_<side>.csv files")
    ap.add_argument("--out", default=str(ROOT / "results" / "peers"),
                    help="output stem: <out>_<side>.csv and <out>.md")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sides = [] if args.summarise_only else (
        ["project", "peers"] if args.side == "all" else [args.side])
    df = run_all(args.games, args.budgets, args.seeds, args.side, args.only) if sides else None
    for side in sides:
        part = df[df.side == ("project" if side == "project" else "peer")]
        path = Path(f"{out}_{side}.csv")
        if args.only and path.exists():  # a partial rerun replaces only its own rows
            old = pd.read_csv(path, keep_default_na=False, na_values=[""])
            keep = ~(old.estimator.isin(part.estimator.unique()) & old.game.isin(args.games)
                     & old.budget.isin(args.budgets))
            part = pd.concat([old[keep], part], ignore_index=True)
        part.to_csv(path, index=False)
    frames_paths = [p for p in (Path(f"{out}_project.csv"), Path(f"{out}_peers.csv"))
                    if p.exists()]
    frames = [pd.read_csv(p, keep_default_na=False, na_values=[""]) for p in frames_paths]
    both = pd.concat(frames, ignore_index=True)
    both["note"] = both["note"].astype(object).where(both["note"].notna(), "")
    out.with_suffix(".md").write_text(summarise(both, args.seeds) + "\n")
    print(f"wrote {out.with_suffix('.md')} from {', '.join(str(p) for p in frames_paths)}")


if __name__ == "__main__":
    main()
