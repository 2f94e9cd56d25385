"""The synthetic generator: contract dtypes, determinism, uniqueness, power law, speed."""

from __future__ import annotations

import polars as pl
import pytest

from bench.data.synthetic import SyntheticConfig, generate


def test_contract_and_counts():
    cfg = SyntheticConfig(n_users=300, n_items=200, n_interactions=6000, min_per_user=5, seed=3)
    ds = generate(cfg)
    assert ds.interactions.schema == pl.Schema(
        {"user_id": pl.Utf8, "item_id": pl.Utf8, "timestamp": pl.Int64, "rating": pl.Float64}
    )
    assert ds.items.schema == pl.Schema(
        {"item_id": pl.Utf8, "title": pl.Utf8, "year": pl.Int64, "genres": pl.List(pl.Utf8)}
    )
    assert ds.users.schema == pl.Schema(
        {"user_id": pl.Utf8, "gender": pl.Utf8, "age": pl.Int64, "occupation": pl.Utf8}
    )
    f = ds.interactions
    assert (
        f.height == 6000
        and not f.select(pl.struct("user_id", "item_id").is_duplicated()).to_series().any()
    )
    assert f.group_by("user_id").len()["len"].min() >= 5
    assert set(f["rating"].unique().to_list()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert ds.items.height == 200 and ds.users.height == 300
    assert ds.items["genres"].list.len().min() >= 1


def test_same_seed_identical_different_seed_differs():
    a, b = generate(SyntheticConfig(seed=7)), generate(SyntheticConfig(seed=7))
    c = generate(SyntheticConfig(seed=8))
    for part in ("interactions", "items", "users"):
        assert getattr(a, part).equals(getattr(b, part))
    assert not a.interactions.equals(c.interactions)


def test_power_law_popularity():
    ds = generate(SyntheticConfig(n_users=2000, n_items=1000, n_interactions=40000, zipf=1.0))
    pop = ds.interactions.group_by("item_id").len()["len"].sort(descending=True)
    assert pop[0] > 10 * pop[len(pop) // 2]


def test_dense_users_are_filled():
    ds = generate(SyntheticConfig(n_users=20, n_items=50, n_interactions=900, user_zipf=2.0))
    assert ds.interactions.height == 900
    assert ds.interactions.group_by("user_id").len()["len"].max() <= 50


def test_too_dense_is_refused():
    with pytest.raises(ValueError, match="exceeds n_users x n_items"):
        generate(SyntheticConfig(n_users=2, n_items=2, n_interactions=5))


def _python_calls(cfg: SyntheticConfig) -> int:
    """Python-level function calls (and calls of builtins) made while generating ``cfg``."""
    import sys

    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        generate(cfg)
    finally:
        sys.setprofile(None)
    return calls


def test_generation_has_no_python_loop_per_interaction():
    """10x the interactions for the same users and items makes (about) the same number of
    Python calls: the work is vectorized, never a Python loop per interaction. Counted calls,
    not seconds, so a loaded machine cannot fail it."""
    warm_up, small, large = (
        _python_calls(SyntheticConfig(n_users=2000, n_items=800, n_interactions=n,
                                      min_per_user=5))
        for n in (20_000, 20_000, 200_000)  # the first call also runs one-time imports
    )
    assert large < 2 * small, (small, large)  # a loop per interaction: 200,000+ calls
    ds = generate(SyntheticConfig(n_users=2000, n_items=800, n_interactions=200_000,
                                  min_per_user=5))
    assert ds.interactions.height == 200_000
