"""Values the harness used to accept or crash on: one line naming the value and the fix, exit 2,
nothing created (bench run), nothing scored (bench evaluate)."""

from __future__ import annotations

import polars as pl
import pytest

from .conftest import runs
from .test_bad_input import one_line_error, refused
from .test_bad_input_more import _evaluate, _test_lists, split_dir  # noqa: F401 - fixture

pytestmark = [pytest.mark.integration]


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["split.valid_fraction=abc"], "split.valid_fraction must be a number, got 'abc'"),
        (["split=random-ratio", "split.seed=xyz"], "split.seed must be an integer >= 0, got 'xyz'"),
        (["split.k_core=-2"], "split.k_core must be an integer >= 0, got -2"),
        (["split.train_positive_only=maybe"], "split.train_positive_only must be true or false"),
        (["tracking.force=maybe"], "tracking.force must be true or false, got 'maybe'"),
        (["-m", "model="], "override 'model=' names no model; choose one of: "),
        (["-m", "model=pop,"], "override 'model=pop,' names no model"),
        # every job of the sweep has it: no one job is named
        (["-m", "seed=0,1", "split.seed=x"], "split.seed must be an integer >= 0, got 'x' in "
         "override 'split.seed=x' (e.g. split.seed=0)"),
        (["-m", "seed=0,1", "eval.ks=[0]"], "(e.g. eval.ks=[10,20]); sweep job #0: "),
    ],
)
def test_bad_values_fail_before_any_run(tmp_path, overrides, needle, monkeypatch, capsys):
    args = ["dataset=synthetic", "latency=disabled"]
    flags = [o for o in overrides if o.startswith("-")]
    rest = [o for o in overrides if not o.startswith("-")]
    model = [] if any(o.startswith("model=") for o in rest) else ["model=pop"]
    msg = refused("run", *flags, *args, *model, *rest, cwd=tmp_path, monkeypatch=monkeypatch,
                  capsys=capsys)
    assert needle in msg, msg
    assert not (tmp_path / "mlflow.db").exists() or runs(tmp_path) == []
    assert not (tmp_path / "multirun").exists()


def test_users_that_match_none_of_the_split_are_refused(split_dir, tmp_path):  # noqa: F811
    recs = _test_lists(split_dir).with_columns(pl.lit("stranger-") + pl.col("user_id"))
    recs = recs.with_columns(user_id=pl.lit("stranger-") + pl.col("user_id"))
    path = tmp_path / "recs.parquet"
    recs.write_parquet(path)
    msg = one_line_error(_evaluate(split_dir, path, check=False))
    assert f"{path}: none of its" in msg and "is a test user of the split" in msg


def test_a_zero_row_parquet_is_refused_like_a_header_only_csv(split_dir, tmp_path):  # noqa: F811
    path = tmp_path / "none.parquet"
    _test_lists(split_dir).head(0).write_parquet(path)
    msg = one_line_error(_evaluate(split_dir, path, check=False))
    assert f"{path}: no recommendations (the file has a header but 0 rows)" in msg
    csv = tmp_path / "header.csv"
    csv.write_text("user_id,item_id,rank\n")
    assert "0 rows" in one_line_error(_evaluate(split_dir, csv, check=False))


def test_a_csv_with_a_duplicated_header_is_refused(split_dir, tmp_path):  # noqa: F811
    lists = _test_lists(split_dir)
    dup = tmp_path / "dup.csv"
    dup.write_text("user_id,item_id,rank,rank\n" + "".join(
        f"{u},{i},{r},{r}\n" for u, i, r in lists.iter_rows()
    ))  # fmt: skip
    msg = one_line_error(_evaluate(split_dir, dup, check=False))
    assert "column 'rank' appears more than once in the header" in msg
    twice = tmp_path / "twice.csv"
    body = lists.write_csv()
    twice.write_text(body + body)  # two files concatenated, headers and all
    msg = one_line_error(_evaluate(split_dir, twice, check=False))
    assert f"line {lists.height + 2} repeats the header" in msg
