"""Thin adapter over the metric catalog (``bench.metrics.catalog``).

Reports and leaderboards ask this module, never a copy of metric names. Keys the catalog does
not know (a model's extra metrics, stage latencies) still work: they keep their key as display
form and count as higher-is-better unless they look like a cost.
"""

from __future__ import annotations

from types import ModuleType

from bench.errors import BenchError

#: Efficiency metrics depend on the hardware: compare them only on one ``bench.device``.
DEVICE_BOUND_PREFIXES = ("latency_", "throughput_", "fit_seconds", "peak_memory_mb")
_COST_PREFIXES = ("latency_", "fit_seconds", "peak_memory_mb", "n_parameters")


class _NoCatalog:
    """Stand-in while ``bench.metrics.catalog`` is not importable: keys pass through."""

    METRIC_DEFINITIONS_VERSION = "unknown"

    @staticmethod
    def resolve_metric(name: str) -> str:
        return name.strip().replace("@", "_at_")

    @staticmethod
    def display(key: str) -> str:
        return key.replace("_at_", "@")

    @staticmethod
    def higher_is_better(key: str) -> bool:
        raise BenchError(key)  # -> the cost-prefix rule below

    @staticmethod
    def paper_display(key: str) -> str:
        return _NoCatalog.display(key)


def _catalog() -> ModuleType | type[_NoCatalog]:
    try:
        from bench.metrics import catalog  # the one line to change if the catalog moves
    except ImportError:
        return _NoCatalog
    return catalog


def normalize_key(name: str) -> str:
    """``ndcg@10`` / ``NDCG_at_10`` -> ``ndcg_at_10``; keys unknown to the catalog are kept."""
    try:
        return str(_catalog().resolve_metric(name))
    except BenchError:
        return name.strip().replace("@", "_at_")


def display(key: str) -> str:
    """Human form of a metric key (``ndcg_at_10`` -> ``ndcg@10``)."""
    try:
        return str(_catalog().display(key))
    except BenchError:
        return key


def paper_display(key: str) -> str:
    """How a paper table writes a metric key (``ndcg_at_10`` -> ``nDCG@10``)."""
    try:
        return str(_catalog().paper_display(key))
    except BenchError:
        return display(key)


def higher_is_better(key: str) -> bool:
    """Direction of a metric, from the catalog; group gaps (``.../gap``) are lower-is-better."""
    if key.endswith("/gap"):
        return False
    try:
        return bool(_catalog().higher_is_better(key))
    except BenchError:
        return not key.startswith(_COST_PREFIXES)


def device_bound(key: str) -> bool:
    """True for metrics measured on hardware (latency, throughput, fit time, memory)."""
    return key.startswith(DEVICE_BOUND_PREFIXES)


def definitions_version() -> str:
    """The catalog's ``METRIC_DEFINITIONS_VERSION``."""
    return str(_catalog().METRIC_DEFINITIONS_VERSION)
