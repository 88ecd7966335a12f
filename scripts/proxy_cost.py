"""What one proxy-game evaluation costs: statistics mixing vs re-generating images.

    python scripts/proxy_cost.py

Synthetic per-label statistics for n labels and d feature dimensions, 256 coalitions
evaluated in one batch (as estimators call games); plus, when the digits10 full model
is available, the paper's per-coalition re-generation for comparison.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from surrogateshap.tasks.features.statistics import UTILITIES, StatsBank, stats_from_features


def synthetic_bank(n: int, d: int, rng) -> StatsBank:
    centroids = rng.normal(size=(20, d))
    stats = [stats_from_features(rng.normal(i % 7, 1, (300, d)), rng.normal(size=(300, 10)), centroids)
             for i in range(n)]
    real = stats_from_features(rng.normal(3, 2, (2000, d)), rng.normal(size=(2000, 10)), centroids)
    return StatsBank(stats, real)


def main():
    from surrogateshap.sampling import sample_kernel_coalitions

    rng = np.random.default_rng(0)
    rows = []
    for n in (10, 100, 300):
        for d in (64, 128, 256):
            bank = synthetic_bank(n, d, rng)
            masks = sample_kernel_coalitions(n, 256, rng)
            w = masks / masks.sum(1, keepdims=True)
            for u in UTILITIES:
                bank.utility(u, w[:4])  # warm-up
                t0 = time.perf_counter()
                bank.utility(u, w)
                rows.append({"players": n, "feature dim": d, "utility": u,
                             "ms per coalition": 1e3 * (time.perf_counter() - t0) / len(w)})
    df = pd.DataFrame(rows).pivot_table(index=["players", "feature dim"], columns="utility",
                                        values="ms per coalition")
    print("Proxy game, statistics mode (256 coalitions per call):\n")
    print(df.to_markdown(floatfmt=".4f"))

    try:
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
              f"{1e3 * regen:.0f} ms; statistics mode {1e3 * fast:.3f} ms "
              f"({regen / fast:.0f}x cheaper)")
    except Exception as e:  # noqa: BLE001 - the comparison is optional
        print(f"\n(digits10 comparison skipped: {e})")


if __name__ == "__main__":
    main()
