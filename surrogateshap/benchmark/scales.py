"""Scale presets of the benchmark: which tasks, budgets, seeds and test-set sizes run."""

from __future__ import annotations

from dataclasses import dataclass

from surrogateshap.evaluation import ALPHAS, removal_fractions

__all__ = ["SCALES", "ScaleSettings", "SampledSelection", "SCALE_SETTINGS", "removal_fractions",
           "expand_selection", "IMAGE_TASKS", "MODEL_BASELINES", "REPORT_SELECTION"]

SCALES = ("ci", "default", "report", "paper")


@dataclass(frozen=True)
class SampledSelection:
    """What a task too large to enumerate runs by default: the paper's comparison at
    equal retrainings, small enough that the task's shipped table holds every coalition
    its cases need (so ``pytest benchmarks/ --task <task>`` replays without retraining).

    ``runs``: (estimator, game, budget[, seeds]) with budget None = 2n retrainings (the
    least ``proxy-cv`` runs with; LOO takes n + 1) and seeds None = ``seeds``. Game
    ``model`` is for an estimator that reads the model and plays no coalition (given the
    players); ``finetune`` is the fine-tuning game (sparsified fine-tuning Shapley). The
    removal check runs for the ``removal_seeds`` cases only (one ranking per estimator).
    Naming estimators or budgets on the command line replaces this selection.
    """

    runs: tuple[tuple, ...] = (
        ("surrogateshap", "proxy", 512),
        ("proxy-cv", "retraining", None),
        ("permutation", "retraining", None),
        ("kernelshap", "retraining", None),
        ("leverageshap", "retraining", None),
        ("loo", "retraining", None),
    )
    #: estimator seeds (each seed of a retraining-game estimator retrains); LDS
    #: intervals come from the table's retraining seeds
    seeds: tuple[int, ...] = (0,)
    removal_seeds: tuple[int, ...] = (0,)


#: the model-based baselines of the task reports (the predecessor's comparison): they read
#: the full model and play no coalition, so they run once per utility, on game "model"
MODEL_BASELINES = (
    "trak", "d-trak", "journey-trak", "influence(score='renormalized')", "influence(score='relative')",
    "gradient-similarity(reduce='mean')", "gradient-similarity(reduce='max')",
    "similarity(space='pixel', reduce='mean')", "similarity(space='feature', reduce='mean')",
    "similarity(space='feature', reduce='max')",
)
#: what the task reports run: the default comparison with SurrogateSHAP on 3 seeds, the
#: model-based baselines, and sparsified fine-tuning Shapley (KernelSHAP on the fine-tuning
#: game, 126 fine-tunings of 200 steps; the mlp family)
REPORT_SELECTION = SampledSelection(
    runs=(("surrogateshap", "proxy", 512, (0, 1, 2)), *SampledSelection().runs[1:],
          *((m, "model", 0) for m in MODEL_BASELINES), ("kernelshap", "finetune", 126)),
)


@dataclass(frozen=True)
class ScaleSettings:
    """What a scale preset runs: which (task, utility, game) triples (None = all of
    the task's), budgets, estimator seeds, and the size of sampled LDS test sets."""

    selection: tuple[tuple[str, str | None, str | None], ...]
    budgets: tuple[int, ...]
    n_seeds: int = 3
    lds_m: int = 100  # sampled test coalitions per alpha (known games)
    n_noise_seeds: int = 5  # LDS test utilities per coalition for the noisy known games
    slow_budget: int = 128  # cases above this budget are marked slow
    alphas: tuple[float, ...] = ALPHAS
    sampled: SampledSelection = SampledSelection()
    #: the tasks' scale preset this benchmark preset uses (None: the same name)
    task_scale: str | None = None


_KNOWN = ("unanimity10", "airport20", "voting20")
#: fashion-animal20's proxy game enumerated on all 2^20 coalitions (slow: its first build takes minutes)
_PROXY_EXACT = "fashion-animal20-proxy"
#: a selection entry standing for every task registered with ``benchmark=True`` (the image
#: tasks with reference tables of their own; skipped, with the reason, without their data)
IMAGE_TASKS = "@image-tasks"


def expand_selection(selection) -> list[tuple[str, str | None, str | None]]:
    """A preset's selection with :data:`IMAGE_TASKS` replaced by the registered tasks."""
    from surrogateshap.tasks import benchmark_tasks

    out = []
    for entry in selection:
        if entry[0] == IMAGE_TASKS:
            out += [(t, entry[1], entry[2]) for t in benchmark_tasks()]
        else:
            out.append(entry)
    return out
SCALE_SETTINGS = {
    "ci": ScaleSettings(
        selection=(
            ("unanimity10", None, None),
            ("digits10", "neg_fid", "retraining"),
            ("digits10", "inception_score", "retraining"),
            # two image tasks replayed from their shipped tables (their default-preset proxy
            # is trained once per CI run: the full model and its bank, no coalition model)
            ("fashion-animal20", None, None),
            ("spurious-sites", None, None),
        ),
        budgets=(32, 64, 128),
    ),
    "default": ScaleSettings(
        selection=tuple((t, None, None) for t in (*_KNOWN, "unanimity50", _PROXY_EXACT, "digits10", IMAGE_TASKS)),
        budgets=(32, 64, 128, 256, 512),
    ),
    # the task reports (results/<task>_report.md): the default preset with the report's selection
    "report": ScaleSettings(
        selection=tuple((t, None, None) for t in (*_KNOWN, "unanimity50", "digits10", IMAGE_TASKS)),
        budgets=(32, 64, 128, 256, 512),
        sampled=REPORT_SELECTION,
        task_scale="default",
    ),
    "paper": ScaleSettings(
        selection=tuple((t, None, None) for t in (*_KNOWN, "unanimity50", _PROXY_EXACT, "digits10", IMAGE_TASKS)),
        budgets=(32, 64, 128, 256, 512, 1024),
        n_seeds=5,
        lds_m=200,
        n_noise_seeds=5,
        slow_budget=256,
    ),
}
