"""Compare the SurrogateSHAP variants on games with known Shapley values.

Relative L2 error ||phi_hat - phi|| / ||phi|| against the exact values, mean (and std)
over seeds, for budgets in distinct game evaluations (anchors included).

Games (n = 10 and 50):
- unan:      random_unanimity_game(n, seed=1)
- unan-big:  the same terms, offset -40, plus singleton terms -300 (player 0) and
             -200 (player 1)
- unan-jump: v(S) = u(S) - 400 [S nonempty]: the empty coalition is an outlier, as
             for -FID of a diffusion model (v(empty) = -43, single classes ~ -423);
             exact values = u's values - 400 / n
- airport:   AirportGame with costs uniform in (0, 100)

Usage: python scripts/compare_surrogate_variants.py [--seeds 3] [--budgets 64 128 256 512]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from surrogateshap import AirportGame, FunctionGame, UnanimityGame, random_unanimity_game
from surrogateshap.registry import get_estimator

#: one class, its variants through parameters
VARIANTS = {
    "published": ("surrogateshap-published", {}),
    "anchor-weight": ("surrogateshap", {"efficiency": "anchor-weight"}),
    "anchor-w10": ("surrogateshap", {"efficiency": "anchor-weight", "anchor_weight": 10.0}),
    "centered": ("surrogateshap", {"efficiency": "centered"}),
    "equal-split": ("surrogateshap", {}),
    "adj-kernel": ("surrogateshap", {"efficiency": "none", "adjustment": "kernelshap",
                                     "adjustment_params": {"unbiased": True}}),
    "adj-perm": ("surrogateshap", {"efficiency": "none", "adjustment": "permutation-antithetic"}),
}


def make_games(n: int):
    u = random_unanimity_game(n, seed=1)
    big = UnanimityGame(
        n, u.terms + [(0,), (1,)], list(u.coefficients) + [-300.0, -200.0], offset=-40.0
    )
    jump = FunctionGame(lambda m: u(m) - 400.0 * m.any(axis=1), n, name="unan-jump")
    costs = np.random.default_rng(7).uniform(0, 100, n)
    air = AirportGame(costs)
    return {
        f"unan-{n}": (u, u.exact_values()),
        f"unan-big-{n}": (big, big.exact_values()),
        f"unan-jump-{n}": (jump, u.exact_values() - 400.0 / n),
        f"airport-{n}": (air, air.exact_values()),
    }


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budgets", type=int, nargs="+", default=[64, 128, 256, 512])
    ap.add_argument("--players", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    names = args.variants
    totals = {v: [] for v in names}
    wins = {v: 0 for v in names}
    cols = " | ".join(f"{v:>13}" for v in names)
    head = f"| {'game':<14} | {'budget':>6} | {cols} | pub. gap |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for n in args.players:
        for gname, (game, exact) in make_games(n).items():
            for budget in args.budgets:
                cells, means, gaps = [], {}, []
                for v in names:
                    reg, params = VARIANTS[v]
                    est = get_estimator(reg, **params)
                    if budget < est.min_budget(n):
                        cells.append(f"{'-':>13}")
                        continue
                    errs = []
                    for seed in range(args.seeds):
                        a = est.estimate(game, budget, seed=seed)
                        errs.append(rel_l2(a.values, exact))
                        if v == "published":
                            gaps.append(abs(a.extra["efficiency_gap"]) / abs(exact.sum()))
                    means[v] = float(np.mean(errs))
                    totals[v].append(means[v])
                    cells.append(f"{means[v]:6.3f}±{np.std(errs):5.3f}")
                if means:
                    wins[min(means, key=means.get)] += 1
                gap = f"{np.mean(gaps):8.3f}" if gaps else f"{'-':>8}"
                row = " | ".join(cells)
                print(f"| {gname:<14} | {budget:>6} | {row} | {gap} |", flush=True)
    print()
    print("mean rel. L2 over the cells each variant ran (lower is better), and cells won:")
    for v in names:
        if totals[v]:
            print(f"  {v:<14} {np.mean(totals[v]):.3f}  ({len(totals[v])} cells, {wins[v]} won)")
    print("pub. gap = |(v(N) - v(empty)) - sum(published values)| / |v(N) - v(empty)|")
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
