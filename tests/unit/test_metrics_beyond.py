"""Beyond-accuracy and fairness metrics: hand-computed cases and edge cases.

The scenario (5 items, 4 users):
  train: u0 {0,1}, u1 {0,1}, u2 {0,2}, u3 {0}  ->  pop = [4, 2, 1, 0, 0], 7 interactions
  short head: 0 (4) then 1 (cum 6 >= 5.6) -> H = {0, 1}; C = {0, 1, 2}; T = {2}
  test: u0 {2}, u1 {4}, u2 {1}, u3 {} (skipped)
  rec:  u0 [2, 3, -1], u1 [4, 3, 2], u2 [3, 1, 4]
  genres: 0 {A}, 1 {A,B}, 2 {B}, 3 none, 4 {A,C}
  embeddings: 0 (1,0), 1 (0,1), 2 (3,3) (normalised: (1,1)/sqrt 2), 3 none (NaN), 4 (-1,0)
"""

import math
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp

from bench.metrics import beyond, fairness
from bench.metrics.engine import evaluate_arrays

TRAIN = [[0, 1], [0, 1], [0, 2], [0]]
TEST = [[2], [4], [1], []]
REC = [[2, 3, -1], [4, 3, 2], [3, 1, 4]]
GENRES = [frozenset("A"), frozenset("AB"), frozenset("B"), frozenset(), frozenset("AC")]
EMB = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 3.0], [np.nan, np.nan], [-1.0, 0.0]])
L3 = 1 / math.log2(3)


def csr(rows, n_items=5):
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(rows), n_items))


def info(pop):
    return -math.log2((pop + 1) / 5)  # n_train_users = 4


@pytest.fixture(scope="module")
def res():
    attrs = {
        "gender": np.array(["F", "F", "M", "F"], dtype=object),
        "age": np.array([25, None, 25.0, 18], dtype=object),
    }
    return evaluate_arrays(
        np.arange(3),
        np.array(REC),
        csr(TEST),
        (1, 2, 3),
        train=csr(TRAIN),
        seen=csr(TRAIN),
        item_genres=GENRES,
        user_attrs=attrs,
        item_embeddings=EMB,
    )


def test_popularity_groups():
    p = beyond.popularity(csr(TRAIN))
    assert p.pop[:-1].tolist() == [4, 2, 1, 0, 0]
    assert np.flatnonzero(p.in_head).tolist() == [0, 1]
    assert np.flatnonzero(p.in_tail).tolist() == [2]
    assert np.flatnonzero(p.in_recbole_tail).tolist() == [2]
    assert p.order.tolist() == [0, 1, 2, 3, 4]
    assert p.n_train_users == 4


def test_short_head_ties_by_item_index():
    # pops [2, 2, 2, 2, 2]: 80 % of 10 reached after 4 items, ties by index -> H = {0,1,2,3}
    train = csr([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]])
    p = beyond.popularity(train)
    assert np.flatnonzero(p.in_head).tolist() == [0, 1, 2, 3]
    assert np.flatnonzero(p.in_tail).tolist() == [4]


def test_catalog_metrics(res):
    s = res.summary
    assert s["n_users_evaluated"] == 3 and s["n_users_skipped"] == 1
    assert s["coverage_at_2"] == pytest.approx(2 / 3, abs=1e-15)  # {1, 2} of C
    assert s["gini_at_2"] == pytest.approx(1 / 3, abs=1e-15)  # c = [0, 1, 1]: 2 / (3 * 2)
    assert s["entropy_at_2"] == pytest.approx(1.0, abs=1e-15)
    assert s["coverage_at_1"] == pytest.approx(1 / 3, abs=1e-15)  # only item 2 of C


def test_list_metrics(res):
    s, pu = res.summary, res.per_user
    nov = [(info(1) + info(0)) / 2, (info(0) + info(0)) / 2, (info(0) + info(2)) / 2]
    np.testing.assert_allclose(pu["novelty_at_2"], nov, atol=1e-15)
    assert s["novelty_at_2"] == pytest.approx(np.mean(nov), abs=1e-15)
    np.testing.assert_allclose(pu["arp_at_2"], [0.5, 0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(pu["aplt_at_2"], [0.5, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(pu["aclt_at_2"], [1.0, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(pu["tail_percentage_at_2"], [0.5, 0.0, 0.0], atol=1e-15)
    # u0's top-3 has 2 real items: means divide by 2, not 3
    np.testing.assert_allclose(pu["aplt_at_3"], [0.5, 1 / 3, 0.0], atol=1e-15)
    np.testing.assert_allclose(pu["arp_at_3"], [0.5, 1 / 3, 2 / 3], atol=1e-15)


def test_ild_items_without_genres_and_short_lists(res):
    pu = res.per_user
    # u0: [2, 3] -> one item with genres -> NaN; u1: 4 {A,C} vs 2 {B} -> 1;
    # u2: 1 {A,B} vs 4 {A,C}: Jaccard 1/3 -> 2/3
    np.testing.assert_allclose(pu["ild_at_3"], [np.nan, 1.0, 2 / 3], atol=1e-15)
    assert res.summary["ild_at_3"] == pytest.approx(5 / 6, abs=1e-15)
    assert np.isnan(pu["ild_at_2"]).all()
    assert "ild_at_2" not in res.summary
    assert ("ild_at_2", "undefined for every evaluated user") in res.skipped


def test_epc_hand_computed(res):
    # gain 1 - pop/4 = [0, .5, .75, 1, 1]; disc 1, 1/log2(3), 1/2
    pu = res.per_user
    np.testing.assert_allclose(pu["epc_at_1"], [0.75, 1.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(pu["epc_at_2"], [0.75 / (1 + L3), 1 / (1 + L3), 0.5 * L3 / (1 + L3)])
    # u0's list has 2 items: its norm stops at 2 slots (Elliot: sum over the list's positions)
    want3 = [0.75 / (1 + L3), 1 / (1 + L3 + 0.5), 0.5 * L3 / (1 + L3 + 0.5)]
    np.testing.assert_allclose(pu["epc_at_3"], want3, atol=1e-15)
    assert res.summary["epc_at_3"] == pytest.approx(np.mean(want3), abs=1e-15)


def test_epc_empty_list_scores_zero_and_only_novel_hits_count():
    # u0: empty list; u1: a hit on item 0, which every train user has (gain 0); u2: a miss
    # then a hit on item 3 (never in train, gain 1) at slot 2 of 2
    rec = np.array([[-1, -1], [0, 4], [2, 3]])
    r = evaluate_arrays(np.arange(3), rec, csr([[2], [0], [3], []]), (2,), train=csr(TRAIN))
    np.testing.assert_allclose(r.per_user["epc_at_2"], [0.0, 0.0, L3 / (1 + L3)], atol=1e-15)
    assert math.isnan(r.per_user["novelty_at_2"][0])  # a mean over no item


def test_ild_embedding_hand_computed(res):
    pu = res.per_user
    # u0 [2, 3]: one item with an embedding -> NaN; u1 @3: 4 (-1,0) vs 2 (1,1)/sqrt2 -> cos
    # -1/sqrt2; u2 @3: 1 (0,1) vs 4 (-1,0) -> cos 0
    want = [np.nan, 1 + 1 / math.sqrt(2), 1.0]
    np.testing.assert_allclose(pu["ild_emb_at_3"], want, atol=1e-15)
    assert np.isnan(pu["ild_emb_at_1"]).all() and np.isnan(pu["ild_emb_at_2"][:2]).all()
    assert pu["ild_emb_at_2"][2] != pu["ild_emb_at_2"][2]  # [3, 1]: one vector
    assert res.summary["ild_emb_at_3"] == pytest.approx((2 + 1 / math.sqrt(2)) / 2, abs=1e-15)
    assert ("ild_emb_at_1", "undefined for every evaluated user") in res.skipped


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ild_embedding_matches_pairwise_cosine_and_ignores_list_order(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, width, d = 30, 25, 10, 7
    emb = rng.normal(size=(n_items, d)) * rng.uniform(0.1, 5, size=(n_items, 1))
    emb[3] = np.nan  # no embedding
    emb[4] = 0.0  # no embedding either
    rec = np.stack([rng.permutation(n_items)[:width] for _ in range(n_users)]).astype(np.int64)
    rec[0, 5:] = -1
    rec[1, 1:3] = rec[1, 0]  # a repeated item: cosine 1 with itself
    truth = sp.csr_matrix(np.ones((n_users, n_items)))
    ks = (2, 5, 10)
    res = evaluate_arrays(np.arange(n_users), rec, truth, ks, item_embeddings=emb)
    with np.errstate(invalid="ignore"):  # rows 3 and 4 have no direction
        unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for k in ks:
        got = res.per_user[f"ild_emb_at_{k}"]
        for u in range(n_users):
            vs = [unit[i] for i in rec[u, :k] if i >= 0 and i not in (3, 4)]
            cos = [vs[a] @ vs[b] for b in range(len(vs)) for a in range(b)]
            if not cos:
                assert math.isnan(got[u])
                continue
            assert got[u] == pytest.approx(1 - np.mean(cos), abs=1e-12)
            assert 0 <= got[u] <= 2
    # a set metric: reversing each top-10 list changes nothing
    rev = rec[:, ::-1].copy()
    rev[0] = np.r_[rec[0, :5][::-1], [-1] * 5]
    back = evaluate_arrays(np.arange(n_users), rev, truth, (10,), item_embeddings=emb)
    np.testing.assert_allclose(back.per_user["ild_emb_at_10"], res.per_user["ild_emb_at_10"])


def test_item_embeddings_must_have_one_row_per_item():
    with pytest.raises(ValueError, match="one row per item"):
        evaluate_arrays(np.arange(3), np.array(REC), csr(TEST), (2,), item_embeddings=EMB[:4])


def test_serendipity_and_item_fairness(res):
    s, pu = res.summary, res.per_user
    # baselines (seen excluded): u0 {2,3}, u1 {2,3}, u2 {1,3}; hits: u0 2, u1 4, u2 1 (rank 2)
    np.testing.assert_allclose(pu["serendipity_at_2"], [0.0, 0.5, 0.0], atol=1e-15)
    # k=1: u1's baseline top-1 = {2}; its hit 4 is not in it
    np.testing.assert_allclose(pu["serendipity_at_1"], [0.0, 1.0, 0.0], atol=1e-15)
    # REO@2: H: 1 hit / 1 test item, T: 1 / 1 -> std 0
    assert s["pop_reo_at_2"] == pytest.approx(0.0, abs=1e-15)
    # REO@1: H: 0 / 1, T: 1 / 1 -> rates (0, 1): std .5 / mean .5
    assert s["pop_reo_at_1"] == pytest.approx(1.0, abs=1e-15)
    # RSP@2: rec in H 1, in T 1; candidates H: 3*2 - 5 seen = 1, T: 3*1 - 1 = 2 -> (1, .5)
    assert s["pop_rsp_at_2"] == pytest.approx(0.25 / 0.75, abs=1e-15)
    assert s["long_tail_hit_share_at_2"] == pytest.approx(1 / 3, abs=1e-15)
    assert s["long_tail_hit_share_at_1"] == pytest.approx(1 / 2, abs=1e-15)


def test_user_group_fairness(res):
    s = res.summary
    # ndcg@2: u0 1, u1 1, u2 hit at rank 2 -> 1/log2(3)
    assert s["ndcg_at_2/gender/F"] == pytest.approx(1.0, abs=1e-15)
    assert s["ndcg_at_2/gender/M"] == pytest.approx(L3, abs=1e-15)  # a group with one user
    assert s["ndcg_at_2/gender/gap"] == pytest.approx(1 - L3, abs=1e-15)
    # age: u1 unknown (left out); 25 and 25.0 are one group "25"; u3 (18) is not evaluated
    assert s["ndcg_at_2/age/25"] == pytest.approx((1 + L3) / 2, abs=1e-15)
    assert s["ndcg_at_2/age/gap"] == 0.0
    assert "ndcg_at_2/age/18" not in s
    # activity: every evaluated user has 2 train items -> one group (ties go to the lower)
    assert s["recall_at_2/activity/cold"] == pytest.approx(1.0, abs=1e-15)
    assert "recall_at_2/activity/warm" not in s


def test_activity_tertiles_tie_rule():
    codes, names = fairness.activity_codes(np.array([1, 1, 1, 2, 3, 3, 5, 8, 9]))
    # t1 = 1.67, t2 = 3.67 (linear quantiles): cold <= t1 < warm <= t2 < hot
    assert [names[c] for c in codes] == ["cold"] * 3 + ["warm"] * 3 + ["hot"] * 3
    codes, _ = fairness.activity_codes(np.array([1, 2, 2, 2, 3]))
    assert codes.tolist() == [0, 0, 0, 0, 2]  # t1 = t2 = 2: all 2s go to cold


def test_group_label_sanitizing():
    assert fairness.sanitize_label(25.0) == "25"
    assert fairness.sanitize_label("K-12 student") == "K-12 student"
    assert fairness.sanitize_label("a/b@c") == "a_b_c"
    assert fairness.sanitize_label(float("nan")) is None
    assert fairness.sanitize_label("  ") is None


def test_missing_inputs_are_skipped_not_guessed():
    r = evaluate_arrays(np.arange(3), np.array(REC), csr(TEST), (2,))
    keys = set(r.summary)
    assert "ndcg_at_2" in keys and not any(k.startswith(("novelty", "ild", "gini")) for k in keys)
    reasons = dict(r.skipped)
    assert reasons["novelty_at_2"] == "needs train"
    assert reasons["ild_at_2"] == "needs item genres"
    assert reasons["ild_emb_at_2"] == "needs item embeddings"
    assert reasons["epc_at_2"] == "needs train"
    r = evaluate_arrays(np.arange(3), np.array(REC), csr(TEST), (2,), train=csr(TRAIN))
    assert "novelty_at_2" in r.summary and "serendipity_at_2" not in r.summary
    assert dict(r.skipped)["pop_rsp_at_2"] == "needs seen"


def _random_case(seed, n_users=40, n_items=30, width=15):
    rng = np.random.default_rng(seed)
    train = sp.random(n_users, n_items, density=0.3, random_state=seed + 1, format="csr")
    seen = sp.random(n_users, n_items, density=0.3, random_state=seed + 2, format="csr")
    truth = sp.random(n_users, n_items, density=0.25, random_state=seed + 3, format="csr")
    rec = np.full((n_users, width), -1, dtype=np.int64)
    for u in range(n_users):
        length = int(rng.integers(0, width + 1))
        rec[u, :length] = rng.permutation(n_items)[:length]
    rec[3, 1:4] = rec[3, 0]  # a repeated item
    return rng, train, seen, truth, rec


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_serendipity_matches_brute_force(seed):
    _, train, seen, truth, rec = _random_case(seed)
    ks = (1, 5, 12)
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    res = evaluate_arrays(users, rec[users], truth, ks, train=train, seen=seen)
    p = beyond.popularity(train)
    for k in ks:
        want = []
        for u in res.users:
            rel = set(truth[u].indices.tolist())
            base = [x for x in p.order if x not in set(seen[u].indices.tolist())][:k]
            hits, done = [], set()
            for i in rec[u, :k].tolist():
                if i >= 0 and i in rel and i not in done:
                    hits.append(i)
                done.add(i)
            want.append(sum(i not in base for i in hits) / k)
        np.testing.assert_array_equal(res.per_user[f"serendipity_at_{k}"], want)


@pytest.mark.parametrize("seed", [0, 1])
def test_list_metrics_and_exposure_match_brute_force(seed):
    _, train, _, truth, rec = _random_case(seed)
    rec[5, 2] = -1  # padding in the middle: only real items count
    ks = (1, 4, 15, 20)
    users = np.arange(truth.shape[0])
    keep = np.diff(truth.indptr)[users] > 0
    res = evaluate_arrays(users, rec, truth, ks, train=train)
    p = beyond.popularity(train)
    info = -np.log2((p.pop + 1) / (p.n_train_users + 1))
    for k in ks:
        for r, u in enumerate(res.users):
            items = [i for i in rec[u, :k].tolist() if i >= 0]
            got = {m: res.per_user[f"{m}_at_{k}"][r] for m in ("novelty", "arp", "aplt")}
            if not items:
                assert all(math.isnan(v) for v in got.values())
                continue
            assert got["novelty"] == pytest.approx(np.mean(info[items]), abs=1e-13)
            assert got["arp"] == pytest.approx(np.mean(p.pop[items]), abs=1e-13)
            assert got["aplt"] == pytest.approx(np.mean(p.in_tail[items]), abs=1e-15)
            assert res.per_user[f"aclt_at_{k}"][r] == p.in_tail[items].sum()
            # EPC: hits (first occurrence of a test item), discounted by their slot
            rel, done, num, norm = set(truth[u].indices.tolist()), set(), 0.0, 0.0
            for pos, i in enumerate(rec[u, :k].tolist()):
                if i < 0:
                    continue
                norm += 1 / math.log2(pos + 2)
                if i in rel and i not in done:
                    num += (1 - p.pop[i] / p.n_train_users) / math.log2(pos + 2)
                done.add(i)
            assert res.per_user[f"epc_at_{k}"][r] == pytest.approx(num / norm, abs=1e-14)
        exposed = {i for u in users[keep] for i in rec[u, :k].tolist() if i >= 0}
        catalog = set(np.flatnonzero(p.in_catalog).tolist())
        want = len(exposed & catalog) / len(catalog)
        assert res.summary[f"coverage_at_{k}"] == pytest.approx(want, abs=1e-15)


def _exact_ild(lists, genre_sets):
    """ILD of each list: exact mean of 1 - Jaccard over pairs of items with genres."""
    out = []
    for items in lists:
        sets = [genre_sets[i] for i in items if i >= 0 and genre_sets[i]]
        pairs = [(a, b) for j, b in enumerate(sets) for a in sets[:j]]
        if not pairs:
            out.append(float("nan"))
            continue
        total = sum(1 - Fraction(len(a & b), len(a | b)) for a, b in pairs)
        out.append(float(total / len(pairs)))
    return np.array(out)


@pytest.mark.parametrize("n_genres, max_size", [(5, 3), (70, 4), (150, 3), (90, 60)])
def test_ild_matches_exact_jaccard_including_multi_word_bitsets(n_genres, max_size):
    """Genre sets beyond 64 genres span several uint64 words; with up to 60 genres per item the
    least common multiple of the union sizes overflows and distances are rounded to 2**-b."""
    rng = np.random.default_rng(n_genres)
    n_users, n_items, width = 25, 40, 12
    names = [f"genre {j:03d}" for j in range(n_genres)]
    genres = [
        frozenset(rng.choice(names, int(rng.integers(1, max_size + 1)), replace=False))
        if i % 7
        else None  # an item without genres
        for i in range(n_items)
    ]
    genres[5] = frozenset()  # empty set: no genres either
    rec = np.stack([rng.permutation(n_items)[:width] for _ in range(n_users)]).astype(np.int64)
    rec[0, 4:] = -1
    rec[1, 1:3] = rec[1, 0]  # a repeated item: a pair at distance 0
    rec[2, :] = [0, 7, 14, 21, 28, 35, 5, -1, -1, -1, -1, -1]  # no item with genres
    truth = sp.csr_matrix(np.ones((n_users, n_items)))
    ks = (1, 2, 5, 12)
    res = evaluate_arrays(np.arange(n_users), rec, truth, ks, item_genres=genres)
    exact = max_size * 2 <= 20  # lcm of the union sizes fits: exact sums
    for k in ks:
        want = _exact_ild(rec[:, :k].tolist(), genres)
        got = res.per_user[f"ild_at_{k}"]
        assert np.array_equal(np.isnan(got), np.isnan(want)), k
        if exact:
            np.testing.assert_array_equal(got, want)  # the correctly rounded exact mean
        else:
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    assert np.isnan(res.per_user["ild_at_12"][2]) and np.isnan(res.per_user["ild_at_1"]).all()


def test_beyond_metrics_ignore_items_past_the_largest_k_and_are_deterministic():
    _, train, seen, truth, rec = _random_case(4, width=10)
    genres = [frozenset({"a", "b"} if i % 2 else {"c"}) for i in range(30)]
    ks = (2, 6)
    users = np.arange(truth.shape[0])
    wide = np.concatenate([rec, np.random.default_rng(0).integers(0, 30, (len(rec), 7))], 1)
    kw = dict(train=train, seen=seen, item_genres=genres)
    a = evaluate_arrays(users, rec, truth, ks, **kw)
    b = evaluate_arrays(users, wide, truth, ks, **kw)
    # a copy at another memory offset: sums must not depend on alignment
    buf = np.empty(wide.size + 1, dtype=np.int64)[1:].reshape(wide.shape)
    buf[:] = wide
    c = evaluate_arrays(users, buf, truth, ks, **kw)
    assert list(a.summary) == list(b.summary) == list(c.summary)
    for key, v in a.summary.items():
        assert v == b.summary[key] == c.summary[key] or math.isnan(v), key
    for key, v in a.per_user.items():
        assert v.tobytes() == b.per_user[key].tobytes() == c.per_user[key].tobytes(), key
