"""The one topk: masking, NaN policy, deterministic ties, bounded batches (pitfalls E2/E3)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.ranking import PAD, batch_size_for, rank_users, topk


def test_ties_break_by_item_index_and_seen_items_are_masked():
    s = np.array([[1.0, 3.0, 3.0, 2.0, np.nan], [0.0, 0.0, 0.0, 0.0, 0.0]])
    ex = sp.csr_matrix(np.array([[0, 0, 1, 0, 0], [1, 0, 0, 0, 0]]))
    idx, val = topk(s, 3, ex)
    assert idx.tolist() == [[1, 3, 0], [1, 2, 3]]
    assert val.tolist() == [[3.0, 2.0, 1.0], [0.0, 0.0, 0.0]]


def test_nan_and_excluded_items_shorten_the_list():
    s = np.array([[np.nan, 1.0, -np.inf, 2.0]])
    idx, val = topk(s, 4, sp.csr_matrix(np.array([[0, 1, 0, 0]])))
    assert idx.tolist() == [[3, PAD, PAD, PAD]]
    assert np.isnan(val[0, 1:]).all()


def test_constant_scorer_is_not_in_favour_of_any_item():
    # E2: a constant model ranks by item index only, whatever the input order
    s = np.zeros((1, 6))
    assert topk(s, 3)[0].tolist() == [[0, 1, 2]]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 60), st.integers(0, 10**6), st.integers(1, 8))
def test_topk_equals_a_stable_full_sort(n_rows, n_items, seed, levels):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, levels, size=(n_rows, n_items)).astype(float)  # many ties
    k = int(rng.integers(1, n_items + 1))
    idx, val = topk(s, k)
    ref = np.argsort(-s, axis=1, kind="stable")[:, :k]
    assert (idx == ref).all()
    assert (val == np.take_along_axis(s, ref, 1)).all()


def test_batched_ranking_equals_one_shot_and_is_bounded():
    rng = np.random.default_rng(0)
    scores = rng.random((300, 50))
    ex = sp.random(300, 50, density=0.2, random_state=1, format="csr")
    users = np.arange(300)
    rec, val, ties = rank_users(lambda b: scores[b], users, 10, ex, 50, budget_mb=0.01)
    ref, _ = topk(scores, 10, ex)
    assert (rec == ref).all() and not ties.any()
    assert batch_size_for(26_744, 256) * 26_744 * 16 <= 256e6 + 1
    assert batch_size_for(26_744, 256) < 138_493


def test_boundary_ties_are_reported():
    scores = np.array([[3.0, 2.0, 2.0, 1.0], [3.0, 2.0, 1.0, 0.0]])
    _, _, ties = rank_users(lambda b: scores[b], np.arange(2), 2, None, 4)
    assert ties.tolist() == [True, False]


def test_tie_ranks_are_a_fixed_hash_order_independent_of_input_order():
    from bench.ranking import tie_ranks

    ids = [str(i) for i in range(1, 200)]
    r = tie_ranks(ids)
    assert sorted(r.tolist()) == list(range(199))
    shuffled = ids[::-1]
    r2 = tie_ranks(shuffled)
    by_id = {i: int(x) for i, x in zip(ids, r, strict=True)}
    assert by_id == {i: int(x) for i, x in zip(shuffled, r2, strict=True)}
    # not the id order: a constant scorer must not get the lowest (oldest, most popular) ids
    idx, _ = topk(np.zeros((1, 199)), 10, tie_rank=r)
    assert idx[0].tolist() != list(range(10))
    assert idx[0].tolist() == np.argsort(r)[:10].tolist()


def test_tie_rank_only_orders_equal_scores():
    from bench.ranking import tie_ranks

    s = np.array([[0.5, 0.9, 0.5, 0.1]])
    r = tie_ranks(["a", "b", "c", "d"])
    idx, _ = topk(s, 4, tie_rank=r)
    assert idx[0, 0] == 1 and idx[0, 3] == 3
    assert idx[0, 1:3].tolist() == sorted([0, 2], key=lambda i: r[i])
