"""Classical baselines: the conformance suite plus hand-checked values on tiny data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import yaml

from baselines.classical import MODELS
from baselines.classical import ease as ease_module
from baselines.classical.ease import EASE, _symmetrize_lower, check_memory, ease_weights
from baselines.classical.itemknn import ItemKNN, item_similarity
from baselines.classical.pop import Pop
from baselines.classical.rand import Random
from bench.data.indexing import index_split
from bench.errors import ConfigError
from bench.models import registry
from bench.models.base import FitContext, Recommender
from bench.testing import ModelConformance, tiny_frames, tiny_split

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"


def fitted(model: Recommender, seed: int = 0, **kwargs: Any) -> Recommender:
    model.fit(tiny_split(**kwargs).model_data, FitContext(seed=seed))
    return model


def dense_train(split) -> np.ndarray:
    """Binary train matrix, built directly from the frame (independent of the models)."""
    md = split.model_data
    x = np.zeros((md.n_users, md.n_items))
    x[md.train["user_idx"].to_numpy(), md.train["item_idx"].to_numpy()] = 1.0
    return x


def brute_force_knn(x: np.ndarray, k: int, shrink: float = 0.0, jaccard: bool = False):
    """Dense item-item similarity, then per column the k largest positive entries (ties to the
    lower row index), by sorting each column: the reference for ``item_similarity``."""
    co = x.T @ x
    n = np.diag(co).copy()
    den = n[:, None] + n[None, :] - co + shrink if jaccard else np.sqrt(np.outer(n, n)) + shrink
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(den > 0, co / den, 0.0)
    np.fill_diagonal(sim, 0.0)
    out = np.zeros_like(sim)
    for j in range(sim.shape[1]):
        order = np.lexsort((np.arange(sim.shape[0]), -sim[:, j]))[:k]
        order = order[sim[order, j] > 0]
        out[order, j] = sim[order, j]
    return out


# ---- conformance -------------------------------------------------------------------------
class TestPop(ModelConformance):
    registry_name = "pop"

    def make_model(self, **params: Any) -> Recommender:
        return Pop.from_params(params)

    def test_counts_distinct_users(self) -> None:
        f = tiny_frames(n_users=6, n_items=5, n_events=40)
        dup = f["train"].head(3)
        train = pl.concat([f["train"], dup, dup])  # repeated events of the same users
        split = index_split(train, f["valid"], f["test"], f["items"], f["users"])
        model = Pop()
        model.fit(split.model_data, FitContext(seed=0))
        md = split.model_data
        expected = np.zeros(md.n_items)
        for item in range(md.n_items):
            expected[item] = md.train.filter(pl.col("item_idx") == item)["user_idx"].n_unique()
        np.testing.assert_array_equal(model.popularity, expected)
        users = np.arange(md.n_users)
        scores = model.score(users, md.test_history)
        np.testing.assert_array_equal(scores, np.tile(expected, (md.n_users, 1)))

    def test_items_not_in_train_score_zero(self) -> None:
        f = tiny_frames()
        extra = pl.DataFrame(
            {"item_id": ["zz-new"], "title": ["New"], "year": [2024], "genres": [["Drama"]]}
        )
        items = pl.concat([f["items"], extra])
        split = index_split(f["train"], f["valid"], f["test"], items, f["users"])
        md = split.model_data
        model = Pop()
        model.fit(md, FitContext(seed=0))
        unseen = np.setdiff1d(np.arange(md.n_items), md.train["item_idx"].unique().to_numpy())
        assert unseen.size > 0
        scores = model.score(np.array([0, 1]), md.test_history)
        assert (scores[:, unseen] == 0).all() and (np.delete(scores, unseen, axis=1) > 0).all()
        assert model.n_parameters() == md.n_items


class TestRandom(ModelConformance):
    registry_name = "random"
    stochastic = True

    def make_model(self, **params: Any) -> Recommender:
        return Random.from_params(params)

    def test_range_and_offset(self) -> None:
        h = tiny_split().model_data.test_history
        users = np.arange(h.n_users)
        a = fitted(Random()).score(users, h)
        b = fitted(Random.from_params({"seed_offset": 1})).score(users, h)
        assert ((a >= 0) & (a < 1)).all() and not np.array_equal(a, b)
        assert abs(a.mean() - 0.5) < 0.02
        assert fitted(Random()).n_parameters() == 0

    def test_negative_offset_is_config_error(self) -> None:
        with pytest.raises(ConfigError, match="seed_offset"):
            Random.from_params({"seed_offset": -1})


class TestItemKNN(ModelConformance):
    registry_name = "itemknn"

    def make_model(self, **params: Any) -> Recommender:
        return ItemKNN.from_params({"k": 10, **params})

    @pytest.mark.parametrize("similarity", ["cosine", "jaccard"])
    @pytest.mark.parametrize("shrink", [0.0, 3.0])
    def test_no_pruning_matches_dense(self, similarity: str, shrink: float) -> None:
        split = tiny_split()
        n = split.model_data.n_items
        model = ItemKNN.from_params({"k": n, "shrink": shrink, "similarity": similarity})
        model.fit(split.model_data, FitContext(seed=0))
        ref = brute_force_knn(dense_train(split), n, shrink, jaccard=similarity == "jaccard")
        np.testing.assert_allclose(model.similarity.toarray(), ref, rtol=1e-12, atol=0)

    @pytest.mark.parametrize("k", [1, 3, 7])
    def test_pruning_keeps_top_k_per_column(self, k: int) -> None:
        split = tiny_split()
        model = fitted(ItemKNN.from_params({"k": k}))
        s = model.similarity
        assert np.diff(s.tocsc().indptr).max() <= k
        ref = brute_force_knn(dense_train(split), k)
        np.testing.assert_allclose(s.toarray(), ref, rtol=1e-12, atol=0)
        assert model.n_parameters() == s.nnz

    def test_ties_go_to_lower_item_index(self) -> None:
        # items 1, 2, 3 co-occur with item 0 exactly alike: k=2 keeps 1 and 2
        x = sp.csr_matrix(np.array([[1, 1, 1, 1], [1, 1, 1, 1]], dtype=float))
        s = item_similarity(x, k=2).toarray()
        assert list(np.nonzero(s[:, 0])[0]) == [1, 2]

    def test_block_size_does_not_change_result(self) -> None:
        x = sp.csr_matrix(dense_train(tiny_split()))
        whole = item_similarity(x, k=5)
        for block in (1, 7, 64):
            assert (item_similarity(x, k=5, block_size=block) != whole).nnz == 0

    def test_scores_are_binary_history_times_s(self) -> None:
        split = tiny_split()
        md = split.model_data
        model = fitted(ItemKNN.from_params({"k": 5}))
        users = np.arange(md.n_users)
        hist = md.test_history.matrix.toarray() > 0
        expected = hist.astype(float) @ model.similarity.toarray()
        np.testing.assert_allclose(model.score(users, md.test_history), expected, rtol=1e-12)

    @pytest.mark.parametrize(
        ("params", "needle"),
        [
            ({"k": 0}, "k must be >= 1"),
            ({"shrink": -1.0}, "shrink"),
            ({"similarity": "cosin"}, "did you mean 'cosine'"),
        ],
    )
    def test_bad_params(self, params: dict, needle: str) -> None:
        with pytest.raises(ConfigError, match=needle):
            ItemKNN.from_params(params)


class TestEASE(ModelConformance):
    registry_name = "ease"

    def make_model(self, **params: Any) -> Recommender:
        return EASE.from_params({"l2": 10.0, **params})

    @pytest.mark.parametrize("l2", [1.0, 500.0])
    def test_matches_closed_form_with_inv(self, l2: float) -> None:
        split = tiny_split()
        x = dense_train(split)
        p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
        b = np.eye(x.shape[1]) - p / np.diag(p)[None, :]  # B = I - P diagMat(1/diag(P))
        model = fitted(EASE.from_params({"l2": l2}))
        np.testing.assert_allclose(model.weights, b, rtol=1e-9, atol=1e-12)
        assert (np.diag(model.weights) == 0).all()
        h = split.model_data.test_history
        users = np.arange(h.n_users)
        expected = (h.matrix.toarray() > 0).astype(float) @ b
        np.testing.assert_allclose(model.score(users, h), expected, rtol=1e-9, atol=1e-12)
        assert model.n_parameters() == x.shape[1] ** 2

    def test_symmetrize_in_blocks(self) -> None:
        a = np.random.default_rng(0).random((23, 23))
        q = np.tril(a) + np.triu(np.full_like(a, np.nan), 1)
        _symmetrize_lower(q, step=5)
        np.testing.assert_array_equal(q, np.tril(a) + np.tril(a, -1).T)

    def test_refuses_large_catalogue(self) -> None:
        model = EASE.from_params({"max_items": 50})
        with pytest.raises(ConfigError, match="max_items=50") as err:
            model.fit(tiny_split().model_data, FitContext(seed=0))
        assert "\n" not in str(err.value) and "GB" in str(err.value)

    def test_items_without_train_get_zero_weights(self) -> None:
        x = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0]], dtype=float))
        b = ease_weights(x, 2.0)
        assert (b[2] == 0).all() and (b[:, 2] == 0).all()

    @pytest.mark.parametrize(
        "params", [{"l2": 0.0}, {"l2": -5.0}, {"max_items": 0}, {"dtype": "float16"}]
    )
    def test_bad_params(self, params: dict) -> None:
        with pytest.raises(ConfigError):
            EASE.from_params(params)

    def test_single_threaded_lapack_gives_the_same_weights(self, monkeypatch) -> None:
        """Above THREADED_LAPACK_MAX_N the inverse runs on one BLAS thread (OpenBLAS's
        threaded potrf segfaults on large matrices): same weights, one thread inside."""
        from threadpoolctl import threadpool_info

        x = sp.random(60, 40, density=0.3, random_state=1, format="csr")
        x.data[:] = 1.0
        threaded = ease_weights(x, 3.0)
        monkeypatch.setattr(ease_module, "THREADED_LAPACK_MAX_N", 10)
        with ease_module.lapack_threads(40):
            assert {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"} == {1}
        np.testing.assert_allclose(ease_weights(x, 3.0), threaded, rtol=1e-12, atol=1e-14)

    def test_float32_matches_float64(self) -> None:
        split = tiny_split()
        b64 = fitted(EASE.from_params({"l2": 5.0}))
        b32 = fitted(EASE.from_params({"l2": 5.0, "dtype": "float32"}))
        assert b32.weights is not None and b32.weights.dtype == np.float32
        np.testing.assert_allclose(b32.weights, b64.weights, rtol=1e-4, atol=1e-6)
        h = split.model_data.test_history
        users = np.arange(h.n_users)
        s32 = b32.score(users, h)
        assert s32.dtype == np.float64
        np.testing.assert_allclose(s32, b64.score(users, h), rtol=1e-4, atol=1e-6)

    def test_refuses_when_memory_is_short(self) -> None:
        with pytest.raises(ConfigError, match="26,744 items need about 6.3 GB") as err:
            check_memory(26_744, np.float64, available=4 * 10**9)
        msg = str(err.value)
        assert "\n" not in msg and "dtype=float32" in msg and "2.9 GB" in msg
        assert "check_memory=false" in msg and "4.0 GB is available" in msg
        check_memory(26_744, np.float32, available=4 * 10**9)  # 2.9 GB + work fits

    def test_memory_check_can_be_turned_off(self, monkeypatch) -> None:
        import psutil

        class Tiny:
            available = 1

        monkeypatch.setattr(psutil, "virtual_memory", lambda: Tiny())
        with pytest.raises(ConfigError, match="available"):
            fitted(EASE.from_params({"l2": 5.0}))
        assert fitted(EASE.from_params({"l2": 5.0, "check_memory": False})).weights is not None


# ---- registry and configs ----------------------------------------------------------------
def test_registry_names() -> None:
    assert {"pop", "random", "itemknn", "ease"} <= set(registry.names())
    assert isinstance(registry.build("itemknn", {"k": 7}), ItemKNN)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_conf_file_validates(name: str) -> None:
    text = (CONF / f"{name}.yaml").read_text()
    conf = yaml.safe_load(text)
    # a defaults list (extending the structured model schema) is allowed, nothing else
    assert conf["name"] == name and set(conf) - {"defaults"} == {"name", "params"}
    model = registry.build(name, conf["params"])
    assert model.config == registry.get(name).Config()  # the YAML states the defaults
    words = {str(k).lower() for k in conf["params"]} | {
        str(v).lower() for v in conf["params"].values()
    }
    assert not words & {"on", "off", "yes", "no"}
