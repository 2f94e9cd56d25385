"""Differential test against ranx at 1e-9 (random tie-free inputs, k = 5, 10, 100).

ranx ``hit_rate@k`` is the rate (``hits@k`` the count); ranx needs the same query ids in run and
qrels, so every user gets a non-empty list. ranx JIT-compiles its numba kernels on first use
(minutes on a loaded 2-core machine, then cached on disk): one module fixture warms them.
"""

import numpy as np
import pytest

from bench.metrics.engine import evaluate_arrays

from .metric_cases import as_dicts, random_case

KS = (5, 10, 100)
TOL = 1e-9


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
