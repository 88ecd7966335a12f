"""One validation of the options the benchmark plug-in and the command line share.

A typo in an option must stop a run before anything is trained, not select nothing and
pass: each check raises one :class:`UsageError` naming the option, the bad value and
what is valid. The plug-in (``benchmarks/conftest.py``) turns it into
``pytest.UsageError`` (exit 4), the command line into one line and exit status 2.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterable, Sequence

__all__ = ["UsageError", "names", "count", "amount", "choices", "budgets", "seeds", "estimator", "executor",
           "data_folder", "select_cases"]


class UsageError(ValueError):
    """A bad option: one line naming the option, the value and what is valid."""


def names(values) -> list[str]:
    """Comma lists from repeated options, with commas inside a spec's parentheses kept:
    ``"a,b(x=1, y=2)"`` is two names."""
    out = []
    for item in values or ():
        depth, part = 0, ""
        for ch in str(item):
            depth += (ch in "([{") - (ch in ")]}")
            if ch == "," and depth == 0:
                out.append(part)
                part = ""
            else:
                part += ch
        out.append(part)
    return [v.strip() for v in out if v.strip()]


def _shown(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def count(option: str, value, minimum: int = 0) -> int:
    """An integer option of at least ``minimum`` (a budget, a seed, a number of workers)."""
    try:
        if isinstance(value, (bool, float)):
            raise ValueError
        v = int(str(value).strip())
    except ValueError:
        v = None
    if v is None or v < minimum:
        what = "an integer" if v is None else "a positive integer" if minimum == 1 else f">= {minimum}"
        raise UsageError(f"{option} must be {what}; got {_shown(value)}")
    return v


def amount(option: str, value, minimum: float = 0.0, strict: bool = False) -> float:
    """A finite number option of at least ``minimum`` (above it with ``strict``): CPUs per
    job, a tolerance. NaN and infinity are refused, not passed on to divide by."""
    try:
        v = float(str(value).strip())
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or v < minimum or (strict and v == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise UsageError(f"{option} must be a finite number {bound}; got {_shown(value)}")
    return v


def choices(option: str, given: Iterable[str], known: Sequence[str], what: str = "choose from") -> None:
    """Every name of ``given`` is one of ``known``."""
    bad = [g for g in given if g not in known]
    if bad:
        raise UsageError(f"{option} {', '.join(map(str, bad))}: unknown; {what} {', '.join(map(str, known))}")


def budgets(values) -> list[int] | None:
    """``--budget B[,B]`` (repeatable): positive game-evaluation counts; None if not given."""
    return [count("--budget", b, 1) for b in names(values)] or None


def seeds(value) -> list[int] | None:
    """``--seeds N`` (seeds 0..N-1, N >= 1) or ``--seeds S,S,...`` (seeds >= 0); None if
    not given. An empty value is refused: it would select no case."""
    if value is None:
        return None
    parts = names([value])
    try:
        if len(parts) == 1:
            return list(range(count("--seeds", parts[0], 1)))
        if parts:
            return [count("--seeds", p, 0) for p in parts]
    except UsageError:
        pass
    raise UsageError(f"--seeds takes a count N >= 1 (seeds 0..N-1) or a comma list of seeds >= 0; "
                     f"got {value!r}")


def estimator(option: str, spec: str):
    """A registered estimator from a spec ``name(key=value, ...)``, built and validated."""
    from surrogateshap.registry import available_estimators, get_estimator, parse_spec

    try:
        base = parse_spec(spec)[0]
    except ValueError as e:
        raise UsageError(f"{option}: {e}") from None
    known = available_estimators()
    if base not in known:
        raise UsageError(f"{option}: unknown estimator {base!r}; known estimators: {', '.join(known)}")
    try:
        est = get_estimator(spec)
        est.validate()
    except (TypeError, ValueError) as e:
        raise UsageError(f"{option}: estimator {spec!r}: {e}") from None
    return est


def executor(name: str) -> str:
    """An executor name whose library is importable (Ray is an optional extra)."""
    from surrogateshap.execution import EXECUTORS

    choices("--executor", [name], EXECUTORS)
    if name == "ray" and _missing("ray"):
        raise UsageError("--executor ray needs Ray, which is not installed: pip install -e '.[ray]'")
    return name


def data_folder(option: str, value, task: str) -> str:
    """A folder of data for a task whose config reads one (a ``data_dir`` field)."""
    import dataclasses
    from pathlib import Path

    from surrogateshap.tasks.registry import TASKS

    try:
        config_cls = getattr(TASKS.get(task), "config_cls", None)
    except KeyError as e:
        raise UsageError(e.args[0]) from None
    if config_cls is not None and "data_dir" not in {f.name for f in dataclasses.fields(config_cls)}:
        raise UsageError(f"{option}: task {task} reads no data folder (its data ships with a package)")
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        raise UsageError(f"{option} {value}: " + ("not a folder" if path.exists() else "no such folder"))
    return str(path)


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a module set to None in sys.modules, a broken package
        return True


def select_cases(scale: str = "default", tasks=(), utilities=(), games=(), estimators=(), budget=(),
                 seed_option=None, no_retrain: bool = False) -> list:
    """The benchmark cases the plug-in's options select (raw option values: repeatable
    comma lists, ``--seeds`` as given), every name checked against the registries and
    the selected tasks. Options that select no case are an error, not an empty run."""
    from surrogateshap.benchmark.cases import benchmark_cases
    from surrogateshap.benchmark.tasks import benchmark_task_names

    tasks, utilities, games, estimators = (names(v) for v in (tasks, utilities, games, estimators))
    chosen_budgets, chosen_seeds = budgets(budget), seeds(seed_option)
    choices("--task", tasks, benchmark_task_names())
    for spec in estimators:
        estimator("--estimator", spec)
    try:  # utilities and games are filters: enumerate without them to name what there is
        cases = benchmark_cases(scale, tasks=tasks or None, estimators=estimators or None,
                                budgets=chosen_budgets, seeds=chosen_seeds, no_retrain=no_retrain)
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(str(e.args[0] if e.args else e)) from None
    choices("--utility", utilities, sorted({c.utility for c in cases}), "the selected tasks offer")
    choices("--game", games, sorted({c.game for c in cases}), "the selected cases play")
    cases = [c for c in cases if (not utilities or c.utility in utilities) and (not games or c.game in games)]
    if not cases:
        raise UsageError("these options select no benchmark case (--task, --utility, --game, --estimator, "
                         "--budget, --seeds)")
    return cases
