"""RecBole models through the real CLI (issue 3 acceptance): a sweep over models with a shared
parameter override, logged lists equal to trec_eval, same seed -> identical per-user results.
A small synthetic dataset: what is tested is the path through RecBole, the CLI and the store,
not MovieLens (RecBole's own evaluator against the harness's metrics is
``tests/models/test_recbole_peer.py``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from .conftest import SMALL_DATA, bench, runs
from .test_run_e2e import artifact

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DATA = SMALL_DATA


def test_recbole_sweep_logs_lists_equal_to_trec_eval_and_repeats_exactly(tmp_path):
    import pytrec_eval

    from bench.splits import load_split

    args = [
        "run",
        "-m",
        "model=bpr,lightgcn,sasrec",
        *DATA,
        "model.params.epochs=1",
        "latency.n_requests=10",
    ]
    bench(*args, cwd=tmp_path)
    bench(
        "run",
        "-m",
        "model=bpr,sasrec",
        *DATA,
        "model.params.epochs=1",
        "latency.n_requests=10",
        "tracking.force=true",
        cwd=tmp_path,
    )
    by_model: dict[str, list] = {}
    for r in runs(tmp_path):
        assert r.info.status == "FINISHED"
        by_model.setdefault(r.data.tags["bench.model"], []).append(r)
    assert sorted(by_model) == ["bpr", "lightgcn", "sasrec"]
    for name in ("bpr", "sasrec"):
        digests = {
            hashlib.sha256(Path(artifact(tmp_path, r, "per_user.parquet")).read_bytes()).hexdigest()
            for r in by_model[name]
        }
        assert len(by_model[name]) == 2 and len(digests) == 1, name
    run = by_model["lightgcn"][0]
    split = load_split(run.data.tags["bench.split_dir"])
    warm = set(split.train["user_id"])  # the headline population: test users with train data
    qrels: dict = {}
    for u, i in split.test.select("user_id", "item_id").iter_rows():
        if u in warm:
            qrels.setdefault(u, {})[i] = 1
    for runs_ in by_model.values():
        r = runs_[0]
        assert r.data.metrics["n_users_evaluated"] == len(qrels)
        assert r.data.metrics["n_users_without_recommendations/segment/warm"] == 0
        assert r.data.metrics["valid/ndcg_at_10"] > 0  # validation metrics of RecBole models
        recs = pl.read_parquet(artifact(tmp_path, r, "recommendations.parquet"))
        lists: dict = {u: {} for u in qrels}
        for u, rank, i in recs.select("user_id", "rank", "item_id").iter_rows():
            if u in qrels:  # the logged lists hold the cold users too
                lists[u][i] = float(100 - rank)
        ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_10"}).evaluate(lists)
        for theirs, ours in (("ndcg_cut_10", "ndcg_at_10"), ("recall_10", "recall_at_10")):
            ref = np.mean([ev[u][theirs] for u in qrels])
            assert abs(r.data.metrics[ours] - ref) < 1e-9
