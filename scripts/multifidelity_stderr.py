"""How often multifidelity's +-2 stderr covers the exact Shapley values (regression solver).

    python scripts/multifidelity_stderr.py [--seeds 60] [--out results/multifidelity_stderr.md]

Two known games with exact values: the tests' 8-player unanimity target with a
fine-tuning and a proxy copy of their own (tests/test_multifidelity.py), and a 10-player
unanimity game with retraining-like noise (NoisyGame, sd 0.3) whose proxy is a noisier
copy (sd 0.6), its truth the noisy game's own exact values (enumerated). Per budget:
the share of (seed, player) pairs within +-2 stderr of the truth, and the median over
players of the reported stderr's root mean square over the actual error's (1 = right,
above 1 = conservative), for the per-level sandwich alone and with the jackknife.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from surrogateshap import UnanimityGame, get_estimator, random_unanimity_game
from surrogateshap.exact import shapley_from_table
from surrogateshap.game import all_coalitions
from surrogateshap.games import NoisyGame


def games():
    """(name, target, fidelities, truth, budgets)."""
    target = random_unanimity_game(8, n_terms=20, seed=0)

    def copy(scale, seed):
        d = random_unanimity_game(8, n_terms=10, seed=seed)
        return UnanimityGame(8, target.terms + d.terms, list(target.coefficients) + list(scale * d.coefficients))

    fid = {"target": 1000, "finetune": (copy(0.2, 11), 200), "proxy": (copy(0.6, 12), 0)}
    yield "unanimity 8, target + FT + proxy", target, fid, target.exact_values(), (12, 40, 100)
    yield "unanimity 8, target alone", target, {"target": 1000}, target.exact_values(), (12, 40, 100)
    base = random_unanimity_game(10, n_terms=30, seed=3)
    noisy = NoisyGame(base, 0.3, seed=1)
    truth = shapley_from_table(noisy(all_coalitions(10)), 10)
    yield "noisy unanimity 10, target + proxy", noisy, {"target": 1, "proxy": (NoisyGame(base, 0.6, seed=2), 0)}, \
        truth, (20, 60, 150)


def coverage(target, fid, truth, budget, seeds, jackknife):
    vals, ses = [], []
    for s in range(seeds):
        est = get_estimator("multifidelity")
        est._jackknife = jackknife
        a = est.estimate(target, budget, seed=s, fidelities=fid)
        vals.append(a.values)
        ses.append(a.stderr)
    vals, ses = np.array(vals), np.array(ses)
    covered = float(np.mean(np.abs(vals - truth) <= 2 * ses))
    ratio = np.sqrt((ses**2).mean(0)) / np.sqrt(((vals - truth) ** 2).mean(0))
    return covered, float(np.median(ratio))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=60)
    p.add_argument("--out", default="results/multifidelity_stderr.md")
    args = p.parse_args(argv)
    lines = ["# multifidelity's standard errors: coverage of the exact values (regression solver)", "",
             f"Produced by `python scripts/multifidelity_stderr.py --seeds {args.seeds}` (estimator seeds "
             f"0..{args.seeds - 1}). Covered: share of (seed, player) pairs with |value - exact| <= 2 stderr "
             "(about 0.95 is right). se / error: median over players of the reported stderr's root mean "
             "square over the actual error's (1 is right, above 1 conservative).", "",
             "| game | budget | sandwich: covered | se / error | with the jackknife: covered | se / error |",
             "|---|---|---|---|---|---|"]
    for name, target, fid, truth, budgets in games():
        for b in budgets:
            c0, r0 = coverage(target, fid, truth, b, args.seeds, False)
            c1, r1 = coverage(target, fid, truth, b, args.seeds, True)
            lines.append(f"| {name} | {b} | {c0:.2f} | {r0:.2f} | {c1:.2f} | {r1:.2f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
