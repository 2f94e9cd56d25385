"""From a split's string-id frames to the integer index space models and metrics use.

Item indices follow the sorted item ids of the split (catalog = items.parquet plus every item
in an interaction file), user indices the sorted user ids of the interaction files, so indices
never depend on row order. (Ties in rankings are broken by a hash of the item id, not by index:
see ``bench.ranking``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from bench.models.base import History, ModelData

INDEXED = {"user_idx": pl.Int64, "item_idx": pl.Int64, "timestamp": pl.Int64, "rating": pl.Float64}


@dataclass(frozen=True)
class IndexedSplit:
    """A split in index space: what the runner hands to models (``model_data``) and metrics."""

    model_data: ModelData
    test: pl.DataFrame  # user_idx, item_idx, timestamp, rating (positives only)

    @property
    def user_ids(self) -> np.ndarray:
        return self.model_data.user_ids

    @property
    def item_ids(self) -> np.ndarray:
        return self.model_data.item_ids

    def matrix(self, part: str) -> sp.csr_matrix:
        """Binary CSR of one part: ``train``, ``valid``, ``test`` or ``seen`` (the test history:
        train + valid unless the split config says train only). Train and seen are the histories'
        matrices, built once."""
        md = self.model_data
        if part == "seen":
            return md.test_history.matrix
        if part == "train":
            return md.train_history.matrix
        frame = {"train": md.train, "valid": md.valid, "test": self.test}[part]
        return to_csr(frame, md.n_users, md.n_items)


def id_index(*columns: pl.Series) -> np.ndarray:
    """Sorted unique string ids over several columns."""
    ids = pl.concat([c.cast(pl.Utf8).rename("id") for c in columns]).unique().sort()
    return ids.to_numpy().astype(object)


def to_index(frame: pl.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray) -> pl.DataFrame:
    """Replace ``user_id``/``item_id`` by ``user_idx``/``item_idx`` (unknown ids raise)."""
    umap = pl.DataFrame({"user_id": user_ids.tolist(), "user_idx": np.arange(len(user_ids))})
    imap = pl.DataFrame({"item_id": item_ids.tolist(), "item_idx": np.arange(len(item_ids))})
    out = frame.join(umap, on="user_id", how="left").join(imap, on="item_id", how="left")
    if out["user_idx"].null_count() or out["item_idx"].null_count():
        raise ValueError("ids outside the index: build the index from every interaction file")
    cols = [pl.col(c).cast(t) for c, t in INDEXED.items()]
    return out.select(cols).sort(["user_idx", "timestamp", "item_idx"])


def to_csr(frame: pl.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary user x item CSR of an indexed frame (duplicates collapse to 1)."""
    rows = frame["user_idx"].to_numpy()
    cols = frame["item_idx"].to_numpy()
    m = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_users, n_items)
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def sequences(frame: pl.DataFrame, n_users: int) -> list[np.ndarray]:
    """Per user, item indices in time order (frame sorted by user, timestamp, item)."""
    f = frame.sort(["user_idx", "timestamp", "item_idx"])
    users = f["user_idx"].to_numpy()
    items = f["item_idx"].to_numpy().astype(np.int64)
    bounds = np.searchsorted(users, np.arange(n_users + 1))
    return [items[bounds[u] : bounds[u + 1]] for u in range(n_users)]


def history(frames: list[pl.DataFrame], n_users: int, n_items: int) -> History:
    """History over the concatenation of indexed frames (train, or train and valid)."""
    frame = pl.concat(frames) if len(frames) > 1 else frames[0]
    name = ("train", "train+valid")[min(len(frames), 2) - 1]
    return History(
        matrix=to_csr(frame, n_users, n_items), sequences=sequences(frame, n_users), name=name
    )


def index_split(
    train: pl.DataFrame,
    valid: pl.DataFrame,
    test: pl.DataFrame,
    items: pl.DataFrame,
    users: pl.DataFrame,
    *,
    test_history_includes_valid: bool = True,
    split_dir: Path | None = None,
    split_sha256: str = "",
) -> IndexedSplit:
    """Index a split given as string-id frames (the contract's parquet schemas)."""
    parts = (train, valid, test)
    user_ids = id_index(*(p["user_id"] for p in parts))
    item_ids = id_index(items["item_id"], *(p["item_id"] for p in parts))
    tr, va, te = (to_index(p, user_ids, item_ids) for p in parts)
    n_u, n_i = len(user_ids), len(item_ids)
    imap = pl.DataFrame({"item_id": item_ids.tolist(), "item_idx": np.arange(n_i)})
    items_ix = imap.join(items, on="item_id", how="left").sort("item_idx")
    umap = pl.DataFrame({"user_id": user_ids.tolist(), "user_idx": np.arange(n_u)})
    users_ix = umap.join(users, on="user_id", how="left").sort("user_idx")
    train_h = history([tr], n_u, n_i)
    test_h = history([tr, va], n_u, n_i) if test_history_includes_valid else train_h
    md = ModelData(
        user_ids=user_ids,
        item_ids=item_ids,
        train=tr,
        valid=va,
        items=items_ix,
        users=users_ix,
        train_history=train_h,
        test_history=test_h,
        split_dir=split_dir,
        split_sha256=split_sha256,
    )
    return IndexedSplit(model_data=md, test=te)
