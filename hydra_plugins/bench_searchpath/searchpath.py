"""The ``bench.conf`` search-path plugin (see the package docstring)."""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class BenchConfSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        import bench.config  # noqa: F401 - registers the schemas conf/ extends (base_config, ...)
        from bench.confpaths import extra_conf_dirs

        for i, path in enumerate(extra_conf_dirs()):
            search_path.append(provider=f"bench.conf.{i}", path=f"file://{path}")
