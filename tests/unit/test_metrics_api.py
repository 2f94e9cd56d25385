"""``bench.metrics.api.evaluate``: string ids, validation and the documented input policies."""

import numpy as np
import polars as pl
import pytest

from bench.errors import DataError
from bench.metrics.api import SeenItemsWarning, attribute_labels, bucket_ml_age, evaluate
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
    # random lists include train items: scored as given, with a warning that counts them
    n_seen = sum(train[u, i] != 0 for u in range(md.n_users) for i in rec[u])
    assert n_seen > 0
    with pytest.warns(SeenItemsWarning, match=f"^{n_seen} of {rec.size} recommendations "):
        ev = evaluate(
            recs_frame(lists),
            f["test"],
            train=f["train"],
            items=f["items"],
            users=f["users"],
            ks=(5, 10),
        )
    assert ev.n_seen_recommended == n_seen
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


def test_seen_items_warning_counts_rows_against_seen_else_train():
    import warnings

    recs = pl.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["1", "2", "1"], "rank": [1, 2, 1]})
    test = pl.DataFrame({"user_id": ["a", "b"], "item_id": ["3", "2"]})
    train = pl.DataFrame({"user_id": ["a", "c"], "item_id": ["2", "1"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeenItemsWarning)  # none of b's items is in train
        ev = evaluate(recs, test, train=train.filter(pl.col("user_id") == "c"), ks=(2,))
    assert ev.n_seen_recommended == 0
    with pytest.warns(SeenItemsWarning, match=r"^1 of 3 recommendations \(33.3%\) .* in train;"):
        assert evaluate(recs, test, train=train, ks=(2,)).n_seen_recommended == 1
    seen = pl.concat([train, pl.DataFrame({"user_id": ["b"], "item_id": ["1"]})])
    with pytest.warns(SeenItemsWarning, match=r"^2 of 3 recommendations .* in seen;"):
        assert evaluate(recs, test, train=train, seen=seen, ks=(2,)).n_seen_recommended == 2


def test_float_attributes_nan_is_unknown_and_whole_float_ages_are_bucketed():
    """A float column holds NaN (unknown, not a group "nan") and integral ages read as floats
    because of nulls (bucketed like integer ages, never "25.0")."""
    users = pl.DataFrame(
        {
            "user_id": ["a", "b", "c", "d"],
            "score": [1.0, float("nan"), 2.5, None],
            "age": [25.0, 30.0, None, 60.0],
        }
    )
    labels = attribute_labels(users)
    assert labels["score"].tolist() == ["1", None, "2.5", None]
    assert labels["age"].tolist() == ["25-34", "25-34", None, "56plus"]
    recs = pl.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["1", "1", "2"], "rank": [1, 1, 1]})
    test = pl.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["1", "1", "1"]})
    groups = {k for k in evaluate(recs, test, users=users, ks=(1,), min_group_size=1).summary
              if "/" in k}
    assert {k for k in groups if k.startswith("ndcg_at_1/")} == {
        "ndcg_at_1/score/1",  # user b (NaN) is in no group; c has 2.5
        "ndcg_at_1/score/2.5",
        "ndcg_at_1/score/gap",
        "ndcg_at_1/age/25-34",
        "ndcg_at_1/age/gap",
    }


def test_item_embeddings_column_gives_ild_emb_and_is_skipped_without_it():
    items = pl.DataFrame(
        {
            "item_id": ["x", "y", "z", "q", "unused"],
            "embedding": [[1.0, 0.0], [0.0, 2.0], None, [-1.0, 0.0], [5.0, 5.0]],
        }
    )
    recs = recs_frame({"a": ["x", "y"], "b": ["x", "q", "z"], "c": ["z", "q"]})
    ev = evaluate(recs, TEST, items=items, ks=(3,))
    # a: x vs y orthogonal -> 1; b: x vs q opposite -> 2 (z has none); c: one vector -> skipped
    assert ev.summary["ild_emb_at_3"] == pytest.approx(1.5, abs=1e-15)
    assert ev.per_user["ild_emb_at_3"].to_list()[:2] == pytest.approx([1.0, 2.0])
    assert "ild_emb_at_3" in dict(evaluate(recs, TEST, ks=(3,)).skipped)
    bad = items.with_columns(pl.Series("embedding", [[1.0], [0.0, 2.0], None, [1.0], [1.0]]))
    with pytest.raises(DataError, match="one length"):
        evaluate(recs, TEST, items=bad, ks=(3,))
    with pytest.raises(DataError, match="list of numbers"):
        evaluate(recs, TEST, items=items.with_columns(pl.lit("v").alias("embedding")), ks=(3,))


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


def _random_frames(seed: int, n_users: int = 60, n_items: int = 50, uneven: bool = False):
    """Ranked lists (sorted by user then rank) with items unknown to test, users without test,
    and users with test but no list; ``uneven``: list lengths 1..30 instead of 20."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        if u % 7 == 3:
            continue  # a test user without recommendations
        n = int(rng.integers(1, 31)) if uneven else 20
        items = rng.choice(n_items + 15, size=n, replace=False)  # >= n_items: unknown to test
        ranks = np.sort(rng.choice(3 * n, size=n, replace=False)) + 1  # gaps in the ranks
        rows += [(f"u{u}", f"i{i}", int(r)) for i, r in zip(items, ranks, strict=True)]
    recs = pl.DataFrame(rows, schema=["user_id", "item_id", "rank"], orient="row")
    test = pl.DataFrame(
        [
            (f"u{u}", f"i{i}")
            for u in range(n_users)
            if u % 5  # every 5th user has no test item (skipped / without test)
            for i in rng.choice(n_items, size=int(rng.integers(1, 6)), replace=False)
        ],
        schema=["user_id", "item_id"],
        orient="row",
    )
    return recs, test


def _same(a, b) -> None:
    assert a.summary == b.summary
    assert a.skipped == b.skipped
    assert a.per_user.equals(b.per_user)


@pytest.mark.parametrize("uneven", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_path_for_grouped_lists_equals_the_general_path(seed, uneven, monkeypatch):
    from bench.metrics import api

    taken = []

    def spy(*args):
        out = grouped(*args)
        taken.append(out is not None)
        return out

    grouped = api._grouped_lists
    monkeypatch.setattr(api, "_grouped_lists", spy)
    # grouped by user and ranked (fast path) vs the same rows shuffled (sort path)
    recs, test = _random_frames(seed, uneven=uneven)
    fast = evaluate(recs, test, ks=(1, 5, 10))
    shuffled = recs.sample(fraction=1.0, shuffle=True, seed=seed)
    _same(fast, evaluate(shuffled, test, ks=(1, 5, 10)))
    assert taken == [True, False]
    # users in an order other than sorted ids, still one run each: also the fast path
    by_desc = recs.sort("user_id", "rank", descending=[True, False])
    _same(fast, evaluate(by_desc, test, ks=(1, 5, 10)))
    assert taken == [True, False, True]
    assert fast.summary["n_duplicates_dropped"] == 0
    assert fast.summary["n_users_without_recommendations"] > 0
    assert fast.summary["n_users_without_test"] > 0


def test_fast_path_falls_back_on_duplicates_split_runs_and_ties():
    recs, test = _random_frames(3)
    ref = evaluate(recs, test, ks=(5, 10))
    # a repeated (user, item) at a worse rank, placed right after the user's run: dropped
    first = recs.head(1)
    dup = first.with_columns(pl.col("rank") + 1000)
    n_first = recs.filter(pl.col("user_id") == first["user_id"][0]).height
    with_dup = pl.concat([recs.head(n_first), dup, recs.slice(n_first)])
    ev = evaluate(with_dup, test, ks=(5, 10))
    assert ev.summary["n_duplicates_dropped"] == 1
    assert {k: v for k, v in ev.summary.items() if k != "n_duplicates_dropped"} == {
        k: v for k, v in ref.summary.items() if k != "n_duplicates_dropped"
    }
    # a user's rows split into two runs (its last row moved to the end): same result
    last = recs.slice(n_first - 1, 1)
    split = pl.concat([recs.head(n_first - 1), recs.slice(n_first), last])
    _same(ref, evaluate(split, test, ks=(5, 10)))
    # a tie within a run is an error, as in the general path
    tie = pl.concat([recs.head(n_first), first.with_columns(pl.lit("zzz").alias("item_id"))])
    with pytest.raises(DataError, match="more than once"):
        evaluate(pl.concat([tie, recs.slice(n_first)]), test, ks=(5,))


def test_one_very_long_list_is_cut_at_max_k():
    recs, test = _random_frames(4)
    user = test["user_id"][0]
    long = pl.DataFrame(
        {
            "user_id": [user] * 5000,
            "item_id": [f"i{j}" for j in range(5000)],
            "rank": range(1, 5001),
        }
    )
    recs = pl.concat([recs.filter(pl.col("user_id") != user), long])
    ev = evaluate(recs, test, ks=(5, 10))
    _same(ev, evaluate(recs.reverse(), test, ks=(5, 10)))


def test_index_of_unknown_recommended_ids_stays_sorted():
    from bench.metrics.api import _Index

    known = [pl.Series(["b", "d", "b"]), pl.Series(["f"])]
    extra = pl.Series(["d", "a", "z", "a", "b", "c", "f"])
    ix = _Index(known, extra)
    assert ix.ids.to_list() == ["a", "b", "c", "d", "f", "z"]
    assert ix.extra_codes.tolist() == [3, 0, 5, 0, 1, 2, 4]
    assert ix.of(pl.Series(["z", "b"])).tolist() == [5, 1]
    # runs of one id (the user column of ranked lists) are looked up once per run
    runs = pl.Series(["u2"] * 5 + ["u0"] * 4 + ["u9"] * 6 + ["u2"] * 4)
    ix = _Index([pl.Series(["u0", "u2"])], runs, runs=True)
    assert ix.ids.to_list() == ["u0", "u2", "u9"]
    assert ix.extra_codes.tolist() == [1] * 5 + [0] * 4 + [2] * 6 + [1] * 4
    # every id unknown, and nothing known at all
    ix = _Index([], pl.Series(["y", "x", "y"]))
    assert ix.ids.to_list() == ["x", "y"] and ix.extra_codes.tolist() == [1, 0, 1]
    # more than 255 known ids (a wider physical enum code) plus unknown ones
    ids = [f"{j:04d}" for j in range(300)]
    ix = _Index([pl.Series(ids[::2])], pl.Series(ids[::-1]))
    assert ix.ids.to_list() == ids and ix.extra_codes.tolist() == list(range(299, -1, -1))


def test_groups_below_min_group_size_are_left_out_of_the_gap():
    """A group of one user (ML-100K's 'retired' among warm users) set the logged gap; now the
    gap covers groups of at least min_group_size users, every group keeps its value, and
    n_users/<attribute>/<group> gives the sizes."""
    users = pl.DataFrame({"user_id": [f"u{i}" for i in range(7)],
                          "job": ["a"] * 3 + ["b"] * 3 + ["c"]})
    test = pl.DataFrame({"user_id": users["user_id"], "item_id": ["1"] * 7})
    # a: every list hits, b: one of three, c (one user): a miss
    first = ["1", "1", "1", "1", "2", "2", "2"]
    recs = pl.DataFrame({"user_id": users["user_id"], "item_id": first, "rank": [1] * 7})
    s = evaluate(recs, test, users=users, ks=(1,), min_group_size=3).summary
    assert s["ndcg_at_1/job/c"] == 0.0 and s["n_users/job/c"] == 1.0
    assert (s["n_users/job/a"], s["n_users/job/b"]) == (3.0, 3.0)
    assert s["ndcg_at_1/job/gap"] == pytest.approx(1.0 - 1 / 3)  # a vs b; c left out
    one = evaluate(recs, test, users=users, ks=(1,), min_group_size=1).summary
    assert one["ndcg_at_1/job/gap"] == 1.0  # the one-user group sets it
    few = evaluate(recs, test, users=users, ks=(1,), min_group_size=4).summary
    assert "ndcg_at_1/job/gap" not in few and few["ndcg_at_1/job/a"] == 1.0
