"""Composition with Hydra's compose API, and what ``bench run`` and ``bench tune`` check with it
before anything runs: the config of a run, or of every job of a sweep, composes (Hydra refuses
unknown keys, groups and mistyped values against the schema) and passes ``validate``. A bad
value in any job of a sweep is then one line and exit 2, with no sweep folder and no run.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bench.config.errors import explain, names_override
from bench.config.schema import CHECKED, Config
from bench.confpaths import CONF_DIR
from bench.errors import BenchError, ConfigError

#: Hydra flags that choose another primary config: its keys and groups are its own, and Hydra
#: reports what is wrong with it
OTHER_PRIMARY = ("-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir")
#: Hydra flags that compose nothing to run (help, shell completion, --info)
NO_RUN = ("-h", "--help", "--hydra-help", "-i", "--info", "-sc", "--shell-completion")
#: Hydra flags followed by a value
WITH_VALUE = (*OTHER_PRIMARY, "-c", "--cfg", "-p", "--package", "-sc", "--shell-completion",
              "--experimental-rerun")
MODEL_PARAM = re.compile(r"\+{0,2}model\.params\.[\w\-]+=.*", re.S)


def force_model_params(argv: Sequence[str]) -> list[str]:
    """``model.params.<key>=<value>`` as ``++model.params.<key>=<value>``: a model's YAML need
    not list every parameter it accepts (``params`` is an open mapping; the model's own Config
    validates it), and a sweep over models composes its base config with the default model."""
    return [f"++{a.lstrip('+')}" if MODEL_PARAM.fullmatch(a) else a for a in argv]


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(Hydra's flags with their values, the overrides)."""
    flags: list[str] = []
    overrides: list[str] = []
    it = iter(argv)
    for arg in it:
        if not arg.startswith("-"):
            overrides.append(arg)
            continue
        flags.append(arg)
        if arg in WITH_VALUE:
            flags.append(next(it, ""))
    return flags, overrides


@contextlib.contextmanager
def hydra_context() -> Iterator[None]:
    """Hydra initialized on the harness's conf/ (and the ``bench.conf`` folders)."""
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def compose(overrides: Sequence[str], *, hydra: bool = False,
            quoted: Sequence[str] | None = None) -> DictConfig:
    """The primary config composed with ``overrides`` (inside ``hydra_context``); Hydra's and
    OmegaConf's errors as one-line ConfigErrors quoting ``quoted`` (default: ``overrides``)."""
    try:
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=hydra)
    except Exception as e:  # noqa: BLE001 - every composition error becomes one line
        raise explain(e, overrides if quoted is None else quoted) from None


def resolved(overrides: Sequence[str], root: str) -> dict[str, Any]:
    """The job config of ``overrides`` resolved to plain values, ``paths.root`` = ``root``
    (no Hydra run: ``${hydra:runtime.cwd}`` has no value)."""
    with hydra_context():
        cfg = compose([*overrides, f"paths.root={root}"], quoted=overrides)
        try:
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
        except Exception as e:  # noqa: BLE001
            raise explain(e, overrides) from None


def validate(cfg: Mapping[str, Any] | DictConfig) -> None:
    """``Config.check`` (the schema's range checks) on a composed or resolved config."""
    Config.check(checked_values(cfg))


def checked_values(cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """The values ``Config.check`` reads, resolved (only these: ``paths`` needs Hydra's
    runtime)."""
    values: dict[str, Any] = {}
    try:
        for key in ("seed", *CHECKED):
            node = cfg.get(key)
            values[key] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(
                node) else node
    except Exception as e:  # noqa: BLE001 - interpolations that do not resolve
        raise explain(e) from None
    return values


def check_model(cfg: Mapping[str, Any] | DictConfig) -> None:
    """The chosen model's parameters, validated by its own Config (one line for an unknown or
    mistyped parameter); builds the model without fitting it."""
    from bench.models import registry

    params = cfg["model"].get("params") or {}
    if OmegaConf.is_config(params):
        params = OmegaConf.to_container(params, resolve=True)
    registry.build(str(cfg["model"]["name"]), dict(params))


def sets_model_params(overrides: Sequence[str]) -> bool:
    """Whether the command line sets ``model.params`` (then ``check_model`` checks them before
    anything runs, for every chosen model)."""
    return any(MODEL_PARAM.fullmatch(o) for o in overrides)


# -------------------------------------------------------------------------------------- bench run


def check_run(argv: Sequence[str]) -> list[str]:
    """What ``bench run`` checks before Hydra starts: the run's config, or every job of a sweep
    (``-m``, or a config whose ``hydra.mode`` is MULTIRUN), composes and validates; with
    ``model.params`` on the command line, each chosen model validates them. Returns ``argv`` with
    the ``model.params`` overrides forced (``force_model_params``).

    With another primary config (``-cn``/``-cp``/``-cd``) or a sweeper other than Hydra's
    basic one, Hydra reports what it cannot compose itself."""
    argv = force_model_params(argv)
    flags, overrides = split_argv(argv)
    if {f.split("=")[0] for f in flags} & {*NO_RUN, *OTHER_PRIMARY}:
        return argv
    params = sets_model_params(overrides)
    with hydra_context():
        parsed = _parse(overrides)
        base = [str(o.input_line) for o in parsed if not o.is_sweep_override()]
        hcfg = compose(base, hydra=True, quoted=overrides)
        multirun = bool({"-m", "--multirun"} & set(flags)) or hcfg.hydra.mode == RunMode.MULTIRUN
        if not multirun:
            cfg = compose(overrides) if len(base) < len(parsed) else hcfg  # "ambiguous value"
            validate(cfg)
            if params:
                check_model(cfg)
        elif str(hcfg.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
            sweep = [f"{k}={v}" for k, v in (hcfg.hydra.sweeper.params or {}).items()]
            check_sweep(sweep_jobs(_parse([*sweep, *overrides])), overrides, params)
    return argv


def _parse(overrides: Sequence[str]) -> list[Override]:
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except Exception as e:  # noqa: BLE001 - grammar errors
        raise explain(e, overrides) from None


def sweep_jobs(overrides: Sequence[Override]) -> list[list[str]]:
    """The jobs of a sweep as Hydra's basic sweeper makes them, in its order: the product of
    each key's values, a key's last override winning at its first place (sweeper params
    first, then the command line)."""
    by_key: dict[str, list[str]] = {}
    for o in overrides:
        key = o.get_key_element()
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise ConfigError(f"override '{o.input_line}': the basic sweeper sweeps lists "
                                  f"and choice()/range() only")
            by_key[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            by_key[key] = [f"{key}={o.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*by_key.values())]


def check_sweep(jobs: list[list[str]], overrides: Sequence[str], params: bool) -> None:
    """Compose and validate every job; jobs that differ only in ``seed`` share one
    composition (a 4 models x 25 seeds sweep composes 4 times). An error names its job."""
    composed: dict[tuple[str, ...], dict[str, Any]] = {}
    for num, job in enumerate(jobs):
        shared = tuple(o for o in job if _key(o) != "seed")
        try:
            if shared not in composed:
                cfg = compose(shared, quoted=overrides)
                composed[shared] = checked_values(cfg)
                if params:
                    check_model(cfg)
            seeds = [o for o in job if _key(o) == "seed"]
            seed = _parse(seeds[-1:])[0].value() if seeds else composed[shared]["seed"]
            Config.check({**composed[shared], "seed": seed})
        except BenchError as e:
            if names_override(e):
                raise
            own = [o for o in job if not _key(o).startswith("hydra")]
            raise ConfigError(f"{e}; sweep job #{num}: {' '.join(own)}") from None


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")
