"""Loaders on small files in the real formats, the bundled ml-100k, and every bad-input error."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import polars as pl
import pytest

from bench.data.formats import movielens, recbole, table
from bench.data.paths import confine
from bench.errors import DataError

INTER = {"user_id": pl.Utf8, "item_id": pl.Utf8, "timestamp": pl.Int64, "rating": pl.Float64}
ML100K = Path(list(importlib.util.find_spec("recbole").submodule_search_locations)[0]) / (
    "dataset_example/ml-100k"
)


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# ------------------------------------------------------------------------------------------ ok


def test_real_ml100k_from_the_recbole_wheel():
    ds = recbole.load_recbole_atomic(ML100K, "ml-100k")
    assert ds.interactions.schema == pl.Schema(INTER)
    assert ds.counts() == {"interactions": 100_000, "users": 943, "items": 1682}
    assert ds.items.schema == pl.Schema(
        {"item_id": pl.Utf8, "title": pl.Utf8, "year": pl.Int64, "genres": pl.List(pl.Utf8)}
    )
    assert ds.users.schema == pl.Schema(
        {"user_id": pl.Utf8, "gender": pl.Utf8, "age": pl.Int64, "occupation": pl.Utf8}
    )
    toy = ds.items.filter(pl.col("item_id") == "1").row(0, named=True)
    assert toy == {
        "item_id": "1",
        "title": "Toy Story",
        "year": 1995,
        "genres": ["Animation", "Children's", "Comedy"],
    }
    assert ds.items.height == 1682 and ds.users.height == 943
    assert ds.relevance_threshold_default == 4.0
    assert set(ds.source_files) == {str(ML100K / f"ml-100k.{k}") for k in ("inter", "item", "user")}


def test_recbole_atomic_small(tmp_path):
    write(
        tmp_path / "toy.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t10\t4\t100.0\n2\t10\t3.5\t200\n",
    )
    write(
        tmp_path / "toy.item",
        "item_id:token\tmovie_title:token_seq\tclass:token_seq\n10\tHeat (1995)\tAction Crime\n",
    )
    ds = recbole.load_recbole_atomic(tmp_path, "toy")
    assert ds.interactions.schema == pl.Schema(INTER)
    assert ds.interactions["timestamp"].to_list() == [100, 200]
    assert ds.items.row(0) == ("10", "Heat", ["Action", "Crime"], 1995)
    assert ds.users.columns == ["user_id"] and ds.users.height == 0


def test_movielens_100k_raw(tmp_path):
    write(tmp_path / "u.data", "1\t10\t5\t881250949\n2\t20\t3\t881250950\n")
    flags = ["0"] * 19
    flags[1] = flags[4] = "1"
    write(
        tmp_path / "u.item",
        "10|Café (1995)|01-Jan-1995||http://x|"
        + "|".join(flags)
        + "\n"
        + "20|Untitled|||http://y|"
        + "|".join(["0"] * 19)
        + "\n",
        "latin-1",
    )
    write(tmp_path / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    ds = movielens.load_movielens_100k_raw(tmp_path)
    assert ds.interactions.schema == pl.Schema(INTER)
    assert ds.items.rows() == [
        ("10", "Café", 1995, ["Action", "Children's"]),
        ("20", "Untitled", None, []),
    ]
    assert ds.users.rows()[0] == ("1", "M", 24, "technician")


def test_movielens_1m(tmp_path):
    write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    write(
        tmp_path / "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::Amélie (2001)::Comedy|Romance\n",
        "latin-1",
    )
    write(tmp_path / "users.dat", "1::F::1::10::48067\n")
    ds = movielens.load_movielens_1m(tmp_path)
    assert ds.interactions.schema == pl.Schema(INTER)
    assert ds.items.rows()[1] == ("661", "Amélie", 2001, ["Comedy", "Romance"])
    assert ds.users.rows() == [("1", "F", 1, "K-12 student")]


def test_movielens_csv(tmp_path):
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n")
    movies = 'movieId,title,genres\n2,"Jumanji, The (1995)",Adventure|Fantasy\n'
    write(tmp_path / "movies.csv", movies + "3,Some Film,(no genres listed)\n")
    ds = movielens.load_movielens_csv(tmp_path)
    assert ds.interactions.rows() == [("1", "2", 1112486027, 3.5)]
    assert ds.items.rows() == [
        ("2", "Jumanji, The", 1995, ["Adventure", "Fantasy"]),
        ("3", "Some Film", None, []),
    ]


COLS = {"user_id": "userId", "item_id": "movieId", "timestamp": "ts", "rating": "stars"}


def test_table_csv_iso_and_items(tmp_path):
    f = write(
        tmp_path / "log.tsv",
        "userId\tmovieId\tts\tstars\n"
        "7\ta\t2020-01-02T00:00:00Z\t5\n8\tb\t2020-01-02T01:00:00+01:00\t\n",
    )
    items = write(tmp_path / "items.tsv", "id\tname\tcats\na\tAlpha\tx|y\n")
    ds = table.load_table(
        f,
        name="t",
        columns=COLS,
        separator="\t",
        timestamp_format="iso",
        items=items,
        item_columns={"item_id": "id", "title": "name", "genres": "cats"},
    )
    assert ds.interactions.schema == pl.Schema(INTER)
    assert ds.interactions.rows() == [("7", "a", 1577923200, 5.0), ("8", "b", 1577923200, None)]
    assert ds.items.rows() == [("a", "Alpha", ["x", "y"])]


def test_table_parquet_milliseconds(tmp_path):
    f = tmp_path / "log.parquet"
    pl.DataFrame(
        {"userId": [1, 2], "movieId": [3, 4], "ts": [1_000_500, 2_000_000], "stars": [1, 2]}
    ).write_parquet(f)
    ds = table.load_table(f, name="t", columns=COLS, timestamp_format="milliseconds")
    assert ds.interactions.rows() == [("1", "3", 1000, 1.0), ("2", "4", 2000, 2.0)]


# -------------------------------------------------------------------------------------- errors


def test_missing_column_lists_found_columns(tmp_path):
    f = write(tmp_path / "log.csv", "userId,movieId,stars\n1,2,3\n")
    with pytest.raises(DataError) as e:
        table.load_table(f, name="t", columns=COLS)
    msg = one_line(e)
    assert "log.csv" in msg and "missing column 'ts'" in msg
    assert "columns found: userId, movieId, stars" in msg and "columns.timestamp" in msg


def test_recbole_missing_timestamp_field(tmp_path):
    write(tmp_path / "x.inter", "user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataError) as e:
        recbole.load_recbole_atomic(tmp_path, "x")
    msg = one_line(e)
    assert "missing column 'timestamp'" in msg and "user_id:token, item_id:token" in msg


def test_wrong_dtype_names_row_and_value(tmp_path):
    rows = "".join(f"{i}\t{i}\t4\t{1000 + i}\n" for i in range(1, 1234))
    write(tmp_path / "u.data", rows + "1234\t5\t—\t99\n")
    with pytest.raises(DataError) as e:
        movielens._ml_interactions(tmp_path / "u.data", "\t", "movielens_100k_raw")
    msg = one_line(e)
    assert "u.data" in msg and "column 'rating'" in msg and "row 1234" in msg
    assert "'—'" in msg and "expected a float" in msg


def test_wrong_dtype_with_header_counts_the_header_line(tmp_path):
    f = write(tmp_path / "r.csv", "userId,movieId,ts,stars\n1,2,3,4\n1,2,3,x\n")
    with pytest.raises(DataError) as e:
        table.load_table(f, name="t", columns=COLS)
    assert "row 2 (line 3)" in one_line(e) and "'x'" in str(e.value)


def test_wrong_separator_detected(tmp_path):
    write(tmp_path / "x.inter", "user_id:token,item_id:token,timestamp:float\n1,2,3\n")
    with pytest.raises(DataError) as e:
        recbole.load_recbole_atomic(tmp_path, "x")
    assert "expected tab-separated fields" in one_line(e) and "detected ','" in str(e.value)


def test_wrong_separator_table(tmp_path):
    f = write(tmp_path / "log.csv", "userId;movieId;ts;stars\n1;2;3;4\n")
    with pytest.raises(DataError) as e:
        table.load_table(f, name="t", columns=COLS)
    assert "expected ','-separated" in one_line(e) and "detected ';'" in str(e.value)


def test_empty_file_and_header_only(tmp_path):
    write(tmp_path / "u.data", "")
    write(tmp_path / "u.item", "1|x|||u|" + "|".join(["0"] * 19) + "\n")
    write(tmp_path / "u.user", "1|2|M|x|1\n")
    with pytest.raises(DataError) as e:
        movielens.load_movielens_100k_raw(tmp_path)
    assert "u.data" in one_line(e) and "empty" in str(e.value)
    f = write(tmp_path / "h.csv", "userId,movieId,ts,stars\n")
    with pytest.raises(DataError) as e:
        table.load_table(f, name="t", columns=COLS)
    assert "no interactions" in one_line(e)


def test_missing_file_lists_the_folder(tmp_path):
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n")
    write(tmp_path / "README.txt", "hi")
    with pytest.raises(DataError) as e:
        movielens.load_movielens_csv(tmp_path)
    msg = one_line(e)
    assert "movies.csv: file not found" in msg and "README.txt, ratings.csv" in msg


def test_ragged_line_is_located(tmp_path):
    f = write(tmp_path / "r.csv", "userId,movieId,ts,stars\n1,2,3,4\n1,2,3,4,5\n")
    with pytest.raises(DataError) as e:
        table.load_table(f, name="t", columns=COLS)
    assert "line 3 has 5 fields, expected 4" in one_line(e)


@pytest.mark.parametrize("rel", ["../etc/passwd", "a/../../b", "/etc/passwd"])
def test_confine_rejects_escapes(tmp_path, rel):
    with pytest.raises(DataError) as e:
        confine(tmp_path, rel)
    assert "data root" in one_line(e) or "'..'" in str(e.value)


def test_confine_rejects_symlink_escape(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(DataError) as e:
        confine(root, "link/file.csv")
    assert "symlink" in one_line(e)
    assert confine(root, "ok/file.csv") == root / "ok" / "file.csv"
