"""Hydra and OmegaConf errors as one-line ``ConfigError`` messages (exit code 2).

Hydra reports a bad override as a multi-line block with exit code 1; ``explain`` turns what
it raises while composing (a missing group option, override grammar, an unknown key, a value
of the wrong type, a missing value, an interpolation) into the line the harness prints, with a
did-you-mean where a name was misspelled. A value of the wrong type reads like the same value
out of range: the schema's ``check_field`` words both.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Sequence
from typing import Any

from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from bench.config.schema import GLOBAL_GROUPS, Config, Group
from bench.errors import BenchError, ConfigError, did_you_mean, unknown

GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def explain(error: BaseException, overrides: Sequence[str] = ()) -> BenchError:
    """The one-line error for ``error``, raised while composing with ``overrides`` (the
    command line's, which the message quotes). BenchErrors pass through unchanged."""
    if isinstance(error, BenchError):
        return error
    chain = _chain(error)
    for cause in chain:
        for kind, handler in _HANDLERS:
            if isinstance(cause, kind):
                message = handler(cause, chain, overrides)
                if message:
                    return ConfigError(message)
    return ConfigError(f"config: {_lines(error)}")


def names_override(error: BaseException) -> bool:
    """True when ``explain``'s message quotes the override at fault (``in override '...'``)."""
    return "override '" in str(error)


# ------------------------------------------------------------------------------------ handlers


def _missing_option(e: MissingConfigException, chain: list, overrides: Sequence[str]) -> str:
    """``model=sasrecc``, ``model=``: a config group option that does not exist."""
    group, _, name = str(e.missing_cfg_file or "").rpartition("/")
    if not group:
        return ""
    options = sorted(e.options or group_options(group))
    arg = _override_for(group, overrides)
    if arg is None:
        where = re.match(r"In '([^']+)'", str(e))
        return str(unknown(group, name, options, where=f"config '{where.group(1)}'" if where
                           else ""))
    if not name:
        return _names_none(arg, group, options)
    return str(unknown(group, name, options, where=f"override '{arg}'"))


def _parse_error(e: OverrideParseException, chain: list, overrides: Sequence[str]) -> str:
    """Override grammar: ``model=pop,`` (an empty sweep item), ``seed=[1``."""
    arg = str(e.override)
    key, _, value = arg.partition("=")
    group = key.lstrip("+~")
    options = sorted(group_options(group))
    if options and "" in [v.strip() for v in value.split(",")]:
        return _names_none(arg, group, options)
    reason = (str(e.message).splitlines() or ["?"])[0]
    return f"override '{arg}' is not valid override syntax ({reason}); see {GRAMMAR}"


def _unknown_key(e: OmegaConfBaseException, chain: list, overrides: Sequence[str]) -> str:
    """``modle=ease``, ``eval.kss=[10]``: a key the config does not have; or a key under one
    that is null (``metrics.item_embeddings.encoder=x``)."""
    path = str(e.full_key or "")
    if not path:
        return ""
    parent, _, key = path.rpartition(".")
    arg = _override_for(_quoted_key(chain) or path, overrides)
    where = f"override '{arg}'" if arg else _source(chain)
    node = e.parent_node
    keys = sorted(str(k) for k in (node.keys() if node is not None and not node._is_none()
                                   else []))
    if parent and not keys and _null_by_default(parent):
        # OmegaConf replaced the null by {} before it failed to add the key
        return (f"{where}: {parent} is null in the chosen config, so it has no keys to set; "
                f"set it whole, e.g. {parent}={{key: value, ...}}")
    add = f" (to add a new key, write +{arg})" if arg else ""
    if not parent:
        keys = sorted({*keys, "hydra", *GLOBAL_GROUPS})
        hint = did_you_mean(key, keys) or add
        return f"unknown config key '{key}' in {where}{hint}; top-level keys: {', '.join(keys)}"
    return (f"unknown config key '{path}' in {where}{did_you_mean(key, keys)}; {parent} has: "
            f"{', '.join(keys) or 'no keys'}{add}")


def _bad_value(e: ValidationError, chain: list, overrides: Sequence[str]) -> str:
    """``seed=abc``, ``eval.ks=[10,abc]``: a value OmegaConf cannot convert to the schema's
    type. The schema words it as it words a value out of range, plus where it came from."""
    path = re.sub(r"(\[\d+\])+$", "", str(e.full_key or ""))
    if not path:
        return ""
    value = _override_value(path, overrides, default=e.value)
    got = f"got {value!r}"
    schema, name = _field_of(path, e)
    message = f"{path} must be {_kind(schema, name)}, {got}" if _kind(schema, name) else ""
    if schema is not None and issubclass(schema, Group):
        try:
            schema.check_field(name, value)
        except ConfigError as err:
            message = str(err)
    if got not in message:
        return f"{path}: {_lines(e)} (in {_source(chain, overrides, path)})"
    return message.replace(got, f"{got} in {_source(chain, overrides, path)}", 1)


def _missing_value(e: MissingMandatoryValue, chain: list, overrides: Sequence[str]) -> str:
    path = str(e.full_key or "")
    return f"{path} has no value (??? in the chosen config); set it, e.g. {path}=<value>"


def _other(e: OmegaConfBaseException, chain: list, overrides: Sequence[str]) -> str:
    """Anything else OmegaConf refuses, e.g. ``~dataset.manifest`` (a schema's key cannot be
    deleted): the override and OmegaConf's reason."""
    key = _quoted_key(chain)
    arg = _override_for(key, overrides) if key else None
    reason = (str(e).splitlines() or [type(e).__name__])[0]
    return f"override '{arg}': {reason}" if arg else ""


_HANDLERS: tuple[tuple[type, Any], ...] = (
    (MissingConfigException, _missing_option),
    (OverrideParseException, _parse_error),
    (ConfigAttributeError, _unknown_key),
    (ConfigKeyError, _unknown_key),
    (ValidationError, _bad_value),
    (MissingMandatoryValue, _missing_value),
    (OmegaConfBaseException, _other),
)


# ------------------------------------------------------------------------------------- helpers


def _chain(error: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    e: BaseException | None = error
    while e is not None and e not in out:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _lines(error: BaseException) -> str:
    """The message on one line ('; ' between its lines), without Hydra's search-path dump."""
    text = str(error).split("\nConfig search path:")[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _override_for(key: str, overrides: Sequence[str]) -> str | None:
    """The last override of ``key`` on the command line."""
    found = [o for o in overrides if not o.startswith("-") and _key(o) == key]
    return found[-1] if found else None


def _quoted_key(chain: list) -> str | None:
    """The key in Hydra's "Could not override 'eval.kss'." or "Error merging override x=1"."""
    for e in chain:
        m = re.match(r"Could not override '([^']+)'|Error merging override ([^=\s]+)", str(e))
        if m:
            return m.group(1) or m.group(2).lstrip("+~")
    return None


def _source(chain: list, overrides: Sequence[str] = (), path: str = "") -> str:
    """Where a value came from: its override, else the config file Hydra names."""
    arg = _override_for(_quoted_key(chain) or path, overrides)
    if arg:
        return f"override '{arg}'"
    for e in chain:
        m = re.search(r"(?:In|merging) '([^']+)'", str(e))
        if m:
            return f"config '{m.group(1)}'"
    return "the chosen config"


def _override_value(path: str, overrides: Sequence[str], default: Any) -> Any:
    """The value an override gives ``path``, parsed as Hydra parses it; else ``default``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    arg = _override_for(path, overrides)
    if arg is None:
        return default
    try:
        value = OverridesParser.create().parse_override(arg).value()
    except Exception:  # noqa: BLE001 - the value as OmegaConf saw it will do
        return default
    return default if hasattr(value, "list") or hasattr(value, "start") else value


def _field_of(path: str, e: ValidationError) -> tuple[type | None, str]:
    """The schema dataclass holding ``path``'s last key, and that key."""
    *parents, name = path.split(".")
    owner: Any = e.object_type
    if isinstance(owner, type) and dataclasses.is_dataclass(owner) and name in {
            f.name for f in dataclasses.fields(owner)}:
        return owner, name
    schema: Any = Config
    for part in parents:
        hints = typing.get_type_hints(schema) if dataclasses.is_dataclass(schema) else {}
        schema = hints.get(part)
    found = schema if isinstance(schema, type) and dataclasses.is_dataclass(schema) else None
    return found, name


def _null_by_default(path: str) -> bool:
    """Whether the schema's default at ``path`` is null (``metrics.item_embeddings``)."""
    *parents, name = path.split(".")
    schema: Any = Config
    for part in parents:
        schema = typing.get_type_hints(schema).get(part) if dataclasses.is_dataclass(schema) \
            else None
    fields = {f.name: f for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(
        schema) else {}
    return name in fields and fields[name].default is None


def _kind(schema: type | None, name: str) -> str:
    """``an integer``, ``a number or null``, ... for the type of a schema field."""
    if schema is None:
        return ""
    hint = typing.get_type_hints(schema).get(name)
    args = set(typing.get_args(hint)) or {hint}
    origin = typing.get_origin(hint)
    nullable = type(None) in args
    args.discard(type(None))
    if origin in (list, dict):
        words = {list: "a list", dict: "a mapping"}[origin]
    elif args <= {int, float} and float in args:
        words = "a number"
    else:
        words = " or ".join(_WORDS.get(a, "") for a in sorted(args, key=str)) if all(
            a in _WORDS for a in args) else ""
    return f"{words} or null" if words and nullable else words


_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _names_none(arg: str, group: str, options: list[str]) -> str:
    return (f"override '{arg}' names no {group}; choose one of: {', '.join(options)} "
            f"(e.g. {group}={options[0] if options else '<option>'}; a sweep lists several: "
            f"{group}=a,b)")


def group_options(group: str) -> list[str]:
    """The options of a config group as Hydra sees them (conf/, packages' ``bench.conf``
    folders, the ConfigStore); [] outside a Hydra context or for a key that is no group."""
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra.instance().is_initialized():
        return []
    try:
        return list(GlobalHydra.instance().config_loader().get_group_options(group))
    except Exception:  # noqa: BLE001 - not a group
        return []
