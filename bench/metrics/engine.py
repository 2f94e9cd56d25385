"""The metrics engine: integer-index recommendation lists in, every metric key out.

``evaluate_arrays`` is what the runner, early stopping and ``bench.evaluate`` call. One
compiled pass per list gives every accuracy metric at every k and the hits
(``accuracy.evaluate``); the beyond-accuracy and fairness metrics are computed from the lists,
the hits and the side inputs; metrics whose inputs are missing are listed in ``skipped``,
never guessed. Per-user values are summed left to right, so results are bit-identical across
calls and processes.

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

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from bench.metrics import accuracy, beyond, fairness
from bench.metrics.table import PerUser


@dataclass(frozen=True)
class EvalResult:
    """``summary``: key -> float; ``per_user``: column -> (n_eval,) aligned with ``users``."""

    summary: dict[str, float]
    per_user: dict[str, np.ndarray]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    users: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    return _sorted_ks(tuple(ks))


@functools.lru_cache(maxsize=64)
def _sorted_ks(ks: tuple[int, ...]) -> tuple[int, ...]:
    out = sorted({int(k) for k in ks}) if len(ks) else []
    if not out or any(k < 1 for k in out) or any(int(k) != k for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    return tuple(out)


def _binary_csr(m: sp.spmatrix, name: str, shape: tuple[int, int] | None) -> sp.csr_matrix:
    """``m`` as a canonical CSR matrix whose stored entries are the positives (any nonzero).

    Only the structure (``indptr``, ``indices``) is read downstream, so a canonical CSR matrix
    without explicit zeros is returned as is (no copy); otherwise a binary copy.
    """
    if (
        isinstance(m, sp.csr_matrix)
        and (shape is None or m.shape == shape)
        and m.has_canonical_format
        and np.count_nonzero(m.data) == m.data.size
    ):
        return m  # sorted, duplicate-free, no explicit zero: no copy
    if not sp.issparse(m):
        raise TypeError(f"{name} must be a scipy sparse matrix, got {type(m).__name__}")
    if shape is not None and m.shape != shape:
        raise ValueError(f"{name} has shape {m.shape}, expected {shape} like truth")
    out = sp.csr_matrix(m, dtype=np.float32, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.data[:] = 1.0
    out.sort_indices()
    return out


def _prepare(users: np.ndarray, rec: np.ndarray, truth: sp.csr_matrix):
    from bench.metrics import _kernels

    n_users = truth.shape[0]
    users = np.asarray(users)
    rec = np.asarray(rec)
    if users.ndim != 1 or users.dtype.kind not in "iu":
        raise ValueError("users must be a 1-d integer array of user indices")
    if rec.ndim != 2 or rec.shape[0] != len(users):
        raise ValueError(f"rec must be (len(users), K), got {rec.shape} for {len(users)} users")
    if rec.size and rec.dtype.kind not in "iu":
        raise ValueError(f"rec must hold integer item indices, got dtype {rec.dtype}")
    rec = np.ascontiguousarray(rec, dtype=np.int64)
    users = users.astype(np.int64, copy=False)
    status, n_empty_rows, n_given_empty, n_missing = _kernels.check_users(
        users, _kernels.csr_arrays(truth)[0]
    )
    if status == 1:
        raise ValueError(f"user index out of range [0, {n_users}) in users")
    if status == 2:
        twice = int(np.argmax(np.bincount(users, minlength=n_users)))
        raise ValueError(f"users contains user index {twice} twice")
    if n_given_empty or n_missing:
        n_rel = np.diff(truth.indptr)
        given = np.bincount(users, minlength=n_users)
        keep = n_rel[users] > 0
        users, rec = users[keep], rec[keep]
        missing = np.flatnonzero((n_rel > 0) & (given == 0))
        users = np.concatenate([users, missing])
        rec = np.vstack([rec, np.full((len(missing), rec.shape[1]), -1, dtype=np.int64)])
    counts = {"n_users_evaluated": float(len(users)), "n_users_skipped": float(n_empty_rows)}
    return users, rec, counts


def evaluate_arrays(
    users: np.ndarray,
    rec: np.ndarray,
    truth: sp.spmatrix,
    ks: Sequence[int] = (10, 20),
    train: sp.spmatrix | None = None,
    seen: sp.spmatrix | None = None,
    item_genres: Sequence[frozenset[str] | None] | None = None,
    user_attrs: Mapping[str, np.ndarray] | None = None,
    item_embeddings: np.ndarray | None = None,
    min_group_size: int = 1,
) -> EvalResult:
    """Every metric of the catalog that the inputs allow, at every k in ``ks``.

    users: int (n,) user indices; rec: int (n, K) ranked item indices, -1 = padding;
    truth: (n_users, n_items) test positives; train: train interactions (popularity, catalog,
    activity); seen: items excluded from each user's ranking (serendipity baseline, PopRSP);
    item_genres: genre set per item index (ILD); user_attrs: attribute -> labels (n_users,);
    item_embeddings: (n_items, d) vector per item index, NaN rows = none (ild_emb);
    min_group_size: user groups smaller than this are left out of the fairness gaps.
    """
    ks = _check_ks(ks)
    truth = _binary_csr(truth, "truth", None)
    users, rec, counts = _prepare(users, rec, truth)
    # one pass per list: every accuracy metric at every k, the hits, the empty lists
    beyond_needed = train is not None or item_genres is not None or item_embeddings is not None
    acc = accuracy.evaluate(users, rec, truth, ks, keep_top=beyond_needed)
    counts["n_users_without_recommendations"] = float(acc.n_empty)
    summary: dict[str, float] = dict(counts)
    skipped: list[tuple[str, str]] = []
    top = rec if acc.top is None else acc.top
    ctx = _Context(users, top, truth, acc, ks, [acc.table], summary, skipped)
    shape = truth.shape
    train_m = _binary_csr(train, "train", shape) if train is not None else None
    if seen is not None and seen is train:
        seen_m = train_m
    else:
        seen_m = _binary_csr(seen, "seen", shape) if seen is not None else None
    _beyond(ctx, train_m, seen_m)
    _ild(ctx, item_genres, shape[1])
    _ild_emb(ctx, item_embeddings, shape[1])
    _user_fairness(ctx, train_m, user_attrs, shape[0], min_group_size)
    _means(ctx.tables, summary, skipped)
    if not len(users):
        skipped.append(("*", "no evaluated user (every truth row is empty)"))
    per_user = {key: row for table in ctx.tables for key, row in table.rows().items()}
    ordered = {k: summary[k] for k in sorted(summary, key=_order_key)}
    return EvalResult(ordered, per_user, skipped, users)


def _means(tables: list[PerUser], summary: dict, skipped: list) -> None:
    """The mean of each per-user row over the users where it is defined (not NaN).

    Every sum runs left to right (a compiled loop over the users), so a logged mean does not
    depend on memory alignment (numpy's pairwise ``sum`` does): bit-identical to
    ``cumsum(v)[-1] / len(v)`` over the defined values ``v``.
    """
    from bench.metrics import _kernels

    for table in tables:
        if not table.values.shape[1]:
            continue
        sums, counts = _kernels.row_sums(table.values)
        for key, total, count in zip(table.keys, sums.tolist(), counts.tolist(), strict=True):
            if count:
                summary[key] = total / count
            else:
                skipped.append((key, "undefined for every evaluated user"))


def _order_key(key: str) -> tuple[int, str]:
    return (0 if key.startswith("n_") else 1, key)


@dataclass
class _Context:
    users: np.ndarray
    top: np.ndarray  # the lists' first min(K, max(ks)) slots (C order)
    truth: sp.csr_matrix
    acc: accuracy.Accuracy
    ks: tuple[int, ...]
    tables: list[PerUser]
    summary: dict[str, float]
    skipped: list[tuple[str, str]]

    def skip(self, names: tuple[str, ...], reason: str) -> None:
        self.skipped.extend(_skips(names, self.ks, reason))

    def put(self, key: str, value: float, reason: str = "undefined") -> None:
        if np.isnan(value):
            self.skipped.append((key, reason))
        else:
            self.summary[key] = float(value)


@functools.lru_cache(maxsize=64)
def _skips(names: tuple[str, ...], ks: tuple[int, ...], reason: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"{n}_at_{k}", reason) for n in names for k in ks)


_NO_PARITY = "undefined: fewer than 2 groups with items, or a zero mean rate"
_POP_LIST = beyond.LIST_METRICS
_POP_CATALOG = ("coverage", "gini", "entropy", "pop_reo", "long_tail_hit_share")


def _beyond(ctx: _Context, train: sp.csr_matrix | None, seen: sp.csr_matrix | None) -> None:
    if train is None:
        ctx.skip(_POP_LIST + _POP_CATALOG + ("serendipity", "pop_rsp"), "needs train")
        return
    p = beyond.popularity(train, binary=True)  # _binary_csr's output
    acc = ctx.acc
    table, exposure = beyond.list_metrics(
        p, ctx.top, ctx.ks, ctx.users, ctx.truth, acc.hits, acc.n_hits
    )
    ctx.tables.append(table)
    for counts, k in zip(exposure, ctx.ks, strict=True):
        ctx.put(f"coverage_at_{k}", beyond.coverage(p, counts), "empty catalog")
        ctx.put(f"gini_at_{k}", beyond.gini(p, counts), "no exposure within the catalog")
        ctx.put(f"entropy_at_{k}", beyond.entropy(p, counts), "no exposure within the catalog")
    hg = beyond.hit_groups(p, ctx.users, ctx.ks, ctx.truth, acc.hits, acc.n_hits, seen)
    relevant = {"H": float(hg.relevant[1]), "T": float(hg.relevant[2])}
    for hits, k in zip(hg.hits, ctx.ks, strict=True):
        hit_in = {"H": float(hits[1]), "T": float(hits[2])}
        ctx.put(f"pop_reo_at_{k}", fairness.pop_reo(hit_in, relevant), _NO_PARITY)
        n_hits = float(hits.sum())
        share = hit_in["T"] / n_hits if n_hits else float("nan")
        ctx.put(f"long_tail_hit_share_at_{k}", share, "no hit")
    if hg.seen is None or hg.serendipity is None:
        ctx.skip(("serendipity", "pop_rsp"), "needs seen")
        return
    ctx.tables.append(hg.serendipity)
    n = len(ctx.users)
    groups = {"H": (p.in_head[:-1], hg.seen[1]), "T": (p.in_tail[:-1], hg.seen[2])}
    candidates = {g: n * float(m.sum()) - float(s) for g, (m, s) in groups.items()}
    for counts, k in zip(exposure, ctx.ks, strict=True):
        rec_in = {g: float(counts @ m) for g, (m, _) in groups.items()}
        ctx.put(f"pop_rsp_at_{k}", fairness.pop_rsp(rec_in, candidates), _NO_PARITY)


def _ild(ctx: _Context, item_genres, n_items: int) -> None:
    if item_genres is None:
        ctx.skip(("ild",), "needs item genres")
        return
    ctx.tables.append(beyond.ild(beyond.genre_bits(item_genres, n_items), ctx.top, ctx.ks))


def _ild_emb(ctx: _Context, emb: np.ndarray | None, n_items: int) -> None:
    if emb is None:
        ctx.skip(("ild_emb",), "needs item embeddings")
        return
    if np.ndim(emb) != 2 or len(emb) != n_items:
        raise ValueError(
            f"item_embeddings must have one row per item ({n_items}), got shape {np.shape(emb)}"
        )
    ctx.tables.append(beyond.ild_embedding(emb, ctx.top, ctx.ks))


def _user_fairness(ctx: _Context, train, user_attrs, n_users: int, min_size: int = 1) -> None:
    if train is None:
        ctx.skipped.append(("<key>/activity/*", "needs train"))
    if not user_attrs:
        ctx.skipped.append(("<key>/<attribute>/*", "needs user attributes"))
        if train is None:
            return
    attrs: dict[str, tuple[np.ndarray, list[str]]] = {}
    for name, labels in (user_attrs or {}).items():
        labels = np.asarray(labels, dtype=object)
        if labels.shape != (n_users,):
            raise ValueError(f"user_attrs['{name}'] must have one label per user ({n_users})")
        # codes of every user, then those of the evaluated ones (cheaper than gathering the
        # label objects); groups without an evaluated user get no key
        codes, names = fairness.group_codes(labels)
        attrs[name] = (codes[ctx.users], names)
    if train is not None:
        attrs["activity"] = fairness.activity_codes(np.diff(train.indptr)[ctx.users])
    keys = [f"{m}_at_{k}" for k in ctx.ks for m in ("ndcg", "recall")]
    ctx.summary.update(fairness.breakdown(ctx.acc.table, keys, attrs, min_size))
