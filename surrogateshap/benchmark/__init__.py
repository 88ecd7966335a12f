"""Benchmark tasks and cases: which games an estimator plays, and the ground truth.

A *benchmark task* (``get_benchmark_task(name, scale)``) offers, per utility, the
game(s) an estimator can play and the :class:`~surrogateshap.evaluation.GroundTruth`
its attribution is judged against:

- the sanity tier, games with known Shapley values: ``unanimity10``, ``unanimity50``
  (random sums of unanimity games), ``airport20``, ``voting20``. Utility ``clean`` is
  the game itself; ``noisy`` adds seeded Gaussian noise (:class:`NoisyGame`, sigma =
  20% of the utilities' spread) to model retraining noise: the estimator plays noise
  seed 0 and the LDS test utilities come from noise seeds 1..k, which gives LDS a seed
  spread. One game kind, ``known``.
- ``digits10``, the real diffusion task. Game ``retraining`` replays the shipped
  retraining table (``datasets/digits10/retraining_table.csv``, every coalition
  retrained; the seed-mean :class:`TableGame`, budgets in retrainings, nothing is
  trained); game ``proxy`` is SurrogateSHAP's cheap proxy game over the one full-data
  model (its first use trains that model and a sample bank, cached under
  ``$SURROGATESHAP_CACHE``), tabulated once on all 1,024 coalitions and replayed
  (:class:`ReplayedGame`: same values, same cost accounting), so a case's wall-clock is
  the estimator's own and its proxy cost is reported as ``game_seconds_estimate``. Ground truth for both: the table's exact Shapley values
  (seed mean), LDS on every coalition of size int(alpha n) with utilities per
  retraining seed, and the table as the removal game.

A *case* (:class:`BenchmarkCase`) is task x utility x game x estimator x budget x
seed; :func:`benchmark_cases` lists them for a scale preset, with skip reasons and
``slow``/``gpu`` flags, :func:`prepare_case` returns the call to time and the ground
truth, :func:`run_case` runs and evaluates one case. The pytest suite under
``benchmarks/`` only composes these.

An estimator whose ``requires`` names ``"proxy"`` gets the task's proxy game as a
resource (``estimate(game, budget, seed, proxy=...)``) whatever game it plays.
"""

from surrogateshap.benchmark.cases import (
    MAX_EXACT_BUDGET,
    BenchmarkCase,
    benchmark_cases,
    prepare_case,
    run_case,
)
from surrogateshap.benchmark.reference import (
    ceiling_figures,
    json_safe,
    read_reference,
    reference_entries,
    small_extras,
    write_reference,
)
from surrogateshap.benchmark.replay import ReplayedGame
from surrogateshap.benchmark.scales import (
    PROXY_TARGET,
    SCALE_SETTINGS,
    SCALES,
    PrecisionTarget,
    ScaleSettings,
    removal_fractions,
)
from surrogateshap.benchmark.tasks import (
    BENCHMARK_TASKS,
    BenchmarkTask,
    Digits10Benchmark,
    KnownGameTask,
    TableBenchmark,
    get_benchmark_task,
)

__all__ = [
    "SCALES", "ScaleSettings", "SCALE_SETTINGS", "removal_fractions", "PrecisionTarget", "PROXY_TARGET",
    "BENCHMARK_TASKS",
    "BenchmarkTask", "KnownGameTask", "TableBenchmark", "ReplayedGame", "Digits10Benchmark",
    "get_benchmark_task", "MAX_EXACT_BUDGET", "BenchmarkCase", "benchmark_cases",
    "prepare_case", "run_case", "reference_entries", "write_reference", "read_reference",
    "ceiling_figures", "json_safe", "small_extras",
]
