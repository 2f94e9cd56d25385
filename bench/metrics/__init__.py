"""Metrics: the catalog (names, direction, definitions), vectorized kernels, the engine
``evaluate_arrays`` (integer indices) and the public ``evaluate`` (string-id polars frames)."""

from __future__ import annotations

from typing import Any

from bench.metrics.catalog import (
    CATALOG,
    METRIC_DEFINITIONS_VERSION,
    MetricSpec,
    display,
    higher_is_better,
    known_metric_names,
    parse_key,
    resolve_metric,
)

__all__ = [
    "CATALOG",
    "METRIC_DEFINITIONS_VERSION",
    "MetricSpec",
    "display",
    "evaluate",
    "evaluate_arrays",
    "higher_is_better",
    "known_metric_names",
    "parse_key",
    "resolve_metric",
]


def __getattr__(name: str) -> Any:
    if name == "evaluate_arrays":
        from bench.metrics.engine import evaluate_arrays

        return evaluate_arrays
    if name == "evaluate":
        from bench.metrics.api import evaluate

        return evaluate
    raise AttributeError(name)
