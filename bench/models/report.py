"""What a model tells the harness about a run beyond its scores: ``Recommender.report()``.

One frozen ``ModelReport`` replaces the per-topic hooks a model used to override; the runner
turns each field into MLflow metrics, artifacts or tags, and knows nothing of the model family
behind them:

- ``metrics``: model-specific metrics, logged as they are (``llm_parse_failure_rate``).
- ``artifacts``: files to log, name in the run -> local path (``prompts.jsonl``).
- ``stage_latency_ms``: mean milliseconds per request by pipeline stage ->
  ``latency_ms/<stage>``.
- ``reference_rankings``: other rankings of the evaluated users, scored with the whole metric
  suite -> ``<name>/<metric key>`` (a reranker's ``first_stage/ndcg_at_10``).
- ``probes``: repeated rankings whose spread is the measurement (a position-bias probe:
  the same candidates in shuffled orders) -> ``<name>/<i>/<key>`` for each ranking and
  ``<name>/<key>_std`` / ``<name>/<key>_range`` across them, for the probe's accuracy keys.
- ``provenance``: what produced the numbers beyond the config (content sha256 of a local model
  folder, the version of a reply parser) -> tags ``bench.provenance.<name>``, and part of the
  run key, so new weights under the same path are a new configuration.
- ``family``: what kind of model this is -> tag ``bench.model_family`` ("" = no tag).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ModelReport", "Probe", "Ranking", "RemoteCalls"]

@dataclass(frozen=True)
class Ranking:
    """Ranked lists of some users: ``users`` int64 (n,); ``items`` int64 (n, N) item indices,
    best first, short rows padded with ``bench.ranking.PAD`` (-1)."""

    users: np.ndarray
    items: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "users", np.asarray(self.users, dtype=np.int64))
        object.__setattr__(self, "items", np.asarray(self.items, dtype=np.int64))


@dataclass(frozen=True)
class Probe:
    """Rankings of the same users made under varied conditions; the runner logs each
    ranking's ``metrics`` and their sample std (ddof 1; 0 for one ranking) and range."""

    rankings: tuple[Ranking, ...]
    metrics: tuple[str, ...] = ("ndcg_at_10", "recall_at_10")


@dataclass(frozen=True)
class ModelReport:
    """A model's additions to its run's record (see the module docstring for each field)."""

    metrics: Mapping[str, float] = field(default_factory=dict)
    artifacts: Mapping[str, Path] = field(default_factory=dict)
    stage_latency_ms: Mapping[str, float] = field(default_factory=dict)
    reference_rankings: Mapping[str, Ranking] = field(default_factory=dict)
    probes: Mapping[str, Probe] = field(default_factory=dict)
    provenance: Mapping[str, str] = field(default_factory=dict)
    family: str = ""


@dataclass(frozen=True)
class RemoteCalls:
    """A model whose scoring calls a remote, possibly paid, API: ``what`` it calls (for
    messages), the ``requests`` made so far and the ``users`` they ranked."""

    what: str
    requests: int
    users: int
