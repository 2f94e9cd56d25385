"""Every workaround RecBole 1.2.1 needs on this stack (numpy 2, torch >= 2.6, pandas 2.x).

Nothing else in the adapter touches numpy aliases, ``sys.argv``, logging or pandas options; each
workaround has a test in ``tests/models/test_recbole_compat.py``.

1. numpy 2 removed ``np.float_``, ``np.complex_``, ``np.unicode_`` (which RecBole's
   ``Config.compatibility_settings`` reads) and ``np.float`` (which its metrics use):
   :func:`patch_numpy` adds the aliases before any ``recbole`` import (:func:`import_recbole`).
2. ``recbole.quick_start`` imports ``ray.tune``, which fails on numpy 2 / setuptools without
   ``pkg_resources``: the adapter uses only ``recbole.config``/``recbole.data``/``recbole.utils``/
   ``recbole.trainer`` and :func:`import_recbole` checks that ``recbole.quick_start`` was not
   imported on the way.
3. ``Trainer.evaluate(load_best_model=True)`` and checkpoint files go through ``torch.load``,
   which fails under torch >= 2.6 (``weights_only``): the adapter never saves checkpoints
   (``saved=False``), keeps the best state dict in memory and calls ``evaluate`` with
   ``load_best_model=False`` (:data:`NO_CHECKPOINT`).
4. pandas 3 breaks RecBole's id remapping of ``token_seq`` columns, and under copy-on-write its
   in-place ``fillna`` calls do nothing: :func:`check_pandas` refuses pandas >= 3 with a one-line
   error and :func:`recbole_session` turns copy-on-write off while RecBole runs (restored after).
5. RecBole logs through the root logger and warns through ``warnings``: :func:`recbole_session`
   drops root-logger records emitted from RecBole's files (everything else passes) and ignores
   warnings raised from its modules.
6. RecBole's ``Config`` parses ``--key=value`` arguments from ``sys.argv`` (the harness's own
   command line would leak into the model): :func:`recbole_session` hides ``sys.argv[1:]``.
7. ``Trainer.__init__`` opens a TensorBoard writer under ``./log_tensorboard`` in the working
   directory: :func:`recbole_session` replaces it with a writer that does nothing.
8. scipy >= 1.15 dropped ``dok_matrix._update``, which the graph models (LightGCN, NGCF, NCL,
   SGL's relatives, SpectralCF, GCMC) call to build their adjacency matrix: :func:`patch_scipy`
   adds it back as an update of the matrix's ``_dict``.
9. RecBole seeds the global RNGs (``init_seed``; its samplers draw from ``np.random``):
   :func:`seeded` seeds them and restores their previous state afterwards, and sets the torch
   thread count for the duration (same seed + same threads -> same scores on CPU).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from bench.errors import ConfigError

#: keyword arguments for ``Trainer.fit`` / ``Trainer.evaluate`` that keep torch.load away
NO_CHECKPOINT: dict[str, Any] = {"saved": False}
NO_BEST_MODEL_LOAD: dict[str, Any] = {"load_best_model": False}

_NUMPY_ALIASES = {
    "float_": "float64",
    "float": "float64",
    "complex_": "complex128",
    "unicode_": "str_",
}


def patch_numpy() -> list[str]:
    """Add the numpy 1.x aliases RecBole uses; returns the names that were added."""
    added = []
    for alias, target in _NUMPY_ALIASES.items():
        if alias not in np.__dict__:
            setattr(np, alias, getattr(np, target))
            added.append(alias)
    return added


def patch_scipy() -> bool:
    """Give ``scipy.sparse.dok_matrix`` the ``_update`` RecBole's graph models call."""
    import scipy.sparse as sp

    if hasattr(sp.dok_matrix, "_update"):
        return False

    def _update(self: sp.dok_matrix, data: dict) -> None:
        self._dict.update(data)

    sp.dok_matrix._update = _update
    return True


def check_pandas(version: str | None = None) -> None:
    """One-line error for pandas >= 3 (RecBole's token_seq remapping breaks there)."""
    if version is None:
        import pandas

        version = pandas.__version__
    major = int(version.split(".")[0])
    if major >= 3:
        raise ConfigError(
            f"RecBole 1.2.1 does not work with pandas {version} (token_seq id remapping fails); "
            "install pandas>=2,<3"
        )


def import_recbole() -> None:
    """Import the parts of RecBole the adapter uses, after the numpy/pandas workarounds."""
    patch_numpy()
    patch_scipy()
    check_pandas()
    import recbole.config  # noqa: F401
    import recbole.data  # noqa: F401
    import recbole.trainer  # noqa: F401
    import recbole.utils  # noqa: F401

    if "recbole.quick_start" in sys.modules:  # pragma: no cover - only if someone else did it
        warnings.warn(
            "recbole.quick_start was imported by another module; it imports ray.tune, "
            "which is broken on numpy 2",
            RuntimeWarning,
            stacklevel=2,
        )


class _FromRecBole(logging.Filter):
    """Drops records logged from RecBole's source files (it logs through the root logger)."""

    def __init__(self) -> None:
        super().__init__()
        import recbole

        self.root = os.path.dirname(os.path.abspath(recbole.__file__))

    def filter(self, record: logging.LogRecord) -> bool:
        return not os.path.abspath(record.pathname).startswith(self.root)


class _NullWriter:
    """Stands in for TensorBoard's SummaryWriter: accepts every call, writes nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


@contextlib.contextmanager
def recbole_session() -> Iterator[None]:
    """While RecBole runs: quiet logs/warnings, no sys.argv, no CoW, no TensorBoard files, and
    the user's ``CUDA_VISIBLE_DEVICES`` restored (RecBole's ``Config`` overwrites it with its
    ``gpu_id``)."""
    import pandas as pd
    import recbole.trainer.trainer as rb_trainer

    import_recbole()
    root = logging.getLogger()
    filt = _FromRecBole()
    root.addFilter(filt)
    for handler in root.handlers:
        handler.addFilter(filt)
    argv, sys.argv = sys.argv, sys.argv[:1]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    cow = pd.get_option("mode.copy_on_write")
    pd.set_option("mode.copy_on_write", False)
    board = rb_trainer.get_tensorboard
    rb_trainer.get_tensorboard = lambda logger: _NullWriter()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"recbole(\.|$)")
            warnings.filterwarnings("ignore", module=r"torch\.utils\.tensorboard")
            yield
    finally:
        rb_trainer.get_tensorboard = board
        pd.set_option("mode.copy_on_write", cow)
        sys.argv = argv
        if visible is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible
        root.removeFilter(filt)
        for handler in root.handlers:
            handler.removeFilter(filt)


@contextlib.contextmanager
def seeded(seed: int, threads: int) -> Iterator[None]:
    """RecBole's ``init_seed(seed, reproducibility=True)`` and a fixed torch thread count.

    The global RNG states (random, numpy, torch) and the thread count are restored on exit, so
    the rest of the harness is unaffected by RecBole's need for global seeding.
    """
    import torch
    from recbole.utils import init_seed

    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    n_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    init_seed(seed, reproducibility=True)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        torch.set_num_threads(n_threads)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """The torch thread count for the duration (scoring), restored on exit."""
    import torch

    n_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(n_threads)
