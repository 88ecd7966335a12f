"""Benchmark cases: task x utility x game x estimator x budget x seed, and running one."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from surrogateshap.benchmark.scales import (
    SCALE_SETTINGS,
    SCALES,
    PrecisionTarget,
    budget_arguments,
    expand_selection,
)
from surrogateshap.benchmark.tasks import benchmark_task_names, get_benchmark_task
from surrogateshap.evaluation import evaluate
from surrogateshap.registry import available_estimators, get_estimator, parse_spec

__all__ = ["MAX_EXACT_BUDGET", "BenchmarkCase", "benchmark_cases", "prepare_case", "run_case"]

#: an exact (enumeration) estimator also runs at budget 2**n up to this many evaluations
MAX_EXACT_BUDGET = 4096


@dataclass(frozen=True)
class BenchmarkCase:
    """One benchmark case; ``skip`` is a reason not to run it (None: run). ``budget``: a
    number of game evaluations, or a :class:`~surrogateshap.benchmark.scales.PrecisionTarget`
    (named by its label in the key and id)."""

    task: str
    utility: str
    game: str
    estimator: str
    budget: int | PrecisionTarget
    seed: int
    scale: str = "default"
    skip: str | None = field(default=None, compare=False)
    slow: bool = field(default=False, compare=False)
    gpu: bool = field(default=False, compare=False)
    #: a coalition the task's table lacks: "replay" (never trained: the case is skipped),
    #: "train" (trained on the seeds lacking it), "refuse" (an error naming it)
    retrain: str = field(default="train", compare=False)

    @property
    def key(self) -> str:
        """Identifies the case across seeds (the regression reference's key)."""
        return f"{self.task}/{self.utility}/{self.game}/{self.estimator}/{self.budget}"

    @property
    def group(self) -> str:
        return f"{self.task}/{self.utility}/{self.game}"

    @property
    def id(self) -> str:
        budget = self.budget if isinstance(self.budget, PrecisionTarget) else f"b{self.budget}"
        return f"{self.task}-{self.utility}-{self.game}-{self.estimator}-{budget}-s{self.seed}"

    @property
    def max_evaluations(self) -> int:
        """The most game evaluations the case may spend (a target's cap)."""
        return budget_arguments(self.budget)["budget"]


def get_scale(scale: str):
    if scale not in SCALE_SETTINGS:
        raise KeyError(f"unknown scale {scale!r}; choose from {SCALES}")
    return SCALE_SETTINGS[scale]


def benchmark_cases(
    scale: str = "default",
    tasks: Sequence[str] | None = None,
    utilities: Sequence[str] | None = None,
    games: Sequence[str] | None = None,
    estimators: Sequence[str] | None = None,
    budgets: Sequence[int] | None = None,
    seeds: Sequence[int] | None = None,
    no_retrain: bool = False,
) -> list[BenchmarkCase]:
    """Every case of a scale preset, filtered by the given names (None: the preset's).

    ``tasks`` replaces the preset's task selection (all of a named task's utilities
    and games); ``utilities``/``games`` filter; ``estimators`` defaults to every
    registered estimator but those that delegate to another (``auto``), and takes variants as specs with parameters
    (``"surrogateshap(efficiency='centered')"``, see :func:`~surrogateshap.registry.parse_spec`);
    whether an estimator can run a case is the estimator's own
    :meth:`~surrogateshap.estimator.Estimator.unsupported`; ``budgets`` and ``seeds`` default to the preset's. An exact
    estimator also gets budget 2**n where that is at most ``MAX_EXACT_BUDGET``.
    Unavailable tasks (missing table) still give cases, with ``skip`` set. A task whose
    ground truth is sampled (too many players to enumerate) runs its scale's
    :class:`~surrogateshap.benchmark.scales.SampledSelection` unless ``estimators`` or
    ``budgets`` are named: the cases its shipped table was built for, replayed from the
    table with nothing trained (a case or removal fraction the table lacks is skipped or
    left out). Named estimators or budgets may need coalitions the table lacks: they are
    trained (the number is printed first), or with ``no_retrain`` refused with an error.
    """
    st = get_scale(scale)
    known_est = available_estimators()
    names = list(estimators) if estimators else [e for e in known_est if not get_estimator(e).delegates]
    bad = [e for e in names if parse_spec(e)[0] not in known_est]
    if bad:
        raise KeyError(f"unknown estimator(s) {bad}; registered: {', '.join(known_est)}")
    if tasks:
        known_tasks = benchmark_task_names()
        bad = [t for t in tasks if t not in known_tasks]
        if bad:
            raise KeyError(f"unknown benchmark task(s) {bad}; known: {', '.join(known_tasks)}")
        selection = [(t, None, None) for t in tasks]
    else:  # a preset may name tasks this installation does not register
        known_tasks = benchmark_task_names()
        selection = [s for s in expand_selection(st.selection) if s[0] in known_tasks]
    budgets_given, seeds_given = bool(budgets), seeds
    budgets = sorted(set(int(b) for b in (budgets or st.budgets)))
    seeds = list(seeds) if seeds is not None else list(range(st.n_seeds))
    ests = {e: get_estimator(e) for e in names}
    cases = []
    explicit = "refuse" if no_retrain else "train"
    for tname, util, gname in selection:
        bt = get_benchmark_task(tname, scale)
        reason = bt.unavailable()
        if bt.sampled and not estimators and not budgets_given:
            cases += _sampled_cases(get_benchmark_task(tname, scale, "replay"), st, util, gname, utilities, games,
                                    seeds_given, scale, reason, no_retrain)
            continue
        if bt.sampled:
            bt = get_benchmark_task(tname, scale, explicit)
            reason = bt.unavailable()
        for u in [util] if util else bt.utilities:
            if utilities and u not in utilities:
                continue
            for g in [gname] if gname else bt.games:
                if games and g not in games:
                    continue
                for e, est in ests.items():
                    bl = list(budgets) if est.uses_budget else [min(budgets)]
                    if est.is_exact and 2**bt.n_players <= MAX_EXACT_BUDGET:
                        bl = sorted(set(bl) | {2**bt.n_players})
                    for b in bl:
                        if b >= 2**bt.n_players and not est.is_exact:
                            continue  # every coalition fits: the answer is exact, nothing measured
                        skip = reason or est.unsupported(bt.n_players, b, bt.offers) or bt.not_a_target(g, est)
                        slow = bt.slow or (b > st.slow_budget and not est.is_exact)
                        gpu = scale == "paper" and (
                            g in bt.trains or any(r in bt.trains for r in est.requires)
                        )
                        for s in seeds:
                            cases.append(BenchmarkCase(tname, u, g, e, b, int(s), scale, skip=skip,
                                                       slow=slow or gpu, gpu=gpu, retrain=explicit))
    return cases


def _sampled_cases(bt, st, util, gname, utilities, games, seeds, scale, reason,
                   no_retrain: bool = False) -> list[BenchmarkCase]:
    """The cases of a task with a sampled table: its scale's SampledSelection, replayed
    from the table (the fine-tuning game trains its own models: refused by no_retrain)."""
    sel = st.sampled
    out = []
    for u in [util] if util else bt.utilities:
        if utilities and u not in utilities:
            continue
        for run in sel.runs:
            name, g, budget = run[:3]
            run_seeds = seeds if seeds is not None else (run[3] if len(run) > 3 else sel.seeds)
            if (gname and g != gname) or (games and g not in games) or g not in bt.all_games:
                continue
            b = 2 * bt.n_players if budget is None else budget if isinstance(budget, PrecisionTarget) else int(budget)
            est = get_estimator(name)
            skip = (reason or est.unsupported(bt.n_players, budget_arguments(b)["budget"], bt.offers)
                    or bt.not_a_target(g, est) or bt.unavailable(g))
            if not skip and isinstance(b, PrecisionTarget) and not est.refines():
                skip = f"{name} cannot refine an estimate (until=), so it cannot run to a precision target"
            if not skip and no_retrain and g == "finetune":
                skip = "--no-retrain: sparsified fine-tuning Shapley fine-tunes a model per coalition"
            gpu = scale == "paper"
            out += [BenchmarkCase(bt.name, u, g, name, b, int(s), scale, skip=skip, slow=gpu or g == "finetune",
                                  gpu=gpu, retrain="replay") for s in run_seeds]
    return out


def prepare_case(case: BenchmarkCase, _task=None, **estimator_params):
    """(call, truth): a zero-argument call running the estimator (the part to time),
    returning an Attribution, and the case's ground truth. Everything slow that is not
    the estimator (loading the table, training the proxy's full model) happens here.
    ``_task``: the benchmark task to use instead of the registered one (a table being
    built elsewhere)."""
    bt = _task if _task is not None else get_benchmark_task(case.task, case.scale, case.retrain)
    reason = bt.unavailable(case.game)
    if reason:
        raise LookupError(reason)
    game = bt.game(case.utility, case.game)
    est = get_estimator(case.estimator, **estimator_params)
    resources = bt.resources(case.utility, est.requires, case.game)
    truth = bt.truth(case.utility)
    if bt.sampled and case.seed not in get_scale(case.scale).sampled.removal_seeds:
        truth = dataclasses.replace(truth, removal_game=None)  # one ranking per estimator

    if case.game == "model":  # plays no coalition: one run per (estimator, seed) serves every utility
        key = (case.estimator, case.budget, case.seed, tuple(sorted(estimator_params.items())))

        def call():
            if key not in bt.model_runs:
                bt.model_runs[key] = est.estimate(game, **budget_arguments(case.budget), seed=case.seed,
                                                  **resources)
            return bt.model_runs[key]

        return call, truth

    def call():
        return est.estimate(game, **budget_arguments(case.budget), seed=case.seed, **resources)

    return call, truth


def run_case(case: BenchmarkCase, _task=None, **estimator_params) -> tuple:
    """Run one case: (attribution, figures) with figures from :func:`evaluate`."""
    call, truth = prepare_case(case, _task=_task, **estimator_params)
    att = call()
    return att, evaluate(att, truth)


# ---------------------------------------------------------------- reference figures
