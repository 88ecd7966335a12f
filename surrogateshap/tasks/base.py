"""Diffusion attribution tasks and the two games they make.

A task knows its contributors (which training items each owns), how to train a
class-conditional diffusion model on a coalition's data, how to sample, and which
utilities it offers. From it come:

- :class:`RetrainingGame`: v(S) = utility of a model trained from scratch on S's data,
  sampled with S's labels in proportion to their data. Expensive; cached on disk.
- :class:`ProxyGame`: SurrogateSHAP's v_hat(S) = utility of the mixture
  sum_u pi_S(u) p_theta(x | u) of the one full-data model, computed from
  per-unit sample-bank statistics (microseconds), or by re-generating per coalition.

A unit is what the model is conditioned on: a label (digits10, fashion-animal20: unit =
label = contributor), a (label, contributor) pair, an item's prompt. A task declares
its units and each item's unit; pi_S(u) = the share of S's items whose unit is u.

The empty coalition has no data and no model. Both games define
v(empty) = utility of the model's prior (standard Gaussian noise clipped to the data
range): what a generator that learned nothing produces. It shifts every Shapley value
by the same amount, so it is defined once, here, for both games.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from abc import ABC, abstractmethod
from collections import deque
from pathlib import Path

import numpy as np

from surrogateshap.game import Game, coalition_key, key_to_mask, stable_hash
from surrogateshap.store import CoalitionStore
from surrogateshap.tasks.statistics import LabelStats, StatsBank, utility_from_stats

__all__ = ["DiffusionTask", "RetrainingGame", "ProxyGame", "RetrainingFailedError", "allocate_counts",
           "coalition_seed", "default_cache_dir"]


def default_cache_dir() -> Path:
    """$SURROGATESHAP_CACHE, else ~/.cache/surrogateshap."""
    return Path(os.environ.get("SURROGATESHAP_CACHE", Path.home() / ".cache" / "surrogateshap"))


def coalition_seed(seed: int, mask) -> int:
    """A seed for one (seed, coalition) pair, so a retrained model does not depend on
    which other coalitions were trained beside it."""
    return int(stable_hash([int(seed), coalition_key(np.asarray(mask, bool))]), 16) % (2**31)


def allocate_counts(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` samples over labels in proportion to ``weights`` (largest remainder)."""
    w = np.asarray(weights, dtype=float)
    raw = total * w / w.sum()
    counts = np.floor(raw).astype(int)
    rest = total - counts.sum()
    counts[np.argsort(-(raw - counts), kind="stable")[:rest]] += 1
    return counts


class DiffusionTask(ABC):
    """A set of contributors to a class-conditional diffusion model.

    Subclasses set ``name``, ``players``, ``item_contributor`` (contributor index of
    every training item), ``utilities`` and ``config`` (a dataclass with scale
    presets), and implement training, sampling and statistics. A task conditioned on
    something other than its contributors also overrides ``units`` and ``item_unit``
    (the unit index of every item); by default unit = contributor.
    """

    name: str = ""
    players: tuple[str, ...] = ()
    utilities: tuple[str, ...] = ()
    cost_unit = "model trainings"

    def __init__(self, config, cache_dir: str | os.PathLike | None = None):
        self.config = config
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    # --- data -----------------------------------------------------------------
    @property
    def n_players(self) -> int:
        return len(self.players)

    @property
    @abstractmethod
    def item_contributor(self) -> np.ndarray:
        """(n_items,) contributor index of each training item."""

    def counts(self) -> np.ndarray:
        return np.bincount(self.item_contributor, minlength=self.n_players)

    def members(self, mask) -> np.ndarray:
        """Indices of the training items owned by coalition ``mask``."""
        mask = np.asarray(mask, dtype=bool)
        return np.flatnonzero(mask[self.item_contributor])

    def proportions(self, mask) -> np.ndarray:
        """pi_S: each contributor's share of the coalition's data (zeros outside S)."""
        mask = np.asarray(mask, dtype=bool)
        c = self.counts() * mask
        if c.sum() == 0:
            raise ValueError("the empty coalition has no data proportions")
        return c / c.sum()

    # --- conditioning units ------------------------------------------------------
    @property
    def units(self) -> tuple[str, ...]:
        """Names of the conditioning units (the sample banks); by default the players."""
        return self.players

    @property
    def item_unit(self) -> np.ndarray:
        """(n_items,) unit index of each training item; by default its contributor."""
        return self.item_contributor

    @property
    def n_units(self) -> int:
        return len(self.units)

    def unit_counts(self) -> np.ndarray:
        """(n_players, n_units) number of items of each contributor with each unit."""
        out = np.zeros((self.n_players, self.n_units), dtype=np.int64)
        np.add.at(out, (self.item_contributor, self.item_unit), 1)
        return out

    def unit_weights(self, masks) -> np.ndarray:
        """(m, n_units) mixture weights of coalitions ``masks`` (none empty): the share of
        each coalition's items with unit u. With unit = contributor this is pi_S."""
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        w = masks.astype(np.int64) @ self.unit_counts()
        total = w.sum(1, keepdims=True)
        if (total == 0).any():
            raise ValueError("the empty coalition has no data proportions")
        return w / total

    def unit_proportions(self, mask) -> np.ndarray:
        """pi_S over units for one coalition (what its samples are conditioned on)."""
        return self.unit_weights(np.asarray(mask, dtype=bool)[None])[0]

    #: config fields that change how fast, not what, is computed (kept out of cache keys)
    execution_fields: tuple[str, ...] = ("models_per_batch", "device", "cpus_per_job", "gpus_per_job",
                                         "memory_per_job")

    def config_id(self) -> str:
        cfg = {k: v for k, v in dataclasses.asdict(self.config).items() if k not in self.execution_fields}
        return f"{self.name}-{stable_hash(cfg)}"

    def scoring_parts(self) -> dict[str, str]:
        """name -> weights hash of each network that scores samples where the
        configuration does not name it (weights the project trains itself); {} when it does."""
        return {}

    def scoring_id(self) -> str:
        """Identity of the networks that score samples ("" when the configuration names
        them): a table's header and the retraining cache record it, so utilities scored by
        another network are never mixed."""
        if not hasattr(self, "_scoring_id"):
            parts = self.scoring_parts()
            self._scoring_id = stable_hash(parts) if parts else ""
        return self._scoring_id

    # --- models and statistics -------------------------------------------------
    @abstractmethod
    def retrain_stats(self, masks: np.ndarray, seed: int) -> list[LabelStats]:
        """Train one model per coalition (rows of masks, none empty) and return the
        statistics of ``config.n_samples`` samples from each, labels in proportion pi_S."""

    @abstractmethod
    def bank_stats(self) -> list[LabelStats]:
        """Per-unit statistics of the full-data model's sample bank (one per unit)."""

    @abstractmethod
    def regenerate_stats(self, mask, seed: int) -> LabelStats:
        """Statistics of freshly generated samples of the full model for coalition
        ``mask`` (units in proportion pi_S): the paper's per-coalition protocol."""

    @abstractmethod
    def real_stats(self) -> LabelStats:
        """Statistics of the real data (FID's reference)."""

    @abstractmethod
    def empty_stats(self) -> LabelStats:
        """Statistics of the empty coalition's defined output (the noise prior)."""

    def score(self, stats: LabelStats) -> dict[str, float]:
        real = self.real_stats()
        out = {u: utility_from_stats(u, stats, real) for u in self.utilities}
        for u, v in out.items():
            if not np.isfinite(v):
                raise ValueError(f"{self.name}: utility {u} is {v} (non-finite)")
        return out

    # --- games ----------------------------------------------------------------
    def retraining_game(self, utility: str, seed: int = 0, cache: bool = True,
                        executor=None) -> "RetrainingGame":
        return RetrainingGame(self, utility, seed=seed, cache=cache, executor=executor)

    def proxy_game(self, utility: str, mode: str = "stats", seed: int = 0, executor=None) -> "ProxyGame":
        return ProxyGame(self, utility, mode=mode, seed=seed, executor=executor)

    def _check_utility(self, utility: str):
        if utility not in self.utilities:
            raise KeyError(f"task {self.name} has no utility {utility!r}; it offers {self.utilities}")


_STORES: dict[str, CoalitionStore] = {}


def _shared_store(path: Path, header: dict) -> CoalitionStore:
    """One CoalitionStore object per file, shared by the games of every utility."""
    key = str(path.resolve())
    if key not in _STORES:
        _STORES[key] = CoalitionStore(path, header)
    return _STORES[key]


class RetrainingFailedError(RuntimeError):
    """Some coalitions could not be retrained (after retries); ``failures`` maps each
    coalition key to its record (error, attempts)."""

    def __init__(self, failures: dict[str, dict]):
        self.failures = failures
        key, rec = next(iter(failures.items()))
        super().__init__(f"{len(failures)} coalition(s) failed to retrain, e.g. {key} after "
                         f"{rec['attempts']} attempts: {rec['error']}")


def _retrain_job(task_ref, masks: np.ndarray, seed: int):
    """One job: train the coalitions of ``masks`` together; (stats, seconds per model)."""
    from surrogateshap.execution import resolve_task

    task = resolve_task(task_ref)
    t0 = time.perf_counter()
    stats = task.retrain_stats(masks, seed)
    return stats, (time.perf_counter() - t0) / len(masks)


class RetrainingGame(Game):
    """v(S) = utility of a model retrained on coalition S's data (seeded).

    Every retraining scores all the task's utilities at once and is appended to an
    on-disk store keyed by (task, config, seed, coalition), so the games of different
    utilities share retrainings, and an interrupted run resumes where it stopped (a
    crash loses at most the chunks of models in flight). Trainings run on an
    ``executor`` (:mod:`surrogateshap.execution`; serial by default); this process
    stays the store's only writer, and it re-reads the store before each job, so two
    drivers on one cache skip what the other finished. A coalition that keeps failing
    is recorded in the store's ``failures`` table (never among the results) and reported.
    """

    cost_unit = "model trainings"

    def __init__(self, task: DiffusionTask, utility: str, seed: int = 0, cache: bool = True,
                 progress: bool = True, executor=None):
        from surrogateshap.execution import get_executor

        task._check_utility(utility)
        super().__init__(task.players)
        self.task, self.utility, self.seed, self.progress = task, utility, int(seed), progress
        self.executor = get_executor(executor)
        self.n_trained = 0
        self.store = None
        if cache:
            scoring = task.scoring_id()
            name = f"retrain-seed{self.seed}" + (f"-scoring-{scoring}" if scoring else "")
            path = task.cache_dir / task.config_id() / f"{name}.sqlite"
            header = {"task": task.config_id(), "seed": self.seed, **({"scoring": scoring} if scoring else {})}
            self.store = _shared_store(path, header)
        self._memo: dict[str, dict] = {}
        self._failed: dict[str, dict] = {}

    def _done(self, key: str) -> bool:
        return key in self._memo or (self.store is not None and key in self.store)

    def _get(self, key: str) -> dict | None:
        return self._memo.get(key) or (self.store.get(key) if self.store is not None else None)

    def records(self, masks, allow_failed: bool = False) -> list[dict]:
        """All utilities (and seconds) of each coalition, retraining what is missing.

        Coalitions that fail after the executor's retries raise RetrainingFailedError
        once the others are done; with ``allow_failed`` their entries are None instead.
        """
        keys = [coalition_key(m) for m in masks]
        if self.store is not None:
            self.store.refresh()
        todo = []
        for k, m in zip(keys, masks):
            if self._done(k):
                continue
            if not m.any():
                self._memo[k] = {**self.task.score(self.task.empty_stats()), "seconds": 0.0, "trainings": 0}
                continue
            todo.append(k)
        todo = list(dict.fromkeys(todo))
        if todo:
            self._train(todo)
        failed = {k: self._failed[k] for k in dict.fromkeys(keys) if k in self._failed and not self._done(k)}
        if failed and not allow_failed:
            raise RetrainingFailedError(failed)
        return [self._get(k) for k in keys]

    def _train(self, todo: list[str]):
        from tqdm.auto import tqdm

        from surrogateshap.execution import task_resources

        ex = self.executor
        ref = ex.task_ref(self.task)
        chunk = max(1, int(getattr(self.task.config, "models_per_batch", 1)))
        pending, singles = deque(todo), deque()  # singles: coalitions of failed chunks
        bar = tqdm(total=len(todo), desc=f"retraining {self.task.name} seed {self.seed} ({ex.name})",
                   unit="model", disable=not self.progress or len(todo) <= 1)
        n_failed = 0

        def skip_finished(queue):  # another driver may have trained them meanwhile
            kept = [k for k in queue if not self._done(k)]
            bar.update(len(queue) - len(kept))
            queue.clear()
            queue.extend(kept)

        with ex.session(task_resources(self.task)) as session:
            while pending or singles or session.running:
                while session.free > 0 and (pending or singles):
                    if self.store is not None:
                        self.store.refresh()
                        skip_finished(pending)
                        skip_finished(singles)
                    if singles:
                        part = [singles.popleft()]
                    elif pending:
                        part = self._claim(pending, chunk)
                    else:
                        break
                    # a chunk is not retried as a whole: its coalitions are, one by one
                    retries = ex.max_retries if len(part) == 1 else 0
                    masks = np.stack([key_to_mask(k) for k in part])
                    session.submit(tuple(part), _retrain_job, (ref, masks, self.seed), retries)
                for out in session.wait() if session.running else ():
                    part = out.tag
                    if out.ok:
                        stats, dt = out.result
                        for k, st in zip(part, stats):
                            try:
                                self._record(k, {**self.task.score(st), "seconds": dt, "trainings": 1})
                            except ValueError as e:  # non-finite utility: deterministic, no retry
                                n_failed += self._record_failure(k, f"{type(e).__name__}: {e}", 1)
                        self.n_trained += len(part)
                        bar.update(len(part))
                    elif len(part) > 1:
                        singles.extend(part)
                    else:
                        n_failed += self._record_failure(part[0], out.error, out.attempts)
                        bar.update(1)
                    bar.set_postfix({"done": bar.n - n_failed, "running": session.running,
                                     "failed": n_failed}, refresh=False)
        bar.close()

    def _claim(self, pending: deque, chunk: int) -> list[str]:
        """Take the next chunk, preferring coalitions no other driver on this cache has
        taken (the store's claims ledger)."""
        if self.store is None:
            return [pending.popleft() for _ in range(min(chunk, len(pending)))]
        me = f"{os.uname().nodename}:{os.getpid()}:{id(self)}"
        part = self.store.claim(list(pending), chunk, me)
        for k in part:
            pending.remove(k)
        return part

    def _record(self, key: str, rec: dict):
        self._failed.pop(key, None)
        if self.store is not None and not self.store.append(key, rec):
            rec = self.store.get(key)  # another driver stored it first: keep one record
        self._memo[key] = rec

    def _record_failure(self, key: str, error: str, attempts: int) -> int:
        if self.store is not None:
            rec = self.store.record_failure(key, error, attempts, executor=self.executor.name)
        else:
            rec = {"key": key, "error": error, "attempts": int(attempts), "executor": self.executor.name}
        self._failed[key] = rec
        return 1

    def failures(self) -> dict[str, dict]:
        """Coalitions whose last attempt failed and that no run has finished since
        (this session's, and those logged in the cache by earlier runs)."""
        out = self.store.failures() if self.store is not None else {}
        out.update(self._failed)
        return {k: r for k, r in out.items() if not self._done(k)}

    def _evaluate(self, masks):
        return np.array([r[self.utility] for r in self.records(masks)])

    def cost_of(self, masks):
        return float(sum(bool(m.any()) for m in masks))

    def cache_id(self):
        return f"retrain:{self.task.config_id()}:{self.utility}:{self.seed}"


def _regenerate_job(task_ref, mask, seed: int):
    from surrogateshap.execution import resolve_task

    return resolve_task(task_ref).regenerate_stats(mask, seed)


def _bank_job(task_ref):
    from surrogateshap.execution import resolve_task

    return resolve_task(task_ref).bank_stats()


class ProxyGame(Game):
    """SurrogateSHAP's proxy game over the one full-data model.

    mode="stats": mix the per-unit sample-bank statistics with weights pi_S over units
    (``task.unit_weights``; no images touched; batched over coalitions: see
    ``scripts/proxy_cost.py``). mode="regenerate": generate
    ``config.n_samples`` fresh samples per coalition (the paper's protocol; slow),
    kept to show both agree within sampling error.
    """

    cost_unit = "images generated"

    def __init__(self, task: DiffusionTask, utility: str, mode: str = "stats", seed: int = 0,
                 executor=None):
        from surrogateshap.execution import get_executor

        task._check_utility(utility)
        if mode not in ("stats", "regenerate"):
            raise ValueError(f"mode must be 'stats' or 'regenerate', got {mode!r}")
        super().__init__(task.players)
        self.task, self.utility, self.mode, self.seed = task, utility, mode, int(seed)
        self.executor = get_executor(executor)  # runs the bank's and regenerate's generation
        self._bank = None
        self._empty = None

    def _prepare(self):
        if self._bank is None:
            if self.executor.name == "serial":
                bank = self.task.bank_stats()
            else:
                bank = self.executor.map(_bank_job, [(self.executor.task_ref(self.task),)],
                                         self._resources())[0]
            if len(bank) != self.task.n_units:
                raise ValueError(f"{self.task.name}: {len(bank)} bank statistics for "
                                 f"{self.task.n_units} units")
            self._bank = StatsBank(bank, self.task.real_stats())
            self._empty = utility_from_stats(self.utility, self.task.empty_stats(), self.task.real_stats())

    def utility_of_weights(self, weights) -> np.ndarray:
        """The proxy utility of rows of unit weights, e.g. item counts per unit (the
        bank's units mixed in those proportions: a row is normalised, an all-zero row is
        the empty coalition). Lets a study value contributors other than the task's own
        (shards of units, say) without retraining or regenerating anything."""
        self._prepare()
        w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        if w.shape[1] != self.task.n_units or (w < 0).any():
            raise ValueError(f"weights must be non-negative with {self.task.n_units} columns "
                             f"(one per unit), got shape {w.shape}")
        total = w.sum(1)
        out = np.full(len(w), self._empty)
        some = total > 0
        if some.any():
            out[some] = self._bank.utility(self.utility, w[some] / total[some, None])
        return out

    def _evaluate(self, masks):
        self._prepare()
        out = np.full(len(masks), self._empty)
        some = masks.any(1)
        if self.mode == "stats":
            out[some] = self._bank.utility(self.utility, self.task.unit_weights(masks[some]))
        else:
            real = self.task.real_stats()
            ref = self.executor.task_ref(self.task)
            stats = self.executor.map(_regenerate_job, [(ref, m, self.seed) for m in masks[some]],
                                      self._resources())
            out[some] = [utility_from_stats(self.utility, st, real) for st in stats]
        return out

    def _resources(self):
        from surrogateshap.execution import task_resources

        return task_resources(self.task)

    def cost_of(self, masks):
        # the bank is paid once; stats mode generates nothing per coalition
        if self.mode == "stats":
            return 0.0
        return float(sum(bool(m.any()) for m in masks) * self.task.config.n_samples)

    def cache_id(self):
        return f"proxy:{self.task.config_id()}:{self.utility}:{self.mode}:{self.seed}"
