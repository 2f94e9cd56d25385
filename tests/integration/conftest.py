"""Helpers for end-to-end tests: the real CLI in a subprocess, a real MLflow store in tmp."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from bench.files import normal_dir_mode

REPO = Path(__file__).resolve().parents[2]
#: the small synthetic dataset of the end-to-end tests that are not about the data
SMALL_DATA = ["dataset=synthetic", "dataset.params.n_users=300", "dataset.params.n_items=150",
              "dataset.params.n_interactions=6000"]  # fmt: skip


def bench_env(env: dict | None = None, **extra: str) -> dict[str, str]:
    """The environment of a ``python -m bench`` subprocess: this checkout on the path, no
    inherited tracking URI (each test's store is its own), plus ``extra`` and ``env``."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **extra, **(env or {})}
    full.pop("MLFLOW_TRACKING_URI", None)
    return full


def bench(
    *args: str,
    cwd: Path,
    timeout: float = 900,
    env: dict | None = None,
    check: bool = True,
    fresh: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``bench <args>`` in ``cwd`` (its mlflow.db and data/ live there) in a process of its
    own: forked from the zygote (see ``zygote.py``), or with ``fresh=True`` a new interpreter
    (``python -m bench``), as the one smoke test per command does."""
    extra = {"BENCH_TRACEBACK": "", "HYDRA_FULL_ERROR": "0"}
    if fresh:
        out = subprocess.run(
            [sys.executable, "-m", "bench", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=bench_env(env, **extra),
        )
    else:
        proc = Forked.start(list(args), cwd, bench_env(env, **extra))
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:  # as subprocess.run does: no process left behind
            proc.kill()
            raise
        out = subprocess.CompletedProcess(["bench", *args], proc.returncode, stdout, stderr)
    if check and out.returncode != 0:
        raise AssertionError(
            f"bench {' '.join(args)} exited {out.returncode}:\n{out.stderr[-4000:]}"
        )
    return out


def spawn(
    args: list[str], cwd: Path, env: dict | None = None, fresh: bool = False
) -> subprocess.Popen | Forked:
    """``bench <args>`` started in its own session (so a test can signal or kill the whole
    process group): forked from the zygote, or with ``fresh=True`` a new interpreter with
    stdout and stderr piped as text. Both answer ``pid``, ``poll``, ``wait``, ``communicate``
    and ``stderr.read()``."""
    if not fresh:
        return Forked.start(args, cwd, bench_env(env))
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd,
        env=bench_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


class _Output:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> str:
        return self.path.read_text(errors="replace") if self.path.exists() else ""


class Forked:
    """A ``bench`` command in a child of the zygote, with the part of ``subprocess.Popen``
    the tests use."""

    _zygote: subprocess.Popen | None = None
    _folder: Path | None = None
    _count = 0
    _lock = threading.Lock()

    def __init__(self, pid: int, stem: Path) -> None:
        self.pid = pid
        self.stdout = _Output(stem.with_suffix(".out"))
        self.stderr = _Output(stem.with_suffix(".err"))
        self._rc = stem.with_suffix(".rc")
        self.returncode: int | None = None

    @classmethod
    def start(
        cls, argv: list[str], cwd: Path, env: dict[str, str], code: str | None = None
    ) -> Forked:
        """``bench <argv>``, or with ``code`` ``python -c <code> <argv>``."""
        with cls._lock:
            zygote, folder = cls._ensure()
            cls._count += 1
            stem = folder / f"p{cls._count}"
            umask = 0o777 & ~normal_dir_mode()
            req = {"argv": argv, "cwd": str(cwd), "env": env, "umask": umask}
            if code is not None:
                req["code"] = code
            req.update({kind: f"{stem}.{kind}" for kind in ("out", "err", "rc")})
            assert zygote.stdin is not None and zygote.stdout is not None
            zygote.stdin.write(json.dumps(req) + "\n")
            zygote.stdin.flush()
            line = zygote.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the zygote did not start bench {' '.join(argv)}: {line!r}")
        return cls(int(line), stem)

    @classmethod
    def _ensure(cls) -> tuple[subprocess.Popen, Path]:
        if cls._zygote is None or cls._zygote.poll() is not None:
            cls._folder = Path(tempfile.mkdtemp(prefix="bench-zygote-"))
            cls._zygote = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("zygote.py"))],
                cwd=REPO, env=bench_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            assert cls._zygote.stdout is not None
            if cls._zygote.stdout.readline().strip() != "ready":
                raise RuntimeError("the zygote did not start (see stderr above)")
            atexit.register(cls._stop, cls._zygote, cls._folder)
        assert cls._folder is not None
        return cls._zygote, cls._folder

    @staticmethod
    def _stop(zygote: subprocess.Popen, folder: Path) -> None:
        if zygote.stdin is not None:
            zygote.stdin.close()
        try:
            zygote.wait(timeout=30)
        except subprocess.TimeoutExpired:
            zygote.kill()
        shutil.rmtree(folder, ignore_errors=True)

    def poll(self) -> int | None:
        if self.returncode is None and self._rc.exists():
            self.returncode = int(self._rc.read_text())
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(f"bench (pid {self.pid})", timeout or 0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return self.stdout.read(), self.stderr.read()

    def kill(self) -> None:
        if self.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)


def wait_until(pred, timeout: float, proc: subprocess.Popen | Forked | None = None) -> bool:
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

    from bench import tracking

    tracking.prepare_sqlite_store(root / "mlflow.db")  # as bench makes a store
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
