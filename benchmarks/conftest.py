"""The benchmark suite's machinery: cases from options, marks, regression, reference.

Cases come from :func:`surrogateshap.benchmark.benchmark_cases` (every registered
estimator x task x utility x game x budget x seed of the ``--scale`` preset, filtered
by ``--task/--utility/--game/--estimator/--budget/--seeds``), through
:func:`surrogateshap.benchmark.options.select_cases`: a bad option, or options that
select no case, stop the run before collection with one line (exit 4). Cases marked ``slow`` are
deselected unless ``--run-slow``, a ``-m`` expression, or an explicit ``--task`` or
``--budget`` asks for them; ``gpu`` cases are skipped without CUDA.

Regression: each case's figures are compared with ``results/reference_<scale>.json``
(or ``--reference PATH``) by :func:`surrogateshap.evaluation.check_regression`;
``--update-reference`` writes this run's seed-aggregated figures there instead.

Failures: pytest-benchmark writes only benchmarks that finished, so a case that raised
(in its set-up or in the estimator) would vanish from ``--benchmark-json``. Each one is
recorded with its case fields and ``error`` and written under the JSON's
``"failed_cases"`` key (:data:`surrogateshap.report.FAILED_KEY`); the report lists them.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from pathlib import Path

import pytest

from surrogateshap.evaluation import check_regression
from surrogateshap.benchmark import options
from surrogateshap.benchmark.scales import PrecisionTarget
from surrogateshap.benchmark import (
    BenchmarkCase,
    json_safe,
    small_extras,
    ceiling_figures,
    read_reference,
    reference_entries,
    write_reference,
)

ARGNAMES = ("task", "utility", "game", "estimator", "budget", "seed")


class BenchSession:
    """Per-run state: the selection, the reference, per-seed figures for updating it."""

    def __init__(self, config):
        self.config = config
        opt = config.getoption
        self.scale = opt("--scale")
        self.root = Path(str(config.rootpath))
        ref = opt("--reference")
        self.reference_path = Path(ref) if ref else self.root / "results" / f"reference_{self.scale}.json"
        self.update = bool(opt("--update-reference"))
        self.check_enabled = not self.update and not opt("--no-regression")
        self.reference = None
        if (self.check_enabled or self.update) and self.reference_path.exists():
            try:  # --update-reference overwrites a reference, never another file
                reference = read_reference(self.reference_path)
            except ValueError as e:
                raise pytest.UsageError(f"--reference: {e}") from None
            self.reference = reference if self.check_enabled else None
        elif ref and self.check_enabled:
            raise pytest.UsageError(f"--reference {ref}: no such file")
        self.records: dict[str, list[dict]] = defaultdict(list)
        self.fingerprints: dict[str, str] = {}
        self.n_checked = 0
        self.n_failed = 0
        self.n_unreferenced = 0
        self.failed_cases: list[dict] = []

    def record_failure(self, params: dict, phase: str, nodeid: str, excinfo):
        """A case that raised before its benchmark finished: one row with its error."""
        err = excinfo.value
        message = " ".join(str(err).split()) or type(err).__name__
        row = {k: params.get(k) for k in ARGNAMES}
        row.update(scale=self.scale, phase=phase, nodeid=nodeid,
                   error=f"{type(err).__name__}: {message}"[:2000])
        self.failed_cases.append(json_safe(row))

    def cases(self) -> list[BenchmarkCase]:
        if getattr(self, "_cases", None) is None:
            self._cases = self._select()
        return self._cases

    def _select(self) -> list[BenchmarkCase]:
        opt = self.config.getoption
        try:
            return options.select_cases(
                self.scale, tasks=opt("--task"), utilities=opt("--utility"), games=opt("--game"),
                estimators=opt("--estimator"), budget=opt("--budget"), seed_option=opt("--seeds"),
                no_retrain=bool(opt("--no-retrain")))
        except options.UsageError as e:
            raise pytest.UsageError(str(e)) from None

    def case(self, task, utility, game, estimator, budget, seed) -> BenchmarkCase:
        # budget: the parameter's text (a number, or a precision target's label)
        key = (task, utility, game, estimator, str(budget), int(seed))
        for c in self.cases():  # the selected case, with its retraining policy
            if (c.task, c.utility, c.game, c.estimator, str(c.budget), c.seed) == key:
                return c
        return BenchmarkCase(task, utility, game, estimator, int(budget), int(seed), self.scale)

    def record(self, case, truth, figures, attribution, extra_info: dict):
        info = {
            "task": case.task, "utility": case.utility, "game": case.game,
            "estimator": case.estimator, "budget": case.max_evaluations, "seed": case.seed,
            "scale": case.scale, "n_players": truth.n_players, "truth": truth.fingerprint(),
            **figures, **ceiling_figures(truth, fidelity=case.game == "proxy"),
        }
        if isinstance(case.budget, PrecisionTarget):  # "budget" is its cap
            info["target"] = case.budget.label
        if attribution.stopped_by is not None:
            info["stopped_by"] = attribution.stopped_by
        from surrogateshap.benchmark import get_benchmark_task

        game_info = get_benchmark_task(case.task, case.scale, case.retrain).game_info(case.utility, case.game)
        if "game_seconds_per_evaluation" in game_info:
            info["game_seconds_estimate"] = (
                game_info["game_seconds_per_evaluation"] * figures.get("n_evaluations", 0)
            )
        if attribution.extra:
            info["estimator_extra"] = small_extras(attribution.extra)
        extra_info.update(json_safe(info))
        self.records[case.key].append({**figures, "seed": case.seed})
        self.fingerprints[case.key] = info["truth"]

    def check(self, case, truth, figures, extra_info: dict) -> list[str]:
        if not self.check_enabled:
            extra_info["regression"] = "off"
            return []
        entry = None if self.reference is None else self.reference["cases"].get(case.key)
        if entry is None:
            self.n_unreferenced += 1
            extra_info["regression"] = "no reference"
            return []
        self.n_checked += 1
        fp = truth.fingerprint()
        if entry.get("truth") not in (None, fp):
            failures = [
                f"the reference was recorded on another ground truth (fingerprint "
                f"{entry.get('truth')}, now {fp}: the table or the game changed); regenerate it "
                f"with `{self.reference_command()}`"
            ]
        else:
            failures = check_regression(figures, entry["figures"])
        extra_info["regression"] = "fail" if failures else "pass"
        if failures:
            extra_info["regression_failures"] = failures
            self.n_failed += 1
        return failures

    def reference_command(self) -> str:
        m = self.reference.get("meta", {}) if self.reference else {}
        return m.get("command") or f"pytest benchmarks/ --scale {self.scale} --update-reference"

    def write(self) -> int:
        args = list(self.config.invocation_params.args)
        command = "pytest " + shlex.join(args)
        entries = reference_entries(self.records, self.fingerprints)
        write_reference(self.reference_path, entries, command=command, scale=self.scale, root=self.root,
                        note="per case (task/utility/game/estimator/budget): figures aggregated over "
                             "estimator seeds; mean, seed std (ddof=1), n, tolerance")
        return len(entries)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds (deselect with -m 'not slow')")
    config.addinivalue_line("markers", "gpu: needs a CUDA device")
    config._surrogateshap_bench = bs = BenchSession(config)
    args = [str(a) for a in config.invocation_params.args]
    if any("benchmarks" in a for a in args) or config.getoption("--seeds") is not None or any(
        options.names(config.getoption(o)) for o in ("--task", "--utility", "--game", "--estimator", "--budget")
    ):
        bs.cases()  # bad names are a usage error now, not a collection error later


#: benchmarks of the library's own cost, not of an estimator: collected only when named
#: (``pytest benchmarks/test_proxy_cost.py``), so ``pytest benchmarks/ --task T`` and the CI
#: slice run the attribution cases alone
OWN_COST = ("test_proxy_cost.py", "test_players_scale.py", "test_table_cost.py")


def pytest_ignore_collect(collection_path, config):
    if collection_path.name in OWN_COST:
        named = any(Path(str(a).split("::")[0]).name == collection_path.name
                    for a in config.invocation_params.args)
        return None if named else True
    return None


def pytest_generate_tests(metafunc):
    if not set(ARGNAMES) <= set(metafunc.fixturenames):
        return
    bs: BenchSession = metafunc.config._surrogateshap_bench
    params = []
    for c in bs.cases():
        marks = [pytest.mark.benchmark(group=c.group)]
        if c.slow:
            marks.append(pytest.mark.slow)
        if c.gpu:
            marks.append(pytest.mark.gpu)
        if c.skip:
            marks.append(pytest.mark.skip(reason=c.skip))
        budget = c.budget.label if isinstance(c.budget, PrecisionTarget) else c.budget
        params.append(pytest.param(c.task, c.utility, c.game, c.estimator, budget, c.seed, marks=marks, id=c.id))
    metafunc.parametrize(",".join(ARGNAMES), params)


def pytest_collection_modifyitems(config, items):
    opt = config.getoption
    explicit = opt("--run-slow") or opt("-m") or options.names(opt("--task")) or options.names(opt("--budget"))
    keep, dropped = [], []
    for item in items:
        if "slow" in item.keywords and not explicit and "benchmarks" in item.nodeid.split("/")[0]:
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    if any("gpu" in i.keywords for i in items):
        try:
            import torch

            has_cuda = torch.cuda.is_available()
        except ImportError:
            has_cuda = False
        if not has_cuda:
            skip = pytest.mark.skip(reason="marked gpu: needs a CUDA device (or use --scale default)")
            for i in items:
                if "gpu" in i.keywords:
                    i.add_marker(skip)


@pytest.fixture
def bench_session(request) -> BenchSession:
    return request.config._surrogateshap_bench


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    params = getattr(getattr(item, "callspec", None), "params", {})
    if not rep.failed or call.excinfo is None or not set(ARGNAMES) <= set(params):
        return
    bench = getattr(item, "funcargs", {}).get("benchmark")
    if bench is not None and getattr(bench, "stats", None) is not None and not bench.has_error:
        return  # it finished (e.g. a regression failure): its figures are in the JSON
    item.config._surrogateshap_bench.record_failure(params, rep.when, item.nodeid, call.excinfo)


def pytest_benchmark_update_json(config, benchmarks, output_json):
    bs: BenchSession = config._surrogateshap_bench
    from surrogateshap.report import FAILED_KEY

    output_json[FAILED_KEY] = list(bs.failed_cases)


def pytest_sessionfinish(session, exitstatus):
    bs: BenchSession = session.config._surrogateshap_bench
    if bs.update and bs.records:
        bs._written = bs.write()


def _task_costs(bs: BenchSession) -> dict:
    """What each table-backed task of the run paid (coalition models trained, the full
    model, its bank, proxy evaluations)."""
    from surrogateshap.benchmark import get_benchmark_task

    out = {}
    for c in bs.cases():
        bt = get_benchmark_task(c.task, c.scale, c.retrain)
        if hasattr(bt, "costs") and (c.task, c.retrain) not in out:
            costs = bt.costs()
            if any(costs.values()):
                out[(c.task, c.retrain)] = costs
    return out


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    bs: BenchSession = config._surrogateshap_bench
    tr = terminalreporter
    for (task, retrain), paid in _task_costs(bs).items():
        parts = ", ".join(f"{k.replace('_', ' ')} {v:g}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
                          for k, v in paid.items())
        tr.write_line(f"surrogateshap: {task} ({retrain}): {parts}")
    if bs.failed_cases:
        tr.write_line(f"surrogateshap: {len(bs.failed_cases)} case(s) raised; listed with their "
                      "errors under 'failed_cases' in --benchmark-json")
    if bs.update:
        n = getattr(bs, "_written", 0)
        tr.write_line(f"surrogateshap: wrote {n} reference cases to {bs.reference_path}")
    elif bs.check_enabled and (bs.n_checked or bs.n_unreferenced):
        where = bs.reference_path if bs.reference is not None else "(no reference file)"
        tr.write_line(
            f"surrogateshap regression vs {where}: {bs.n_checked} cases checked, "
            f"{bs.n_failed} failed, {bs.n_unreferenced} without a reference entry"
        )
