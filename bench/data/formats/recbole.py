"""RecBole atomic files: ``<dataset>.inter`` (+ optional ``.item``, ``.user``), tab-separated
with a ``name:type`` header (``user_id:token``, ``rating:float``, ``class:token_seq``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from bench.data.contract import (
    INTERACTIONS_SCHEMA,
    REQUIRED,
    SIDE_SCHEMA,
    RawDataset,
    empty_frame,
    finish_interactions,
)
from bench.data.formats.movielens import MOVIELENS_THRESHOLD, split_title_year
from bench.data.paths import confine, require_file, source_digests
from bench.data.text import (
    TextSpec,
    cast_column,
    check_separator,
    first_line,
    missing_column,
    null_markers,
    read_text,
    short,
    warn_unparsed,
)
from bench.errors import DataError

RECBOLE_FIELDS: dict[str, dict[str, str]] = {
    "inter": {
        "user_id": "user_id",
        "item_id": "item_id",
        "rating": "rating",
        "timestamp": "timestamp",
    },
    "item": {
        "item_id": "item_id",
        "movie_title": "title",
        "title": "title",
        "release_year": "year",
        "class": "genres",
        "genre": "genres",
    },
    "user": {
        "user_id": "user_id",
        "gender": "gender",
        "age": "age",
        "occupation": "occupation",
    },
}
RECBOLE_TYPES = {
    "token": pl.Utf8(),
    "token_seq": pl.Utf8(),
    "float": pl.Float64(),
    "float_seq": pl.Utf8(),
}


def recbole_header(path: Path) -> dict[str, str]:
    """``{field: type}`` of an atomic file's ``name:type`` header, in file order."""
    fix = "RecBole atomic files are tab-separated with a 'name:type' header"
    line = first_line(path)
    check_separator(path, line, "\t", "recbole_atomic", fix=fix)
    out: dict[str, str] = {}
    for col in line.split("\t"):
        name, _, ftype = col.partition(":")
        if not name or ftype not in RECBOLE_TYPES:
            raise DataError(
                f"{path}: malformed header field {short(col)} in line 1, expected name:type "
                f"with type one of {', '.join(RECBOLE_TYPES)} (e.g. user_id:token); {fix}"
            )
        out[name] = ftype
    return out


def read_recbole(
    path: Path, kind: str, fields: Mapping[str, str], seq_separator: str = " "
) -> pl.DataFrame:
    """One atomic file, its mapped fields renamed to contract names and cast to their dtypes."""
    header = recbole_header(path)
    wanted = {f: target for f, target in fields.items() if f in header}
    key = {"inter": "user_id", "item": "item_id", "user": "user_id"}[kind]
    for need in (key,) if kind != "inter" else REQUIRED:
        if need not in wanted.values():
            src = next((f for f, t in fields.items() if t == need), need)
            raise missing_column(
                path,
                src,
                [f"{k}:{v}" for k, v in header.items()],
                "recbole_atomic",
                need,
                f"add the field or map yours with fields.{kind}.<field>: {need}",
            )
    dtypes = {f: _recbole_read_type(target, header[f]) for f, target in wanted.items()}
    names = [f"{n}:{t}" for n, t in header.items()]
    spec = TextSpec(
        path,
        "\t",
        names,
        {f"{f}:{header[f]}": t for f, t in dtypes.items()},
        loader="recbole_atomic",
    )
    frame = read_text(spec)
    frame = frame.rename({f"{f}:{header[f]}": t for f, t in wanted.items()})
    return _recbole_cast(frame, path, header, wanted, seq_separator)


def _recbole_read_type(target: str, ftype: str) -> pl.DataType:
    if target in ("timestamp", "rating"):
        return pl.Float64()
    return RECBOLE_TYPES[ftype]


def _recbole_cast(
    frame: pl.DataFrame,
    path: Path,
    header: Mapping[str, str],
    wanted: Mapping[str, str],
    seq_separator: str,
) -> pl.DataFrame:
    out = []
    raw: dict[str, tuple[str, pl.Series]] = {}
    for field_name, target in wanted.items():
        s = frame[target]
        dtype = SIDE_SCHEMA.get(target) or INTERACTIONS_SCHEMA.get(target)
        if header[field_name].endswith("_seq") and (dtype is None or dtype == pl.List(pl.Utf8())):
            s = s.str.split(seq_separator).list.eval(pl.element().filter(pl.element() != ""))
        elif target == "timestamp":
            s = cast_column(
                s, pl.Int64(), path, f"{field_name}:{header[field_name]}", 1, "recbole_atomic"
            )
        elif target in SIDE_SCHEMA and target not in ("user_id", "item_id"):
            raw[target] = (f"{field_name}:{header[field_name]}", null_markers(s))
            s = raw[target][1].cast(SIDE_SCHEMA[target], strict=False)
        elif dtype is not None:
            col = f"{field_name}:{header[field_name]}"
            s = cast_column(s, dtype, path, col, 1, "recbole_atomic")
        out.append(s.alias(target))
    frame = pl.DataFrame(out)
    if "title" in frame.columns and frame.schema["title"] == pl.Utf8:
        title, title_year = split_title_year(pl.col("title"))
        year = pl.coalesce(pl.col("year"), title_year) if "year" in frame.columns else title_year
        frame = frame.with_columns(title, year.alias("year"))
    for target, (column, text) in raw.items():
        warn_unparsed(text, frame[target], path, column, 1)
    return frame


def load_recbole_atomic(
    directory: Path | str,
    dataset: str,
    *,
    name: str | None = None,
    fields: Mapping[str, Mapping[str, str]] | None = None,
    seq_separator: str = " ",
    relevance_threshold: float | None = MOVIELENS_THRESHOLD,
) -> RawDataset:
    """``<dataset>.inter`` (+ optional ``.item``, ``.user``) in ``directory``.

    ``fields`` maps RecBole field names to contract names per file kind (``inter``, ``item``,
    ``user``), e.g. ``{"item": {"class": "genres"}}``; it extends the ml-100k defaults
    (``RECBOLE_FIELDS``). Unmapped fields (``zip_code``) are not kept.
    """
    d = Path(directory)
    maps = {k: {**v, **dict((fields or {}).get(k, {}))} for k, v in RECBOLE_FIELDS.items()}
    inter_path = require_file(
        confine(d, f"{dataset}.inter"),
        "recbole_atomic",
        [f"{dataset}.inter", f"{dataset}.item", f"{dataset}.user"],
    )
    inter = finish_interactions(
        read_recbole(inter_path, "inter", maps["inter"], seq_separator),
        inter_path,
        "recbole_atomic",
    )
    parts: dict[str, pl.DataFrame] = {}
    read = [inter_path]
    for kind, key in (("item", "item_id"), ("user", "user_id")):
        p = confine(d, f"{dataset}.{kind}")
        if p.is_file():
            parts[kind] = read_recbole(
                require_file(p, "recbole_atomic"), kind, maps[kind], seq_separator
            )
            read.append(p)
        else:
            parts[kind] = empty_frame(key)
    return RawDataset(
        name=name or dataset,
        interactions=inter,
        items=parts["item"],
        users=parts["user"],
        source_files=source_digests(read),
        relevance_threshold_default=relevance_threshold,
    )
