"""Peer cross-check: RecBole's own full-ranking evaluator equals the harness's metrics.

Same fitted BPR, same tiny split. RecBole: ``Trainer.evaluate`` on a test file holding the
split's test interactions, ``topk=[10]``, Precision/Recall/NDCG/MRR/Hit, 12 decimals; it masks
each user's train and valid items. Harness: ``model.score`` -> ``bench.ranking.topk`` (train +
valid masked, ties by item index) -> ``bench.metrics.engine.evaluate_arrays``. The two must agree
to 1e-6 (they do to float rounding; RecBole rounds to ``metric_decimal_place``).

MAP is left out on purpose: RecBole divides by min(|R|, k), the contract by |R| (trec_eval);
docs/recbole.md explains the difference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from baselines.recbole import compat
from baselines.recbole.adapter import BPR
from bench.data.indexing import to_csr
from bench.metrics.engine import evaluate_arrays
from bench.models.base import FitContext
from bench.ranking import topk
from bench.testing import tiny_split

PAIRS = {
    "precision@10": "precision_at_10",
    "recall@10": "recall_at_10",
    "ndcg@10": "ndcg_at_10",
    "mrr@10": "mrr_at_10",
    "hit@10": "hit_rate_at_10",
}
EVALUATION = {
    "metrics": ["Precision", "Recall", "NDCG", "MRR", "Hit"],
    "topk": [10],
    "metric_decimal_place": 12,
    "eval_batch_size": 4096,
}


def local_metrics(rec: np.ndarray, truth: list[set[int]], k: int = 10) -> dict[str, float]:
    """The contract's formulas, written out (a second, independent harness-side reference)."""
    out = {key: [] for key in PAIRS.values()}
    for row, rel in zip(rec, truth, strict=True):
        hits = np.array([int(i) in rel for i in row[:k]], dtype=float)
        ideal = sum(1 / np.log2(i + 2) for i in range(min(len(rel), k)))
        first = np.flatnonzero(hits)
        out["precision_at_10"].append(hits.sum() / k)
        out["recall_at_10"].append(hits.sum() / len(rel))
        out["ndcg_at_10"].append(float((hits / np.log2(np.arange(2, k + 2))).sum() / ideal))
        out["mrr_at_10"].append(1 / (first[0] + 1) if len(first) else 0.0)
        out["hit_rate_at_10"].append(float(hits.any()))
    return {key: float(np.mean(v)) for key, v in out.items()}


@pytest.mark.integration
def test_recbole_evaluator_equals_harness_metrics(tmp_path: Path) -> None:
    split = tiny_split(n_users=80, n_events=4000)
    md = split.model_data
    model = BPR.from_params({"epochs": 3, "learning_rate": 0.01})
    ctx = FitContext(seed=0, workdir=tmp_path / "fit")
    model.fit(md, ctx)
    item_map = model._item_to_rb.copy()

    # RecBole's universe is train: test rows with a user or item outside it are never scored
    # by RecBole, so both sides use the same filtered test set
    users_tr = md.train["user_idx"].unique().to_list()
    items_tr = md.train["item_idx"].unique().to_list()
    test = split.test.filter(
        pl.col("user_idx").is_in(users_tr) & pl.col("item_idx").is_in(items_tr)
    )
    assert test.height > 50

    from recbole.utils import get_trainer

    ctx_eval = FitContext(seed=0, workdir=tmp_path / "eval")
    with compat.recbole_session(), compat.seeded(0, model.config.threads):
        config, _, _, _, test_data = model.build(md, ctx_eval, test=test, evaluation=EVALUATION)
        np.testing.assert_array_equal(model._item_to_rb, item_map)  # same id mapping as fit
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model.model)
        theirs = trainer.evaluate(test_data, **compat.NO_BEST_MODEL_LOAD)

    truth = to_csr(test, md.n_users, md.n_items)
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    scores = model.score(users, md.test_history)
    rec, _ = topk(scores, 10, md.test_history.matrix[users])
    ours = evaluate_arrays(users, rec, truth, ks=(10,)).summary
    local = local_metrics(rec, [set(truth[u].indices.tolist()) for u in users])
    print({k: (theirs[r], ours[k]) for r, k in PAIRS.items()})
    for rb_key, key in PAIRS.items():
        assert theirs[rb_key] == pytest.approx(ours[key], abs=1e-6), rb_key
        assert local[key] == pytest.approx(ours[key], abs=1e-12), key
    assert ours["ndcg_at_10"] > 0  # a non-trivial comparison
