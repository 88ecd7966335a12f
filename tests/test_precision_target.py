"""A proxy game's default budget is a precision target (issue #34): the benchmark's sampled
selection and ``surrogateshap run`` refine SurrogateSHAP until ``PROXY_TARGET`` holds, record
the evaluations spent and what stopped it; an explicit budget stays fixed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from surrogateshap.benchmark.scales import (  # noqa: E402
    PROXY_TARGET,
    REPORT_SELECTION,
    SCALE_SETTINGS,
    PrecisionTarget,
    SampledSelection,
)
from surrogateshap.estimator import Until  # noqa: E402
from surrogateshap.tasks import register_task  # noqa: E402

from fake_tasks import FakeConfig, FakeTask  # noqa: E402

BENCH = str(Path(__file__).resolve().parents[1] / "benchmarks")
#: a target the fake game reaches in a second (the tests' runs; the default's own numbers
#: are in results/proxy_target.md)
QUICK = PrecisionTarget(Until(top_k=1, stable_steps=1, seconds=30.0), max_evaluations=1024)


class Fake16(FakeTask):
    """16 players: beyond enumeration (the sampled protocol), and 2**16 above the target's
    cap, so an estimate is refined rather than enumerated. Its proxy mixes the fake bank."""

    name = "fake16-target"
    players = tuple(f"p{i}" for i in range(16))
    family = None  # no model to train: the bank is the fake statistics

    @property
    def item_contributor(self):
        return np.repeat(np.arange(16), 2)

    def bank_stats(self):
        return [self._stats(np.random.default_rng(10 + i)) for i in range(16)]


@register_task("fake16-target")
def _fake16(scale="default", config=None, cache_dir=None):
    return Fake16(config or FakeConfig(models_per_batch=16), cache_dir)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """A protocol table of the fake task (fake trainings: a second), as its shipped table."""
    from surrogateshap.cli import main

    root = tmp_path_factory.mktemp("datasets")
    mp = pytest.MonkeyPatch()
    mp.setenv("SURROGATESHAP_CACHE", str(root / "cache"))
    assert main(["build-table", "--task", "fake16-target", "--out", str(root / "fake16-target")]) == 0
    mp.undo()
    return root


@pytest.fixture
def fake16(datasets, monkeypatch, tmp_path):
    monkeypatch.setenv("SURROGATESHAP_DATASETS", str(datasets))
    monkeypatch.setenv("SURROGATESHAP_CACHE", str(tmp_path / "cache"))
    return "fake16-target"


def test_the_default_proxy_budget_of_the_sampled_selection_is_the_precision_target():
    for sel in (SampledSelection(), REPORT_SELECTION):
        proxy = [run for run in sel.runs if run[1] == "proxy"]
        assert proxy and all(run[2] is PROXY_TARGET for run in proxy), proxy
        # the retraining game's budgets stay numbers of retrainings
        assert all(not isinstance(run[2], PrecisionTarget) for run in sel.runs if run[1] != "proxy")
    assert PROXY_TARGET.label == "until-top5x1-first256-max8192"
    # where it stops must not depend on the machine; the evaluation cap bounds the cost
    assert PROXY_TARGET.until.seconds is None and PROXY_TARGET.max_evaluations == 8192


def test_the_sampled_proxy_case_is_named_by_its_target_and_refined_until_it(fake16):
    from surrogateshap.benchmark import benchmark_cases, run_case

    cases = benchmark_cases("default", tasks=[fake16], games=["proxy"])
    assert cases and {c.estimator for c in cases} == {"surrogateshap"}
    for c in cases:
        assert c.budget == PROXY_TARGET and c.skip is None, c
        assert c.id.endswith(f"-surrogateshap-{PROXY_TARGET.label}-s0") and c.key.endswith(PROXY_TARGET.label)
        assert c.max_evaluations == PROXY_TARGET.max_evaluations
    att, figures = run_case(dataclasses.replace(cases[0], budget=QUICK))
    assert att.stopped_by in ("top_k", "seconds", "budget") and att.extra["steps"]
    assert att.n_evaluations == figures["n_evaluations"] == att.extra["steps"][-1]["n_evaluations"] <= 1024


def test_the_benchmark_json_records_the_target_the_evaluations_and_what_stopped_it(
        pytester, fake16, monkeypatch, tmp_path):
    import pytest_benchmark.plugin  # noqa: F401 - pytester's in-process run re-imports what it lacks

    from surrogateshap.report import load_benchmark_json

    quick = SampledSelection(runs=(("surrogateshap", "proxy", QUICK),))
    monkeypatch.setitem(SCALE_SETTINGS, "default", dataclasses.replace(SCALE_SETTINGS["default"], sampled=quick))
    out = tmp_path / "bench.json"
    res = pytester.runpytest_inprocess(BENCH, "--task", fake16, "--utility", "neg_fid", "--no-regression",
                                       "-p", "no:cacheprovider", "--benchmark-json", str(out))
    res.assert_outcomes(passed=1)
    assert f"test_attribution[{fake16}-neg_fid-proxy-surrogateshap-{QUICK.label}-s0]" in res.stdout.str()
    (info,) = [b["extra_info"] for b in json.loads(out.read_text())["benchmarks"]]
    assert info["target"] == QUICK.label and info["budget"] == QUICK.max_evaluations
    assert info["stopped_by"] in ("top_k", "seconds", "budget") and 1 <= info["n_evaluations"] <= 1024
    assert load_benchmark_json(out)["budget"].tolist() == [1024]  # the report reads it (budget: the cap)


def _run(capsys, *argv):
    from surrogateshap.cli import main

    rc = main(["run", "--task", "fake16-target", "--compare", "kernelshap", *argv])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def test_run_without_a_budget_refines_to_the_shared_target(fake16, capsys, monkeypatch):
    from surrogateshap.benchmark import scales

    monkeypatch.setattr(scales, "PROXY_TARGET", QUICK)  # the one constant, read by `run`
    lines = _run(capsys).splitlines()
    assert f"Values on the proxy game, precision target {QUICK.label}; " in "\n".join(lines)
    line = next(x for x in lines if x.startswith("  surrogateshap (shapley): "))
    spent = int(line.split(": ")[1].split()[0])
    assert 1 <= spent <= 1024 and line.split(", ")[-1] in (
        "stopped by top_k", "stopped by seconds", "stopped by budget"), line
    # kernelshap cannot refine: a fixed budget, as many evaluations as the refined estimate spent
    line = next(x for x in lines if x.startswith("  kernelshap (shapley): "))
    assert line.startswith(f"  kernelshap (shapley): {spent} evaluations") and line.endswith("fixed budget")


def test_run_with_a_budget_spends_exactly_it(fake16, capsys):
    out = _run(capsys, "--budget", "300")
    assert "budget 300 evaluations" in out and "precision target" not in out
    for name in ("surrogateshap", "kernelshap"):
        assert any(line.startswith(f"  {name} (shapley): 300 evaluations") and line.endswith("fixed budget")
                   for line in out.splitlines()), out


@pytest.mark.parametrize("make, message", [
    (lambda: PrecisionTarget(Until(top_k=5), max_evaluations=0),
     "precision target max_evaluations must be an integer >= 1; got 0"),
    (lambda: PrecisionTarget({"top_k": 0}, max_evaluations=64), "until top_k must be an integer >= 1; got 0"),
    (lambda: PrecisionTarget({"top": 5}, max_evaluations=64), "until: unknown criteria ['top']"),
    (lambda: SampledSelection(runs=(("kernelshap", "retraining", PROXY_TARGET),)),
     "a precision target is for the proxy game"),
])
def test_a_bad_target_is_one_clear_error(make, message):
    with pytest.raises((ValueError, TypeError)) as e:
        make()
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_an_estimator_that_cannot_refine_is_skipped_with_the_reason(fake16, monkeypatch):
    from surrogateshap.benchmark import benchmark_cases

    sel = SampledSelection(runs=(("kernelshap", "proxy", QUICK),))
    monkeypatch.setitem(SCALE_SETTINGS, "default", dataclasses.replace(SCALE_SETTINGS["default"], sampled=sel))
    cases = benchmark_cases("default", tasks=[fake16], games=["proxy"])
    assert cases and all("kernelshap cannot refine an estimate" in c.skip for c in cases)
