"""Lazy model registry: names map to ``"module:attr"`` strings, imported only when used.

Built-in models come from the ``MODELS`` dict of each package in ``MODEL_PACKAGES`` (their
``__init__`` must stay light: no torch/transformers/recbole import). Third-party packages add
models through the ``bench.models`` entry-point group, or at run time with ``register()``.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from bench.errors import ConfigError, did_you_mean, unknown

MODEL_PACKAGES = ("baselines.classical", "baselines.recbole", "baselines.llm")
_EXTRA: dict[str, str] = {}


@cache
def _builtin() -> dict[str, str]:
    table: dict[str, str] = {}
    for pkg in MODEL_PACKAGES:
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
