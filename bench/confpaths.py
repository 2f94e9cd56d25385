"""Where configs live: the harness's ``conf/`` and the folders installed packages declare in
the ``bench.conf`` entry-point group (``package:folder``, the folder relative to the
package's directory). Hydra gets the extra folders through the search-path plugin in
``hydra_plugins/bench_searchpath``; the CLI's own checks read the same list."""

from __future__ import annotations

import functools
import importlib.util
from importlib.metadata import entry_points
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@functools.cache
def extra_conf_dirs() -> tuple[Path, ...]:
    """The ``bench.conf`` folders, in entry-point name order (packages that cannot be found
    are skipped: the model lookup names them)."""
    out = []
    for ep in sorted(entry_points(group="bench.conf"), key=lambda e: e.name):
        package, _, folder = ep.value.partition(":")
        spec = importlib.util.find_spec(package.strip())
        if spec is None or not spec.submodule_search_locations:
            continue
        base = Path(next(iter(spec.submodule_search_locations)))
        out.append(base / folder.strip() if folder.strip() else base)
    return tuple(out)


def conf_dirs() -> tuple[Path, ...]:
    """The harness's conf/ first, then the ``bench.conf`` folders."""
    return (CONF_DIR, *extra_conf_dirs())


def find(rel: str) -> Path | None:
    """The first config file ``rel`` (``model/pop.yaml``) in ``conf_dirs()``."""
    for d in conf_dirs():
        if (d / rel).is_file():
            return d / rel
    return None
