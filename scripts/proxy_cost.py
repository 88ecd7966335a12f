"""What one proxy-game evaluation costs: FID from mixed per-unit statistics at large d.

    python scripts/proxy_cost.py                      # the table of results/proxy_paper_scale.md
    python scripts/proxy_cost.py --dims 64,256 --players 20
    python scripts/proxy_cost.py --accuracy 1000 --accuracy-dim 1024   # fid_rank vs exact
    python scripts/proxy_cost.py --accuracy 1000 --accuracy-dim 2048 --ranks 256,384 --alpha 2 --store /tmp/banks
    python scripts/proxy_cost.py --peak 1024          # peak memory of calls, budget-split
    python scripts/proxy_cost.py --regenerate         # digits10: statistics vs re-generation

Synthetic per-unit statistics of ``--per-unit`` samples (features with a power-law
spectrum, variance of dimension k ~ 1/k, each unit its own mean and scales), timed on
``--threads`` BLAS threads, several coalitions per call (as estimators call games), for:
FID as computed up to commit d58ea49 (:func:`todays_neg_fid`: mix, correct, C_r^(1/2) C
C_r^(1/2) per coalition), the new exact way (:class:`StatsBank`: one eigensolve per
coalition in the whitened basis), the approximate mode (``fid_rank``), and a naive
reference (``scipy.linalg.sqrtm`` of C C_r per coalition); and the time of one d x d
symmetric eigensolve (``numpy.linalg.eigvalsh`` on as many stacked matrices, timed just
before and after the exact way), the floor of an exact evaluation. Each time is the best
of two calls (one for the naive reference), the set-ups outside the timers.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np

from surrogateshap.tasks.features.statistics import (
    LabelStats,
    StatsBank,
    _unbiased_cov,
    _unbiased_scale,
)


def todays_neg_fid(bank: StatsBank, w: np.ndarray, sqrt_r: np.ndarray) -> np.ndarray:
    """-FID as computed up to commit d58ea49, the reference of the fast path (``sqrt_r``:
    :func:`psd_sqrt` of the real data's unbiased covariance)."""
    d = bank.mean.shape[1]
    mu = w @ bank.mean
    count = (w > 0) @ bank.count
    cov = _unbiased_cov((w @ bank.second).reshape(-1, d, d), mu, count)
    cov_r = _unbiased_cov(bank.real.second, bank.real.mean, bank.real.count)
    eig = np.linalg.eigvalsh(sqrt_r @ cov @ sqrt_r)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum(-1)
    diff = mu - bank.real.mean
    return -((diff**2).sum(-1) + np.trace(cov, axis1=-2, axis2=-1) + np.trace(cov_r) - 2 * tr_covmean)


def psd_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def naive_neg_fid(bank: StatsBank, w: np.ndarray) -> np.ndarray:
    """-FID per coalition with ``scipy.linalg.sqrtm`` of C C_r (the textbook formula, as
    pytorch-fid computes it)."""
    from scipy.linalg import sqrtm

    d = bank.mean.shape[1]
    cov_r = _unbiased_cov(bank.real.second, bank.real.mean, bank.real.count)
    out = []
    for row in w:
        mu = row @ bank.mean
        cov = _unbiased_cov((row @ bank.second).reshape(d, d), mu, (row > 0) @ bank.count)
        covmean = np.real(sqrtm(cov @ cov_r))
        out.append(((mu - bank.real.mean) ** 2).sum() + np.trace(cov) + np.trace(cov_r) - 2 * np.trace(covmean))
    return -np.array(out)


def _stats(feats: np.ndarray) -> LabelStats:
    return LabelStats(mean=feats.mean(0), second=feats.T @ feats / len(feats), pbar=np.ones(1),
                      neg_entropy=0.0, modes=np.ones(1), count=len(feats))


def synthetic_bank(n: int, d: int, per_unit: int = 200, seed: int = 0, store=None, alpha: float = 1.0,
                   **kw) -> StatsBank:
    """n units of ``per_unit`` samples each and a real set of 2d + 1000, features with
    variance ~ k^-alpha along dimension k (a power-law spectrum; alpha = 1 by default).
    ``store``: a folder where the statistics are written once, unit by unit, and read back
    memory-mapped (as a task's bank is; the whitened arrays are kept there too), so
    n = 258, d = 2,048 needs no 8 GiB in memory."""
    rng = np.random.default_rng(seed)
    scale = np.arange(1, d + 1) ** (-alpha / 2)
    units = (_stats(rng.normal(size=(per_unit, d)) * scale * np.exp(0.3 * rng.normal(size=d))
                    + 0.5 * scale * rng.normal(size=d)) for _ in range(n))
    if store is None:
        stats = list(units)
        return StatsBank(stats, _stats(rng.normal(size=(2 * d + 1000, d)) * scale), **kw)
    from surrogateshap.tasks.features.statistics import read_stats, write_stats
    from surrogateshap.tasks.features.stats_store import ArrayStore

    tag = "" if alpha == 1 else f"-a{alpha:g}"
    root, key = Path(store) / f"synthetic-n{n}-d{d}{tag}", {"n": n, "d": d, "per_unit": per_unit, "seed": seed}
    if alpha != 1:
        key["alpha"] = alpha
    parts = {p: ArrayStore(root / p, {"part": p, **key}) for p in ("units", "real")}
    if any(read_stats(p) is None for p in parts.values()):
        with parts["units"].writing() as w:
            write_stats(w, units, n)
        with parts["real"].writing() as w:
            write_stats(w, [_stats(rng.normal(size=(2 * d + 1000, d)) * scale)])
    return StatsBank(read_stats(parts["units"], True), read_stats(parts["real"], True)[0], **kw)


def cached_values(bank: StatsBank, w: np.ndarray, folder, step: int = 40, compute: bool = True) -> np.ndarray:
    """-FID of the rows of ``w`` by ``bank``, computed ``step`` rows at a time into
    ``folder`` (one .npy per step, written when done) and read back from there: the
    exact side of an accuracy run, paid for once and resumable. ``compute=False``: only
    the leading rows already there."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(0, len(w), step):
        path = folder / f"rows-{i:06d}-{min(i + step, len(w)):06d}.npy"
        if not path.exists() and not compute:
            break
        if not path.exists():
            t0 = time.perf_counter()
            v = bank.utility("neg_fid", w[i : i + step])
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, v)
            tmp.rename(path)
            print(f"{path.name}: {time.perf_counter() - t0:.1f} s", flush=True)
        out.append(np.load(path))
    return np.concatenate(out)


def random_weights(n: int, m: int, rng, draw: str = "sizes") -> np.ndarray:
    """m coalitions, their units equally weighted: of uniformly drawn sizes ("sizes": small
    coalitions as often as large ones), or every nonempty coalition equally likely ("half":
    each unit in with probability 1/2, so sizes gather near n / 2)."""
    if draw == "half":
        masks = rng.random((m, n)) < 0.5
        masks[~masks.any(1), 0] = True
        return masks / masks.sum(1, keepdims=True)
    masks = np.zeros((m, n), bool)
    for row, k in zip(masks, rng.integers(1, n + 1, size=m)):
        row[rng.choice(n, size=k, replace=False)] = True
    return masks / masks.sum(1, keepdims=True)


#: the timer of the tables: wall-clock seconds, or with ``--clock cpu`` the process's CPU
#: seconds (on a loaded shared machine: what the one thread spent, not what it waited)
clock = time.perf_counter


def _per_call(fn, w) -> float:
    t0 = clock()
    fn(w)
    return (clock() - t0) / len(w)


def timing_table(dims, players, rank, coalitions, naive: bool) -> list[dict]:
    rows = []
    for d in dims:
        m = coalitions or max(4, min(64, 2**24 // d**2))
        a = np.random.default_rng(1).normal(size=(d, d))
        a = np.stack([a + a.T] * m)  # timed as a batch, like the coalitions (the load varies)
        for n in players:
            bank = synthetic_bank(n, d)
            w = random_weights(n, m, np.random.default_rng(2))
            sqrt_r = psd_sqrt(_unbiased_cov(bank.real.second, bank.real.mean, bank.real.count))
            row = {"d": d, "n": n, "coalitions": m,
                   "today ms": _best(lambda x: todays_neg_fid(bank, x, sqrt_r), w)}
            if naive:
                row["naive ms"] = _best(lambda x: naive_neg_fid(bank, x), w[: max(1, m // 4)], 1)
            del bank.second  # today's stack of raw second moments, not used by the new way
            t0 = clock()
            bank.whitened()
            row["exact set-up s"] = clock() - t0
            eig = _best(lambda x: np.linalg.eigvalsh(a), w)
            row["exact ms"] = _best(lambda x: bank.utility("neg_fid", x), w)
            row["eigvalsh ms"] = min(eig, _best(lambda x: np.linalg.eigvalsh(a), w))
            if rank and rank < d:
                approx = StatsBank(bank._stats, bank.real, fid_rank=rank)
                t0 = clock()
                approx.whitened()
                row[f"rank {rank} set-up s"] = clock() - t0
                row[f"rank {rank} ms"] = _best(lambda x: approx.utility("neg_fid", x), w)
                del approx
            row["exact / eigvalsh"] = row["exact ms"] / row["eigvalsh ms"]
            row["today / eigvalsh"] = row["today ms"] / row["eigvalsh ms"]
            rows.append(row)
            print(row, flush=True)
            del bank
    return rows


def _best(fn, w, repeats: int = 2) -> float:
    """ms per coalition, the best of ``repeats`` calls (the machine is shared)."""
    return 1e3 * min(_per_call(fn, w) for _ in range(repeats))


def accuracy(n: int, d: int, ranks, m: int, task: str | None = None, store=None, alpha: float = 1.0,
             timed: int = 40, cached_only: bool = False, draw: str = "sizes") -> list[dict]:
    """The approximate mode at each rank in ``ranks`` against exact FID over m random
    coalitions (of the synthetic n x d bank with spectrum ``alpha``, kept in ``store`` if
    given, or of ``task``'s proxy bank). With a ``store``, the exact values are computed
    once into it (:func:`cached_values`) and read back by later runs. Speed: both ways on
    the first ``timed`` coalitions, one call each, the set-ups outside the timers.
    ``cached_only``: score only the leading coalitions whose exact values are stored.
    ``draw``: how the coalitions are drawn (:func:`random_weights`)."""
    from scipy.stats import spearmanr

    if task:
        from surrogateshap.tasks import get_task

        exact = get_task(task).bank()
        n, d = exact.mean.shape
    else:
        exact = synthetic_bank(n, d, store=store, alpha=alpha)
    w = random_weights(n, m, np.random.default_rng(3), draw)
    t0 = clock()
    exact.whitened()
    setup = clock() - t0
    if store is None:
        e = -exact.utility("neg_fid", w)
    else:
        tag = "" if alpha == 1 else f"-a{alpha:g}"
        e = -cached_values(exact, w, Path(store) / (f"exact-{task or 'synthetic'}-n{n}-d{d}{tag}-seed3-m{m}"
                                             + ("" if draw == "sizes" else f"-{draw}")),
                           compute=not cached_only)
        w = w[: len(e)]
    t_exact = _per_call(lambda x: exact.utility("neg_fid", x), w[:timed])
    traces = exact.whitened()[4]
    mu = w @ exact.mean
    tr_cov = _unbiased_scale((w > 0) @ exact.count) * (w @ traces - (mu**2).sum(1))
    ratio = np.median((tr_cov + exact.whitened()[0].trace_r) / e)
    rows = []
    for rank in ranks:
        approx = StatsBank(exact._stats, exact.real, fid_rank=rank)
        t0 = clock()
        approx.whitened()
        approx_setup = clock() - t0
        t_approx = _per_call(lambda x, bank=approx: bank.utility("neg_fid", x), w[:timed])
        a = -approx.utility("neg_fid", w)
        rel = np.abs(a - e) / np.abs(e)
        rows.append({"bank": task or f"synthetic alpha={alpha:g}", "draw": draw, "n": n, "d": d, "rank": rank, "coalitions": len(w),
                     "spearman": float(spearmanr(a, e)[0]), "median rel. error": float(np.median(rel)),
                     "p90 rel. error": float(np.quantile(rel, 0.9)), "max rel. error": float(rel.max()),
                     "traces / FID": float(ratio), "exact ms": 1e3 * t_exact, "approx ms": 1e3 * t_approx,
                     "speed-up": t_exact / t_approx, "exact set-up s": setup, "approx set-up s": approx_setup})
        print(rows[-1], flush=True)
    return rows


def peak_memory(d: int, n: int, budget: int, counts=()) -> list[dict]:
    """tracemalloc's peak of calls of ``counts`` coalitions (default: 1, 2 and 4 times
    what one budget-split step holds), the bank built first; and today's way's peak for
    one step's coalitions."""
    bank = synthetic_bank(n, d, memory_budget=budget)
    bank.whitened()
    step = bank.rows_per_call()
    rows = []
    for m in counts or (step, 2 * step, 4 * step):
        w = random_weights(n, m, np.random.default_rng(4))
        tracemalloc.start()
        t0 = time.perf_counter()
        bank.utility("neg_fid", w)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rows.append({"way": "exact", "d": d, "n": n, "budget MiB": budget / 2**20, "rows per step": step,
                     "coalitions": m, "peak MiB": peak / 2**20, "seconds": seconds})
        print(rows[-1], flush=True)
    w = random_weights(n, step, np.random.default_rng(4))
    sqrt_r = psd_sqrt(_unbiased_cov(bank.real.second, bank.real.mean, bank.real.count))
    bank.second  # noqa: B018 - stacked outside the measurement, as today's bank held it
    tracemalloc.start()
    t0 = time.perf_counter()
    todays_neg_fid(bank, w, sqrt_r)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rows.append({"way": "today (unsplit)", "d": d, "n": n, "budget MiB": None, "rows per step": None,
                 "coalitions": len(w), "peak MiB": peak / 2**20, "seconds": seconds})
    print(rows[-1], flush=True)
    return rows


def regeneration():
    """digits10 (d = 64): the paper's per-coalition re-generation vs the statistics."""
    from surrogateshap.tasks import get_task

    task = get_task("digits10")
    game = task.proxy_game("neg_fid", mode="regenerate")
    m = np.zeros((1, 10), bool)
    m[0, :5] = True
    game(m)  # full model (cached after the first run)
    t0 = time.perf_counter()
    game(m)
    regen = time.perf_counter() - t0
    stats = task.proxy_game("neg_fid")
    stats(m)
    t0 = time.perf_counter()
    stats(np.repeat(m, 256, 0))
    fast = (time.perf_counter() - t0) / 256
    print(f"\ndigits10 (d = 64): re-generating {task.config.n_samples} images per coalition "
          f"{1e3 * regen:.0f} ms; statistics mode {1e3 * fast:.3f} ms ({regen / fast:.0f}x cheaper)")


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--dims", type=_ints, default=[64, 256, 1024, 2048], help="feature dimensions d")
    p.add_argument("--players", type=_ints, default=[20, 258], help="numbers of units n")
    p.add_argument("--skip", type=str, default="258x2048",
                   help="n x d points to leave out (comma list; default 258x2048: its bank is 8.1 GiB)")
    p.add_argument("--coalitions", type=int, default=0, help="coalitions per point (0: by d)")
    p.add_argument("--rank", type=int, default=256, help="the approximate mode's fid_rank (0: none)")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="time by the wall clock or by the process's CPU time (one thread on a loaded machine)")
    p.add_argument("--no-naive", action="store_true", help="leave out the scipy sqrtm reference")
    p.add_argument("--accuracy", type=int, default=0, metavar="M",
                   help="compare fid_rank with exact over M random coalitions instead of timing")
    p.add_argument("--accuracy-dim", type=int, default=1024)
    p.add_argument("--accuracy-players", type=int, default=258)
    p.add_argument("--accuracy-task", default=None, help="a task whose proxy bank --accuracy uses instead")
    p.add_argument("--store", default=None, metavar="DIR",
                   help="--accuracy: keep the synthetic bank (its whitened arrays, the exact values) in DIR")
    p.add_argument("--ranks", type=_ints, default=[], help="--accuracy: several fid_rank values (default: --rank)")
    p.add_argument("--alpha", type=float, default=1.0,
                   help="the synthetic features' spectrum: variance of dimension k ~ k^-alpha")
    p.add_argument("--timed", type=int, default=40, help="--accuracy: coalitions timed each way")
    p.add_argument("--draw", choices=("sizes", "half"), default="sizes",
                   help="--accuracy: coalitions of uniform sizes, or each unit in with probability 1/2")
    p.add_argument("--cached-only", action="store_true",
                   help="--accuracy with --store: score only the coalitions whose exact values are stored")
    p.add_argument("--peak", type=int, default=0, metavar="D",
                   help="measure peak memory of budget-split calls at dimension D instead of timing")
    p.add_argument("--budget-mib", type=int, default=256, help="the memory budget of --peak")
    p.add_argument("--peak-players", type=int, default=20, help="units n of --peak")
    p.add_argument("--peak-coalitions", type=_ints, default=[],
                   help="coalitions per call of --peak (default: 1, 2, 4 budget-split steps)")
    p.add_argument("--regenerate", action="store_true", help="digits10: statistics vs re-generation")
    args = p.parse_args(argv)
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    from threadpoolctl import threadpool_limits

    with threadpool_limits(args.threads):
        if args.regenerate:
            return regeneration()
        if args.accuracy:
            import pandas as pd

            rows = accuracy(args.accuracy_players, args.accuracy_dim, args.ranks or [args.rank], args.accuracy,
                            args.accuracy_task, args.store, args.alpha, args.timed, args.cached_only, args.draw)
            print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4g"))
            return
        if args.peak:
            import pandas as pd

            rows = peak_memory(args.peak, args.peak_players, args.budget_mib * 2**20, args.peak_coalitions)
            print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"))
            return
        import pandas as pd

        skip = {tuple(int(v) for v in s.split("x")) for s in args.skip.split(",") if s.strip()}
        rows = [r for d in args.dims for r in timing_table(
            [d], [n for n in args.players if (n, d) not in skip], args.rank, args.coalitions, not args.no_naive)]
        print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3g"))


if __name__ == "__main__":
    main()
