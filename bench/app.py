"""The Hydra application behind ``bench run`` (imports hydra; heavy imports stay lazy)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from bench.config import validate
from bench.confpaths import CONF_DIR
from bench.errors import BenchError

FRESH_ENV = "BENCH_FRESH_PROCESS"


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def task(cfg: DictConfig) -> Any:
    """One job. In a single run, bad input exits 2 with one line; in a sweep the job fails
    (its run is FAILED) and the sweep goes on."""
    from bench.runner import run_experiment, say
    from bench.tracking import raise_pending

    raise_pending()  # a Ctrl-C or SIGTERM deferred while the sweep was between jobs
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # interpolation errors name the key
        err: Exception = BenchError(f"config: {e}".splitlines()[0])
        if _is_multirun():
            raise err from e
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        fresh = (container.get("latency") or {}).get("fresh_process")  # type: ignore[union-attr]
        if fresh and not os.environ.get(FRESH_ENV):
            validate(container)  # type: ignore[arg-type]  # before a second interpreter starts
            return _in_fresh_process()
        outcome = run_experiment(container)  # type: ignore[arg-type]  # validates it first
    except BenchError as e:
        if _is_multirun():
            # one line, and the sweep goes on; its end (summary, parent FAILED, exit 1) says
            # how many jobs failed. Bugs (other exceptions) keep Hydra's traceback.
            say(f"job failed: {e}")
            if not getattr(e, "bench_run_id", None):  # no FAILED run of its own to count
                _record_failure(container, str(e))  # type: ignore[arg-type]
            return None
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    metric = str(container.get("report", {}).get("leaderboard_metric", "ndcg_at_10"))  # type: ignore[union-attr]
    if outcome.metrics:
        say(f"{metric} = {outcome.metrics.get(metric, float('nan')):.6f}")
    return outcome.metrics.get(metric)


def _record_failure(cfg: dict[str, Any], message: str) -> None:
    """In a sweep, note on the parent run that this job failed (a job that fails before it
    creates its run leaves no FAILED child): the parent then ends FAILED and counts it."""
    from hydra.core.hydra_config import HydraConfig

    from bench import tracking
    from bench.console import say

    parent = os.environ.get(tracking.PARENT_ENV)
    if not parent:
        return
    try:
        store = tracking.store_for(cfg.get("tracking") or {}, Path(cfg["paths"]["root"]))
        if store is not None:
            tracking.record_job_failure(store, parent, int(HydraConfig.get().job.num), message)
    except Exception as e:  # noqa: BLE001 - the job's own error is the one to report
        say(f"could not record the failure on the sweep's parent run: {e}")


def _in_fresh_process() -> None:
    """Run this job again in a new interpreter, so no CUDA state, allocator cache or JIT warm-up
    of an earlier job in this process leaks into its timings (``latency.fresh_process=true``)."""
    import subprocess

    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "run",
        *hc.overrides.task,
        f"hydra.run.dir={hc.runtime.output_dir}",
    ]
    rc = subprocess.run(cmd, env={**os.environ, FRESH_ENV: "1"}).returncode
    if rc != 0 and not _is_multirun():
        sys.exit(rc)  # the child already printed its one-line error
    if rc != 0:
        raise RuntimeError(f"job in a fresh process exited with {rc}: {' '.join(cmd[3:])}")


def main(argv: list[str]) -> int:
    """Run the Hydra app with ``argv`` as its overrides/flags."""
    from bench.hydra_callbacks import SWEEP_FAILED, close_interrupted_sweep

    old = sys.argv
    sys.argv = ["bench run", *argv]
    SWEEP_FAILED.clear()
    status = "FAILED"  # of a sweep whose end was never reached
    try:
        task()
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except SystemExit as e:
        if e.code in (130, 143):  # SIGINT / SIGTERM (TrackedRun's handler or the sweep's)
            status = "KILLED"
        raise
    finally:
        sys.argv = old
        close_interrupted_sweep(status)
    return 1 if any(SWEEP_FAILED) else 0
