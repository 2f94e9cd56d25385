"""Who is evaluated, against what: populations, segments, valid/ metrics, the refit on
train+valid and sampled candidates, end to end in-process (real Hydra composition, real
MLflow store, real models) on a small synthetic dataset with late-arriving (cold) users."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from bench import tracking
from bench.metrics import evaluate
from bench.report.leaderboard import leaderboard_main
from bench.runner import run_experiment
from bench.splits import load_split

from .conftest import SMALL_DATA

pytestmark = [pytest.mark.integration]

CONF = Path(__file__).resolve().parents[2] / "conf"
DATA = [
    *SMALL_DATA,
    "dataset.params.late_user_fraction=0.15",
    "latency=disabled",
    "eval.ks=[5,10]",
]


def config(root: Path, *overrides: str) -> dict:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*DATA, f"paths.root={root}", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def run(root: Path, *overrides: str):
    """One run in-process into ``root``'s store; returns its MLflow run."""
    store = tracking.Store(f"sqlite:///{root}/mlflow.db")
    outcome = run_experiment(config(root, *overrides), store=store)
    return store.client.get_run(outcome.run_id)


def artifact(root: Path, r, name: str) -> pl.DataFrame:
    from mlflow.artifacts import download_artifacts

    path = download_artifacts(run_id=r.info.run_id, artifact_path=name,
                              tracking_uri=f"sqlite:///{root}/mlflow.db",
                              dst_path=str(root / "dl" / r.info.run_id))
    return pl.read_parquet(path)


@pytest.fixture(scope="module")
def store_root(tmp_path_factory):
    return tmp_path_factory.mktemp("protocol")


@pytest.fixture(scope="module")
def warm_runs(store_root):
    return {m: run(store_root, f"model={m}") for m in ("pop", "itemknn", "random")}


def test_segments_partition_the_test_users_and_the_headline_is_warm(store_root, warm_runs):
    r = warm_runs["itemknn"]
    m, tags = r.data.metrics, r.data.tags
    split = load_split(tags["bench.split_dir"])
    test_users = set(split.test["user_id"])
    warm = test_users & set(split.train["user_id"])
    assert 0 < len(warm) < len(test_users)  # the dataset has both segments
    assert m["n_users/segment/warm"] == len(warm) == m["n_users_evaluated"]
    assert m["n_users/segment/warm"] + m["n_users/segment/cold"] == len(test_users)
    assert m["ndcg_at_10"] == m["ndcg_at_10/segment/warm"]
    assert m["n_users_without_recommendations/segment/warm"] == 0
    assert (tags["bench.eval_users"], tags["bench.fit_data"], tags["bench.candidates"]) == (
        "warm", "train", "full")
    # the MLflow runs table: model and seed first in the name, the split in the Dataset column
    assert r.info.run_name == "itemknn-s0-synthetic-temporal-global"
    (inp,) = r.inputs.dataset_inputs
    assert inp.dataset.name == "synthetic/temporal-global"
    assert inp.dataset.digest == tags["bench.split_sha256"][:12]
    per_user = artifact(store_root, r, "per_user.parquet")
    assert set(per_user["user_id"]) == test_users
    assert set(per_user.filter(pl.col("segment") == "warm")["user_id"]) == warm
    # the headline mean is the mean of the warm rows of per_user.parquet
    warm_rows = per_user.filter(pl.col("segment") == "warm")
    assert abs(warm_rows["ndcg_at_10"].mean() - m["ndcg_at_10"]) < 1e-12
    cold_rows = per_user.filter(pl.col("segment") == "cold")
    assert abs(cold_rows["recall_at_10"].mean() - m["recall_at_10/segment/cold"]) < 1e-12


def test_history_models_beat_random_on_warm_users(warm_runs):
    m = {k: r.data.metrics for k, r in warm_runs.items()}
    assert m["itemknn"]["ndcg_at_10"] > 3 * m["random"]["ndcg_at_10"]
    assert m["itemknn"]["n_users_without_recommendations/segment/warm"] == 0


def test_all_population_equals_the_old_definition(store_root, warm_runs):
    """eval.users=all: the headline equals evaluating every test user's logged list (metric
    definitions v1), and the warm/cold segment keys equal the warm population's run."""
    r = run(store_root, "model=itemknn", "eval.users=all")
    m = r.data.metrics
    assert r.data.tags["bench.eval_users"] == "all"
    split = load_split(r.data.tags["bench.split_dir"])
    recs = artifact(store_root, r, "recommendations.parquet")
    ev = evaluate(recs, split.test, train=split.train, items=split.items, users=split.users,
                  ks=(5, 10), seen=pl.concat([split.train, split.valid]))
    for key in ("ndcg_at_10", "recall_at_5", "map_at_10", "coverage_at_10", "novelty_at_10",
                "n_users_evaluated"):
        assert abs(m[key] - ev.summary[key]) < 1e-12, key
    warm = warm_runs["itemknn"].data.metrics
    assert m["n_users_evaluated"] == warm["n_users/segment/warm"] + warm["n_users/segment/cold"]
    for key in ("ndcg_at_10/segment/warm", "ndcg_at_10/segment/cold", "n_users/segment/cold"):
        assert m[key] == warm[key], key


def test_cold_population_headline(store_root, warm_runs):
    r = run(store_root, "model=pop", "eval.users=cold")
    m, warm = r.data.metrics, warm_runs["pop"].data.metrics
    assert m["ndcg_at_10"] == warm["ndcg_at_10/segment/cold"] == m["ndcg_at_10/segment/cold"]
    assert m["n_users_evaluated"] == warm["n_users/segment/cold"]


def test_valid_metrics_are_logged_and_no_test_leaks_into_them(warm_runs):
    for r in warm_runs.values():
        m = r.data.metrics
        for k in (5, 10):
            for name in ("precision", "recall", "ndcg", "map", "mrr", "hit_rate"):
                assert f"valid/{name}_at_{k}" in m, (r.data.tags["bench.model"], name)
        assert m["valid/n_users_evaluated"] > 0
    assert (warm_runs["itemknn"].data.metrics["valid/ndcg_at_10"]
            != warm_runs["itemknn"].data.metrics["ndcg_at_10"])


def test_leaderboard_and_report_state_the_population(store_root, warm_runs, capsys):
    capsys.readouterr()
    uri = ["--tracking-uri", f"sqlite:///{store_root}/mlflow.db"]
    assert leaderboard_main([*uri, "--eval-users", "warm"]) == 0
    out = capsys.readouterr().out
    m = warm_runs["pop"].data.metrics
    n_warm, n_cold = int(m["n_users/segment/warm"]), int(m["n_users/segment/cold"])
    assert f"over warm users (n = {n_warm}; {n_cold} cold users not evaluated)" in out
    assert "values of 1 seed (no ±)" in out and "±" not in out.split("\n", 2)[2]


def test_leaderboard_refuses_to_mix_populations(store_root, warm_runs, capsys):
    run(store_root, "model=pop", "eval.users=all")
    capsys.readouterr()
    uri = ["--tracking-uri", f"sqlite:///{store_root}/mlflow.db"]
    assert leaderboard_main(uri) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "refusing to compare runs with different evaluated populations" in err
    assert "--eval-users" in err


@pytest.fixture(scope="module")
def sampled_root(tmp_path_factory):
    return tmp_path_factory.mktemp("sampled")


@pytest.mark.parametrize("negatives", ["uniform", "popularity"])
def test_sampled_candidates_are_frozen_and_shared_by_every_model(sampled_root, negatives):
    opts = ["eval.candidates=sampled", "eval.n_negatives=20", f"eval.negatives={negatives}"]
    runs = {m: run(sampled_root, f"model={m}", *opts) for m in ("pop", "itemknn")}
    sets = {m: artifact(sampled_root, r, "candidates.parquet") for m, r in runs.items()}
    assert sets["pop"].equals(sets["itemknn"])  # one frozen set per split
    r = runs["itemknn"]
    assert r.data.tags["bench.candidates"] == f"sampled-20-{negatives}"
    split = load_split(r.data.tags["bench.split_dir"])
    frozen = pl.read_parquet(
        Path(r.data.tags["bench.split_dir"]) / "candidates" / f"test-sampled-20-{negatives}.parquet"
    )
    assert frozen.equals(sets["pop"])
    cands = sets["pop"]
    # every test user's set: its test items plus 20 items it never interacted with
    seen = pl.concat([split.train, split.valid]).select("user_id", "item_id")
    negs = cands.join(split.test.select("user_id", "item_id"), on=["user_id", "item_id"],
                      how="anti")
    assert negs.join(seen, on=["user_id", "item_id"], how="semi").height == 0
    catalog = set(split.items["item_id"]) | set(seen["item_id"]) | set(split.test["item_id"])
    known = pl.concat([seen, split.test.select("user_id", "item_id")]).unique()
    room = {u: len(catalog) - n for u, n in known.group_by("user_id").len().iter_rows()}
    got = dict(negs.group_by("user_id").len().iter_rows())
    assert all(got.get(u, 0) == min(20, room[u]) for u in set(split.test["user_id"]))
    assert 20 in got.values()
    assert set(cands["user_id"]) == set(split.test["user_id"])
    for m, run_ in runs.items():  # every model ranks within the set
        recs = artifact(sampled_root, run_, "recommendations.parquet")
        outside = recs.join(cands, on=["user_id", "item_id"], how="anti")
        assert outside.height == 0, m
        assert run_.data.metrics["valid/ndcg_at_10"] > 0


def test_leaderboard_refuses_to_mix_sampled_and_full(sampled_root, capsys):
    run(sampled_root, "model=pop")  # full ranking, same split
    capsys.readouterr()
    uri = ["--tracking-uri", f"sqlite:///{sampled_root}/mlflow.db"]
    assert leaderboard_main(uri) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "different candidate protocols" in err
    assert "not comparable to full ranking" in err and "--candidates" in err
    assert leaderboard_main([*uri, "--candidates", "sampled-20-uniform"]) == 0
    out = capsys.readouterr().out
    assert "20 uniform-sampled negatives" in out and "Krichene & Rendle 2020" in out


def test_refit_on_train_and_valid(tmp_path):
    """eval.fit_data=train+valid: the refitted BPR trains the epochs early stopping chose,
    users with only valid history become warm, and the leaderboard keeps the two apart."""
    base = ["model=bpr", "model.params.epochs=4", "model.params.stopping_step=1"]
    plain = run(tmp_path, *base)
    refit = run(tmp_path, *base, "eval.fit_data=train+valid")
    tags, m = refit.data.tags, refit.data.metrics
    assert tags["bench.fit_data"] == "train+valid"
    chosen = int(plain.data.metrics["recbole_best_epoch"]) + 1
    assert tags["bench.refit_params"] == f'{{"epochs": {chosen}}}'
    assert m["recbole_epochs_trained"] == chosen  # no early stopping in the refit
    split = load_split(tags["bench.split_dir"])
    test_users = set(split.test["user_id"])
    fit_users = set(split.train["user_id"]) | set(split.valid["user_id"])
    assert m["n_users/segment/warm"] == len(test_users & fit_users)
    assert m["n_users/segment/warm"] >= plain.data.metrics["n_users/segment/warm"]
    assert m["n_users_without_recommendations/segment/warm"] == 0
    assert m["valid/ndcg_at_10"] == plain.data.metrics["valid/ndcg_at_10"]  # the train fit's
    assert leaderboard_main(["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]) == 2


def test_valid_metrics_of_an_llm_model(tmp_path):
    r = run(tmp_path, "model=llm-embed")
    m = r.data.metrics
    assert m["valid/ndcg_at_10"] >= 0 and m["valid/n_users_evaluated"] > 0
    assert np.isfinite(m["ndcg_at_10"])
