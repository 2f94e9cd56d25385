"""Delimited text files read with explicit schemas, and errors that say where.

Parsing takes a fast typed path first (polars, no Python loop per row); only when polars refuses
a file does a diagnosis pass re-read the offending columns as strings to locate the first bad
row. Every error is one ``DataError`` line naming the file, the column, the 1-based row and
line, the value found, what was expected and the fix. Separators are sniffed from the first
line (``check_separator``) so a wrong one is named instead of mis-parsed.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from bench.data.contract import DatasetWarning
from bench.errors import DataError

SEPARATOR_NAMES = {"\t": "tab", ",": "','", ";": "';'", "|": "'|'", "::": "'::'", " ": "space"}


# --------------------------------------------------------------------------------------------
# sniffing the first line


def first_line(path: Path, encoding: str = "utf-8") -> str:
    """The file's first line (read from its first 64 KiB), without the line break."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    return line.decode(encoding, errors="replace")


def check_separator(
    path: Path, line: str, sep: str, loader: str, n_fields: int | None = None, fix: str = ""
) -> None:
    """Refuse a file whose first line is not ``sep``-separated, naming the detected separator."""
    want = SEPARATOR_NAMES.get(sep, repr(sep))
    shown = short(line, 80)
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


def header_columns(path: Path, sep: str, loader: str, fix: str = "") -> list[str]:
    """The column names of a ``sep``-separated header line (the separator checked first)."""
    line = first_line(path)
    check_separator(path, line, sep, loader, fix=fix)
    return [c.strip().strip('"') for c in line.split(sep)]


def missing_column(
    path: Path, column: str, found: Sequence[str], loader: str, role: str, fix: str
) -> DataError:
    """The one-line missing-column error: file, column, its role, the columns found, the fix."""
    return DataError(
        f"{path}: missing column '{column}' ({role}, needed by the {loader} loader); columns "
        f"found: {', '.join(found)}; {fix}"
    )


def short(value: Any, n: int = 60) -> str:
    """``repr(value)`` cut to ``n`` characters, for values quoted in error messages."""
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
            f"text ({first_error_line(err)}); check the separator and quoting"
        )
    for col, dtype in spec.dtypes.items():
        bad = _first_bad(text[col], dtype)
        if bad is not None:
            return dtype_error(spec.path, col, bad, text[col][bad], dtype, offset, spec.loader)
    return DataError(f"{spec.path}: {first_error_line(err)}; check the file format")


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
        f"({', '.join(spec.names)}): {short(lines[i])}; fix or remove that line"
    )


def first_error_line(err: Exception) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _first_bad(s: pl.Series, dtype: pl.DataType) -> int | None:
    """Index of the first non-null value that does not cast to ``dtype`` (vectorised)."""
    if dtype == pl.Utf8() or s.dtype == dtype:
        return None
    cast = s.cast(dtype, strict=False)
    bad = (cast.is_null() & s.is_not_null()).arg_true()
    return int(bad[0]) if bad.len() else None


# --------------------------------------------------------------------------------------------
# casting columns, side information


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
            f"line {i + 1 + offset}, value {short(text[i])})",
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
        f"{short(value)}, expected {want} ({loader} loader); fix or remove that row"
    )


def cast_column(
    s: pl.Series, dtype: pl.DataType, path: Path, column: str, offset: int, loader: str
) -> pl.Series:
    """Cast with a located error instead of polars' unlocated one."""
    bad = _first_bad(s, dtype)
    if bad is not None:
        raise dtype_error(path, column, bad, s[bad], dtype, offset, loader)
    return s.cast(dtype)
