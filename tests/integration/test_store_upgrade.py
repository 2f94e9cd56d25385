"""Stores written by earlier releases still open, and leaderboards and reports still build
from them (tests/data/store-<version>/ is committed once per release)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from .conftest import bench

pytestmark = [pytest.mark.integration]
FIXTURES = sorted((Path(__file__).resolve().parents[1] / "data").glob("store-*"))


def relocate(src: Path, dst: Path) -> str:
    """Copy a store and point its absolute artifact locations at the copy."""
    shutil.copytree(src, dst)
    old = json.loads((src / "fixture.json").read_text())["root"]
    con = sqlite3.connect(dst / "mlflow.db")
    with con:
        con.execute("update runs set artifact_uri = replace(artifact_uri, ?, ?)", (old, str(dst)))
        con.execute(
            "update experiments set artifact_location = replace(artifact_location, ?, ?)",
            (old, str(dst)),
        )
    con.close()
    return f"sqlite:///{dst}/mlflow.db"


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.name for f in FIXTURES])
def test_old_store_opens_and_reports_build(fixture, tmp_path):
    uri = relocate(fixture, tmp_path / "store")
    from bench import tracking

    store = tracking.Store(uri)
    runs = [r for r in store.search("") if r.data.tags.get("bench.sweep") != "parent"]
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    out = bench(
        "leaderboard", "--tracking-uri", uri, "--metric", "ndcg@10", "--format", "csv",
        cwd=tmp_path, fresh=True,  # the leaderboard smoke test: a new interpreter
    )
    assert "pop" in out.stdout and "random" in out.stdout
    bench(
        "report",
        "--tracking-uri",
        uri,
        "--out",
        str(tmp_path / "rep"),
        "--metrics",
        "ndcg_at_10,recall_at_10",
        "--baseline",
        "random",
        cwd=tmp_path,
        fresh=True,  # the report smoke test
    )
    assert (tmp_path / "rep" / "table.csv").read_text().count("\n") >= 3
    assert json.loads((tmp_path / "rep" / "provenance.json").read_text())
