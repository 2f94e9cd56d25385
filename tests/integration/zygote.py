"""A process that has imported ``bench`` and MLflow once and forks one child per ``bench``
command a test starts.

Each child is a real, separate OS process: its own session (``setsid``), working directory,
environment, ``sys.path`` (working directory, then ``PYTHONPATH``), umask, stdin
(``/dev/null``), stdout and stderr (files), store connections and signal handlers. It runs
``bench.cli.main(argv)`` as ``python -m bench`` does and leaves through the interpreter's normal
exit (threading's exit hooks, atexit handlers, finalization). What it does not repeat is the
interpreter start, the imports and the loading of the compiled metric kernels (about 4 s of CPU
per ``bench run``); one test per command still starts a new interpreter (``fresh=True``), as do
the launchers' own jobs.

Protocol (one JSON line per request on stdin, one line back on stdout)::

    {"argv": [...], "cwd": "...", "env": {...}, "umask": 18, "out": "...", "err": "...",
     "rc": "..."}
    -> "<pid>\\n"

With ``"code": "..."`` the child runs that code as ``python -c code *argv`` would (``__main__``,
``sys.argv == ["-c", *argv]``) instead of ``bench``.

The zygote reaps its children and writes each one's return code (``Popen``'s convention: the
exit code, or ``-signal``) to the ``rc`` file. It starts no thread of its own. Before forking
it only imports, and evaluates two tiny lists with numpy, scipy and numba's single-threaded
kernels (``_warm_metric_kernels``); the only other threads are the idle ones polars, jemalloc
and OpenBLAS start at import (polars builds its worker pool on first use, in the child).
"""

from __future__ import annotations

import json
import os
import signal
import sys

PRELOAD = (
    "bench.cli",
    "bench.app",
    "bench.runner",
    "bench.tracking",
    "bench.splits",
    "bench.metrics.engine",
    "bench.report.leaderboard",
    "mlflow",
    "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.artifact.local_artifact_repo",
    "bench.data.datasets",
    "bench.data.synthetic",
    "bench.environment",
    "bench.hydra_callbacks",
    "bench.models.registry",
    "baselines.classical.pop",
    "polars",
    "pyarrow.parquet",
    "scipy.linalg",
)
_RC: dict[int, str] = {}
#: the interpreter's own sys.path (stdlib, site-packages), without this script's folder
BASE_PATH = [p for p in sys.path[1:] if p]


def _reap(*_: object) -> None:
    """SIGCHLD: write the return code of every child that ended."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        path = _RC.pop(pid, None)
        if path:
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                f.write(str(code))
            os.replace(tmp, path)


def _child(req: dict) -> None:
    """Become the command's process, run it, and leave the interpreter as ``python -m bench``
    leaves it: ``SystemExit`` unwinds to the top, so threading's exit hooks (loky stops its
    workers there), the atexit handlers and the finalization that closes the SQLite
    connections (and checkpoints their WAL) all run."""
    import traceback

    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the command's own subprocesses
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        os.setsid()
        os.umask(req["umask"])  # what a subprocess inherits from the test
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        # sys.path as ``python -m`` builds it: the working directory, then PYTHONPATH
        extra = [req["cwd"], *filter(None, req["env"].get("PYTHONPATH", "").split(os.pathsep))]
        sys.path[:] = [*extra, *(p for p in BASE_PATH if p not in extra)]
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, req["out"]), (2, req["err"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        if "code" in req:  # python -c
            sys.argv = ["-c", *req["argv"]]
            exec(compile(req["code"], "<string>", "exec"), {"__name__": "__main__"})
            code = 0
        else:
            sys.argv = [sys.argv[0], *req["argv"]]
            from bench.cli import main

            code = main(req["argv"])
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001 - what an interpreter prints for an uncaught error
        traceback.print_exc()
        code = 1
    sys.exit(code)


def _warm_metric_kernels() -> None:
    """Evaluate two tiny lists once, so that numba's compiled metric kernels are loaded (from
    its disk cache, or compiled on a fresh clone) here and not again in every child: about
    0.45 s of CPU of each forked run. Only numpy and scipy run here: no polars, whose thread
    pool would not survive a fork."""
    import numpy as np
    import scipy.sparse as sp

    from bench.metrics.engine import evaluate_arrays

    truth = sp.csr_matrix(np.array([[1.0, 0, 1, 0], [0, 1, 0, 0]]))
    train = sp.csr_matrix(np.array([[0.0, 1, 0, 0], [1, 0, 0, 1]]))
    evaluate_arrays(
        np.array([0, 1]), np.array([[0, 1, 2], [3, 1, -1]]), truth, (1, 2), train=train,
        seen=train, item_genres=[frozenset("a"), frozenset("b"), None, frozenset("ab")],
        user_attrs={"g": np.array(["x", "y"])}, item_embeddings=np.eye(4),
    )  # fmt: skip


def serve() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    _warm_metric_kernels()
    signal.signal(signal.SIGCHLD, _reap)
    os.write(1, b"ready\n")
    for line in sys.stdin:
        req = json.loads(line)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            pid = os.fork()
            if pid == 0:
                _child(req)  # never returns: SystemExit ends the child
            _RC[pid] = req["rc"]
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        os.write(1, f"{pid}\n".encode())


if __name__ == "__main__":
    serve()
