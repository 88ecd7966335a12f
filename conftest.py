"""Repository-wide pytest set-up: the pytester plugin and the benchmark suite's options.

The options only act on ``benchmarks/`` (see benchmarks/conftest.py); they live here
so that any path under the repository accepts them.
"""

pytest_plugins = ("pytester",)


def pytest_addoption(parser):
    g = parser.getgroup("surrogateshap benchmarks", "benchmark suite selection (benchmarks/)")
    g.addoption("--scale", default="default", choices=("ci", "default", "report", "paper"),
                help="preset of tasks, budgets, seeds and test-set sizes (default: default; "
                     "'ci' is the CI slice; 'report' adds the task reports' model-based baselines "
                     "and sparsified fine-tuning Shapley)")
    g.addoption("--task", action="append", default=[], metavar="NAME[,NAME]",
                help="benchmark task(s) to run instead of the scale's selection "
                     "(unanimity10, unanimity50, airport20, voting20, digits10, and the image tasks)")
    g.addoption("--utility", action="append", default=[], metavar="NAME[,NAME]",
                help="only these utilities (clean/noisy for known games; neg_fid, "
                     "inception_score, coverage for digits10)")
    g.addoption("--game", action="append", default=[], metavar="KIND[,KIND]",
                help="only these game kinds (known; retraining, proxy)")
    g.addoption("--estimator", action="append", default=[], metavar="NAME[,NAME]",
                help="registered estimator(s) to run (default: all registered)")
    g.addoption("--budget", action="append", default=[], metavar="B[,B]",
                help="budgets in game evaluations (default: the scale's)")
    g.addoption("--seeds", default=None, metavar="N|S,S,...",
                help="estimator seeds: a count N (seeds 0..N-1) or a comma list")
    g.addoption("--run-slow", action="store_true",
                help="also run cases marked slow (big budgets, n=50, paper-scale training)")
    g.addoption("--reference", default=None, metavar="PATH",
                help="regression reference (default: results/reference_<scale>.json if present)")
    g.addoption("--update-reference", action="store_true",
                help="write this run's seed-aggregated figures to the reference path "
                     "instead of checking against it")
    g.addoption("--no-regression", action="store_true",
                help="record figures but do not check them against the reference")
    g.addoption("--no-retrain", action="store_true",
                help="never train a coalition model: a case needing one its task's table lacks fails, "
                     "naming the coalitions (the default selection replays its tables and trains none)")
