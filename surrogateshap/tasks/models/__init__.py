"""Model families: how a task trains one model per coalition, samples from it, and what
its empty coalition generates. One registry: ``@register_family("name")`` on a class with
``from_task(task)`` (or a function ``task -> family``); a task's config names its family
(field ``family``, else the task's ``family_name``).

A family offers ``prepare(dataset) -> data`` (the training data in its layout, once),
``train(data, members, seeds) -> models`` (one per coalition: ``members[k]`` the item
indices, ``seeds[k]`` its seed), ``sample(models, labels, seed) -> images`` (row k of the
unit labels from model k), ``prior(units) -> images`` (the empty coalition: a model
that learned nothing), ``save``/``load`` of one model, and optionally
``model_access(task)`` (the TRAK family's seam) and fine-tuning. Built in:

- ``mlp``: the batched residual-MLP DDPM (:mod:`.mlp`), cheap on a CPU;
- ``unet``: the diffusers UNet DDPM (:mod:`.unet`), the paper's CIFAR model;
- ``sd``, ``flux``: a pretrained pipeline + one LoRA per coalition (:mod:`.lora`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

__all__ = ["register_family", "make_family", "available_families", "family_offers"]

_FAMILIES: dict[str, Callable] = {}
#: built-in family name -> "module:class", imported on first use (they import torch)
_BUILTIN = {"mlp": "surrogateshap.tasks.models.mlp:MLPFamily",
            "unet": "surrogateshap.tasks.models.unet:UNetFamily",
            "sd": "surrogateshap.tasks.models.lora:LoRAFamily",
            "flux": "surrogateshap.tasks.models.lora:LoRAFamily"}


def register_family(name: str):
    """Decorator registering a model family under ``name``."""

    def deco(factory):
        if name in _FAMILIES and _FAMILIES[name] is not factory:
            raise ValueError(f"model family {name!r} is already registered to {_FAMILIES[name]}")
        _FAMILIES[name] = factory
        return factory

    return deco


def available_families() -> list[str]:
    return sorted(set(_FAMILIES) | set(_BUILTIN))


def _factory(name: str):
    if name not in _FAMILIES and name in _BUILTIN:
        module, attr = _BUILTIN[name].split(":")
        _FAMILIES[name] = getattr(importlib.import_module(module), attr)
    if name not in _FAMILIES:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(available_families())}")
    return _FAMILIES[name]


def make_family(name: str, task, **parts):
    """The family ``name`` for ``task`` (settings read from its config); ``parts`` are
    passed to its ``from_task`` (e.g. a ready pipeline)."""
    factory = _factory(name)
    return factory.from_task(task, **parts) if hasattr(factory, "from_task") else factory(task, **parts)


def family_offers(name: str) -> tuple[str, ...]:
    """What a family offers model-based estimators: ("model",) when it has model access."""
    return ("model",) if hasattr(_factory(name), "model_access") else ()
