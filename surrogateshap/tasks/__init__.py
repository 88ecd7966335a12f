"""Attribution tasks: contributors, a model family, a scorer, and the games they make.

The house has rooms by kind: ``catalog/`` holds only task definitions (one file a task:
its config and where its data comes from), ``data/`` the loaders, ``models/`` the model
families, ``features/`` the scorers and utilities; ``base`` (the one task class),
``games``, ``jobs``, ``cache`` and ``reference`` the machinery every task shares.

Tasks are found by name in one registry: ``@register_task("name")`` on a factory
``(scale="default", **kwargs) -> DiffusionTask``; ``benchmark=True`` puts the task in the
benchmark's default selection (it has a reference table of its own). The built-in tasks
register lazily (their modules import torch), so listing names costs nothing.
"""

from __future__ import annotations

from surrogateshap.tasks.base import DiffusionTask
from surrogateshap.tasks.games import ProxyGame, RetrainingGame
from surrogateshap.tasks.registry import (
           available_tasks,
           benchmark_tasks,
           get_task,
           register_task,
)

__all__ = ["DiffusionTask", "ProxyGame", "RetrainingGame", "get_task", "register_task", "available_tasks",
           "benchmark_tasks"]

