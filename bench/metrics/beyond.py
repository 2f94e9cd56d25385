"""Beyond-accuracy kernels: popularity, long tail, coverage, concentration, diversity, serendipity.

Popularity ``pop(i)`` = distinct train users of item i; catalog ``C`` = items with pop > 0;
short head ``H`` = the most popular items (ties by item index = item id order) whose
interactions together first reach 80 % of train interactions; long tail ``T = C - H``.

Per-list metrics return one value per user (NaN where the list is undefined for the metric,
e.g. an empty list for a mean over the list); catalog metrics accumulate exposures over all
users and return one number. Recommendation matrices are int64, -1 = padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

SHORT_HEAD_SHARE = 0.8
RECBOLE_TAIL_RATIO = 0.1


@dataclass(frozen=True)
class Popularity:
    """Item statistics of ``train``. Arrays have ``n_items + 1`` cells; the last is padding."""

    pop: np.ndarray  # float64, distinct train users per item
    in_catalog: np.ndarray  # bool
    in_head: np.ndarray  # bool
    in_tail: np.ndarray  # bool, C - H
    in_recbole_tail: np.ndarray  # bool, RecBole TailPercentage tail
    order: np.ndarray  # int64 (n_items,), items by pop desc, ties by index
    n_train_users: int

    @property
    def n_catalog(self) -> int:
        return int(self.in_catalog.sum())


def popularity(train: sp.csr_matrix) -> Popularity:
    """Popularity, catalog, short head/long tail of a train matrix (duplicates count once)."""
    t = train.tocsr()
    t.sum_duplicates()
    nz = t.data != 0
    n_items = t.shape[1]
    pop = np.bincount(t.indices[nz], minlength=n_items).astype(np.float64)
    order = np.lexsort((np.arange(n_items), -pop))
    total = pop.sum()
    cum = np.cumsum(pop[order])
    n_head = int(np.searchsorted(cum, SHORT_HEAD_SHARE * total - 1e-9 * total)) + 1 if total else 0
    head = np.zeros(n_items + 1, dtype=bool)
    head[order[:n_head]] = True
    cat = np.append(pop > 0, False)
    ascending = np.lexsort((np.arange(n_items), pop))
    ascending = ascending[pop[ascending] > 0]
    rb_tail = np.zeros(n_items + 1, dtype=bool)
    rb_tail[ascending[: max(int(len(ascending) * RECBOLE_TAIL_RATIO), 1)]] = len(ascending) > 0
    users_with_train = int(np.count_nonzero(np.diff(t.indptr)))
    return Popularity(
        pop=np.append(pop, 0.0),
        in_catalog=cat,
        in_head=head & cat,
        in_tail=cat & ~head,
        in_recbole_tail=rb_tail,
        order=order,
        n_train_users=users_with_train,
    )


def list_lengths(rec: np.ndarray, k: int) -> np.ndarray:
    """Number of real (non-padding) items in each top-k list."""
    return np.count_nonzero(rec[:, :k] >= 0, axis=1)


def item_values(p: Popularity) -> dict[str, np.ndarray]:
    """Per-item values (with the padding cell = 0) whose list sums give the list metrics."""
    info = -np.log2((p.pop + 1.0) / (p.n_train_users + 1.0))
    info[-1] = 0.0
    return {
        "novelty": info,
        "arp": p.pop,
        "tail": p.in_tail.astype(np.int8),
        "recbole_tail": p.in_recbole_tail.astype(np.int8),
    }


def list_sums(values: np.ndarray, rec: np.ndarray, ks: Sequence[int]) -> dict[int, np.ndarray]:
    """sum over the top-k of values[item] for every k, from one gather at the largest k.

    Summed left to right (``cumsum``): numpy's SIMD pairwise ``sum`` can round differently
    with the array's memory alignment, which would make per-user values differ between runs.
    """
    width = min(max(ks), rec.shape[1])
    g = np.cumsum(values[rec[:, :width]], axis=1, dtype=np.float64)
    return {k: g[:, min(k, width) - 1] if width else np.zeros(len(rec)) for k in ks}


def _mean(sums: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(lengths > 0, sums / np.maximum(lengths, 1), np.nan)


def list_metrics(p: Popularity, rec: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-user list metrics of popularity at every k (keys ``<name>_at_<k>``).

    - novelty@k = mean over the top-k of -log2((pop(i)+1)/(n_train_users+1)) (Zhou et al.,
      PNAS 2010);
    - arp@k = mean over the top-k of pop(i) (Abdollahpouri et al., FLAIRS 2019);
    - aplt@k = |top-k in T| / |top-k|; aclt@k = |top-k in T| (Abdollahpouri, Burke &
      Mobasher, FLAIRS 2019; Elliot);
    - tail_percentage@k = share of the top-k in RecBole's tail (bottom 10 % of C by count).

    Means are over the real items of the (possibly shorter) list; an empty list gives NaN.
    """
    full = list_lengths(rec, rec.shape[1])
    lengths = {k: np.minimum(full, k) for k in ks}  # padding is trailing
    sums = {name: list_sums(v, rec, ks) for name, v in item_values(p).items()}
    out: dict[str, np.ndarray] = {}
    for k in ks:
        n = lengths[k]
        out[f"novelty_at_{k}"] = _mean(sums["novelty"][k], n)
        out[f"arp_at_{k}"] = _mean(sums["arp"][k], n)
        out[f"aplt_at_{k}"] = _mean(sums["tail"][k], n)
        out[f"aclt_at_{k}"] = sums["tail"][k]
        out[f"tail_percentage_at_{k}"] = _mean(sums["recbole_tail"][k], n)
    return out


def exposure(p: Popularity, rec: np.ndarray, ks: Sequence[int]) -> dict[int, np.ndarray]:
    """Top-k exposure count of every item (n_items,), all users together, for every k.

    One pass over the columns: the counts at k add the columns between the previous k and k.
    """
    n_items = len(p.pop) - 1
    total = np.zeros(n_items + 1, dtype=np.float64)
    out, start = {}, 0
    for k in sorted(ks):
        stop = min(k, rec.shape[1])
        if stop > start:  # shift by one so the -1 padding counts in cell 0, then drop it
            total += np.bincount((rec[:, start:stop] + 1).ravel(), minlength=n_items + 1)
        out[k] = total[1:].copy()
        start = max(start, stop)
    return out


def coverage(p: Popularity, counts: np.ndarray) -> float:
    """|items of C recommended in some top-k| / |C| (Ge et al., RecSys 2010)."""
    return float(np.count_nonzero(counts[p.in_catalog[:-1]])) / max(p.n_catalog, 1)


def gini(p: Popularity, counts: np.ndarray) -> float:
    """sum_j (2j-n-1) c_j / (n sum c) over C, c ascending, zeros included (RecBole GiniIndex)."""
    c = np.sort(counts[p.in_catalog[:-1]])
    n, total = len(c), c.sum()
    if n == 0 or total == 0:
        return float("nan")
    j = np.arange(1, n + 1, dtype=np.float64)
    return float(np.sum((2 * j - n - 1) * c) / (n * total))


def entropy(p: Popularity, counts: np.ndarray) -> float:
    """-sum p_i log2 p_i of the top-k exposure shares of the items of C (Shannon 1948)."""
    c = counts[p.in_catalog[:-1]]
    c = c[c > 0]
    if c.sum() == 0:
        return float("nan")
    q = c / c.sum()
    return float(-math.fsum(q * np.log2(q)))


# ------------------------------------------------------------------ intra-list diversity


@dataclass(frozen=True)
class GenreTable:
    """Items mapped to their distinct genre set ("combo"); ``dist`` = Jaccard distance of combos.

    ``combo`` has ``n_items + 1`` cells (the last for -1 padding); code ``m`` = "no genres".
    ``dist`` is (m+1, m+1) with zeros in the last row and column.
    """

    combo: np.ndarray
    dist: np.ndarray
    m: int


def genre_table(
    item_genres: Sequence[frozenset[str] | set[str] | None], n_items: int
) -> GenreTable:
    """Index the distinct genre sets of the items (an item without genres gets the code ``m``)."""
    ids: dict[frozenset[str], int] = {}
    codes = np.empty(n_items + 1, dtype=np.int64)
    for i in range(n_items):
        g = item_genres[i] if i < len(item_genres) else None
        codes[i] = ids.setdefault(frozenset(g), len(ids)) if g else -1
    m = len(ids)
    codes[codes < 0] = m
    codes[n_items] = m
    sets = list(ids)
    genres = sorted(set().union(*sets)) if sets else []
    onehot = np.zeros((m, len(genres)), dtype=np.float64)
    gpos = {g: j for j, g in enumerate(genres)}
    for c, s in enumerate(sets):
        onehot[c, [gpos[g] for g in s]] = 1.0
    inter = onehot @ onehot.T
    size = onehot.sum(axis=1)
    union = size[:, None] + size[None, :] - inter
    dist = np.zeros((m + 1, m + 1), dtype=np.float64)
    dist[:m, :m] = 1.0 - inter / np.maximum(union, 1.0)
    return GenreTable(codes, dist, m)


def ild(g: GenreTable, rec: np.ndarray, ks: Sequence[int]) -> dict[int, np.ndarray]:
    """ILD@k = mean over pairs i<j of the top-k of 1 - Jaccard(genres_i, genres_j).

    Ziegler et al., WWW 2005. Items without genres are left out of the pairs; a list with
    fewer than 2 items with genres gets NaN (skipped in the mean). One pass over the pairs of
    the longest cut-off serves every k: pairs are ordered by their larger position, so the
    pairs of the top-k are a prefix. Cost O(n * k_max^2), in chunks of users.
    """
    width = min(max(ks), rec.shape[1])
    n = rec.shape[0]
    jj, ii = np.tril_indices(width, -1)  # jj > ii, ordered by jj
    ends = sorted({min(k, width) * (min(k, width) - 1) // 2 for k in ks})
    flat_dist = g.dist.ravel()
    stride = g.m + 1
    codes = g.combo[rec[:, :width]].astype(np.intp)
    has = codes < g.m
    sums = {e: np.zeros(n, dtype=np.float64) for e in ends}
    chunk = max(1, 2_000_000 // max(len(ii), 1))
    for lo in range(0, n, chunk):
        c = codes[lo : lo + chunk]
        flat = c[:, jj]
        flat *= stride
        flat += c[:, ii]
        # left-to-right running sums: bit-identical whatever the memory alignment
        d = np.cumsum(flat_dist.take(flat), axis=1)
        for e in ends:  # pairs of the top-k are a prefix
            if e:
                sums[e][lo : lo + len(c)] = d[:, e - 1]
    out = {}
    for k in ks:
        kk = min(k, width)
        nv = np.count_nonzero(has[:, :kk], axis=1)
        pairs = nv * (nv - 1) / 2.0
        total = sums[kk * (kk - 1) // 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[k] = np.where(pairs > 0, total / np.maximum(pairs, 1.0), np.nan)
    return out


# ------------------------------------------------------------------ serendipity


def baseline_membership(
    p: Popularity,
    seen_rows: sp.csr_matrix,
    items: np.ndarray,
    rows: np.ndarray,
    ks: Sequence[int],
) -> dict[int, np.ndarray]:
    """For (row, item) pairs: is the item in the popularity baseline's top-k of that row's user?

    The baseline ranks items by pop desc (ties by index) and drops the user's seen items. An
    item at baseline position q (0-based, in ``p.order``) is in the top-k iff it is unseen and
    q - #(seen items before q) < k. Only positions below k + |seen_u| can qualify, so the seen
    entries with a larger position are never looked at. Chunked by users; no per-user loop.
    """
    n_items = len(p.order)
    rpos = np.empty(n_items + 1, dtype=np.int64)
    rpos[p.order] = np.arange(n_items)
    rpos[n_items] = n_items  # padding: never in the baseline
    qpos = rpos[items]
    out = {k: np.zeros(len(items), dtype=bool) for k in ks}
    if len(items) == 0:
        return out
    seen = seen_rows.tocsr()
    seen.sum_duplicates()
    n_seen = np.diff(seen.indptr)
    # only queries with min(ks) <= q < max(ks) + |seen_u| need the count of seen items before
    # q; every query needs to know whether its item is seen: keep entries up to each query
    amb = (qpos >= min(ks)) & (qpos < max(ks) + n_seen[rows]) & (qpos < n_items)
    rowmax = np.full(seen.shape[0], -1, dtype=np.int64)
    np.maximum.at(rowmax, rows, np.where(amb, qpos, np.minimum(qpos, n_items - 1)))
    sp_row = np.repeat(np.arange(seen.shape[0]), n_seen)
    sp_pos = rpos[seen.indices]
    stride = n_items + 1
    key_seen = sp_row * stride + sp_pos
    key_seen = np.sort(key_seen[sp_pos <= rowmax[sp_row]])
    key_q = rows * stride + qpos
    at = np.searchsorted(key_seen, key_q, side="left")
    before = at - np.searchsorted(key_seen, rows * stride, side="left")
    found = np.zeros(len(items), dtype=bool)
    if len(key_seen):
        found = key_seen[np.minimum(at, len(key_seen) - 1)] == key_q
    for k in ks:
        out[k] = (~found) & (qpos < n_items) & (qpos - before < k)
    return out
