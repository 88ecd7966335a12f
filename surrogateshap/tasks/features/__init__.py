"""Scorers: how a task's samples become statistics, utilities and the proxy's bank.

One registry: ``@register_scorer("name")`` on a class taking ``(task, **parts)``; a
task's config names its scorer (field ``featurizer``, else the task's ``scorer_name``).
A scorer offers ``stats(images, units) -> statistics`` (what a utility reads),
``score(statistics) -> {utility: value}``, ``real_stats()``, ``bank_stats()`` (the
full model's per-unit bank), ``features(images)``, and the identity of the networks it
scores with (``recipes()``, ``networks()``, ``parts()``). Built in:

- ``net``, ``inception``: sufficient statistics of image features (FID, IS, coverage
  and a task's own per-sample scores; :mod:`.image_scoring`);
- ``t2i``: per-image features of text-to-image samples (aesthetic score, LPIPS, CLIP
  diversity, attribute calls; :mod:`.t2i_scoring`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

__all__ = ["register_scorer", "make_scorer", "available_scorers"]

_SCORERS: dict[str, Callable] = {}
_BUILTIN = {"net": "surrogateshap.tasks.features.image_scoring:StatsScorer",
            "inception": "surrogateshap.tasks.features.image_scoring:StatsScorer",
            "t2i": "surrogateshap.tasks.features.t2i_scoring:T2IScorer"}


def register_scorer(name: str):
    """Decorator registering a scorer class under ``name``."""

    def deco(factory):
        if name in _SCORERS and _SCORERS[name] is not factory:
            raise ValueError(f"scorer {name!r} is already registered to {_SCORERS[name]}")
        _SCORERS[name] = factory
        return factory

    return deco


def available_scorers() -> list[str]:
    return sorted(set(_SCORERS) | set(_BUILTIN))


def make_scorer(name: str, task, **parts):
    if name not in _SCORERS and name in _BUILTIN:
        module, attr = _BUILTIN[name].split(":")
        _SCORERS[name] = getattr(importlib.import_module(module), attr)
    if name not in _SCORERS:
        raise KeyError(f"unknown featurizer {name!r}; known: {', '.join(available_scorers())}")
    return _SCORERS[name](task, **parts)
