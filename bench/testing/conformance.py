"""The conformance suite every model's test class inherits (LensKit/RecPack style); a pytest
test class, imported as ``from bench.testing import ModelConformance``.

Usage::

    class TestMyModel(ModelConformance):
        registry_name = "mymodel"       # optional: checks the registry resolves to the class
        stochastic = True               # different seeds must give different scores
        def make_model(self, **params):
            return MyModel.from_params(params)

Hooks a model's test class may override:

- ``make_model(**params)`` (required): a fresh, unfitted model.
- ``fit_kwargs``: extra ``FitContext`` keyword arguments (device, extra, ...).
- ``make_split()``: the data (default ``bench.testing.tiny_split()``).
- ``allowed_nan(model, users, history)``: where the model declares it cannot score (bool mask
  of the score shape); NaN anywhere else fails. Default: nowhere.
- ``batch_rtol`` / ``batch_atol``: 0.0 demands bit-identical scores whatever the batch
  (classical models); models on BLAS/GPU kernels may set small tolerances and say why.

The fit context is the runner's: ``FitContext.rank`` ranks with the split's tie order.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import scipy.sparse as sp

from bench.data.indexing import IndexedSplit
from bench.errors import ConfigError
from bench.models import registry
from bench.models.base import FitContext, History, Recommender
from bench.ranking import tie_ranks
from bench.testing.data import tiny_split


class ModelConformance:
    """Protocol checks shared by every model; subclasses implement ``make_model``."""

    registry_name: ClassVar[str | None] = None
    stochastic: ClassVar[bool] = False
    batch_rtol: ClassVar[float] = 0.0
    batch_atol: ClassVar[float] = 0.0
    fit_kwargs: ClassVar[dict[str, Any]] = {}

    # ---- hooks -------------------------------------------------------------------------
    def make_model(self, **params: Any) -> Recommender:
        raise NotImplementedError("a conformance test class must implement make_model()")

    def make_split(self) -> IndexedSplit:
        return tiny_split()

    def allowed_nan(self, model: Recommender, users: np.ndarray, history: History) -> np.ndarray:
        return np.zeros((len(users), history.n_items), dtype=bool)

    # ---- helpers -----------------------------------------------------------------------
    @pytest.fixture(scope="class")
    def split(self) -> IndexedSplit:
        return self.make_split()

    @pytest.fixture
    def fit(self, split: IndexedSplit, tmp_path: Path):
        """``fit(seed=0, **params)`` -> a freshly fitted model."""

        def _fit(seed: int = 0, **params: Any) -> Recommender:
            model = self.make_model(**params)
            ctx = FitContext(
                seed=seed,
                workdir=tmp_path / f"run-{seed}",
                cache_dir=tmp_path / "cache",
                tie_rank=tie_ranks(split.model_data.item_ids),
                **self.fit_kwargs,
            )
            ctx.workdir.mkdir(parents=True, exist_ok=True)
            model.fit(split.model_data, ctx)
            return model

        return _fit

    @staticmethod
    def all_users(split: IndexedSplit) -> np.ndarray:
        return np.arange(split.model_data.n_users, dtype=np.int64)

    @staticmethod
    def history(split: IndexedSplit) -> History:
        return split.model_data.test_history

    # ---- checks ------------------------------------------------------------------------
    def test_registry_resolves_to_class(self) -> None:
        if self.registry_name is None:
            pytest.skip("no registry_name set")
        assert registry.get(self.registry_name) is type(self.make_model())

    def test_score_shape_and_dtype(self, split: IndexedSplit, fit) -> None:
        model, users, h = fit(), self.all_users(split), self.history(split)
        scores = model.score(users, h)
        assert isinstance(scores, np.ndarray)
        assert scores.shape == (len(users), split.model_data.n_items)
        assert scores.dtype == np.float64

    def test_empty_batch(self, split: IndexedSplit, fit) -> None:
        scores = fit().score(np.zeros(0, dtype=np.int64), self.history(split))
        assert scores.shape == (0, split.model_data.n_items)

    def test_nan_only_where_declared(self, split: IndexedSplit, fit) -> None:
        model, users, h = fit(), self.all_users(split), self.history(split)
        scores = model.score(users, h)
        nan = np.isnan(scores)
        assert not (nan & ~self.allowed_nan(model, users, h)).any()
        assert not np.isinf(scores).any()

    def test_same_seed_same_scores(self, split: IndexedSplit, fit) -> None:
        users, h = self.all_users(split), self.history(split)
        a, b = fit(seed=0).score(users, h), fit(seed=0).score(users, h)
        np.testing.assert_array_equal(a, b)

    def test_seed_changes_scores_iff_stochastic(self, split: IndexedSplit, fit) -> None:
        users, h = self.all_users(split), self.history(split)
        a, b = fit(seed=0).score(users, h), fit(seed=1).score(users, h)
        if self.stochastic:
            assert not np.array_equal(a, b, equal_nan=True)
        else:
            np.testing.assert_array_equal(a, b)

    def test_batch_independence(self, split: IndexedSplit, fit) -> None:
        model, users, h = fit(), self.all_users(split), self.history(split)
        whole = model.score(users, h)
        one_by_one = np.vstack([model.score(users[i : i + 1], h) for i in range(len(users))])
        perm = np.random.default_rng(7).permutation(len(users))
        shuffled = np.empty_like(whole)
        shuffled[perm] = model.score(users[perm], h)
        repeated = model.score(np.concatenate([users[:3], users[:3]]), h)
        cases = [
            (one_by_one, whole),
            (shuffled, whole),
            (repeated, np.vstack([whole[:3], whole[:3]])),
        ]
        for got, want in cases:
            np.testing.assert_allclose(got, want, rtol=self.batch_rtol, atol=self.batch_atol)

    def test_scores_finite_for_empty_history(self, split: IndexedSplit, fit) -> None:
        model, h = fit(), self.history(split)
        users = self.all_users(split)
        empty = users[::3]
        keep = np.ones(h.n_users)
        keep[empty] = 0.0
        matrix = sp.csr_matrix(sp.diags(keep) @ h.matrix)
        matrix.eliminate_zeros()
        gone = set(empty.tolist())
        seqs = [np.zeros(0, np.int64) if u in gone else s for u, s in enumerate(h.sequences)]
        blank = History(matrix=matrix, sequences=seqs)
        scores = model.score(empty, blank)
        allowed = self.allowed_nan(model, empty, blank)
        assert np.isfinite(scores[~allowed]).all()

    def test_score_leaves_history_untouched(self, split: IndexedSplit, fit) -> None:
        model, h = fit(), self.history(split)
        before = h.matrix.copy()
        model.score(self.all_users(split), h)
        assert (h.matrix != before).nnz == 0

    def test_global_rng_untouched(self, split: IndexedSplit, fit) -> None:
        np_state, py_state = np.random.get_state(), random.getstate()
        fit().score(self.all_users(split), self.history(split))
        after = np.random.get_state()
        assert all(np.array_equal(x, y) for x, y in zip(np_state, after, strict=True))
        assert random.getstate() == py_state

    def test_unknown_parameter_is_config_error(self) -> None:
        cls = type(self.make_model())
        fields = [f.name for f in dataclasses.fields(cls.Config)]
        typo = fields[0] + fields[0][-1] if fields else "kk"
        with pytest.raises(ConfigError) as err:
            cls.from_params({typo: 1})
        msg = str(err.value)
        assert "\n" not in msg and f"unknown parameter '{typo}'" in msg
        if fields:
            assert f"did you mean '{fields[0]}'" in msg

    def test_n_parameters_is_non_negative_int(self, fit) -> None:
        n = fit().n_parameters()
        assert isinstance(n, int) and not isinstance(n, bool) and n >= 0
