"""The Amazon Reviews 2023 and MIND loaders on fixtures in the sources' real formats (built in
tmp), through load_dataset with the real conf/dataset configs: pinned counts, side information,
one-line errors."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import polars as pl
import pytest
import yaml

from bench.data import datasets as D
from bench.data.contract import DatasetWarning
from bench.errors import DataError
from bench.splits import SplitConfig, build_split
from tests.unit.fetch_fixtures import amazon_meta, amazon_reviews, jsonl_gz, mind_zip

REPO = Path(__file__).resolve().parents[2]


def conf(name: str, root: Path) -> dict:
    cfg = yaml.safe_load((REPO / "conf" / "dataset" / f"{name}.yaml").read_text())
    return {**cfg, "data_root": str(root)}


def load(cfg: dict):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)  # unpinned fixture files
        return D.load_dataset(cfg)


def amazon_folder(root: Path, category: str = "Video_Games", **kw) -> Path:
    folder = root / f"amazon2023-{category.lower().replace('_', '-')}"
    folder.mkdir(parents=True)
    (folder / f"{category}.jsonl.gz").write_bytes(jsonl_gz(amazon_reviews(**kw)))
    (folder / f"meta_{category}.jsonl.gz").write_bytes(jsonl_gz(amazon_meta()))
    return folder


def test_amazon2023_reviews_and_metadata(tmp_path):
    amazon_folder(tmp_path)
    ds = load(conf("amazon2023-video-games", tmp_path))
    assert ds.counts() == {"interactions": 6, "users": 3, "items": 3}
    inter = ds.interactions
    assert inter.schema == {
        "user_id": pl.Utf8, "item_id": pl.Utf8, "timestamp": pl.Int64, "rating": pl.Float64
    }
    assert inter["timestamp"][0] == 1588687728  # milliseconds -> seconds
    assert sorted(inter["item_id"].unique()) == ["P1", "P2", "P3"]
    items = {r["item_id"]: r for r in ds.items.iter_rows(named=True)}
    assert set(items) == {"P1", "P2", "P3", "P4"}
    assert items["P1"]["description"] == "Soft. Long lasting, with shea."
    assert items["P1"]["categories"] == ["Beauty", "Lips"]
    assert items["P1"]["price"] == 4.99 and items["P4"]["price"] == 12.5
    assert items["P2"]["price"] is None and items["P3"]["price"] is None  # null and "None"
    assert items["P2"]["description"] is None and items["P2"]["categories"] == []
    assert ds.items.schema["price"] == pl.Float64
    assert ds.items.schema["categories"] == pl.List(pl.Utf8)
    assert ds.relevance_threshold_default is None


def test_amazon2023_every_category_config_loads_its_own_files(tmp_path):
    for category in ("All_Beauty", "Video_Games", "Musical_Instruments"):
        amazon_folder(tmp_path, category)
        name = f"amazon2023-{category.lower().replace('_', '-')}"
        assert load(conf(name, tmp_path)).counts()["interactions"] == 6


def test_amazon2023_k_core_is_the_splits(tmp_path):
    amazon_folder(tmp_path)
    ds = load(conf("amazon2023-video-games", tmp_path))
    frames, info = build_split(ds, SplitConfig(protocol="random-ratio", k_core=2))
    assert info["counts"]["n_interactions"] == 6  # every user and item has 2 reviews
    with pytest.raises(DataError, match="0 interactions remain after k-core=3"):
        build_split(ds, SplitConfig(protocol="random-ratio", k_core=3))
    assert {"title", "description", "categories", "price"} <= set(frames["items"].columns)


def test_amazon2023_missing_metadata_file_names_it(tmp_path):
    folder = amazon_folder(tmp_path)
    (folder / "meta_Video_Games.jsonl.gz").unlink()
    with pytest.raises(DataError, match=r"\(missing meta_Video_Games\.jsonl\.gz\) and "
                       r"BENCH_OFFLINE is set; download .*meta_Video_Games\.jsonl\.gz by hand"):
        load(conf("amazon2023-video-games", tmp_path))
    with pytest.raises(DataError, match=r"meta_Video_Games\.jsonl\.gz: file not found; .* "
                       r"contains: Video_Games\.jsonl\.gz"):
        load({**conf("amazon2023-video-games", tmp_path), "manifest": None})


def test_amazon2023_not_json_is_one_line(tmp_path):
    folder = amazon_folder(tmp_path)
    (folder / "Video_Games.jsonl.gz").write_bytes(gzip.compress(b"user_id,rating\nA1,5\n"))
    with pytest.raises(DataError, match=r"Video_Games\.jsonl\.gz: line 1 not Amazon Reviews 2023 "
                       r"JSON Lines with fields user_id, parent_asin, rating, timestamp") as e:
        load(conf("amazon2023-video-games", tmp_path))
    assert "\n" not in str(e.value)
    (folder / "Video_Games.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match=r"Video_Games\.jsonl\.gz: cannot be read \(.*\); "
                       r"re-download it"):
        load(conf("amazon2023-video-games", tmp_path))


def test_amazon2023_reads_in_blocks_of_whole_lines(tmp_path):
    """Blocks smaller than a line still give every row once; a bad line is located."""
    from bench.data.formats import amazon2023

    path = tmp_path / "r.jsonl.gz"
    rows = amazon_reviews()
    path.write_bytes(jsonl_gz(rows))
    for size in (1, 50, 1 << 20):
        frame = amazon2023.read_jsonl(path, amazon2023.REVIEW_SCHEMA, block_bytes=size)
        assert frame["parent_asin"].to_list() == [r["parent_asin"] for r in rows]
    text = gzip.decompress(path.read_bytes()).split(b"\n")
    text[4] = b'{"user_id": "A9", "rating": 5'
    path.write_bytes(gzip.compress(b"\n".join(text)))
    with pytest.raises(DataError, match=r"r\.jsonl\.gz: line 5 not Amazon"):
        amazon2023.read_jsonl(path, amazon2023.REVIEW_SCHEMA, block_bytes=50)


def test_amazon2023_review_without_user_is_located(tmp_path):
    folder = amazon_folder(tmp_path)
    rows = amazon_reviews()
    del rows[2]["user_id"]
    (folder / "Video_Games.jsonl.gz").write_bytes(jsonl_gz(rows))
    with pytest.raises(DataError, match=r"column 'user_id' row 3 \(line 3\) is empty"):
        load(conf("amazon2023-video-games", tmp_path))


def mind_folder(root: Path) -> Path:
    import io
    import zipfile

    folder = root / "mind-small"
    for part in ("train", "dev"):
        with zipfile.ZipFile(io.BytesIO(mind_zip(part))) as z:
            z.extractall(folder / part)
    return folder


def test_mind_clicked_impressions_and_news(tmp_path):
    mind_folder(tmp_path)
    ds = load(conf("mind-small", tmp_path))
    assert ds.counts() == {"interactions": 5, "users": 3, "items": 4}
    rows = ds.interactions.sort("timestamp").rows()
    assert rows[0] == ("U1", "N3", 1573463158, None)  # 11/11/2019 9:05:58 AM UTC
    assert rows[-1] == ("U3", "N6", 1573808122, None)  # 11/15/2019 8:55:22 AM UTC
    assert ("U2", "N5", 1573567805, None) in rows  # 2:10:05 PM
    items = {r["item_id"]: r for r in ds.items.iter_rows(named=True)}
    assert set(items) == {"N1", "N3", "N4", "N5", "N6"}
    assert items["N3"]["title"] == 'Game "night"' and items["N3"]["abstract"] is None
    assert items["N4"] == {
        "item_id": "N4", "category": "finance", "subcategory": "markets", "title": "Stocks up",
        "abstract": "Markets rose.",
    }


def test_mind_one_part(tmp_path):
    mind_folder(tmp_path)
    ds = load({**conf("mind-small", tmp_path), "parts": ["dev"]})
    assert ds.counts() == {"interactions": 1, "users": 1, "items": 1}


def test_mind_bad_time_is_located(tmp_path):
    folder = mind_folder(tmp_path)
    path = folder / "dev" / "behaviors.tsv"
    path.write_text("4\tU3\t2019-11-15 08:55\tN2\tN6-1\n")
    with pytest.raises(DataError, match=r"behaviors\.tsv: column 'time' row 1 \(line 1\) has "
                       r"value '2019-11-15 08:55', expected a time like '11/15/2019 8:55:22 AM'"):
        load(conf("mind-small", tmp_path))


def test_mind_comma_separated_file_is_refused(tmp_path):
    folder = mind_folder(tmp_path)
    (folder / "train" / "news.tsv").write_text("N1,news,newsus,T,A,u,[],[]\n")
    with pytest.raises(DataError, match=r"news\.tsv: expected tab-separated fields \(mind "
                       r"loader\), detected ','"):
        load(conf("mind-small", tmp_path))
