"""One registry from names to estimator classes; a new estimator is one file, one line."""

from __future__ import annotations

import importlib

from surrogateshap.estimator import Estimator

__all__ = ["register", "get_estimator", "available_estimators", "unregister"]

_REGISTRY: dict[str, type[Estimator]] = {}
# modules holding the built-in estimators, imported on first lookup
_BUILTIN_MODULES = ("surrogateshap.surrogate", "baselines", "surrogateshap.control_variate")
_loaded = False


def register(name: str):
    """Class decorator: ``@register("my-method") class MyMethod(Estimator): ...``."""

    def deco(cls):
        if not (isinstance(cls, type) and issubclass(cls, Estimator)):
            raise TypeError(f"{cls!r} is not an Estimator subclass")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"estimator name {name!r} is already registered to {_REGISTRY[name]}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def _load_builtins():
    global _loaded
    if not _loaded:
        _loaded = True  # set first: a built-in module may look up the registry
        try:
            for mod in _BUILTIN_MODULES:
                importlib.import_module(mod)
        except BaseException:
            _loaded = False  # fail again next time instead of a silently partial registry
            raise


def available_estimators() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get_estimator(name: str, **params) -> Estimator:
    """An estimator instance by registry name, with constructor parameters."""
    _load_builtins()
    if name not in _REGISTRY:
        raise KeyError(
            f"unknown estimator {name!r}; known estimators: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name](**params)
