"""Sweeps that survive: joblib launcher, SIGKILL + resume, SIGTERM (pitfalls B1, B2, C7)."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections import Counter

import pytest

from .conftest import REPO, SMALL_DATA, bench, runs, spawn, store, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# a small synthetic dataset: these tests are about sweeps, not about the data
FAST = [*SMALL_DATA, "latency.n_requests=30", "latency.warmup=5"]


def _count(db, status):
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute(
                "select count(*) from runs r where status=? and not exists (select 1 from tags t "
                "where t.run_uuid=r.run_uuid and t.key='bench.sweep')",
                (status,),
            ).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_joblib_sweep_ends_with_eight_finished_runs(tmp_path):
    out = bench(
        "run",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "model=pop,random,ease,itemknn",
        "seed=0,1",
        *FAST,
        cwd=tmp_path,
    )
    rs = runs(tmp_path)
    assert len(rs) == 8
    assert Counter(r.info.status for r in rs) == {"FINISHED": 8}
    keys = [r.data.tags["bench.run_key"] for r in rs]
    assert len(set(keys)) == 8
    parents = {r.data.tags.get("mlflow.parentRunId") for r in rs}
    assert len(parents) == 1 and None not in parents
    parent = store(tmp_path).client.get_run(parents.pop())
    assert parent.info.status == "FINISHED" and parent.data.tags["bench.n_children"] == "8"
    assert "ndcg_at_10" in out.stdout + out.stderr  # the leaderboard closes the sweep


def test_sweep_report_paths_may_use_interpolations_as_the_quickstart_does(tmp_path):
    """The quickstart writes its report to ${paths.root}/reports/out/quickstart: the report
    settings are resolved after the last job (when Hydra's runtime config is gone)."""
    import shutil

    shutil.copy(REPO / "reports" / "specs" / "quickstart.yaml", tmp_path / "spec.yaml")
    out = bench(
        "run",
        "-m",
        "model=pop,random",
        *FAST,
        "report.out=${paths.root}/out/quick",
        "report.spec=${paths.root}/spec.yaml",
        cwd=tmp_path,
    )
    assert "wrote " in out.stderr + out.stdout
    for name in ("table.tex", "table.md", "table.csv", "provenance.json"):
        assert (tmp_path / "out" / "quick" / name).is_file(), name
    assert not any("${" in p.name for p in tmp_path.rglob("*"))


def test_a_sweep_over_two_splits_ranks_and_reports_each_split(tmp_path):
    """The end-of-sweep summary covers every dataset/split the sweep ran (not only the base
    config's), one leaderboard and one report folder each."""
    out = bench(
        "run",
        "-m",
        "model=pop,random",
        "split=temporal-global,random-ratio",
        *FAST,
        "report.out=${paths.root}/out/sweep",
        cwd=tmp_path,
    )
    text = out.stdout + out.stderr
    for split in ("temporal-global", "random-ratio"):
        assert f"synthetic / {split}" in text or f"synthetic/{split}" in text, split
        prov = (tmp_path / "out" / "sweep" / f"synthetic_{split}" / "provenance.json").read_text()
        assert prov.count('"run_id"') == 2, split
    assert "summary failed" not in text


def test_a_job_failing_before_its_run_exists_fails_the_sweep_parent(tmp_path):
    """ml-1m's files are absent: that job fails before it creates a run (no FAILED child), yet
    the parent ends FAILED, counts it and keeps its error; the other job finishes."""
    out = bench(
        "run",
        "-m",
        "model=pop",
        "dataset=synthetic,ml-1m",
        "latency.n_requests=30",
        "latency.warmup=5",
        f"+dataset.data_root={tmp_path / 'nothing'}",
        "report.leaderboard_on_end=false",
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode != 0
    assert [r.info.status for r in runs(tmp_path)] == ["FINISHED"]
    parents = [r for r in store(tmp_path).search("") if r.data.tags.get("bench.sweep") == "parent"]
    assert [p.info.status for p in parents] == ["FAILED"]
    tags = parents[0].data.tags
    assert tags["bench.n_jobs_failed_before_run"] == "1"
    assert "ml-1m" in tags["bench.job_failed.1"]


def test_sigkill_mid_sweep_then_resume_gives_one_finished_run_per_config(tmp_path):
    args = ["run", "-m", "model=pop,random,ease,itemknn", "seed=0,1", *FAST]
    db = tmp_path / "mlflow.db"
    proc = spawn(args, tmp_path)
    try:
        assert wait_until(lambda: _count(db, "FINISHED") >= 3, 600, proc), proc.stderr.read()
        # kill while the next job is running, if we can catch one
        wait_until(lambda: _count(db, "RUNNING") >= 1, 30, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done_before = _count(db, "FINISHED")
    assert done_before < 8
    out = bench(*args, cwd=tmp_path)
    assert out.stderr.count("skip ") == done_before  # completed jobs are not recomputed
    rs = runs(tmp_path)
    finished = [r for r in rs if r.info.status == "FINISHED"]
    assert len(finished) == 8
    assert len({r.data.tags["bench.run_key"] for r in finished}) == 8
    assert not [r for r in rs if r.info.status == "RUNNING"]
    killed = [r for r in rs if r.info.status == "KILLED"]
    assert all(r.data.tags.get("bench.status_note", "").startswith("reaped") for r in killed)
    parents = [r for r in store(tmp_path).search("") if r.data.tags.get("bench.sweep") == "parent"]
    assert all(p.info.status != "RUNNING" for p in parents)


def test_sigterm_marks_the_current_run_killed(tmp_path):
    db = tmp_path / "mlflow.db"
    proc = spawn(["run", "model=itemknn", "dataset=synthetic", "latency.n_requests=100000"],
                 tmp_path)
    try:
        assert wait_until(lambda: _count(db, "RUNNING") >= 1, 300, proc), proc.stderr.read()
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    (run,) = runs(tmp_path)
    assert run.info.status == "KILLED"


def test_fresh_process_option_runs_each_job_in_a_new_interpreter(tmp_path):
    out = bench(
        "run",
        "-m",
        "model=pop,random",
        "latency.fresh_process=true",
        *FAST,
        "report.leaderboard_on_end=false",
        cwd=tmp_path,
    )
    rs = runs(tmp_path)
    assert sorted(r.data.tags["bench.model"] for r in rs) == ["pop", "random"]
    assert {r.info.status for r in rs} == {"FINISHED"}
    parents = {r.data.tags.get("mlflow.parentRunId") for r in rs}
    assert len(parents) == 1 and None not in parents  # children still attach to the sweep
    pids = {r.data.tags["bench.pid"] for r in rs}
    assert len(pids) == 2  # the basic launcher runs both jobs in one process; each ran fresh
    assert out.stderr.count("run pop-") == 1


def test_a_failing_job_is_failed_with_its_error_and_the_sweep_goes_on(tmp_path):
    out = bench(
        "run",
        "-m",
        "model=ease",
        "model.params.max_items=10,100000",
        *FAST,
        cwd=tmp_path,
        check=False,
    )
    # the failure is one line, the sweep still ends with its summary, then exits 1
    assert out.returncode == 1
    assert "Traceback" not in out.stderr + out.stdout, out.stderr[-3000:]
    assert "[bench] job failed: " in out.stderr
    sweep_line = next(line for line in out.stderr.splitlines() if line.startswith("[bench] sweep "))
    assert "1 FINISHED" in sweep_line and "1 FAILED" in sweep_line
    assert "ranked by ndcg@10" in out.stdout  # the leaderboard of the finished run
    rs = runs(tmp_path)
    status = {r.data.params["model.params.max_items"]: r.info.status for r in rs}
    assert status == {"10": "FAILED", "100000": "FINISHED"}
    failed = next(r for r in rs if r.info.status == "FAILED")
    names = {a.path for a in store(tmp_path).client.list_artifacts(failed.info.run_id)}
    assert "error.txt" in names
    parents = [r for r in store(tmp_path).search("") if r.data.tags.get("bench.sweep") == "parent"]
    assert [p.info.status for p in parents] == ["FAILED"]
    # the failure is counted once: as the FAILED child, not again as a job without a run
    tags = parents[0].data.tags
    assert tags["bench.n_failed"] == "1" and "bench.n_jobs_failed_before_run" not in tags
    assert not [k for k in tags if k.startswith("bench.job_failed.")]
