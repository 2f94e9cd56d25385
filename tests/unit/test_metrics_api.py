"""``bench.metrics.api.evaluate``: string ids, validation and the documented input policies."""

import numpy as np
import polars as pl
import pytest

from bench.errors import DataError
from bench.metrics.api import attribute_labels, bucket_ml_age, evaluate
from bench.metrics.engine import evaluate_arrays
from bench.testing import tiny_frames, tiny_split


def recs_frame(lists: dict[str, list[str]]) -> pl.DataFrame:
    rows = [(u, i, r + 1) for u, items in lists.items() for r, i in enumerate(items)]
    return pl.DataFrame(rows, schema=["user_id", "item_id", "rank"], orient="row")


TEST = pl.DataFrame({"user_id": ["a", "a", "b", "c"], "item_id": ["x", "y", "z", "x"]})


def test_basic_and_policies():
    recs = recs_frame({"a": ["x", "q", "x", "y"], "b": ["y"], "zz": ["x"]})
    ev = evaluate(recs, TEST.vstack(TEST.head(1)), ks=(2, 3))
    s = ev.summary
    # a: [x, q, y] after dropping the repeated x (first rank wins); c has no list -> scores 0
    assert s["n_users_evaluated"] == 3
    assert s["n_users_without_recommendations"] == 1
    assert s["n_users_without_test"] == 1 and s["n_users_skipped"] == 1  # zz
    assert s["n_duplicates_dropped"] == 2  # one in recs, one in test
    pu = ev.per_user
    assert pu["user_id"].to_list() == ["a", "b", "c"]
    assert pu["recall_at_2"].to_list() == [0.5, 0.0, 0.0]
    assert pu["recall_at_3"].to_list() == [1.0, 0.0, 0.0]
    assert set(pu.columns) >= {"user_id", "ndcg_at_2", "map_at_3"}
    assert "novelty_at_2" not in s and ("novelty_at_2", "needs train") in ev.skipped


def test_ranks_with_gaps_and_unsorted_rows():
    recs = pl.DataFrame({"user_id": ["a", "a"], "item_id": ["y", "q"], "rank": [7, 3]})
    ev = evaluate(recs, TEST, ks=(1, 2))
    assert ev.per_user.filter(pl.col("user_id") == "a")["mrr_at_2"].item() == 0.5


@pytest.mark.parametrize(
    "frame, match",
    [
        (pl.DataFrame({"user_id": ["a"], "item_id": ["x"]}), "no column 'rank'"),
        (pl.DataFrame({"user_id": ["a"], "item_id": ["x"], "rank": [0]}), "rank must be >= 1"),
        (pl.DataFrame({"user_id": ["a"], "item_id": ["x"], "rank": [1.5]}), "integers"),
        (
            pl.DataFrame({"user_id": ["a", "a"], "item_id": ["x", "y"], "rank": [1, 1]}),
            "rank 1 more than once",
        ),
        (pl.DataFrame({"user_id": ["a", None], "item_id": ["x", "y"], "rank": [1, 2]}), "null"),
    ],
)
def test_bad_recommendations_give_one_line_errors(frame, match):
    with pytest.raises(DataError, match=match) as e:
        evaluate(frame, TEST)
    assert "\n" not in str(e.value)


def test_bad_test_frame():
    with pytest.raises(DataError, match="test has no column 'item_id'"):
        evaluate(recs_frame({"a": ["x"]}), TEST.select("user_id"))


def test_matches_engine_on_tiny_split():
    f = tiny_frames()
    s = tiny_split()
    md = s.model_data
    truth, train = s.matrix("test"), s.matrix("train")
    rng = np.random.default_rng(1)
    rec = np.stack([rng.permutation(md.n_items)[:12] for _ in range(md.n_users)])
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    genres = [frozenset(g) for g in md.items["genres"].to_list()]
    attrs = attribute_labels(md.users, ["gender", "age", "occupation"])
    ref = evaluate_arrays(
        users,
        rec[users],
        truth,
        (5, 10),
        train=train,
        seen=train,
        item_genres=genres,
        user_attrs=attrs,
    )
    lists = {md.user_ids[u]: [md.item_ids[i] for i in rec[u]] for u in range(md.n_users)}
    ev = evaluate(
        recs_frame(lists),
        f["test"],
        train=f["train"],
        items=f["items"],
        users=f["users"],
        ks=(5, 10),
    )
    for key, value in ref.summary.items():
        if key != "n_users_skipped":
            assert ev.summary[key] == pytest.approx(value, abs=1e-12), key
    assert "ndcg_at_10/age/25-34" in ev.summary


def test_genres_as_pipe_string_and_age_bucketing():
    items = pl.DataFrame({"item_id": ["x", "y", "z", "q"], "genres": ["A|B", "B", None, "A|C"]})
    users = pl.DataFrame({"user_id": ["a", "b", "c"], "age": [17, 24, 60], "zip": ["1", "2", "3"]})
    recs = recs_frame({"a": ["x", "y"], "b": ["x", "q", "z"], "c": ["z", "q"]})
    ev = evaluate(recs, TEST, items=items, users=users, ks=(3,))
    # a: {A,B} vs {B} -> 1/2; b: {A,B},{A,C} -> 2/3 (z has no genres); c: one item -> skipped
    assert ev.summary["ild_at_3"] == pytest.approx((0.5 + 2 / 3) / 2, abs=1e-15)
    assert {"ndcg_at_3/age/under18", "ndcg_at_3/age/18-24", "ndcg_at_3/age/56plus"} <= set(
        ev.summary
    )
    assert "ndcg_at_3/zip/1" in ev.summary  # 3 groups <= MAX_GROUPS
    assert bucket_ml_age(np.array([5, 18, 34, 49, 50, 56, None], dtype=object)).tolist() == [
        "under18",
        "18-24",
        "25-34",
        "45-49",
        "50-55",
        "56plus",
        None,
    ]


def test_ml1m_age_codes_are_kept():
    users = pl.DataFrame({"user_id": ["a", "b", "c"], "age": [1, 25, 56]})
    ev = evaluate(recs_frame({"a": ["x"]}), TEST, users=users, ks=(1,))
    assert {"ndcg_at_1/age/under18", "ndcg_at_1/age/25-34", "ndcg_at_1/age/56plus"} <= set(
        ev.summary
    )


def test_top_level_bench_evaluate_is_this_function():
    from bench import evaluate as top

    ev = top(recs_frame({"a": ["x"]}), TEST, ks=(1,))
    assert ev.summary["recall_at_1"] == pytest.approx(1 / 6)


def test_seen_may_hold_users_and_items_absent_elsewhere():
    import polars as pl

    from bench import evaluate

    recs = pl.DataFrame({"user_id": ["a", "a"], "item_id": ["x", "y"], "rank": [1, 2]})
    test = pl.DataFrame({"user_id": ["a"], "item_id": ["y"]})
    train = pl.DataFrame({"user_id": ["a"], "item_id": ["z"]})
    seen = pl.DataFrame({"user_id": ["a", "b"], "item_id": ["z", "w"]})
    ev = evaluate(recs, test, train=train, seen=seen, ks=(2,))
    assert ev.summary["recall_at_2"] == 1.0
