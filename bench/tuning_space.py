"""Search spaces of ``bench tune``: ``conf/search/<model>.yaml``, checked before any trial.

A file holds ``source:`` (where the ranges come from: papers, peers' published spaces) and
``params:``, a mapping of parameter name to one of::

    {type: float, low: 1.0, high: 10000.0, log: true}    # low < high; log needs low > 0
    {type: int, low: 5, high: 1000, log: true, step: 1}  # integer bounds
    {type: categorical, choices: [cosine, jaccard]}      # a non-empty list of scalars

``params: {}`` declares a model without hyper-parameters. Each parameter is checked against the
model itself (``registry.build`` with the bounds and every choice, so an unknown name, a value of
the wrong type or one the model refuses fails here) and against the type of the model's
configured value. Every problem is one ``ConfigError`` line naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import ConfigError, did_you_mean

TYPES = ("float", "int", "categorical")
KEYS = {"float": {"type", "low", "high", "log", "step"},
        "int": {"type", "low", "high", "log", "step"},
        "categorical": {"type", "choices"}}
TOP_KEYS = ("source", "params")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def values(self) -> list[Any]:
        """The values checked against the model: both bounds, or every choice."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]

    def suggest(self, trial: Any) -> Any:
        """This parameter's value for an Optuna trial."""
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log,
                                       step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log,
                                     step=self.step or 1)
        return trial.suggest_categorical(self.name, list(self.choices))


@dataclass(frozen=True)
class SearchSpace:
    model: str
    path: Path
    source: str
    params: tuple[Param, ...]

    @property
    def sha256(self) -> str:
        """Hash of the parameters (not the prose): a changed range is a new study."""
        body = [dataclasses.asdict(p) for p in self.params]
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()

    def suggest(self, trial: Any) -> dict[str, Any]:
        return {p.name: p.suggest(trial) for p in self.params}


def space_file(model: str, search_dir: Path | None) -> tuple[Path, list[Path]]:
    """(the space file of ``model``, the folders looked in): ``search_dir``, else
    ``search/`` of the harness's conf/ and of the packages' ``bench.conf`` folders."""
    from bench.confpaths import conf_dirs, find

    if search_dir:
        return Path(search_dir) / f"{model}.yaml", [Path(search_dir)]
    folders = [d / "search" for d in conf_dirs()]
    return find(f"search/{model}.yaml") or folders[0] / f"{model}.yaml", folders


def load_space(model: str, model_name: str, base_params: Mapping[str, Any],
               search_dir: Path | None = None) -> SearchSpace:
    """The checked search space of ``model`` (its conf/model option) whose registry name is
    ``model_name`` and whose configured params are ``base_params``."""
    path, folders = space_file(model, search_dir)
    if not path.is_file():
        have = sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})
        raise ConfigError(
            f"model '{model}' has no search space: {path} does not exist; add one (docs/"
            f"tuning.md){did_you_mean(model, have)}; spaces exist for: {', '.join(have) or 'none'}"
        )
    raw = _read(path)
    params = tuple(_param(path, str(k), v) for k, v in raw["params"].items())
    space = SearchSpace(model, path, str(raw["source"]).strip(), params)
    for p in params:
        check_against_model(space, p, model_name, base_params)
    return space


def _read(path: Path) -> dict[str, Any]:
    from bench.files import read_yaml

    raw = read_yaml(path, f"{path}:")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping with keys source and params")
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(f"{path}: unknown key '{key}'{did_you_mean(str(key), TOP_KEYS)}; "
                              f"a search space has: {', '.join(TOP_KEYS)}")
    if not isinstance(raw.get("source"), str) or not raw["source"].strip():
        raise ConfigError(f"{path}: source must say where the ranges come from (a paper, a "
                          "peer's published space)")
    if not isinstance(raw.get("params"), dict):
        raise ConfigError(f"{path}: params must be a mapping of parameter -> range "
                          "({} for a model without hyper-parameters)")
    return raw


def _number(path: Path, where: str, value: Any, integer: bool) -> float | int:
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or (not integer and not math.isfinite(value)):
        kind = "an integer" if integer else "a finite number"
        raise ConfigError(f"{path}: {where} must be {kind}, got {value!r}")
    return value


def _param(path: Path, name: str, spec: Any) -> Param:
    where = f"params.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: {where} must be a mapping such as {{type: float, low: 0.1, "
                          f"high: 1.0}}, got {spec!r}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise ConfigError(f"{path}: {where}.type must be one of {', '.join(TYPES)}, got "
                          f"{kind!r}{did_you_mean(str(kind), TYPES)}")
    for key in spec:
        if key not in KEYS[kind]:
            raise ConfigError(f"{path}: {where}: unknown key '{key}' for type {kind}"
                              f"{did_you_mean(str(key), KEYS[kind])}; it has: "
                              f"{', '.join(sorted(KEYS[kind]))}")
    if kind == "categorical":
        return _categorical(path, where, name, spec.get("choices"))
    return _range(path, where, name, kind, spec)


def _categorical(path: Path, where: str, name: str, choices: Any) -> Param:
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"{path}: {where}.choices must be a non-empty list, got {choices!r}")
    for c in choices:
        if c is not None and not isinstance(c, str | int | float | bool):
            raise ConfigError(f"{path}: {where}.choices holds {c!r}; choices are scalars")
    if len(set(map(repr, choices))) != len(choices):
        raise ConfigError(f"{path}: {where}.choices repeats a value: {choices!r}")
    return Param(name, "categorical", choices=tuple(choices))


def _range(path: Path, where: str, name: str, kind: str, spec: dict[str, Any]) -> Param:
    integer = kind == "int"
    for key in ("low", "high"):
        if key not in spec:
            raise ConfigError(f"{path}: {where}.{key} is missing (type {kind} needs low and high)")
    low = _number(path, f"{where}.low", spec["low"], integer)
    high = _number(path, f"{where}.high", spec["high"], integer)
    if not low < high:
        raise ConfigError(f"{path}: {where}: empty range, low={low!r} is not below "
                          f"high={high!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{path}: {where}.log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{path}: {where}: log scale needs low > 0, got low={low!r}")
    step = spec.get("step")
    if step is not None:
        step = _number(path, f"{where}.step", step, integer)
        if step <= 0 or (log and step != 1):
            raise ConfigError(f"{path}: {where}.step must be > 0 (and 1 with log), got {step!r}")
    return Param(name, kind, low, high, log, step)


def _expected_type(model_cls: Any, name: str, base_params: Mapping[str, Any]) -> type | None:
    """The Python type the model wants for ``name``: its Config field's, else the type of the
    configured value (RecBole settings pass through untyped)."""
    fields = {f.name: f for f in dataclasses.fields(model_cls.Config)}
    if name in fields:
        t = fields[name].type
        t = t if isinstance(t, type) else {"int": int, "float": float, "bool": bool,
                                           "str": str}.get(str(t))
        if t is not None:
            return t
    value = base_params.get(name)
    return type(value) if isinstance(value, int | float | str | bool) else None


def check_against_model(space: SearchSpace, p: Param, model_name: str,
                        base_params: Mapping[str, Any]) -> None:
    """Build the model with each bound / choice (unknown names and refused values fail) and
    check the values' type against what the model expects."""
    from bench.models import registry

    where = f"{space.path}: params.{p.name}"
    want = _expected_type(registry.get(model_name), p.name, base_params)
    for value in p.values():
        if want is not None and value is not None and not _fits(value, want):
            raise ConfigError(f"{where}: {value!r} is {type(value).__name__}, but model "
                              f"'{model_name}' expects {want.__name__} for '{p.name}'")
        try:
            registry.build(model_name, {**base_params, p.name: value})
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None


def _fits(value: Any, want: type) -> bool:
    if want is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, want)
