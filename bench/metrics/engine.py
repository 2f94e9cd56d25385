"""The metrics engine: integer-index recommendation lists in, every metric key out.

``evaluate_arrays`` is what the runner, early stopping and ``bench.evaluate`` call. It computes
the hit list once (``accuracy.compute_hits``) and every accuracy, beyond-accuracy and fairness
metric from it; metrics whose inputs are missing are listed in ``skipped``, never guessed.

Who is evaluated (contract "Splits on disk", pitfalls 4.6):

- a user is evaluated iff its ``truth`` row is non-empty; ``n_users_skipped`` counts the rows of
  ``truth`` (the users of the split) that are empty, whether or not they were passed in
  ``users``;
- a user with test items but no row in ``users`` is evaluated with an empty list (scores 0,
  never dropped) and counted in ``n_users_without_recommendations``, like a user whose list is
  all padding.

Padding (-1) is trailing: a list whose first slot is -1 is empty. Lists must not repeat an
item (``bench.ranking.topk`` guarantees it); if one does, only its first position can hit, so
recall stays in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from bench.metrics import accuracy, beyond, fairness


@dataclass(frozen=True)
class EvalResult:
    """``summary``: key -> float; ``per_user``: column -> (n_eval,) aligned with ``users``."""

    summary: dict[str, float]
    per_user: dict[str, np.ndarray]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    users: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    out = sorted({int(k) for k in ks}) if len(ks) else []
    if not out or any(k < 1 for k in out) or any(int(k) != k for k in ks):
        raise ValueError(f"ks must be positive integers, got {tuple(ks)!r}")
    return tuple(out)


def _binary_csr(m: sp.spmatrix, name: str, shape: tuple[int, int] | None) -> sp.csr_matrix:
    if not sp.issparse(m):
        raise TypeError(f"{name} must be a scipy sparse matrix, got {type(m).__name__}")
    if shape is not None and m.shape != shape:
        raise ValueError(f"{name} has shape {m.shape}, expected {shape} like truth")
    if (
        isinstance(m, sp.csr_matrix)
        and m.has_canonical_format
        and (m.data.size == 0 or (m.data.min() == 1 and m.data.max() == 1))
    ):
        return m  # already binary, sorted and duplicate-free: no copy
    out = sp.csr_matrix(m, dtype=np.float32, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.data[:] = 1.0
    out.sort_indices()
    return out


def _prepare(users: np.ndarray, rec: np.ndarray, truth: sp.csr_matrix):
    n_users, n_items = truth.shape
    users = np.asarray(users)
    rec = np.asarray(rec)
    if users.ndim != 1 or not np.issubdtype(users.dtype, np.integer):
        raise ValueError("users must be a 1-d integer array of user indices")
    if rec.ndim != 2 or rec.shape[0] != len(users):
        raise ValueError(f"rec must be (len(users), K), got {rec.shape} for {len(users)} users")
    if rec.size and not np.issubdtype(rec.dtype, np.integer):
        raise ValueError(f"rec must hold integer item indices, got dtype {rec.dtype}")
    rec = rec.astype(np.int64, copy=False)
    if len(users) and (users.min() < 0 or users.max() >= n_users):
        raise ValueError(f"user index out of range [0, {n_users}) in users")
    given = np.bincount(users, minlength=n_users)
    if len(users) and given.max() > 1:
        raise ValueError(f"users contains user index {int(np.argmax(given))} twice")
    n_rel = np.diff(truth.indptr)
    keep = n_rel[users] > 0
    if not keep.all():
        users, rec = users[keep], rec[keep]
    missing = np.flatnonzero((n_rel > 0) & (given == 0))
    if len(missing):
        users = np.concatenate([users.astype(np.int64), missing])
        rec = np.vstack([rec, np.full((len(missing), rec.shape[1]), -1, dtype=np.int64)])
    counts = {
        "n_users_evaluated": float(len(users)),
        "n_users_skipped": float(np.count_nonzero(n_rel == 0)),
    }
    return users.astype(np.int64), rec, counts


def evaluate_arrays(
    users: np.ndarray,
    rec: np.ndarray,
    truth: sp.spmatrix,
    ks: Sequence[int] = (10, 20),
    train: sp.spmatrix | None = None,
    seen: sp.spmatrix | None = None,
    item_genres: Sequence[frozenset[str] | None] | None = None,
    user_attrs: Mapping[str, np.ndarray] | None = None,
) -> EvalResult:
    """Every metric of the catalog that the inputs allow, at every k in ``ks``.

    users: int (n,) user indices; rec: int (n, K) ranked item indices, -1 = padding;
    truth: (n_users, n_items) test positives; train: train interactions (popularity, catalog,
    activity); seen: items excluded from each user's ranking (serendipity baseline, PopRSP);
    item_genres: genre set per item index (ILD); user_attrs: attribute -> labels (n_users,).
    """
    ks = _check_ks(ks)
    truth = _binary_csr(truth, "truth", None)
    users, rec, counts = _prepare(users, rec, truth)
    identity = len(users) == truth.shape[0] and np.array_equal(users, np.arange(len(users)))
    truth_rows = truth if identity else truth[users]
    # padding is trailing: a list is empty iff its first slot is padding (found in the same
    # pass over rec as the hits)
    hits, empty = accuracy.compute_hits_and_empty(rec, truth_rows)
    counts["n_users_without_recommendations"] = float(np.count_nonzero(empty))
    per_user = accuracy.suite(hits, ks)  # == every KERNELS entry at every k, bit for bit
    summary: dict[str, float] = dict(counts)
    skipped: list[tuple[str, str]] = []
    ctx = _Context(users, rec, hits, truth_rows, ks, per_user, summary, skipped)
    shape = truth.shape
    train_m = _binary_csr(train, "train", shape) if train is not None else None
    seen_m = _binary_csr(seen, "seen", shape) if seen is not None else None
    _beyond(ctx, train_m, seen_m)
    _ild(ctx, item_genres, shape[1])
    _user_fairness(ctx, train_m, user_attrs, shape[0])
    _means(per_user, summary, skipped)
    if not len(users):
        skipped.append(("*", "no evaluated user (every truth row is empty)"))
    ordered = {k: summary[k] for k in sorted(summary, key=_order_key)}
    return EvalResult(ordered, per_user, skipped, users)


#: values per block of ``_column_sums`` (a 512 KB table)
_SUM_BLOCK = 2**16


def _means(per_user: dict[str, np.ndarray], summary: dict, skipped: list) -> None:
    """The mean of each per-user column over the users where it is defined (not NaN).

    Every sum runs left to right, so a logged mean does not depend on memory alignment (numpy's
    pairwise ``sum`` does): the columns without NaN are interleaved into one ``(n, m)`` array
    and summed by one weighted ``bincount`` (which adds in index order: column j's total is its
    values added one after the other, as a ``cumsum`` would, in a single pass for all m).
    """
    todo = [k for k in per_user if k not in summary]
    n = len(next(iter(per_user.values()))) if per_user else 0
    table_keys = [k for k in todo if per_user[k].dtype == np.float64 and len(per_user[k]) == n]
    done = set()
    if table_keys and n:
        totals = _column_sums(per_user, table_keys, n)
        for key, total in zip(table_keys, totals.tolist(), strict=True):
            if not math.isnan(total):  # a column with a NaN takes the path below
                summary[key] = float(total / n)
                done.add(key)
    for key in todo:
        if key in done:
            continue
        values = per_user[key]
        ok = ~np.isnan(values)
        if ok.any():
            v = values[ok]
            summary[key] = float(np.cumsum(v)[-1] / len(v))
        elif len(values):
            skipped.append((key, "undefined for every evaluated user"))


def _column_sums(per_user: dict[str, np.ndarray], keys: list[str], n: int) -> np.ndarray:
    """Sum of each column, each added left to right (bit-identical to ``cumsum(v)[-1]``).

    Blocks of rows are interleaved into a cache-sized ``(1 + rows, m)`` table whose first row
    is the running totals; a weighted ``bincount`` (which adds in index order) sums each
    column: the running total, then the block's values one after the other.
    """
    m = len(keys)
    rows = max(1, _SUM_BLOCK // m)
    table = np.empty((rows + 1, m), dtype=np.float64)
    column = np.tile(np.arange(m, dtype=np.intp), rows + 1)
    totals: np.ndarray = np.zeros(m, dtype=np.float64)
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        table[0] = totals
        for j, key in enumerate(keys):
            table[1 : hi - lo + 1, j] = per_user[key][lo:hi]
        size = (hi - lo + 1) * m
        totals = np.bincount(column[:size], weights=table.ravel()[:size], minlength=m)
    return totals


def _order_key(key: str) -> tuple[int, str]:
    return (0 if key.startswith("n_") else 1, key)


@dataclass
class _Context:
    users: np.ndarray
    rec: np.ndarray
    hits: accuracy.Hits
    truth_rows: sp.csr_matrix
    ks: tuple[int, ...]
    per_user: dict[str, np.ndarray]
    summary: dict[str, float]
    skipped: list[tuple[str, str]]

    def skip(self, names: Sequence[str], reason: str) -> None:
        self.skipped.extend((f"{n}_at_{k}", reason) for n in names for k in self.ks)

    def put(self, key: str, value: float, reason: str = "undefined") -> None:
        if np.isnan(value):
            self.skipped.append((key, reason))
        else:
            self.summary[key] = float(value)


_NO_PARITY = "undefined: fewer than 2 groups with items, or a zero mean rate"
_POP_LIST = ("novelty", "arp", "aplt", "aclt", "tail_percentage")
_POP_CATALOG = ("coverage", "gini", "entropy", "pop_reo", "long_tail_hit_share")


def _beyond(ctx: _Context, train: sp.csr_matrix | None, seen: sp.csr_matrix | None) -> None:
    if train is None:
        ctx.skip(_POP_LIST + _POP_CATALOG + ("serendipity", "pop_rsp"), "needs train")
        return
    p = beyond.popularity(train)
    rec, h = ctx.rec, ctx.hits
    ctx.per_user.update(beyond.list_metrics(p, rec, ctx.ks))
    exposures = beyond.exposure(p, rec, ctx.ks)
    for k, counts in exposures.items():
        ctx.put(f"coverage_at_{k}", beyond.coverage(p, counts), "empty catalog")
        ctx.put(f"gini_at_{k}", beyond.gini(p, counts), "no exposure within the catalog")
        ctx.put(f"entropy_at_{k}", beyond.entropy(p, counts), "no exposure within the catalog")
    hit_items = rec[h.row, h.col]
    truth_items = ctx.truth_rows.indices
    groups = {"H": p.in_head, "T": p.in_tail}
    relevant = {g: float(m[truth_items].sum()) for g, m in groups.items()}
    for k in ctx.ks:
        within = h.upto(k)
        hit_in = {g: float(m[hit_items[within]].sum()) for g, m in groups.items()}
        ctx.put(f"pop_reo_at_{k}", fairness.pop_reo(hit_in, relevant), _NO_PARITY)
        n_hits = float(within.sum())
        share = hit_in["T"] / n_hits if n_hits else float("nan")
        ctx.put(f"long_tail_hit_share_at_{k}", share, "no hit")
    if seen is None:
        ctx.skip(("serendipity", "pop_rsp"), "needs seen")
        return
    seen_rows = seen[ctx.users]
    _serendipity(ctx, p, seen_rows, hit_items)
    _pop_rsp(ctx, seen_rows, groups, exposures)


def _serendipity(ctx: _Context, p: beyond.Popularity, seen_rows, hit_items) -> None:
    h = ctx.hits
    in_base = beyond.baseline_membership(p, seen_rows, hit_items, h.row, ctx.ks)
    n = len(ctx.users)
    for k in ctx.ks:
        m = h.upto(k) & ~in_base[k]
        ctx.per_user[f"serendipity_at_{k}"] = np.bincount(h.row[m], minlength=n) / float(k)


def _pop_rsp(ctx: _Context, seen_rows, groups, exposures) -> None:
    n = len(ctx.users)
    seen_in = {g: float(m[seen_rows.indices].sum()) for g, m in groups.items()}
    candidates = {g: n * float(m.sum()) - seen_in[g] for g, m in groups.items()}
    for k in ctx.ks:
        rec_in = {g: float(exposures[k] @ m[:-1]) for g, m in groups.items()}
        ctx.put(f"pop_rsp_at_{k}", fairness.pop_rsp(rec_in, candidates), _NO_PARITY)


def _ild(ctx: _Context, item_genres, n_items: int) -> None:
    if item_genres is None:
        ctx.skip(("ild",), "needs item genres")
        return
    table = beyond.genre_table(item_genres, n_items)
    for k, values in beyond.ild(table, ctx.rec, ctx.ks).items():
        ctx.per_user[f"ild_at_{k}"] = values


def _user_fairness(ctx: _Context, train, user_attrs, n_users: int) -> None:
    attrs: dict[str, np.ndarray | tuple[np.ndarray, list[str]]] = {}
    for name, labels in (user_attrs or {}).items():
        labels = np.asarray(labels, dtype=object)
        if labels.shape != (n_users,):
            raise ValueError(f"user_attrs['{name}'] must have one label per user ({n_users})")
        attrs[name] = labels[ctx.users]
    if train is not None:
        activity = np.diff(train.indptr)[ctx.users]
        attrs["activity"] = fairness.activity_codes(activity)
    else:
        ctx.skipped.append(("<key>/activity/*", "needs train"))
    if not user_attrs:
        ctx.skipped.append(("<key>/<attribute>/*", "needs user attributes"))
    keys = [f"{m}_at_{k}" for k in ctx.ks for m in ("ndcg", "recall")]
    ctx.summary.update(fairness.breakdown({k: ctx.per_user[k] for k in keys}, attrs))
