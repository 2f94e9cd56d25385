"""Every datasets/*/manifest.yaml says where its data comes from, how it is verified, under
which licence and how to cite it; its fetch section (if any) parses and matches its config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bench.data import datasets as D
from bench.data import fetch as F

REPO = Path(__file__).resolve().parents[2]
NAMES = D.dataset_names()


def test_the_issue_datasets_exist():
    want = {
        "ml-100k", "ml-100k-grouplens", "ml-1m", "ml-20m", "ml-32m", "mind-small",
        "amazon2023-all-beauty", "amazon2023-video-games", "amazon2023-musical-instruments",
    }
    assert want <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_manifest_has_url_checksum_rule_licence_citation(name):
    m = D.load_manifest(name)
    assert m["id"] == name and m.get("title")
    rule = m.get("checksum")
    assert rule in F.CHECKSUM_RULES, f"{name}: checksum rule {rule!r}"
    assert str(m.get("licence", "")).strip(), f"{name}: no licence"
    assert str(m.get("citation", "")).strip(), f"{name}: no citation"
    assert "load" in m and m["load"]["loader"] in D.LOADERS
    assert "expected" in m or rule == "generated"
    spec = F.fetch_spec(m)
    if rule == "generated":
        assert spec is None and m["load"]["loader"] in D.NO_FILES
        return
    origin = str((m.get("source") or {}).get("origin", ""))
    urls = spec.urls if spec else [origin]
    assert urls and all(u.startswith("https://") for u in urls), f"{name}: urls {urls}"
    if rule == "published-md5":
        assert spec and all(f.md5_url or f.md5 for f in spec.files)
    if rule == "lock":
        assert spec is not None, f"{name}: the lock rule needs a fetch section"
    if rule == "pinned":
        pins = m.get("sha256") or {}
        assert pins and all(pins.values()), f"{name}: pinned rule with null pins"


@pytest.mark.parametrize("name", NAMES)
def test_fetch_expect_lists_the_files_the_config_reads(name):
    m = D.load_manifest(name)
    spec = F.fetch_spec(m)
    cfg = yaml.safe_load((REPO / "conf" / "dataset" / f"{name}.yaml").read_text())
    assert cfg["manifest"] == name and cfg["loader"] == m["load"]["loader"]
    if spec is None:
        return
    files = [f for f in (cfg.get("files") or {}).values() if f]
    assert set(files) <= set(spec.expect), f"{name}: reads {files}, fetch yields {spec.expect}"
    for pinned in m.get("sha256") or {}:
        assert pinned in spec.expect, f"{name}: sha256 pin {pinned} is not a fetched file"
    assert cfg.get("path", name) == m["load"].get("path", name)


def test_movielens_expected_counts_are_the_publishers():
    want = {
        "ml-100k": (100_000, 943, 1_682),
        "ml-100k-grouplens": (100_000, 943, 1_682),
        "ml-1m": (1_000_209, 6_040, 3_706),
        "ml-20m": (20_000_263, 138_493, 26_744),
        "ml-32m": (32_000_204, 200_948, 87_585),
    }
    for name, counts in want.items():
        e = D.load_manifest(name)["expected"]
        assert (e["interactions"], e["users"], e["items"]) == counts, name
