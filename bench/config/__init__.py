"""The config: Hydra structured-config schemas (``schema``), the one place that turns Hydra's
and OmegaConf's errors into one-line messages (``errors``), and composition with the checks
``bench run`` and ``bench tune`` make before anything runs (``compose``).

Importing this package registers the schemas in Hydra's ConfigStore; so does the search-path
plugin (``hydra_plugins/bench_searchpath``), for code that composes ``conf/`` on its own.
"""

from __future__ import annotations

from bench.config.composition import (
    check_model,
    check_run,
    compose,
    force_model_params,
    hydra_context,
    resolved,
    sets_model_params,
    sweep_jobs,
    validate,
)
from bench.config.errors import explain
from bench.config.schema import CHECKED, GLOBAL_GROUPS, Config, Group, register

register()

__all__ = [
    "CHECKED",
    "GLOBAL_GROUPS",
    "Config",
    "Group",
    "check_model",
    "check_run",
    "compose",
    "explain",
    "force_model_params",
    "hydra_context",
    "register",
    "resolved",
    "sets_model_params",
    "sweep_jobs",
    "validate",
]
