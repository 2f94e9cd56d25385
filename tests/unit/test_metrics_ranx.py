"""Differential test against ranx at 1e-9 (random tie-free inputs, k = 5, 10, 100).

ranx ``hit_rate@k`` is the rate (``hits@k`` the count); ranx needs the same query ids in run and
qrels, so every user gets a non-empty list. ranx JIT-compiles its numba kernels on first use
(minutes on a loaded 2-core machine, then cached on disk): one module fixture warms them.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from bench.metrics.engine import evaluate_arrays

KS = (5, 10, 100)
TOL = 1e-9


def random_case(seed: int, n_users: int = 300, n_items: int = 400, width: int = 100):
    rng = np.random.default_rng(seed)
    rec = np.full((n_users, width), -1, dtype=np.int64)
    rows, cols = [], []
    for u in range(n_users):
        length = int(rng.integers(1, width + 1)) if u % 3 == 0 else width
        rec[u, :length] = rng.permutation(n_items)[:length]
        n_rel = int(rng.integers(1, 40))
        rel = rng.choice(n_items, n_rel, replace=False)
        rows += [u] * n_rel
        cols += rel.tolist()
    truth = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_items))
    return rec, truth


def as_dicts(rec, truth, k):
    qrels = {f"q{u}": {f"d{i}": 1 for i in truth[u].indices} for u in range(truth.shape[0])}
    run = {}
    for u, row in enumerate(rec):
        items = [i for i in row[:k] if i >= 0]
        run[f"q{u}"] = {f"d{i}": float(len(items) - j) for j, i in enumerate(items)}
    return qrels, run


@pytest.fixture(scope="module")
def case():
    rec, truth = random_case(11, n_users=200)
    return rec, truth, evaluate_arrays(np.arange(truth.shape[0]), rec, truth, KS)


@pytest.fixture(scope="module")
def ranx_warm():
    """ranx compiles its numba kernels on first use (slow): warm them once per module."""
    ranx = pytest.importorskip("ranx")
    q = ranx.Qrels({"q": {"a": 1}})
    r = ranx.Run({"q": {"a": 1.0, "b": 0.5}})
    ranx.evaluate(q, r, ["precision@1", "recall@1", "ndcg@1", "mrr@1", "map@1", "hit_rate@1"])
    return ranx


def test_against_ranx(case, ranx_warm):
    ranx = ranx_warm
    rec, truth, res = case
    qrels, run = as_dicts(rec, truth, max(KS))
    names = ["precision", "recall", "ndcg", "mrr", "map", "hit_rate"]
    metrics = [f"{m}@{k}" for m in names for k in KS]
    out = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), metrics, return_mean=False)
    order = sorted(qrels)  # ranx returns per-query values in sorted query-id order
    idx = np.array([int(q[1:]) for q in order])
    for m in names:
        for k in KS:
            np.testing.assert_allclose(
                res.per_user[f"{m}_at_{k}"][idx],
                out[f"{m}@{k}"],
                atol=TOL,
                rtol=0,
                err_msg=f"{m}@{k}",
            )
