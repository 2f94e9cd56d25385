"""The dataset contract: what every loader returns (``RawDataset``), the column schemas of its
frames and the checks on the interactions frame.

Interactions have string ``user_id``/``item_id``, an integer ``timestamp`` (seconds) and an
optional float ``rating``; side information (items, users) keeps the well-known columns of
``SIDE_SCHEMA`` with those dtypes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from bench.errors import DataError

INTERACTIONS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Utf8(),
    "item_id": pl.Utf8(),
    "timestamp": pl.Int64(),
    "rating": pl.Float64(),
}
# Contract dtypes of well-known side-information columns (items / users).
SIDE_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.Utf8(),
    "user_id": pl.Utf8(),
    "title": pl.Utf8(),
    "year": pl.Int64(),
    "genres": pl.List(pl.Utf8()),
    "gender": pl.Utf8(),
    "age": pl.Int64(),
    "occupation": pl.Utf8(),
}
REQUIRED = ("user_id", "item_id", "timestamp")


class DatasetWarning(UserWarning):
    """A dataset that loads but deserves attention (unpinned file, count mismatch)."""


@dataclass(frozen=True)
class RawDataset:
    """A loaded dataset, before any split: string ids, contract dtypes, provenance."""

    name: str
    interactions: pl.DataFrame  # user_id Utf8, item_id Utf8, timestamp Int64 s, rating Float64?
    items: pl.DataFrame  # item_id + side information (may have zero rows)
    users: pl.DataFrame  # user_id + attributes (may have zero rows)
    source_files: dict[str, str] = field(default_factory=dict)  # abs path -> sha256
    relevance_threshold_default: float | None = None

    def counts(self) -> dict[str, int]:
        """Interactions and distinct users/items of the interactions (what manifests pin)."""
        f = self.interactions
        return {
            "interactions": f.height,
            "users": f["user_id"].n_unique(),
            "items": f["item_id"].n_unique(),
        }


def finish_interactions(
    frame: pl.DataFrame, path: Path, loader: str, offset: int = 1
) -> pl.DataFrame:
    """Contract columns and dtypes; refuse empty files and empty required values."""
    frame = frame.select(
        [
            (pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c)
            for c, t in INTERACTIONS_SCHEMA.items()
        ]
    )
    blank = frame.select(pl.all_horizontal(pl.all().is_null())).to_series()
    for col in REQUIRED:
        missing = (frame[col].is_null() & ~blank).arg_true()
        if missing.len():
            i = int(missing[0])
            raise DataError(
                f"{path}: column '{col}' row {i + 1} (line {i + 1 + offset}) is empty, expected "
                f"a value ({loader} loader: {col} is required); fix or remove that row"
            )
    frame = frame.filter(~blank)
    if frame.height == 0:
        raise DataError(
            f"{path}: no interactions (0 data rows after the header); the file holds no data, "
            f"re-export it or point the dataset config at the right file"
        )
    return frame


def empty_frame(key: str) -> pl.DataFrame:
    """No rows, one string column ``key``: the items or users of a dataset without them."""
    return pl.DataFrame(schema={key: pl.Utf8()})
