"""MovieLens raw files from GroupLens: ML-100K ``u.*``, ML-1M ``*.dat`` (``::``, latin-1) and
ML-20M/25M/ml-latest ``*.csv``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from bench.data.contract import RawDataset, empty_frame, finish_interactions
from bench.data.paths import confine, require_file, source_digests
from bench.data.text import (
    TextSpec,
    check_separator,
    first_line,
    header_columns,
    missing_column,
    read_text,
)

MOVIELENS_THRESHOLD = 4.0

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


def split_title_year(title: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """``"Toy Story (1995)"`` -> (``"Toy Story"``, 1995); titles without a year keep year null."""
    pattern = r"^(.*?)\s*\((\d{4})\)\s*$"
    year = title.str.extract(pattern, 2).cast(pl.Int64)
    clean = pl.when(year.is_not_null()).then(title.str.extract(pattern, 1)).otherwise(title)
    return clean.str.strip_chars().alias("title"), year.alias("year")


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
        source_files=source_digests(list(paths.values())),
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
        source_files=source_digests(list(paths.values())),
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
        source_files=source_digests(list(paths.values())),
        relevance_threshold_default=relevance_threshold,
    )
