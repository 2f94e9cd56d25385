"""A sweep that did not complete never ends FINISHED, whatever the signal and wherever it
lands: while the split is materialized, between jobs, or inside a run."""

from __future__ import annotations

import os
import signal
import sqlite3

import pytest

from .conftest import runs, spawn, store, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SWEEP = [
    "run", "-m", "dataset=synthetic", "model=pop", "latency=disabled",
    "report.leaderboard_on_end=false", "seed=0,1,2,3,4,5,6,7",
]  # fmt: skip


def _count(db, where: str) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute(
                "select count(*) from runs r where exists (select 1 from tags t where "
                f"t.run_uuid=r.run_uuid and t.key='bench.sweep') = {where}"
            ).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _parent_then(tmp_path, sig: int, after_children: int) -> tuple[int, str, list]:
    """Start the sweep, send ``sig`` once the parent exists and ``after_children`` child runs
    FINISHED, and return (exit code, stderr, parents)."""
    db = tmp_path / "mlflow.db"
    proc = spawn(SWEEP, tmp_path)
    try:
        assert wait_until(lambda: _count(db, "1") >= 1, 300, proc), proc.stderr.read()
        if after_children:

            def finished() -> bool:
                return len(runs(tmp_path, "FINISHED")) >= after_children

            assert wait_until(finished, 300, proc), proc.stderr.read()
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    parents = [r for r in store(tmp_path).search("") if r.data.tags.get("bench.sweep") == "parent"]
    return proc.returncode, err, parents


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_before_any_job_ran_ends_the_parent_killed(tmp_path, sig):
    """The signal lands while the first job materializes the split (no child run yet)."""
    code, err, parents = _parent_then(tmp_path, sig, 0)
    assert code == (143 if sig == signal.SIGTERM else 130), err[-2000:]
    assert [p.info.status for p in parents] == ["KILLED"]
    assert "Traceback" not in err
    assert not runs(tmp_path, "RUNNING")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_after_some_jobs_ends_the_parent_killed(tmp_path, sig):
    code, err, parents = _parent_then(tmp_path, sig, 2)
    assert code in (130, 143), err[-2000:]
    (parent,) = parents
    assert parent.info.status == "KILLED"
    assert "interrupted" in parent.data.tags["bench.status_note"]
    assert len(runs(tmp_path, "FINISHED")) < 8
    assert not runs(tmp_path, "RUNNING")
    assert "Traceback" not in err


def test_a_complete_sweep_still_ends_finished(tmp_path):
    from .conftest import bench

    bench(*SWEEP[:-1], "seed=0,1", cwd=tmp_path)
    parents = [r for r in store(tmp_path).search("") if r.data.tags.get("bench.sweep") == "parent"]
    assert [p.info.status for p in parents] == ["FINISHED"]
