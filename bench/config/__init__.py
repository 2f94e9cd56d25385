"""The config: Hydra structured-config schemas (``schema``).

Importing this package registers the schemas in Hydra's ConfigStore; so does the search-path
plugin (``hydra_plugins/bench_searchpath``), for code that composes ``conf/`` on its own.
"""

from __future__ import annotations

from bench.config.schema import CHECKED, GLOBAL_GROUPS, Config, Group, register

register()

__all__ = ["CHECKED", "GLOBAL_GROUPS", "Config", "Group", "register"]
