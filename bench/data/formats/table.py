"""A generic CSV/Parquet table with a column mapping: interactions (+ optional items/users
files) whose columns are mapped to contract names in the dataset config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from bench.data.contract import (
    INTERACTIONS_SCHEMA,
    REQUIRED,
    SIDE_SCHEMA,
    RawDataset,
    empty_frame,
    finish_interactions,
)
from bench.data.paths import require_file, source_digests
from bench.data.text import (
    TextSpec,
    cast_column,
    check_separator,
    first_error_line,
    first_line,
    header_columns,
    missing_column,
    read_text,
    short,
)
from bench.errors import DataError

TIMESTAMP_FORMATS = ("seconds", "milliseconds", "iso")


@dataclass(frozen=True)
class TableSpec:
    """A CSV/Parquet file and how its columns map to contract names."""

    path: Path
    columns: Mapping[str, str]  # contract name -> column in the file
    role: str = "interactions"  # interactions | items | users
    separator: str = ","
    header: bool = True
    names: Sequence[str] | None = None  # column names when header is false
    timestamp_format: str = "seconds"  # seconds | milliseconds | iso | a strftime pattern
    list_separator: str = "|"  # for list columns (genres) held as text


def read_table(spec: TableSpec) -> pl.DataFrame:
    """Read one mapped table; returns contract-named columns (interactions: the contract)."""
    path = require_file(spec.path, "table")
    if path.suffix.lower() in (".parquet", ".pq"):
        frame, offset = _read_parquet(spec, path), 0
    else:
        frame, offset = _read_csv(spec, path), int(spec.header)
    frame = _convert(frame, spec, path, offset)
    if spec.role == "interactions":
        return finish_interactions(frame, path, "table", offset)
    return frame


def _read_parquet(spec: TableSpec, path: Path) -> pl.DataFrame:
    try:
        found = list(pl.read_parquet_schema(path))
    except (pl.exceptions.PolarsError, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({first_error_line(e)})") from None
    _check_mapped(spec, path, found)
    cols = {target: src for target, src in spec.columns.items() if src}
    frame = pl.read_parquet(path, columns=list(dict.fromkeys(cols.values())))
    return frame.select([pl.col(src).alias(t) for t, src in cols.items()])


def _read_csv(spec: TableSpec, path: Path) -> pl.DataFrame:
    fix = "set separator: to the file's separator in the dataset config (e.g. ',' or '\\t')"
    if spec.header:
        found = header_columns(path, spec.separator, "table", fix=fix)
    else:
        if not spec.names:
            raise DataError(
                f"{path}: header is false but no names are given; set names: [...] "
                f"to the file's columns in order"
            )
        found = list(spec.names)
        check_separator(
            path,
            first_line(path),
            spec.separator,
            "table",
            len(found),
            fix="set separator: to the file's separator in the dataset config",
        )
    _check_mapped(spec, path, found)
    cols = {target: src for target, src in spec.columns.items() if src}
    dtypes = {src: _read_dtype(target, spec) for target, src in cols.items()}
    frame = read_text(
        TextSpec(
            path, spec.separator, found, dtypes, header=spec.header, quote_char='"', loader="table"
        )
    )
    return frame.select([pl.col(src).alias(t) for t, src in cols.items()])


def _read_dtype(target: str, spec: TableSpec) -> pl.DataType:
    if target == "timestamp":
        return pl.Int64() if spec.timestamp_format in ("seconds", "milliseconds") else pl.Utf8()
    if target in ("rating",):
        return pl.Float64()
    return pl.Utf8()  # side info is cast after reading (ids stay strings)


def _check_mapped(spec: TableSpec, path: Path, found: Sequence[str]) -> None:
    key = {"interactions": REQUIRED, "items": ("item_id",), "users": ("user_id",)}[spec.role]
    for target in key:
        if not spec.columns.get(target):
            raise DataError(
                f"{path}: no column is mapped to '{target}' ({spec.role} need it); columns "
                f"found: {', '.join(found)}; set columns.{target}: <column> in the dataset config"
            )
    for target, src in spec.columns.items():
        if src and src not in found:
            raise missing_column(
                path,
                src,
                found,
                "table",
                f"mapped to {target} by columns.{target}",
                f"fix columns.{target} in the dataset config"
                + (
                    " (timestamps are needed by temporal splits and ordering)"
                    if target == "timestamp"
                    else ""
                ),
            )


def _convert(frame: pl.DataFrame, spec: TableSpec, path: Path, offset: int) -> pl.DataFrame:
    out = []
    for target in frame.columns:
        s = frame[target]
        src = spec.columns[target]
        if target == "timestamp":
            s = _timestamp(s, spec, path, src, offset)
        elif target in ("user_id", "item_id"):
            s = s.cast(pl.Utf8)
        elif target == "genres" and s.dtype == pl.Utf8:
            s = s.str.split(spec.list_separator).list.eval(pl.element().filter(pl.element() != ""))
        elif target in INTERACTIONS_SCHEMA or target in SIDE_SCHEMA:
            want = INTERACTIONS_SCHEMA.get(target) or SIDE_SCHEMA[target]
            s = cast_column(s, want, path, src, offset, "table")
        out.append(s.alias(target))
    return pl.DataFrame(out)


def _timestamp(s: pl.Series, spec: TableSpec, path: Path, src: str, offset: int) -> pl.Series:
    fmt = spec.timestamp_format
    if s.dtype in (pl.Date,) or isinstance(s.dtype, pl.Datetime):
        return s.cast(pl.Datetime("us")).dt.epoch("s")
    if fmt in ("seconds", "milliseconds"):
        s = cast_column(s, pl.Int64(), path, src, offset, "table")
        return s // 1000 if fmt == "milliseconds" else s
    if fmt != "iso" and "%" not in fmt:
        raise DataError(
            f"{path}: timestamp_format {short(fmt)} is not one of {', '.join(TIMESTAMP_FORMATS)} "
            f"or a strftime pattern (e.g. '%Y-%m-%d %H:%M:%S'); fix timestamp_format"
        )
    text = s.cast(pl.Utf8)
    kw: dict[str, Any] = {"format": None if fmt == "iso" else fmt}
    try:
        parsed = text.str.to_datetime(strict=False, time_zone="UTC", time_unit="us", **kw)
    except pl.exceptions.PolarsError:
        parsed = pl.Series([None] * len(text), dtype=pl.Datetime("us", "UTC"))
    bad = (parsed.is_null() & text.is_not_null()).arg_true()
    if bad.len():
        i = int(bad[0])
        want = "an ISO datetime" if fmt == "iso" else f"a datetime like {fmt}"
        raise DataError(
            f"{path}: column '{src}' row {i + 1} (line {i + 1 + offset}) has value "
            f"{short(text[i])}, expected {want} (timestamp_format: {fmt}); fix that row or set "
            f"timestamp_format (seconds, milliseconds, iso or a strftime pattern)"
        )
    return parsed.dt.epoch("s")


def load_table(
    interactions: Path | str,
    *,
    name: str,
    columns: Mapping[str, str],
    items: Path | str | None = None,
    users: Path | str | None = None,
    item_columns: Mapping[str, str] | None = None,
    user_columns: Mapping[str, str] | None = None,
    separator: str = ",",
    header: bool = True,
    names: Sequence[str] | None = None,
    timestamp_format: str = "seconds",
    list_separator: str = "|",
    relevance_threshold: float | None = None,
) -> RawDataset:
    """Generic CSV/Parquet interactions (+ optional items/users files) with column mappings.

    ``columns`` maps contract names to the file's columns, e.g.
    ``{"user_id": "userId", "item_id": "movieId", "timestamp": "ts", "rating": "stars"}``
    (``rating`` optional). ``item_columns``/``user_columns`` map ``item_id``/``user_id`` and any
    side information (``title``, ``year``, ``genres`` ...); unmapped columns are not kept.
    """
    common = dict(
        separator=separator,
        header=header,
        names=names,
        timestamp_format=timestamp_format,
        list_separator=list_separator,
    )
    inter = read_table(TableSpec(Path(interactions), dict(columns), **common))  # type: ignore[arg-type]
    side = {}
    for role, path, cols, key in (
        ("items", items, item_columns, "item_id"),
        ("users", users, user_columns, "user_id"),
    ):
        mapping = dict(cols or {key: key})
        side[role] = (
            read_table(TableSpec(Path(path), mapping, role=role, **common))  # type: ignore[arg-type]
            if path is not None
            else empty_frame(key)
        )
    return RawDataset(
        name=name,
        interactions=inter,
        items=side["items"],
        users=side["users"],
        source_files=source_digests(
            [Path(p) for p in (interactions, items, users) if p is not None]
        ),
        relevance_threshold_default=relevance_threshold,
    )
