"""Differential tests: the harness's metrics against pytrec_eval and RecBole (1e-9).

Random tie-free inputs: distinct items per list, strictly decreasing scores. Notes on peers:
- trec_eval ``P_k`` divides by k even for a list shorter than k, like the contract;
  ``recip_rank`` is not cut, so it is run on the top-k list; ``success_k`` is the hit rate and
  only exists for k = 1, 5, 10.
- RecBole's MAP divides by min(|R|, k) instead of |R|: compared after rescaling.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from bench.metrics import beyond
from bench.metrics.engine import evaluate_arrays

from .metric_cases import as_dicts, random_case

KS = (5, 10, 100)
TOL = 1e-9


@pytest.fixture(scope="module")
def case():
    rec, truth = random_case(7)
    res = evaluate_arrays(np.arange(truth.shape[0]), rec, truth, KS)
    return rec, truth, res


def test_against_pytrec_eval(case):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rec, truth, res = case
    for k in KS:
        qrels, run = as_dicts(rec, truth, k)
        measures = {f"P_{k}", f"recall_{k}", f"ndcg_cut_{k}", f"map_cut_{k}", "recip_rank"}
        if k in (5, 10):
            measures.add("success")
        out = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
        ref = {
            "precision": f"P_{k}",
            "recall": f"recall_{k}",
            "ndcg": f"ndcg_cut_{k}",
            "map": f"map_cut_{k}",
            "mrr": "recip_rank",
        }
        if k in (5, 10):
            ref["hit_rate"] = f"success_{k}"
        for ours, theirs in ref.items():
            want = np.array([out[f"q{u}"][theirs] for u in range(truth.shape[0])])
            np.testing.assert_allclose(
                res.per_user[f"{ours}_at_{k}"], want, atol=TOL, rtol=0, err_msg=f"{ours}@{k}"
            )


@pytest.fixture(scope="module")
def recbole_metrics():
    pytest.importorskip("recbole")
    np.float_ = np.float64
    np.float = float
    np.complex_ = np.complex128
    np.unicode_ = np.str_
    from recbole.evaluator import metrics

    return metrics


def test_accuracy_against_recbole(case, recbole_metrics):
    m = recbole_metrics
    rec, truth, res = case
    full = np.all(rec >= 0, axis=1)  # RecBole's topk lists are never short
    r, t = rec[full], truth[np.flatnonzero(full)]
    pos = np.zeros(r.shape, dtype=bool)
    for u in range(len(r)):
        pos[u] = np.isin(r[u], t[u].indices)
    n_rel = np.diff(t.indptr)
    cfg = {"topk": list(KS), "metric_decimal_place": 12}
    got = {
        "recall": m.Recall(cfg).metric_info(pos, n_rel),
        "ndcg": m.NDCG(cfg).metric_info(pos, n_rel),
        "precision": m.Precision(cfg).metric_info(pos),
        "hit_rate": m.Hit(cfg).metric_info(pos),
        "mrr": m.MRR(cfg).metric_info(pos),
        "map": m.MAP(cfg).metric_info(pos, n_rel),
    }
    for name, values in got.items():
        for k in KS:
            ours = res.per_user[f"{name}_at_{k}"][full]
            if name == "map":  # RecBole: / min(|R|, k); trec_eval/ranx/contract: / |R|
                ours = ours * n_rel / np.minimum(n_rel, k)
            np.testing.assert_allclose(ours, values[:, k - 1], atol=TOL, rtol=0, err_msg=name)


def test_catalog_metrics_against_recbole(recbole_metrics):
    """ItemCoverage, GiniIndex, AveragePopularity, TailPercentage where definitions agree:
    every item is in train (C = all items), lists are full, RecBole's item count = pop."""
    m = recbole_metrics
    rng = np.random.default_rng(3)
    n_users, n_items, width = 200, 150, 30
    train = sp.random(n_users, n_items, density=0.1, random_state=4, format="csr")
    train[np.arange(n_items) % n_users, np.arange(n_items)] = 1.0  # every item in C
    train.data[:] = 1.0
    p = rng.power(0.3, n_items)
    rec = np.stack(
        [rng.choice(n_items, width, replace=False, p=p / p.sum()) for _ in range(n_users)]
    )
    truth = sp.random(n_users, n_items, density=0.05, random_state=5, format="csr")
    truth[np.arange(n_users), 0] = 1.0
    res = evaluate_arrays(np.arange(n_users), rec, truth, (10, 30), train=train)
    pop = beyond.popularity(train).pop[:-1]
    counts = {i: int(c) for i, c in enumerate(pop)}
    for k in (10, 30):
        cfg = {"topk": [k], "metric_decimal_place": 12, "tail_ratio": 0.1}
        cov = m.ItemCoverage(cfg).get_coverage(rec[:, :k], n_items)
        gini = m.GiniIndex(cfg).get_gini(rec[:, :k], n_items)
        ap_cls = m.AveragePopularity(cfg)
        arp = ap_cls.metric_info(ap_cls.get_pop(rec, counts).astype(float))[:, k - 1]
        tp_cls = m.TailPercentage(cfg)
        tail = tp_cls.metric_info(tp_cls.get_tail(rec, counts).astype(float))[:, k - 1]
        assert res.summary[f"coverage_at_{k}"] == pytest.approx(cov, abs=TOL)
        assert res.summary[f"gini_at_{k}"] == pytest.approx(gini, abs=TOL)
        np.testing.assert_allclose(res.per_user[f"arp_at_{k}"], arp, atol=TOL, rtol=0)
        np.testing.assert_allclose(res.per_user[f"tail_percentage_at_{k}"], tail, atol=TOL, rtol=0)
