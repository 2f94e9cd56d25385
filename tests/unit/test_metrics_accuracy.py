"""Accuracy kernels: hand-computed cases, edge cases and hypothesis properties."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.metrics.engine import evaluate_arrays

L2, L3, L4 = 1.0, 1 / math.log2(3), 0.5  # 1/log2(i+1) for i = 1, 2, 3


def csr(rows, n_items):
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(rows), n_items))


def run(rec, truth_rows, ks, n_items=10, users=None):
    truth = csr(truth_rows, n_items)
    users = np.arange(len(truth_rows)) if users is None else np.asarray(users)
    return evaluate_arrays(users, np.asarray(rec, dtype=np.int64), truth, ks)


def test_hand_computed_single_user():
    # R = {1, 3, 7}; L = [3, 5, 1, 9] (hits at ranks 1 and 3), padded to 6
    res = run([[3, 5, 1, 9, -1, -1]], [[1, 3, 7]], (2, 4, 10))
    s = res.summary
    assert s["precision_at_2"] == pytest.approx(0.5, abs=1e-15)
    assert s["recall_at_2"] == pytest.approx(1 / 3, abs=1e-15)
    assert s["hit_rate_at_2"] == 1.0
    assert s["ndcg_at_2"] == pytest.approx(1 / (L2 + L3), abs=1e-15)
    assert s["mrr_at_2"] == 1.0
    assert s["map_at_2"] == pytest.approx(1 / 3, abs=1e-15)
    assert s["precision_at_4"] == pytest.approx(0.5, abs=1e-15)
    assert s["recall_at_4"] == pytest.approx(2 / 3, abs=1e-15)
    assert s["ndcg_at_4"] == pytest.approx((L2 + L4) / (L2 + L3 + L4), abs=1e-15)
    assert s["map_at_4"] == pytest.approx((1 + 2 / 3) / 3, abs=1e-15)
    # list shorter than k: precision still divides by k
    assert s["precision_at_10"] == pytest.approx(0.2, abs=1e-15)
    assert s["recall_at_10"] == pytest.approx(2 / 3, abs=1e-15)


def test_golden_values_two_users():
    # u0: R={0}, L=[4,0,...]: hit at rank 2; u1: R={1,2}, L=[5,6,7]: no hit
    res = run([[4, 0, 8], [5, 6, 7]], [[0], [1, 2]], (1, 3))
    s = res.summary
    assert s["ndcg_at_3"] == pytest.approx(0.5 * L3, abs=1e-15)
    assert s["mrr_at_3"] == pytest.approx(0.25, abs=1e-15)
    assert s["mrr_at_1"] == 0.0
    assert s["hit_rate_at_3"] == 0.5
    assert s["map_at_3"] == pytest.approx(0.25, abs=1e-15)
    np.testing.assert_allclose(res.per_user["ndcg_at_3"], [L3, 0.0], atol=1e-15)


def test_empty_truth_rows_are_skipped_and_missing_users_score_zero():
    truth_rows = [[1], [], [2], [3]]
    # user 1 has no test item; user 3 has test items but no list (not passed)
    res = run([[1, 0], [2, 3], [5, 2]], truth_rows, (2,), users=[0, 1, 2])
    assert res.summary["n_users_evaluated"] == 3
    assert res.summary["n_users_skipped"] == 1
    assert res.summary["n_users_without_recommendations"] == 1
    assert list(res.users) == [0, 2, 3]
    np.testing.assert_allclose(res.per_user["recall_at_2"], [1.0, 1.0, 0.0])
    assert res.summary["recall_at_2"] == pytest.approx(2 / 3)


def test_all_padding_list_scores_zero_and_empty_rec_width():
    res = run([[-1, -1]], [[0]], (1, 5))
    assert res.summary["ndcg_at_5"] == 0.0 and res.summary["n_users_without_recommendations"] == 1
    res = evaluate_arrays(np.array([0]), np.zeros((1, 0), np.int64), csr([[0]], 3), (3,))
    assert res.summary["recall_at_3"] == 0.0


def test_lists_narrower_than_k_without_hit_score_zero():
    res = run([[4, 5], [1, 5]], [[0], [1]], (1, 5))
    np.testing.assert_array_equal(res.per_user["hit_rate_at_5"], [0.0, 1.0])
    np.testing.assert_array_equal(res.per_user["mrr_at_5"], [0.0, 1.0])
    res = evaluate_arrays(np.array([0]), np.zeros((1, 0), np.int64), csr([[0]], 3), (1, 3))
    assert res.summary["hit_rate_at_3"] == 0.0 and res.summary["mrr_at_1"] == 0.0


def test_duplicate_item_in_a_list_hits_once():
    res = run([[2, 2, 2]], [[2]], (3,))
    assert res.summary["recall_at_3"] == 1.0
    assert res.summary["precision_at_3"] == pytest.approx(1 / 3)


def test_input_validation():
    truth = csr([[0]], 3)
    with pytest.raises(ValueError, match="ks"):
        evaluate_arrays(np.array([0]), np.array([[0]]), truth, ())
    with pytest.raises(ValueError, match="item index"):
        evaluate_arrays(np.array([0]), np.array([[5]]), truth, (1,))
    with pytest.raises(ValueError, match="twice"):
        evaluate_arrays(np.array([0, 0]), np.array([[0], [1]]), truth, (1,))
    with pytest.raises(ValueError, match="rec must be"):
        evaluate_arrays(np.array([0]), np.array([0]), truth, (1,))


@st.composite
def instances(draw):
    n_items = draw(st.integers(3, 15))
    n_users = draw(st.integers(1, 5))
    rows, recs = [], []
    width = draw(st.integers(1, n_items))
    for _ in range(n_users):
        truth = draw(st.sets(st.integers(0, n_items - 1), min_size=1, max_size=n_items))
        perm = draw(st.permutations(range(n_items)))
        length = draw(st.integers(0, width))
        recs.append(list(perm[:length]) + [-1] * (width - length))
        rows.append(sorted(truth))
    return n_items, rows, np.array(recs, dtype=np.int64).reshape(n_users, width)


BOUNDED = ("precision", "recall", "hit_rate", "ndcg", "mrr", "map")


@settings(max_examples=60, deadline=None)
@given(instances())
def test_bounds_and_monotone_recall(inst):
    n_items, rows, rec = inst
    ks = (1, 2, 3, 5, 8)
    res = run(rec, rows, ks, n_items)
    for k in ks:
        for m in BOUNDED:
            v = res.per_user[f"{m}_at_{k}"]
            assert np.all((v >= 0) & (v <= 1 + 1e-12)), (m, k, v)
    for a, b in zip(ks, ks[1:], strict=False):
        assert np.all(res.per_user[f"recall_at_{a}"] <= res.per_user[f"recall_at_{b}"] + 1e-12)
        assert np.all(res.per_user[f"hit_rate_at_{a}"] <= res.per_user[f"hit_rate_at_{b}"])


@settings(max_examples=60, deadline=None)
@given(instances())
def test_perfect_ranking_scores_one(inst):
    n_items, rows, _ = inst
    rec = np.full((len(rows), n_items), -1, dtype=np.int64)
    for u, r in enumerate(rows):
        others = [i for i in range(n_items) if i not in r]
        rec[u] = list(r) + others
    res = run(rec, rows, (1, 3, n_items), n_items)
    for k in (1, 3, n_items):
        np.testing.assert_allclose(res.per_user[f"ndcg_at_{k}"], 1.0, atol=1e-12)
        n_rel = np.array([len(r) for r in rows], dtype=float)
        # AP@k of a perfect list = min(|R|, k) / |R| (trec_eval convention divides by |R|)
        np.testing.assert_allclose(res.per_user[f"map_at_{k}"], np.minimum(n_rel, k) / n_rel)
        np.testing.assert_allclose(res.per_user[f"mrr_at_{k}"], 1.0)
    np.testing.assert_allclose(res.per_user[f"recall_at_{n_items}"], 1.0)


@settings(max_examples=60, deadline=None)
@given(instances(), st.randoms(use_true_random=False))
def test_set_metrics_invariant_to_order_within_top_k(inst, rnd):
    n_items, rows, rec = inst
    k = rec.shape[1]
    shuffled = rec.copy()
    for u in range(len(rows)):
        real = [i for i in shuffled[u] if i >= 0]
        rnd.shuffle(real)
        shuffled[u, : len(real)] = real
    a, b = run(rec, rows, (k,), n_items), run(shuffled, rows, (k,), n_items)
    for m in ("precision", "recall", "hit_rate"):
        np.testing.assert_array_equal(a.per_user[f"{m}_at_{k}"], b.per_user[f"{m}_at_{k}"])


@settings(max_examples=40, deadline=None)
@given(instances())
def test_items_beyond_k_do_not_matter(inst):
    n_items, rows, rec = inst
    k = max(1, rec.shape[1] // 2)
    cut = rec.copy()
    cut[:, k:] = -1
    a, b = run(rec, rows, (k,), n_items), run(cut, rows, (k,), n_items)
    for m in BOUNDED:
        np.testing.assert_array_equal(a.per_user[f"{m}_at_{k}"], b.per_user[f"{m}_at_{k}"])


def _reference(rec: np.ndarray, truth: sp.csr_matrix, ks) -> dict[str, np.ndarray]:
    """Every accuracy metric by a plain per-user loop (same float operations, same order)."""
    k_max = max(ks)
    disc = 1.0 / np.log2(np.arange(2, k_max + 2, dtype=np.float64))
    idcg = np.concatenate([[0.0], np.cumsum(disc)])
    out = {f"{m}_at_{k}": np.zeros(len(rec)) for k in ks for m in BOUNDED}
    for u, row in enumerate(rec):
        rel = set(truth.indices[truth.indptr[u] : truth.indptr[u + 1]].tolist())
        n_rel = len(rel)
        hit_pos, seen = [], set()
        for pos, item in enumerate(row[:k_max].tolist()):
            if item >= 0 and item in rel and item not in seen:
                hit_pos.append(pos)
            seen.add(item)
        for k in ks:
            within = [pos for pos in hit_pos if pos < k]
            dcg, ap = 0.0, 0.0
            for ordinal, pos in enumerate(within, start=1):
                dcg += disc[pos]
                ap += ordinal / (pos + 1.0)
            out[f"precision_at_{k}"][u] = len(within) / k
            out[f"recall_at_{k}"][u] = len(within) / float(n_rel)
            out[f"hit_rate_at_{k}"][u] = 1.0 if within else 0.0
            out[f"ndcg_at_{k}"][u] = dcg / idcg[min(n_rel, k)]
            out[f"mrr_at_{k}"][u] = 1.0 / (within[0] + 1.0) if within else 0.0
            out[f"map_at_{k}"][u] = ap / float(n_rel)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_kernel_is_bit_identical_to_a_per_user_reference_and_means_to_cumsum(seed):
    from bench.metrics.engine import _means
    from bench.metrics.table import PerUser

    rng = np.random.default_rng(seed)
    n, n_items, width = 500, 80, 30
    dense = rng.random((n, n_items)) < 0.08
    dense[np.arange(n), rng.integers(n_items, size=n)] = True  # no empty truth row
    truth = sp.csr_matrix(dense.astype(np.float64))
    rec = np.stack([rng.permutation(n_items)[:width] for _ in range(n)]).astype(np.int64)
    rec[rng.random(n) < 0.1, 20:] = -1  # short lists
    rec[rng.random(n) < 0.02, :] = -1  # empty lists
    rec[5, 3] = rec[5, 1]  # a repeated item
    rec[7, 2:9] = rec[7, 1]
    ks = (1, 5, 30, 50)
    got = evaluate_arrays(np.arange(n), rec, truth, ks).per_user
    want = _reference(rec, truth, ks)
    assert list(got) == list(want)  # k-major, metrics in catalog order
    for key in want:
        assert got[key].tobytes() == want[key].tobytes(), key
    per_user = dict(got)
    per_user["partly_nan"] = np.where(rng.random(n) < 0.3, np.nan, rng.random(n))
    per_user["all_nan"] = np.full(n, np.nan)
    summary, skipped = {}, []
    _means([PerUser(list(per_user), np.stack(list(per_user.values())))], summary, skipped)
    for key, values in per_user.items():
        v = values[~np.isnan(values)]
        if len(v):
            assert summary[key] == float(np.cumsum(v)[-1] / len(v)), key
    assert "all_nan" not in summary and skipped == [
        ("all_nan", "undefined for every evaluated user")
    ]


def test_hits_and_top_copy_match_a_dense_membership_mask():
    from bench.metrics import accuracy

    rng = np.random.default_rng(7)
    n, n_items, width = 300, 50, 12
    truth = sp.random(n, n_items, density=0.2, format="csr", random_state=7)
    truth.data[:] = 1.0
    rec = np.stack([rng.permutation(n_items)[:width] for _ in range(n)]).astype(np.int64)
    rec[rng.random(n) < 0.2, 8:] = -1  # padding
    dense = truth.toarray() > 0
    want = np.where(rec >= 0, dense[np.arange(n)[:, None], np.maximum(rec, 0)], False)
    for ks, span in (((3, 10), 10), ((5, 40), width)):
        acc = accuracy.evaluate(np.arange(n), rec, truth, ks, keep_top=True)
        assert acc.top is not None and acc.top.dtype == np.int32
        assert (acc.top == rec[:, :span]).all()
        for u in range(n):
            start = truth.indptr[u]
            pos, item = acc.hits[:, start : start + acc.n_hits[u]]
            assert pos.tolist() == np.flatnonzero(want[u, :span]).tolist()
            assert item.tolist() == rec[u, pos].tolist()


def test_out_of_range_items_raise_wherever_they_are():
    rng = np.random.default_rng(3)
    n, n_items, width = 40, 30, 12
    truth = sp.random(n, n_items, density=0.3, format="csr", random_state=3)
    rec = np.stack([rng.permutation(n_items)[:width] for _ in range(n)]).astype(np.int64)
    for bad in (n_items, -2, 2**40):
        for row in (0, 17, n - 1):
            for col in (0, 3, width - 1):  # width - 1: past max(ks), still checked
                r = rec.copy()
                r[row, col] = bad
                with pytest.raises(ValueError, match="out of range"):
                    evaluate_arrays(np.arange(n), r, truth, (2, 5))
