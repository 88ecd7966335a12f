"""Benchmark tasks and cases: which games an estimator plays, and the ground truth.

A *benchmark task* (``get_benchmark_task(name, scale)``) offers, per utility, the
game(s) an estimator can play and the :class:`~surrogateshap.evaluation.GroundTruth`
its attribution is judged against:

- the sanity tier, games with known Shapley values: ``unanimity10``, ``unanimity50``
  (random sums of unanimity games), ``airport20``, ``voting20``. Utility ``clean`` is
  the game itself; ``noisy`` adds seeded Gaussian noise (:class:`NoisyGame`, sigma =
  20% of the utilities' spread) to model retraining noise: the estimator plays noise
  seed 0 and the LDS test utilities come from noise seeds 1..k, which gives LDS a seed
  spread. One game kind, ``known``.
- ``digits10``, the real diffusion task. Game ``retraining`` replays the shipped
  retraining table (``datasets/digits10/retraining_table.csv``, every coalition
  retrained; the seed-mean :class:`TableGame`, budgets in retrainings, nothing is
  trained); game ``proxy`` is SurrogateSHAP's cheap proxy game over the one full-data
  model (its first use trains that model and a sample bank, cached under
  ``$SURROGATESHAP_CACHE``), tabulated once on all 1,024 coalitions and replayed
  (:class:`ReplayedGame`: same values, same cost accounting), so a case's wall-clock is
  the estimator's own and its proxy cost is reported as ``game_seconds_estimate``. Ground truth for both: the table's exact Shapley values
  (seed mean), LDS on every coalition of size int(alpha n) with utilities per
  retraining seed, and the table as the removal game.

A *case* (:class:`BenchmarkCase`) is task x utility x game x estimator x budget x
seed; :func:`benchmark_cases` lists them for a scale preset, with skip reasons and
``slow``/``gpu`` flags, :func:`prepare_case` returns the call to time and the ground
truth, :func:`run_case` runs and evaluates one case. The pytest suite under
``benchmarks/`` only composes these.

An estimator whose ``requires`` names ``"proxy"`` gets the task's proxy game as a
resource (``estimate(game, budget, seed, proxy=...)``) whatever game it plays.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from math import comb
from pathlib import Path

import numpy as np

from surrogateshap.evaluation import GroundTruth, aggregate_figures, evaluate
from surrogateshap.exact import shapley_from_table
from surrogateshap.game import Game, all_coalitions
from surrogateshap.games import (
    AirportGame,
    NoisyGame,
    WeightedVotingGame,
    random_unanimity_game,
)
from surrogateshap.metrics import sample_test_coalitions
from surrogateshap.registry import available_estimators, get_estimator
from surrogateshap.tasks.reference import git_commit

__all__ = [
    "SCALES",
    "ScaleSettings",
    "SCALE_SETTINGS",
    "BENCHMARK_TASKS",
    "BenchmarkTask",
    "KnownGameTask",
    "ReplayedGame",
    "Digits10Benchmark",
    "get_benchmark_task",
    "BenchmarkCase",
    "benchmark_cases",
    "prepare_case",
    "run_case",
    "removal_fractions",
    "reference_entries",
    "write_reference",
    "read_reference",
    "ceiling_figures",
    "json_safe",
]

SCALES = ("ci", "default", "paper")
ALPHAS = (0.25, 0.5, 0.75)
#: an exact (enumeration) estimator also runs at budget 2**n up to this many evaluations
MAX_EXACT_BUDGET = 4096


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


_KNOWN = ("unanimity10", "airport20", "voting20")
SCALE_SETTINGS = {
    "ci": ScaleSettings(
        selection=(
            ("unanimity10", None, None),
            ("digits10", "neg_fid", "retraining"),
            ("digits10", "inception_score", "retraining"),
        ),
        budgets=(32, 64, 128),
    ),
    "default": ScaleSettings(
        selection=tuple((t, None, None) for t in (*_KNOWN, "unanimity50", "digits10")),
        budgets=(32, 64, 128, 256, 512),
    ),
    "paper": ScaleSettings(
        selection=tuple((t, None, None) for t in (*_KNOWN, "unanimity50", "digits10")),
        budgets=(32, 64, 128, 256, 512, 1024),
        n_seeds=5,
        lds_m=200,
        n_noise_seeds=5,
        slow_budget=256,
    ),
}


def removal_fractions(n: int, fractions=(0.05, 0.1, 0.2, 0.3, 0.4)) -> tuple[float, ...]:
    """The protocol's removal fractions for n players, as the fractions actually removed.

    Each f removes k = max(1, round(f n)) players; fractions giving the same k are kept
    once, and each is reported as k / n (so n = 10 gives 0.1, 0.2, 0.3, 0.4).
    """
    ks = sorted({max(1, round(f * n)) for f in fractions} - {n})
    return tuple(k / n for k in ks if k < n)


class BenchmarkTask:
    """Games and ground truth of one benchmark task (subclasses fill in the rest).

    ``games`` lists the game kinds an estimator can play; ``unavailable()`` returns a
    reason to skip (missing data or dependency) or None.
    """

    name: str = ""
    players: tuple[str, ...] = ()
    utilities: tuple[str, ...] = ()
    games: tuple[str, ...] = ()
    #: the game kind that needs model training on first use (marked gpu at paper scale)
    trains: tuple[str, ...] = ()
    #: every case of the task is marked slow
    slow: bool = False
    #: resources an estimator may declare in ``requires``
    offers: tuple[str, ...] = ()

    def __init__(self, scale: str = "default"):
        if scale not in SCALE_SETTINGS:
            raise KeyError(f"unknown scale {scale!r}; choose from {SCALES}")
        self.scale = scale
        self.settings = SCALE_SETTINGS[scale]
        self._truth: dict[str, GroundTruth] = {}

    @property
    def n_players(self) -> int:
        return len(self.players)

    def unavailable(self, game: str | None = None) -> str | None:
        return None

    def check(self, utility: str, game: str | None = None):
        if utility not in self.utilities:
            raise KeyError(f"task {self.name} has no utility {utility!r}; it offers {self.utilities}")
        if game is not None and game not in self.games:
            raise KeyError(f"task {self.name} has no game {game!r}; it offers {self.games}")

    def game(self, utility: str, game: str) -> Game:
        """The game an estimator plays."""
        raise NotImplementedError

    def resource(self, name: str, utility: str):
        """A resource an estimator declares in ``requires`` (None when not offered)."""
        return None

    def game_info(self, utility: str, game: str) -> dict:
        """Facts about the game a case plays, for the record (e.g. replay timing)."""
        g = self.game(utility, game)
        if isinstance(g, ReplayedGame):
            return {"game_seconds_per_evaluation": g.seconds_per_evaluation}
        return {}

    def resources(self, utility: str, requires: Sequence[str]) -> dict:
        out = {r: self.resource(r, utility) for r in requires}
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
    independently noised copy with twice the noise: cheap, correlated, biased.
    """

    utilities = ("clean", "noisy")
    games = ("known",)
    offers = ("proxy",)

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

    def resource(self, name, utility):
        if name == "proxy":
            return NoisyGame(self.base, 2 * self.sigma, seed=10_000)
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
        return GroundTruth(
            players=self.players,
            exact=self.base.exact_values(),
            lds_sets=sets,
            removal_game=self.base,
            fractions=removal_fractions(n),
            cost_unit=self.base.cost_unit,
            name=f"{self.name}/{utility}",
        )


class ReplayedGame(Game):
    """A small game evaluated once on all 2**n coalitions, then replayed by lookup.

    Values are exactly the wrapped game's; ``cost_of`` and ``cost_unit`` are the
    wrapped game's, so an estimator is charged as if it played the original.
    ``seconds_per_evaluation`` is the wrapped game's mean compute time per coalition,
    measured while tabulating. Benchmarks replay the proxy game this way so that every
    case times the estimator, not the (identical, repeated) proxy evaluations, and the
    same coalitions are not recomputed for every estimator and seed.
    """

    MAX_PLAYERS = 12

    def __init__(self, game: Game):
        if game.n_players > self.MAX_PLAYERS:
            raise ValueError(f"replaying needs 2**n evaluations; n={game.n_players} > {self.MAX_PLAYERS}")
        super().__init__(game.players)
        self.game = game
        self.cost_unit = game.cost_unit
        masks = all_coalitions(game.n_players)
        t0 = time.perf_counter()
        self.table = np.asarray(game(masks), dtype=float)
        self.seconds_per_evaluation = (time.perf_counter() - t0) / len(masks)
        self._bits = 1 << np.arange(game.n_players)

    def _evaluate(self, masks):
        return self.table[masks.astype(np.int64) @ self._bits]

    def cost_of(self, masks):
        return self.game.cost_of(masks)

    def exact_values(self):
        return shapley_from_table(self.table, self.n_players)

    def cache_id(self):
        return self.game.cache_id()


class Digits10Benchmark(BenchmarkTask):
    """digits10: the retraining table replayed, and the proxy game. See module doc."""

    name = "digits10"
    players = tuple(f"digit_{d}" for d in range(10))
    games = ("retraining", "proxy")
    trains = ("proxy",)
    offers = ("proxy",)

    def __init__(self, scale: str = "default", table_path: str | os.PathLike | None = None):
        super().__init__(scale)
        from surrogateshap.utilities import UTILITIES

        self.utilities = tuple(UTILITIES)
        self.table_path = table_path
        self._task = None
        self._table = None
        self._proxies: dict[str, Game] = {}
        self._reason: str | None = None
        self._checked = False

    def _path(self) -> Path:
        from surrogateshap.tasks.reference import RETRAINING_CSV, reference_dir

        return Path(self.table_path) if self.table_path else reference_dir(self.name) / RETRAINING_CSV

    @property
    def task(self):
        if self._task is None:
            from surrogateshap.tasks import get_task

            self._task = get_task(self.name, scale=self.scale)
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
        return self._reason

    def _find_reason(self) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError:
            return "digits10 needs torch: pip install -e '.[diffusion]'"
        path = self._path()
        if not path.exists():
            return (
                f"digits10 ground truth missing: no retraining table at {path} (build it with "
                "`surrogateshap build-table --task digits10 --seeds 0 1 2`, or set "
                "SURROGATESHAP_DATASETS)"
            )
        from surrogateshap.tasks.reference import load_reference

        try:
            table = load_reference(self.task, path)
        except Exception as e:  # noqa: BLE001 - a half-written table is a skip, not a crash
            return f"digits10 retraining table at {path} is unreadable: {type(e).__name__}: {e}"
        if not table.complete_seeds():
            counts = {int(s): int(len(g)) for s, g in table.frame.groupby("seed")}
            return (
                f"digits10 retraining table at {path} has no complete seed yet "
                f"(coalitions per seed {counts} of {2**table.n_players}); it is still being built"
            )
        self._table = table
        return None

    def game(self, utility: str, game: str = "retraining") -> Game:
        self.check(utility, game)
        if game == "retraining":
            return self.table.game(utility)
        return self.proxy(utility)

    def proxy(self, utility: str) -> Game:
        """The task's proxy game, tabulated once (:class:`ReplayedGame`): the first call
        trains the full model and sample bank if they are not cached."""
        if utility not in self._proxies:
            self._proxies[utility] = ReplayedGame(self.task.proxy_game(utility))
        return self._proxies[utility]

    def resource(self, name, utility):
        if name == "proxy":
            return self.proxy(utility)
        return None

    def _make_truth(self, utility):
        table = self.table
        sets = {alpha: table.lds_ground_truth(utility, alpha) for alpha in self.settings.alphas}
        return GroundTruth(
            players=self.players,
            exact=table.exact_shapley(utility),
            lds_sets=sets,
            removal_game=table.game(utility),
            fractions=removal_fractions(self.n_players),
            cost_unit="model trainings",
            name=f"{self.name}/{utility}",
        )


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
    "digits10": lambda s: Digits10Benchmark(s),
}


@lru_cache(maxsize=None)
def get_benchmark_task(name: str, scale: str = "default") -> BenchmarkTask:
    """A benchmark task by name (cached: its games and ground truth are built once)."""
    if name not in BENCHMARK_TASKS:
        raise KeyError(f"unknown benchmark task {name!r}; known: {', '.join(BENCHMARK_TASKS)}")
    return BENCHMARK_TASKS[name](scale)


# ---------------------------------------------------------------- cases


@dataclass(frozen=True)
class BenchmarkCase:
    """One benchmark case; ``skip`` is a reason not to run it (None: run)."""

    task: str
    utility: str
    game: str
    estimator: str
    budget: int
    seed: int
    scale: str = "default"
    skip: str | None = field(default=None, compare=False)
    slow: bool = field(default=False, compare=False)
    gpu: bool = field(default=False, compare=False)

    @property
    def key(self) -> str:
        """Identifies the case across seeds (the regression reference's key)."""
        return f"{self.task}/{self.utility}/{self.game}/{self.estimator}/{self.budget}"

    @property
    def group(self) -> str:
        return f"{self.task}/{self.utility}/{self.game}"

    @property
    def id(self) -> str:
        return f"{self.task}-{self.utility}-{self.game}-{self.estimator}-b{self.budget}-s{self.seed}"


def _skip_reason(est, n: int, budget: int, bt: BenchmarkTask, game: str) -> str | None:
    if est.is_exact and budget < 2**n:
        return f"{est.name} enumerates all 2**{n} = {2**n} coalitions; budget {budget} is below that"
    need = est.min_budget(n)
    if budget < need:
        return f"budget {budget} below {est.name}'s minimum {need} for n={n}"
    missing = [r for r in est.requires if r not in bt.offers]
    if missing:
        return f"{est.name} requires {missing}; task {bt.name} offers {list(bt.offers) or 'no resources'}"
    return None


def benchmark_cases(
    scale: str = "default",
    tasks: Sequence[str] | None = None,
    utilities: Sequence[str] | None = None,
    games: Sequence[str] | None = None,
    estimators: Sequence[str] | None = None,
    budgets: Sequence[int] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[BenchmarkCase]:
    """Every case of a scale preset, filtered by the given names (None: the preset's).

    ``tasks`` replaces the preset's task selection (all of a named task's utilities
    and games); ``utilities``/``games`` filter; ``estimators`` defaults to every
    registered estimator; ``budgets`` and ``seeds`` default to the preset's. An exact
    estimator also gets budget 2**n where that is at most ``MAX_EXACT_BUDGET``.
    Unavailable tasks (missing table) still give cases, with ``skip`` set.
    """
    st = SCALE_SETTINGS[scale] if scale in SCALE_SETTINGS else None
    if st is None:
        raise KeyError(f"unknown scale {scale!r}; choose from {SCALES}")
    known_est = available_estimators()
    names = list(estimators) if estimators else known_est
    bad = [e for e in names if e not in known_est]
    if bad:
        raise KeyError(f"unknown estimator(s) {bad}; registered: {', '.join(known_est)}")
    if tasks:
        bad = [t for t in tasks if t not in BENCHMARK_TASKS]
        if bad:
            raise KeyError(f"unknown benchmark task(s) {bad}; known: {', '.join(BENCHMARK_TASKS)}")
        selection = [(t, None, None) for t in tasks]
    else:
        selection = list(st.selection)
    budgets = sorted(set(int(b) for b in (budgets or st.budgets)))
    seeds = list(seeds) if seeds is not None else list(range(st.n_seeds))
    ests = {e: get_estimator(e) for e in names}
    cases = []
    for tname, util, gname in selection:
        bt = get_benchmark_task(tname, scale)
        reason = bt.unavailable()
        for u in [util] if util else bt.utilities:
            if utilities and u not in utilities:
                continue
            for g in [gname] if gname else bt.games:
                if games and g not in games:
                    continue
                for e, est in ests.items():
                    bl = list(budgets)
                    if est.is_exact and 2**bt.n_players <= MAX_EXACT_BUDGET:
                        bl = sorted(set(bl) | {2**bt.n_players})
                    for b in bl:
                        skip = reason or _skip_reason(est, bt.n_players, b, bt, g)
                        slow = bt.slow or (b > st.slow_budget and not est.is_exact)
                        gpu = scale == "paper" and (
                            g in bt.trains or any(r in bt.trains for r in est.requires)
                        )
                        for s in seeds:
                            cases.append(BenchmarkCase(tname, u, g, e, b, int(s), scale,
                                                       skip=skip, slow=slow or gpu, gpu=gpu))
    return cases


def prepare_case(case: BenchmarkCase, **estimator_params):
    """(call, truth): a zero-argument call running the estimator (the part to time),
    returning an Attribution, and the case's ground truth. Everything slow that is not
    the estimator (loading the table, training the proxy's full model) happens here."""
    bt = get_benchmark_task(case.task, case.scale)
    reason = bt.unavailable(case.game)
    if reason:
        raise LookupError(reason)
    game = bt.game(case.utility, case.game)
    est = get_estimator(case.estimator, **estimator_params)
    resources = bt.resources(case.utility, est.requires)
    truth = bt.truth(case.utility)

    def call():
        return est.estimate(game, case.budget, seed=case.seed, **resources)

    return call, truth


def run_case(case: BenchmarkCase, **estimator_params) -> tuple:
    """Run one case: (attribution, figures) with figures from :func:`evaluate`."""
    call, truth = prepare_case(case, **estimator_params)
    att = call()
    return att, evaluate(att, truth)


# ---------------------------------------------------------------- reference figures


def reference_entries(records: dict[str, list[dict]], fingerprints: dict[str, str]) -> dict:
    """Reference entries from per-seed figures grouped by case key.

    ``records`` maps a case key to the list of its seeds' figure dicts (each may carry
    a "seed"); ``fingerprints`` maps the key to its ground truth's fingerprint.
    """
    out = {}
    for key in sorted(records):
        figs = records[key]
        out[key] = {
            "truth": fingerprints.get(key),
            "seeds": sorted(int(f["seed"]) for f in figs if "seed" in f),
            "figures": aggregate_figures(figs),
        }
    return out


def json_safe(obj):
    """JSON-safe: numpy scalars to Python, nan/inf to None."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    return obj


def write_reference(path, entries: dict, command: str, scale: str, root=None, note: str = "") -> dict:
    """Write the regression reference file (entries from :func:`reference_entries`)."""
    from surrogateshap.evaluation import REGRESSION_RULES, SIGMA

    path = Path(path)
    root = Path(root) if root else path.resolve().parent
    doc = {
        "meta": {
            "command": command,
            "git_commit": git_commit(root),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "scale": scale,
            "tolerance": {
                "rule": "fail when worse than the reference mean by more than "
                        "max(sigma * seed_std, floor, rel_floor * |mean|)",
                "sigma": SIGMA,
                "figures": {k: {"higher_is_better": h, "floor": f, "rel_floor": r}
                            for k, (h, f, r) in REGRESSION_RULES.items()},
            },
            "note": note,
        },
        "cases": entries,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    for entry in doc["cases"].values():
        for fig in entry["figures"].values():
            for k in ("mean", "std", "tolerance"):
                if isinstance(fig.get(k), float) and math.isfinite(fig[k]):
                    fig[k] = float(f"{fig[k]:.6g}")
    doc = json_safe(doc)
    # one line per case keeps the file diffable: a changed figure is a changed line
    cases = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc["cases"].items())
    meta = json.dumps(doc["meta"], indent=2).replace("\n", "\n ")
    tmp.write_text(f'{{\n "meta": {meta},\n "cases": {{\n{cases}\n }}\n}}\n')
    tmp.replace(path)
    return doc


def read_reference(path) -> dict:
    """A reference file; JSON nulls (nan when written) come back as nan."""
    doc = json.loads(Path(path).read_text())
    for entry in doc.get("cases", {}).values():
        for fig in entry.get("figures", {}).values():
            for k in ("mean", "std", "tolerance"):
                if fig.get(k) is None:
                    fig[k] = float("nan")
    return doc


def ceiling_figures(truth: GroundTruth) -> dict:
    """The LDS of the exact values, as ``ceiling_lds_{alpha}_mean`` figures."""
    return {f"ceiling_{k}": v for k, v in truth.ceiling().items()}

