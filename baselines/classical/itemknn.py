"""Item-based k-nearest-neighbours on the binary train matrix (Sarwar et al., WWW 2001;
Deshpande & Karypis, TOIS 2004), with similarity shrinkage and top-k pruning per item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from baselines.classical._common import (
    binary_rows,
    check_items,
    check_users,
    config_error,
    fitted,
    train_matrix,
)
from bench.errors import did_you_mean
from bench.models.base import FitContext, History, ModelData, Recommender

#: dense entries per similarity block: 8e6 float64 = 64 MB, about 3 such buffers at a time
BLOCK_ENTRIES = 8_000_000


def _cosine(co: np.ndarray, n_rows: np.ndarray, n_all: np.ndarray, shrink: float) -> np.ndarray:
    """|U_i & U_j| / (sqrt|U_i| sqrt|U_j| + shrink)."""
    return np.sqrt(n_rows)[:, None] * np.sqrt(n_all)[None, :] + shrink


def _jaccard(co: np.ndarray, n_rows: np.ndarray, n_all: np.ndarray, shrink: float) -> np.ndarray:
    """|U_i & U_j| / (|U_i| + |U_j| - |U_i & U_j| + shrink)."""
    return n_rows[:, None] + n_all[None, :] - co + shrink


#: similarity name -> denominator of the co-occurrence count |U_i & U_j|
SIMILARITIES: dict[str, Callable[..., np.ndarray]] = {"cosine": _cosine, "jaccard": _jaccard}


def _topk_rows(sim: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k largest positive entries of each row; ties go to the lower column
    index (explicit, so the neighbourhood never depends on the partition algorithm)."""
    keep = sim > 0
    if k >= sim.shape[1]:
        return keep
    kth = -np.partition(-sim, k - 1, axis=1)[:, k - 1 : k]
    above = sim > kth
    tied = sim == kth
    room = k - above.sum(axis=1, keepdims=True)
    return keep & (above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= room)))


def item_similarity(
    x: sp.csr_matrix,
    k: int,
    shrink: float = 0.0,
    similarity: str = "cosine",
    block_size: int | None = None,
) -> sp.csr_matrix:
    """Sparse item-item similarity S (n_items x n_items) of the binary user x item ``x``.

    Column j of S holds item j's k most similar other items (self-similarity excluded, zero
    similarities dropped), so ``x_u @ S`` scores item j by summing the similarities of u's
    items that are among j's neighbours. Computed in blocks of target items: only one
    (block x n_items) dense float64 block exists at a time, never n_items^2.
    """
    n_items = x.shape[1]
    xt = sp.csr_matrix(x.T)
    counts = np.asarray(x.sum(axis=0), dtype=np.float64).ravel()
    denominator = SIMILARITIES[similarity]
    step = block_size or max(1, BLOCK_ENTRIES // max(n_items, 1))
    rows, cols, vals = [], [], []
    for start in range(0, n_items, step):
        stop = min(start + step, n_items)
        co = (xt[start:stop] @ x).toarray()  # (targets j, neighbours i) co-occurrence counts
        den = denominator(co, counts[start:stop], counts, shrink)
        # den >= 0 for both similarities, so where den == 0 the output keeps 0 (0/0 -> 0)
        sim = np.divide(co, den, out=den, where=den > 0)
        del co
        sim[np.arange(stop - start), np.arange(start, stop)] = 0.0
        j, i = np.nonzero(_topk_rows(sim, k))
        rows.append(i)
        cols.append(j + start)
        vals.append(sim[j, i])
    cat = lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt)
    s = sp.csr_matrix(
        (cat(vals, np.float64), (cat(rows, np.int64), cat(cols, np.int64))),
        shape=(n_items, n_items),
    )
    s.sort_indices()
    return s


class ItemKNN(Recommender):
    """Item-item kNN: score(u, j) = sum over u's history items i of S[i, j].

    S is the similarity of the binary train matrix (``cosine``: co-occurrences over
    sqrt(n_i n_j) + shrink; ``jaccard``: over n_i + n_j - co + shrink), pruned to the ``k``
    largest entries of each column (ties to the lower item index), self-similarity removed.
    Scoring uses the ``history`` passed to ``score`` (train + valid at test time), binarised.
    Items never in train have no neighbours and score 0; users with no history score 0.
    """

    name = "itemknn"

    @dataclass(frozen=True)
    class Config:
        #: neighbours kept per item (RecBole uses 100, LensKit 20; 50 is the middle ground)
        k: int = 50
        #: added to the similarity denominator; damps similarities built on few co-raters
        shrink: float = 0.0
        #: ``cosine`` or ``jaccard``
        similarity: str = "cosine"

        def __post_init__(self) -> None:
            if self.k < 1:
                raise config_error("itemknn", f"k must be >= 1, got {self.k}")
            if not self.shrink >= 0:
                raise config_error("itemknn", f"shrink must be >= 0, got {self.shrink}")
            if self.similarity not in SIMILARITIES:
                raise config_error(
                    "itemknn",
                    f"unknown similarity '{self.similarity}'"
                    f"{did_you_mean(self.similarity, SIMILARITIES)}; "
                    f"available: {', '.join(sorted(SIMILARITIES))}",
                )

    def __init__(self, config: Config | None = None) -> None:
        super().__init__(config)
        self.similarity: sp.csr_matrix | None = None

    def fit(self, data: ModelData, ctx: FitContext) -> None:
        c = self.config
        self.similarity = item_similarity(train_matrix(data), c.k, c.shrink, c.similarity)

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        s = fitted(self.similarity, self.name)
        check_items(history, s.shape[0], self.name)
        users = check_users(users, history, self.name)
        # csr @ csr is computed row by row: a user's scores do not depend on the batch
        return np.asarray((binary_rows(history, users) @ s).toarray(), dtype=np.float64)

    def n_parameters(self) -> int:
        return 0 if self.similarity is None else int(self.similarity.nnz)
