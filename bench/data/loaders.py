"""Dataset loaders: files on disk -> a ``RawDataset`` with the contract's column schemas.

Every loader is polars-based (explicit schemas, no Python loop per row) and fails with a one-line
``DataError`` that names the file, the column, the 1-based row and line, the value found, what was
expected and the fix. Parsing takes a fast typed path first; only when polars refuses a file does
a diagnosis pass re-read the offending columns as strings to locate the first bad row.

Formats: RecBole atomic files, MovieLens raw files (ML-100K ``u.*``, ML-1M ``*.dat``, ML-20M/25M
``*.csv``) and a generic CSV/Parquet table with a column mapping. See ``docs/datasets.md``.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from bench.errors import DataError
from bench.hashing import sha256_file as _sha256_file

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
MOVIELENS_THRESHOLD = 4.0
REQUIRED = ("user_id", "item_id", "timestamp")
SEPARATOR_NAMES = {"\t": "tab", ",": "','", ";": "';'", "|": "'|'", "::": "'::'", " ": "space"}

ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
# ML-1M README: occupation codes of users.dat
ML1M_OCCUPATIONS = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)


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


# --------------------------------------------------------------------------------------------
# files: confinement, existence, checksums


def confine(root: Path | str, relative: str | Path, what: str = "file") -> Path:
    """``root / relative``, refused unless it stays under ``root`` (also through symlinks).

    ``..`` components and absolute paths outside the root are refused lexically, before any I/O;
    symlinks are then resolved and the target must still lie under the resolved root.
    """
    root = Path(root).absolute()
    rel = Path(str(relative))
    if str(relative).strip() == "" or ".." in rel.parts:
        raise DataError(
            f"{what} '{relative}' is not allowed: paths must stay under {root} (no '..'); "
            f"use a plain name or a path relative to {root}"
        )
    candidate = rel if rel.is_absolute() else root / rel
    if not _is_under(candidate, root):
        raise DataError(
            f"{what} '{relative}' is outside the data root {root}; move the files under it or "
            f"set data_root (env BENCH_DATA_ROOT)"
        )
    resolved = candidate.resolve()
    if not _is_under(resolved, root.resolve()):
        raise DataError(
            f"{what} '{relative}' resolves to {resolved}, outside the data root {root.resolve()} "
            f"(symlink escaping the root); copy the file under the data root instead"
        )
    return candidate


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def require_file(path: Path, loader: str, expected: Sequence[str] = ()) -> Path:
    """The file must exist and be non-empty; otherwise say what the folder holds."""
    if not path.is_file():
        folder = path.parent
        if not folder.is_dir():
            raise DataError(
                f"{path}: file not found and folder {folder} does not exist; put the dataset "
                f"files there (the {loader} loader reads {', '.join(expected) or path.name}) or "
                f"set data_root (env BENCH_DATA_ROOT) / path in the dataset config"
            )
        found = sorted(p.name for p in folder.iterdir())[:20]
        raise DataError(
            f"{path}: file not found; {folder} contains: {', '.join(found) or '(nothing)'}; "
            f"the {loader} loader reads {', '.join(expected) or path.name} (rename the file or set "
            f"files.<role> in the dataset config)"
        )
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes); re-download or re-export it")
    return path


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path | str, chunk: int = 1 << 22) -> str:
    """sha256 hex digest of a dataset source file, memoised on (path, size, mtime): dataset
    sources are large and read once per run; split files are always re-hashed
    (``bench.hashing``)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = _sha256_file(p, chunk)
    return _SHA_CACHE[key]


def _sources(paths: Sequence[Path | None]) -> dict[str, str]:
    return {str(Path(p).absolute()): sha256_file(p) for p in paths if p is not None}


# --------------------------------------------------------------------------------------------
# sniffing the first line


def first_line(path: Path, encoding: str = "utf-8") -> str:
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    return line.decode(encoding, errors="replace")


def check_separator(
    path: Path, line: str, sep: str, loader: str, n_fields: int | None = None, fix: str = ""
) -> None:
    """Refuse a file whose first line is not ``sep``-separated, naming the detected separator."""
    want = SEPARATOR_NAMES.get(sep, repr(sep))
    shown = _short(line, 80)
    if sep not in line and (n_fields or 2) > 1:
        found = [s for s in ("\t", "::", ",", ";", "|") if s in line]
        got = f"detected {SEPARATOR_NAMES[found[0]]}" if found else "found no separator"
        raise DataError(
            f"{path}: expected {want}-separated fields ({loader} loader), {got} in line 1 "
            f"({shown}); {fix or 'convert the file or use the table loader with a separator'}"
        )
    if n_fields is not None and len(line.split(sep)) != n_fields:
        raise DataError(
            f"{path}: line 1 has {len(line.split(sep))} {want}-separated fields, expected "
            f"{n_fields} for the {loader} loader ({shown}); check the file format"
        )


def _short(value: Any, n: int = 60) -> str:
    s = repr(value)
    return s if len(s) <= n else s[: n - 4] + "...'"


# --------------------------------------------------------------------------------------------
# reading delimited text with typed columns and located errors


@dataclass(frozen=True)
class TextSpec:
    """How to read one delimited file: its column names and the dtypes of the wanted ones."""

    path: Path
    separator: str
    names: list[str]  # every column of the file, in order
    dtypes: Mapping[str, pl.DataType]  # wanted columns -> dtype (others are not returned)
    header: bool = True
    encoding: str = "utf-8"
    quote_char: str | None = None
    loader: str = "table"


def read_text(spec: TextSpec) -> pl.DataFrame:
    """Read a delimited file with an explicit schema; locate the first bad row on failure."""
    source = _source(spec)
    schema = {n: spec.dtypes.get(n, pl.Utf8()) for n in spec.names}
    try:
        return pl.read_csv(
            source,
            separator=_sep1(spec.separator),
            has_header=spec.header,
            schema=schema,
            columns=[spec.names.index(c) for c in spec.dtypes],
            quote_char=spec.quote_char,
            encoding="utf8",
        ).select(list(spec.dtypes))
    except (pl.exceptions.ComputeError, pl.exceptions.ShapeError, pl.exceptions.NoDataError) as e:
        raise _diagnose(spec, e) from None


def _sep1(sep: str) -> str:
    return "\x1f" if sep == "::" else sep


def _source(spec: TextSpec) -> Path | io.BytesIO:
    """The path itself, or transcoded bytes for latin-1 files and '::'-separated files."""
    if spec.encoding.replace("-", "").lower() in ("utf8", "ascii") and spec.separator != "::":
        return spec.path
    raw = spec.path.read_bytes()
    if spec.encoding.replace("-", "").lower() not in ("utf8", "ascii"):
        raw = raw.decode(spec.encoding).encode("utf-8")
    if spec.separator == "::":
        raw = raw.replace(b"::", b"\x1f")
    return io.BytesIO(raw)


def _diagnose(spec: TextSpec, err: Exception) -> DataError:
    """Re-read as strings, find the first row that does not parse, and describe it."""
    offset = 1 if spec.header else 0
    try:
        text = pl.read_csv(
            _source(spec),
            separator=_sep1(spec.separator),
            has_header=spec.header,
            schema={n: pl.Utf8() for n in spec.names},
            quote_char=spec.quote_char,
            encoding="utf8",
        )
    except pl.exceptions.PolarsError:
        return _ragged(spec, offset) or DataError(
            f"{spec.path}: cannot be parsed as {SEPARATOR_NAMES.get(spec.separator)}-separated "
            f"text ({_first_line_of(err)}); check the separator and quoting"
        )
    for col, dtype in spec.dtypes.items():
        bad = _first_bad(text[col], dtype)
        if bad is not None:
            return dtype_error(spec.path, col, bad, text[col][bad], dtype, offset, spec.loader)
    return DataError(f"{spec.path}: {_first_line_of(err)}; check the file format")


def _ragged(spec: TextSpec, offset: int) -> DataError | None:
    """The first line whose number of fields differs from the header's, if any."""
    src = _source(spec)
    lines = pl.read_csv(
        src, separator="\x00", has_header=False, schema={"line": pl.Utf8()}, quote_char=None
    )["line"].fill_null("")
    counts = lines.str.count_matches(_sep1(spec.separator), literal=True) + 1
    wrong = ((counts != len(spec.names)) & (lines != "")).arg_true()
    if wrong.len() == 0:
        return None
    i = int(wrong[0])
    return DataError(
        f"{spec.path}: line {i + 1} has {counts[i]} fields, expected {len(spec.names)} "
        f"({', '.join(spec.names)}): {_short(lines[i])}; fix or remove that line"
    )


def _first_line_of(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _first_bad(s: pl.Series, dtype: pl.DataType) -> int | None:
    """Index of the first non-null value that does not cast to ``dtype`` (vectorised)."""
    if dtype == pl.Utf8() or s.dtype == dtype:
        return None
    cast = s.cast(dtype, strict=False)
    bad = (cast.is_null() & s.is_not_null()).arg_true()
    return int(bad[0]) if bad.len() else None


# Side-information placeholders read as null (RecBole's ml-100k spells one year 'unkonwn').
NULL_MARKERS = ("", "unknown", "unkonwn", "na", "n/a", "nan", "null", "none", "\\n")


def null_markers(s: pl.Series) -> pl.Series:
    """Text placeholders for a missing value -> null (side information only, never ratings)."""
    if s.dtype != pl.Utf8:
        return s
    marker = s.str.strip_chars().str.to_lowercase().is_in(list(NULL_MARKERS))
    return pl.select(pl.when(marker).then(None).otherwise(s).alias(s.name)).to_series()


def warn_unparsed(text: pl.Series, parsed: pl.Series, path: Path, column: str, offset: int) -> None:
    """Side information: one warning for values that were read as null because they don't parse."""
    bad = (parsed.is_null() & text.is_not_null()).arg_true()
    if bad.len():
        i = int(bad[0])
        warnings.warn(
            f"{path}: column '{column}' has {bad.len()} value(s) that are not "
            f"{_EXPECT.get(parsed.dtype, str(parsed.dtype))}, read as null (first: row {i + 1}, "
            f"line {i + 1 + offset}, value {_short(text[i])})",
            DatasetWarning,
            stacklevel=2,
        )


_EXPECT: dict[pl.DataType, str] = {pl.Float64(): "a float", pl.Int64(): "an integer"}


def dtype_error(
    path: Path, column: str, index: int, value: Any, dtype: Any, offset: int, loader: str
) -> DataError:
    """The one-line wrong-dtype error: file, column, row, line, value, expectation, fix."""
    want = _EXPECT.get(dtype, str(dtype))
    return DataError(
        f"{path}: column '{column}' row {index + 1} (line {index + 1 + offset}) has value "
        f"{_short(value)}, expected {want} ({loader} loader); fix or remove that row"
    )


def cast_column(
    s: pl.Series, dtype: pl.DataType, path: Path, column: str, offset: int, loader: str
) -> pl.Series:
    """Cast with a located error instead of polars' unlocated one."""
    bad = _first_bad(s, dtype)
    if bad is not None:
        raise dtype_error(path, column, bad, s[bad], dtype, offset, loader)
    return s.cast(dtype)


# --------------------------------------------------------------------------------------------
# checks on the contract frames


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
    return pl.DataFrame(schema={key: pl.Utf8()})


def split_title_year(title: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """``"Toy Story (1995)"`` -> (``"Toy Story"``, 1995); titles without a year keep year null."""
    pattern = r"^(.*?)\s*\((\d{4})\)\s*$"
    year = title.str.extract(pattern, 2).cast(pl.Int64)
    clean = pl.when(year.is_not_null()).then(title.str.extract(pattern, 1)).otherwise(title)
    return clean.str.strip_chars().alias("title"), year.alias("year")


def header_columns(path: Path, sep: str, loader: str, fix: str = "") -> list[str]:
    line = first_line(path)
    check_separator(path, line, sep, loader, fix=fix)
    return [c.strip().strip('"') for c in line.split(sep)]


def missing_column(
    path: Path, column: str, found: Sequence[str], loader: str, role: str, fix: str
) -> DataError:
    return DataError(
        f"{path}: missing column '{column}' ({role}, needed by the {loader} loader); columns "
        f"found: {', '.join(found)}; {fix}"
    )


# --------------------------------------------------------------------------------------------
# RecBole atomic files

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
                f"{path}: malformed header field {_short(col)} in line 1, expected name:type "
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
        source_files=_sources(read),
        relevance_threshold_default=relevance_threshold,
    )


# --------------------------------------------------------------------------------------------
# MovieLens raw formats


def _ml_interactions(path: Path, sep: str, loader: str, header: bool = False) -> pl.DataFrame:
    names = ["user_id", "item_id", "rating", "timestamp"]
    if header:
        found = header_columns(path, sep, loader)
        src = ["userId", "movieId", "rating", "timestamp"]
        for want, role in zip(src, names, strict=True):
            if want not in found:
                raise missing_column(
                    path,
                    want,
                    found,
                    loader,
                    role,
                    "the file must have the ML-20M/25M header userId,movieId,rating,timestamp "
                    "(use the table loader with a columns mapping for other layouts)",
                )
        names = found
        rename = dict(zip(src, ["user_id", "item_id", "rating", "timestamp"], strict=True))
    else:
        check_separator(path, first_line(path), sep, loader, n_fields=4)
        rename = {n: n for n in names}
    dtypes = {
        k: {
            "user_id": pl.Utf8(),
            "item_id": pl.Utf8(),
            "rating": pl.Float64(),
            "timestamp": pl.Int64(),
        }[v]
        for k, v in rename.items()
    }
    frame = read_text(TextSpec(path, sep, names, dtypes, header=header, loader=loader))
    return finish_interactions(frame.rename(rename), path, loader, offset=int(header))


def load_movielens_100k_raw(
    directory: Path | str,
    *,
    name: str = "ml-100k",
    files: Mapping[str, str] | None = None,
    relevance_threshold: float | None = MOVIELENS_THRESHOLD,
) -> RawDataset:
    """GroupLens ML-100K: ``u.data`` (tab), ``u.item`` and ``u.user`` (``|``, latin-1)."""
    f = {"interactions": "u.data", "items": "u.item", "users": "u.user", **(files or {})}
    d = Path(directory)
    expected = [f["interactions"], f["items"], f["users"]]
    paths = {r: require_file(confine(d, n), "movielens_100k_raw", expected) for r, n in f.items()}
    inter = _ml_interactions(paths["interactions"], "\t", "movielens_100k_raw")
    return RawDataset(
        name=name,
        interactions=inter,
        items=_ml100k_items(paths["items"]),
        users=_ml100k_users(paths["users"]),
        source_files=_sources(list(paths.values())),
        relevance_threshold_default=relevance_threshold,
    )


def _ml100k_items(path: Path) -> pl.DataFrame:
    loader = "movielens_100k_raw"
    names = ["item_id", "title", "release_date", "video_date", "url", *ML100K_GENRES]
    check_separator(path, first_line(path, "latin-1"), "|", loader, n_fields=len(names))
    dtypes: dict[str, pl.DataType] = {n: pl.Utf8() for n in ("item_id", "title", "release_date")}
    dtypes.update({g: pl.Int8() for g in ML100K_GENRES})
    raw = read_text(
        TextSpec(path, "|", names, dtypes, header=False, encoding="latin-1", loader=loader)
    )
    title, title_year = split_title_year(pl.col("title"))
    date_year = pl.col("release_date").str.extract(r"(\d{4})\s*$", 1).cast(pl.Int64)
    genres = pl.concat_list(
        [pl.when(pl.col(g) == 1).then(pl.lit(g)).otherwise(None) for g in ML100K_GENRES]
    ).list.drop_nulls()
    return raw.select(
        pl.col("item_id"),
        title,
        pl.coalesce(date_year, title_year).alias("year"),
        genres.alias("genres"),
    )


def _ml100k_users(path: Path) -> pl.DataFrame:
    loader = "movielens_100k_raw"
    names = ["user_id", "age", "gender", "occupation", "zip_code"]
    check_separator(path, first_line(path, "latin-1"), "|", loader, n_fields=len(names))
    dtypes = {"user_id": pl.Utf8(), "gender": pl.Utf8(), "age": pl.Int64(), "occupation": pl.Utf8()}
    raw = read_text(
        TextSpec(path, "|", names, dtypes, header=False, encoding="latin-1", loader=loader)
    )
    return raw.select(list(dtypes))


def load_movielens_1m(
    directory: Path | str,
    *,
    name: str = "ml-1m",
    files: Mapping[str, str] | None = None,
    relevance_threshold: float | None = MOVIELENS_THRESHOLD,
) -> RawDataset:
    """GroupLens ML-1M (and ML-10M ratings/movies): ``::``-separated ``*.dat``, latin-1."""
    f = {
        "interactions": "ratings.dat",
        "items": "movies.dat",
        "users": "users.dat",
        **(files or {}),
    }
    d = Path(directory)
    expected = [n for n in f.values() if n]
    paths = {r: require_file(confine(d, n), "movielens_1m", expected) for r, n in f.items() if n}
    inter = _ml_interactions(paths["interactions"], "::", "movielens_1m")
    users = _ml1m_users(paths["users"]) if "users" in paths else empty_frame("user_id")
    return RawDataset(
        name=name,
        interactions=inter,
        items=_movies(paths["items"], "::", "movielens_1m", header=False, encoding="latin-1"),
        users=users,
        source_files=_sources(list(paths.values())),
        relevance_threshold_default=relevance_threshold,
    )


def _movies(path: Path, sep: str, loader: str, *, header: bool, encoding: str) -> pl.DataFrame:
    names = ["movieId", "title", "genres"]
    if header:
        found = header_columns(path, sep, loader)
        for col in names:
            if col not in found:
                raise missing_column(
                    path,
                    col,
                    found,
                    loader,
                    "items",
                    "the file must have the header movieId,title,genres",
                )
        names = found
    else:
        check_separator(path, first_line(path, encoding), sep, loader, n_fields=3)
    dtypes = {n: pl.Utf8() for n in ("movieId", "title", "genres")}
    raw = read_text(
        TextSpec(
            path,
            sep,
            names,
            dtypes,
            header=header,
            encoding=encoding,
            quote_char='"' if header else None,
            loader=loader,
        )
    )
    title, year = split_title_year(pl.col("title"))
    genres = (
        pl.when(pl.col("genres") == "(no genres listed)")
        .then(pl.lit(""))
        .otherwise(pl.col("genres"))
        .fill_null("")
        .str.split("|")
        .list.eval(pl.element().filter(pl.element() != ""))
    )
    return raw.select(pl.col("movieId").alias("item_id"), title, year, genres.alias("genres"))


def _ml1m_users(path: Path) -> pl.DataFrame:
    loader = "movielens_1m"
    names = ["user_id", "gender", "age", "occupation", "zip_code"]
    check_separator(path, first_line(path, "latin-1"), "::", loader, n_fields=len(names))
    dtypes = {
        "user_id": pl.Utf8(),
        "gender": pl.Utf8(),
        "age": pl.Int64(),
        "occupation": pl.Int64(),
    }
    raw = read_text(
        TextSpec(path, "::", names, dtypes, header=False, encoding="latin-1", loader=loader)
    )
    codes = pl.Series("code", range(len(ML1M_OCCUPATIONS)), dtype=pl.Int64)
    lookup = pl.DataFrame({"occupation": codes, "occ": list(ML1M_OCCUPATIONS)})
    out = raw.join(lookup, on="occupation", how="left", maintain_order="left")
    return out.select(
        "user_id",
        "gender",
        "age",
        pl.coalesce("occ", pl.col("occupation").cast(pl.Utf8)).alias("occupation"),
    )


def load_movielens_csv(
    directory: Path | str,
    *,
    name: str = "ml-20m",
    files: Mapping[str, str] | None = None,
    relevance_threshold: float | None = MOVIELENS_THRESHOLD,
) -> RawDataset:
    """GroupLens ML-20M / ML-25M / ml-latest: ``ratings.csv`` and ``movies.csv`` (headers)."""
    f = {"interactions": "ratings.csv", "items": "movies.csv", **(files or {})}
    d = Path(directory)
    expected = [n for n in f.values() if n]
    paths = {r: require_file(confine(d, n), "movielens_csv", expected) for r, n in f.items() if n}
    inter = _ml_interactions(paths["interactions"], ",", "movielens_csv", header=True)
    items = (
        _movies(paths["items"], ",", "movielens_csv", header=True, encoding="utf-8")
        if "items" in paths
        else empty_frame("item_id")
    )
    return RawDataset(
        name=name,
        interactions=inter,
        items=items,
        users=empty_frame("user_id"),
        source_files=_sources(list(paths.values())),
        relevance_threshold_default=relevance_threshold,
    )


# --------------------------------------------------------------------------------------------
# generic CSV / Parquet tables

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
        raise DataError(f"{path}: not a readable Parquet file ({_first_line_of(e)})") from None
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
            f"{path}: timestamp_format {_short(fmt)} is not one of {', '.join(TIMESTAMP_FORMATS)} "
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
            f"{_short(text[i])}, expected {want} (timestamp_format: {fmt}); fix that row or set "
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
        source_files=_sources([Path(p) for p in (interactions, items, users) if p is not None]),
        relevance_threshold_default=relevance_threshold,
    )


def env_data_root() -> Path:
    """``$BENCH_DATA_ROOT`` or ``<cwd>/data``."""
    return Path(os.environ.get("BENCH_DATA_ROOT") or Path.cwd() / "data").absolute()


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def check_name(name: str, what: str = "dataset name") -> str:
    """A plain name (letters, digits, ``._+-``; no ``/``, no ``..``), checked before any I/O."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise DataError(
            f"{what} {_short(name)} is not a plain name: use letters, digits, '.', '_', '+', '-' "
            f"(no '/', no '..'; datasets live under the data root)"
        )
    return name
