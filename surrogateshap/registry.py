"""One registry from names to estimator classes; a new estimator is one file, one line.

Estimators register with the ``@register("name")`` class decorator when their module
is imported. Packages make their modules known through the ``surrogateshap.estimators``
entry-point group: the built-ins (``surrogateshap.estimators`` and the top-level
``baselines``) are declared in this project's ``pyproject.toml`` exactly as a user's
plug-in package declares its own::

    [project.entry-points."surrogateshap.estimators"]
    my_methods = "my_package.estimators"

The first lookup imports every module of the group, so the library itself never
imports ``baselines``. A module defined in a script or a test registers by being
imported (``@register`` runs at import time).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from surrogateshap.estimator import Estimator

__all__ = ["register", "get_estimator", "available_estimators", "unregister", "parse_spec",
           "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "surrogateshap.estimators"

_REGISTRY: dict[str, type[Estimator]] = {}
_loaded = False


def register(name: str):
    """Class decorator: ``@register("my-method") class MyMethod(Estimator): ...``."""

    def deco(cls):
        if not (isinstance(cls, type) and issubclass(cls, Estimator)):
            raise TypeError(f"{cls!r} is not an Estimator subclass")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"estimator name {name!r} is already registered to {_REGISTRY[name]}")
        cls.name = name
        cls.check_declarations()
        _REGISTRY[name] = cls
        return cls

    return deco


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def plugin_modules() -> list[str]:
    """Module names declared in the ``surrogateshap.estimators`` entry-point group."""
    return sorted({ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)})


def _load_plugins():
    global _loaded
    if not _loaded:
        _loaded = True  # set first: a plug-in module may look up the registry
        try:
            for mod in plugin_modules():
                importlib.import_module(mod)
        except BaseException:
            _loaded = False  # fail again next time instead of a silently partial registry
            raise


def available_estimators() -> list[str]:
    _load_plugins()
    return sorted(_REGISTRY)


def parse_spec(spec: str) -> tuple[str, dict]:
    """``"name"`` or ``"name(key=value, ...)"`` -> (name, parameters).

    Values are Python literals (``efficiency='centered'``, ``paired=True``,
    ``model_params={'n_estimators': 100}``); a bare word is taken as a string. This is
    how the benchmark and the CLI name a variant of a registered estimator.
    """
    import ast

    spec = str(spec).strip()
    if "(" not in spec:
        return spec, {}
    if not spec.endswith(")"):
        raise ValueError(f"estimator spec {spec!r} must look like name(key=value, ...)")
    name, args = spec[: spec.index("(")].strip(), spec[spec.index("(") + 1 : -1]
    try:
        call = ast.parse(f"f({args})", mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"estimator spec {spec!r}: cannot parse its parameters ({e.msg})") from e
    if call.args:
        raise ValueError(f"estimator spec {spec!r}: parameters must be given as key=value")
    params = {}
    for kw in call.keywords:
        try:
            params[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            if isinstance(kw.value, ast.Name):
                params[kw.arg] = kw.value.id
            else:
                raise ValueError(f"estimator spec {spec!r}: {kw.arg}= is not a literal") from None
    return name, params


def get_estimator(name: str, **params) -> Estimator:
    """An estimator instance by registry name (or spec, :func:`parse_spec`), with
    constructor parameters."""
    _load_plugins()
    name, spec_params = parse_spec(name)
    params = {**spec_params, **params}
    if name not in _REGISTRY:
        hint = ""
        if not plugin_modules():
            hint = (
                f" (no package declares the {ENTRY_POINT_GROUP!r} entry point: install the "
                "project, e.g. `pip install -e .`, so the built-in estimators register)"
            )
        raise KeyError(
            f"unknown estimator {name!r}; known estimators: "
            f"{', '.join(sorted(_REGISTRY)) or 'none'}{hint}"
        )
    return _REGISTRY[name](**params)
