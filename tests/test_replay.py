"""The suite on the image tasks: the default selection replays each shipped table and
trains no coalition model, even on an empty cache; a named case that needs what a table
lacks is refused with --no-retrain."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from surrogateshap.benchmark import benchmark_cases, get_benchmark_task, prepare_case  # noqa: E402
from surrogateshap.evaluation import evaluate  # noqa: E402
from surrogateshap.table import MissingCoalitionsError  # noqa: E402
from surrogateshap.tasks import benchmark_tasks  # noqa: E402
from surrogateshap.tasks.base import DiffusionTask  # noqa: E402
from surrogateshap.tasks.games import RetrainingRefusedError  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("replay-cache")  # empty: nothing cached before the run


@pytest.fixture
def no_training(monkeypatch, cache):
    monkeypatch.setenv("SURROGATESHAP_CACHE", str(cache))

    def boom(self, masks, seed):
        raise AssertionError(f"{self.name}: a coalition model was trained during a replay")

    monkeypatch.setattr(DiffusionTask, "retrain_stats", boom)
    get_benchmark_task.cache_clear()
    yield
    get_benchmark_task.cache_clear()


@pytest.mark.slow
@pytest.mark.parametrize("name", [t for t in benchmark_tasks() if t != "cifar20"])
def test_default_selection_replays_the_table_and_trains_nothing(name, no_training):
    """Every retraining-game case of the default selection (the estimators, their LDS
    and their removal check) from the shipped table alone: a case the table does not
    cover is skipped by the replay, never trained. (The proxy's cases train the full
    model and its bank, never a coalition model; the CI slice runs them.)"""
    cases = [c for c in benchmark_cases("default", tasks=[name]) if c.game == "retraining"]
    if cases and all(c.skip for c in cases):
        pytest.skip(cases[0].skip)  # no data or no table here: named in the reason
    assert cases and all(c.retrain == "replay" and not c.slow for c in cases)
    ran = skipped = 0
    for case in cases:
        if case.skip:
            continue
        call, truth = prepare_case(case)
        try:
            att = call()
        except MissingCoalitionsError:
            skipped += 1  # the table does not hold this estimator's coalitions
            continue
        figures = evaluate(att, truth)
        assert np.isfinite(figures["lds_0.5_mean"])
        ran += 1
    assert ran > 0, f"{name}: no retraining case of the default selection replays from its table"
    bt = get_benchmark_task(name, "default", "replay")
    assert bt.costs()["coalition_models_trained"] == 0


def test_a_named_case_needing_what_the_table_lacks_is_refused_with_no_retrain(no_training):
    name = "fashion-animal20"
    cases = benchmark_cases("default", tasks=[name], estimators=["permutation"], budgets=[200], seeds=[7],
                            no_retrain=True)
    case = next(c for c in cases if c.game == "retraining" and c.utility == "neg_fid")
    if case.skip:
        pytest.skip(case.skip)
    assert case.retrain == "refuse"
    call, _ = prepare_case(case)
    with pytest.raises(RetrainingRefusedError, match="retraining is off"):
        call()
