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
  defaults to ``train``; pass train + valid for the contract's protocol.
- ``items``: ``genres`` as a list of strings or one ``|``-separated string (MovieLens raw).
- ``users``: every column except ``user_id`` is an attribute. A column named ``age`` holding
  raw integer ages (any value outside the MovieLens-1M codes 1, 18, 25, 35, 45, 50, 56) is
  bucketed into those codes: <18 -> 1, 18-24 -> 18, 25-34 -> 25, 35-44 -> 35, 45-49 -> 45,
  50-55 -> 50, 56+ -> 56. Attributes with more than ``MAX_GROUPS`` distinct values (e.g. zip
  codes) are skipped with a reason rather than logged as thousands of keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from bench.errors import DataError
from bench.metrics.engine import evaluate_arrays

MAX_GROUPS = 50
ML_AGE_CODES = (1, 18, 25, 35, 45, 50, 56)


@dataclass(frozen=True)
class Evaluation:
    """``summary``: key -> float (the keys a run logs); ``per_user``: ``user_id`` + metrics."""

    summary: dict[str, float]
    per_user: pl.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)


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


def _ids(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("user_id").cast(pl.Utf8), pl.col("item_id").cast(pl.Utf8))


def _clean_recs(recs: pl.DataFrame, width: int) -> tuple[pl.DataFrame, int]:
    _require(recs, "recommendations", ("user_id", "item_id", "rank"))
    if not recs["rank"].dtype.is_integer():
        raise DataError(
            f"recommendations.rank must be integers (1-based), got {recs['rank'].dtype}"
        )
    if len(recs) and recs["rank"].min() < 1:
        raise DataError(f"recommendations.rank must be >= 1, found {recs['rank'].min()}")
    r = _ids(recs.select("user_id", "item_id", "rank"))
    dup_rank = r.group_by("user_id", "rank").len().filter(pl.col("len") > 1)
    if len(dup_rank):
        u, k = dup_rank.row(0)[:2]
        raise DataError(f"recommendations: user '{u}' has rank {k} more than once (ties)")
    r = r.sort("user_id", "rank")
    before = len(r)
    r = r.unique(["user_id", "item_id"], keep="first", maintain_order=True)
    r = r.with_columns(pl.int_range(pl.len()).over("user_id").alias("pos"))
    return r.filter(pl.col("pos") < width), before - len(r)


def _index(values: list[pl.Series]) -> pl.DataFrame:
    ids = pl.concat([v.cast(pl.Utf8).rename("id") for v in values]).unique().sort()
    return pl.DataFrame({"id": ids, "idx": np.arange(len(ids), dtype=np.int64)})


def _csr(frame: pl.DataFrame, umap, imap, shape) -> sp.csr_matrix:
    f = frame.join(umap, left_on="user_id", right_on="id").join(
        imap, left_on="item_id", right_on="id", suffix="_i"
    )
    rows, cols = f["idx"].to_numpy(), f["idx_i"].to_numpy()
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _genres(items: pl.DataFrame | None, imap: pl.DataFrame) -> list[frozenset[str]] | None:
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
    g = imap.join(g.unique("item_id", keep="first"), left_on="id", right_on="item_id", how="left")
    out = []
    for v in g.sort("idx")["genres"].to_list():
        out.append(frozenset(s.strip() for s in v if s and s.strip()) if v else frozenset())
    return out


def bucket_ml_age(ages: np.ndarray) -> np.ndarray:
    """Raw ages -> MovieLens-1M age codes (1, 18, 25, 35, 45, 50, 56); None stays None."""
    edges = np.array([18, 25, 35, 45, 50, 56])
    codes = np.array(ML_AGE_CODES, dtype=object)
    out = np.empty(len(ages), dtype=object)
    for i, a in enumerate(ages.tolist()):
        out[i] = None if a is None else codes[int(np.searchsorted(edges, a, side="right"))]
    return out


def _attrs(users: pl.DataFrame | None, umap: pl.DataFrame, skipped: list) -> dict:
    if users is None:
        return {}
    _require(users, "users", ("user_id",))
    u = users.with_columns(pl.col("user_id").cast(pl.Utf8)).unique("user_id", keep="first")
    joined = umap.join(u, left_on="id", right_on="user_id", how="left").sort("idx")
    out = {}
    for col in users.columns:
        if col == "user_id":
            continue
        values = joined[col]
        labels = np.array(values.to_list(), dtype=object)
        if col == "age" and values.dtype.is_integer():
            present = set(values.drop_nulls().unique().to_list())
            if not present <= set(ML_AGE_CODES):
                labels = bucket_ml_age(labels)
        n_groups = values.drop_nulls().n_unique()
        if n_groups > MAX_GROUPS:
            skipped.append((f"<key>/{col}/*", f"{n_groups} groups > {MAX_GROUPS}"))
            continue
        out[col] = labels
    return out


def evaluate(
    recommendations: pl.DataFrame,
    test: pl.DataFrame,
    train: pl.DataFrame | None = None,
    items: pl.DataFrame | None = None,
    users: pl.DataFrame | None = None,
    ks: Sequence[int] = (10, 20),
    seen: pl.DataFrame | None = None,
) -> Evaluation:
    """Score ranked lists against a test set: the same keys and values a run logs to MLflow.

    ``recommendations``: user_id, item_id, rank (1-based); ``test``/``train``/``seen``: user_id,
    item_id; ``items``: item_id + genres; ``users``: user_id + attributes. Metrics whose inputs
    are missing are left out (listed in ``.skipped``). See the module docstring for policies.
    """
    if isinstance(ks, int) or not len(ks) or any(int(k) < 1 for k in ks):
        raise DataError(f"ks must be a non-empty sequence of positive integers, got {ks!r}")
    _require(test, "test", ("user_id", "item_id"))
    _require(train, "train", ("user_id", "item_id"))
    _require(seen, "seen", ("user_id", "item_id"))
    recs, rec_dups = _clean_recs(recommendations, max(ks))
    te = _ids(test.select("user_id", "item_id"))
    test_dups = len(te) - te.unique().height
    te = te.unique(maintain_order=True)
    tr = _ids(train.select("user_id", "item_id")) if train is not None else None
    se = _ids(seen.select("user_id", "item_id")) if seen is not None else tr
    parts = [f for f in (te, tr, recs) if f is not None]
    umap = _index([f["user_id"] for f in parts])
    item_cols = [f["item_id"] for f in (*parts, se) if f is not None]
    if items is not None and "item_id" in items.columns:
        item_cols.append(items["item_id"])
    imap = _index(item_cols)
    shape = (len(umap), len(imap))
    truth = _csr(te, umap, imap, shape)
    eval_users = np.flatnonzero(np.diff(truth.indptr) > 0)
    rec = _rec_matrix(recs, umap, imap, eval_users, max(ks))
    skipped: list[tuple[str, str]] = []
    res = evaluate_arrays(
        eval_users,
        rec,
        truth,
        ks,
        train=_csr(tr, umap, imap, shape) if tr is not None else None,
        seen=_csr(se, umap, imap, shape) if se is not None else None,
        item_genres=_genres(items, imap),
        user_attrs=_attrs(users, umap, skipped) or None,
    )
    rec_users = recs["user_id"].unique()
    summary = dict(res.summary)
    summary["n_duplicates_dropped"] = float(rec_dups + test_dups)
    summary["n_users_without_test"] = float((~rec_users.is_in(te["user_id"].implode())).sum())
    summary = {k: summary[k] for k in sorted(summary, key=lambda k: (not k.startswith("n_"), k))}
    ids = umap["id"].to_numpy()[res.users]
    per_user = pl.DataFrame({"user_id": ids.astype(str), **res.per_user})
    return Evaluation(summary, per_user.sort("user_id"), [*res.skipped, *skipped])


def _rec_matrix(recs, umap, imap, eval_users: np.ndarray, width: int) -> np.ndarray:
    """(len(eval_users), width) int64 item indices, -1 padded; rows follow ``eval_users``."""
    row_of = np.full(len(umap), -1, dtype=np.int64)
    row_of[eval_users] = np.arange(len(eval_users))
    f = recs.join(umap, left_on="user_id", right_on="id").join(
        imap, left_on="item_id", right_on="id", suffix="_i"
    )
    rows = row_of[f["idx"].to_numpy()]
    ok = rows >= 0
    rec = np.full((len(eval_users), width), -1, dtype=np.int64)
    rec[rows[ok], f["pos"].to_numpy()[ok]] = f["idx_i"].to_numpy()[ok]
    return rec
