"""The one top-k used for every model: seen items masked, NaN never recommended, ties broken
deterministically, memory bounded by user batches.

Tie policy: equal scores are ordered by ``tie_rank`` (``tie_ranks(item_ids)``: the order of the
sha256 of each item id), or by item index when no ``tie_rank`` is given. Not by the id itself:
datasets assign ids in time order, so id order correlates with popularity (MovieLens' low ids are
its most popular films) and would hand a model with constant scores a popularity ranking.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import numpy as np
import scipy.sparse as sp

PAD = -1


def tie_ranks(item_ids) -> np.ndarray:
    """Rank of each item in the order of sha256(item id): a fixed, input-order-free and
    popularity-neutral secondary key for ties (int64 array aligned with ``item_ids``)."""
    digests = [hashlib.sha256(str(i).encode()).digest() for i in item_ids]
    order = sorted(range(len(digests)), key=digests.__getitem__)
    ranks = np.empty(len(digests), dtype=np.int64)
    ranks[order] = np.arange(len(digests))
    return ranks


def topk(
    scores: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    *,
    inplace: bool = False,
    tie_rank: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` item indices and scores per row of ``scores`` (n_rows x n_items).

    - ``exclude`` (n_rows x n_items, CSR): items never returned (a user's seen items).
    - NaN and -inf scores are never returned; rows with fewer eligible items are padded with
      ``PAD`` (-1) and NaN scores.
    - Order: score descending, then ``tie_rank`` (default: item index) ascending.

    Vectorised: one ``np.partition`` finds each row's k-th score; only items at or above it
    (k plus boundary ties) are sorted.
    """
    s = np.asarray(scores, dtype=np.float64)
    if not (inplace and s is scores and s.flags.writeable):
        s = s.copy()
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D (users x items), got shape {s.shape}")
    n_rows, n_items = s.shape
    k = int(min(k, n_items))
    idx = np.full((n_rows, k), PAD, dtype=np.int64)
    val = np.full((n_rows, k), np.nan, dtype=np.float64)
    if n_rows == 0 or k == 0:
        return idx, val
    s[np.isnan(s)] = -np.inf
    if exclude is not None and exclude.nnz:
        ex = exclude.tocoo()
        s[ex.row, ex.col] = -np.inf
    thr = np.partition(s, n_items - k, axis=1)[:, n_items - k]
    rows, cols = np.nonzero((s >= thr[:, None]) & np.isfinite(s))
    vals = s[rows, cols]
    secondary = cols if tie_rank is None else tie_rank[cols]
    order = np.lexsort((secondary, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    pos = np.arange(len(rows)) - starts[rows]
    keep = pos < k
    idx[rows[keep], pos[keep]] = cols[keep]
    val[rows[keep], pos[keep]] = vals[keep]
    return idx, val


def batch_size_for(n_items: int, budget_mb: float = 256.0) -> int:
    """Users per scoring batch so one float64 score block stays within ``budget_mb``
    (the block is copied once inside ``topk``)."""
    return int(max(1, min(4096, budget_mb * 1e6 / (16.0 * max(1, n_items)))))


def batches(users: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(users), size):
        yield users[start : start + size]


def rank_users(
    score_fn: Callable[[np.ndarray], np.ndarray],
    users: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None,
    n_items: int,
    budget_mb: float = 256.0,
    progress: Callable[[int], None] | None = None,
    tie_rank: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score and rank ``users`` in bounded batches: returns (rec, scores, boundary_tie)."""
    size = batch_size_for(n_items, budget_mb)
    recs, vals, ties = [], [], []
    for b in batches(np.asarray(users, dtype=np.int64), size):
        sc = np.asarray(score_fn(b), dtype=np.float64)
        if sc.shape != (len(b), n_items):
            raise ValueError(
                f"model returned scores of shape {sc.shape}, expected {(len(b), n_items)}"
            )
        ex = exclude[b] if exclude is not None else None
        i, v = topk(sc, k + 1, ex, inplace=True, tie_rank=tie_rank)
        recs.append(i[:, :k])
        vals.append(v[:, :k])
        ties.append(
            np.isfinite(v[:, k]) & (v[:, k - 1] == v[:, k])
            if v.shape[1] > k
            else np.zeros(len(b), bool)
        )
        if progress:
            progress(len(b))
    if not recs:
        return np.zeros((0, k), np.int64), np.zeros((0, k)), np.zeros(0, bool)
    return np.concatenate(recs), np.concatenate(vals), np.concatenate(ties)
