"""Beyond-accuracy kernels: popularity, long tail, coverage, concentration, diversity, serendipity.

Popularity ``pop(i)`` = distinct train users of item i; catalog ``C`` = items with pop > 0;
short head ``H`` = the most popular items (ties by item index = item id order) whose
interactions together first reach 80 % of train interactions; long tail ``T = C - H``.

Per-list metrics return one value per user (NaN where the list is undefined for the metric,
e.g. an empty list for a mean over the list); catalog metrics accumulate exposures over all
users and return one number. Recommendation matrices are C-ordered integer arrays (the
engine passes its int32 copy of the top-k), -1 = padding. The per-user passes are compiled
kernels (``_kernels``); this module prepares their item tables.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import count, islice

import numpy as np
import scipy.sparse as sp

from bench.metrics.table import PerUser

SHORT_HEAD_SHARE = 0.8
RECBOLE_TAIL_RATIO = 0.1
#: the per-list popularity metrics of ``list_metrics``, in the order of its table rows
LIST_METRICS = ("novelty", "arp", "aplt", "aclt", "tail_percentage", "epc")


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


def popularity(train: sp.csr_matrix, binary: bool = False) -> Popularity:
    """Popularity, catalog, short head/long tail of a train matrix (duplicates count once).

    ``binary``: ``train`` is known to be a canonical CSR matrix without explicit zeros (skips
    the checks).
    """
    from bench.metrics import _kernels

    t = train.tocsr()
    n_items = t.shape[1]
    if binary:
        idx = t.indices
    else:
        t.sum_duplicates()
        idx = t.indices if np.count_nonzero(t.data) == len(t.data) else t.indices[t.data != 0]
    pop = _kernels.item_counts(idx, n_items).astype(np.float64)
    order = np.argsort(-pop, kind="stable")  # pop desc, ties by index
    total = pop.sum()
    cum = np.cumsum(pop[order])
    n_head = int(np.searchsorted(cum, SHORT_HEAD_SHARE * total - 1e-9 * total)) + 1 if total else 0
    head = np.zeros(n_items + 1, dtype=bool)
    head[order[:n_head]] = True
    cat = np.append(pop > 0, False)
    ascending = np.argsort(pop, kind="stable")  # pop asc, ties by index
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


def list_metrics(
    p: Popularity,
    rec: np.ndarray,
    ks: Sequence[int],
    users: np.ndarray,
    truth: sp.csr_matrix,
    hits: np.ndarray,
    n_hits: np.ndarray,
) -> tuple[PerUser, np.ndarray]:
    """Per-user list metrics of popularity at every k, and the top-k exposure of every item.

    - novelty@k = mean over the top-k of -log2((pop(i)+1)/(n_train_users+1)) (Zhou et al.,
      PNAS 2010);
    - arp@k = mean over the top-k of pop(i) (Abdollahpouri et al., FLAIRS 2019);
    - aplt@k = |top-k in T| / |top-k|; aclt@k = |top-k in T| (Abdollahpouri, Burke &
      Mobasher, FLAIRS 2019; Elliot);
    - tail_percentage@k = share of the top-k in RecBole's tail (bottom 10 % of C by count);
    - epc@k = sum_{i<=k} h_i disc(i) (1 - pop(L_i)/n_train_users) / sum_{i<=k, L_i an item}
      disc(i), disc(i) = 1/log2(i+1) (expected popularity complement, Vargas & Castells,
      RecSys 2011, as in Elliot's EPC with binary relevance); 0 for an empty list.

    Means are over the real items of the (possibly shorter) list; an empty list gives NaN.
    Sums run left to right along the list. Hits as returned by ``accuracy.evaluate`` for
    ``users`` and ``truth``. Returns the table (keys ``<name>_at_<k>``, k-major) and
    ``(len(ks), n_items)`` exposure counts: how many top-k lists hold each item.
    """
    from bench.metrics import _kernels
    from bench.metrics.accuracy import _discounts

    info = -np.log2((p.pop + 1.0) / (p.n_train_users + 1.0))
    flags = p.in_tail.astype(np.int64) + 2 * p.in_recbole_tail.astype(np.int64)
    packed = 4 * p.pop.astype(np.int64) + flags  # distinct users: integers (exact sums)
    table = PerUser.allocate([f"{m}_at_{k}" for k in ks for m in LIST_METRICS], len(rec))
    exposure = np.zeros((len(ks), len(p.pop) - 1), dtype=np.int32)
    _kernels.list_metrics(
        rec,
        np.asarray(ks, dtype=np.int64),
        info,
        packed,
        p.n_train_users,
        users,
        _kernels.csr_arrays(truth)[0],
        hits,
        n_hits,
        _discounts(max(ks))[0],
        table.values,
        exposure,
    )
    return table, exposure.astype(np.float64)


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


# ------------------------------------------------------------------ popularity groups of hits


@dataclass(frozen=True)
class HitGroups:
    """Counts by popularity group (index 1: short head H, 2: long tail T, 0: neither).

    ``relevant``: test items of the evaluated users (H and T only); ``hits`` (len(ks), 3):
    hits within the top-k; ``seen``: seen items of the evaluated users (H and T only; None
    without ``seen``); ``serendipity``: per-user ``serendipity_at_<k>`` (None without
    ``seen``).
    """

    relevant: np.ndarray
    hits: np.ndarray
    seen: np.ndarray | None
    serendipity: PerUser | None


def hit_groups(
    p: Popularity,
    users: np.ndarray,
    ks: Sequence[int],
    truth: sp.csr_matrix,
    hits: np.ndarray,
    n_hits: np.ndarray,
    seen: sp.csr_matrix | None,
) -> HitGroups:
    """Popularity groups of the test items, hits and seen items; serendipity if ``seen``.

    Hits as returned by ``accuracy.evaluate`` (``truth``: the same binary CSR matrix).

    serendipity@k = |hits in the top-k that are not in the user's popularity baseline top-k|
    / k. The baseline ranks items by pop desc (ties by index) and drops the user's seen
    items: an item at baseline position q (0-based, in ``p.order``) is in its top-k iff it is
    unseen and q - #(seen items before q) < k.
    """
    from bench.metrics import _kernels

    n_items = len(p.order)
    group = np.zeros(n_items + 1, dtype=np.int8)
    group[p.in_head] = 1
    group[p.in_tail] = 2
    rpos = np.empty(n_items, dtype=np.int32)
    rpos[p.order] = np.arange(n_items, dtype=np.int32)
    relevant = np.zeros(3, dtype=np.int64)
    hits_in = np.zeros((len(ks), 3), dtype=np.int64)
    seen_in = np.zeros(3, dtype=np.int64)
    ser = PerUser.allocate(
        [f"serendipity_at_{k}" for k in ks], len(users) if seen is not None else 0
    )
    with_seen = seen is not None
    if seen is None:
        seen_indptr, seen_indices = np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint32)
    else:
        seen_indptr, seen_indices = _kernels.csr_arrays(seen)
    _kernels.hit_stats(
        users,
        np.asarray(ks, dtype=np.int64),
        *_kernels.csr_arrays(truth),
        hits,
        n_hits,
        group,
        rpos,
        seen_indptr,
        seen_indices,
        with_seen,
        ser.values,
        relevant,
        hits_in,
        seen_in,
    )
    if not with_seen:
        return HitGroups(relevant, hits_in, None, None)
    return HitGroups(relevant, hits_in, seen_in, ser)


# ------------------------------------------------------------------ intra-list diversity


@dataclass(frozen=True)
class GenreBits:
    """Genre sets as bitsets: ``words`` (n_items + 1, n_words) uint64, ``sizes`` (n_items + 1,)
    uint16 genres per item. An item without genres (and the last row, for -1 padding) is empty."""

    words: np.ndarray
    sizes: np.ndarray


def genre_bits(item_genres: Sequence[frozenset[str] | set[str] | None], n_items: int) -> GenreBits:
    """Bitsets of the items' genre sets (genre j = bit j % 64 of word j // 64, genres sorted).

    Items past the end of ``item_genres`` have no genres. Each distinct set is encoded once.
    """
    none: frozenset[str] = frozenset()
    index: defaultdict[frozenset[str], int] = defaultdict(count(1).__next__)
    index[none] = 0  # no genres (None, empty)
    given = [g if g else none for g in islice(item_genres, n_items)]
    codes = np.zeros(n_items + 1, dtype=np.int64)  # items past the end: no genres
    codes[: len(given)] = np.fromiter(map(index.__getitem__, map(frozenset, given)), np.int64)
    sets = list(index)
    gpos = {g: j for j, g in enumerate(sorted(set().union(*sets)))}
    n_words = max(1, -(-len(gpos) // 64))
    masks = [sum(1 << gpos[g] for g in genre_set) for genre_set in sets]
    word = 2**64 - 1
    combo = np.array(
        [[(m >> (64 * w)) & word for w in range(n_words)] for m in masks], dtype=np.uint64
    )
    size = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
    if size.max() >= 2**16:
        raise ValueError("an item has 65536 genres or more")
    return GenreBits(combo[codes], size.astype(np.uint16)[codes])


def ild(bits: GenreBits, rec: np.ndarray, ks: Sequence[int]) -> PerUser:
    """ILD@k = mean over pairs i<j of the top-k of 1 - Jaccard(genres_i, genres_j).

    Ziegler et al., WWW 2005. Items without genres are left out of the pairs; a list with
    fewer than 2 items with genres gets NaN (skipped in the mean). Keys ``ild_at_<k>``.

    A pair's distance depends only on x = |a & b| and |a| + |b|: 1 - x / (|a| + |b| - x). The
    kernel adds integer distances (the distance times ``scale``) from a table indexed by both,
    so a list's sum is exact and independent of the order of its pairs. ``scale`` is the
    least common multiple of the possible union sizes 1..2G (G: most genres of an item):
    every distance is then an integer, and while the sums stay below 2**53 (top-100 lists
    with up to 10 genres per item, as MovieLens) the mean is the correctly rounded exact
    value. When a sum could overflow int64 (many genres per item and long lists), ``scale`` is
    the largest power of two (at most 2**52) that cannot, and each distance is rounded to a
    multiple of 1/scale (an error <= 2**-50 per pair for top-100 lists).
    """
    from bench.metrics import _kernels

    g = int(bits.sizes.max()) if len(bits.sizes) else 0
    span = min(max(ks), rec.shape[1])
    max_pairs = max(1, span * (span - 1) // 2)
    shift = (2 * g).bit_length()
    lcm = math.lcm(*range(1, 2 * g + 1))
    x = np.arange(g + 1)[:, None]
    union = np.arange(2 * g + 1)[None, :] - x  # |a| + |b| - x
    ok = union >= 1
    u = np.maximum(union, 1)
    table = np.zeros((g + 1, 1 << shift), dtype=np.int64)
    if max_pairs * lcm < 2**62:
        scale = lcm
        table[:, : 2 * g + 1] = np.where(ok, (u - x) * (lcm // u), 0)
    else:
        scale = 2 ** min(52, 62 - max_pairs.bit_length())
        dist = 1.0 - x / u
        table[:, : 2 * g + 1] = np.where(ok, np.rint(dist * scale).astype(np.int64), 0)
    out = PerUser.allocate([f"ild_at_{k}" for k in ks], len(rec))
    _kernels.ild(
        rec,
        np.asarray(ks, dtype=np.int64),
        bits.words,
        bits.sizes,
        table.ravel(),
        shift,
        scale,
        out.values,
    )
    return out


def ild_embedding(emb: np.ndarray, rec: np.ndarray, ks: Sequence[int]) -> PerUser:
    """ild_emb@k = 1 - mean over pairs i<j of the top-k of cos(e_i, e_j).

    Embedding-based intra-list diversity (Ziegler et al., WWW 2005, with cosine similarity
    of item vectors as in LensKit and MS recommenders). ``emb`` (n_items, d): one vector per
    item, a row of NaN (or zeros) = no embedding: such items are left out of the pairs; a
    list with fewer than 2 items with an embedding gets NaN. Rows are normalised here, so
    the value is in [0, 2]. Keys ``ild_emb_at_<k>``.
    """
    from bench.metrics import _kernels

    e = np.asarray(emb, dtype=np.float64)  # (n_items, d): checked by the engine
    e = np.where(np.isfinite(e).all(axis=1, keepdims=True), e, 0.0)
    norm = np.sqrt(np.einsum("ij,ij->i", e, e))
    unit = np.zeros((len(e) + 1, e.shape[1]), dtype=np.float64)  # last row: padding
    ok = norm > 0
    unit[:-1][ok] = e[ok] / norm[ok, None]
    sq = np.zeros(len(unit), dtype=np.float64)
    sq[:-1][ok] = np.einsum("ij,ij->i", unit[:-1][ok], unit[:-1][ok])
    out = PerUser.allocate([f"ild_emb_at_{k}" for k in ks], len(rec))
    _kernels.ild_embedding(rec, np.asarray(ks, dtype=np.int64), unit, sq, out.values)
    return out
