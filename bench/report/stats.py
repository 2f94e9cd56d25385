"""Statistics for comparing recommenders on the same users: paired tests, corrections, CIs.

All paired functions take two per-user vectors of the same users in the same order (use
``paired_vectors`` to align two ``per_user`` frames by ``user_id``). Two-sided throughout.

- ``paired_ttest``: Student's paired t-test (``scipy.stats.ttest_rel``).
- ``wilcoxon``: Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero differences dropped).
- ``randomization_test``: Fisher's paired randomisation (sign-flip permutation) test of the mean
  difference (Smucker, Allan & Carterette, CIKM 2007); exact enumeration when 2^n is at most the
  number of resamples, else Monte Carlo with the +1 correction p = (b + 1) / (m + 1) (Phipson &
  Smyth 2010), which never reports p = 0.
- ``holm`` and ``benjamini_hochberg``: adjusted p-values (family-wise error / false discovery
  rate).
- ``cohens_dz``: paired effect size mean(d) / sd(d).
- ``bootstrap_ci``: percentile bootstrap CI of a mean over users (seeded).
- ``seed_summary``: mean, sample std and t-based CI over seeds.

Degenerate inputs: when every paired difference is 0 the tests return statistic 0 and p = 1
(no evidence of a difference) instead of scipy's NaN.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bench.errors import BenchError

if TYPE_CHECKING:  # polars and scipy load only where used: `bench leaderboard` needs neither
    import polars as pl


class StatsError(BenchError):
    """Vectors that cannot be compared (different users, NaN, too short)."""


@dataclass(frozen=True)
class TestResult:
    """The outcome of one two-sided paired test."""

    test: str
    statistic: float
    p_value: float
    n: int


@dataclass(frozen=True)
class SeedSummary:
    """Mean over seeds, sample std (ddof=1) and a t-based CI of the mean (NaN for one seed),
    computed on first use (it needs scipy, which the leaderboard never loads)."""

    mean: float
    std: float
    n: int
    level: float = 0.95

    @functools.cached_property
    def half_width(self) -> float:
        if self.n < 2:
            return math.nan
        from scipy import stats

        return float(stats.t.ppf((1 + self.level) / 2, self.n - 1)) * self.std / math.sqrt(self.n)

    @property
    def ci_low(self) -> float:
        return self.mean - self.half_width

    @property
    def ci_high(self) -> float:
        return self.mean + self.half_width


TESTS = ("ttest", "wilcoxon", "randomization")
CORRECTIONS = ("holm", "bh", "none")
TEST_NAMES = {"ttest": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test",
              "randomization": "Fisher randomisation test"}
CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg", "none": "no"}


# ----------------------------------------------------------------------------- alignment


def paired_vectors(a: pl.DataFrame, b: pl.DataFrame, column: str,
                   names: tuple[str, str] = ("A", "B")) -> tuple[np.ndarray, np.ndarray]:
    """``column`` of two per-user frames, aligned by ``user_id``; refuses different user sets.

    Users whose value is NaN/null in either frame (a metric undefined for them, such as the ILD
    of a one-item list) are left out of the pair.
    """
    import polars as pl

    for frame, name in zip((a, b), names, strict=True):
        if column not in frame.columns:
            raise StatsError(f"per-user table of {name} has no column {column!r}")
        if frame["user_id"].n_unique() != frame.height:
            raise StatsError(f"per-user table of {name} repeats user ids")
    ua, ub = set(a["user_id"].to_list()), set(b["user_id"].to_list())
    if ua != ub:
        only_a, only_b = sorted(ua - ub), sorted(ub - ua)
        raise StatsError(
            f"{names[0]} and {names[1]} were evaluated on different users ({len(only_a)} only in "
            f"{names[0]}, e.g. {only_a[:3]}; {len(only_b)} only in {names[1]}, e.g. {only_b[:3]}):"
            " paired tests need the same users; were they run on the same split?"
        )
    joined = a.select("user_id", pl.col(column).alias("_a")).join(
        b.select("user_id", pl.col(column).alias("_b")), on="user_id").sort("user_id")
    x = joined["_a"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    y = joined["_b"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    keep = ~(np.isnan(x) | np.isnan(y))  # undefined for a user (e.g. ild of a 1-item list)
    return x[keep], y[keep]


def _pair(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> np.ndarray:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise StatsError(f"paired vectors must have the same length (got {x.shape}, {y.shape})")
    if x.size < 2:
        raise StatsError(f"a paired test needs at least 2 users (got {x.size})")
    return x - y


# ----------------------------------------------------------------------------- tests


def paired_ttest(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> TestResult:
    """Two-sided paired t-test of mean(x - y) = 0 (``scipy.stats.ttest_rel``)."""
    from scipy import stats

    d = _pair(x, y)
    if not d.any():
        return TestResult("ttest", 0.0, 1.0, d.size)
    res = stats.ttest_rel(x, y)
    return TestResult("ttest", float(res.statistic), float(res.pvalue), d.size)


def wilcoxon(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> TestResult:
    """Two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero_method='wilcox')."""
    from scipy import stats

    d = _pair(x, y)
    if not d.any():
        return TestResult("wilcoxon", 0.0, 1.0, d.size)
    res = stats.wilcoxon(x, y, zero_method="wilcox")
    return TestResult("wilcoxon", float(res.statistic), float(res.pvalue), d.size)


def randomization_test(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                       n_resamples: int = 10_000, seed: int = 0) -> TestResult:
    """Fisher's paired randomisation test of mean(x - y) = 0 by sign flips (two-sided).

    Exact (all 2^n sign vectors) when 2^n <= ``n_resamples``; otherwise ``n_resamples`` seeded
    random sign vectors and p = (b + 1) / (n_resamples + 1), b = resamples with
    abs(mean) >= the observed one.
    """
    d = _pair(x, y)
    if n_resamples < 1:
        raise StatsError(f"n_resamples must be >= 1 (got {n_resamples})")
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if d.size <= 20 and 2 ** d.size <= n_resamples:
        return TestResult("randomization", float(d.mean()), _exact_p(d, observed, tol), d.size)
    rng = np.random.default_rng(seed)
    hits, done, chunk = 0, 0, max(1, 2_000_000 // d.size)
    while done < n_resamples:
        m = min(chunk, n_resamples - done)
        signs = rng.integers(0, 2, size=(m, d.size), dtype=np.int8) * 2 - 1
        hits += int((np.abs(signs @ d) / d.size >= observed - tol).sum())
        done += m
    return TestResult("randomization", float(d.mean()), (hits + 1) / (n_resamples + 1), d.size)


def _exact_p(d: np.ndarray, observed: float, tol: float) -> float:
    n = d.size
    codes = np.arange(2**n, dtype=np.int64)[:, None]
    signs = ((codes >> np.arange(n)) & 1) * 2 - 1
    return float((np.abs(signs @ d) / n >= observed - tol).mean())


def run_test(name: str, x: np.ndarray, y: np.ndarray, n_resamples: int = 10_000,
             seed: int = 0) -> TestResult:
    """Dispatch on a test name of ``TESTS``."""
    if name == "ttest":
        return paired_ttest(x, y)
    if name == "wilcoxon":
        return wilcoxon(x, y)
    if name == "randomization":
        return randomization_test(x, y, n_resamples=n_resamples, seed=seed)
    from bench.errors import unknown

    raise unknown("test", name, TESTS)


# ----------------------------------------------------------------------------- corrections


def _valid(p: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(p, dtype=np.float64)
    return arr, ~np.isnan(arr)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (NaN entries are kept and not counted)."""
    arr, ok = _valid(p_values)
    out = np.full(arr.shape, np.nan)
    p = arr[ok]
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg step-up adjusted p-values (NaN entries are kept and not counted)."""
    arr, ok = _valid(p_values)
    out = np.full(arr.shape, np.nan)
    p = arr[ok]
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(scaled[::-1])[::-1]
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


def correct(p_values: Sequence[float], method: str) -> np.ndarray:
    """Adjust p-values with a method of ``CORRECTIONS``."""
    table: dict[str, Callable[[Sequence[float]], np.ndarray]] = {
        "holm": holm, "bh": benjamini_hochberg,
        "none": lambda p: np.asarray(p, dtype=np.float64)}
    if method not in table:
        from bench.errors import unknown

        raise unknown("correction", method, CORRECTIONS)
    return table[method](p_values)


# ----------------------------------------------------------------------------- effect sizes, CIs


def cohens_dz(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Paired effect size d_z = mean(x - y) / sd(x - y) (ddof=1); 0 when x == y, NaN if sd = 0."""
    d = _pair(x, y)
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return 0.0 if not d.any() else math.nan
    return float(d.mean() / sd)


def bootstrap_ci(values: Sequence[float] | np.ndarray, n_resamples: int = 10_000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over users (resampling users with replacement).

    NaN values (metric undefined for that user) are left out, as in the metric's mean.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]  # users for whom the metric is undefined
    if v.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // v.size)
    for start in range(0, n_resamples, chunk):
        m = min(chunk, n_resamples - start)
        means[start:start + m] = v[rng.integers(0, v.size, size=(m, v.size))].mean(axis=1)
    alpha = (1.0 - level) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def seed_summary(values: Sequence[float] | np.ndarray, level: float = 0.95) -> SeedSummary:
    """Mean over seeds, sample std and mean +/- t_{(1+level)/2, n-1} * std / sqrt(n)."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    n = v.size
    if n == 0:
        return SeedSummary(math.nan, math.nan, 0, level)
    mean = float(v.mean())
    if n == 1:
        return SeedSummary(mean, math.nan, 1, level)
    return SeedSummary(mean, float(v.std(ddof=1)), n, level)
