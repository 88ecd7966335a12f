"""Many contributors on a cheap game: ``auto`` (stratified SVARM refined until precise, or
out of time) on clipart-artists' proxy game at n = 30 (the task's artists) and n = 258
(artists split into shards, ``scripts/players_scale.py``), scored against the stratified
reference (:func:`baselines.stratified.stratified_reference`). Seconds (estimator and game,
one thread) are the benchmark's time; Spearman, evaluations, the stopping reason and the
reference's own cost go to ``extra_info``. Collected only when this file is named; n = 258
is marked slow (a minute for its reference, half a minute for the estimate):

    SURROGATESHAP_CACHE=... pytest benchmarks/test_players_scale.py --run-slow --benchmark-json ps.json

The study behind the numbers (curves of every estimator, two references) is
``python scripts/players_scale.py --anytime`` (results/players_scale_anytime.md).
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from baselines.stratified import stratified_reference
from surrogateshap import get_estimator


def _script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "players_scale.py"
    spec = importlib.util.spec_from_file_location("_script_players_scale", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def proxy():
    from surrogateshap.tasks import get_task

    try:
        task = get_task("clipart-artists", scale="default")
        return task, task.proxy_game("neg_fid")
    except (FileNotFoundError, ImportError, RuntimeError) as e:  # no Openclipart data here
        pytest.skip(f"clipart-artists is not available: {e}")


@pytest.mark.benchmark(group="players scale: auto on the proxy game")
@pytest.mark.parametrize("n", [30, pytest.param(258, marks=pytest.mark.slow)])
def test_auto_on_the_proxy_game(n, proxy, benchmark, request):
    if "slow" in request.node.keywords and not (request.config.getoption("--run-slow")
                                                 or "slow" in (request.config.getoption("-m") or "")):
        pytest.skip("minutes of CPU: run with --run-slow (or -m slow)")
    from threadpoolctl import threadpool_limits

    script, (task, proxy_game) = _script(), proxy
    counts = task.unit_counts() if n == task.n_players else script.shard_counts(task.unit_counts(), n)
    game = script.ShardedProxyGame(proxy_game, counts)
    with threadpool_limits(1):
        ref = stratified_reference(game, permutations=300, seed=12345)
        att = benchmark.pedantic(lambda: get_estimator("auto", cheap=True).estimate(game, 10**6, seed=0),
                                 rounds=1, iterations=1)
    benchmark.extra_info.update({
        "n": n, "spearman": float(spearmanr(att.values, ref.values).statistic),
        "evaluations": att.n_evaluations, "stopped_by": att.stopped_by, "chose": att.extra["auto"]["chose"],
        "reference_evaluations": ref.n_evaluations, "reference_seconds": ref.seconds,
        "reference_rel_stderr": float(np.linalg.norm(ref.stderr) / np.linalg.norm(ref.values))})
