"""The one registry of tasks: names -> factories (a task class or a function
``(scale="default", **kwargs) -> DiffusionTask``). The built-ins are named here as
"module:factory" strings and imported on first use, so this module imports no task;
``benchmark=True`` puts a task in the benchmark's default selection."""

from __future__ import annotations

from surrogateshap.tasks.common import Registry

__all__ = ["get_task", "register_task", "available_tasks", "benchmark_tasks"]

#: built-in task name -> ("module:factory", in the benchmark's default selection)
_BUILTIN = {"digits10": ("surrogateshap.tasks.catalog.digits10:Digits10Task", False),
            "fashion-animal20": ("surrogateshap.tasks.catalog.fashion_animal20:FashionAnimal20Task", True),
            "cifar20": ("surrogateshap.tasks.catalog.cifar20:Cifar20Task", True),
            "fashion-brands": ("surrogateshap.tasks.catalog.fashion_brands:FashionBrandsTask", True),
            "spurious-sites": ("surrogateshap.tasks.catalog.spurious_sites:SpuriousSitesTask", True),
            "fashion-sellers": ("surrogateshap.tasks.catalog.fashion_sellers:FashionSellersTask", False),
            "clipart-artists": ("surrogateshap.tasks.catalog.clipart_artists:ClipartArtistsTask", True),
            "artbench": ("surrogateshap.tasks.catalog.artbench:ArtBenchTask", False),
            "fashion-product": ("surrogateshap.tasks.catalog.fashion_product:FashionProductTask", False),
            "dermoscopy-sites": ("surrogateshap.tasks.catalog.dermoscopy_sites:DermoscopySitesTask", False),
            "imagefolder": ("surrogateshap.tasks.catalog.imagefolder:ImageFolderTask", False)}
TASKS = Registry("task", "tasks", {name: target for name, (target, _) in _BUILTIN.items()})
_BENCHMARK: list[str] = [name for name, (_, bench) in _BUILTIN.items() if bench]


def register_task(name: str, benchmark: bool = False):
    """Decorator registering a task factory (a DiffusionTask subclass or a function);
    ``benchmark=True`` adds it to the benchmark's default selection of image tasks."""
    register = TASKS.register(name)

    def deco(factory):
        register(factory)
        if benchmark and name not in _BENCHMARK:
            _BENCHMARK.append(name)
        return factory

    return deco


def available_tasks() -> list[str]:
    return TASKS.names()


def benchmark_tasks() -> list[str]:
    """The tasks registered for the benchmark's default selection, built-ins first."""
    return list(_BENCHMARK)


def get_task(name: str, scale: str = "default", **kwargs):
    """A task by name at a scale preset ("ci", "default", "paper")."""
    return TASKS.get(name)(scale=scale, **kwargs)
