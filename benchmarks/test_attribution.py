"""Attribution quality and cost of every registered estimator on every benchmark task.

One case = task x utility x game x estimator x budget x seed (see benchmarks/conftest.py
and :mod:`surrogateshap.benchmark`). The estimator runs once under pytest-benchmark's
timer; every figure of :func:`surrogateshap.evaluation.evaluate` goes to
``benchmark.extra_info``; the figures the regression reference covers (LDS per alpha,
relative L2 against exact values) must not be worse than the reference beyond its
seed-spread tolerance.

    pytest benchmarks/ --benchmark-json out.json              # default selection
    pytest benchmarks/ --scale ci --benchmark-json ci.json    # the CI slice
    surrogateshap report out.json --out results/report         # tables and plots
"""

import pytest

from surrogateshap.benchmark import prepare_case
from surrogateshap.evaluation import evaluate
from surrogateshap.table import MissingCoalitionsError


def test_attribution(task, utility, game, estimator, budget, seed, benchmark, bench_session):
    case = bench_session.case(task, utility, game, estimator, budget, seed)
    call, truth = prepare_case(case)
    try:
        attribution = benchmark.pedantic(call, rounds=1, iterations=1)
    except MissingCoalitionsError as e:
        if case.retrain != "replay":
            raise
        pytest.skip(f"replay: {case.task}'s table lacks what this case asks for ({e}); build it with "
                    f"`surrogateshap build-table --task {case.task} --benchmark`, or name the case "
                    "(--estimator/--budget) to retrain it")
    figures = evaluate(attribution, truth)
    bench_session.record(case, truth, figures, attribution, benchmark.extra_info)
    failures = bench_session.check(case, truth, figures, benchmark.extra_info)
    if failures:
        pytest.fail(
            f"{case.key} (seed {seed}): attribution quality regressed against "
            f"{bench_session.reference_path}:\n  " + "\n  ".join(failures),
            pytrace=False,
        )
