"""Helpers for end-to-end tests: the real CLI in a subprocess, a real MLflow store in tmp."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def bench_env(env: dict | None = None, **extra: str) -> dict[str, str]:
    """The environment of a ``python -m bench`` subprocess: this checkout on the path, no
    inherited tracking URI (each test's store is its own), plus ``extra`` and ``env``."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **extra, **(env or {})}
    full.pop("MLFLOW_TRACKING_URI", None)
    return full


def bench(
    *args: str, cwd: Path, timeout: float = 900, env: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run ``python -m bench <args>`` in ``cwd`` (its mlflow.db and data/ live there)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=bench_env(env, BENCH_TRACEBACK="", HYDRA_FULL_ERROR="0"),
    )
    if check and out.returncode != 0:
        raise AssertionError(
            f"bench {' '.join(args)} exited {out.returncode}:\n{out.stderr[-4000:]}"
        )
    return out


def spawn(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """``python -m bench <args>`` started in its own session (so a test can signal or kill
    the whole process group), stdout and stderr piped as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd,
        env=bench_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_until(pred, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Poll ``pred`` until it holds (True) or ``timeout`` seconds pass or ``proc`` exits
    (then ``pred``'s last answer)."""
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        if proc is not None and proc.poll() is not None:
            return pred()
        time.sleep(0.05)
    return False


def store(cwd: Path):
    from bench import tracking

    return tracking.Store(f"sqlite:///{cwd}/mlflow.db")


def fixture_store(root: Path, experiments: tuple[str, ...]):
    """A fresh sqlite MLflow store under ``root`` for hand-logged runs: (uri, client, a staging
    folder for artifacts, experiment name -> id)."""
    import mlflow

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(uri)
    art = (root / "artifacts").as_uri()
    staging = root / "staging"
    staging.mkdir()
    exps = {n: client.create_experiment(n, artifact_location=f"{art}/{n}") for n in experiments}
    return uri, client, staging, exps


def runs(cwd: Path, status: str | None = None) -> list:
    rs = [r for r in store(cwd).search("") if r.data.tags.get("bench.sweep") != "parent"]
    return [r for r in rs if status is None or r.info.status == status]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
