"""Lazy model registry: names map to ``"module:attr"`` strings, imported only when used.

Model families are packages with a ``MODELS`` dict in their ``__init__`` (which must stay
light: no torch/transformers/recbole import). Every subpackage of a package named in the
``bench.model_packages`` entry-point group is one (this distribution names ``baselines``, so
a new ``baselines/<family>/`` is found without editing anything here); the harness itself
imports no model package by name. Third-party packages add models through the
``bench.models`` entry-point group (one model each), ``bench.model_packages`` (a package of
families), or at run time with ``register()``; their configs through ``bench.conf``
(``hydra_plugins/bench_searchpath``).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from bench.errors import ConfigError, did_you_mean, unknown

_EXTRA: dict[str, str] = {}


def model_packages() -> list[str]:
    """The family packages: subpackages (sorted) of each ``bench.model_packages`` entry point
    whose ``__init__`` has a ``MODELS`` dict, and the entry-point package itself if it has
    one."""
    out: list[str] = []
    for ep in sorted(entry_points(group="bench.model_packages"), key=lambda e: e.name):
        root = importlib.import_module(ep.value)
        if isinstance(getattr(root, "MODELS", None), dict):
            out.append(ep.value)
        for info in sorted(pkgutil.iter_modules(getattr(root, "__path__", [])),
                           key=lambda i: i.name):
            if info.ispkg and not info.name.startswith("_"):
                name = f"{ep.value}.{info.name}"
                if isinstance(getattr(importlib.import_module(name), "MODELS", None), dict):
                    out.append(name)
    return out


@cache
def _builtin() -> dict[str, str]:
    table: dict[str, str] = {}
    for pkg in model_packages():
        for name, target in importlib.import_module(pkg).MODELS.items():
            if name in table:
                raise ConfigError(
                    f"model name '{name}' is registered twice ({table[name]}, {target})"
                )
            table[name] = target
    for ep in entry_points(group="bench.models"):
        if ep.name in table:
            raise ConfigError(
                f"model name '{ep.name}' is registered twice ({table[ep.name]}, {ep.value})"
            )
        table[ep.name] = ep.value
    return table


def names() -> list[str]:
    """Every registered model name, sorted."""
    return sorted({**_builtin(), **_EXTRA})


def register(name: str, target: str | type) -> None:
    """Register a model class (or a ``"module:attr"`` string) under ``name``; duplicates fail."""
    if name in _builtin() or name in _EXTRA:
        raise ConfigError(f"model name '{name}' is already registered")
    if isinstance(target, type):
        target = f"{target.__module__}:{target.__qualname__}"
    _EXTRA[name] = target


def get(name: str) -> Any:
    """The model class registered as ``name``; unknown names list the options."""
    table = {**_builtin(), **_EXTRA}
    if name not in table:
        raise unknown("model", name, table)
    entry = table[name]
    module, _, attr = entry.partition(":")
    where = f"model '{name}' (registry entry '{entry}')"
    try:
        obj: Any = importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing = e.name or module
        if module == missing or module.startswith(f"{missing}."):
            raise ConfigError(
                f"{where}: module '{module}' cannot be imported (no module named '{missing}'); "
                f"put it under baselines/ or make it importable (pip install -e its package, "
                f"or add its folder to PYTHONPATH)"
            ) from e
        raise ConfigError(
            f"{where}: importing '{module}' needs the module '{missing}', which is not "
            f"installed; install the package that provides it (e.g. pip install {missing})"
        ) from e
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            owner = ".".join([module, *attr.split(".")[:i]])
            public = [n for n in dir(obj) if not n.startswith("_")]
            raise ConfigError(
                f"{where}: '{owner}' has no attribute '{part}'{did_you_mean(part, public)}; "
                f"fix the class name after ':' in the entry"
            )
        obj = getattr(obj, part)
    return obj


def build(name: str, params: dict[str, Any] | None = None) -> Any:
    """Instantiate model ``name`` with validated ``params``."""
    cls = get(name)
    return cls.from_params(params or {}, where=name)
