"""Attribution tasks: contributors, a model family, utilities, and the games they make.

Tasks are found by name in one registry: ``@register_task("name")`` on a factory
``(scale="default", **kwargs) -> DiffusionTask``. The built-in tasks register lazily
(their modules import torch), so listing names costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from surrogateshap.tasks.base import DiffusionTask, ProxyGame, RetrainingGame

__all__ = ["DiffusionTask", "ProxyGame", "RetrainingGame", "get_task", "register_task",
           "available_tasks"]

_TASKS: dict[str, Callable[..., DiffusionTask]] = {}
#: built-in task name -> "module:factory", imported on first use
_BUILTIN = {"digits10": "surrogateshap.tasks.digits:Digits10Task",
            "fashion-animal20": "surrogateshap.tasks.fashion_animal:FashionAnimal20Task",
            "cifar20": "surrogateshap.tasks.cifar:Cifar20Task",
            "fashion-brands": "surrogateshap.tasks.fashion_brands:FashionBrandsTask",
            "spurious-sites": "surrogateshap.tasks.spurious:SpuriousSitesTask",
            "clipart-artists": "surrogateshap.tasks.artwork:ClipartArtistsTask",
            "artbench": "surrogateshap.tasks.artbench:ArtBenchTask",
            "fashion-product": "surrogateshap.tasks.fashion_product:FashionProductTask",
            "dermoscopy-sites": "surrogateshap.tasks.dermoscopy:DermoscopySitesTask"}


def register_task(name: str):
    """Decorator registering a task factory (a DiffusionTask subclass or a function)."""

    def deco(factory):
        if name in _TASKS and _TASKS[name] is not factory:
            raise ValueError(f"task name {name!r} is already registered to {_TASKS[name]}")
        _TASKS[name] = factory
        return factory

    return deco


def available_tasks() -> list[str]:
    return sorted(set(_TASKS) | set(_BUILTIN))


def get_task(name: str, scale: str = "default", **kwargs) -> DiffusionTask:
    """A task by name at a scale preset ("ci", "default", "paper")."""
    if name not in _TASKS and name in _BUILTIN:
        module, attr = _BUILTIN[name].split(":")
        _TASKS[name] = getattr(importlib.import_module(module), attr)
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(available_tasks())}")
    return _TASKS[name](scale=scale, **kwargs)
