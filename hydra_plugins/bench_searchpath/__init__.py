"""Hydra discovers this plugin (namespace package ``hydra_plugins``): it adds the config
folders that installed packages declare in the ``bench.conf`` entry-point group, so a model
from another package brings its own ``model/<name>.yaml`` (no ``hydra.searchpath`` override).

In the package's ``pyproject.toml``::

    [project.entry-points."bench.conf"]
    mypkg = "mypkg:conf"          # the folder conf/ inside the importable package mypkg
"""
