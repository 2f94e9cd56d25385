"""End to end: the real CLI, real MLflow store, real split of ML-100K (shipped in recbole)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from .conftest import bench, runs, store

pytestmark = [pytest.mark.integration]

REQUIRED_TAGS = [
    "bench.dataset",
    "bench.split",
    "bench.split_sha256",
    "bench.split_dir",
    "bench.model",
    "bench.seed",
    "bench.run_key",
    "bench.version",
    "bench.git_sha",
    "bench.metric_definitions",
    "bench.device",
]
REQUIRED_METRICS = [
    f"{m}_at_{k}"
    for m in ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")
    for k in (5, 10, 20)
] + [
    "fit_seconds",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "throughput_users_per_s",
    "peak_memory_mb",
    "n_parameters",
    "n_users_evaluated",
    "n_users_skipped",
    "audit_leak_ratio",
]
ARTIFACTS = ["config.yaml", "recommendations.parquet", "per_user.parquet", "environment.json"]


def artifact(cwd, run, name):
    from mlflow.artifacts import download_artifacts

    return download_artifacts(
        run_id=run.info.run_id,
        artifact_path=name,
        tracking_uri=store(cwd).uri,
        dst_path=str(cwd / "dl" / run.info.run_id),
    )


@pytest.fixture(scope="module")
def pop_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("e2e")
    bench("run", "model=pop", "dataset=ml-100k", cwd=cwd, fresh=True)  # the run smoke test
    (run,) = runs(cwd)
    return cwd, run


def test_run_logs_the_contract(pop_run):
    cwd, run = pop_run
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "pop-s0-ml-100k-temporal-global"
    for t in REQUIRED_TAGS:
        assert run.data.tags.get(t), t
    for m in REQUIRED_METRICS:
        assert m in run.data.metrics, m
    assert run.data.params["model.name"] == "pop"
    assert run.data.params["split.exclude_seen"] == "True"
    names = {a.path for a in store(cwd).client.list_artifacts(run.info.run_id)}
    assert set(ARTIFACTS) <= names
    env = json.loads(Path(artifact(cwd, run, "environment.json")).read_text())
    assert "python" in json.dumps(env).lower()
    assert run.data.metrics["audit_leak_ratio"] == 0.0


def test_run_logs_seconds_and_peak_rss_per_stage(pop_run):
    _, run = pop_run
    m = run.data.metrics
    for stage in ("split", "index", "fit", "scoring", "latency", "metrics", "artifacts"):
        assert m[f"stage_seconds/{stage}"] >= 0
        assert m[f"stage_peak_rss_mb/{stage}"] > 0
    assert m["stage_seconds/fit"] == m["fit_seconds"]


def test_lists_respect_exclusions_and_every_test_user_is_evaluated(pop_run):
    cwd, run = pop_run
    from bench.splits import load_split

    split = load_split(run.data.tags["bench.split_dir"])
    assert split.sha256 == run.data.tags["bench.split_sha256"]
    recs = pl.read_parquet(artifact(cwd, run, "recommendations.parquet"))
    assert recs.schema == pl.Schema(
        {"user_id": pl.Utf8, "rank": pl.Int64, "item_id": pl.Utf8, "score": pl.Float64}
    )
    seen = pl.concat([split.train, split.valid]).select("user_id", "item_id")
    assert recs.join(seen, on=["user_id", "item_id"], how="semi").height == 0
    per_user = pl.read_parquet(artifact(cwd, run, "per_user.parquet"))
    test_users = set(split.test["user_id"].unique())
    assert set(per_user["user_id"]) == test_users == set(recs["user_id"].unique())
    # the headline population (warm: users with train interactions) plus the cold segment
    m = run.data.metrics
    warm = set(split.train["user_id"].unique()) & test_users
    assert set(per_user.filter(pl.col("segment") == "warm")["user_id"]) == warm
    assert m["n_users_evaluated"] == m["n_users/segment/warm"] == len(warm)
    assert m["n_users/segment/warm"] + m["n_users/segment/cold"] == len(test_users)
    assert run.data.tags["bench.eval_users"] == "warm"
    assert recs.group_by("user_id").len()["len"].max() == 20


@pytest.mark.parametrize("segment", ["warm", "cold"])
def test_logged_accuracy_equals_trec_eval_and_ranx_on_the_logged_lists(pop_run, segment):
    """The headline keys (warm users) and the cold segment's keys equal trec_eval and ranx on
    that segment's logged lists."""
    cwd, run = pop_run
    import pytrec_eval
    from ranx import Qrels, Run, evaluate

    from bench.splits import load_split

    split = load_split(run.data.tags["bench.split_dir"])
    recs = pl.read_parquet(artifact(cwd, run, "recommendations.parquet"))
    per_user = pl.read_parquet(artifact(cwd, run, "per_user.parquet"))
    users = set(per_user.filter(pl.col("segment") == segment)["user_id"])
    assert users
    qrels = {}
    for u, i in split.test.select("user_id", "item_id").iter_rows():
        if u in users:
            qrels.setdefault(u, {})[i] = 1
    runmap = {}
    for u, r, i in recs.select("user_id", "rank", "item_id").iter_rows():
        if u in users:
            runmap.setdefault(u, {})[i] = float(100 - r)  # tie-free scores in logged order
    m = run.data.metrics
    suffix = "" if segment == "warm" else "/segment/cold"
    for k in (5, 10, 20):
        ev = pytrec_eval.RelevanceEvaluator(qrels, {f"P_{k}", f"recall_{k}", f"ndcg_cut_{k}"})
        res = ev.evaluate(runmap)
        for ours, theirs in (("precision", "P"), ("recall", "recall"), ("ndcg", "ndcg_cut")):
            ref = np.mean([res[u][f"{theirs}_{k}"] for u in qrels])
            assert abs(m[f"{ours}_at_{k}{suffix}"] - ref) < 1e-9, (ours, k)
            assert abs(m[f"{ours}_at_{k}/segment/{segment}"] - ref) < 1e-9, (ours, k)
        r = evaluate(Qrels(qrels), Run(runmap), [f"map@{k}", f"mrr@{k}", f"hit_rate@{k}"])
        for ours, theirs in (("map", "map"), ("mrr", "mrr"), ("hit_rate", "hit_rate")):
            assert abs(m[f"{ours}_at_{k}{suffix}"] - r[f"{theirs}@{k}"]) < 1e-9, (ours, k)


def test_rerun_is_skipped_and_forced_rerun_is_identical(pop_run):
    cwd, run = pop_run
    out = bench("run", "model=pop", "dataset=ml-100k", cwd=cwd)
    assert "skip pop-s0-ml-100k-temporal-global" in out.stderr
    assert len(runs(cwd)) == 1
    bench("run", "model=pop", "dataset=ml-100k", "tracking.force=true", cwd=cwd)
    a, b = sorted(runs(cwd, "FINISHED"), key=lambda r: r.info.start_time)
    assert a.data.tags["bench.run_key"] == b.data.tags["bench.run_key"]
    fa, fb = (Path(artifact(cwd, r, "per_user.parquet")).read_bytes() for r in (a, b))
    assert hashlib.sha256(fa).digest() == hashlib.sha256(fb).digest()


def test_same_config_in_fresh_stores_gives_identical_per_user(tmp_path):
    digests = []
    for name in ("a", "b"):
        cwd = tmp_path / name
        cwd.mkdir()
        bench("run", "model=ease", "dataset=synthetic", cwd=cwd)
        (run,) = runs(cwd)
        data = Path(artifact(cwd, run, "per_user.parquet")).read_bytes()
        digests.append(hashlib.sha256(data).hexdigest())
    assert digests[0] == digests[1]


def test_bench_evaluate_on_the_logged_lists_reproduces_the_logged_metrics(pop_run):
    cwd, run = pop_run
    recs = artifact(cwd, run, "recommendations.parquet")
    out = bench(
        "evaluate",
        "--split",
        run.data.tags["bench.split_dir"],
        "--recommendations",
        recs,
        "--ks",
        "5,10,20",
        "--format",
        "json",
        cwd=cwd,
        fresh=True,  # the evaluate smoke test: a new interpreter
    )
    ev = json.loads(out.stdout)
    logged = run.data.metrics
    common = set(ev) & set(logged)
    assert {
        "ndcg_at_10",
        "coverage_at_10",
        "ild_at_10",
        "ndcg_at_10/age/25-34",
        "ndcg_at_10/gender/gap",
        "pop_reo_at_10",
    } <= common
    assert [k for k in common if ev[k] != logged[k]] == []


def test_quickstart_metric_settings_log_every_list_metric_of_the_catalog(tmp_path):
    """With the quickstart's metrics config (item embeddings from the bundled encoder: a real
    transformers forward pass), one run logs every accuracy, beyond-accuracy and fairness
    metric of the catalog at every k, user-group breakdowns included, and per_user.parquet
    carries every per-user one."""
    import yaml

    from bench.metrics import catalog

    root = Path(__file__).parents[2]
    quick = yaml.safe_load((root / "conf" / "experiment" / "quickstart.yaml").read_text())
    spec = quick["metrics"]["item_embeddings"]
    value = f"{{encoder: '{spec['encoder']}', template: '{spec['template']}'}}"
    override = f"metrics.item_embeddings={value}"
    bench("run", "model=itemknn", "dataset=synthetic", override, cwd=tmp_path)
    (run,) = runs(tmp_path)
    logged = run.data.metrics
    per_user = pl.read_parquet(artifact(tmp_path, run, "per_user.parquet"))
    missing, not_per_user = [], []
    for s in catalog.specs():
        if s.group not in ("accuracy", "beyond-accuracy", "fairness"):
            continue
        for k in (5, 10, 20):
            if s.key(k) not in logged:
                missing.append(s.key(k))
            if s.per_user and s.key(k) not in per_user.columns:
                not_per_user.append(s.key(k))
            if s.breakdown:
                for attr in ("gender", "age", "occupation", "activity"):
                    if f"{s.key(k)}/{attr}/gap" not in logged:
                        missing.append(f"{s.key(k)}/{attr}/gap")
    assert missing == [] and not_per_user == []
    assert 0.0 < logged["ild_emb_at_10"] < 2.0 and 0.0 < logged["epc_at_10"] < 1.0
    assert per_user["ild_emb_at_10"].null_count() == 0
