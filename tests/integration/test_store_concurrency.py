"""Many processes writing one fresh SQLite store lose nothing (pitfalls C1)."""

from __future__ import annotations

import textwrap

import pytest

from .conftest import Forked, bench_env

WRITER = textwrap.dedent(
    """
    import sys, pathlib
    from bench import tracking
    uri, i, tmp = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
    store = tracking.Store(uri)
    with tracking.TrackedRun(store, f"w{i}", {"bench.run_key": f"k{i}"}) as run:
        run.log_params({f"p{j}": str(j) for j in range(20)})
        run.log_metrics({f"m{j}": float(i * 100 + j) for j in range(50)})
        for a in range(2):
            f = tmp / f"a{i}_{a}.txt"
            f.write_text(str(i))
            run.log_artifact(f)
    """
)


@pytest.mark.integration
def test_eight_processes_on_a_fresh_store_lose_no_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"  # does not exist yet
    # eight processes forked at once from the zygote (each its own interpreter state and
    # SQLite connections), as ``python -c WRITER ...`` without the import time
    procs = [
        Forked.start([uri, str(i), str(tmp_path)], tmp_path, bench_env(), code=WRITER)
        for i in range(8)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    from bench import tracking

    store = tracking.Store(uri)
    runs = store.search("")
    assert len(runs) == 8
    assert {r.info.status for r in runs} == {"FINISHED"}
    for r in runs:
        i = int(r.info.run_name[1:])
        assert len(r.data.metrics) == 50 and r.data.metrics["m7"] == i * 100 + 7
        assert len(r.data.params) == 20
        assert len(store.client.list_artifacts(r.info.run_id)) == 2
