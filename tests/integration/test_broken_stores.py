"""Broken stores, damaged artifacts and full disks end in one line naming the file and the fix,
exit 2, no traceback, nothing overwritten; a store is never left half-migrated."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from .conftest import bench, runs
from .test_bad_input import one_line_error

pytestmark = [pytest.mark.integration]

FAST = ["dataset=synthetic", "model=pop", "latency=disabled", "report.leaderboard_on_end=false"]


@pytest.fixture(scope="module")
def good_store(tmp_path_factory) -> Path:
    """A store with two FINISHED runs (pop and random) and its split, made once."""
    root = tmp_path_factory.mktemp("good")
    bench("run", "-m", *FAST[:1], "model=pop,random", *FAST[2:], cwd=root)
    return root


def _copy(good: Path, dst: Path) -> Path:
    """A copy of the store whose runs' artifacts are the copy's own."""
    w = dst / "w"
    shutil.copytree(good, w)
    con = sqlite3.connect(w / "mlflow.db")
    con.execute("update runs set artifact_uri = replace(artifact_uri, ?, ?)", (str(good), str(w)))
    con.execute(
        "update experiments set artifact_location = replace(artifact_location, ?, ?)",
        (str(good), str(w)),
    )
    con.commit()
    con.close()
    return w


@pytest.mark.parametrize("damage", ["junk", "truncated"])
@pytest.mark.parametrize("command", ["leaderboard", "report", "run"])
def test_a_damaged_mlflow_db_is_one_line(good_store, tmp_path, damage, command):
    w = _copy(good_store, tmp_path)
    db = w / "mlflow.db"
    for extra in (w / "mlflow.db-wal", w / "mlflow.db-shm"):
        extra.unlink(missing_ok=True)
    data = db.read_bytes()
    db.write_bytes(b"not a database at all " * 300 if damage == "junk" else data[: len(data) // 3])
    before = db.read_bytes()
    args = {
        "leaderboard": ["leaderboard"],
        "report": ["report", "--out", str(tmp_path / "rep")],
        "run": ["run", *FAST, "seed=5"],
    }[command]
    msg = one_line_error(bench(*args, cwd=w, check=False))
    assert f"tracking store {db} is damaged" in msg and "restore it from a backup" in msg
    assert db.read_bytes() == before  # nothing overwritten
    assert not (tmp_path / "rep").exists()


def test_a_truncated_per_user_parquet_is_one_line(good_store, tmp_path):
    w = _copy(good_store, tmp_path)
    (victim,) = [p for p in (w / "mlartifacts").rglob("per_user.parquet")][:1]
    victim.write_bytes(victim.read_bytes()[:200])
    out = bench("report", "--out", str(tmp_path / "rep"), "--baseline", "pop", cwd=w, check=False)
    msg = one_line_error(out)
    assert "per_user.parquet of run" in msg and "is damaged" in msg
    assert "tracking.force=true" in msg
    assert not (tmp_path / "rep").exists()


def _half_migrated(db: Path, with_run: bool) -> None:
    """What an interrupted migration leaves: a leftover ``_alembic_tmp_*`` table."""
    con = sqlite3.connect(db)
    con.execute("create table _alembic_tmp_experiments (x int)")
    if not with_run:
        con.execute("delete from tags")
        con.execute("delete from params")
        con.execute("delete from metrics")
        con.execute("delete from latest_metrics")
        con.execute("delete from runs")
    con.commit()
    con.close()


def test_an_empty_half_migrated_store_is_moved_aside_and_recreated(good_store, tmp_path):
    w = _copy(good_store, tmp_path)
    _half_migrated(w / "mlflow.db", with_run=False)
    out = bench("run", *FAST, "seed=5", cwd=w)
    assert "half-migrated store with no run: moved aside" in out.stderr
    assert [p.name.split("-")[0] for p in w.glob("mlflow.db.half-migrated-*")] == ["mlflow.db.half"]
    assert [r.info.status for r in runs(w)] == ["FINISHED"]


def test_a_half_migrated_store_with_runs_is_refused(good_store, tmp_path):
    w = _copy(good_store, tmp_path)
    _half_migrated(w / "mlflow.db", with_run=True)
    before = (w / "mlflow.db").read_bytes()
    msg = one_line_error(bench("run", *FAST, "seed=5", cwd=w, check=False))
    assert "half-migrated" in msg and "_alembic_tmp_experiments" in msg
    assert "3 run(s)" in msg  # 2 runs + the sweep parent
    assert (w / "mlflow.db").read_bytes() == before


# ---------------------------------------------------------------------------------------------
# full disks: a small tmpfs (needs root; skipped where mount is not allowed)


@contextlib.contextmanager
def tmpfs(path: Path, size_kb: int):
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip()}): needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path, leave_kb: int) -> None:
    """Fill the filesystem of ``path`` until ``leave_kb`` KiB are left."""
    st = shutil.disk_usage(path)
    (path / "filler").write_bytes(b"\0" * max(0, st.free - leave_kb * 1024))


def test_a_store_created_on_a_full_disk_is_disk_full_and_works_once_freed(good_store, tmp_path):
    w = _copy(good_store, tmp_path)
    (w / "mlflow.db").unlink()
    with tmpfs(tmp_path / "small", 3072) as small:
        fill(small, 200)
        uri = f"tracking.uri=sqlite:///{small}/store/mlflow.db"
        msg = one_line_error(bench("run", *FAST, uri, cwd=w, check=False))
        assert msg.startswith(f"error: disk full: {small}/store/mlflow.db")
        assert "creating the MLflow store" in msg and "older MLflow schema" not in msg
        assert not (small / "store" / "mlflow.db").exists()  # never half-made
        assert not list((small / "store").glob(".mlflow.db.*"))
        (small / "filler").unlink()
        bench("run", *FAST, uri, cwd=w)  # the same command works once space is freed
        from bench import tracking

        store = tracking.Store(f"sqlite:///{small}/store/mlflow.db")
        assert [r.info.status for r in store.search("")] == ["FINISHED"]


def test_a_full_disk_under_the_store_is_disk_full(good_store, tmp_path):
    w = _copy(good_store, tmp_path)
    with tmpfs(tmp_path / "small", 3072) as small:
        uri = f"tracking.uri=sqlite:///{small}/mlflow.db"
        bench("run", *FAST, uri, cwd=w)  # the store and one run fit
        fill(small, 24)
        out = bench("run", *FAST, "seed=7", uri, cwd=w, check=False)
        msg = one_line_error(out)
        assert msg.startswith(f"error: disk full: {small}/mlflow.db")
        assert "Error executing job" not in out.stderr and "MlflowException" not in out.stderr


def test_a_full_disk_while_a_run_logs_its_artifacts_is_disk_full(good_store, tmp_path):
    """The store has room, the artifact folder does not: the run ends FAILED, one line."""
    w = _copy(good_store, tmp_path)
    with tmpfs(tmp_path / "art", 256) as art:
        from bench import tracking

        store = tracking.Store(f"sqlite:///{w}/mlflow.db")
        store.client.create_experiment("tiny", artifact_location=str(art))
        fill(art, 4)
        out = bench("run", *FAST, "seed=7", "tracking.experiment=tiny", cwd=w, check=False)
        msg = one_line_error(out)
        assert msg.startswith(f"error: disk full: {art}")
        assert "pop-s7-synthetic-temporal-global" in msg
        assert "Error executing job" not in out.stderr and "MlflowException" not in out.stderr
        tiny = tracking.Store(f"sqlite:///{w}/mlflow.db", "tiny")
        assert [r.info.status for r in tiny.search("")] == ["FAILED"]


def test_a_full_split_root_is_disk_full(tmp_path):
    with tmpfs(tmp_path / "splits", 64) as small:
        out = bench("run", *FAST, f"paths.splits={small}", "tracking=disabled", cwd=tmp_path,
                    check=False)  # fmt: skip
        msg = one_line_error(out)
        assert msg.startswith(f"error: disk full: {small}/synthetic") and "materializing" in msg
        assert not [p for p in (small / "synthetic").iterdir()]  # no half split left
