"""The plug-in story: an estimator defined outside the library runs through the benchmark
suite, its figures come back, and a broken one is caught by the regression check.

These run the real ``benchmarks/`` directory in-process through pytest's ``pytester``
on the cheap sanity task (unanimity10), so they take a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from surrogateshap import Estimator
from surrogateshap.registry import register, unregister

REPO = Path(__file__).resolve().parents[1]
BENCH = str(REPO / "benchmarks")
BASE_ARGS = ["--task", "unanimity10", "--budget", "32,64", "--seeds", "3", "-p", "no:cacheprovider"]


def _permutation_estimator():
    """A small, correct plug-in estimator: permutation sampling within the budget."""

    class PluginPermutation(Estimator):
        def min_budget(self, n_players):
            return n_players + 1

        def _estimate(self, game, budget, rng):
            n = game.n_players
            phi, count = np.zeros(n), 0
            while True:
                perm = rng.permutation(n)
                masks = np.zeros((n + 1, n), bool)
                for k, p in enumerate(perm):
                    masks[k + 1] = masks[k]
                    masks[k + 1, p] = True
                new = sum(not game.is_cached(m) for m in masks)
                if new > game.remaining:
                    break
                phi[perm] += np.diff(game(masks))
                count += 1
            return phi / max(count, 1)

    return PluginPermutation


def _broken_estimator():
    """Returns random values: plausible-looking, meaningless."""

    class Broken(Estimator):
        def min_budget(self, n_players):
            return n_players + 1

        def _estimate(self, game, budget, rng):
            game(np.ones((1, game.n_players), bool))
            return rng.normal(size=game.n_players)

    return Broken


@pytest.fixture(autouse=True)
def _import_the_stack_first():
    """pytester's in-process runs drop the modules a run imported; numpy's extension
    modules cannot be imported twice, so import everything the suite touches up front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import numpy.fft  # noqa: F401
    import pytest_benchmark.plugin  # noqa: F401
    import scipy.sparse  # noqa: F401
    import scipy.stats  # noqa: F401

    import surrogateshap.report  # noqa: F401
    import surrogateshap.benchmark  # noqa: F401
    import surrogateshap.benchmark.options  # noqa: F401
    from surrogateshap import available_estimators

    available_estimators()  # imports the built-in estimators (xgboost, shap)


@pytest.fixture
def plugin_name():
    name = "plugin-test-estimator"
    yield name
    unregister(name)


def test_plugin_estimator_runs_through_the_benchmark(pytester, plugin_name, tmp_path):
    register(plugin_name)(_permutation_estimator())
    out = tmp_path / "bench.json"
    res = pytester.runpytest_inprocess(
        BENCH, "--estimator", plugin_name, *BASE_ARGS, "--no-regression", "--benchmark-json", str(out)
    )
    # 2 utilities (clean, noisy) x 2 budgets x 3 seeds
    res.assert_outcomes(passed=12)
    doc = json.loads(out.read_text())
    infos = [b["extra_info"] for b in doc["benchmarks"]]
    assert len(infos) == 12 and {i["estimator"] for i in infos} == {plugin_name}
    for info in infos:
        for fig in ("lds_0.25_mean", "lds_0.5_mean", "lds_0.75_mean", "relative_l2", "spearman",
                    "removal_0.1_top", "n_evaluations", "cost"):
            assert fig in info, fig
        assert info["n_evaluations"] <= info["budget"]
        assert info["relative_l2"] < 1.0  # a real estimate, not noise
    groups = {b["group"] for b in doc["benchmarks"]}
    assert groups == {"unanimity10/clean/known", "unanimity10/noisy/known"}

    from surrogateshap.report import write_report

    report = write_report(out, tmp_path / "report")
    text = report.read_text()
    assert plugin_name in text and "LDS@0.5" in text
    assert len(list((tmp_path / "report").glob("*.png"))) == 6


def test_regression_check_catches_a_broken_estimator(pytester, plugin_name, tmp_path):
    ref = tmp_path / "reference.json"
    args = [BENCH, "--estimator", plugin_name, *BASE_ARGS, "--benchmark-disable", "--reference", str(ref)]
    register(plugin_name)(_permutation_estimator())
    res = pytester.runpytest_inprocess(*args, "--update-reference")
    res.assert_outcomes(passed=12)
    doc = json.loads(ref.read_text())
    assert "--update-reference" in doc["meta"]["command"] and doc["meta"]["git_commit"]
    assert len(doc["cases"]) == 4  # 2 utilities x 2 budgets, seeds aggregated
    entry = doc["cases"][f"unanimity10/noisy/known/{plugin_name}/64"]
    assert entry["seeds"] == [0, 1, 2]
    assert set(entry["figures"]) == {"lds_0.25_mean", "lds_0.5_mean", "lds_0.75_mean", "relative_l2"}

    # the same estimator passes against its own reference
    res = pytester.runpytest_inprocess(*args)
    res.assert_outcomes(passed=12)
    assert "12 cases checked, 0 failed" in res.stdout.str()

    # a broken estimator under the same name fails, naming the figure and the shortfall
    unregister(plugin_name)
    register(plugin_name)(_broken_estimator())
    broken_json = tmp_path / "broken.json"
    res = pytester.runpytest_inprocess(*[a for a in args if a != "--benchmark-disable"],
                                       "--benchmark-json", str(broken_json))
    outcomes = res.parseoutcomes()
    assert outcomes.get("failed", 0) >= 10, outcomes
    text = res.stdout.str()
    assert "attribution quality regressed" in text
    assert "lds_0.5_mean" in text and "relative_l2" in text
    assert "worse) than the reference mean" in text and "exceeded by" in text

    # the figures of failed cases still reach the JSON, and the report lists them
    from surrogateshap.report import write_report

    text = write_report(broken_json, tmp_path / "report", plots=False).read_text()
    assert "Regressed cases:" in text and "exceeded by" in text


def test_failed_cases_reach_the_json_and_the_report(pytester, plugin_name, tmp_path):
    # pytest-benchmark writes only benchmarks that finished: a case that raised used to
    # vanish from --benchmark-json and from the report
    good = _permutation_estimator()

    class FailsAt64(good):
        def _estimate(self, game, budget, rng):
            if budget == 64:
                raise RuntimeError(f"<boom> at budget {budget}")
            return super()._estimate(game, budget, rng)

    register(plugin_name)(FailsAt64)
    out = tmp_path / "bench.json"
    res = pytester.runpytest_inprocess(
        BENCH, "--estimator", plugin_name, *BASE_ARGS, "--no-regression", "--benchmark-json", str(out)
    )
    res.assert_outcomes(passed=6, failed=6)
    assert "6 case(s) raised" in res.stdout.str()
    doc = json.loads(out.read_text())
    assert len(doc["benchmarks"]) == 6
    failed = doc["failed_cases"]
    assert len(failed) == 6 and {f["budget"] for f in failed} == {64}
    assert {(f["utility"], f["seed"]) for f in failed} == {(u, s) for u in ("clean", "noisy") for s in range(3)}
    for f in failed:
        assert f["task"] == "unanimity10" and f["game"] == "known" and f["estimator"] == plugin_name
        assert f["error"] == "RuntimeError: <boom> at budget 64" and f["phase"] == "call"

    from surrogateshap.report import write_report

    text = write_report(out, tmp_path / "report", plots=False).read_text()
    assert "## Failed cases" in text and "6 cases failed" in text
    assert f"| unanimity10 | noisy | known | {plugin_name} | 64 | 2 | RuntimeError: &lt;boom&gt; at budget 64 |" in text


@pytest.mark.parametrize("bad, named", [
    (["--budget", "-5"], "--budget must be a positive integer; got '-5'"),
    (["--budget", "32,x"], "--budget must be an integer; got 'x'"),
    (["--utility", "nosuch"], "--utility nosuch: unknown; the selected tasks offer clean, noisy"),
    (["--game", "nosuch"], "--game nosuch: unknown; the selected cases play known"),
    (["--seeds="], "--seeds takes a count N >= 1 (seeds 0..N-1) or a comma list of seeds >= 0; got ''"),
    (["--seeds", "0"], "--seeds takes a count N >= 1"),
    (["--estimator", "nosuch"], "--estimator: unknown estimator 'nosuch'; known estimators:"),
    (["--estimator", "kernelshap(nosuch=1)"], "--estimator: estimator 'kernelshap(nosuch=1)'"),
    (["--task", "nosuch"], "--task nosuch: unknown; choose from unanimity10"),
    (["--reference", "/etc/passwd"], "--reference: /etc/passwd is not a regression reference"),
    (["--reference", "LIST"], "is not a regression reference: no 'cases' of figures"),
    (["--reference", "LIST", "--update-reference"], "is not a regression reference"),  # not overwritten
])
def test_a_bad_option_stops_the_run_before_collection(pytester, tmp_path, bad, named):
    # each of these used to select nothing (or crash) and leave a CI run green
    if "LIST" in bad:
        (tmp_path / "list.json").write_text("[1, 2]")
        bad = [str(tmp_path / "list.json") if b == "LIST" else b for b in bad]
    res = pytester.runpytest_inprocess(BENCH, "--task", "unanimity10", "-p", "no:cacheprovider",
                                       "--benchmark-disable", *bad)
    assert res.ret == pytest.ExitCode.USAGE_ERROR, res.stdout.str()
    errors = [ln for ln in res.stderr.lines if ln.strip()]
    assert len(errors) == 1 and errors[0].startswith("ERROR: ") and named in errors[0], errors
    assert "collected" not in res.stdout.str()
    if "--update-reference" in bad:
        assert (tmp_path / "list.json").read_text() == "[1, 2]"
