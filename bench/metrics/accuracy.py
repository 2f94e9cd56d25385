"""Accuracy metrics: which recommended items are hits, and the list metrics computed from them.

Notation (contract, "Metric definitions (version 1)"): for an evaluated user, ``R`` is the set
of test items, ``L`` the ranked list, ``h_i = 1`` if ``L[i]`` is in ``R`` (1-based ``i``).

- P@k = sum_{i<=k} h_i / k (trec_eval ``P_k``; a short list still divides by k).
- R@k = sum_{i<=k} h_i / |R| (trec_eval ``recall_k``). In [0, 1]: hits are distinct.
- HR@k = 1 if any h_i = 1 for i <= k (Deshpande & Karypis 2004; ranx ``hit_rate``).
- nDCG@k = sum_{i<=k} h_i/log2(i+1) / sum_{i<=min(|R|,k)} 1/log2(i+1). Binary gains;
  Jarvelin & Kekalainen 2002; trec_eval ``ndcg_cut``, ranx ``ndcg``.
- RR@k (``mrr``) = 1 / rank of the first hit if it is <= k, else 0 (Voorhees 1999; ranx
  ``mrr``).
- AP@k (``map``) = sum_{i<=k} h_i * P@i / |R| (trec_eval ``map_cut``, ranx ``map``).

-1 padding never hits; a repeated item in one list hits only at its first position (so
recall stays in [0, 1]); an item index outside [-1, n_items) raises ValueError.

Every metric at every k comes from one compiled pass per list (``_kernels.accuracy``): the
user's test items are marked, the list is scanned once and the running hit count, DCG and AP
are read at each cut-off. No per-user Python loop.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from bench.metrics.table import PerUser

METRICS = ("precision", "recall", "hit_rate", "ndcg", "mrr", "map")


@dataclass(frozen=True)
class Accuracy:
    """The accuracy suite of a batch of lists.

    ``table``: one row per key ``<metric>_at_<k>`` (k-major, ``METRICS`` order). Hits at
    positions < max(ks): list r's are ``hits[:, start:start + n_hits[r]]`` (int32 rows:
    0-based position, ascending, and item) with ``start = truth.indptr[users[r]]``.
    ``n_empty``: lists whose first slot is padding. ``top``: the lists' first min(K, max(ks))
    slots, a C-contiguous int32 (n, .) copy (None unless asked for).
    """

    table: PerUser
    hits: np.ndarray
    n_hits: np.ndarray
    n_empty: int
    top: np.ndarray | None


@functools.lru_cache(maxsize=16)
def _discounts(k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """1/log2(i+1) for i = 1..k_max, and the ideal DCG of m hits (m = 0..k_max)."""
    disc = 1.0 / np.log2(np.arange(2, k_max + 2, dtype=np.float64))
    idcg = np.concatenate([[0.0], np.cumsum(disc)])
    disc.flags.writeable = idcg.flags.writeable = False
    return disc, idcg


def evaluate(
    users: np.ndarray,
    rec: np.ndarray,
    truth: sp.csr_matrix,
    ks: Sequence[int],
    keep_top: bool = False,
) -> Accuracy:
    """Every metric at every k for the lists ``rec`` (int64, C order, -1 padded) of ``users``.

    ``truth``: binary, canonical CSR (an item at most once per row); ``ks`` sorted, distinct.
    ``keep_top``: also return a compact copy of the top-max(ks) slots (made in the same pass:
    the passes over the top-k that follow read it much faster than the strided ``rec``).
    """
    from bench.metrics import _kernels

    n = len(users)
    n_items = truth.shape[1]
    disc, idcg = _discounts(ks[-1])
    table = PerUser.allocate([f"{m}_at_{k}" for k in ks for m in METRICS], n)
    hits = np.empty((2, truth.nnz), dtype=np.int32)
    n_hits = np.empty(n, dtype=np.int64)
    top = np.empty((n, min(rec.shape[1], ks[-1])) if keep_top else (0, 0), dtype=np.int32)
    n_empty, bad = _kernels.accuracy(
        users,
        rec,
        *_kernels.csr_arrays(truth),
        n_items,
        np.asarray(ks, dtype=np.int64),
        disc,
        idcg,
        table.values,
        hits,
        n_hits,
        top,
    )
    if bad >= 0:
        raise ValueError(f"item index out of range [-1, {n_items}) in rec (-1 = padding)")
    return Accuracy(table, hits, n_hits, int(n_empty), top if keep_top else None)
