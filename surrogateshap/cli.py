"""Command line: ``surrogateshap run`` (value contributors), ``build-table``, ``report``,
``scoring-nets``, ``verify-table``, ``table-counts``.

Every argument is checked before any model is trained or any file is written; a usage
error is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from surrogateshap.benchmark import options
from surrogateshap.benchmark.scales import SCALES
from surrogateshap.evaluation import ALPHAS
from surrogateshap.execution import NodeLostError

UsageError = options.UsageError  # bad input: one line, exit status 2

#: every numeric option of every subcommand (by its dest) and its least value; a tuple
#: (least, strict) for a real number, which must also be finite. Checked by
#: :func:`_check_numbers` before any command runs.
NUMERIC_OPTIONS = {
    "budget": 1, "seed": 0, "seeds": 0, "first": 0, "limit": 0, "export_every": 1, "threads": 1,
    "workers": 1, "retries": 0, "test_coalitions": 0, "cpus_per_job": (0.0, True),
    "gpus_per_job": (0.0, False), "rtol": (0.0, False),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _task(args):
    from surrogateshap.tasks import get_task

    kwargs = _settings(getattr(args, "set", None) or [])
    if getattr(args, "data", None) is not None:
        kwargs["data_dir"] = options.data_folder("--data", args.data, args.task)
    try:
        return get_task(args.task, scale=args.scale, **kwargs)
    except KeyError as e:
        raise UsageError(e.args[0] if e.args else str(e)) from None
    except (ValueError, FileNotFoundError) as e:  # a config that does not fit its data
        raise UsageError(f"task {args.task}: {e}") from None
    except TypeError as e:  # a --set key the task's configuration does not have
        raise UsageError(f"task {args.task}: --set: {e}") from None


def _settings(items: list[str]) -> dict:
    """``--set KEY=VALUE`` items as the task's configuration keywords (what a task from a
    folder is told without code: ``--set family=sd --set model_path=/models/sd``); a value
    is read as a Python literal (numbers, True, None, tuples) and otherwise kept as text."""
    import ast

    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"--set wants KEY=VALUE with KEY a configuration field; got {item!r}")
        if key in out:
            raise UsageError(f"--set {key} is given twice")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def _check_data(task):
    """The task's data loads (a folder's bad files are listed as they are skipped), or one
    error saying what is missing or wrong: before anything is trained."""
    reason = task.data_missing()
    if reason:
        raise UsageError(reason)


def _writable(path, what: str):
    from surrogateshap._files import check_writable_dir

    try:
        check_writable_dir(path, what)
    except OSError as e:
        raise UsageError(str(e)) from None


def _check_numbers(args):
    """Every numeric option in range (through the shared checks), or one UsageError."""
    for dest, least in NUMERIC_OPTIONS.items():
        value = getattr(args, dest, None)
        flag = "--" + dest.replace("_", "-")
        for v in value if isinstance(value, list) else [] if value is None else [value]:
            if isinstance(least, tuple):
                options.amount(flag, v, *least)
            else:
                options.count(flag, v, least)


def _check_run(args, task):
    """Refuse bad input before training; returns the table named by ``--reference`` (None
    without one): a file that is not a table of this task is an error, not a note."""
    from surrogateshap.benchmark.scales import PROXY_TARGET
    from surrogateshap.tasks.reference import load_reference

    _check_data(task)
    if args.utility not in task.utilities:
        raise UsageError(f"task {task.name} has no utility {args.utility!r}; it offers "
                         f"{', '.join(task.utilities)}")
    named = {args.estimator: "--estimator", **{c: "--compare" for c in args.compare if c != args.estimator}}
    for name, flag in named.items():
        est = options.estimator(flag, name)
        if est.requires:
            raise UsageError(f"estimator {name!r} needs {list(est.requires)} beside the game, which "
                             "`run` does not provide; use it from Python or the benchmark suite")
        need = est.min_budget(task.n_players)
        budget = PROXY_TARGET.max_evaluations if args.budget is None else args.budget
        if budget < need:
            raise UsageError(f"estimator {name!r} needs --budget >= {need} for {task.n_players} players; got "
                             f"{budget}" + (" (the precision target's cap)" if args.budget is None else ""))
    _writable(task.cache_dir, "cache folder (SURROGATESHAP_CACHE)")
    if args.reference is None:
        return None
    if not Path(args.reference).exists():
        raise UsageError(f"--reference {args.reference}: no such file")
    try:
        return load_reference(task, args.reference)
    except (OSError, KeyError, ValueError) as e:  # KeyError: a column the table lacks
        why = f"no column {e}" if isinstance(e, KeyError) else " ".join(str(e).split())
        raise UsageError(f"--reference {args.reference}: not a retraining table of task {task.name} "
                         f"({why})") from None


def _run(args) -> int:
    import pandas as pd

    from surrogateshap.evaluation import evaluate, ground_truth_from_table
    from surrogateshap.tasks.reference import load_reference

    task = _task(args)
    ref = _check_run(args, task)
    print(f"task {task.name} ({task.n_players} contributors, scale {args.scale}); "
          f"utility {args.utility}; cache {task.cache_dir}", flush=True)
    if ref is None:  # the shipped table, where there is one
        try:
            ref = load_reference(task)
        except (FileNotFoundError, ValueError) as e:
            print(f"(no ground truth: {e})")
    proxy = task.proxy_game(args.utility)
    if not task.cache.full_model_path(getattr(task.family, "model_file", "full_model.pt")).exists():
        print(f"training the full model on {len(task.item_contributor)} items, then its sample bank "
              "(once: both are cached)", flush=True)
    proxy(np.ones((1, task.n_players), bool))  # trains the full model if not cached
    results, budget = _estimates(proxy, [args.estimator, *args.compare], args.budget, args.seed)
    table = pd.DataFrame({name: a.values for name, a in results.items()}, index=task.players)
    truth = None
    if ref is not None and ref.complete_seeds():
        truth = ground_truth_from_table(ref, args.utility, ALPHAS)
        table["exact (retraining)"] = truth.exact
    print(f"\nValues on the proxy game, {budget}:")
    for name, a in results.items():
        how = ("exact: every coalition" if a.exact else f"stopped by {a.stopped_by}" if a.stopped_by
               else "fixed budget")
        print(f"  {name} ({a.index}): {a.n_evaluations} evaluations, {a.seconds:.2f} s, {how}")
    print(table.to_string(float_format=lambda v: f"{v:9.3f}"))
    if truth is not None:
        print(f"\nAgainst the retraining game (seeds {ref.complete_seeds()}):")
        rows = []
        for name, a in {**results, "exact (retraining)": truth.exact}.items():
            figs = evaluate(a, truth)
            row = {"estimator": name}
            for alpha in ALPHAS:
                row[f"LDS@{alpha}"] = f"{figs[f'lds_{alpha:g}_mean']:.1f} ± {figs[f'lds_{alpha:g}_ci95']:.1f}"
            if name in results:
                # errors against exact values exist only for Shapley estimates
                row.update({k: round(figs.get(k, float("nan")), 3)
                            for k in ("relative_l2", "spearman", "topk_recall")})
            rows.append(row)
        print(pd.DataFrame(rows).set_index("estimator").to_string())
    return 0


def _estimates(proxy, names, budget, seed) -> tuple[dict, str]:
    """Each named estimator's Attribution on the proxy game, and the budget in words. A
    ``--budget`` is fixed for every estimator; without one an estimator that can refine
    runs to the benchmark's precision target (:data:`~surrogateshap.benchmark.scales.PROXY_TARGET`)
    and one that cannot runs at a fixed budget: the most evaluations a refined one spent
    (the comparison at equal cost), or the target's cap when none refines."""
    from surrogateshap.benchmark.scales import PROXY_TARGET, budget_arguments
    from surrogateshap.registry import get_estimator

    ests = {name: get_estimator(name) for name in names}
    if budget is not None:
        return ({name: est.estimate(proxy, budget, seed=seed) for name, est in ests.items()},
                f"budget {budget} evaluations")
    refined = {name: est.estimate(proxy, **budget_arguments(PROXY_TARGET), seed=seed)
               for name, est in ests.items() if est.refines()}
    fixed = max((a.n_evaluations for a in refined.values()), default=PROXY_TARGET.max_evaluations)
    results = {name: refined[name] if name in refined else est.estimate(proxy, fixed, seed=seed)
               for name, est in ests.items()}
    words = f"precision target {PROXY_TARGET.label}"
    if len(refined) < len(ests):
        words += f"; {fixed} evaluations for an estimator that cannot refine"
    return results, words


def _coalitions(args, task):
    """The coalitions ``build-table`` retrains: every one, the protocol's, or a file's."""
    from surrogateshap.benchmark.protocol import ground_truth_coalitions, protocol_note, read_coalitions
    from surrogateshap.game import all_coalitions

    n = task.n_players
    protocol_only = [o for o, given in (("--first", args.first is not None), ("--no-loo", args.no_loo)) if given]
    # --first and --no-loo shape the protocol's sets: they ask for the protocol, even where
    # the default (up to 12 players) is every coalition
    which = args.coalitions or ("protocol" if protocol_only or n > 12 else "all")
    if protocol_only and which != "protocol":
        raise UsageError(f"{' and '.join(protocol_only)} shape the protocol's coalitions; "
                         f"they do not apply to --coalitions {which}")
    def read(option, path):
        try:
            return read_coalitions(path, n)
        except (OSError, ValueError) as e:
            raise UsageError(f"{option} {path}: {e}") from None

    extra = read("--extra", args.extra) if args.extra else np.zeros((0, n), bool)
    if which == "all":
        if n > 20:
            raise UsageError(f"--coalitions all: {task.name} has {n} players, 2**{n} retrainings; use "
                             "--coalitions protocol")
        masks, note = all_coalitions(n), "every coalition"
    elif which == "protocol":
        masks = ground_truth_coalitions(n, loo=not args.no_loo, first=args.first)
        note = protocol_note(loo=not args.no_loo, extra=bool(args.extra))
    else:
        masks, note = read("--coalitions", which), f"coalitions listed in {Path(which).name}"
    masks = np.concatenate([masks, extra])
    return (masks if args.limit is None else masks[: args.limit]), note


def _build_table(args) -> int:
    import dataclasses
    import shlex

    import torch

    from surrogateshap.execution import get_executor
    from surrogateshap.tasks import get_task
    from surrogateshap.tasks.reference import RETRAINING_CSV, _earlier_rows, build_table, reference_dir

    if args.selection and not args.benchmark:
        raise UsageError("--selection chooses the cases of --benchmark; add --benchmark")
    task = _task(args)
    options.executor(args.executor)
    _check_data(task)
    masks, note = _coalitions(args, task)
    out = Path(args.out) if args.out is not None else reference_dir(task.name)
    _writable(out, "output folder (--out)")
    if (out / RETRAINING_CSV).is_dir():
        raise UsageError(f"{out / RETRAINING_CSV} is a folder, not a table")
    try:  # a table of another configuration or scorer, or unreadable: refused before training
        _earlier_rows(task, out / RETRAINING_CSV)
    except ValueError as e:
        raise UsageError(str(e).replace("\n", " ")) from None
    _writable(task.cache_dir, "cache folder (SURROGATESHAP_CACHE)")
    resources = {f"{k}_per_job": v for k, v in (("cpus", args.cpus_per_job), ("gpus", args.gpus_per_job))
                 if v is not None}
    if resources:  # run settings: the configuration id (and the cache) stay the same
        unknown = [f for f in resources if not hasattr(task.config, f)]
        if unknown:
            raise UsageError(f"task {task.name}'s config has no field {', '.join(unknown)}")
        task = get_task(args.task, scale=args.scale, config=dataclasses.replace(task.config, **resources))
    try:
        executor = get_executor(args.executor, workers=args.workers, max_retries=args.retries,
                                address=args.address)
    except (ImportError, ValueError) as e:
        raise UsageError(str(e)) from None
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)  # deterministic rows: one thread unless asked otherwise
    command = "surrogateshap build-table " + " ".join(shlex.quote(x) for x in args.argv)
    failures: dict = {}
    try:
        table = build_table(task, masks, args.seeds, out, executor=executor, train=not args.export_only,
                            export_every=args.export_every, command=command, note=note, failures=failures)
        if args.benchmark:
            table = _benchmark_and_export(task, args, out, masks, command, note, executor)
    finally:
        executor.close()
        torch.set_num_threads(threads)
    counts = {int(s): int(n) for s, n in table.frame.groupby("seed").size().items()}
    print(f"{len(table.frame)} rows in {out / RETRAINING_CSV} (per seed {counts}); complete seeds "
          f"{table.complete_seeds()}")
    for seed, failed in failures.items():
        print(f"seed {seed}: {len(failed)} coalition(s) failed (logged in the failures table of the cache's "
              f"retrain-seed{seed}*.sqlite; run again to retry them):", file=sys.stderr)
        for key, rec in failed.items():
            print(f"  {key} after {rec['attempts']} attempts: {rec['error'].strip().splitlines()[0]}",
                  file=sys.stderr)
    return 1 if failures else 0


def _benchmark_and_export(task, args, out, masks, command, note, executor=None):
    """Run the task's benchmark selection (``--selection``, default the task's scale) on
    the table just written, retraining what it lacks (its estimators' coalitions, its
    removal sets) into the task's cache on ``executor`` (the command's), then export every
    coalition the cache holds for the table's seeds."""
    from surrogateshap.benchmark import benchmark_cases, run_case
    from surrogateshap.benchmark.tasks import TableBenchmark
    from surrogateshap.registry import get_estimator
    from surrogateshap.tasks.reference import RETRAINING_CSV, build_table

    bt = TableBenchmark(task.name, args.scale, table_path=out / RETRAINING_CSV, retrain=True, executor=executor)
    reason = bt.unavailable()
    if reason:
        raise UsageError(reason)
    selection = args.selection or args.scale
    cases = [c for c in benchmark_cases(selection, tasks=[task.name])
             if get_estimator(c.estimator).unsupported(bt.n_players, c.max_evaluations, bt.offers) is None]
    for i, case in enumerate([] if args.export_only else cases, 1):
        print(f"[{i}/{len(cases)}] {case.id}", flush=True)
        run_case(case, _task=bt)
    keys = set()
    for s in args.seeds:
        store = task.cache.retraining_store(s)
        store.refresh()
        keys |= set(store.records)
    cached = np.array([[c == "1" for c in k] for k in sorted(keys)], dtype=bool).reshape(-1, task.n_players)
    return build_table(task, np.concatenate([masks, cached]), args.seeds, out, train=False, command=command,
                       note=note + f", the {selection} benchmark selection's retrainings")


def _scoring_nets(args) -> int:
    """Train every scoring network of a task from its recipe (deterministic: seeded, one
    thread) and compare with the shipped weights; ``--write`` ships the trained ones."""
    import torch

    from surrogateshap.tasks.features.nets import state_digest

    task = _task(args)
    recipes = task.scoring_recipes() if hasattr(task, "scoring_recipes") else {}
    if not recipes:
        raise UsageError(f"task {task.name} trains no scoring network of its own")
    differ = 0
    for name, recipe in recipes.items():
        net = recipe.train()
        with torch.no_grad():
            x = torch.as_tensor(recipe.images, dtype=torch.float32).reshape(len(recipe.images), -1)
            acc = float((net.classify(x).argmax(1).numpy() == recipe.labels).mean())
        digest = state_digest(net.state_dict())
        shipped = recipe.shipped
        if shipped is not None and shipped.exists():
            old = state_digest(torch.load(shipped, map_location="cpu", weights_only=True))
            same = "same as shipped" if old == digest else f"DIFFERS from shipped {old}"
            differ += old != digest
        else:
            same = "not shipped" if shipped is None else f"{shipped} absent"
        print(f"{task.name}/{name}: {len(recipe.labels)} images, {recipe.n_classes} classes, training "
              f"accuracy {acc:.3f}, weights {digest} ({same})")
        if args.write and shipped is not None:
            from surrogateshap._files import atomic_write

            with atomic_write(shipped, "wb") as f:
                torch.save(net.state_dict(), f)
            print(f"  wrote {shipped}")
    return 1 if differ and not args.write else 0


def _shipped_table(task):
    """The task's shipped table, or a usage error saying why there is none to read."""
    from surrogateshap.tasks.reference import load_reference

    try:
        return load_reference(task)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e).replace("\n", " ")) from None


def _verify_table(args) -> int:
    """Retrain the empty and full coalitions and the first K alpha-0.5 test coalitions of a
    task's shipped table (seed ``--seed``, nothing read from a cache or the table) and
    compare every utility with the table's row: does this checkout reproduce the table?"""
    import torch

    from surrogateshap.benchmark.protocol import lds_test_coalitions
    from surrogateshap.game import coalition_key

    task = _task(args)
    table = _shipped_table(task)
    n = task.n_players
    masks = np.concatenate([np.zeros((1, n), bool), np.ones((1, n), bool),
                            lds_test_coalitions(n)[0.5][: args.test_coalitions]])
    if args.score_only:  # the empty coalition: the prior through the scoring networks, no training
        masks = masks[:1]
    masks = masks[table.held_on(masks, args.seed)]
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        game = task.retraining_game(task.utilities[0], seed=args.seed, cache=False, reference=False)
        recs = game.records(masks)
    finally:
        torch.set_num_threads(threads)
    bad = 0
    for m, rec in zip(masks, recs):
        row = table.row(coalition_key(m), args.seed)
        diffs = {u: (rec[u], float(row[u])) for u in task.utilities}
        ok = all(np.isclose(a, b, rtol=args.rtol, atol=0) for a, b in diffs.values())
        bad += not ok
        shown = ", ".join(f"{u} {a:.6g} (table {b:.6g})" for u, (a, b) in diffs.items())
        print(f"{coalition_key(m)} seed {args.seed}: {'same' if ok else 'DIFFERENT'}: {shown}")
    print(f"{len(masks) - bad} of {len(masks)} rows reproduced (rtol {args.rtol:g})")
    return 1 if bad else 0


def _table_counts(args) -> int:
    """Print what a task's shipped table holds, per kind and seed; ``--update-card``
    writes it into the dataset card's counts block."""
    from surrogateshap.benchmark.protocol import counts_markdown, update_card
    from surrogateshap.tasks.reference import reference_dir

    task = _task(args)
    table = _shipped_table(task)
    print(counts_markdown(table))
    if args.update_card:
        card = reference_dir(task.name) / "README.md"
        try:
            card.write_text(update_card(card.read_text(), table))
        except (OSError, ValueError) as e:
            raise UsageError(f"{card}: {e}") from None
        print(f"updated {card}")
    return 0


def _report(args) -> int:
    from surrogateshap.report import load_runs, write_report, write_task_reports

    try:
        load_runs(args.json)
    except (OSError, ValueError) as e:
        raise UsageError(str(e)) from None
    _writable(args.out, "report folder (--out)")
    path = write_report(args.json, args.out)
    print(f"wrote {path}")
    if args.task_reports:
        _writable(args.task_reports, "task report folder (--task-reports)")
        try:
            for p in write_task_reports(args.json, args.task_reports, args.task or None):
                print(f"wrote {p}")
        except ValueError as e:
            raise UsageError(str(e)) from None
    return 0


def main(argv=None) -> int:
    p = _Parser(prog="surrogateshap", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", parser_class=_Parser)
    r = sub.add_parser("run", help="value a task's contributors with an estimator on the proxy game")
    r.add_argument("--task", default="digits10")
    r.add_argument("--utility", default="neg_fid")
    r.add_argument("--estimator", default="surrogateshap")
    r.add_argument("--compare", nargs="*", default=["permutation-antithetic", "kernelshap"])
    r.add_argument("--budget", type=int, default=None,
                   help="game evaluations, the same fixed budget for every estimator (default: refine each "
                        "estimate to the benchmark's precision target, surrogateshap.benchmark.PROXY_TARGET)")
    r.add_argument("--scale", default="default", choices=["ci", "default", "paper"])
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--reference", default=None, help="path to a retraining table CSV")
    r.set_defaults(fn=_run)
    b = sub.add_parser("build-table", help="retrain a task's coalitions (resumable) and write its reference table")
    b.add_argument("--task", default="digits10")
    b.add_argument("--scale", default="default", choices=["ci", "default", "paper"])
    b.add_argument("--seeds", type=int, nargs="+", default=[0])
    b.add_argument("--out", default=None, help="table folder (default datasets/<task>); a folder without a table "
                   "starts from the shipped one (its rows are served and kept, not retrained)")
    b.add_argument("--coalitions", default=None,
                   help="'all' (every coalition: exact values; default up to 12 players), 'protocol' (empty, "
                        "full, the LDS test sets, leave-one-out; default beyond), or a file of bit strings")
    b.add_argument("--first", type=int, default=None,
                   help="protocol: only the first K test coalitions of each LDS set (a prefix: every alpha early)")
    b.add_argument("--no-loo", action="store_true", help="protocol: without leave-one-out")
    b.add_argument("--extra", default=None, help="a file of more coalitions (bit strings, one a line)")
    b.add_argument("--limit", type=int, default=None, help="only the first N coalitions (build order)")
    b.add_argument("--benchmark", action="store_true",
                   help="then run a benchmark selection (--selection; retraining what it lacks) and export "
                        "every cached coalition")
    b.add_argument("--selection", default=None, choices=SCALES,
                   help="with --benchmark: the benchmark scale whose cases run (default: the task's --scale); "
                        "'report' also builds the removal sets of the model baselines and the fine-tuning game")
    b.add_argument("--export-only", action="store_true", help="write what the cache holds; train nothing")
    b.add_argument("--export-every", type=int, default=16,
                   help="rewrite the table after this many new retrainings per seed")
    b.add_argument("--threads", type=int, default=1, help="torch threads (1: rows reproducible anywhere)")
    b.add_argument("--executor", default="serial", choices=["serial", "processes", "ray"],
                   help="where trainings run; the cache is the same for all, so a run resumes on another")
    b.add_argument("--workers", type=int, default=None,
                   help="jobs in flight (processes: worker processes; default from CPUs and the task's resources)")
    b.add_argument("--address", default=None,
                   help="ray: address of a running cluster ('auto', HOST:PORT); default a local instance")
    b.add_argument("--retries", type=int, default=3,
                   help="extra attempts of a coalition whose training raised or whose worker died")
    b.add_argument("--cpus-per-job", type=float, default=None, help="CPUs one training job asks for")
    b.add_argument("--gpus-per-job", type=float, default=None,
                   help="GPUs one training job asks for (ray; fractions share a GPU)")
    b.set_defaults(fn=_build_table)
    sn = sub.add_parser("scoring-nets", help="train a task's scoring networks from their recipes and "
                                             "compare with (or --write) the shipped weights")
    sn.add_argument("--task", default="digits10")
    sn.add_argument("--scale", default="default", choices=["ci", "default", "paper"])
    sn.add_argument("--write", action="store_true", help="write the trained weights as the shipped ones")
    sn.set_defaults(fn=_scoring_nets)
    vt = sub.add_parser("verify-table", help="retrain a few coalitions of a task's shipped table and compare")
    vt.add_argument("--task", default="digits10")
    vt.add_argument("--scale", default="default", choices=["ci", "default", "paper"])
    vt.add_argument("--seed", type=int, default=0)
    vt.add_argument("--test-coalitions", type=int, default=2, help="alpha-0.5 test coalitions beside empty and full")
    vt.add_argument("--threads", type=int, default=1)
    vt.add_argument("--rtol", type=float, default=1e-5, help="the table keeps 6 significant digits")
    vt.add_argument("--score-only", action="store_true",
                    help="only the empty coalition: the scoring networks and the prior, nothing trained")
    vt.set_defaults(fn=_verify_table)
    tc = sub.add_parser("table-counts", help="what a task's shipped table holds, per kind of coalition and seed")
    tc.add_argument("--task", default="digits10")
    tc.add_argument("--scale", default="default", choices=["ci", "default", "paper"])
    tc.add_argument("--update-card", action="store_true", help="write the counts into the dataset card")
    tc.set_defaults(fn=_table_counts)
    for command in (r, b, sn, vt, tc):
        command.add_argument("--data", default=None, metavar="DIR",
                             help="the task's data folder (imagefolder: your images, by contributor)")
        command.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                             help="a field of the task's configuration, e.g. --set family=sd --set "
                                  "model_path=DIR (repeatable; values read as Python literals)")
    rep = sub.add_parser("report", help="turn --benchmark-json files into a markdown report and plots")
    rep.add_argument("json", nargs="+", help="one benchmark JSON file, or several read as one run (e.g. a "
                     "new estimator's run beside a published report's)")
    rep.add_argument("--out", default="results/report")
    rep.add_argument("--task-reports", default=None, metavar="DIR",
                     help="also write DIR/<task>_report.md for each task with a sampled ground truth")
    rep.add_argument("--task", action="append", default=[], help="only these tasks' reports")
    rep.set_defaults(fn=_report)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in sub.choices and argv[0] not in ("-h", "--help"):
        argv = ["run", *argv]  # `surrogateshap --budget 64` means `surrogateshap run --budget 64`
    args = p.parse_args(argv)
    args.argv = argv[1:]
    try:
        _check_numbers(args)
        return args.fn(args)
    except UsageError as e:
        print(f"surrogateshap {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except NodeLostError as e:  # the machine went, not a bug: what finished is stored
        print(f"surrogateshap {args.cmd}: stopped: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
