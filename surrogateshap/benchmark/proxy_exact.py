"""A task's proxy game enumerated on every coalition: a benchmark game with exact values.

SurrogateSHAP's proxy game (the one full model's sample bank mixed with pi_S) costs
about 0.07 ms per coalition at d = 64, so all 2**20 coalitions of ``fashion-animal20``
take minutes: its exact Shapley values are the first 20-player ground truth taken from
a real diffusion task. The values ship in ``datasets/<task>/proxy_exact_shapley.csv``
with each utility's table hash; the table itself (8 MiB a utility) is rebuilt on demand,
resumably, under the task's cache, and refused when its hash is not the reference's.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from surrogateshap._files import atomic_write
from surrogateshap.benchmark.tasks import BenchmarkTask, KnownGameTask, task_for_table
from surrogateshap.enumeration import (
    DEFAULT_CHUNK,
    EnumeratedGame,
    TableMismatchError,
    check_table_sha256,
    coalition_masks,
    enumerate_game,
    table_sha256,
)
from surrogateshap.exact import shapley_from_table
from surrogateshap.game import stable_hash

__all__ = [
    "PROXY_EXACT_CSV",
    "ProxyExactBenchmark",
    "ProxyReference",
    "build_proxy_reference",
    "enumerate_proxy",
    "read_proxy_reference",
]

PROXY_EXACT_CSV = "proxy_exact_shapley.csv"


@dataclass
class ProxyReference:
    """A shipped reference: exact Shapley values per utility and the hash of the table
    each came from, the configuration and chunk size that made it, its build seconds."""

    players: tuple[str, ...]
    values: dict[str, np.ndarray]
    sha256: dict[str, str]
    config: str | None
    chunk: int
    seconds: dict[str, float]

    @property
    def utilities(self) -> tuple[str, ...]:
        return tuple(self.values)


def read_proxy_reference(path: str | os.PathLike) -> ProxyReference:
    """Read a reference file; one ValueError naming the file and what is wrong."""
    path = Path(path)
    head = {}
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                break
            words = line[1:].split(":", 1)[0].split()
            if len(words) >= 2 and words[0] in ("config", "chunk"):
                head[words[0]] = words[1]
            elif len(words) == 3 and words[0] in ("sha256", "seconds"):
                head.setdefault(words[0], {})[words[1]] = words[2]
    frame = pd.read_csv(path, comment="#")
    if "player" not in frame.columns or "chunk" not in head:
        raise ValueError(f"{path} is not a proxy reference: it needs a 'player' column and a '# chunk' header")
    utilities = [c for c in frame.columns if c != "player"]
    missing = [u for u in utilities if u not in head.get("sha256", {})]
    if missing:
        raise ValueError(f"{path}: no '# sha256 <utility> <hash>' header for {missing}")
    try:
        chunk = int(head["chunk"])
        seconds = {u: float(s) for u, s in head.get("seconds", {}).items()}
    except ValueError as e:
        raise ValueError(f"{path}: a '# chunk' or '# seconds' header line is not a number ({e})") from None
    return ProxyReference(
        players=tuple(frame["player"].astype(str)),
        values={u: frame[u].to_numpy(dtype=np.float64) for u in utilities},
        sha256={u: head["sha256"][u] for u in utilities},
        config=head.get("config"), chunk=chunk, seconds=seconds,
    )


def enumerate_proxy(task, utility: str, chunk: int = DEFAULT_CHUNK, progress: bool = False):
    """(values, seconds): the task's proxy game on all 2**n coalitions, resumable under its
    cache (``<cache>/<config>/proxy-exact-<game hash>/``); seconds spent in this call.

    Everything runs on one thread, torch and BLAS: the bank's samples (and the full model,
    when it is trained here) round differently with the thread count, which changes the
    table's hash, and the batched small eigensolves run 10-70x slower when threads fight
    over a shared machine's cores. One thread is what the shipped hashes were made with."""
    from threadpoolctl import threadpool_limits

    from surrogateshap.tasks.features.nets import torch_threads

    game = task.proxy_game(utility)
    t0 = time.perf_counter()
    with torch_threads(1), threadpool_limits(1, user_api="blas"):
        values = enumerate_game(game, task.cache.root / f"proxy-exact-{stable_hash(game.cache_id())}", chunk,
                                progress=progress, label=f"{task.name} proxy/{utility}")
    return values, time.perf_counter() - t0


def build_proxy_reference(task, path: str | os.PathLike, chunk: int = DEFAULT_CHUNK, made_by: str = "",
                          progress: bool = True) -> ProxyReference:
    """Enumerate the task's proxy game for every utility, write its exact Shapley values and
    table hashes to ``path`` (headed as a reference result: configuration, command, commit),
    and return them. The build seconds are those of this call (0 for chunks already cached)."""
    from surrogateshap.provenance import git_commit
    from surrogateshap.tasks.reference import scoring_header

    commit = git_commit(ignore=[path])  # the code that runs: taken before the minutes of enumeration
    values, sha, seconds = {}, {}, {}
    for u in task.utilities:
        table, seconds[u] = enumerate_proxy(task, u, chunk, progress)
        sha[u] = table_sha256(table)
        values[u] = shapley_from_table(table, task.n_players)
    n = task.n_players
    lines = [
        (f"# reference result: exact Shapley values of {task.name}'s proxy game (SurrogateSHAP's: the full "
        f"model's sample bank mixed with pi_S), all 2^{n} coalitions enumerated; not an estimate\n"),
        f"# config {task.config_id()}: the task configuration whose proxy game was enumerated\n",
        scoring_header(task),
        f"# chunk {chunk}: coalitions per batch evaluated (batches of other sizes may round differently)\n",
        *(f"# sha256 {u} {sha[u]}: the 2^{n} float64 utilities, little-endian, in coalition-index order\n"
          for u in values),
        *(f"# seconds {u} {seconds[u]:.1f}: time to enumerate the table in the run that wrote this file "
          "(the first utility's includes sampling the bank, and training the full model where not cached)\n"
          for u in values),
        f"# made by {made_by or 'build_proxy_reference'} at commit {commit}\n",
    ]
    frame = pd.DataFrame({"player": list(task.players), **{u: values[u] for u in values}})
    with atomic_write(path) as f:
        f.write("".join(lines))
        frame.to_csv(f, index=False, float_format="%.17g")
    return read_proxy_reference(path)


class ProxyExactBenchmark(BenchmarkTask):
    """Benchmark task ``<task>-proxy``: game ``proxy`` is the task's proxy game replayed
    from its table of all 2**n coalitions (built on first use, resumably, under
    ``$SURROGATESHAP_CACHE``: minutes at n = 20, so every case is slow); the exact
    Shapley values are the shipped reference's, used only once the rebuilt table's
    SHA-256 matches the one the reference records (else
    :class:`~surrogateshap.enumeration.TableMismatchError`, naming both). LDS test sets
    and the removal check as for the known games, on the table. The task is built at the
    configuration that made the reference (its ``# config`` header); ``task`` overrides
    (tests). Offers no resource: the proxy is the game itself."""

    games = ("proxy",)
    slow = True

    def __init__(self, task_name: str, scale: str = "default", reference_path: str | os.PathLike | None = None,
                 task=None):
        super().__init__(scale)
        from surrogateshap.tasks.reference import reference_dir

        self.task_name, self.name = task_name, f"{task_name}-proxy"
        self.reference_path = Path(reference_path) if reference_path else reference_dir(task_name) / PROXY_EXACT_CSV
        self._task, self._ref, self._games = task, None, {}
        self._checked, self._reason = False, None
        self.build_seconds: dict[str, float] = {}

    @property
    def players(self):
        task = self._named_task()
        return self._ref.players if self._ref is not None else () if task is None else tuple(task.players)

    @property
    def utilities(self):
        task = self._named_task()
        return self._ref.utilities if self._ref is not None else ("-",) if task is None else tuple(task.utilities)

    @property
    def reference(self) -> ProxyReference | None:
        """The shipped reference (None when it is missing or unusable: see ``unavailable``)."""
        self.unavailable()
        return self._ref

    def _named_task(self):
        """The task (or, while its reference is missing, the task at this scale, which names
        the players a skipped case reports); None when it cannot be built."""
        self.unavailable()
        if self._task is None and self._ref is None:
            from surrogateshap.tasks import get_task

            try:
                return get_task(self.task_name, scale=self.task_scale)
            except Exception:  # noqa: BLE001 - the reason is reported by unavailable()
                return None
        return self._task

    def unavailable(self, game: str | None = None) -> str | None:
        if not self._checked:
            self._checked = True
            self._reason = self._find_reason()
        return self._reason

    def _find_reason(self) -> str | None:
        path = self.reference_path
        if not path.is_file():
            return (f"{self.name}: no reference at {path} (build it with `python scripts/proxy_exact_build.py "
                    f"--task {self.task_name}`)")
        try:
            self._ref = read_proxy_reference(path)
        except (OSError, ValueError, pd.errors.ParserError) as e:
            return f"{self.name}: reference {path} is unusable: {e}"
        if self._task is None:
            try:
                import torch  # noqa: F401
            except ImportError:
                return f"{self.name} needs torch: pip install -e '.[diffusion]'"
            try:
                self._task = task_for_table(self.task_name, path, prefer=self.task_scale)
                missing = self._task.data_missing()
            except (FileNotFoundError, ImportError, OSError, ValueError) as e:
                missing = str(e)
            if missing:
                return f"{self.name} is unavailable: {missing}"
        if tuple(self._task.players) != self._ref.players:
            return f"{self.name}: reference {path} names other players than the task {self._task.name}"
        return None

    def game(self, utility: str, game: str = "proxy") -> EnumeratedGame:
        """The proxy game's table replayed; built (or resumed) on first use, hash checked."""
        self.check(utility, game)
        if utility not in self._games:
            ref, task = self._ref, self._task
            values, self.build_seconds[utility] = enumerate_proxy(task, utility, ref.chunk, progress=True)
            try:
                check_table_sha256(values, ref.sha256[utility],
                                   f"{self.name}/{utility} (rebuilt under {task.cache.root}; reference "
                                   f"{self.reference_path})")
            except TableMismatchError as e:
                exact = ref.values[utility]
                gap = np.abs(shapley_from_table(values, task.n_players) - exact).max() / np.abs(exact).max()
                raise TableMismatchError(
                    f"{e}. Its exact Shapley values differ from the reference's by up to {gap:.1e} relative "
                    "(1e-12 or so: the same game rounded by another CPU or BLAS; more: another game). "
                    "Rebuild the reference with scripts/proxy_exact_build.py to score against this one") from None
            proxy = task.proxy_game(utility)
            n = task.n_players
            self._games[utility] = EnumeratedGame(task.players, values, proxy.cost_unit,
                                                  proxy.cost_of(coalition_masks(2**n - 1, 2**n, n)))
        return self._games[utility]

    def costs(self) -> dict:
        """What this task paid: seconds to enumerate (or read) its tables, bank included."""
        return {"proxy_table_seconds": round(sum(self.build_seconds.values()), 1)}

    def game_info(self, utility: str, game: str) -> dict:
        seconds = self._ref.seconds.get(utility) if self._ref else None
        return {} if not seconds else {"game_seconds_per_evaluation": seconds / 2**self.n_players}

    def _make_truth(self, utility):
        known = KnownGameTask(self.name, self.game(utility), self.scale).truth("clean")
        return dataclasses.replace(known, exact=self._ref.values[utility], name=f"{self.name}/{utility}")
