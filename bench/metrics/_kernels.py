"""Compiled per-user kernels of the metrics engine (numba; imported lazily by the engine).

Each kernel makes one pass over the users in order, with the per-user state in registers and
the outputs written as ``(rows, n_users)`` tables (one contiguous row per metric and cut-off).
Cut-offs ``ks`` are sorted and distinct; every quantity is accumulated along the list, so a
value at k is read when the scan reaches position k (the values at every k come from one pass
over the top ``max(ks)``). Sums over users or list positions are sequential, left to right:
the results do not depend on memory alignment or on the number of users in a call.

Signatures are kept few (compiled once, cached on disk by ``cache=True``): integer inputs are
int64, except CSR ``indices`` (uint32 views: unsigned indices skip numba's negative-index
wraparound, which also blocks vectorisation; loops over CSR ranges use unsigned bounds for the
same reason), stored hits (int32) and per-item tables, which use the smallest type that holds
them (int32 counts and ranks, int8 flags): the per-item tables are read at random, so the less
cache they take, the faster the passes.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

_jit = numba.njit(cache=True, nogil=True)


def csr_arrays(m) -> tuple[np.ndarray, np.ndarray]:
    """``indptr`` (int64) and ``indices`` (a uint32 view) of a CSR matrix, as the kernels take
    them (no copy when scipy already stores int64 / int32)."""
    return m.indptr.astype(np.int64, copy=False), _uint32(m.indices)


def _uint32(indices: np.ndarray) -> np.ndarray:
    return indices.astype(np.int32, copy=False).view(np.uint32)


@intrinsic
def _popcount(typingctx, x):
    """Number of set bits of an unsigned 64-bit integer (the ``popcnt`` instruction)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


# ----------------------------------------------------------------------------- accuracy


@_jit
def check_users(users, indptr):
    """Validate the evaluated users against the test rows (CSR ``indptr``), in one pass.

    Returns (status, n_empty_rows, n_given_empty, n_missing): status 0 = valid, 1 = a user
    index out of range, 2 = a user index given twice; n_empty_rows: rows of the test matrix
    without items; n_given_empty: users given whose row is empty; n_missing: users with
    test items that are not given.
    """
    n_users = len(indptr) - 1
    given = np.zeros(n_users, dtype=np.bool_)
    n_given_empty = 0
    for u in users:
        if u < 0 or u >= n_users:
            return 1, 0, 0, 0
        if given[u]:
            return 2, 0, 0, 0
        given[u] = True
        n_given_empty += indptr[u + 1] == indptr[u]
    n_empty_rows, n_missing = 0, 0
    for u in range(n_users):
        empty = indptr[u + 1] == indptr[u]
        n_empty_rows += empty
        n_missing += not empty and not given[u]
    return 0, n_empty_rows, n_given_empty, n_missing


@_jit
def accuracy(users, rec, indptr, indices, n_items, ks, disc, idcg, out, hits, n_hits, top):
    """P, R, HR, nDCG, MRR and AP at every k, and the hits, of each list; one pass per list.

    users (n,): row of ``indptr`` per list; rec (n, K): items, -1 = padding; indptr, indices:
    the test items (CSR, canonical: an item at most once per row); disc (max(ks),):
    1/log2(i+1); idcg (max(ks)+1,): idcg[m] = sum of the first m discounts; out (6*len(ks),
    n): row 6*j + (P, R, HR, nDCG, MRR, AP) for ks[j]. The hits (at positions < max(ks)) of
    list r go to hits[:, indptr[users[r]]:][:, :n_hits[r]]: position and item (a list has at
    most |R| hits), in list order. If ``top`` (int32) has rows, the first min(K, max(ks)) slots
    of each list are copied to it: later passes over the top-k read this contiguous copy much
    faster than the strided rows of ``rec``.

    The user's test items are stamped with r + 1 in a reusable array (no clearing); a hit
    consumes its stamp, so a repeated item hits at its first position only. Every slot of
    the list is range-checked. Returns (number of lists whose first slot is padding, -1), or
    (_, r) for the first list r holding an item outside [-1, n_items).
    """
    n, width = rec.shape
    nk = len(ks)
    span = min(width, ks[nk - 1])
    stamp = np.zeros(n_items, dtype=np.int32)  # small: stays in cache
    copy = top.shape[0] > 0
    n_empty = 0
    for r in range(n):
        u = users[r]
        a, b = indptr[u], indptr[u + 1]
        mark = np.int32(r + 1)
        for j in range(np.uint64(a), np.uint64(b)):  # unsigned: no negative-index wraparound
            stamp[indices[j]] = mark
        n_rel = b - a
        n_hit, dcg, ap, first = 0, 0.0, 0.0, -1
        kk = 0
        for pos in range(span):
            while kk < nk and ks[kk] <= pos:
                _accuracy_at(out, kk, r, ks[kk], n_hit, dcg, ap, first, n_rel, idcg)
                kk += 1
            item = rec[r, pos]
            if copy:
                top[r, pos] = item
            if item < 0:
                if item < -1:
                    return n_empty, r
                continue
            if item >= n_items:
                return n_empty, r
            if stamp[item] == mark:
                stamp[item] = 0
                hits[0, a + n_hit] = pos
                hits[1, a + n_hit] = item
                n_hit += 1
                dcg += disc[pos]
                ap += n_hit / (pos + 1.0)
                if first < 0:
                    first = pos
        while kk < nk:
            _accuracy_at(out, kk, r, ks[kk], n_hit, dcg, ap, first, n_rel, idcg)
            kk += 1
        n_hits[r] = n_hit
        lo, hi = 0, 0
        for pos in range(span, width):
            item = rec[r, pos]
            lo = min(lo, item)
            hi = max(hi, item)
        if lo < -1 or hi >= n_items:
            return n_empty, r
        if width == 0 or rec[r, 0] < 0:
            n_empty += 1
    return n_empty, -1


@numba.njit(inline="always")
def _accuracy_at(out, kk, r, k, hits, dcg, ap, first, n_rel, idcg):
    row = 6 * kk
    rel = float(n_rel)
    out[row, r] = hits / k
    out[row + 1, r] = hits / rel
    out[row + 2, r] = 1.0 if first >= 0 else 0.0
    out[row + 3, r] = dcg / idcg[min(n_rel, k)]
    out[row + 4, r] = 1.0 / (first + 1.0) if first >= 0 else 0.0
    out[row + 5, r] = ap / rel


# ----------------------------------------------------------------------------- sums


@_jit
def row_sums(table):
    """Sum and count of the non-NaN values of each row of ``table`` (m, n), left to right."""
    m, n = table.shape
    sums = np.zeros(m, dtype=np.float64)
    counts = np.zeros(m, dtype=np.int64)
    for i in range(n):
        for j in range(m):
            v = table[j, i]
            if v == v:
                sums[j] += v
                counts[j] += 1
    return sums, counts


@_jit
def group_sums(table, rows, codes, n_groups):
    """Per group (codes >= 0): sum and count of the non-NaN values of the rows ``rows`` of
    ``table`` (one result row each). Users are added in order: each sum runs left to right.
    """
    m, n = len(rows), table.shape[1]
    sums = np.zeros((m, n_groups), dtype=np.float64)
    counts = np.zeros((m, n_groups), dtype=np.int64)
    for i in range(n):
        g = codes[i]
        if g < 0:
            continue
        for j in range(m):
            v = table[rows[j], i]
            if v == v:
                sums[j, g] += v
                counts[j, g] += 1
    return sums, counts


def item_counts(indices: np.ndarray, n_items: int) -> np.ndarray:
    """How many times each item index occurs in ``indices`` (a CSR matrix's column counts)."""
    return _item_counts(_uint32(indices), n_items)


@_jit
def _item_counts(indices, n_items):
    out = np.zeros(n_items, dtype=np.int64)
    for i in indices:
        out[i] += 1
    return out


# ----------------------------------------------------------------------------- beyond accuracy


@_jit
def list_metrics(rec, ks, info, packed, n_train_users, users, indptr, hits, n_hits, disc, out,
                 exposure):  # fmt: skip
    """Popularity metrics of each top-k list and the top-k exposure of every item.

    Per item (the last cell, for -1 padding, is never read): info (n_items + 1,) float64, the
    self-information; packed (n_items + 1,) int64, 4 * pop + (1 if in the long tail T) + (2
    if in RecBole's tail), so a list item costs two random reads and the popularity sums are
    exact integer sums. out (6*len(ks), n): row 6*j + (novelty, arp, aplt, aclt,
    tail_percentage, epc) for ks[j]; means are over the real items of the top-k (NaN for
    none). epc: sum of disc[pos] * (1 - pop / n_train_users) over the hits in the top-k (hits
    as stored by ``accuracy`` for ``users`` and ``indptr``) / sum of disc[pos] over the slots
    of the top-k holding an item (0 for an empty list). exposure (len(ks), n_items): how many
    lists have the item in their top ks[j] (int32).
    """
    n, width = rec.shape
    nk = len(ks)
    span = min(width, ks[nk - 1])
    nt = float(max(n_train_users, 1))
    for r in range(n):
        s_info, s_gain, s_disc = 0.0, 0.0, 0.0
        s_pop, n_tail, n_rb, length = 0, 0, 0, 0
        a = indptr[users[r]]
        nh = n_hits[r]
        next_hit = hits[0, a] if nh > 0 else -1  # hits are in list order
        h = 0
        start = 0
        for kk in range(nk):  # the positions of band kk: [ks[kk - 1], ks[kk])
            end = min(ks[kk], span)
            for pos in range(start, end):
                i = rec[r, pos]
                if i < 0:
                    continue
                s_info += info[i]
                v = packed[i]
                s_pop += v >> 2
                n_tail += v & 1
                n_rb += (v >> 1) & 1
                length += 1
                s_disc += disc[pos]
                if pos == next_hit:
                    s_gain += disc[pos] * (1.0 - (v >> 2) / nt)
                    h += 1
                    next_hit = hits[0, a + h] if h < nh else -1
                exposure[kk, i] += 1
            start = max(start, end)
            row = 6 * kk
            m = float(length) if length > 0 else np.nan  # an empty list: NaN means
            out[row, r] = s_info / m
            out[row + 1, r] = s_pop / m
            out[row + 2, r] = n_tail / m
            out[row + 3, r] = float(n_tail)
            out[row + 4, r] = n_rb / m
            out[row + 5, r] = s_gain / s_disc if length > 0 else 0.0
    for kk in range(1, nk):  # counts per band of positions -> counts within the top-k
        exposure[kk] += exposure[kk - 1]


@_jit
def hit_stats(
    users, ks, indptr, indices, hits, n_hits, group, rpos, seen_indptr, seen_indices,
    with_seen, serendipity, relevant_in, hits_in, seen_in,
):  # fmt: skip
    """Popularity groups of the test items, hits and seen items, and serendipity.

    Hits as stored by ``accuracy`` (the same ``indptr``). group (n_items + 1,) int8: 0 =
    neither, 1 = short head H, 2 = long tail T. Fills
    relevant_in (3,): test items of the users per group; hits_in (len(ks), 3): hits within
    the top-k per group; and, with ``with_seen``: seen_in (3,): seen items of the users per
    group, and serendipity (len(ks), n): the share of the top-k that hits and is not in the
    user's popularity baseline top-k.

    The baseline ranks items by popularity (rpos: 0-based rank) without the user's seen
    items: an item of rank q is in its top-k iff it is unseen and q minus the number of seen
    items ranked before it is < k. Only hits with q < max(ks) + |seen| can be: for those, the
    user's seen row is scanned (a branch-free count).
    """
    n = len(users)
    nk = len(ks)
    kmax = ks[nk - 1]
    _group_counts(users, indptr, indices, group, relevant_in)
    if with_seen:
        _group_counts(users, seen_indptr, seen_indices, group, seen_in)
    n_ser = np.zeros(nk, dtype=np.int64)
    hits_band = np.zeros((nk, 3), dtype=np.int64)  # hits per first cut-off that holds them
    for r in range(n):
        nh = n_hits[r]
        if nh == 0:
            if with_seen:
                for kk in range(nk):
                    serendipity[kk, r] = 0.0
            continue
        u = users[r]
        a = indptr[u]
        sa, sb = (seen_indptr[u], seen_indptr[u + 1]) if with_seen else (0, 0)
        for kk in range(nk):
            n_ser[kk] = 0
        for h in range(nh):
            col = hits[0, a + h]
            item = hits[1, a + h]
            band = 0
            while ks[band] <= col:
                band += 1
            hits_band[band, group[item]] += 1
            if not with_seen:
                continue
            # is the hit in the baseline top-k? scan the seen row (branch-free) if it can be
            q = rpos[item]
            n_before, seen = 0, False
            if q < kmax + (sb - sa):
                for j in range(np.uint64(sa), np.uint64(sb)):
                    s = seen_indices[j]
                    n_before += rpos[s] < q
                    seen |= s == item
            for kk in range(band, nk):
                n_ser[kk] += seen or q - n_before >= ks[kk]
        if with_seen:
            for kk in range(nk):
                serendipity[kk, r] = n_ser[kk] / ks[kk]
    for kk in range(nk):  # hits per band -> hits within the top-k
        for g in range(3):
            hits_in[kk, g] += hits_band[kk, g] + (hits_in[kk - 1, g] if kk else 0)


@_jit
def _group_counts(users, indptr, indices, group, counts):
    """counts[1], counts[2] += entries of the users' rows in group 1, 2.

    Runs of consecutive users are one contiguous range of ``indices`` (one flat loop: much
    faster than a short loop per user); the counts stay in registers.
    """
    c1, c2 = 0, 0
    n = len(users)
    r = 0
    while r < n:
        first = r
        while r + 1 < n and users[r + 1] == users[r] + 1:
            r += 1
        for j in range(np.uint64(indptr[users[first]]), np.uint64(indptr[users[r] + 1])):
            g = group[indices[j]]
            c1 += g == 1
            c2 += g == 2
        r += 1
    counts[1] += c1
    counts[2] += c2


# ----------------------------------------------------------------------------- diversity


@_jit
def ild(rec, ks, words, sizes, table, shift, scale, out):
    """Intra-list diversity at every k: mean pairwise distance of the items with genres.

    words (n_items + 1, n_words) uint64: genre bitsets (last row, padding: empty); sizes
    (n_items + 1,): genres per item. A pair (a, b) with x = |a & b| shared genres has
    distance table[(x << shift) + |a| + |b|] / scale (integers: the sums are exact and do not
    depend on the order of the pairs). Pairs are visited by their larger position, so the
    pairs of the top-k are a prefix. out (len(ks), n): NaN where fewer than 2 items have
    genres.
    """
    n, width = rec.shape
    nk = len(ks)
    span = min(width, ks[nk - 1])
    n_words = words.shape[1]
    local = np.empty((span, n_words), dtype=np.uint64)
    first = np.empty(span, dtype=np.uint64)
    size = np.empty(span, dtype=np.uint64)
    sh = np.uint64(shift)
    for r in range(n):
        total = 0
        cnt = 0
        kk = 0
        for pos in range(span):
            while kk < nk and ks[kk] <= pos:
                _ild_at(out, kk, r, total, cnt, scale)
                kk += 1
            item = rec[r, pos]
            if item < 0:
                continue
            s = np.uint64(sizes[item])
            if s == 0:
                continue
            w0 = words[item, 0]
            part = 0
            if n_words == 1:
                for i in range(cnt):
                    part += table[(_popcount(first[i] & w0) << sh) + size[i] + s]
            else:
                for i in range(cnt):
                    x = _popcount(first[i] & w0)
                    for w in range(1, n_words):
                        x += _popcount(local[i, w] & words[item, w])
                    part += table[(x << sh) + size[i] + s]
            total += part
            first[cnt] = w0
            size[cnt] = s
            for w in range(1, n_words):
                local[cnt, w] = words[item, w]
            cnt += 1
        while kk < nk:
            _ild_at(out, kk, r, total, cnt, scale)
            kk += 1


@numba.njit(inline="always")
def _ild_at(out, kk, r, total, cnt, scale):
    pairs = cnt * (cnt - 1) // 2
    out[kk, r] = total / (pairs * scale) if pairs > 0 else np.nan


@_jit
def ild_embedding(rec, ks, emb, sq, out):
    """Intra-list diversity from item embeddings: 1 - mean pairwise cosine, at every k.

    emb (n_items + 1, d) float64: unit rows (the last, for padding, and items without an
    embedding are zero, with sq = 0); sq (n_items + 1,): squared norm of each row (1 or 0).
    The sum of the pairwise dot products of a list is (|s|^2 - sum_i |e_i|^2) / 2 with s the
    sum of its vectors, so a list costs O(k d) instead of O(k^2 d). out (len(ks), n): NaN
    where fewer than 2 items have an embedding.
    """
    n, width = rec.shape
    nk = len(ks)
    span = min(width, ks[nk - 1])
    d = emb.shape[1]
    s = np.empty(d, dtype=np.float64)
    for r in range(n):
        for j in range(d):
            s[j] = 0.0
        s_sq = 0.0
        cnt = 0
        kk = 0
        for pos in range(span):
            while kk < nk and ks[kk] <= pos:
                out[kk, r] = _ild_emb_at(s, s_sq, cnt)
                kk += 1
            item = rec[r, pos]
            if item < 0 or sq[item] == 0.0:
                continue
            for j in range(d):
                s[j] += emb[item, j]
            s_sq += sq[item]
            cnt += 1
        while kk < nk:
            out[kk, r] = _ild_emb_at(s, s_sq, cnt)
            kk += 1


@numba.njit(inline="always")
def _ild_emb_at(s, s_sq, cnt):
    if cnt < 2:
        return np.nan
    total = 0.0
    for j in range(len(s)):
        total += s[j] * s[j]
    return 1.0 - (total - s_sq) / (cnt * (cnt - 1.0))
