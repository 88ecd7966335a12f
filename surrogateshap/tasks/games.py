"""The games a task makes: retraining (the truth), the proxy (SurrogateSHAP's), and
fine-tuning (sparsified fine-tuning Shapley's stand-in for retraining).

- :class:`RetrainingGame`: v(S) = utility of a model trained from scratch on S's data,
  sampled with S's units in proportion to their data. Every retraining scores all the
  task's utilities at once and goes to the task's cache (so the games of every utility
  share it, and an interrupted run resumes); the task's reference table is served
  beneath the cache, so a coalition a shipped table holds is never retrained. Trainings
  run on an executor (:mod:`surrogateshap.execution`; serial by default).
- :class:`ProxyGame`: v_hat(S) = utility of the mixture sum_u pi_S(u) p_theta(x | u) of
  the one full-data model: the task's bank mixed with S's unit weights (mode "bank":
  no image per coalition), or samples generated per coalition (mode "regenerate", the
  paper's protocol, kept to show both agree within sampling error).
- :class:`FineTuningGame`: v(S) = utility of the full model, magnitude-pruned, then
  fine-tuned on S's data for a few hundred steps (pruned weights held at zero) and
  sampled as the retraining game samples; costs in training steps.

v(empty) is the task's prior in every game (:mod:`surrogateshap.tasks.base`).
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque

import numpy as np

from surrogateshap.game import Game, coalition_key, key_to_mask, stable_hash
from surrogateshap.tasks.features.statistics import FID_APPROX, check_bank_options
from surrogateshap.tasks.models.pruning import PRUNE_SCOPES, magnitude_prune

__all__ = ["RetrainingGame", "ProxyGame", "FineTuningGame", "RetrainingFailedError", "RetrainingRefusedError",
           "PROXY_MODES"]

#: the proxy game's modes ("stats" is the old name of "bank")
PROXY_MODES = ("bank", "regenerate")


class RetrainingFailedError(RuntimeError):
    """Some coalitions could not be retrained (after retries); ``failures`` maps each
    coalition key to its record (error, attempts)."""

    def __init__(self, failures: dict[str, dict]):
        self.failures = failures
        key, rec = next(iter(failures.items()))
        super().__init__(f"{len(failures)} coalition(s) failed to retrain, e.g. {key} after "
                         f"{rec['attempts']} attempts: {rec['error']}")


class RetrainingRefusedError(RuntimeError):
    """Coalitions would need retraining, but the game was told not to train
    (``allow_train=False``, the benchmark's ``--no-retrain``); ``keys`` names them."""

    def __init__(self, task_name: str, seed: int, keys: list[str]):
        self.keys = keys
        shown = ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else "")
        super().__init__(
            f"{len(keys)} coalition(s) of {task_name} seed {seed} are in neither its table nor its cache "
            f"({shown}) and retraining is off: run without --no-retrain to train them, or extend the "
            f"table with `surrogateshap build-table --task {task_name} --coalitions FILE`")


class RetrainingGame(Game):
    """v(S) = utility of a model retrained on coalition S's data (seeded).

    Every retraining scores all the task's utilities at once and is appended to the
    task's retraining store of this seed (:class:`~surrogateshap.tasks.cache.TaskCache`),
    so the games of different utilities share retrainings, and an interrupted run resumes
    where it stopped (a crash loses at most the chunks of models in flight). Beneath the
    store lies the task's reference table: a coalition it holds on this seed is served,
    never retrained (``reference=False`` ignores it). ``allow_train=False`` refuses to
    train what neither holds (:class:`RetrainingRefusedError`, naming the coalitions);
    otherwise the number to train is printed before training starts.

    Trainings run on an ``executor`` (:mod:`surrogateshap.execution`; serial by default);
    this process stays the store's only writer, and it re-reads the store before each
    job, so two drivers on one cache skip what the other finished. A coalition that keeps
    failing is recorded in the store's failures table (never among the results) and
    reported.
    """

    cost_unit = "model trainings"

    def __init__(self, task, utility: str, seed: int = 0, cache: bool = True, progress: bool = True,
                 executor=None, reference: bool = True, allow_train: bool = True):
        from surrogateshap.execution import get_executor

        task.check_utility(utility)
        super().__init__(task.players)
        self.task, self.utility, self.seed, self.progress = task, utility, int(seed), progress
        self.executor = get_executor(executor)
        self.reference, self.allow_train = bool(reference), bool(allow_train)
        self.n_trained = 0
        self.store = task.cache.retraining_store(self.seed) if cache else None
        self._memo: dict[str, dict] = {}
        self._failed: dict[str, dict] = {}

    def _from_reference(self, key: str) -> dict | None:
        if not self.reference:
            return None
        rec = self.task.cache.reference_record(key, self.seed)
        if rec is not None:
            self._memo[key] = rec
        return rec

    def _done(self, key: str) -> bool:
        return (key in self._memo or (self.store is not None and key in self.store)
                or self._from_reference(key) is not None)

    def _get(self, key: str) -> dict | None:
        return self._memo.get(key) or (self.store.get(key) if self.store is not None else None)

    def missing(self, masks) -> list[str]:
        """The coalitions of ``masks`` that neither the table nor the cache holds (what
        evaluating them would train), in order, once each."""
        if self.store is not None:
            self.store.refresh()
        return list(dict.fromkeys(coalition_key(m) for m in masks
                                  if m.any() and not self._done(coalition_key(m))))

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
        if todo and not self.allow_train:
            raise RetrainingRefusedError(self.task.name, self.seed, todo)
        if todo:
            if self.progress:
                print(f"retraining {len(todo)} coalition(s) of {self.task.name} seed {self.seed} that its "
                      "table and cache lack", file=sys.stderr, flush=True)
            self._train(todo)
        failed = {k: self._failed[k] for k in dict.fromkeys(keys) if k in self._failed and not self._done(k)}
        if failed and not allow_failed:
            raise RetrainingFailedError(failed)
        return [self._get(k) for k in keys]

    def _train(self, todo: list[str]):
        from tqdm.auto import tqdm

        from surrogateshap.tasks.jobs import retrain_job, task_ref, task_resources

        ex = self.executor
        ref = task_ref(self.task, ex)
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
            # a few coalitions are spread over the workers rather than batched on one of them
            chunk = min(chunk, -(-len(todo) // max(1, session.capacity)))
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
                    session.submit(tuple(part), retrain_job, (ref, masks, self.seed), retries)
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
        return f"retrain:{self.task.config_id()}:{self.task.scoring_id()}:{self.utility}:{self.seed}"


class ProxyGame(Game):
    """SurrogateSHAP's proxy game over the one full-data model.

    mode="bank": mix the task's bank (:meth:`DiffusionTask.bank`) with weights pi_S over
    units (``task.unit_weights``); no image is touched per coalition, and a bank of
    sufficient statistics is evaluated for a whole batch of coalitions at once.
    ``samples`` (or the config's ``proxy_samples``): a bank of per-image features mixes
    that many of its images per coalition, as the paper's protocol would generate them
    (None: every bank image, weighted). mode="regenerate": generate ``n_samples`` fresh
    samples per coalition (slow).

    A bank of sufficient statistics takes ``fid_rank`` (FID from the pooled generated
    features' top directions: an approximation, named with its way in :meth:`cache_id` so
    its values never mix with exact ones or an earlier way's), ``memory_budget`` (bytes a call's working arrays may take) and
    ``eig_backend`` ("numpy" or "torch": where FID's eigensolves run; None: torch on a
    CUDA task); values do not depend on the memory budget, and torch rounds a singular
    bank's near-zero eigenvalues differently, so a torch backend is named in the identity;
    see :class:`~surrogateshap.tasks.features.statistics.StatsBank`.
    """

    cost_unit = "images generated"

    def __init__(self, task, utility: str, mode: str = "bank", seed: int = 0, executor=None,
                 samples: int | None = None, fid_rank: int | None = None, memory_budget: int | None = None,
                 eig_backend: str | None = None):
        from surrogateshap.execution import get_executor

        task.check_utility(utility)
        mode = "bank" if mode == "stats" else mode
        if mode not in PROXY_MODES:
            raise ValueError(f"mode must be one of {PROXY_MODES}, got {mode!r}")
        super().__init__(task.players)
        self.task, self.utility, self.mode, self.seed = task, utility, mode, int(seed)
        self.samples = getattr(task.config, "proxy_samples", None) if samples is None else int(samples)
        self.executor = get_executor(executor)  # runs the bank's and regenerate's generation
        check_bank_options(fid_rank, memory_budget, eig_backend)
        for name, value in (("fid_rank", fid_rank), ("eig_backend", eig_backend)):
            if value is not None and not self._bank_solves():
                raise ValueError(f"{name}= applies to mode='bank' with the bank's sufficient statistics mixed "
                                 f"(samples=None); mode={mode!r}, samples={self.samples} score each coalition "
                                 "exactly on numpy")
        self.fid_rank = fid_rank
        self.memory_budget, self.eig_backend = memory_budget, eig_backend
        self._bank = None
        self._empty = None

    def _prepare(self):
        if self._bank is None:
            from surrogateshap.tasks.jobs import bank_job, task_ref, task_resources

            if self.executor.name == "serial":
                bank = self.task.bank()
            else:
                bank = self.executor.map(bank_job, [(task_ref(self.task, self.executor),)],
                                         task_resources(self.task))[0]
            n = len(bank.units) if hasattr(bank, "units") else getattr(bank, "n_units", None)
            if n is not None and n != self.task.n_units:
                raise ValueError(f"{self.task.name}: a bank of {n} units for {self.task.n_units} units")
            for name in ("fid_rank", "memory_budget", "eig_backend"):
                value = getattr(self, name)
                if value is None:
                    continue
                if not hasattr(bank, name):
                    raise ValueError(f"{self.task.name}: {name}= applies to a bank of sufficient statistics; "
                                     f"this task's bank is a {type(bank).__name__}")
                setattr(bank, name, value)
            self._bank = bank
            if self.fid_rank is None:
                self._empty = self.task.score(self.task.empty_stats())[self.utility]
            else:  # the empty coalition's prior scored the same (approximate) way
                self._empty = float(type(bank)([self.task.empty_stats()], bank.real, fid_rank=self.fid_rank)
                                    .utility(self.utility, np.ones((1, 1)))[0])

    def _mixed(self, w: np.ndarray) -> np.ndarray:
        """Utilities of rows of normalised unit weights."""
        bank = self._bank
        if self.samples is None and hasattr(bank, "utility"):
            return bank.utility(self.utility, w)  # sufficient statistics: one batched call
        kw = {} if self.samples is None else {"n": self.samples}
        return np.array([self.task.score(bank.mixture(row, **kw))[self.utility] for row in w])

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
            out[some] = self._mixed(w[some] / total[some, None])
        return out

    def _evaluate(self, masks):
        self._prepare()
        out = np.full(len(masks), self._empty)
        some = masks.any(1)
        if not some.any():
            return out
        if self.mode == "bank":
            out[some] = self._mixed(self.task.unit_weights(masks[some]))
        else:
            from surrogateshap.tasks.jobs import (
                regenerate_job,
                task_ref,
                task_resources,
            )

            ref = task_ref(self.task, self.executor)
            stats = self.executor.map(regenerate_job, [(ref, m, self.seed) for m in masks[some]],
                                      task_resources(self.task))
            out[some] = [self.task.score(st)[self.utility] for st in stats]
        return out

    def cost_of(self, masks):
        # the bank is paid once; bank mode generates nothing per coalition
        if self.mode == "bank":
            return 0.0
        return float(sum(bool(m.any()) for m in masks) * self.task.config.n_samples)

    def cache_id(self):
        samples = "" if self.samples is None else f":{self.samples}"
        # the approximation's way is named: values cached by an earlier way are not served
        rank = "" if self.fid_rank is None else f":fid_rank={self.fid_rank}:{FID_APPROX}"
        return f"proxy:{self.task.config_id()}:{self.utility}:{self.mode}:{self.seed}{samples}{rank}{self._eig_id()}"

    def _eig_id(self) -> str:
        """":eig=torch" where FID's eigensolves run on torch (given, or by a CUDA device):
        its rounding of a singular bank's near-zero eigenvalues differs from numpy's, so
        its values never share a cache or a table with numpy's ("" for numpy, as before)."""
        if not self._bank_solves():
            return ""
        backend = self.eig_backend
        if backend is None:
            device = str(getattr(self.task, "device", "cpu"))
            backend = "torch" if device.startswith("cuda") else "numpy"
        return "" if backend == "numpy" else f":eig={backend}"

    def _bank_solves(self) -> bool:
        """Whether FID's eigensolves run in the bank (its backend); regenerated samples and
        a bank mixed image by image are scored per coalition (:meth:`DiffusionTask.score`)."""
        return self.mode == "bank" and self.samples is None


class FineTuningGame(Game):
    """v(S) = utility of the pruned full model fine-tuned on S's data (seeded, cached).

    ``steps`` fine-tuning steps at peak learning rate ``lr`` (one-cycle schedule, the
    task's batch size); ``sparsity`` of ``scope``-wise magnitude pruning. Coalitions are
    fine-tuned ``config.models_per_batch`` at a time, each model from its own seed, so a
    value does not depend on which coalitions were computed together.
    """

    cost_unit = "training steps"

    def __init__(self, task, utility: str, seed: int = 0, sparsity: float = 0.5,
                 steps: int = 200, lr: float = 1e-3, scope: str = "layer", cache: bool = True,
                 progress: bool = True):
        task.check_utility(utility)
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if scope not in PRUNE_SCOPES:
            raise ValueError(f"scope must be one of {PRUNE_SCOPES}, got {scope!r}")
        if not 0.0 <= float(sparsity) < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        super().__init__(task.players)
        self.task, self.utility, self.seed = task, utility, int(seed)
        self.sparsity, self.steps, self.lr, self.scope = float(sparsity), int(steps), float(lr), scope
        self.progress = progress
        self.n_trained = 0
        self.settings = {"pruning": "magnitude", "scope": scope, "sparsity": self.sparsity,
                         "steps": self.steps, "lr": self.lr}
        self.store = None
        if cache:
            self.store = task.cache.scored_store(f"finetune-{stable_hash(self.settings)}", self.seed,
                                                 game="finetune", **self.settings)
        self._memo: dict[str, dict] = {}
        self._base = None

    def base(self) -> tuple[dict, dict]:
        """The pruned full model's state and keep-masks (computed once)."""
        if self._base is None:
            state = {k: v.detach().cpu() for k, v in self.task.full_model.state_dict().items()}
            self._base = magnitude_prune(state, self.sparsity, self.scope)
        return self._base

    def records(self, masks) -> list[dict]:
        """All utilities (and seconds, steps) of each coalition, fine-tuning what is missing."""
        from tqdm.auto import tqdm

        keys = [coalition_key(m) for m in masks]
        todo, queued = [], set()
        for k, m in zip(keys, masks):
            if k in self._memo or (self.store is not None and k in self.store) or k in queued:
                continue
            if not m.any():
                self._memo[k] = {**self.task.score(self.task.empty_stats()), "seconds": 0.0, "steps": 0}
                continue
            todo.append((k, m))
            queued.add(k)
        chunk = max(1, int(getattr(self.task.config, "models_per_batch", 1)))
        bar = tqdm(total=len(todo), desc=f"fine-tuning {self.task.name} seed {self.seed}",
                   unit="model", disable=not self.progress or len(todo) <= 1)
        if todo:
            init, keep = self.base()
        for i in range(0, len(todo), chunk):
            part = todo[i : i + chunk]
            t0 = time.perf_counter()
            stats = self.task.finetune_stats(np.stack([m for _, m in part]), self.seed, init=init,
                                             keep=keep, steps=self.steps, lr=self.lr)
            dt = (time.perf_counter() - t0) / len(part)
            for (k, _), s in zip(part, stats):
                rec = {**self.task.score(s), "seconds": dt, "steps": self.steps}
                self._memo[k] = rec
                if self.store is not None:
                    self.store.append(k, rec)
            self.n_trained += len(part)
            bar.update(len(part))
        bar.close()
        return [self._memo.get(k) or self.store.get(k) for k in keys]

    def _evaluate(self, masks):
        return np.array([r[self.utility] for r in self.records(masks)])

    def cost_of(self, masks):
        return float(sum(bool(m.any()) for m in masks) * self.steps)

    def cache_id(self):
        return (f"finetune:{self.task.config_id()}:{self.task.scoring_id()}:{stable_hash(self.settings)}:"
                f"{self.utility}:{self.seed}")
