"""More bad input through the real CLI (user audit): misspelled top-level keys, non-integer
seeds and cut-offs, files that are not recommendation tables; and the warnings and notes of
``bench evaluate`` (already-seen items, skipped metrics in every output format)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from .conftest import REPO, bench, runs
from .test_bad_input import good_csv, one_line_error, refused, write_dataset

pytestmark = [pytest.mark.integration]


def test_misspelled_top_level_key_has_did_you_mean(tmp_path, monkeypatch, capsys):
    msg = refused("run", "modle=ease", cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert "unknown config key 'modle'" in msg and "did you mean 'model'" in msg
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(
    "override, needle",
    [
        ("seed=abc", "seed must be an integer >= 0, got 'abc'"),
        ("seed=-1", "seed must be an integer >= 0, got -1"),
        ("eval.ks=[10,abc]", "eval.ks must be a non-empty list of positive integers"),
        ("eval.ks=[]", "eval.ks must be a non-empty list of positive integers"),
        ("eval.ks=[0,10]", "eval.ks must be a non-empty list of positive integers"),
        ("eval.batch_budget_mb=lots", "eval.batch_budget_mb must be a number > 0"),
        ("eval.exclude_seen=maybe", "eval.exclude_seen must be true or false"),
        ("latency.n_requests=abc", "latency.n_requests must be an integer >= 1"),
    ],
)
def test_bad_numbers_fail_before_any_run_is_created(tmp_path, override, needle, monkeypatch,
                                                    capsys):
    args = write_dataset(tmp_path, good_csv())
    msg = refused("run", *args, "model=pop", override, cwd=tmp_path, monkeypatch=monkeypatch,
                  capsys=capsys)
    assert needle in msg
    # no FAILED (or any) run left behind in the store
    assert not (tmp_path / "mlflow.db").exists() or runs(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# bench evaluate


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evaluate")
    args = write_dataset(root, good_csv())
    bench("run", *args, "model=pop", "tracking=disabled", cwd=root)
    (path,) = (root / "data" / "splits" / "mycsv").iterdir()
    return path


def _evaluate(split_dir: Path, recs: Path, *extra: str, check: bool = True):
    # every test user of this tiny split is cold (no train history): --users all scores them
    return bench(
        "evaluate", "--split", str(split_dir), "--recommendations", str(recs), "--users", "all",
        *extra, cwd=recs.parent, check=check,
    )  # fmt: skip


def test_evaluate_says_when_its_population_is_empty(split_dir, tmp_path):
    path = tmp_path / "recs.csv"
    _test_lists(split_dir).write_csv(path)
    out = bench("evaluate", "--split", str(split_dir), "--recommendations", str(path),
                "--format", "json", cwd=tmp_path)
    assert "evaluated: warm test users (n = 0;" in out.stderr
    assert "warning: no warm test user" in out.stderr and "--users all" in out.stderr


def _test_lists(split_dir: Path) -> pl.DataFrame:
    """Each test user's test items, ranked 1..n (no item the user has seen)."""
    test = pl.read_parquet(split_dir / "test.parquet").select("user_id", "item_id")
    return test.with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int64))


def _with_seen(split_dir: Path, n: int) -> pl.DataFrame:
    train = pl.read_parquet(split_dir / "train.parquet").select("user_id", "item_id")
    seen = train.group_by("user_id", maintain_order=True).first().head(n)
    seen = seen.with_columns(rank=pl.lit(100, dtype=pl.Int64))
    return pl.concat([_test_lists(split_dir), seen])


@pytest.mark.parametrize("name", ["README.md", "empty.csv", "binary.parquet", "cols.csv"])
def test_file_that_is_not_a_recommendations_table(split_dir, tmp_path, name):
    path = tmp_path / name
    if name == "README.md":
        path.write_text((REPO / "README.md").read_text())
    elif name == "empty.csv":
        path.write_text("")
    elif name == "binary.parquet":
        path.write_bytes(bytes(range(256)) * 4)
    else:
        path.write_text("user,item,rank\nu1,i1,1\n")
    msg = one_line_error(_evaluate(split_dir, path, check=False))
    assert str(path) in msg and "user_id, item_id, rank" in msg and "parquet, csv" in msg


def test_tsv_is_read_tab_separated(split_dir, tmp_path):
    path = tmp_path / "recs.tsv"
    _test_lists(split_dir).write_csv(path, separator="\t")
    out = _evaluate(split_dir, path, "--format", "json")
    assert json.loads(out.stdout)["hit_rate_at_10"] == 1.0


def test_already_seen_items_are_counted_in_one_warning(split_dir, tmp_path):
    recs = _with_seen(split_dir, 3)
    path = tmp_path / "recs.csv"
    recs.write_csv(path)
    out = _evaluate(split_dir, path, "--ks", "1")  # lists are short: larger k would warn too
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1, out.stderr
    share = f"{100 * 3 / recs.height:.1f}%"
    assert f"3 of {recs.height} recommendations ({share})" in warnings[0]
    assert "train or valid" in warnings[0] and "misses" in warnings[0]


def test_no_warning_without_seen_items(split_dir, tmp_path):
    path = tmp_path / "recs.parquet"
    _test_lists(split_dir).write_parquet(path)
    out = _evaluate(split_dir, path, "--ks", "1")  # no k beyond the longest list either
    assert "warning" not in out.stderr


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_skipped_metrics_are_listed_on_stderr_in_every_format(split_dir, tmp_path, fmt):
    path = tmp_path / "recs.parquet"
    _test_lists(split_dir).write_parquet(path)
    out = _evaluate(split_dir, path, "--format", fmt)
    # the dataset has no genres, embeddings nor user attributes
    assert "skipped ild_at_10: needs item genres" in out.stderr.splitlines()
    assert "skipped ild" not in out.stdout
    if fmt == "json":
        assert "ndcg_at_10" in json.loads(out.stdout)
    elif fmt == "csv":
        assert out.stdout.splitlines()[0] == "metric,value"
