"""``bench.evaluate``: score recommendation lists given as polars frames with string ids.

Policies (rendered into docs/metrics.md, and tested):

- recommendations: ``user_id``, ``item_id``, ``rank`` (integer, 1-based; ``score`` optional and
  unused). A user's list is its rows ordered by rank; gaps in the ranks are closed. The same
  rank twice for one user is an error (the order would be a guess). A repeated (user, item):
  the first (best) rank wins, the others are dropped and counted in ``n_duplicates_dropped``.
  Lists are cut at ``max(ks)``.
- test: deduplicated per user (counted in ``n_duplicates_dropped``); users with a test item are
  evaluated; a user with test items but no recommendation scores 0 (never dropped,
  ``n_users_without_recommendations``). Users with recommendations but no test item are ignored
  (``n_users_without_test``); users of ``train`` or the recommendations without a test item are
  ``n_users_skipped``.
- items the model recommends that are unknown to train/test are fine: they never hit and are
  outside the catalog C.
- ``seen`` (items excluded from each user's ranking: the serendipity baseline and PopRSP)
  defaults to ``train``; pass train + valid for the contract's protocol. Lists are scored as
  given: a recommended item the user has in ``seen`` is a miss (``bench run`` never
  recommends one), and a ``SeenItemsWarning`` says how many rows hold one
  (``Evaluation.n_seen_recommended``).
- ``items``: ``genres`` as a list of strings or one ``|``-separated string (MovieLens raw);
  ``embedding`` (optional) a list of floats per item, all of one length (``ild_emb``).
- ``users``: every column except ``user_id`` is an attribute; null, NaN and empty values are
  unknown. A column named ``age`` holding raw ages (integers, or whole-number floats as in a
  column with nulls; any value outside the MovieLens-1M codes 1, 18, 25, 35, 45, 50, 56) is
  bucketed into those codes: <18 -> 1, 18-24 -> 18, 25-34 -> 25, 35-44 -> 35, 45-49 -> 45,
  50-55 -> 50, 56+ -> 56. Attributes with more than ``MAX_GROUPS`` distinct values (e.g. zip
  codes) are skipped with a reason rather than logged as thousands of keys.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from bench.errors import DataError
from bench.metrics.engine import evaluate_arrays
from bench.metrics.fairness import MIN_GROUP_SIZE, sanitize_label

MAX_GROUPS = 50
ML_AGE_CODES = (1, 18, 25, 35, 45, 50, 56)


@dataclass(frozen=True)
class Evaluation:
    """``summary``: key -> float (the keys a run logs); ``per_user``: ``user_id`` + metrics;
    ``n_seen_recommended``: rows of the recommendations whose item the user has in ``seen``
    (default ``train``; 0 without either)."""

    summary: dict[str, float]
    per_user: pl.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)
    n_seen_recommended: int = 0


class SeenItemsWarning(UserWarning):
    """Recommendations hold items the user already has in ``seen``/``train``: they are scored
    as given (misses), whereas ``bench run`` leaves them out of its lists."""


def _n_seen(ru: np.ndarray, ri: np.ndarray, su: np.ndarray, si: np.ndarray, n_items: int) -> int:
    """Rows (ru[j], ri[j]) that are pairs of (su, si) (one hash join on int64 pair keys)."""
    if not len(ru) or not len(su):
        return 0
    rec_key = pl.DataFrame({"k": ru.astype(np.int64) * n_items + ri})
    seen_key = pl.DataFrame({"k": su.astype(np.int64) * n_items + si}).unique()
    return rec_key.join(seen_key, on="k", how="semi").height


def _require(frame: pl.DataFrame | None, name: str, cols: Sequence[str]) -> None:
    if frame is None:
        return
    if not isinstance(frame, pl.DataFrame):
        raise DataError(f"{name} must be a polars DataFrame, got {type(frame).__name__}")
    for c in cols:
        if c not in frame.columns:
            raise DataError(
                f"{name} has no column '{c}' (columns: {', '.join(frame.columns) or 'none'})"
            )
        if frame[c].null_count():
            raise DataError(f"{name}.{c} has {frame[c].null_count()} null value(s)")


def _genres(items: pl.DataFrame | None, iix: _Index) -> list[frozenset[str]] | None:
    if items is None or "genres" not in items.columns:
        return None
    _require(items, "items", ("item_id",))
    g = items.select(pl.col("item_id").cast(pl.Utf8), "genres")
    if g["genres"].dtype == pl.Utf8:
        g = g.with_columns(pl.col("genres").str.split("|"))
    elif not isinstance(g["genres"].dtype, pl.List):
        raise DataError(
            f"items.genres must be a list of strings or a '|'-separated string, got "
            f"{g['genres'].dtype}"
        )
    imap = pl.DataFrame({"id": iix.ids, "idx": np.arange(len(iix), dtype=np.int64)})
    g = imap.join(g.unique("item_id", keep="first"), left_on="id", right_on="item_id", how="left")
    out = []
    for v in g.sort("idx")["genres"].to_list():
        out.append(frozenset(s.strip() for s in v if s and s.strip()) if v else frozenset())
    return out


def _embeddings(items: pl.DataFrame | None, iix: _Index) -> np.ndarray | None:
    """``items.embedding`` (one list of floats per item, all of one length) as an
    (n_items, d) array aligned with the item index; items without one get a NaN row."""
    if items is None or "embedding" not in items.columns:
        return None
    _require(items, "items", ("item_id",))
    e = items.select(pl.col("item_id").cast(pl.Utf8), "embedding").unique("item_id", keep="first")
    e = e.filter(pl.col("embedding").is_not_null())
    dtype = e["embedding"].dtype
    inner = getattr(dtype, "inner", None)
    if not isinstance(dtype, pl.List | pl.Array) or inner is None or not inner.is_numeric():
        raise DataError(f"items.embedding must be a list of numbers per item, got {dtype}")
    lengths = e["embedding"].list.len() if isinstance(dtype, pl.List) else None
    if lengths is not None and lengths.n_unique() > 1:
        raise DataError(
            f"items.embedding must have one length for every item, got lengths "
            f"{sorted(lengths.unique().to_list())[:5]}"
        )
    imap = pl.DataFrame({"id": iix.ids, "idx": np.arange(len(iix), dtype=np.int64)})
    e = e.join(imap, left_on="item_id", right_on="id", how="inner")
    d = int(lengths[0]) if lengths is not None and len(lengths) else int(getattr(dtype, "size", 0))
    out = np.full((len(iix), d), np.nan)
    if len(e):
        vals = np.asarray(e["embedding"].to_list(), dtype=np.float64).reshape(len(e), d)
        out[e["idx"].to_numpy()] = vals
    return out


ML_AGE_LABELS = {
    1: "under18",
    18: "18-24",
    25: "25-34",
    35: "35-44",
    45: "45-49",
    50: "50-55",
    56: "56plus",
}


def bucket_ml_age(ages: np.ndarray) -> np.ndarray:
    """Ages -> MovieLens-1M age groups, MLflow-safe labels (``under18``, ``18-24``, ...,
    ``56plus``). Values that are all ML-1M codes map directly; raw ages are bucketed at the
    ML-1M edges (18, 25, 35, 45, 50, 56). None stays None."""
    edges = np.array([18, 25, 35, 45, 50, 56])
    codes = list(ML_AGE_LABELS)
    present = {a for a in ages.tolist() if a is not None}
    out = np.empty(len(ages), dtype=object)
    for i, a in enumerate(ages.tolist()):
        if a is None:
            out[i] = None
        elif present <= set(codes):
            out[i] = ML_AGE_LABELS[int(a)]
        else:
            out[i] = ML_AGE_LABELS[codes[int(np.searchsorted(edges, a, side="right"))]]
    return out


def _whole_numbers(values: pl.Series) -> bool:
    """An integer column, or a float one whose known values are all whole (ages read as
    floats because the column has nulls)."""
    if values.dtype.is_integer():
        return True
    if not values.dtype.is_float():
        return False
    known = values.drop_nulls()
    return bool(len(known)) and bool((known == known.floor()).all())


def attribute_labels(
    frame: pl.DataFrame, columns: Sequence[str] | None = None, skipped: list | None = None
) -> dict[str, np.ndarray]:
    """Group labels (strings, None = unknown) per row of ``frame`` for each user attribute.

    ``columns``: the attributes to use (default: every column but the id columns). An integer
    ``age`` column gets MovieLens-1M age groups; attributes with more than ``MAX_GROUPS``
    groups (zip codes) are left out and listed in ``skipped``.
    """
    skipped = skipped if skipped is not None else []
    names = [c for c in frame.columns if c not in ("user_id", "user_idx")]
    if columns is not None:
        names = [c for c in columns if c in frame.columns]
    out = {}
    for col in names:
        values = frame[col]
        if values.dtype.is_float():
            values = values.fill_nan(None)  # NaN is unknown, like null
        labels = np.array(values.to_list(), dtype=object)
        if col == "age" and _whole_numbers(values):
            labels = bucket_ml_age(labels)
        # sanitize_label: None/NaN/empty -> unknown, 25.0 -> "25", MLflow-safe text
        labels = np.array([sanitize_label(v) for v in labels.tolist()], dtype=object)
        n_groups = len({v for v in labels.tolist() if v is not None})
        if n_groups > MAX_GROUPS:
            skipped.append((f"<key>/{col}/*", f"{n_groups} groups > {MAX_GROUPS}"))
            continue
        out[col] = labels
    return out


def _attrs(users: pl.DataFrame | None, uix: _Index, skipped: list) -> dict:
    if users is None:
        return {}
    _require(users, "users", ("user_id",))
    u = users.with_columns(pl.col("user_id").cast(pl.Utf8)).unique("user_id", keep="first")
    umap = pl.DataFrame({"id": uix.ids, "idx": np.arange(len(uix), dtype=np.int64)})
    joined = umap.join(u, left_on="id", right_on="user_id", how="left").sort("idx")
    return attribute_labels(joined.drop("id", "idx"), None, skipped)


def _validate_recs(recs: pl.DataFrame) -> None:
    _require(recs, "recommendations", ("user_id", "item_id", "rank"))
    if not recs["rank"].dtype.is_integer():
        raise DataError(
            f"recommendations.rank must be integers (1-based), got {recs['rank'].dtype}"
        )
    low = int(recs["rank"].min()) if len(recs) else 1  # type: ignore[arg-type]
    if low < 1:
        raise DataError(f"recommendations.rank must be >= 1, found {low}")


class _Index:
    """Sorted unique string ids and a vectorized id -> index lookup (hash map)."""

    def __init__(
        self, columns: list[pl.Series], extra: pl.Series | None = None, runs: bool = False
    ) -> None:
        """Index of the ids of ``columns`` and ``extra``; ``self.extra_codes``: ``extra``'s codes.

        ``extra`` is the big recommendations column: its ids are mostly among the ids of the
        other (small) columns, so it is not uniqued and sorted as a whole. It is cast once to
        an Enum over the known ids; only the ids that cast left unknown are uniqued and merged.
        ``runs``: ``extra`` usually comes in runs of one id (the users of ranked lists): only
        the first id of each run is looked up.
        """
        uniq = [c.cast(pl.Utf8).rename("id").unique() for c in columns]  # no big concat copy
        known = pl.concat(uniq).unique().sort() if uniq else pl.Series("id", [], pl.Utf8)
        self.ids = known
        self.extra_codes = np.zeros(0, dtype=np.int64)
        if extra is None:
            return
        extra = extra.cast(pl.Utf8).rename("id")
        if runs and len(extra):
            rle = extra.rle().struct.unnest()
            if 4 * len(rle) <= len(extra):
                self._encode(known, rle["value"].rename("id"))
                self.extra_codes = np.repeat(self.extra_codes, rle["len"].to_numpy())
                return
        self._encode(known, extra)

    def _encode(self, known: pl.Series, extra: pl.Series) -> None:
        cast = extra.cast(pl.Enum(known), strict=False)
        unknown = cast.is_null()
        if not unknown.any():
            self.extra_codes = _physical(cast)
            return
        new = extra.filter(unknown)
        self.ids = pl.concat([known, new.unique()]).sort()
        enum = pl.Enum(self.ids)
        # old code -> new code; the unknown rows (null, read as code 0) are then overwritten
        remap = _physical(known.cast(enum)) if len(known) else np.zeros(1, dtype=np.int64)
        codes = remap[cast.to_physical().fill_null(0).to_numpy()]
        codes[unknown.arg_true().to_numpy()] = _physical(new.cast(enum))
        self.extra_codes = codes

    def __len__(self) -> int:
        return len(self.ids)

    def of(self, column: pl.Series) -> np.ndarray:
        # an Enum over the sorted ids: its physical codes are the indices (2-3x faster than
        # replace_strict); an id outside the index raises, as it should
        return _physical(column.cast(pl.Utf8).cast(pl.Enum(self.ids)))


def _physical(s: pl.Series) -> np.ndarray:
    """int64 codes of an Enum (or its physical integer) series."""
    if isinstance(s.dtype, pl.Enum):
        s = s.to_physical()
    return s.to_numpy().astype(np.int64, copy=False)


def _codes(frame: pl.DataFrame, uix: _Index, iix: _Index) -> tuple[np.ndarray, np.ndarray]:
    return uix.of(frame["user_id"]), iix.of(frame["item_id"])


def _csr_codes(rows: np.ndarray, cols: np.ndarray, shape) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _grouped_lists(u, i, rank, n_users, n_items) -> tuple[np.ndarray, np.ndarray] | None:
    """Fast path of ``_rec_matrix``: the lists as a dense ``(n_lists, max_len)`` matrix.

    Applies only when the rows already come one user at a time (each user's rows contiguous,
    ranks strictly increasing) and no list repeats an item; returns ``(list_users, lists)``
    (-1 padded), or None for the general path (unsorted rows, ties, duplicates, or lists of
    very uneven length whose dense matrix would be large).
    """
    n = len(u)
    if n == 0:
        return None
    brk = u[1:] != u[:-1]
    if not (brk | (rank[1:] > rank[:-1])).all():
        return None  # a rank out of order (or tied) within a run of one user
    starts = np.r_[0, np.flatnonzero(brk) + 1]
    users = u[starts]
    if np.bincount(users, minlength=n_users).max() > 1:
        return None  # a user's rows are split into several runs
    lengths = np.diff(np.r_[starts, n])
    longest = int(lengths.max())
    if len(starts) * longest == n:
        lists = i.reshape(len(starts), longest)  # every list has the same length: no copy
    elif len(starts) * longest <= 2 * n + 1024:
        lists = np.full((len(starts), longest), -1, dtype=np.int64)
        pos = np.arange(n) - np.repeat(starts, lengths)
        lists[np.repeat(np.arange(len(starts)), lengths), pos] = i
    else:
        return None
    # item codes fit in int32 (an Enum's physical codes): a 2x cheaper sort
    srt = np.sort(lists.astype(np.int32) if n_items < 2**31 else lists, axis=1)
    if ((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).any():
        return None  # a repeated (user, item): the general path drops and counts it
    return users, lists


def _rec_matrix(u, i, rank, uix, eval_users, width, n_items) -> tuple[np.ndarray, int]:
    """(len(eval_users), width) item indices ordered by rank, -1 padded; duplicates dropped.

    Returns the matrix and the number of repeated (user, item) rows dropped (first rank wins).
    Raises DataError when a user has the same rank twice.
    """
    row_of = np.full(len(uix), -1, dtype=np.int64)
    row_of[eval_users] = np.arange(len(eval_users))
    rec = np.full((len(eval_users), width), -1, dtype=np.int64)
    fast = _grouped_lists(u, i, rank, len(uix), n_items)
    if fast is not None:
        users, lists = fast
        rows = row_of[users]
        ok = rows >= 0
        w = min(width, lists.shape[1])
        rec[rows[ok], :w] = lists[ok, :w]
        return rec, 0
    key = u * (int(rank.max(initial=0)) + 1) + rank
    if len(key) > 1 and not np.all(key[1:] > key[:-1]):  # not already sorted by (user, rank)
        order = np.argsort(key, kind="stable")
        u, i, rank, key = u[order], i[order], rank[order], key[order]
        tie = np.flatnonzero(key[1:] == key[:-1])
        if len(tie):
            j = tie[0]
            raise DataError(
                f"recommendations: user '{uix.ids[int(u[j])]}' has rank {rank[j]} more than "
                "once (ties)"
            )
    keys = u * n_items + i
    # repeated (user, item): keep the first (best-ranked) row; a stable sort, not np.unique,
    # whose hash path is slow on large int64 arrays in numpy 2.4
    order = np.argsort(keys, kind="stable")
    later = order[1:][keys[order[1:]] == keys[order[:-1]]]
    n_dups = len(later)
    if n_dups:
        keep = np.ones(len(keys), dtype=bool)
        keep[later] = False
        u, i = u[keep], i[keep]
    starts = np.r_[0, np.flatnonzero(u[1:] != u[:-1]) + 1] if len(u) else np.zeros(0, np.int64)
    pos = np.arange(len(u)) - np.repeat(starts, np.diff(np.r_[starts, len(u)]))
    rows = row_of[u]
    ok = (rows >= 0) & (pos < width)
    rec[rows[ok], pos[ok]] = i[ok]
    return rec, n_dups


def evaluate(
    recommendations: pl.DataFrame,
    test: pl.DataFrame,
    train: pl.DataFrame | None = None,
    items: pl.DataFrame | None = None,
    users: pl.DataFrame | None = None,
    ks: Sequence[int] = (10, 20),
    seen: pl.DataFrame | None = None,
    min_group_size: int = MIN_GROUP_SIZE,
) -> Evaluation:
    """Score ranked lists against a test set: the same keys and values a run logs to MLflow.

    ``recommendations``: user_id, item_id, rank (1-based); ``test``/``train``/``seen``: user_id,
    item_id; ``items``: item_id + genres and/or embedding (a list of floats per item, for
    ``ild_emb``); ``users``: user_id + attributes; ``min_group_size``: user groups smaller than
    this are left out of the fairness gaps (as ``metrics.fairness.min_group_size`` in runs).
    Metrics whose inputs are missing are left out (listed in ``.skipped``). See the module
    docstring for policies.
    """
    if isinstance(ks, int) or not len(ks) or any(int(k) < 1 for k in ks):
        raise DataError(f"ks must be a non-empty sequence of positive integers, got {ks!r}")
    _validate_recs(recommendations)
    _require(test, "test", ("user_id", "item_id"))
    _require(train, "train", ("user_id", "item_id"))
    _require(seen, "seen", ("user_id", "item_id"))
    recs = recommendations
    se = seen if seen is not None else train
    parts = [f for f in (test, train, se) if f is not None]
    # users of `seen` too: a user may have valid interactions but neither train nor test ones
    uix = _Index([f["user_id"] for f in parts], recs["user_id"], runs=True)
    item_cols = [f["item_id"] for f in parts]
    if items is not None and "item_id" in items.columns:
        item_cols.append(items["item_id"])
    iix = _Index(item_cols, recs["item_id"])
    shape = (len(uix), len(iix))
    tu, ti = _codes(test, uix, iix)
    truth = _csr_codes(tu, ti, shape)
    test_dups = len(tu) - truth.nnz
    eval_users = np.flatnonzero(np.diff(truth.indptr) > 0)
    ru, ri = uix.extra_codes, iix.extra_codes
    rank = recs["rank"].to_numpy().astype(np.int64)
    rec, rec_dups = _rec_matrix(ru, ri, rank, uix, eval_users, max(ks), shape[1])
    su, si = _codes(se, uix, iix) if se is not None else (ru[:0], ri[:0])
    n_seen = _n_seen(ru, ri, su, si, shape[1])
    if n_seen:
        warnings.warn(
            SeenItemsWarning(
                f"{n_seen} of {recs.height} recommendations ({100 * n_seen / recs.height:.1f}%) "
                f"are items the user already has in {'seen' if seen is not None else 'train'}; "
                f"they are scored as given (misses), whereas bench run leaves them out of its "
                f"lists (eval.exclude_seen=true)"
            ),
            stacklevel=2,
        )
    skipped: list[tuple[str, str]] = []
    res = evaluate_arrays(
        eval_users,
        rec,
        truth,
        ks,
        train=_csr_codes(*_codes(train, uix, iix), shape) if train is not None else None,
        seen=_csr_codes(su, si, shape) if se is not None else None,
        item_genres=_genres(items, iix),
        user_attrs=_attrs(users, uix, skipped) or None,
        item_embeddings=_embeddings(items, iix),
        min_group_size=min_group_size,
    )
    rec_users = np.flatnonzero(np.bincount(ru, minlength=len(uix)))
    summary = dict(res.summary)
    summary["n_duplicates_dropped"] = float(rec_dups + test_dups)
    summary["n_users_without_test"] = float(np.count_nonzero(np.diff(truth.indptr)[rec_users] == 0))
    summary = {k: summary[k] for k in sorted(summary, key=lambda k: (not k.startswith("n_"), k))}
    ids = uix.ids.gather(res.users)
    per_user = pl.DataFrame({"user_id": ids, **res.per_user})
    # the index is sorted, so increasing user indices are already sorted ids: no string sort
    if len(res.users) > 1 and not (res.users[1:] > res.users[:-1]).all():
        per_user = per_user.sort("user_id")
    return Evaluation(summary, per_user, [*res.skipped, *skipped], n_seen)
