"""What looking coalitions up in a retraining table costs: :meth:`CoalitionTable.held_on`
(asked on every evaluation of a replayed game) and :meth:`CoalitionTable.values`, for
10,000 coalitions against a 20,000-row seed. Collected only when this file is named:

    pytest benchmarks/test_table_cost.py --benchmark-json table.json
"""

import numpy as np
import pandas as pd
import pytest

from surrogateshap.game import coalition_keys
from surrogateshap.table import CoalitionTable


@pytest.mark.benchmark(group="table lookup, 10,000 coalitions")
@pytest.mark.parametrize("n", [30, 258])
@pytest.mark.parametrize("what", ["held_on", "values"])
def test_table_lookup_cost(n, what, benchmark):
    rng = np.random.default_rng(0)
    rows = np.unique(rng.random((20_000, n)) < 0.5, axis=0)  # one row per coalition
    table = CoalitionTable(pd.DataFrame({"coalition": coalition_keys(rows), "seed": 0,
                                         "v": rng.random(len(rows))}),
                           [f"p{i}" for i in range(n)], ("v",))
    asked = np.vstack([rows[rng.integers(0, len(rows), 5_000)], rng.random((5_000, n)) < 0.5])
    if what == "held_on":
        out = benchmark.pedantic(lambda: table.held_on(asked, 0), rounds=3, iterations=1)
        assert out[:5_000].all() and out.sum() < 5_100  # random 50% coalitions are new (but for chance)
    else:
        out = benchmark.pedantic(lambda: table.values(asked[:5_000], "v", 0), rounds=3, iterations=1)
        assert out.shape == (5_000,)
    benchmark.extra_info.update({"n": n, "coalitions": len(asked), "table_rows": len(rows)})
