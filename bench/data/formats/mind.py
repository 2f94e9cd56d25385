"""MIND (Microsoft News Dataset): ``behaviors.tsv`` + ``news.tsv`` per part (``train/``, ``dev/``).

``behaviors.tsv`` (tab-separated, no header): impression id, user id, time
(``11/15/2019 8:55:22 AM``, read as UTC), history (space-separated news ids), impressions
(``N123-1 N456-0``). Interactions are the clicked impressions (``-1``), with the impression's
time and no rating; the history column carries no time and is not used. ``news.tsv``: news id,
category, subcategory, title, abstract, url, title entities, abstract entities; items keep
``category``, ``subcategory``, ``title``, ``abstract`` (first occurrence across parts).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from bench.data.contract import RawDataset, empty_frame, finish_interactions
from bench.data.paths import confine, require_file, source_digests
from bench.data.text import TextSpec, check_separator, first_line, null_markers, read_text
from bench.errors import DataError

LOADER = "mind"
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
BEHAVIOR_COLUMNS = ["impression_id", "user_id", "time", "history", "impressions"]
NEWS_COLUMNS = [
    "item_id",
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
]
NEWS_SIDE = ("category", "subcategory", "title", "abstract")


def _read(path: Path, names: list[str], wanted: Sequence[str]) -> pl.DataFrame:
    require_file(path, LOADER)
    check_separator(path, first_line(path), "\t", LOADER, n_fields=len(names))
    spec = TextSpec(path, "\t", names, {c: pl.Utf8() for c in wanted}, header=False,
                      loader=LOADER)
    return read_text(spec)


def clicks(path: Path) -> pl.DataFrame:
    """The clicked impressions of one ``behaviors.tsv`` as contract interactions."""
    raw = _read(path, BEHAVIOR_COLUMNS, ("user_id", "time", "impressions"))
    when = raw["time"].str.to_datetime(TIME_FORMAT, strict=False, time_zone="UTC", time_unit="us")
    bad = (when.is_null() & raw["time"].is_not_null()).arg_true()
    if bad.len():
        i = int(bad[0])
        raise DataError(
            f"{path}: column 'time' row {i + 1} (line {i + 1}) has value {raw['time'][i]!r}, "
            f"expected a time like '11/15/2019 8:55:22 AM' ({LOADER} loader); fix that row"
        )
    frame = (
        raw.with_columns(when.dt.epoch("s").alias("timestamp"))
        .with_columns(pl.col("impressions").fill_null("").str.split(" "))
        .explode("impressions")
        .filter(pl.col("impressions").str.ends_with("-1"))
        .select(
            pl.col("user_id"),
            pl.col("impressions").str.strip_suffix("-1").alias("item_id"),
            pl.col("timestamp"),
        )
    )
    if frame.height == 0:
        raise DataError(f"{path}: no clicked impressions ('<news id>-1'); check the file")
    return finish_interactions(frame, path, LOADER, offset=0)


def news(path: Path) -> pl.DataFrame:
    raw = _read(path, NEWS_COLUMNS, ("item_id", *NEWS_SIDE))
    return raw.with_columns(null_markers(raw[c]) for c in NEWS_SIDE)


def load(
    directory: Path,
    *,
    name: str,
    parts: Sequence[str] = ("train", "dev"),
    relevance_threshold: float | None = None,
) -> RawDataset:
    """``<directory>/<part>/behaviors.tsv`` and ``news.tsv`` for every part, concatenated."""
    if not parts:
        raise DataError(f"dataset '{name}': parts is empty; list the MIND parts, e.g. [train, dev]")
    expected = [f"{p}/{f}" for p in parts for f in ("behaviors.tsv", "news.tsv")]
    paths = [require_file(confine(directory, e), LOADER, expected) for e in expected]
    inter = pl.concat([clicks(p) for p in paths[0::2]])
    items = pl.concat([news(p) for p in paths[1::2]]).unique(
        "item_id", keep="first", maintain_order=True
    )
    return RawDataset(
        name=name,
        interactions=inter,
        items=items,
        users=empty_frame("user_id"),
        source_files=source_digests(paths),
        relevance_threshold_default=relevance_threshold,
    )
