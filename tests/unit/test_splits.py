"""Split protocols, materialization and integrity (pitfalls D1-D4)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pytest

from bench.errors import DataError, IntegrityError
from bench.splits import (
    SplitConfig,
    build_split,
    collapse_duplicates,
    k_core,
    load_split,
    materialize,
)
from bench.testing import tiny_frames


@dataclass
class Raw:
    name: str
    interactions: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame
    source_files: dict = field(default_factory=lambda: {"/x/log": "abc"})


def raw(seed: int = 0) -> Raw:
    f = tiny_frames(seed=seed, n_events=4000)
    log = pl.concat([f["train"], f["valid"], f["test"]])
    return Raw("tiny", log, f["items"], f["users"])


def loader_for(r: Raw):
    return lambda cfg: r


DS = {"name": "tiny", "loader": "test"}


def test_temporal_global_has_no_leak_and_positives_only():
    frames, info = build_split(raw(), SplitConfig(relevance_threshold=4.0))
    assert frames["train"]["timestamp"].max() < frames["valid"]["timestamp"].min()
    assert frames["valid"]["timestamp"].max() < frames["test"]["timestamp"].min()
    assert info["audit"]["audit_leak_ratio"] == 0.0
    assert frames["test"]["rating"].min() >= 4.0
    assert frames["valid"]["rating"].min() >= 4.0
    assert frames["train"]["rating"].min() < 4.0  # train keeps every interaction
    assert frames["train"].schema == pl.Schema(
        {"user_id": pl.Utf8, "item_id": pl.Utf8, "timestamp": pl.Int64, "rating": pl.Float64}
    )


def test_random_ratio_reports_leakage():
    _, info = build_split(raw(), SplitConfig(protocol="random-ratio", seed=1))
    assert info["audit"]["audit_leak_ratio"] > 0.5


def test_loo_last_takes_last_events_per_user():
    r = raw()
    frames, _ = build_split(r, SplitConfig(protocol="loo-last", valid_fraction=0, test_fraction=0))
    log, _ = collapse_duplicates(r.interactions)
    last = log.sort(["user_id", "timestamp", "item_id"]).group_by("user_id").last()
    t = frames["test"].join(last, on="user_id", suffix="_last")
    assert (t["item_id"] == t["item_id_last"]).all()
    assert frames["test"]["user_id"].n_unique() == frames["test"].height


def test_user_ratio_orders_each_user_in_time():
    frames, _ = build_split(raw(), SplitConfig(protocol="user-ratio"))
    tr = frames["train"].group_by("user_id").agg(pl.col("timestamp").max().alias("t_train"))
    te = frames["test"].group_by("user_id").agg(pl.col("timestamp").min().alias("t_test"))
    j = tr.join(te, on="user_id")
    assert (j["t_train"] <= j["t_test"]).all()


def test_cold_items_never_in_train():
    frames, info = build_split(raw(), SplitConfig(protocol="cold-items", cold_item_fraction=0.2))
    train_items = set(frames["train"]["item_id"]) | set(frames["valid"]["item_id"])
    assert frames["test"].height > 0
    assert not set(frames["test"]["item_id"]) & train_items
    assert info["audit"]["audit_cold_items_test"] == frames["test"]["item_id"].n_unique()


def test_duplicates_collapse_to_last_event():
    log = pl.DataFrame(
        {
            "user_id": ["a", "a", "a"],
            "item_id": ["x", "x", "y"],
            "timestamp": [1, 5, 3],
            "rating": [1.0, 5.0, 3.0],
        }
    )
    out, n = collapse_duplicates(log)
    assert n == 1
    assert out.filter(pl.col("item_id") == "x")["rating"].item() == 5.0


def test_k_core_is_iterative_and_errors_when_empty():
    log = pl.DataFrame(
        {
            "user_id": ["a", "a", "b", "b", "c", "d"],
            "item_id": ["x", "y", "x", "y", "z", "x"],
            "timestamp": [1, 2, 3, 4, 5, 6],
            "rating": [1.0] * 6,
        }
    )
    out = k_core(log, 2)  # drops c, d; then every remaining user and item has 2
    assert sorted(out["user_id"].unique()) == ["a", "b"] and out.height == 4
    with pytest.raises(
        DataError, match=r"0 interactions remain after k-core=3 filtering \(was 6\)"
    ):
        k_core(log, 3)


def test_materialize_is_deterministic_and_reused(tmp_path):
    r = raw()
    a = materialize(DS, SplitConfig(), tmp_path / "a", loader=loader_for(r))
    b = materialize(DS, SplitConfig(), tmp_path / "b", loader=loader_for(r))
    assert a.sha256 == b.sha256
    assert a.manifest["files"] == b.manifest["files"]
    again = materialize(DS, SplitConfig(), tmp_path / "a", loader=loader_for(r))
    assert again.path == a.path and again.sha256 == a.sha256
    c = materialize(
        DS, SplitConfig(protocol="random-ratio", seed=3), tmp_path / "a", loader=loader_for(r)
    )
    d = materialize(
        DS, SplitConfig(protocol="random-ratio", seed=4), tmp_path / "a", loader=loader_for(r)
    )
    assert c.sha256 != d.sha256


def test_edited_split_file_is_refused_and_not_remade(tmp_path):
    r = raw()
    s = materialize(DS, SplitConfig(), tmp_path, loader=loader_for(r))
    f = s.path / "test.parquet"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"test\.parquet: sha256 .* differs from manifest"):
        materialize(DS, SplitConfig(), tmp_path, loader=loader_for(r))
    assert f.read_bytes() == bytes(data)  # nothing re-made or overwritten


def test_split_folder_from_another_config_is_refused(tmp_path):
    r = raw()
    s = materialize(DS, SplitConfig(), tmp_path, loader=loader_for(r))
    m = json.loads((s.path / "manifest.json").read_text())
    with pytest.raises(IntegrityError, match="another config"):
        load_split(s.path, expected_fingerprint="0" * 64)
    assert m["config_fingerprint"] != "0" * 64


def test_indexed_split_has_no_test_in_model_data(tmp_path):
    s = materialize(DS, SplitConfig(relevance_threshold=4.0), tmp_path, loader=loader_for(raw()))
    ix = s.indexed()
    md = ix.model_data
    seen = md.test_history.matrix
    t = ix.test
    assert seen[t["user_idx"].to_numpy(), t["item_idx"].to_numpy()].sum() == 0
    assert list(md.item_ids) == sorted(md.item_ids)
    assert md.train_history.matrix.nnz == md.train.height
    seq = md.test_history.sequences
    u = int(np.argmax([len(x) for x in seq]))
    ts = (
        pl.concat([md.train, md.valid])
        .filter(pl.col("user_idx") == u)
        .sort(["timestamp", "item_idx"])["item_idx"]
        .to_numpy()
    )
    assert (seq[u] == ts).all()


def test_unknown_protocol_and_option():
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'loo-last'"):
        SplitConfig.from_mapping({"protocol": "loo-lst"})
    with pytest.raises(ConfigError, match="unknown split option 'k_cor'"):
        SplitConfig.from_mapping({"protocol": "loo-last", "k_cor": 5})


def test_reuse_finds_the_split_without_parsing_the_dataset(tmp_path):
    from bench.hashing import sha256_file

    src = tmp_path / "ratings.csv"
    src.write_text("stand-in for the dataset file\n")
    r = raw()
    r.source_files = {str(src): sha256_file(src)}
    made = materialize(DS, SplitConfig(), tmp_path / "splits", loader=loader_for(r))

    def must_not_load(cfg):
        raise AssertionError("the dataset was parsed although its split exists")

    again = materialize(DS, SplitConfig(), tmp_path / "splits", loader=must_not_load)
    assert again.path == made.path and again.sha256 == made.sha256
    # a changed source file is not trusted: the dataset is loaded (and re-fingerprinted)
    src.write_text("the dataset changed\n")
    calls = []

    def counting(cfg):
        calls.append(1)
        r.source_files = {str(src): sha256_file(src)}
        return r

    other = materialize(DS, SplitConfig(), tmp_path / "splits", loader=counting)
    assert calls == [1] and other.path != made.path
