"""How long ``bench leaderboard`` takes on a store of 1,000 runs, against reading the same runs
with MLflow's own ``mlflow.search_runs`` (the peer: what a user would type), in one session.

    python benchmarks/perf_leaderboard.py --out reports/perf            # 1,000 runs
    python benchmarks/perf_leaderboard.py --out /tmp/perf --quick        # 100 runs, smoke test

The store is made realistic, not synthetic: one real ``bench run`` (pop, synthetic dataset) is
copied 1,000 times with MLflow's ``log_batch`` under 100 model names x 10 seeds, with every
param, tag and metric the real run logged (several hundred metric keys with group breakdowns),
all of one dataset and split, so the leaderboard reads all of them. Each command is timed as a
fresh process (imports included, as a user sees it), three times; the median is reported.
Writes ``<out>/leaderboard.md`` and ``<out>/leaderboard.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 3
PEER = """
import sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
df = mlflow.search_runs(experiment_names=["bench"], max_results=50000)
print(len(df))
"""


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def seed_run(folder: Path) -> str:
    """One real run into ``folder/mlflow.db``; returns the store URI."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    subprocess.run(
        [sys.executable, "-m", "bench", "run", "model=pop", "dataset=synthetic",
         "dataset.params.n_users=300", "dataset.params.n_items=150",
         "dataset.params.n_interactions=6000", "latency=disabled", f"tracking.uri={uri}"],
        cwd=folder, env=_env(), check=True, capture_output=True,
    )
    return uri


def fill(uri: str, n_runs: int) -> int:
    """Copies of the seed run under ``n_runs // 10`` model names x 10 seeds; returns the number
    of metric keys per run."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("bench")
    (seed,) = [r for r in client.search_runs([exp.experiment_id])
               if r.data.tags.get("bench.model") == "pop"]
    now = int(time.time() * 1000)
    for i in range(n_runs - 1):
        model, s = f"model{i // 10:03d}", i % 10
        tags = {**seed.data.tags, "bench.model": model, "bench.seed": str(s),
                "bench.run_key": f"{model}-{s}", "bench.config_key": f"{model}-cfg",
                "mlflow.runName": f"{model}-s{s}-synthetic-temporal-global"}
        run = client.create_run(exp.experiment_id, tags=tags, start_time=now + i)
        shift = (i % 97) / 1000.0
        metrics = [Metric(k, v + shift, now, 0) for k, v in seed.data.metrics.items()]
        params = [Param(k, v) for k, v in seed.data.params.items() if k != "model"]
        params.append(Param("model", model))
        for start in range(0, len(metrics), 1000):
            client.log_batch(run.info.run_id, metrics=metrics[start:start + 1000],
                             params=params if start == 0 else [],
                             tags=[RunTag("bench.copy", "1")] if start == 0 else [])
        client.set_terminated(run.info.run_id, "FINISHED")
    return len(seed.data.metrics)


def count_metrics(uri: str) -> int:
    import sqlite3

    with sqlite3.connect(uri[len("sqlite:///"):]) as con:
        return int(con.execute("SELECT count(*) FROM latest_metrics GROUP BY run_uuid "
                               "LIMIT 1").fetchone()[0])


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(args, cwd=cwd, env=_env(), check=True, capture_output=True)
    return time.perf_counter() - start


def measure(uri: str, cwd: Path) -> dict[str, list[float]]:
    cases = {
        "bench leaderboard": [sys.executable, "-m", "bench", "leaderboard",
                              "--tracking-uri", uri],
        "mlflow.search_runs (peer)": [sys.executable, "-c", PEER, uri],
        "python -c 'import mlflow' (floor)": [sys.executable, "-c", "import mlflow"],
    }
    return {name: [timed(args, cwd) for _ in range(REPEATS)] for name, args in cases.items()}


def write(out: Path, n_runs: int, n_metrics: int, times: dict[str, list[float]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    peer = med["mlflow.search_runs (peer)"]
    lines = [
        "# `bench leaderboard` on a store of many runs",
        "",
        f"{n_runs} FINISHED runs of one dataset and split in a SQLite store, {n_metrics} metric "
        f"keys each (copies of a real `bench run`); each command is a fresh process, median of "
        f"{REPEATS}. Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end (shared "
        f"machine: compare the ratios, not the seconds). Written by "
        f"`benchmarks/perf_leaderboard.py` (`nox -s perf`).",
        "",
        "| command | median s | runs (s) | / mlflow.search_runs |",
        "|---|---:|---|---:|",
    ]
    for name, vals in times.items():
        runs = ", ".join(f"{v:.2f}" for v in vals)
        lines.append(f"| {name} | {med[name]:.2f} | {runs} | {med[name] / peer:.2f} |")
    (out / "leaderboard.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "leaderboard.json").write_text(json.dumps(
        {"n_runs": n_runs, "n_metrics": n_metrics, "seconds": times, "median": med},
        indent=2) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "perf")
    ap.add_argument("--quick", action="store_true", help="100 runs instead of 1,000")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--store", type=Path, default=None,
                    help="build the store in this (empty) folder and keep it; reuse it if it "
                         "already holds mlflow.db")
    a = ap.parse_args()
    n_runs = a.runs or (100 if a.quick else 1000)
    with tempfile.TemporaryDirectory() as tmp:
        folder = a.store or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / "mlflow.db").exists():
            uri = f"sqlite:///{folder / 'mlflow.db'}"
            n_metrics = count_metrics(uri)
        else:
            uri = seed_run(folder)
            n_metrics = fill(uri, n_runs)
        times = measure(uri, folder)
    write(a.out, n_runs, n_metrics, times)


if __name__ == "__main__":
    main()
