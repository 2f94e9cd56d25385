"""llmrec-harness: reproducible benchmarks of LLM-based and classical recommenders.

Importing ``bench`` is cheap: torch, transformers, recbole and mlflow are imported only by the
code paths that need them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "evaluate"]


def evaluate(*args: Any, **kwargs: Any) -> Any:
    """Score recommendations against a test set; see ``bench.metrics.api.evaluate``."""
    from bench.metrics.api import evaluate as _evaluate

    return _evaluate(*args, **kwargs)
