"""Benchmark tasks: per utility, the games an estimator plays and its ground truth."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from math import comb
from pathlib import Path

import numpy as np

from surrogateshap.benchmark.replay import ReplayedGame
from surrogateshap.benchmark.scales import SCALE_SETTINGS, SCALES, removal_fractions
from surrogateshap.evaluation import GroundTruth, ground_truth_from_table, proxy_fidelity
from surrogateshap.exact import banzhaf_from_table
from surrogateshap.game import CachedGame, Game, PlayersOnly, all_coalitions
from surrogateshap.games import AirportGame, NoisyGame, WeightedVotingGame, random_unanimity_game
from surrogateshap.metrics import sample_test_coalitions

__all__ = ["BenchmarkTask", "KnownGameTask", "TableBenchmark", "Digits10Benchmark",
           "BENCHMARK_TASKS", "get_benchmark_task", "benchmark_task_names", "BANZHAF_MAX_PLAYERS",
           "task_for_table"]

#: known games up to this many players also get exact Banzhaf values (2**n evaluations)
BANZHAF_MAX_PLAYERS = 16


class BenchmarkTask:
    """Games and ground truth of one benchmark task (subclasses fill in the rest).

    ``games`` lists the game kinds an estimator can play; ``unavailable()`` returns a
    reason to skip (missing data or dependency) or None.
    """

    name: str = ""
    players: tuple[str, ...] = ()
    utilities: tuple[str, ...] = ()
    games: tuple[str, ...] = ()
    #: game kinds a selection may name beside those enumerated (``games``)
    extra_games: tuple[str, ...] = ()
    #: the game kind that needs model training on first use (marked gpu at paper scale)
    trains: tuple[str, ...] = ()
    #: every case of the task is marked slow
    slow: bool = False
    #: resources an estimator may declare in ``requires``
    offers: tuple[str, ...] = ()
    #: ground truth from sampled coalitions (too many players to enumerate): the
    #: scale's :class:`~surrogateshap.benchmark.scales.SampledSelection` runs by default
    sampled: bool = False

    def __init__(self, scale: str = "default"):
        if scale not in SCALE_SETTINGS:
            raise KeyError(f"unknown scale {scale!r}; choose from {SCALES}")
        self.scale = scale
        self.settings = SCALE_SETTINGS[scale]
        self.task_scale = self.settings.task_scale or scale  # the tasks' preset of this scale
        self._truth: dict[str, GroundTruth] = {}
        self.model_runs: dict = {}  # model-based estimates, shared by the utilities

    @property
    def n_players(self) -> int:
        return len(self.players)

    def unavailable(self, game: str | None = None) -> str | None:
        return None

    @property
    def all_games(self) -> tuple[str, ...]:
        return (*self.games, *self.extra_games)

    def check(self, utility: str, game: str | None = None):
        """LookupError naming why the task is unavailable (first: a task's utilities may
        come from the data it lacks), KeyError for a utility or game it does not offer."""
        reason = self.unavailable()
        if reason:
            raise LookupError(reason)
        if utility not in self.utilities:
            raise KeyError(f"task {self.name} has no utility {utility!r}; it offers {self.utilities}")
        if game is not None and game not in self.all_games:
            raise KeyError(f"task {self.name} has no game {game!r}; it offers {self.all_games}")

    def game(self, utility: str, game: str) -> Game:
        """The game an estimator plays."""
        raise NotImplementedError

    def resource(self, name: str, utility: str, game: str | None = None):
        """A resource an estimator declares in ``requires`` for the case's ``game`` (None
        when not offered)."""
        return None

    #: the games the ``fidelities`` resource's cheaper games stand beside (the game a
    #: multi-fidelity estimator values); none where the task offers no fidelities
    fidelity_targets: tuple[str, ...] = ()

    def not_a_target(self, game: str, estimator) -> str | None:
        """Why ``estimator`` does not run on ``game`` here (None: it does): an estimator of
        several fidelities values the task's most expensive game, with the cheaper ones
        (the proxy among them) as its resource, never the proxy game itself."""
        if "fidelities" in getattr(estimator, "requires", ()) and game not in self.fidelity_targets:
            return (f"{estimator.label} values the {' or '.join(self.fidelity_targets) or 'target'} game, with "
                    f"the cheaper fidelities as its resource; not the {game!r} game of {self.name}")
        return None

    def game_info(self, utility: str, game: str) -> dict:
        """Facts about the game a case plays, for the record (e.g. replay timing)."""
        g = self.game(utility, game)
        if isinstance(g, ReplayedGame):
            return {"game_seconds_per_evaluation": g.seconds_per_evaluation}
        return {}

    def resources(self, utility: str, requires: Sequence[str], game: str | None = None) -> dict:
        out = {r: self.resource(r, utility, game) for r in requires}
        missing = [r for r, v in out.items() if v is None]
        if missing:
            raise LookupError(f"task {self.name} offers no {missing} resource")
        return out

    def truth(self, utility: str) -> GroundTruth:
        self.check(utility)
        if utility not in self._truth:
            self._truth[utility] = self._make_truth(utility)
        return self._truth[utility]

    def _make_truth(self, utility: str) -> GroundTruth:
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, scale={self.scale!r})"


class KnownGameTask(BenchmarkTask):
    """A game with known Shapley values, clean or with seeded retraining-like noise.

    The proxy resource (for estimators that declare ``requires=("proxy",)``) is an
    independently noised copy with twice the noise: cheap, correlated, biased. The
    ``fidelities`` resource (``multifidelity``) offers that copy as a free cheaper game,
    the game valued costing one step an evaluation.
    """

    utilities = ("clean", "noisy")
    games = ("known",)
    offers = ("proxy", "fidelities")
    fidelity_targets = ("known",)

    def __init__(self, name: str, base: Game, scale: str = "default", noise: float = 0.2,
                 slow: bool = False):
        super().__init__(scale)
        self.name = name
        self.base = base
        self.players = base.players
        self.slow = slow
        rng = np.random.default_rng(123)
        probe = rng.random((512, self.n_players)) < rng.random((512, 1))
        spread = float(np.std(base(probe)))
        self.sigma = noise * (spread if spread > 0 else 1.0)

    def game(self, utility: str, game: str = "known") -> Game:
        self.check(utility, game)
        return self.base if utility == "clean" else NoisyGame(self.base, self.sigma, seed=0)

    def resource(self, name, utility, game=None):
        if name == "proxy":
            return NoisyGame(self.base, 2 * self.sigma, seed=10_000)
        if name == "fidelities":
            return {"target": 1.0, "proxy": (self.resource("proxy", utility), 0.0)}
        return None

    def _make_truth(self, utility):
        n, st = self.n_players, self.settings
        sets = {}
        for j, alpha in enumerate(st.alphas):
            k = max(1, int(alpha * n))
            m = min(st.lds_m, comb(n, k))
            masks = sample_test_coalitions(n, alpha, m=m, seed=1000 + j)
            if utility == "clean":
                utils = self.base(masks)[None, :]
            else:
                utils = np.stack(
                    [NoisyGame(self.base, self.sigma, seed=s)(masks) for s in range(1, st.n_noise_seeds + 1)]
                )
            sets[alpha] = (masks, utils)
        other = {}
        if n <= BANZHAF_MAX_PLAYERS:
            other["banzhaf"] = banzhaf_from_table(self.base(all_coalitions(n)), n)
        return GroundTruth(
            players=self.players,
            exact=self.base.exact_values(),
            exact_other=other,
            lds_sets=sets,
            removal_game=self.base,
            fractions=removal_fractions(n),
            cost_unit=self.base.cost_unit,
            name=f"{self.name}/{utility}",
        )


class TableBenchmark(BenchmarkTask):
    """A diffusion task with a reference retraining table: the one table-backed task.

    Game ``retraining`` replays the table (the seed mean on a complete table, budgets in
    retrainings; seed 0 of a table of sampled coalitions, so an estimator pays one
    retraining per coalition, as it would in practice); game ``proxy`` is SurrogateSHAP's
    proxy game over the one full-data model (its first use trains that model and a
    sample bank, cached under ``$SURROGATESHAP_CACHE``), tabulated once and replayed
    (:class:`ReplayedGame`), so a case's wall-clock is the estimator's own. The task is
    built at the configuration that made the table (its ``# config`` header), whatever
    the scale preset, so a CI run never scores a cheaper proxy against the table.
    Ground truth comes from :func:`~surrogateshap.evaluation.ground_truth_from_table`.

    ``retrain`` says what happens to a coalition the table lacks (an estimator's query,
    a removal set): "replay" never trains (the case is skipped, naming what is missing;
    a removal fraction the table lacks is left out), "train" trains it on the seeds that
    lack it only, through the task's cache (the number is printed first), "refuse"
    raises :class:`~surrogateshap.tasks.games.RetrainingRefusedError` naming it. The
    table is part of the task's cache: its rows are never retrained. ``costs()`` counts
    what the task paid: coalition models trained, the full model, the bank, the proxy
    evaluations. A task whose data is absent is skipped with the reason. ``executor``: what
    trains those coalitions (an :class:`~surrogateshap.execution.Executor` or its name;
    None: the task's default), e.g. ``build-table --benchmark``'s worker processes.
    """

    games = ("retraining", "proxy")
    #: "model": the players only (an estimator that reads the model); "finetune": the
    #: fine-tuning game of sparsified fine-tuning Shapley (the mlp family);
    #: "seller-proxy": the proxy game of the task's seller view (tasks whose contributors
    #: share units: :meth:`~surrogateshap.tasks.base.DiffusionTask.seller_view`)
    extra_games = ("model", "finetune", "seller-proxy")
    trains = ("proxy", "model", "finetune", "seller-proxy")
    fidelity_targets = ("retraining",)
    RETRAIN = ("replay", "train", "refuse")
    #: up to this many players a table enumerates every coalition (2^n retrainings);
    #: beyond, it holds the paper's sampled test coalitions
    ENUMERATE_MAX_PLAYERS = 12

    def __init__(self, name: str, scale: str = "default", table_path: str | os.PathLike | None = None,
                 retrain: str | bool = "train", executor=None):
        super().__init__(scale)
        retrain = {True: "train", False: "refuse"}.get(retrain, retrain)
        if retrain not in self.RETRAIN:
            raise ValueError(f"retrain must be one of {self.RETRAIN}, got {retrain!r}")
        self.name = name
        self.table_path = table_path
        self.retrain = retrain
        self.executor = executor
        self._task = None
        self._table = None
        self._proxies: dict[str, Game] = {}
        self._retraining: dict[int, Game] = {}
        self._finetune: dict[str, Game] = {}
        self._reason: str | None = None
        self._checked = False
        self._paid: dict[str, float] = {}

    @property
    def players(self) -> tuple[str, ...]:
        if self._table is not None:
            return self._table.players
        task = self._named_task()
        return () if task is None else tuple(task.players)

    @property
    def utilities(self) -> tuple[str, ...]:
        if self._table is not None:
            return self._table.utilities
        task = self._named_task()
        return ("-",) if task is None else tuple(task.utilities)

    @property
    def offers(self) -> tuple[str, ...]:
        """The proxy game; ``fidelities`` (``multifidelity``: the proxy as a free cheaper
        game beside the retraining game, a retraining costing the config's training
        steps, a fine-tuning its own; not beside a proxy game, which is free; the
        fine-tuning game joins them only where the case trains anyway: :meth:`_offers_finetune`);
        and model access (``requires=("model",)``: the full-data model of the table's
        configuration) where the task's family provides it."""
        task = self._task if self._task is not None else self._named_task()
        if task is None:
            return ("proxy", "fidelities")
        from surrogateshap.tasks.models import family_offers

        return ("proxy", "fidelities", *(("model",) if "model" in family_offers(task.family_kind) else ()))

    @property
    def slow(self) -> bool:
        return self._table is not None and not self._table.complete_seeds() and self.retrain == "train"

    @property
    def sampled(self) -> bool:
        if self._table is not None:
            return not self._table.complete_seeds()
        return len(self.players) > self.ENUMERATE_MAX_PLAYERS

    def _named_task(self):
        """The task at this scale (names its players and utilities while no table is
        loaded); None when it cannot even be built (its data is absent)."""
        if self._task is not None:
            return self._task
        from surrogateshap.tasks import get_task

        try:
            return get_task(self.name, scale=self.task_scale)
        except Exception:  # noqa: BLE001 - the reason is reported by unavailable()
            return None

    def _path(self) -> Path:
        from surrogateshap.tasks.reference import RETRAINING_CSV, reference_dir

        return Path(self.table_path) if self.table_path else reference_dir(self.name) / RETRAINING_CSV

    @property
    def task(self):
        """The task at the configuration that made the table; its cache serves the table."""
        if self._task is None:
            self._task = task_for_table(self.name, self._path(), prefer=self.task_scale)
            self._task.cache.use_reference(self._path(), self._table)
        return self._task

    @property
    def table(self):
        if self._table is None:
            reason = self.unavailable()
            if reason:
                raise LookupError(reason)
        return self._table

    def unavailable(self, game: str | None = None) -> str | None:
        if not self._checked:
            self._checked = True
            self._reason = self._find_reason()
        if self._reason is None and game == "finetune":
            task = self._named_task()
            if task is not None and task.family_kind != "mlp":
                return f"the fine-tuning game needs the mlp family; {self.name} uses {task.family_kind}"
        if self._reason is None and game == "seller-proxy":
            try:
                self.task.seller_view()
            except ValueError as e:
                return f"no seller proxy: {e}"
        return self._reason

    def _find_reason(self) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError:
            return f"{self.name} needs torch: pip install -e '.[diffusion]'"
        from surrogateshap.tasks import get_task

        try:  # the task's data (a package, a local copy) must be there
            named = get_task(self.name, scale=self.task_scale)
            missing = named.data_missing()
        except (FileNotFoundError, ImportError, OSError, ValueError) as e:
            missing = str(e)
        if missing:
            return f"{self.name} is unavailable: {missing}"
        path = self._path()
        if not path.exists():
            return (f"{self.name} ground truth missing: no retraining table at {path} (build it with "
                    f"`surrogateshap build-table --task {self.name}`, or set SURROGATESHAP_DATASETS)")
        from surrogateshap.tasks.reference import load_reference

        try:
            table = load_reference(self.task, path)
        except Exception as e:  # noqa: BLE001 - a half-written or foreign table is a skip
            return f"{self.name} retraining table at {path} is unusable: {type(e).__name__}: {e}"
        if not table.complete_seeds():
            tests = self._test_sets(table.n_players)
            sets = [table.lds_ground_truth(table.utilities[0], a, tests.get(a))[0] for a in self.settings.alphas]
            if max(len(m) for m in sets) < 2 or (
                    table.n_players <= self.ENUMERATE_MAX_PLAYERS and len(table.seeds) == 1):
                counts = {int(s): int(len(g)) for s, g in table.frame.groupby("seed")}
                return (
                    f"{self.name} retraining table at {path} is still being built (coalitions "
                    f"per seed {counts} of {2**table.n_players}: no complete seed yet, and too few "
                    "LDS test coalitions)"
                )
        self._table = table
        self.task.cache.use_reference(path, table)  # the task's cache serves this very table
        return None

    def game(self, utility: str, game: str = "retraining") -> Game:
        """The game an estimator plays. On a complete table, ``retraining`` is the seed
        mean, the game whose exact values are the truth. On a table of sampled
        coalitions it is one retraining seed (the table's first), so an estimator pays
        one retraining per coalition, as it would in practice; the ground truth keeps
        the seed mean of the test and removal coalitions."""
        self.check(utility, game)
        if game == "retraining":
            if self.table.complete_seeds():
                return self.table.game(utility)
            seed = self.table.mean_seeds[0]
            return self.table.game(utility, seed=seed, fallback=self._fallback(utility))
        if game == "model":
            return PlayersOnly(self.table.players)
        if game == "seller-proxy":
            return self.proxy(utility, seller=True)
        if game == "finetune":
            if utility not in self._finetune:
                from surrogateshap.tasks.games import FineTuningGame

                self._finetune[utility] = FineTuningGame(self.task, utility, seed=0, sparsity=0.5, steps=200)
            return self._finetune[utility]
        return self.proxy(utility)

    def retraining_game(self, seed: int):
        """The task's retraining game of one seed, served by the table and the cache
        (records of every utility), under this benchmark's ``retrain`` policy."""
        if seed not in self._retraining:
            task = self.task
            self._retraining[seed] = task.retraining_game(task.utilities[0], seed=seed, executor=self.executor,
                                                          allow_train=self.retrain == "train")
        return self._retraining[seed]

    def _fallback(self, utility: str):
        """What a table of sampled coalitions does with a coalition a seed lacks: train
        it on that seed (policy "train"), refuse (RetrainingRefusedError), or, on
        replay, nothing (None: the table game names the missing coalitions). None for a
        complete table."""
        if self.table.complete_seeds() or self.retrain == "replay":
            return None

        def fallback(seed, masks):
            return np.array([r[utility] for r in self.retraining_game(int(seed)).records(masks)])

        return fallback

    def _offers_finetune(self, game) -> bool:
        """Whether the fine-tuning game joins the ``fidelities`` beside the retraining game:
        only where the case may train anyway (a table of sampled coalitions under
        ``retrain="train"``: an estimator's coalitions outside the table are retrained), and
        the family fine-tunes (mlp). A complete table replays its retraining game whole, and
        replay or refusal trains nothing, so there a fine-tuning would be the one training."""
        return (game in (None, "retraining") and self.retrain == "train" and self.sampled
                and self.unavailable("finetune") is None)

    def proxy(self, utility: str, seller: bool = False) -> Game:
        """The task's proxy game (``seller``: its seller view's), tabulated once
        (:class:`ReplayedGame`): the first call trains the full model and sample bank if
        they are not cached."""
        key = f"seller:{utility}" if seller else utility
        if key not in self._proxies:
            import time

            task = self.task.seller_view() if seller else self.task
            prefix = "seller_" if seller else ""
            t0 = time.perf_counter()
            task.bank()  # the full model (trained unless cached) and its sample bank
            self._paid.setdefault(f"{prefix}full_model_trained", int(task.full_model_trained))
            self._paid.setdefault(f"{prefix}full_model_and_bank_seconds", round(time.perf_counter() - t0, 1))
            proxy = task.proxy_game(utility)
            small = proxy.n_players <= ReplayedGame.MAX_PLAYERS
            self._proxies[key] = ReplayedGame(proxy) if small else CachedGame(proxy)
            if small:
                self._paid["proxy_evaluations"] = self._paid.get("proxy_evaluations", 0) + 2**proxy.n_players
        return self._proxies[key]

    def costs(self) -> dict:
        """What this task has paid so far: coalition models trained (0 on a replay), the
        full model (trained or read from the cache), its bank, the proxy evaluations."""
        out = {"coalition_models_trained": int(sum(g.n_trained for g in self._retraining.values())),
               **self._paid}
        tuned = sum(g.n_trained for g in self._finetune.values())
        if tuned:
            out["fine_tunings"] = int(tuned)
        extra = sum(g.n_evaluations for g in self._proxies.values() if isinstance(g, CachedGame))
        if extra:
            out["proxy_evaluations"] = out.get("proxy_evaluations", 0) + int(extra)
        return out

    def resource(self, name, utility, game=None):
        if name == "proxy":
            return self.proxy(utility)
        if name == "fidelities":
            # the game valued in training steps: a retraining takes the config's, a
            # fine-tuning counts its own; a proxy valued is free, with no fidelity below it
            rate = {None: float(self.task.config.steps), "retraining": float(self.task.config.steps),
                    "finetune": 1.0}.get(game)
            if rate is None:
                return None
            out = {"target": rate, "proxy": (self.proxy(utility), 0.0)}
            if self._offers_finetune(game):
                out["finetune"] = self.game(utility, "finetune")  # its cost is in steps already
            return out
        if name == "model" and "model" in self.offers:
            if getattr(self, "_access", None) is None:
                self._access = self.task.model_access()
            return self._access
        return None

    @staticmethod
    def _test_sets(n: int) -> dict:
        """The protocol's drawn LDS test coalitions (what a sampled table's LDS uses)."""
        from surrogateshap.benchmark.protocol import lds_test_coalitions

        return lds_test_coalitions(n)

    def _make_truth(self, utility):
        tests = None if self.table.complete_seeds() else self._test_sets(self.table.n_players)
        planted = getattr(self.task, "planted_players", getattr(self.task, "planted_sites", None))
        return ground_truth_from_table(self.table, utility, self.settings.alphas,
                                       name=f"{self.name}/{utility}", fallback=self._fallback(utility),
                                       test_sets=tests, planted=planted,
                                       planted_lowest=getattr(self.task, "planted_direction", "highest") == "lowest",
                                       fidelity_fn=lambda: proxy_fidelity(self.table, utility, self.proxy(utility)))


def task_for_table(name: str, path: str | os.PathLike, prefer: str = "default",
                   scales=("default", "ci", "paper")):
    """The task ``name`` at the scale preset whose configuration made the table at
    ``path`` (``prefer`` tried first); the preferred scale when the table names none.
    Raises ValueError when no preset matches."""
    from surrogateshap.tasks import get_task
    from surrogateshap.tasks.reference import table_config_id

    found = table_config_id(path)
    order = [prefer, *[s for s in scales if s != prefer]]
    if found is None:
        return get_task(name, scale=prefer)
    for scale in order:
        task = get_task(name, scale=scale)
        if task.config_id() == found:
            return task
    raise ValueError(f"{path} was made with configuration {found}, which no scale preset of "
                     f"{name} ({', '.join(order)}) has")


def Digits10Benchmark(scale: str = "default", table_path=None) -> TableBenchmark:
    """``digits10`` with its shipped table (kept for callers of the old class)."""
    return TableBenchmark("digits10", scale, table_path)


def _airport20():
    rng = np.random.default_rng(20)
    return AirportGame(np.round(rng.uniform(1.0, 10.0, 20), 2))


def _voting20():
    rng = np.random.default_rng(21)
    w = rng.integers(1, 10, 20)
    return WeightedVotingGame(w, quota=int(w.sum()) // 2 + 1)


#: name -> factory(scale) of every benchmark task
BENCHMARK_TASKS: dict[str, Callable[[str], BenchmarkTask]] = {
    "unanimity10": lambda s: KnownGameTask("unanimity10", random_unanimity_game(10, seed=0), s),
    "unanimity50": lambda s: KnownGameTask(
        "unanimity50", random_unanimity_game(50, n_terms=100, seed=0), s, slow=True
    ),
    "airport20": lambda s: KnownGameTask("airport20", _airport20(), s),
    "voting20": lambda s: KnownGameTask("voting20", _voting20(), s),
    "fashion-animal20-proxy": lambda s: _proxy_exact("fashion-animal20", s),
}


def _proxy_exact(task: str, scale: str) -> BenchmarkTask:
    """A task's proxy game enumerated, with the shipped exact values (its module builds on this one)."""
    from surrogateshap.benchmark.proxy_exact import ProxyExactBenchmark

    return ProxyExactBenchmark(task, scale)


def benchmark_task_names() -> list[str]:
    """The known games and every registered task (each served by a TableBenchmark)."""
    from surrogateshap.tasks import available_tasks

    return [*BENCHMARK_TASKS, *(t for t in available_tasks() if t not in BENCHMARK_TASKS)]


def get_benchmark_task(name: str, scale: str = "default", retrain: str = "train") -> BenchmarkTask:
    """A benchmark task by name (cached: its games and ground truth are built once, one
    object per (name, scale, retrain) however it is asked for); ``retrain``: what a
    table-backed task does with a coalition its table lacks (:class:`TableBenchmark`)."""
    return _benchmark_task(name, scale, retrain)


@lru_cache(maxsize=None)
def _benchmark_task(name: str, scale: str, retrain: str) -> BenchmarkTask:
    if name in BENCHMARK_TASKS:
        bt = BENCHMARK_TASKS[name](scale)
        if isinstance(bt, TableBenchmark):  # a table-backed task registered by hand (tests)
            bt.retrain = retrain
        return bt
    if name in benchmark_task_names():
        return TableBenchmark(name, scale, retrain=retrain)
    raise KeyError(f"unknown benchmark task {name!r}; known: {', '.join(benchmark_task_names())}")


get_benchmark_task.cache_clear = _benchmark_task.cache_clear  # tests register tasks by hand


# ---------------------------------------------------------------- cases
