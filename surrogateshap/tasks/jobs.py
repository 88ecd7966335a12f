"""The picklable jobs a task's games hand to an executor, and how a worker gets the task.

Workers never receive a live task: they rebuild it from a :class:`TaskSpec` (registry
name, scale, config), once per worker process, and check that the rebuilt task has the
driver's configuration id. In-process executors get the live task itself.
"""

from __future__ import annotations

import importlib
import time
import dataclasses
from dataclasses import dataclass, field

import numpy as np

from surrogateshap.execution import Resources

__all__ = ["TaskSpec", "resolve_task", "task_ref", "task_resources", "retrain_job", "bank_job", "regenerate_job"]


@dataclass(frozen=True)
class TaskSpec:
    """How a worker rebuilds a task: ``get_task(name, scale=scale, **kwargs)`` after
    importing ``module`` (the module that registers the task)."""

    name: str
    scale: str = "default"
    kwargs: dict = field(default_factory=dict)
    module: str | None = None
    config_id: str | None = None  # checked in the worker: same configuration as the driver
    view: str | None = None  # "seller": the task's seller view (DiffusionTask.seller_view)

    @classmethod
    def of(cls, task, scale: str = "default") -> "TaskSpec":
        module = type(task).__module__
        if module == "__main__":
            raise ValueError(
                f"task class {type(task).__name__} is defined in the __main__ script, which a "
                "worker cannot import: move it (and its register_task) into an importable module")
        view = getattr(task, "view", None)
        if view is not None:
            return dataclasses.replace(cls.of(task.parent, scale), view=view)
        kwargs = {"config": task.config, "cache_dir": str(task.cache_dir)}
        return cls(task.name, scale, kwargs, module, task.config_id())

    def build(self):
        from surrogateshap.tasks.registry import get_task

        if self.module:
            importlib.import_module(self.module)
        task = get_task(self.name, scale=self.scale, **self.kwargs)
        if self.config_id is not None and task.config_id() != self.config_id:
            raise RuntimeError(
                f"worker rebuilt task {self.name!r} with configuration {task.config_id()}, "
                f"the driver has {self.config_id}: is the same surrogateshap version "
                "installed on every node, and is the task registered under its name?")
        if self.view == "seller":
            return task.seller_view()
        if self.view is not None:
            raise ValueError(f"unknown task view {self.view!r}")
        return task

    def _cache_key(self):
        return (self.name, self.scale, self.module, self.config_id, self.view, repr(sorted(self.kwargs.items())))


_WORKER_TASKS: dict = {}


def resolve_task(ref):
    """The task a job runs on: the live task (serial) or one rebuilt from its spec,
    kept for the worker's later jobs."""
    if not isinstance(ref, TaskSpec):
        return ref
    key = ref._cache_key()
    if key not in _WORKER_TASKS:
        _WORKER_TASKS[key] = ref.build()
    return _WORKER_TASKS[key]


def task_ref(task, executor):
    """What jobs receive in place of the task: the task itself in this process, else a spec."""
    return task if executor.in_process else TaskSpec.of(task)


def task_resources(task) -> Resources:
    """Per-job resources from the task's config (``cpus_per_job``, ``gpus_per_job``,
    ``memory_per_job`` in bytes; 0 = unset): 1 CPU, no GPU, no memory limit by default."""
    c = task.config
    memory = getattr(c, "memory_per_job", None) or None
    return Resources(cpus=float(getattr(c, "cpus_per_job", 1.0)),
                     gpus=float(getattr(c, "gpus_per_job", 0.0)), memory=memory)


def retrain_job(ref, masks: np.ndarray, seed: int):
    """Train the coalitions of ``masks`` together: (statistics per coalition, seconds per model)."""
    task = resolve_task(ref)
    t0 = time.perf_counter()
    stats = task.retrain_stats(masks, seed)
    return stats, (time.perf_counter() - t0) / len(masks)


def regenerate_job(ref, mask, seed: int):
    return resolve_task(ref).regenerate_stats(mask, seed)


def bank_job(ref):
    return resolve_task(ref).bank()
