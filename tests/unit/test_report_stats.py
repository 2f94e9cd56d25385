"""bench.report.stats against scipy, exact enumeration, hand-computed cases and ranx."""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from bench.errors import BenchError
from bench.report import stats


def _cases(n_cases: int = 60):
    """Seeded paired vectors of many lengths, with ties, zero differences and identical pairs."""
    rng = np.random.default_rng(2024)
    for i in range(n_cases):
        n = int(rng.integers(5, 80))
        x = rng.random(n)
        y = np.clip(x + rng.normal(0.03 * (i % 3), 0.2, n), 0, 1)
        if i % 4 == 1:  # ties and zero differences, like binary hit rates or rounded NDCG
            reps = -(-51 // n)  # at least 51 users: below 50 with zeros scipy permutes (slow)
            x, y = np.tile(np.round(x, 1), reps), np.tile(np.round(y, 1), reps)
        if i % 10 == 9:
            y = x.copy()
        yield x, y


@pytest.mark.parametrize("x,y", list(_cases()))
def test_ttest_and_wilcoxon_equal_scipy(x, y):
    t = stats.paired_ttest(x, y)
    if not (x - y).any():
        assert t.p_value == 1.0 and stats.wilcoxon(x, y).p_value == 1.0
        return
    ref = sps.ttest_rel(x, y)
    assert t.p_value == ref.pvalue and t.statistic == ref.statistic
    w = stats.wilcoxon(x, y)
    ref_w = sps.wilcoxon(x, y, zero_method="wilcox")
    assert w.p_value == ref_w.pvalue and w.statistic == ref_w.statistic


def _brute_force_p(x: np.ndarray, y: np.ndarray) -> float:
    """Every one of the 2^n swaps of the two systems' scores, by hand."""
    observed = abs(np.mean(x - y))
    hits = 0
    for swap in itertools.product((False, True), repeat=len(x)):
        a = np.where(swap, y, x)
        b = np.where(swap, x, y)
        hits += abs(np.mean(a - b)) >= observed - 1e-12
    return hits / 2 ** len(x)


def test_randomization_exact_matches_enumeration():
    rng = np.random.default_rng(3)
    x, y = rng.random(10), rng.random(10) * 0.8
    exact = _brute_force_p(x, y)
    assert stats.randomization_test(x, y, n_resamples=2**10).p_value == pytest.approx(exact)
    mc = stats.randomization_test(x, y, n_resamples=1000, seed=1)  # 1000 < 2^10: Monte Carlo
    assert abs(mc.p_value - exact) < 0.05
    assert mc.p_value == stats.randomization_test(x, y, n_resamples=1000, seed=1).p_value


def test_randomization_plus_one_correction_never_zero():
    x = np.linspace(0.5, 1.0, 200)
    y = x - 0.3
    res = stats.randomization_test(x, y, n_resamples=999, seed=0)
    assert res.p_value == pytest.approx(1 / 1000)
    assert stats.randomization_test(x, x, n_resamples=99).p_value == 1.0


def test_holm_and_bh_hand_computed():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: sorted 0.005*4/1=0.02, 0.01*4/2=0.02, 0.03*4/3=0.04, 0.04*4/4=0.04
    assert stats.benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    out = stats.holm([0.2, float("nan"), 0.9])
    assert math.isnan(out[1]) and out[0] == pytest.approx(0.4) and out[2] == pytest.approx(0.9)
    assert stats.correct([0.7, 0.6], "holm") == pytest.approx([1.0, 1.0])
    assert list(stats.correct([0.1], "none")) == [0.1]
    with pytest.raises(BenchError, match="did you mean 'holm'"):
        stats.correct([0.1], "hlm")


def test_corrections_match_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    p = np.random.default_rng(0).random(25) ** 3
    assert stats.holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    assert stats.benjamini_hochberg(p) == pytest.approx(multipletests(p, method="fdr_bh")[1])


def test_ranx_paired_t_test_and_fisher_agree():
    st_mod = pytest.importorskip("ranx.statistical_tests")
    rng = np.random.default_rng(5)
    x = rng.random(300)
    y = np.clip(x + rng.normal(0.02, 0.1, 300), 0, 1)
    p_ranx, _ = st_mod.paired_student_t_test(x, y)
    assert stats.paired_ttest(x, y).p_value == pytest.approx(p_ranx, rel=1e-12)
    # ranx's Fisher test shuffles pairs (= sign flips), p = b / m without the +1 correction
    p_fisher, _ = st_mod.fisher_randomization_test(x, y, 4000, 0.05, 42)
    ours = stats.randomization_test(x, y, n_resamples=4000, seed=0).p_value
    assert abs(ours - p_fisher) < 0.03


def test_cohens_dz_bootstrap_and_seed_summary():
    x = np.array([0.5, 0.6, 0.7, 0.9])
    y = np.array([0.4, 0.6, 0.5, 0.6])
    d = x - y
    assert stats.cohens_dz(x, y) == pytest.approx(d.mean() / d.std(ddof=1))
    assert stats.cohens_dz(x, x) == 0.0
    v = np.random.default_rng(1).random(500)
    lo, hi = stats.bootstrap_ci(v, 2000, seed=3)
    assert lo < v.mean() < hi and (lo, hi) == stats.bootstrap_ci(v, 2000, seed=3)
    assert hi - lo == pytest.approx(2 * 1.96 * v.std(ddof=1) / math.sqrt(500), rel=0.15)
    s = stats.seed_summary([0.30, 0.32, 0.31])
    ref = sps.t.interval(0.95, 2, loc=0.31, scale=sps.sem([0.30, 0.32, 0.31]))
    assert (s.mean, s.std, s.n) == (pytest.approx(0.31), pytest.approx(0.01), 3)
    assert (s.ci_low, s.ci_high) == pytest.approx(ref)
    one = stats.seed_summary([0.3])
    assert one.mean == 0.3 and math.isnan(one.std) and math.isnan(one.ci_low)


def test_paired_vectors_align_by_user_and_refuse_other_users():
    a = pl.DataFrame({"user_id": ["u2", "u1", "u3"], "ndcg_at_10": [0.2, 0.1, 0.3]})
    b = pl.DataFrame({"user_id": ["u1", "u3", "u2"], "ndcg_at_10": [1.0, 3.0, 2.0]})
    x, y = stats.paired_vectors(a, b, "ndcg_at_10")
    assert list(x) == [0.1, 0.2, 0.3] and list(y) == [1.0, 2.0, 3.0]
    c = pl.DataFrame({"user_id": ["u1", "u4", "u2"], "ndcg_at_10": [1.0, 3.0, 2.0]})
    with pytest.raises(stats.StatsError, match=r"different users \(1 only in ease.*u3"):
        stats.paired_vectors(a, c, "ndcg_at_10", ("ease", "pop"))
    a2 = a.with_columns(pl.Series("ndcg_at_10", [0.2, None, float("nan")]))
    x, y = stats.paired_vectors(a2, b, "ndcg_at_10")  # users undefined in either are left out
    assert list(x) == [0.2] and list(y) == [2.0]
    assert stats.bootstrap_ci([0.5, float("nan"), 0.5], 50) == (0.5, 0.5)
    with pytest.raises(stats.StatsError, match="no column"):
        stats.paired_vectors(a, b, "recall_at_10")
    with pytest.raises(stats.StatsError, match="same length"):
        stats.paired_ttest([1.0, 2.0], [1.0])
