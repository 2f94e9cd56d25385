"""load_dataset: registry dispatch, manifests, data root, checksum pins, counts, confinement."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import polars as pl
import pytest
import yaml

from bench.data import datasets as D
from bench.data.contract import DatasetWarning
from bench.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]


def manifest(tmp_path: Path, name: str, **body) -> Path:
    d = tmp_path / "manifests" / name
    d.mkdir(parents=True)
    (d / "manifest.yaml").write_text(yaml.safe_dump(body))
    return tmp_path / "manifests"


def ml1m_files(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text("1::10::5::978300760\n2::10::3::978300761\n")
    (folder / "movies.dat").write_text("10::Heat (1995)::Action|Crime\n")
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::25::0::1\n")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_conf_dataset_has_a_manifest_and_a_known_loader():
    names = D.dataset_names()
    assert {"ml-100k", "ml-1m", "ml-20m", "amazon-books", "synthetic"} <= set(names)
    for f in (REPO / "conf" / "dataset").glob("*.yaml"):
        cfg = yaml.safe_load(f.read_text())
        assert cfg["name"] == f.stem and cfg["manifest"] in names
        assert cfg["loader"] in D.LOADERS
        assert not {"on", "off", "yes", "no"} & set(map(str, cfg))
    assert not list((REPO / "datasets").rglob("__init__.py"))


def test_ml100k_by_name_from_the_wheel():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = D.load_dataset(yaml.safe_load((REPO / "conf/dataset/ml-100k.yaml").read_text()))
    assert ds.counts() == {"interactions": 100_000, "users": 943, "items": 1682}
    assert ds.relevance_threshold_default == 4.0


def test_unknown_dataset_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown dataset 'ml-1mm' \(did you mean 'ml-1m'\?\)"):
        D.load_dataset({"name": "ml-1mm"})


def test_unknown_loader():
    with pytest.raises(ConfigError, match="unknown dataset loader 'tabel'.*did you mean 'table'"):
        D.load_dataset({"name": "x", "loader": "tabel", "manifest": None})


def test_ml1m_under_data_root_pinned_and_counted(tmp_path, monkeypatch):
    root = tmp_path / "data"
    ml1m_files(root / "ml-1m")
    pins = {f: sha(root / "ml-1m" / f) for f in ("ratings.dat", "movies.dat", "users.dat")}
    mdir = manifest(
        tmp_path,
        "ml-1m",
        load={"loader": "movielens_1m"},
        sha256=pins,
        expected={"interactions": 2, "users": 2, "items": 1},
    )
    monkeypatch.setenv("BENCH_DATA_ROOT", str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = D.load_dataset({"name": "ml-1m", "manifest_dir": str(mdir)})
    assert ds.interactions.schema["timestamp"] == pl.Int64
    assert set(ds.source_files.values()) == set(pins.values())


def test_checksum_mismatch_is_refused(tmp_path):
    root = tmp_path / "data"
    ml1m_files(root / "ml-1m")
    mdir = manifest(
        tmp_path, "ml-1m", load={"loader": "movielens_1m"}, sha256={"ratings.dat": "0" * 64}
    )
    with pytest.raises(DataError) as e:
        D.load_dataset({"name": "ml-1m", "manifest_dir": str(mdir), "data_root": str(root)})
    msg = str(e.value)
    assert "\n" not in msg and "ratings.dat: sha256" in msg and "differs from the pin" in msg


def test_unpinned_file_and_count_mismatch_warn(tmp_path):
    root = tmp_path / "data"
    ml1m_files(root / "ml-1m")
    mdir = manifest(
        tmp_path,
        "ml-1m",
        load={"loader": "movielens_1m"},
        sha256={"ratings.dat": None},
        expected={"interactions": 1000209},
    )
    with pytest.warns(DatasetWarning) as rec:
        D.load_dataset({"name": "ml-1m", "manifest_dir": str(mdir), "data_root": str(root)})
    text = " | ".join(str(w.message) for w in rec)
    assert "ratings.dat is not pinned" in text
    assert "2 interactions loaded" in text and "expects 1,000,209" in text


def test_table_loader_by_config(tmp_path):
    root = tmp_path / "data"
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "log.csv").write_text("u,i,t\n1,2,3000\n")
    cfg = {
        "name": "shop",
        "loader": "table",
        "manifest": None,
        "data_root": str(root),
        "files": {"interactions": "log.csv"},
        "columns": {"user_id": "u", "item_id": "i", "timestamp": "t"},
        "timestamp_format": "milliseconds",
        "relevance_threshold": None,
    }
    ds = D.load_dataset(cfg)
    assert ds.interactions.rows() == [("1", "2", 3, None)]
    assert ds.relevance_threshold_default is None


@pytest.mark.parametrize(
    "cfg",
    [
        {"name": "../../etc"},
        {"name": "x", "path": "../outside"},
        {"name": "x", "path": "/etc"},
        {"name": "x", "files": {"interactions": "../../etc/passwd"}},
    ],
)
def test_path_traversal_rejected_before_io(tmp_path, cfg):
    base = {
        "loader": "table",
        "manifest": None,
        "data_root": str(tmp_path / "data"),
        "columns": {"user_id": "u", "item_id": "i", "timestamp": "t"},
    }
    with pytest.raises(DataError) as e:
        D.load_dataset({**base, **cfg})
    assert "\n" not in str(e.value)
    assert not (tmp_path / "data").exists()  # nothing was created or read


def test_symlinked_dataset_folder_escaping_root(tmp_path):
    root, outside = tmp_path / "data", tmp_path / "elsewhere"
    ml1m_files(outside)
    root.mkdir()
    (root / "ml-1m").symlink_to(outside)
    with pytest.raises(DataError, match="symlink"):
        D.load_dataset(
            {"name": "ml-1m", "loader": "movielens_1m", "manifest": None, "data_root": str(root)}
        )


def test_synthetic_by_config():
    cfg = yaml.safe_load((REPO / "conf/dataset/synthetic.yaml").read_text())
    ds = D.load_dataset(cfg)
    assert ds.counts()["interactions"] == cfg["params"]["n_interactions"]
    with pytest.raises(ConfigError, match="unknown synthetic parameter 'n_user'"):
        D.load_dataset({**cfg, "params": {"n_user": 3}})


def test_a_generated_dataset_leaves_a_lock_file_in_the_working_directory_alone(
    tmp_path, monkeypatch
):
    """A generated dataset has no folder: it records no counts, wherever it is loaded."""
    lock = tmp_path / "bench-lock.json"
    lock.write_text('{"files": {}}\n')
    monkeypatch.chdir(tmp_path)
    cfg = yaml.safe_load((REPO / "conf/dataset/synthetic.yaml").read_text())
    D.load_dataset(cfg)
    assert lock.read_text() == '{"files": {}}\n'
