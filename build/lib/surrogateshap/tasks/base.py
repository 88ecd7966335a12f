"""Diffusion attribution tasks and the two games they make.

A task knows its contributors (which training items each owns), how to train a
class-conditional diffusion model on a coalition's data, how to sample, and which
utilities it offers. From it come:

- :class:`RetrainingGame`: v(S) = utility of a model trained from scratch on S's data,
  sampled with S's labels in proportion to their data. Expensive; cached on disk.
- :class:`ProxyGame`: SurrogateSHAP's v_hat(S) = utility of the mixture
  sum_{y in S} pi_S(y) p_theta(x | y) of the one full-data model, computed from
  per-label sample-bank statistics (microseconds), or by re-generating per coalition.

The empty coalition has no data and no model. Both games define
v(empty) = utility of the model's prior (standard Gaussian noise clipped to the data
range): what a generator that learned nothing produces. It shifts every Shapley value
by the same amount, so it is defined once, here, for both games.
"""

from __future__ import annotations

import dataclasses
import os
import time
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from surrogateshap.game import CoalitionStore, Game, coalition_key, stable_hash
from surrogateshap.tasks.statistics import LabelStats, StatsBank, utility_from_stats

__all__ = ["DiffusionTask", "RetrainingGame", "ProxyGame", "allocate_counts", "coalition_seed", "default_cache_dir"]


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
    presets), and implement training, sampling and statistics.
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

    #: config fields that change how fast, not what, is computed (kept out of cache keys)
    execution_fields: tuple[str, ...] = ("models_per_batch", "device")

    def config_id(self) -> str:
        cfg = {k: v for k, v in dataclasses.asdict(self.config).items() if k not in self.execution_fields}
        return f"{self.name}-{stable_hash(cfg)}"

    # --- models and statistics -------------------------------------------------
    @abstractmethod
    def retrain_stats(self, masks: np.ndarray, seed: int) -> list[LabelStats]:
        """Train one model per coalition (rows of masks, none empty) and return the
        statistics of ``config.n_samples`` samples from each, labels in proportion pi_S."""

    @abstractmethod
    def bank_stats(self) -> list[LabelStats]:
        """Per-contributor statistics of the full-data model's sample bank."""

    @abstractmethod
    def regenerate_stats(self, mask, seed: int) -> LabelStats:
        """Statistics of freshly generated samples of the full model for coalition
        ``mask`` (labels in proportion pi_S): the paper's per-coalition protocol."""

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
    def retraining_game(self, utility: str, seed: int = 0, cache: bool = True) -> "RetrainingGame":
        return RetrainingGame(self, utility, seed=seed, cache=cache)

    def proxy_game(self, utility: str, mode: str = "stats", seed: int = 0) -> "ProxyGame":
        return ProxyGame(self, utility, mode=mode, seed=seed)

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


class RetrainingGame(Game):
    """v(S) = utility of a model retrained on coalition S's data (seeded).

    Every retraining scores all the task's utilities at once and is appended to an
    on-disk store keyed by (task, config, seed, coalition), so the games of different
    utilities share retrainings, and an interrupted run resumes where it stopped (a
    crash loses at most the chunk of models being trained together).
    """

    cost_unit = "model trainings"

    def __init__(self, task: DiffusionTask, utility: str, seed: int = 0, cache: bool = True,
                 progress: bool = True):
        task._check_utility(utility)
        super().__init__(task.players)
        self.task, self.utility, self.seed, self.progress = task, utility, int(seed), progress
        self.n_trained = 0
        self.store = None
        if cache:
            path = task.cache_dir / task.config_id() / f"retrain-seed{self.seed}.jsonl"
            self.store = _shared_store(path, {"task": task.config_id(), "seed": self.seed})
        self._memo: dict[str, dict] = {}

    def records(self, masks) -> list[dict]:
        """All utilities (and seconds) of each coalition, retraining what is missing."""
        from tqdm.auto import tqdm

        keys = [coalition_key(m) for m in masks]
        todo, queued = [], set()
        for k, m in zip(keys, masks):
            if k in self._memo or (self.store is not None and k in self.store) or k in queued:
                continue
            if not m.any():
                self._memo[k] = {**self.task.score(self.task.empty_stats()), "seconds": 0.0, "trainings": 0}
                continue
            todo.append((k, m))
            queued.add(k)
        chunk = max(1, int(getattr(self.task.config, "models_per_batch", 1)))
        bar = tqdm(total=len(todo), desc=f"retraining {self.task.name} seed {self.seed}",
                   unit="model", disable=not self.progress or len(todo) <= 1)
        for i in range(0, len(todo), chunk):
            part = todo[i : i + chunk]
            t0 = time.perf_counter()
            stats = self.task.retrain_stats(np.stack([m for _, m in part]), self.seed)
            dt = (time.perf_counter() - t0) / len(part)
            for (k, _), s in zip(part, stats):
                rec = {**self.task.score(s), "seconds": dt, "trainings": 1}
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
        return float(sum(bool(m.any()) for m in masks))

    def cache_id(self):
        return f"retrain:{self.task.config_id()}:{self.utility}:{self.seed}"


class ProxyGame(Game):
    """SurrogateSHAP's proxy game over the one full-data model.

    mode="stats": mix the per-label sample-bank statistics with weights pi_S (no
    images touched; batched over coalitions: see ``scripts/proxy_cost.py``). mode="regenerate": generate
    ``config.n_samples`` fresh samples per coalition (the paper's protocol; slow),
    kept to show both agree within sampling error.
    """

    cost_unit = "images generated"

    def __init__(self, task: DiffusionTask, utility: str, mode: str = "stats", seed: int = 0):
        task._check_utility(utility)
        if mode not in ("stats", "regenerate"):
            raise ValueError(f"mode must be 'stats' or 'regenerate', got {mode!r}")
        super().__init__(task.players)
        self.task, self.utility, self.mode, self.seed = task, utility, mode, int(seed)
        self._bank = None
        self._empty = None

    def _prepare(self):
        if self._bank is None:
            self._bank = StatsBank(self.task.bank_stats(), self.task.real_stats())
            self._empty = utility_from_stats(self.utility, self.task.empty_stats(), self.task.real_stats())

    def _evaluate(self, masks):
        self._prepare()
        out = np.full(len(masks), self._empty)
        some = masks.any(1)
        if self.mode == "stats":
            w = masks[some] * self.task.counts()
            out[some] = self._bank.utility(self.utility, w / w.sum(1, keepdims=True))
        else:
            real = self.task.real_stats()
            out[some] = [utility_from_stats(self.utility, self.task.regenerate_stats(m, self.seed), real)
                         for m in masks[some]]
        return out

    def cost_of(self, masks):
        # the bank is paid once; stats mode generates nothing per coalition
        if self.mode == "stats":
            return 0.0
        return float(sum(bool(m.any()) for m in masks) * self.task.config.n_samples)

    def cache_id(self):
        return f"proxy:{self.task.config_id()}:{self.utility}:{self.mode}:{self.seed}"
