"""Accuracy kernels: which recommended items are hits, and the list metrics computed from them.

Notation (contract, "Metric definitions (version 1)"): for an evaluated user, ``R`` is the set
of test items, ``L`` the ranked list, ``h_i = 1`` if ``L[i]`` is in ``R`` (1-based ``i``).

Hits are sparse (a few per list), so every kernel works on the *hit list*: the row, 0-based
position and within-row ordinal of each hit, in row-major order. The only dense passes over
the ``(n_eval, K)`` recommendation matrix are the membership test and ``flatnonzero``; each
metric is then one ``bincount`` over the hits. No Python loop per user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

#: bytes of the dense membership bitmap built per chunk of users: small enough to stay in the
#: CPU cache (4x faster than a 48 MB bitmap), large enough to amortise the per-chunk overhead
_BITMAP_BYTES = 2**20
_MIN_CHUNK_ROWS = 64
#: bytes of rec range-checked at a time (cache-sized, see ``_membership``)
_CHECK_BYTES = 512 * 2**10


#: first-hit position of a list without hit: beyond every cut-off, even k > list width
NO_HIT = 2**62


@dataclass(frozen=True)
class Hits:
    """The hits of a batch of lists, in row-major order (row, then position).

    ``row``/``col``: list index and 0-based position of each hit; ``ordinal``: 1-based count of
    hits in the same list up to and including this one; ``n_rel``: ``|R|`` per list;
    ``first_col``: position of each list's first hit (``NO_HIT`` if none).
    """

    row: np.ndarray
    col: np.ndarray
    ordinal: np.ndarray
    n_rel: np.ndarray
    first_col: np.ndarray
    width: int

    def upto(self, k: int) -> np.ndarray:
        """Boolean mask of the hits within the top-k."""
        return self.col < k


def hit_mask(rec: np.ndarray, truth_rows: sp.csr_matrix) -> np.ndarray:
    """Dense boolean ``(n, K)``: ``rec[u, i]`` is in row ``u`` of ``truth_rows`` (-1 never hits).

    Membership by a chunked dense bitmap: scatter the truth entries of a chunk of users, gather
    at the recommended items, then clear only what was set (O(nnz + n*K), no sort). Chunks are
    sized to stay in the CPU cache. Raises ValueError for an item index outside [-1, n_items).
    """
    out = np.zeros(rec.shape, dtype=bool)
    for _ in _membership(rec, truth_rows, out):
        pass
    return out


def _membership(rec: np.ndarray, truth_rows: sp.csr_matrix, out: np.ndarray | None = None):
    """Yield ``(lo, mask)`` per block of rows: ``mask`` is ``hit_mask``'s rows ``lo:lo+len``.

    ``out``: the full ``(n, K)`` mask to fill (the masks are views of it); without it, one
    block-sized buffer is reused (each mask is valid until the next one is yielded).

    Rows go by blocks of about ``_CHECK_BYTES`` of ``rec`` (a whole number of bitmap chunks):
    each block is range-checked and offset into bitmap indices at once, while it is in cache
    (a large rec is read from memory once, not three times), then gathered chunk by chunk.
    """
    n, width = rec.shape
    n_items = truth_rows.shape[1]
    if n == 0 or width == 0:
        return
    row_len = n_items + 1  # one always-False "sink" cell ends every row
    chunk = min(n, max(_MIN_CHUNK_ROWS, _BITMAP_BYTES // row_len))
    span = min(n, chunk * max(1, _CHECK_BYTES // max(1, chunk * width * rec.itemsize)))
    # -1 padding lands in the previous row's sink (row 0: the last cell, also a sink)
    bitmap = np.zeros(chunk * row_len, dtype=bool)
    # bitmap offset of each row of a block: blocks and chunks start at multiples of chunk
    row_start = (np.arange(span, dtype=np.intp) % chunk) * row_len
    offsets = row_start[:, None]
    pos = np.empty((span, width), dtype=np.intp)  # reused: no temporary per block
    buf = np.empty((span, width), dtype=bool) if out is None else None
    indptr, indices = truth_rows.indptr, truth_rows.indices
    n_rel = np.diff(indptr)
    for blo in range(0, n, span):
        bhi = min(n, blo + span)
        block = rec[blo:bhi]
        if block.min() < -1 or block.max() >= n_items:
            raise ValueError(f"item index out of range [-1, {n_items}) in rec (-1 = padding)")
        np.add(block, offsets[: bhi - blo], out=pos[: bhi - blo], casting="unsafe")
        masks = buf[: bhi - blo] if buf is not None else out[blo:bhi]  # type: ignore[index]
        # bitmap index of the block's truth entries: row offset within its chunk + item
        base = indptr[blo]
        flat_block = np.repeat(row_start[: bhi - blo], n_rel[blo:bhi]) + indices[base : indptr[bhi]]
        for lo in range(blo, bhi, chunk):
            hi = min(bhi, lo + chunk)
            flat = flat_block[indptr[lo] - base : indptr[hi] - base]
            bitmap[flat] = True
            # intp indices: no conversion inside take; mode="wrap": unbuffered, and the -1 of
            # row 0 wraps to the last cell (a sink)
            np.take(bitmap, pos[lo - blo : hi - blo], out=masks[lo - blo : hi - blo], mode="wrap")
            bitmap[flat] = False
        yield blo, masks


def hits_from_mask(
    mask: np.ndarray, rec: np.ndarray, n_rel: np.ndarray, n_items: int | None = None
) -> Hits:
    """The hit list of a membership mask. A repeated item in one list hits only once (first)."""
    flat = np.flatnonzero(mask)
    stride = (int(rec.max()) + 1 if len(flat) else 1) if n_items is None else n_items
    return _hits_from_flat(flat, rec.ravel()[flat], rec.shape, n_rel, stride)


def _hits_from_flat(
    flat: np.ndarray, items: np.ndarray, shape: tuple[int, int], n_rel: np.ndarray, stride: int
) -> Hits:
    """``hits_from_mask`` from the mask's ``flatnonzero`` (row-major flat indices) and the
    items at those positions; ``stride`` > every item index."""
    n, width = shape
    row, col = np.divmod(flat, width) if width else (flat, flat)
    if len(flat):
        keys = row * stride + items
        srt = np.sort(keys, kind="stable")  # nearly sorted (row-major): timsort is 10x faster
        if (srt[1:] == srt[:-1]).any():  # a repeated item: keep its first position
            _, first = np.unique(keys, return_index=True)
            keep = np.sort(first)
            row, col = row[keep], col[keep]
    counts = np.bincount(row, minlength=n)
    start = np.cumsum(counts) - counts  # index of each list's first hit
    ordinal = np.arange(len(row), dtype=np.int64) - start[row] + 1
    first_col = np.full(n, NO_HIT, dtype=np.int64)
    has = counts > 0
    first_col[has] = col[start[has]]
    return Hits(row, col, ordinal, np.asarray(n_rel, dtype=np.float64), first_col, width)


def compute_hits(rec: np.ndarray, truth_rows: sp.csr_matrix) -> Hits:
    """Hits of ``rec`` (int64, -1 padded) against the truth rows of the same users."""
    return compute_hits_and_empty(rec, truth_rows)[0]


def compute_hits_and_empty(rec: np.ndarray, truth_rows: sp.csr_matrix) -> tuple[Hits, np.ndarray]:
    """``compute_hits`` and which lists are empty (first slot is padding), in one pass.

    The mask is never materialised: each block's hits (positions and items) and first slots
    are extracted while the block is in cache.
    """
    n_rel = np.diff(truth_rows.indptr).astype(np.float64)
    n, width = rec.shape
    if width == 0:
        empty = np.ones(n, dtype=bool)
    elif n == 0:
        empty = np.zeros(0, dtype=bool)
    flats, items, firsts = [], [], []
    for lo, mask in _membership(rec, truth_rows):
        block = rec[lo : lo + len(mask)]
        f = np.flatnonzero(mask)
        items.append(block.ravel()[f])
        flats.append(f + lo * width)
        firsts.append(block[:, 0] < 0)
    if firsts:
        empty = np.concatenate(firsts)
    flat = np.concatenate(flats) if flats else np.zeros(0, dtype=np.intp)
    item = np.concatenate(items) if items else np.zeros(0, dtype=rec.dtype)
    return _hits_from_flat(flat, item, rec.shape, n_rel, truth_rows.shape[1]), empty


def _count(h: Hits, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    m = h.upto(k)
    w = None if weights is None else weights[m]
    return np.bincount(h.row[m], weights=w, minlength=len(h.n_rel)).astype(np.float64)


def precision(h: Hits, k: int) -> np.ndarray:
    """P@k = sum_{i<=k} h_i / k (trec_eval ``P_k``; a short list still divides by k)."""
    return _count(h, k) / k


def recall(h: Hits, k: int) -> np.ndarray:
    """R@k = sum_{i<=k} h_i / |R| (trec_eval ``recall_k``). In [0, 1]: hits are distinct."""
    return _count(h, k) / h.n_rel


def hit_rate(h: Hits, k: int) -> np.ndarray:
    """HR@k = 1 if any h_i = 1 for i <= k (Deshpande & Karypis 2004; ranx ``hit_rate``)."""
    return (h.first_col < k).astype(np.float64)


def _discount(width: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, width + 2, dtype=np.float64))


def ndcg(h: Hits, k: int) -> np.ndarray:
    """nDCG@k = sum_{i<=k} h_i/log2(i+1) / sum_{i<=min(|R|,k)} 1/log2(i+1).

    Binary gains; Jarvelin & Kekalainen 2002; trec_eval ``ndcg_cut``, ranx ``ndcg``.
    """
    disc = _discount(max(k, h.width))
    dcg = _count(h, k, disc[h.col])
    ideal = np.concatenate([[0.0], np.cumsum(disc[:k])])
    return dcg / ideal[np.minimum(h.n_rel, k).astype(np.int64)]


def mrr(h: Hits, k: int) -> np.ndarray:
    """RR@k = 1 / rank of the first hit if it is <= k, else 0 (Voorhees 1999; ranx ``mrr``)."""
    fc = h.first_col
    return np.where(fc < k, 1.0 / (fc + 1.0), 0.0)


def average_precision(h: Hits, k: int) -> np.ndarray:
    """AP@k = sum_{i<=k} h_i * P@i / |R| (trec_eval ``map_cut``, ranx ``map``)."""
    return _count(h, k, h.ordinal / (h.col + 1.0)) / h.n_rel


KERNELS = {
    "precision": precision,
    "recall": recall,
    "hit_rate": hit_rate,
    "ndcg": ndcg,
    "mrr": mrr,
    "map": average_precision,
}


def suite(h: Hits, ks) -> dict[str, np.ndarray]:
    """Every kernel of ``KERNELS`` at every k: ``{f"{name}_at_{k}": values}``, k-major.

    The values are bit-identical to calling each kernel (same operations in the same order);
    the hits within the top-k and the hit counts are computed once per k, not once per metric.
    """
    n = len(h.n_rel)
    fc = h.first_col
    inv_rank = 1.0 / (fc + 1.0)  # elementwise, as in ``mrr``
    ap_w = h.ordinal / (h.col + 1.0)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        disc = _discount(max(k, h.width))
        if k >= h.width:  # every hit is within the top-k: no mask
            row, gain, ap = h.row, disc[h.col], ap_w
        else:
            m = h.upto(k)
            row, gain, ap = h.row[m], disc[h.col[m]], ap_w[m]
        count = np.bincount(row, minlength=n).astype(np.float64)
        ideal = np.concatenate([[0.0], np.cumsum(disc[:k])])
        hit = fc < k
        out[f"precision_at_{k}"] = count / k
        out[f"recall_at_{k}"] = count / h.n_rel
        out[f"hit_rate_at_{k}"] = hit.astype(np.float64)
        dcg = np.bincount(row, weights=gain, minlength=n)  # already float64
        out[f"ndcg_at_{k}"] = dcg / ideal[np.minimum(h.n_rel, k).astype(np.int64)]
        out[f"mrr_at_{k}"] = np.where(hit, inv_rank, 0.0)
        out[f"map_at_{k}"] = np.bincount(row, weights=ap, minlength=n) / h.n_rel
    return out
