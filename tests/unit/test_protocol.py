"""The evaluation protocol: eval.* checks, segments, sampled candidate sets."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from bench import candidates as C
from bench.errors import ConfigError, IntegrityError
from bench.protocol import EvalProtocol, population, segments, warm_mask


def test_defaults_and_tags():
    p = EvalProtocol.from_mapping({})
    assert (p.users, p.fit_data, p.candidates) == ("warm", "train", "full")
    assert p.tags() == {
        "bench.eval_users": "warm",
        "bench.fit_data": "train",
        "bench.candidates": "full",
    }
    s = EvalProtocol.from_mapping({"candidates": "sampled", "n_negatives": 50,
                                   "negatives": "popularity"})
    assert s.candidates_tag == "sampled-50-popularity"


@pytest.mark.parametrize(
    ("ev", "match"),
    [
        ({"users": "warmm"}, r"eval.users must be one of warm, all, cold, got 'warmm' \(did you"),
        ({"users": True}, r"eval.users must be one of .* got True"),
        ({"fit_data": "valid"}, r"eval.fit_data must be one of train, train\+valid"),
        ({"candidates": "sample"}, r"eval.candidates must be one of full, sampled.*did you mean"),
        ({"n_negatives": 0}, r"eval.n_negatives must be an integer >= 1, got 0"),
        ({"n_negatives": "10"}, r"eval.n_negatives must be an integer"),
        ({"negatives": "pop"}, r"eval.negatives must be one of uniform, popularity"),
    ],
)
def test_bad_values_are_one_line(ev, match):
    with pytest.raises(ConfigError, match=match) as err:
        EvalProtocol.from_mapping(ev)
    assert "\n" not in str(err.value)


def test_refit_needs_valid_in_the_test_history():
    cfg = {"eval": {"fit_data": "train+valid"}, "split": {"test_history": "train"}}
    with pytest.raises(ConfigError, match=r"needs split.test_history=train\+valid"):
        EvalProtocol.for_run(cfg)
    cfg["split"]["test_history"] = "train+valid"
    assert EvalProtocol.for_run(cfg).fit_data == "train+valid"


def test_segments_and_population():
    fit = sp.csr_matrix(np.array([[1, 0], [0, 0], [0, 1], [0, 0]], dtype=np.float32))
    warm = warm_mask(fit)
    assert warm.tolist() == [True, False, True, False]
    users = np.array([0, 1, 2, 3])
    seg = segments(users, warm)
    assert seg["warm"].tolist() == [0, 2] and seg["cold"].tolist() == [1, 3]
    assert population(users, warm, "all").tolist() == [0, 1, 2, 3]
    assert population(users, warm, "cold").tolist() == [1, 3]
    assert population(np.zeros(0, np.int64), warm, "warm").tolist() == []


def _random(n_users, n_items, nnz, seed):
    rng = np.random.default_rng(seed)
    m = sp.csr_matrix(
        (np.ones(nnz, np.float32), (rng.integers(0, n_users, nnz), rng.integers(0, n_items, nnz))),
        shape=(n_users, n_items),
    )
    m.sum_duplicates()
    m.data[:] = 1
    return m


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_sampled_sets_hold_the_positives_and_n_fresh_negatives(sampler):
    positives, history = _random(300, 200, 600, 1), _random(300, 200, 6000, 2)
    pop = np.bincount(history.indices, minlength=200).astype(float)
    pop[:20] = 0  # items nobody has in train: never drawn by popularity
    seed = C.seed_for("ab" * 32, "test", 30, sampler)
    m = C.sample(positives, history, 30, sampler, pop, seed)
    again = C.sample(positives, history, 30, sampler, pop, seed)
    assert (m != again).nnz == 0  # the same draw every time
    other = C.sample(positives, history, 30, sampler, pop, C.seed_for("cd" * 32, "test", 30,
                                                                      sampler))
    assert (m != other).nnz > 0  # another split draws other negatives
    for u in range(300):
        cands, pos = set(m[u].indices), set(positives[u].indices)
        if not pos:
            assert not cands  # users without positives get no set
            continue
        negatives = cands - pos
        assert pos <= cands
        assert not negatives & set(history[u].indices)
        assert len(negatives) == 30
        if sampler == "popularity":
            assert all(pop[i] > 0 for i in negatives)


def test_small_catalogue_gives_every_eligible_item():
    positives = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 1, 0]], np.float32))
    history = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], np.float32))
    m = C.sample(positives, history, 5, "uniform", np.ones(4), [0])
    assert m.toarray().tolist() == [[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 0]]


def test_frozen_sets_are_written_once_verified_and_refused_when_edited(tmp_path):
    user_ids = np.array(["u1", "u2", "u3"], dtype=object)
    item_ids = np.array(["a", "b", "c", "d"], dtype=object)
    m = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 1, 1]], np.float32))
    calls = []

    def make():
        calls.append(1)
        return m

    got, path = C.frozen(tmp_path, "ab" * 32, "test", 5, "uniform", make, user_ids, item_ids)
    assert path == tmp_path / "candidates" / "test-sampled-5-uniform.parquet"
    again, _ = C.frozen(tmp_path, "ab" * 32, "test", 5, "uniform", make, user_ids, item_ids)
    assert len(calls) == 1 and (got != m).nnz == 0 and (again != m).nnz == 0
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(IntegrityError, match="differ from their sha256.*delete both files"):
        C.frozen(tmp_path, "ab" * 32, "test", 5, "uniform", make, user_ids, item_ids)


def test_restrict_keeps_only_the_candidates():
    scores = np.arange(8, dtype=float).reshape(2, 4)
    allowed = sp.csr_matrix(np.array([[1, 0, 0, 1], [0, 1, 0, 0]], np.float32))
    out = C.restrict(scores, allowed)
    assert np.isnan(out[0, 1]) and out[0, 3] == 3.0 and out[1, 1] == 5.0
    assert np.isnan(out).sum() == 5
