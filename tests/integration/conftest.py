"""Helpers for end-to-end tests: the real CLI in a subprocess, a real MLflow store in tmp."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def bench(
    *args: str, cwd: Path, timeout: float = 900, env: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run ``python -m bench <args>`` in ``cwd`` (its mlflow.db and data/ live there)."""
    full_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "BENCH_TRACEBACK": "",
        "HYDRA_FULL_ERROR": "0",
        **(env or {}),
    }
    full_env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    if check and out.returncode != 0:
        raise AssertionError(
            f"bench {' '.join(args)} exited {out.returncode}:\n{out.stderr[-4000:]}"
        )
    return out


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
