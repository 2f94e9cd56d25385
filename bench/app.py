"""The Hydra application behind ``bench run`` (imports hydra; heavy imports stay lazy)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from bench.errors import BenchError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


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

    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # interpolation errors name the key
        err: Exception = BenchError(f"config: {e}".splitlines()[0])
        if _is_multirun():
            raise err from e
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        outcome = run_experiment(container)  # type: ignore[arg-type]
    except BenchError as e:
        if _is_multirun():
            say(f"job failed: {e}")
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    metric = str(container.get("report", {}).get("leaderboard_metric", "ndcg_at_10"))  # type: ignore[union-attr]
    if outcome.metrics:
        say(f"{metric} = {outcome.metrics.get(metric, float('nan')):.6f}")
    return outcome.metrics.get(metric)


def main(argv: list[str]) -> int:
    """Run the Hydra app with ``argv`` as its overrides/flags."""
    old = sys.argv
    sys.argv = ["bench run", *argv]
    try:
        task()
    finally:
        sys.argv = old
    return 0
