"""Leaderboards and reports keep model configurations apart, cover one sweep when asked, and
say which --dataset/--split value matched nothing. All against REAL MLflow SQLite stores: one
logged per the contract by hand (fast), and one made by the real ``bench run``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from .conftest import bench, fixture_store, store
from .test_report_mlflow import SHA, SHA2, per_user, run_cli, summary

pytestmark = pytest.mark.integration

mlflow = pytest.importorskip("mlflow")

DATASET, SPLIT = "toy", "temporal-global"
T0 = 1_700_000_000_000


def ck(tag: str) -> str:
    """A fake 64-hex config key."""
    return (tag.encode().hex() + "0" * 64)[:64]


def log(client, exp_id: str, tmp: Path, model: str, seed: int, offset: float, *, start: int,
        config_key: str | None = None, params: dict[str, str] | None = None, sha: str = SHA,
        parent: str | None = None, dataset: str = DATASET, split: str = SPLIT) -> str:
    """One FINISHED evaluation run with tags, params, metrics and per_user.parquet."""
    tags = {
        "bench.dataset": dataset, "bench.split": split, "bench.split_sha256": sha,
        "bench.model": model, "bench.seed": str(seed), "bench.run_key": f"{model}-{seed}-{start}",
        "bench.version": "0.1.0", "bench.git_sha": "0" * 40, "bench.metric_definitions": "1",
        "bench.device": "cpu", "bench.split_protocol": "temporal-global",
    }
    if config_key:
        tags["bench.config_key"] = config_key
    if parent:
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(exp_id, run_name=f"{model}-s{seed}", tags=tags, start_time=start)
    rid = run.info.run_id
    from mlflow.entities import Metric, Param

    frame = per_user(model + str(config_key), seed, offset)
    all_params = {"model.name": model, "seed": str(seed), **(params or {})}
    client.log_batch(
        rid,
        metrics=[Metric(k, v, T0, 0) for k, v in summary(frame, model, seed, offset).items()],
        params=[Param(k, v) for k, v in all_params.items()],
    )
    d = tmp / rid
    d.mkdir()
    frame.write_parquet(d / "per_user.parquet")
    client.log_artifact(rid, str(d / "per_user.parquet"))
    client.set_terminated(rid, "FINISHED")
    return rid


@pytest.fixture(scope="module")
def st(tmp_path_factory):
    root = tmp_path_factory.mktemp("configs")
    uri, client, staging, exps = fixture_store(root, ("configs", "sweep"))
    e, t = exps["configs"], iter(range(T0, T0 + 10_000_000, 1000))
    ids: dict[str, list[str]] = {}

    def add(row: str, *args, **kw) -> str:
        rid = log(client, e, staging, *args, start=next(t), **kw)
        ids.setdefault(row, []).append(rid)
        return rid

    add("pop", "pop", 0, 0.10, config_key=ck("pop"))
    old = log(client, e, staging, "itemknn", 0, 0.5, start=next(t), config_key=ck("k50"),
              params={"model.params.k": "50", "eval.batch": "1"})  # re-run below: ignored
    for s in (0, 1):
        add("itemknn (k=50)", "itemknn", s, 0.20, config_key=ck("k50"),
            params={"model.params.k": "50", "eval.batch": "1"})
    add("itemknn (k=100)", "itemknn", 0, 0.25, config_key=ck("k100"),
        params={"model.params.k": "100", "eval.batch": "2"})
    add("bpr (epochs=5)", "bpr", 0, 0.12, config_key=ck("e5"), params={"model.params.epochs": "5"})
    add("bpr (epochs=50)", "bpr", 11, 0.22, config_key=ck("e50"),
        params={"model.params.epochs": "50"})
    add("recbole (model=NGCF)", "recbole", 0, 0.18, config_key=ck("ngcf"),
        params={"model.params.model": "NGCF"})
    add("recbole (model=Caser)", "recbole", 0, 0.16, config_key=ck("caser"),
        params={"model.params.model": "Caser"})
    # two configs of ease whose logged params do not differ: the config_key prefix tells them
    add(f"ease (config {ck('ea')[:8]})", "ease", 0, 0.3, config_key=ck("ea"))
    add(f"ease (config {ck('eb')[:8]})", "ease", 0, 0.31, config_key=ck("eb"))

    # a sweep: parent P with children pop + itemknn, and a reused run made earlier (standalone);
    # unrelated runs in the same dataset/split: another config, and one on another split sha256
    s = exps["sweep"]
    reused = log(client, s, staging, "ease", 0, 0.3, start=next(t), config_key=ck("ea"))
    log(client, s, staging, "itemknn", 0, 0.25, start=next(t), config_key=ck("k100"),
        params={"model.params.k": "100"})
    parent = client.create_run(s, run_name="sweep-x", start_time=next(t),
                               tags={"bench.sweep": "parent", "bench.sweep_id": "x"}).info.run_id
    children = [log(client, s, staging, m, 0, o, start=next(t), config_key=ck(m),
                    params={"model.params.k": "50"} if m == "itemknn" else {}, parent=parent)
                for m, o in (("pop", 0.1), ("itemknn", 0.2))]
    client.set_tag(parent, f"bench.reused.{reused}", reused)  # as a reusing job records it
    client.set_terminated(parent, "FINISHED")
    log(client, s, staging, "pop", 1, 0.1, start=next(t), config_key=ck("pop"), sha=SHA2)
    return {"uri": uri, "client": client, "ids": ids, "old": old, "parent": parent,
            "sweep_runs": {*children, reused}, "root": root}


def board(st, capsys, *extra: str) -> tuple[int, list[dict[str, str]], str]:
    from bench.report.leaderboard import leaderboard_main

    code, out, err = run_cli(
        leaderboard_main,
        ["--tracking-uri", st["uri"], "--experiment", "configs", "--format", "csv", *extra],
        capsys,
    )
    return code, list(csv.DictReader(out.splitlines())), err


def truth(st, row: str, key: str) -> list[float]:
    return [st["client"].get_run(r).data.metrics[key] for r in st["ids"][row]]


# ----------------------------------------------------------------------------- configurations


def test_one_labelled_row_per_model_configuration(st, capsys):
    code, rows, err = board(st, capsys)
    assert code == 0, err
    assert {r["model"] for r in rows} == set(st["ids"])
    for r in rows:
        vals = truth(st, r["model"], "ndcg_at_10")
        assert float(r["ndcg_at_10"]) == pytest.approx(np.mean(vals), abs=1e-15)
        assert r["n_seeds"] == str(len(vals))
    # the older run of itemknn k=50 seed 0 is ignored, and the note no longer points the
    # leaderboard user at a provenance.json it does not write
    assert "1 older run of an already reported model configuration+seed ignored" in err
    assert "`bench report` lists their run ids in provenance.json" in err


def test_report_rows_tests_figures_and_provenance_use_the_labels(st, tmp_path, capsys):
    from bench.report import runs as rr
    from bench.report.build import figure_data, report_main

    out = tmp_path / "rep"
    argv = ["--out", str(out), "--tracking-uri", st["uri"], "--experiment", "configs",
            "--metrics", "ndcg@10,recall@10", "--baseline", "itemknn (k=50)", "--figures",
            "metric_at_k"]
    code, _, err = run_cli(report_main, argv, capsys)
    assert code == 0, err
    rows = {r["model"]: r for r in csv.DictReader((out / "table.csv").open())}
    assert set(rows) == set(st["ids"])
    # the paired test of itemknn (k=100) against the baseline row, checked with scipy
    import polars as pl

    def users(row: str) -> pl.DataFrame:
        frames = [pl.read_parquet(mlflow.artifacts.download_artifacts(
            run_id=rid, artifact_path="per_user.parquet", tracking_uri=st["uri"],
            dst_path=str(tmp_path / rid))) for rid in st["ids"][row]]
        return pl.concat(frames).group_by("user_id").agg(pl.all().mean()).sort("user_id")

    x, y = users("itemknn (k=100)"), users("itemknn (k=50)")
    p = sps.ttest_rel(x["ndcg_at_10"].to_numpy(), y["ndcg_at_10"].to_numpy()).pvalue
    assert float(rows["itemknn (k=100)"]["ndcg_at_10_p"]) == pytest.approx(p, rel=1e-9)
    assert rows["itemknn (k=50)"]["ndcg_at_10_p"] == ""
    prov = json.loads((out / "provenance.json").read_text())
    used = {r["run_id"]: r for r in prov["runs"]}
    assert set(used) == {rid for rids in st["ids"].values() for rid in rids}
    for label, rids in st["ids"].items():
        for rid in rids:
            assert used[rid]["label"] == label and len(used[rid]["config_key"]) == 64
    assert [r["run_id"] for r in prov["ignored_runs"]] == [st["old"]]
    assert r"itemknn (k=100)" in (out / "table.tex").read_text()
    selection = rr.select(rr.search_runs(rr.client(st["uri"]), "configs"))
    assert set(figure_data(selection)) == set(st["ids"])


def test_baseline_naming_a_model_with_several_configurations_lists_its_rows(st, tmp_path,
                                                                            capsys):
    from bench.report.build import report_main

    code, _, err = run_cli(report_main, ["--out", str(tmp_path / "r"), "--tracking-uri",
                                         st["uri"], "--experiment", "configs", "--baseline",
                                         "itemknn"], capsys)
    assert code == 2 and "'itemknn (k=100)', 'itemknn (k=50)'" in err
    assert not (tmp_path / "r").exists()


def test_caption_says_one_seed_not_one_seeds(st, tmp_path, capsys):
    from bench.report.build import report_main

    out = tmp_path / "r"
    code, _, err = run_cli(report_main, ["--out", str(out), "--tracking-uri", st["uri"],
                                         "--experiment", "sweep", "--split-sha256", SHA[:8],
                                         "--figures", "metric_at_k"], capsys)
    assert code == 0, err
    for name, pm in (("table.md", "±"), ("table.tex", r"$\pm$")):
        text = (out / name).read_text()
        assert f"Values of 1 seed (no {pm});" in text and "1 seeds" not in text


# ----------------------------------------------------------------------------- --sweep


def test_sweep_option_covers_the_sweeps_children_and_reused_runs(st, capsys):
    from bench.report.leaderboard import leaderboard_main

    argv = ["--tracking-uri", st["uri"], "--experiment", "sweep", "--format", "csv"]
    code, _, err = run_cli(leaderboard_main, argv, capsys)
    assert code == 2 and "different split sha256" in err  # the whole store cannot be compared
    code, out, err = run_cli(leaderboard_main, [*argv, "--sweep", st["parent"], "--dataset",
                                                DATASET, "--split", SPLIT], capsys)
    assert code == 0, err
    assert sorted(r["model"] for r in csv.DictReader(out.splitlines())) == ["ease", "itemknn",
                                                                            "pop"]
    code, _, err = run_cli(leaderboard_main, [*argv, "--sweep", sorted(st["sweep_runs"])[0]],
                           capsys)
    assert code == 2 and "is not a sweep parent" in err
    # every id the tool prints is accepted back: the sweep id, its name, a run id prefix
    for given in ("x", "sweep-x", st["parent"][:8]):
        code, out, err = run_cli(leaderboard_main, [*argv, "--sweep", given, "--dataset",
                                                    DATASET, "--split", SPLIT], capsys)
        assert code == 0, (given, err)
        assert len(list(csv.DictReader(out.splitlines()))) == 3, given
    code, _, err = run_cli(leaderboard_main, [*argv, "--sweep", "nope"], capsys)
    assert code == 2 and "no sweep with that id" in err and "sweeps there: x" in err


def test_sweep_option_in_report_provenance(st, tmp_path, capsys):
    from bench.report.build import report_main

    out = tmp_path / "r"
    code, _, err = run_cli(report_main, ["--out", str(out), "--tracking-uri", st["uri"],
                                         "--experiment", "sweep", "--sweep", st["parent"],
                                         "--figures", "metric_at_k"], capsys)
    assert code == 0, err
    prov = json.loads((out / "provenance.json").read_text())
    assert {r["run_id"] for r in prov["runs"]} == st["sweep_runs"]
    assert prov["config"]["sweep"] == st["parent"]


# ----------------------------------------------------------------------------- filters, help


@pytest.mark.parametrize(("flag", "value", "expect"), [
    ("--dataset", "tyo", "no FINISHED run has dataset 'tyo' (did you mean 'toy'?)"),
    ("--split", "temporal", "no FINISHED run has split 'temporal' (did you mean "
                            "'temporal-global'?)"),
])
def test_a_filter_that_matches_nothing_is_named(st, tmp_path, capsys, flag, value, expect):
    from bench.report.build import report_main

    code, _, err = board(st, capsys, flag, value)
    assert code == 2 and expect in err and f"{DATASET}/{SPLIT} (" in err
    assert err.count("\n") == 1
    code, _, err = run_cli(report_main, ["--out", str(tmp_path / "r"), "--tracking-uri",
                                         st["uri"], "--experiment", "configs", flag, value],
                           capsys)
    assert code == 2 and expect in err and not (tmp_path / "r").exists()
    # through the real CLI: exit code 2
    res = bench("leaderboard", "--tracking-uri", st["uri"], "--experiment", "configs", flag,
                value, cwd=tmp_path, check=False)
    assert res.returncode == 2 and expect in res.stderr


def test_help_shows_real_split_names_and_the_sweep_option():
    from bench.report.build import parser as report_parser
    from bench.report.leaderboard import parser as board_parser

    splits = {p.stem for p in (Path(__file__).parents[2] / "conf" / "split").glob("*.yaml")}
    text = board_parser().format_help()
    examples = text.split("examples:")[1]
    used = [e.split()[0] for e in examples.split("--split ")[1:]]
    assert used and set(used) <= splits, used
    assert "--sweep PARENT_RUN_ID" in text
    assert "--sweep PARENT_RUN_ID" in report_parser().format_help()


# ----------------------------------------------------------------------------- real bench run


FAST = ["dataset=ml-100k", "latency.n_requests=30", "latency.warmup=5"]


@pytest.mark.slow
def test_real_runs_config_rows_and_the_sweep_summary(tmp_path):
    from bench import tracking

    bench("run", "-m", "model=pop,itemknn", *FAST, cwd=tmp_path)
    bench("run", "model=itemknn", "model.params.k=100", *FAST, cwd=tmp_path)
    out = bench("leaderboard", "--format", "csv", cwd=tmp_path)
    rows = [r["model"] for r in csv.DictReader(out.stdout.splitlines())]
    assert sorted(rows) == ["itemknn (k=100)", "itemknn (k=50)", "pop"]
    st_ = store(tmp_path)
    first = {r.info.run_id for r in st_.search("") if r.data.tags.get("bench.sweep") != "parent"
             and r.data.params.get("model.params.k") != "100"}
    keys = {r.data.tags["bench.config_key"] for r in st_.search("")
            if r.data.tags.get("bench.model") == "itemknn"}
    assert len(keys) == 2
    # a run of the same dataset+split on another split sha256 (the split was re-made)
    client = st_.client
    other = client.create_run(st_.experiment_id, tags={
        "bench.dataset": "ml-100k", "bench.split": "temporal-global", "bench.model": "random",
        "bench.split_sha256": "f" * 64, "bench.seed": "0", "bench.metric_definitions": "1"})
    client.log_metric(other.info.run_id, "ndcg_at_10", 0.01)
    client.set_terminated(other.info.run_id, "FINISHED")
    # the sweep again: both jobs are reused; its summary shows those two runs only
    again = bench("run", "-m", "model=pop,itemknn", *FAST, "report.out=${paths.root}/out/sw",
                  cwd=tmp_path)
    text = again.stdout + again.stderr
    assert text.count("skip ") == 2
    assert "summary failed" not in text and "refusing" not in text, text[-3000:]
    assert "k=100" not in text and "ndcg@10" in text
    prov = json.loads((tmp_path / "out" / "sw" / "provenance.json").read_text())
    assert {r["run_id"] for r in prov["runs"]} == first
    parents = [r for r in st_.search("") if r.data.tags.get("bench.sweep") == "parent"]
    last = max(parents, key=lambda r: r.info.start_time)
    assert {v for k, v in last.data.tags.items() if k.startswith(tracking.REUSED_TAG)} == first
