"""The one registry of tasks: names -> factories (a task class or a function).

The built-ins are named here as "module:factory" strings and imported on first use
(their modules import torch), so listing names costs nothing and this module imports no
task.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

__all__ = ["get_task", "register_task", "available_tasks", "benchmark_tasks"]

_TASKS: dict[str, Callable] = {}
_BENCHMARK: set[str] = set()
#: built-in task name -> ("module:factory", in the benchmark's default selection)
_BUILTIN = {"digits10": ("surrogateshap.tasks.catalog.digits10:Digits10Task", False),
            "fashion-animal20": ("surrogateshap.tasks.catalog.fashion_animal20:FashionAnimal20Task", True),
            "cifar20": ("surrogateshap.tasks.catalog.cifar20:Cifar20Task", True),
            "fashion-brands": ("surrogateshap.tasks.catalog.fashion_brands:FashionBrandsTask", True),
            "spurious-sites": ("surrogateshap.tasks.catalog.spurious_sites:SpuriousSitesTask", True),
            "clipart-artists": ("surrogateshap.tasks.catalog.clipart_artists:ClipartArtistsTask", True),
            "artbench": ("surrogateshap.tasks.catalog.artbench:ArtBenchTask", False),
            "fashion-product": ("surrogateshap.tasks.catalog.fashion_product:FashionProductTask", False),
            "dermoscopy-sites": ("surrogateshap.tasks.catalog.dermoscopy_sites:DermoscopySitesTask", False)}


def register_task(name: str, benchmark: bool = False):
    """Decorator registering a task factory (a DiffusionTask subclass or a function);
    ``benchmark=True`` adds it to the benchmark's default selection of image tasks."""

    def deco(factory):
        if name in _TASKS and _TASKS[name] is not factory:
            raise ValueError(f"task name {name!r} is already registered to {_TASKS[name]}")
        _TASKS[name] = factory
        if benchmark:
            _BENCHMARK.add(name)
        return factory

    return deco


def available_tasks() -> list[str]:
    return sorted(set(_TASKS) | set(_BUILTIN))


def benchmark_tasks() -> list[str]:
    """The tasks registered for the benchmark's default selection, built-ins first."""
    builtin = [n for n, (_, bench) in _BUILTIN.items() if bench]
    return builtin + sorted(_BENCHMARK - set(builtin))


def get_task(name: str, scale: str = "default", **kwargs) -> "DiffusionTask":  # noqa: F821
    """A task by name at a scale preset ("ci", "default", "paper")."""
    if name not in _TASKS and name in _BUILTIN:
        module, attr = _BUILTIN[name][0].split(":")
        _TASKS[name] = getattr(importlib.import_module(module), attr)
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(available_tasks())}")
    return _TASKS[name](scale=scale, **kwargs)
