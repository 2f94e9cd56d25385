"""Who is evaluated and against what: the evaluation protocol of a run (``eval.*``).

- ``eval.users`` = ``warm`` (default) | ``all`` | ``cold``: the population of the headline
  keys. A test user is *warm* when it has at least one interaction in the data the model was
  fitted on (``train``, or ``train+valid`` after a refit), *cold* otherwise. Per-user metrics
  are also logged per segment (``<key>/segment/warm|cold``).
- ``eval.fit_data`` = ``train`` (default) | ``train+valid``: with ``train+valid`` the model is
  fitted on train (early stopping and the ``valid/`` metrics on valid), then a fresh model is
  refitted on train+valid with what the first fit chose (``Recommender.refit_params``, e.g.
  RecBole's best epoch count) and scores the test set, so every model has seen every user whose
  history it reads at test time.
- ``eval.candidates`` = ``full`` (default) | ``sampled``: with ``sampled`` each user ranks its
  relevant items plus ``eval.n_negatives`` negatives drawn ``uniform``-ly or by train
  ``popularity`` (``bench.candidates``); sampled metrics are not comparable to full ranking
  (Krichene & Rendle, KDD 2020).

Tags: ``bench.eval_users``, ``bench.fit_data``, ``bench.candidates``; leaderboards and reports
never mix their values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from bench.errors import ConfigError, did_you_mean

USERS = ("warm", "all", "cold")
SEGMENTS = ("warm", "cold")
FIT_DATA = ("train", "train+valid")
CANDIDATES = ("full", "sampled")
NEGATIVES = ("uniform", "popularity")
#: the tags that say who was evaluated against what (never mixed in one comparison)
PROTOCOL_TAGS = ("eval_users", "fit_data", "candidates")


def _choice(ev: Mapping[str, Any], key: str, options: tuple[str, ...]) -> str:
    value = ev.get(key, options[0])
    if not isinstance(value, str) or value not in options:
        hint = did_you_mean(str(value), options) if isinstance(value, str) else ""
        raise ConfigError(
            f"eval.{key} must be one of {', '.join(options)}, got {value!r}{hint} "
            f"(e.g. eval.{key}={options[0]})"
        )
    return value


@dataclass(frozen=True)
class EvalProtocol:
    """The ``eval`` group's protocol knobs, checked (one-line ``ConfigError`` otherwise)."""

    users: str = "warm"
    fit_data: str = "train"
    candidates: str = "full"
    n_negatives: int = 100
    negatives: str = "uniform"

    @classmethod
    def from_mapping(cls, ev: Mapping[str, Any] | None) -> EvalProtocol:
        ev = ev or {}
        n = ev.get("n_negatives", 100)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(
                f"eval.n_negatives must be an integer >= 1, got {n!r} (e.g. eval.n_negatives=100)"
            )
        return cls(
            users=_choice(ev, "users", USERS),
            fit_data=_choice(ev, "fit_data", FIT_DATA),
            candidates=_choice(ev, "candidates", CANDIDATES),
            n_negatives=n,
            negatives=_choice(ev, "negatives", NEGATIVES),
        )

    @classmethod
    def for_run(cls, cfg: Mapping[str, Any]) -> EvalProtocol:
        """The protocol of a resolved run config, checked against its split: a refit on
        train+valid needs a test history that includes valid."""
        proto = cls.from_mapping(cfg.get("eval"))
        history = (cfg.get("split") or {}).get("test_history", "train+valid")
        if proto.fit_data == "train+valid" and history != "train+valid":
            raise ConfigError(
                f"eval.fit_data=train+valid needs split.test_history=train+valid (got "
                f"{history!r}): a model refitted on valid must have valid masked at test time"
            )
        return proto

    @property
    def sampled(self) -> bool:
        return self.candidates == "sampled"

    @property
    def candidates_tag(self) -> str:
        """``full`` or ``sampled-<n_negatives>-<negatives>``."""
        return f"sampled-{self.n_negatives}-{self.negatives}" if self.sampled else "full"

    def tags(self) -> dict[str, str]:
        return {
            "bench.eval_users": self.users,
            "bench.fit_data": self.fit_data,
            "bench.candidates": self.candidates_tag,
        }


def warm_mask(fit_matrix: sp.csr_matrix) -> np.ndarray:
    """Per user index: at least one interaction in the data the model was fitted on."""
    return np.diff(fit_matrix.indptr) > 0


def segments(users: np.ndarray, warm: np.ndarray) -> dict[str, np.ndarray]:
    """``{"warm": users with fit data, "cold": the others}``, order of ``users`` kept."""
    users = np.asarray(users, dtype=np.int64)
    is_warm = warm[users] if len(users) else np.zeros(0, dtype=bool)
    return {"warm": users[is_warm], "cold": users[~is_warm]}


def population(users: np.ndarray, warm: np.ndarray, choice: str) -> np.ndarray:
    """The users of ``users`` in the population ``choice`` (warm | all | cold)."""
    users = np.asarray(users, dtype=np.int64)
    if choice == "all":
        return users
    return segments(users, warm)[choice]
