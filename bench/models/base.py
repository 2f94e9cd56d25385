"""The small protocol every recommender implements (LensKit/RecPack style).

A model sees integer indices only: users ``0..n_users-1`` and items ``0..n_items-1`` of one
split (``ModelData.user_ids`` / ``item_ids`` map them back to the split's string ids; item
indices follow the sorted item ids). The harness alone turns scores
into rankings (``bench.ranking.topk``: seen items masked, ties broken by a hash of the item
id); models
never rank, never mask seen items and never seed global RNGs.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import scipy.sparse as sp

from bench.candidates import restrict
from bench.errors import ConfigError, did_you_mean
from bench.models.report import ModelReport, Probe, Ranking, RemoteCalls
from bench.ranking import rank_users

__all__ = [
    "FitContext",
    "History",
    "ModelData",
    "ModelReport",
    "Probe",
    "Ranking",
    "Recommender",
    "RemoteCalls",
    "validate_params",
]


@dataclass(frozen=True)
class History:
    """What the model may use about each user when scoring (train, plus valid at test time).

    ``matrix`` is a binary CSR (n_users x n_items); ``sequences[u]`` is user u's item indices in
    time order (ties by timestamp broken by item index), duplicates collapsed to the last event.
    ``name`` says which history it is: ``train`` (validation) or ``train+valid`` (the test
    history by default). ``candidates`` (binary CSR like ``matrix``) is set under
    ``eval.candidates=sampled``: the only items the harness ranks for each user (it turns every
    other score into NaN); a model that ranks a candidate list itself (an LLM reranker) ranks
    exactly these. None = every item (full ranking).
    """

    matrix: sp.csr_matrix
    sequences: list[np.ndarray]
    name: str = ""
    candidates: sp.csr_matrix | None = None

    @property
    def n_users(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.matrix.shape[1])


@dataclass(frozen=True)
class ModelData:
    """The part of a split a model may see while fitting. Never contains the test set.

    ``train``/``valid`` are polars frames with columns ``user_idx`` (i64), ``item_idx`` (i64),
    ``timestamp`` (i64, seconds) and ``rating`` (f64, null if none), sorted by
    (user_idx, timestamp, item_idx). ``items`` holds ``item_idx`` + the split's item side
    information (MovieLens: title, year, genres); ``users`` holds ``user_idx`` + attributes.
    ``train_history`` is the history for validation (train only); ``test_history`` is the one used
    when scoring the test set (train + valid unless the split config says otherwise).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    train: pl.DataFrame
    valid: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame
    train_history: History
    test_history: History
    split_dir: Path | None = None
    split_sha256: str = ""

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


@dataclass(frozen=True)
class FitContext:
    """Everything a model needs from the harness while fitting; frozen, no globals.

    ``rank(model, users, history, k)`` is the harness's ranking of any model (e.g. a
    reranker's first stage): models never sort scores into lists themselves.
    ``validate(model)`` ranks the valid users with the harness's own ``topk`` (train history,
    train items masked) and returns the harness's metric values on ``valid``, e.g.
    ``{"ndcg_at_10": 0.12, ...}``; models use ``ctx.validate(self)[ctx.early_stopping_metric]``
    for early stopping. ``cache_dir`` is a persistent cache (embeddings, LLM replies) shared by
    runs; ``workdir`` is private to this run (its files may become artifacts).
    """

    seed: int
    device: str = "cpu"
    workdir: Path = Path(".")
    cache_dir: Path = Path(".cache")
    progress: bool = False
    early_stopping_metric: str = "ndcg_at_10"
    validate: Callable[[Recommender], dict[str, float]] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: ``bench.ranking.tie_ranks(data.item_ids)``: the harness's tie order, for ``rank``
    tie_rank: np.ndarray | None = field(default=None, compare=False, repr=False)
    #: the memory bound of one scoring batch in ``rank`` (``eval.batch_budget_mb``)
    batch_budget_mb: float = 256.0

    def rng(self, stream: int = 0) -> np.random.Generator:
        """A fresh numpy Generator for this seed (``stream`` separates independent uses)."""
        return np.random.default_rng([self.seed, stream])

    def rank(
        self, model: Recommender, users: np.ndarray, history: History, k: int
    ) -> np.ndarray:
        """``model``'s top-``k`` item indices for ``users`` on ``history``: int64 (len(users),
        k), short rows padded with ``bench.ranking.PAD`` (-1). Ranked exactly as the runner
        ranks a model's test users (``bench.ranking.rank_users``): ``history.matrix`` items
        masked, NaN never returned, ties by ``tie_rank``, only ``history.candidates`` when
        set, in batches within ``batch_budget_mb``."""
        if self.tie_rank is None:
            raise ValueError(
                "FitContext.rank needs the split's tie order: "
                "FitContext(tie_rank=bench.ranking.tie_ranks(data.item_ids), ...)"
            )
        users = np.asarray(users, dtype=np.int64)

        def score(batch: np.ndarray) -> np.ndarray:
            scores = np.asarray(model.score(batch, history), dtype=np.float64)
            if history.candidates is None:
                return scores
            return restrict(scores, history.candidates[batch])

        rec, _, _ = rank_users(
            score, users, k, history.matrix, history.n_items, self.batch_budget_mb,
            tie_rank=self.tie_rank,
        )
        return rec

    def torch_generator(self, stream: int = 0):  # pragma: no cover - trivial
        import torch

        g = torch.Generator(device="cpu")
        g.manual_seed(int(np.random.SeedSequence([self.seed, stream]).generate_state(1)[0]))
        return g


class Recommender(ABC):
    """Base class of every model. Subclasses set ``Config`` to a frozen dataclass."""

    Config: ClassVar[type] = dataclasses.make_dataclass("Config", [], frozen=True)
    #: the registry name, used in error messages
    name: ClassVar[str] = ""

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str = "") -> Recommender:
        """Validate ``params`` (from ``conf/model/<name>.yaml`` + overrides) into ``Config``."""
        return cls(validate_params(cls.Config, dict(params or {}), where or cls.name))

    @abstractmethod
    def fit(self, data: ModelData, ctx: FitContext) -> None:
        """Learn from ``data.train`` (``data.valid`` only for early stopping)."""

    @abstractmethod
    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        """Scores of shape (len(users), n_items), float; higher is better.

        NaN means "cannot score": such items are never recommended. The harness masks the
        user's ``history`` items itself, so models need not.
        """

    def n_parameters(self) -> int:
        """Number of learned parameters (0 for memory-based models unless they store weights)."""
        return 0

    def refit_params(self) -> dict[str, Any]:
        """Parameter overrides for a refit on train+valid (``eval.fit_data=train+valid``),
        chosen by this fit on train: e.g. ``{"epochs": 7}`` when early stopping on valid picked
        epoch 7. The runner builds a fresh model with the overrides and fits it without
        validation. Nothing to choose for most models."""
        return {}

    def start_latency_pass(self) -> RemoteCalls | None:
        """Called by the runner once the evaluation's scoring is done, before it times
        requests: a model that caches answers (an LLM's replay cache) must compute the timed
        requests for real from here on. A model whose scoring calls a remote, possibly paid,
        API returns ``RemoteCalls`` (what it calls, the requests and users so far): the runner
        then bounds the latency pass (``latency.remote_requests``) and announces its extra
        calls before making them. Most models do nothing and return None."""
        return None

    def report(self) -> ModelReport:
        """What this model adds to its run's record: model metrics, artifacts, per-stage
        latency, reference rankings and probes, provenance, family (``ModelReport``).

        The runner calls it right after building the model, before ``fit``, and reads only
        ``provenance`` then (it enters the run key, so it must not depend on the fit); and
        again after the evaluation and the latency pass, for everything else. Default: an
        empty report."""
        return ModelReport()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        old = sorted(set(vars(cls)) & _REPLACED_HOOKS)
        if old:
            raise TypeError(
                f"{cls.__qualname__}: {', '.join(old)} is no longer called by the harness; "
                f"return it from report() as a ModelReport field (bench.models.report)"
            )


#: the hooks ``report()`` replaced (and ``remote_calls``, now ``start_latency_pass``'s value);
#: a model still defining one would lose what it reports without a word
_REPLACED_HOOKS = frozenset(
    {"provenance", "extra_metrics", "artifacts", "stage_latency_ms", "reference_rankings",
     "remote_calls"}
)


def validate_params(config_cls: type, params: dict[str, Any], where: str) -> Any:
    """Build the frozen config, with a one-line error naming an unknown or mistyped parameter."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    for key in params:
        if key not in fields:
            raise ConfigError(
                f"unknown parameter '{key}' for model '{where}'{did_you_mean(key, fields)}; "
                f"valid: {', '.join(sorted(fields)) or '(none)'}"
            )
    coerced = {k: _coerce(v, fields[k], where) for k, v in params.items()}
    return config_cls(**coerced)


def _coerce(value: Any, f: dataclasses.Field, where: str) -> Any:
    want = f.type if isinstance(f.type, type) else None
    if want is None:
        name = str(f.type)
        want = {"int": int, "float": float, "bool": bool, "str": str}.get(name)
    if want is None or value is None:
        return _freeze(value)
    if want is bool and not isinstance(value, bool):
        raise ConfigError(
            f"model '{where}': parameter '{f.name}' must be true/false, got {value!r}"
        )
    if want is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if want is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if want is str and isinstance(value, str):
        return value
    if isinstance(value, want):
        return value
    raise ConfigError(
        f"model '{where}': parameter '{f.name}' must be {want.__name__}, got {value!r}"
    )


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value
