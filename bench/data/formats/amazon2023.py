"""Amazon Reviews 2023 (McAuley Lab): ``<Category>.jsonl.gz`` + ``meta_<Category>.jsonl.gz``.

Interactions: one per review, ``user_id``, ``item_id`` = ``parent_asin``, ``rating`` (1-5),
``timestamp`` (the file's milliseconds floor-divided to seconds). Items, from the metadata:
``title``, ``description`` (the list of paragraphs joined with a space), ``categories`` (list of
strings), ``price`` (float; null when the source has ``null``, ``"None"`` or no number) and
``main_category``, ``store``. k-core filtering is the split's ``k_core`` (e.g. ``split.k_core=5``).
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import polars as pl

from bench.data.contract import RawDataset, empty_frame, finish_interactions
from bench.data.paths import confine, require_file, source_digests
from bench.errors import DataError

LOADER = "amazon2023"
BLOCK_BYTES = 1 << 26  # 64 MiB of JSON text per parse
REVIEW_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Utf8(),
    "parent_asin": pl.Utf8(),
    "rating": pl.Float64(),
    "timestamp": pl.Int64(),
}
META_SCHEMA: dict[str, pl.DataType] = {
    "parent_asin": pl.Utf8(),
    "title": pl.Utf8(),
    "main_category": pl.Utf8(),
    "store": pl.Utf8(),
    "description": pl.List(pl.Utf8()),
    "categories": pl.List(pl.Utf8()),
    "price": pl.Utf8(),  # a float, null or the string "None" in the release
}


def read_jsonl(
    path: Path, schema: dict[str, pl.DataType], block_bytes: int = BLOCK_BYTES
) -> pl.DataFrame:
    """A JSON Lines file (``.gz`` or plain) with only the ``schema`` fields, typed. Read in
    blocks of whole lines, so memory holds the kept columns, not the decompressed file."""
    require_file(path, LOADER)
    frames, line = [], 1
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            while block := f.read(block_bytes):
                block += f.readline()  # finish the last line
                frames.append(_parse_block(block, schema, path, line))
                line += block.count(b"\n")
    except (OSError, EOFError) as e:  # gzip: truncated or not gzip at all
        raise DataError(f"{path}: cannot be read ({e}); {_REFETCH}") from None
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


_REFETCH = "re-download it (delete it and run `bench data fetch <id>`)"


def _parse_block(
    block: bytes, schema: dict[str, pl.DataType], path: Path, line: int
) -> pl.DataFrame:
    try:
        return pl.read_ndjson(io.BytesIO(block), schema=schema)
    except pl.exceptions.PolarsError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        bad = _first_bad_line(block)
        where = f" line {line + bad}" if bad is not None else ""
        raise DataError(
            f"{path}:{where} not Amazon Reviews 2023 JSON Lines with fields {', '.join(schema)} "
            f"({first}); {_REFETCH}"
        ) from None


def _first_bad_line(block: bytes) -> int | None:
    """0-based index of the first non-empty line of ``block`` that is not a JSON object."""
    for i, raw in enumerate(block.splitlines()):
        if not raw.strip():
            continue
        try:
            if not isinstance(json.loads(raw), dict):
                return i
        except ValueError:
            return i
    return None


def reviews(path: Path) -> pl.DataFrame:
    raw = read_jsonl(path, REVIEW_SCHEMA)
    frame = raw.select(
        pl.col("user_id"),
        pl.col("parent_asin").alias("item_id"),
        (pl.col("timestamp") // 1000).alias("timestamp"),
        pl.col("rating"),
    )
    return finish_interactions(frame, path, LOADER, offset=0)


def meta(path: Path) -> pl.DataFrame:
    raw = read_jsonl(path, META_SCHEMA)
    price = pl.col("price").str.replace_all(r"[$,\s]", "").cast(pl.Float64, strict=False)
    return (
        raw.select(
            pl.col("parent_asin").alias("item_id"),
            _blank_to_null("title"),
            pl.col("description")
            .list.eval(pl.element().str.strip_chars())
            .list.join(" ")
            .str.strip_chars()
            .replace("", None)
            .alias("description"),
            pl.col("categories").fill_null([]).alias("categories"),
            price.alias("price"),
            _blank_to_null("main_category"),
            _blank_to_null("store"),
        )
        .filter(pl.col("item_id").is_not_null())
        .unique("item_id", keep="first", maintain_order=True)
    )


def _blank_to_null(column: str) -> pl.Expr:
    """Empty or whitespace-only text -> null."""
    text = pl.col(column).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(pl.col(column)).alias(column)


def load(
    directory: Path,
    *,
    name: str,
    category: str,
    files: dict[str, str | None] | None = None,
    relevance_threshold: float | None = None,
) -> RawDataset:
    """``<directory>/<category>.jsonl.gz`` and ``meta_<category>.jsonl.gz`` (rename with
    ``files.interactions`` / ``files.items``; ``files.items: null`` loads no metadata)."""
    f = {
        "interactions": f"{category}.jsonl.gz",
        "items": f"meta_{category}.jsonl.gz",
        **(files or {}),
    }
    expected = [n for n in f.values() if n]
    paths = {
        r: require_file(confine(directory, n), LOADER, expected) for r, n in f.items() if n
    }
    items = meta(paths["items"]) if "items" in paths else empty_frame("item_id")
    return RawDataset(
        name=name,
        interactions=reviews(paths["interactions"]),
        items=items,
        users=empty_frame("user_id"),
        source_files=source_digests(list(paths.values())),
        relevance_threshold_default=relevance_threshold,
    )
