"""Study (issue 29, item 3; not part of the library): would a second-order correction
close the approximate FID mode's gap on a flat (1/k) feature spectrum?

    python scripts/fid_second_order.py --d 256 --rank 32 --coalitions 300 --draw sizes
    python scripts/fid_second_order.py --d 256 --rank 32 --coalitions 200 --draw half

On the synthetic bank of ``scripts/proxy_cost.py`` (n units of 200 samples), per
coalition: the whitened, pooled-turned matrix W of the approximate mode
(:meth:`WhitenedBasis.turned`) mixed in full, and Tr W^(1/2) three ways against its
exact eigenvalues:

- ``pooled``: the library's approximate mode (the top-r block exactly, the diagonal
  elsewhere);
- ``coupling``: that, less the second-order term of the pairs between the top block (in
  its eigenbasis) and the rest;
- ``second-order``: that, less the second-order term of every pair outside the top
  block: Tr f(D + E) ~ Tr f(D) + sum_{p<q} E_pq^2 (f'(l_p) - f'(l_q)) / (l_p - l_q), which
  for f = sqrt is - E_pq^2 / (2 s_p s_q (s_p + s_q)), s = sqrt(l).

FID's relative error and Spearman against exact over the coalitions, by coalition size,
and the seconds each step took. The correction needs every entry of the mixed d x d
matrix: the mixing the approximate mode avoids (results/proxy_paper_scale.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_cost import random_weights, synthetic_bank  # noqa: E402


def second_order(W: np.ndarray, r: int) -> tuple[float, float, float]:
    """(pooled, coupling-corrected, fully corrected) Tr W^(1/2) of one symmetric W whose
    first r coordinates are the kept block."""
    lam_t, U = np.linalg.eigh(W[:r, :r])
    lt = np.clip(lam_t, 0, None)
    dg = np.clip(np.diag(W)[r:], 0, None)
    base = float(np.sqrt(lt).sum() + np.sqrt(dg).sum())
    st, sr = np.sqrt(lt), np.sqrt(dg)
    tiny = 1e-300
    e_tr = U.T @ W[:r, r:]  # top block's eigenbasis against the rest
    e_rr = W[r:, r:].copy()
    np.fill_diagonal(e_rr, 0)
    g_tr = 1.0 / np.maximum(2 * np.outer(st, sr) * (st[:, None] + sr[None, :]), tiny)
    g_rr = 1.0 / np.maximum(2 * np.outer(sr, sr) * (sr[:, None] + sr[None, :]), tiny)
    c_tr = float((e_tr**2 * g_tr).sum())
    c_rr = 0.5 * float((e_rr**2 * g_rr).sum())  # each unordered pair once
    return base, base - c_tr, base - c_tr - c_rr


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=258)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--alpha", type=float, default=1.0, help="spectrum: variance of dimension k ~ k^-alpha")
    p.add_argument("--coalitions", type=int, default=200)
    p.add_argument("--draw", choices=("sizes", "half"), default="sizes")
    args = p.parse_args(argv)
    from scipy.stats import spearmanr
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    n, d, r = args.n, args.d, args.rank
    bank = synthetic_bank(n, d, alpha=args.alpha)
    units = list(bank._stats)
    second = np.stack([u.second for u in units])
    mean = np.stack([u.mean for u in units])
    count = np.array([u.count for u in units], dtype=float)
    pooled = second.mean(0) - np.outer(mean.mean(0), mean.mean(0))
    basis = bank.whitened()[0].turned(pooled)  # the approximate mode's basis, at full rank
    T = basis.vec
    rot = np.ascontiguousarray(np.einsum("ai,uab,bj->uij", T, second, T, optimize=True)).reshape(n, d * d)
    rmean = mean @ T
    w = random_weights(n, args.coalitions, np.random.default_rng(3), args.draw)
    ways = {"exact": [], "pooled": [], "coupling": [], "second-order": []}
    seconds = {"mixing": 0.0, "exact eigensolve": 0.0, "approximations": 0.0}
    for row in w:
        c = (row > 0) @ count
        t0 = time.perf_counter()
        b = row @ rmean
        W = c / (c - 1) * ((row @ rot).reshape(d, d) - np.outer(b, b))
        t1 = time.perf_counter()
        ways["exact"].append(float(np.sqrt(np.clip(np.linalg.eigvalsh(W), 0, None)).sum()))
        t2 = time.perf_counter()
        for k, v in zip(("pooled", "coupling", "second-order"), second_order(W, r)):
            ways[k].append(v)
        t3 = time.perf_counter()
        seconds["mixing"] += t1 - t0
        seconds["exact eigensolve"] += t2 - t1
        seconds["approximations"] += t3 - t2
    mu = w @ mean
    scale = np.array([(x > 0) @ count for x in w])
    scale = scale / (scale - 1)
    tr_cov = scale * (w @ np.einsum("uii->u", second) - (mu**2).sum(1))
    rest = ((mu - bank.real.mean) ** 2).sum(1) + tr_cov + basis.trace_r

    def fid(tr):
        return rest - 2 * np.asarray(tr)

    exact = fid(ways["exact"])
    sizes = (w > 0).sum(1)
    print(f"n = {n}, d = {d}, r = {r}, alpha = {args.alpha:g}, {len(w)} coalitions ({args.draw}), one BLAS thread")
    print("| way | Spearman | median rel. error | p90 | max |" + "".join(
        f" sizes {lo}-{hi - 1}: median, max |" for lo, hi in ((1, 40), (40, 80), (80, n + 1))))
    print("|---|---|---|---|---|" + "---|" * 3)
    for k in ("pooled", "coupling", "second-order"):
        rel = np.abs(fid(ways[k]) - exact) / np.abs(exact)
        cells = []
        for lo, hi in ((1, 40), (40, 80), (80, n + 1)):
            m = (sizes >= lo) & (sizes < hi)
            cells.append(f"{np.median(rel[m]):.2%}, {rel[m].max():.2%}" if m.any() else "-")
        print(f"| {k} | {spearmanr(fid(ways[k]), exact)[0]:.5f} | {np.median(rel):.3%} | {np.quantile(rel, 0.9):.2%} "
              f"| {rel.max():.2%} | " + " | ".join(cells) + " |")
    print("ms per coalition: " + ", ".join(f"{k} {1e3 * v / len(w):.1f}" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
