"""Input checks and helpers shared by the classical baselines."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import polars as pl
import scipy.sparse as sp

from bench.data.indexing import to_csr
from bench.errors import ConfigError
from bench.models.base import History, ModelData

T = TypeVar("T")


def config_error(model: str, message: str) -> ConfigError:
    """A one-line ConfigError naming the model (``model 'ease': ...``)."""
    return ConfigError(f"model '{model}': {message}")


def check_users(users: np.ndarray, history: History | None, model: str) -> np.ndarray:
    """``users`` as a 1-D int64 array of row indices of ``history``; ValueError otherwise."""
    arr = np.asarray(users)
    if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(
            f"{model}.score: users must be a 1-D array of integer user indices, "
            f"got shape {arr.shape} dtype {arr.dtype}"
        )
    arr = arr.astype(np.int64, copy=False)
    if history is not None and arr.size and (arr.min() < 0 or arr.max() >= history.n_users):
        raise ValueError(
            f"{model}.score: user index out of range [0, {history.n_users}) of the history "
            f"(got {arr.min()}..{arr.max()})"
        )
    return arr


def fitted(value: T | None, model: str) -> T:
    """``value`` (a learned attribute), or RuntimeError if the model was not fitted."""
    if value is None:
        raise RuntimeError(f"{model}: score() called before fit()")
    return value


def check_items(history: History, n_items: int, model: str) -> None:
    """ValueError unless ``history`` has the item count the model was fitted on."""
    if history.n_items != n_items:
        raise ValueError(
            f"{model}.score: history has {history.n_items} items but the model was fitted "
            f"on {n_items}; score with a history of the same split"
        )


def binary_rows(history: History, users: np.ndarray) -> sp.csr_matrix:
    """The users' history rows as a binary float64 CSR (a copy; ``history`` is untouched)."""
    rows = sp.csr_matrix(history.matrix[users], dtype=np.float64, copy=True)
    rows.sum_duplicates()
    rows.eliminate_zeros()
    rows.data[:] = 1.0
    return rows


def train_matrix(data: ModelData) -> sp.csr_matrix:
    """Binary float64 user x item CSR of ``data.train`` (duplicate events count once)."""
    x = to_csr(data.train, data.n_users, data.n_items).astype(np.float64)
    x.sum_duplicates()
    x.sort_indices()
    return x


def distinct_user_counts(train: pl.DataFrame, n_items: int) -> np.ndarray:
    """Per item, the number of distinct users with the item in ``train`` (float64)."""
    pairs = train.select("user_idx", "item_idx").unique()
    return np.bincount(pairs["item_idx"].to_numpy(), minlength=n_items).astype(np.float64)
