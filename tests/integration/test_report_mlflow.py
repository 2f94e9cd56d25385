"""Leaderboard and report against a REAL MLflow SQLite store logged per the contract.

One store per module (creating an MLflow SQLite schema costs seconds); each scenario lives in
its own experiment: ``bench`` (the normal case), ``mixed`` (two split hashes), ``legacy``
(runs without the newer tags), ``devices`` (latency from two devices).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from .conftest import fixture_store

pytestmark = pytest.mark.integration

mlflow = pytest.importorskip("mlflow")

SHA = "ab12cd34ef56" + "0" * 52
SHA2 = "ffee" + "1" * 60
USERS = [f"u{i:03d}" for i in range(40)]
# model -> (quality offset, seeds)
MODELS = {
    "pop": (0.10, (0, 1, 2)),
    "itemknn": (0.20, (0, 1, 2)),
    "ease": (0.26, (0, 1, 2)),
    "my_model&co": (0.15, (0,)),
}


def per_user(model: str, seed: int, offset: float) -> pl.DataFrame:
    rng = np.random.default_rng(abs(hash((model, seed))) % 2**32)
    base = np.random.default_rng(7).random(len(USERS)) * 0.5  # shared user difficulty
    cols = {"user_id": USERS}
    for k in (5, 10, 20):
        cols[f"ndcg_at_{k}"] = np.clip(base + offset + 0.01 * k + rng.normal(0, 0.05, 40), 0, 1)
        cols[f"recall_at_{k}"] = np.clip(base + offset + 0.02 * k + rng.normal(0, 0.05, 40), 0, 1)
    cols["novelty_at_10"] = 5 + 3 * offset + rng.normal(0, 0.1, 40)
    return pl.DataFrame(cols)


def summary(frame: pl.DataFrame, model: str, seed: int, offset: float) -> dict[str, float]:
    out = {c: float(frame[c].mean()) for c in frame.columns if c != "user_id"}
    out["coverage_at_10"] = 0.3 + offset
    out["latency_p50_ms"] = {"pop": 0.05, "itemknn": 1.5, "ease": 0.8}.get(model, 3.0) + 0.01 * seed
    out["fit_seconds"] = 1.0 + seed
    gender = np.array(["F" if i % 3 == 0 else "M" for i in range(len(USERS))])
    nd = frame["ndcg_at_10"].to_numpy()
    out["ndcg_at_10/gender/F"] = float(nd[gender == "F"].mean())
    out["ndcg_at_10/gender/M"] = float(nd[gender == "M"].mean())
    out["ndcg_at_10/gender/gap"] = abs(out["ndcg_at_10/gender/F"] - out["ndcg_at_10/gender/M"])
    return out


def log_run(
    client,
    exp_id: str,
    tmp: Path,
    model: str,
    seed: int,
    offset: float,
    *,
    dataset: str = "toy",
    split: str = "temporal",
    sha: str = SHA,
    device: str = "cpu",
    drop_tags: tuple[str, ...] = (),
    status: str = "FINISHED",
    parent: str | None = None,
    version: str = "0.1.0",
) -> str:
    """One evaluation run exactly as the contract says (tags, metrics, artifacts)."""
    tags = {
        "bench.dataset": dataset,
        "bench.split": split,
        "bench.split_sha256": sha,
        "bench.split_dir": f"/data/splits/{dataset}/{split}",
        "bench.model": model,
        "bench.seed": str(seed),
        "bench.run_key": f"{model}-{seed}-{sha[:8]}",
        "bench.version": version,
        "bench.git_sha": "0123abcd" * 5,
        "bench.metric_definitions": "1",
        "bench.device": device,
        "bench.split_protocol": "temporal-global",
        "bench.sweep_id": "sweep-1",
    }
    if parent:
        tags["mlflow.parentRunId"] = parent
    for t in drop_tags:
        tags.pop(t)
    run = client.create_run(exp_id, run_name=f"{model}-{dataset}-{split}-s{seed}", tags=tags)
    rid = run.info.run_id
    frame = per_user(model, seed, offset)
    from mlflow.entities import Metric

    ts = 1_700_000_000_000
    client.log_batch(
        rid, metrics=[Metric(k, v, ts, 0) for k, v in summary(frame, model, seed, offset).items()]
    )
    d = tmp / rid
    d.mkdir()
    frame.write_parquet(d / "per_user.parquet")
    (d / "config.yaml").write_text(f"model:\n  name: {model}\nseed: {seed}\n")
    (d / "environment.json").write_text('{"python": "3.11"}')
    for f in d.iterdir():
        client.log_artifact(rid, str(f))
    client.set_terminated(rid, status=status)
    return rid


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    uri, client, staging, exps = fixture_store(root, ("bench", "mixed", "legacy", "devices"))
    ids = {}
    e = exps["bench"]
    log_run(client, e, staging, "pop", 0, 0.5, dataset="older", split="random")
    parent = client.create_run(
        e, run_name="sweep", tags={"bench.sweep": "parent", "bench.model": "sweep"}
    )
    client.set_terminated(parent.info.run_id)
    for model, (off, seeds) in MODELS.items():
        for s in seeds:
            ids[(model, s)] = log_run(client, e, staging, model, s, off, parent=parent.info.run_id)
    log_run(client, e, staging, "ease", 9, 0.9, status="FAILED")
    log_run(client, e, staging, "ease", 8, 0.9, status="RUNNING")
    for model, sha in (("pop", SHA), ("ease", SHA2)):
        log_run(client, exps["mixed"], staging, model, 0, MODELS[model][0], sha=sha)
    for model in ("pop", "ease"):
        log_run(
            client,
            exps["legacy"],
            staging,
            model,
            0,
            MODELS[model][0],
            drop_tags=("bench.split_protocol", "bench.sweep_id"),
            version="0.0.9",
        )
    log_run(client, exps["legacy"], staging, "itemknn", 0, 0.2, version="0.1.0")
    for model, dev in (("pop", "cpu"), ("ease", "cuda:A100")):
        log_run(client, exps["devices"], staging, model, 0, MODELS[model][0], device=dev)
    return {"uri": uri, "client": client, "ids": ids, "root": root}


def mlflow_values(store, key: str) -> dict[str, list[float]]:
    """The metric as MLflow holds it, per model, read with MLflow's own API."""
    out: dict[str, list[float]] = {}
    for (model, _), rid in store["ids"].items():
        out.setdefault(model, []).append(store["client"].get_run(rid).data.metrics[key])
    return out


def run_cli(main, argv, capsys):
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


# ----------------------------------------------------------------------------- leaderboard


def test_leaderboard_csv_ranks_and_numbers_equal_mlflow(store, capsys):
    from bench.report.leaderboard import leaderboard_main

    code, out, err = run_cli(
        leaderboard_main,
        [
            "--tracking-uri",
            store["uri"],
            "--dataset",
            "toy",
            "--format",
            "csv",
            "--columns",
            "recall@10,latency_p50_ms",
        ],
        capsys,
    )
    assert code == 0, err
    rows = list(csv.DictReader(out.splitlines()))
    assert [r["model"] for r in rows] == ["ease", "itemknn", "my_model&co", "pop"]
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    for key in ("ndcg_at_10", "recall_at_10", "latency_p50_ms"):
        truth = mlflow_values(store, key)
        for r in rows:
            vals = truth[r["model"]]
            assert float(r[key]) == pytest.approx(np.mean(vals), abs=1e-15)
            if len(vals) > 1:
                assert float(r[f"{key}_std"]) == pytest.approx(np.std(vals, ddof=1), abs=1e-15)
            else:
                assert r[f"{key}_std"] == ""
            assert r["n_seeds"] == str(len(vals))


def test_leaderboard_md_and_table(store, capsys):
    from bench.report.leaderboard import fmt, leaderboard_main

    code, out, _ = run_cli(
        leaderboard_main,
        [
            "--tracking-uri",
            store["uri"],
            "--dataset",
            "toy",
            "--metric",
            "ndcg@10",
            "--format",
            "md",
        ],
        capsys,
    )
    assert code == 0
    lines = [ln for ln in out.splitlines() if ln.startswith("| ")][1:]
    truth = mlflow_values(store, "ndcg_at_10")
    assert [ln.split("|")[2].strip() for ln in lines] == ["ease", "itemknn", "my_model&co", "pop"]
    for ln in lines:
        model, cell = ln.split("|")[2].strip(), ln.split("|")[3].strip()
        v = truth[model]
        expect = fmt(np.mean(v)) + (f" ± {fmt(np.std(v, ddof=1))}" if len(v) > 1 else "")
        assert cell == expect
    code, out, _ = run_cli(
        leaderboard_main, ["--tracking-uri", store["uri"], "--dataset", "toy"], capsys
    )
    assert code == 0 and "ranked by ndcg@10" in out
    assert out.index("ease") < out.index("itemknn") < out.index(" pop ")


def test_leaderboard_rich_on_a_terminal(store, capsys, monkeypatch):
    import sys

    from bench.report.leaderboard import leaderboard_main

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = run_cli(
        leaderboard_main, ["--tracking-uri", store["uri"], "--dataset", "toy"], capsys
    )
    assert code == 0 and "─" in out  # rich's rule under the header
    assert out.index("ease") < out.index("itemknn") < out.index("my_model&co") < out.index("pop")


def test_leaderboard_lower_is_better_and_most_recent_combo_note(store, capsys):
    from bench.report.leaderboard import leaderboard_main

    code, out, err = run_cli(
        leaderboard_main,
        ["--tracking-uri", store["uri"], "--metric", "latency_p50_ms", "--format", "csv"],
        capsys,
    )
    assert code == 0
    assert [r["model"] for r in csv.DictReader(out.splitlines())][:2] == ["pop", "ease"]
    assert "note: showing toy/temporal, the most recent of 2" in err
    assert "older/random" in err and "--dataset" in err


def test_leaderboard_errors_are_one_line(store, capsys):
    from bench.report.leaderboard import leaderboard_main

    code, _, err = run_cli(
        leaderboard_main, ["--tracking-uri", store["uri"], "--metric", "ndgc@10"], capsys
    )
    assert code == 2 and err.count("\n") == 1 and "did you mean 'ndcg_at_10'" in err
    code, _, err = run_cli(
        leaderboard_main, ["--tracking-uri", store["uri"], "--experiment", "bnech"], capsys
    )
    assert code == 2 and "did you mean 'bench'" in err
    code, _, err = run_cli(
        leaderboard_main, ["--tracking-uri", "sqlite:////nonexistent/x.db"], capsys
    )
    assert code == 2 and "no MLflow store" in err


def test_mixed_split_hashes_are_refused(store, capsys, tmp_path):
    from bench.report.build import report_main
    from bench.report.leaderboard import leaderboard_main

    argv = ["--tracking-uri", store["uri"], "--experiment", "mixed"]
    code, _, err = run_cli(report_main, ["--out", str(tmp_path / "r"), *argv], capsys)
    assert code == 2
    assert "refusing to compare runs with different split sha256" in err
    assert "ab12cd34ef56" in err and "ffee11111111" in err and "--split-sha256" in err
    assert not (tmp_path / "r").exists()
    code, out, _ = run_cli(
        leaderboard_main, [*argv, "--split-sha256", "ffee", "--format", "csv"], capsys
    )
    assert code == 0 and [r["model"] for r in csv.DictReader(out.splitlines())] == ["ease"]


def test_latency_across_devices(store, capsys):
    from bench.report.leaderboard import leaderboard_main

    argv = ["--tracking-uri", store["uri"], "--experiment", "devices", "--format", "csv"]
    code, _, err = run_cli(leaderboard_main, [*argv, "--columns", "latency_p50_ms"], capsys)
    assert code == 2 and "--device" in err and "cuda:A100" in err
    code, out, err = run_cli(leaderboard_main, argv, capsys)
    assert code == 0 and "latency_p50_ms" not in out.splitlines()[0]
    assert "efficiency metrics (latency_p50_ms) left out" in err
    code, out, _ = run_cli(
        leaderboard_main, [*argv, "--device", "cpu", "--columns", "latency_p50_ms"], capsys
    )
    assert code == 0 and [r["model"] for r in csv.DictReader(out.splitlines())] == ["pop"]


# ----------------------------------------------------------------------------- report


@pytest.fixture(scope="module")
def report_dir(store, tmp_path_factory):
    from bench.report.build import report_main

    out = tmp_path_factory.mktemp("rep") / "report"
    spec = Path(__file__).parents[2] / "reports" / "specs" / "quickstart.yaml"
    code = report_main(
        [
            "--out",
            str(out),
            "--spec",
            str(spec),
            "--tracking-uri",
            store["uri"],
            "--dataset",
            "toy",
            "--split",
            "temporal",
            "--metrics",
            "ndcg@10,recall_at_10,coverage_at_10,latency_p50_ms",
            "--baseline",
            "pop",
            "--test",
            "ttest",
            "--correction",
            "holm",
        ]
    )
    assert code == 0
    return out


def _csv(report_dir: Path) -> dict[str, dict[str, str]]:
    return {r["model"]: r for r in csv.DictReader((report_dir / "table.csv").open())}


def test_report_files(report_dir):
    names = {p.name for p in report_dir.iterdir()}
    assert {"table.tex", "table.md", "table.csv", "provenance.json", "README.md"} <= names
    for fig in (
        "accuracy_vs_latency",
        "metric_at_k",
        "accuracy_vs_novelty",
        "accuracy_vs_coverage",
        "fairness",
    ):
        assert {f"{fig}.png", f"{fig}.pdf"} <= names
        from matplotlib.image import imread

        img = imread(report_dir / f"{fig}.png")
        assert img.shape[0] > 200 and img.shape[1] > 200
        assert img[..., :3].std() > 0.05  # not a blank canvas
        assert (report_dir / f"{fig}.pdf").read_bytes().startswith(b"%PDF")
    assert not list(report_dir.parent.glob(".report.*"))  # temp folders cleaned up


def test_report_csv_numbers_equal_mlflow(store, report_dir):
    rows = _csv(report_dir)
    assert list(rows) == ["ease", "itemknn", "my_model&co", "pop"]
    for key in ("ndcg_at_10", "recall_at_10", "coverage_at_10", "latency_p50_ms"):
        for model, vals in mlflow_values(store, key).items():
            assert float(rows[model][key]) == np.mean(vals)
            if len(vals) > 1:
                assert float(rows[model][f"{key}_std"]) == pytest.approx(
                    np.std(vals, ddof=1), rel=1e-12
                )
                half = sps.t.ppf(0.975, len(vals) - 1) * np.std(vals, ddof=1) / np.sqrt(len(vals))
                assert float(rows[model][f"{key}_seed_ci_low"]) == pytest.approx(
                    np.mean(vals) - half, rel=1e-12
                )
            assert rows[model]["n_seeds"] == str(len(vals))


def _user_means(store, model: str) -> pl.DataFrame:
    frames = []
    for (m, _), rid in store["ids"].items():
        if m == model:
            local = mlflow.artifacts.download_artifacts(
                run_id=rid, artifact_path="per_user.parquet", tracking_uri=store["uri"]
            )
            frames.append(pl.read_parquet(local))
    return pl.concat(frames).group_by("user_id").agg(pl.all().mean()).sort("user_id")


def test_report_p_values_equal_scipy_and_holm(store, report_dir):
    from bench.report.stats import holm

    rows = _csv(report_dir)
    base = _user_means(store, "pop")
    raw, cells = [], []
    for model in ("ease", "itemknn", "my_model&co"):
        frame = _user_means(store, model)
        for key in ("ndcg_at_10", "recall_at_10"):
            p = sps.ttest_rel(frame[key].to_numpy(), base[key].to_numpy()).pvalue
            assert float(rows[model][f"{key}_p"]) == pytest.approx(p, rel=1e-9)
            raw.append(p)
            cells.append(float(rows[model][f"{key}_p_adj"]))
        for key in ("coverage_at_10", "latency_p50_ms"):  # not per-user: not tested
            assert rows[model][f"{key}_p"] == ""
    assert cells == pytest.approx(list(holm(raw)), rel=1e-9)
    assert rows["pop"]["ndcg_at_10_p"] == ""
    lo, hi = float(rows["ease"]["ndcg_at_10_ci_low"]), float(rows["ease"]["ndcg_at_10_ci_high"])
    assert lo < float(rows["ease"]["ndcg_at_10"]) < hi


def test_report_md_numbers_bold_and_marks(store, report_dir):
    from bench.report.leaderboard import fmt

    md = (report_dir / "table.md").read_text()
    rows = _csv(report_dir)
    lines = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| ")}
    truth = mlflow_values(store, "ndcg_at_10")
    for model, vals in truth.items():
        cell = lines[model].split("|")[2]
        nums = re.findall(r"\d+\.\d+", cell)
        assert nums[0] == fmt(np.mean(vals))
        if len(vals) > 1:
            assert nums[1] == fmt(np.std(vals, ddof=1))
        sig = model != "pop" and float(rows[model]["ndcg_at_10_p_adj"]) < 0.05
        assert ("†" in cell or "‡" in cell) == sig
        if sig:  # † better than the baseline, ‡ worse
            better = np.mean(vals) > np.mean(truth["pop"])
            assert ("†" in cell, "‡" in cell) == (better, not better), model
    assert "**" in lines["ease"].split("|")[2] and "<u>" in lines["itemknn"].split("|")[2]
    assert "**" in lines["pop"].split("|")[5]  # latency: lower is better
    assert "paired t-test" in md and "Holm" in md
    assert "†/‡: significantly better/worse than pop" in md


def test_report_tex_caption_and_escaping(report_dir):
    tex = (report_dir / "table.tex").read_text()
    assert r"my\_model\&co" in tex and "my_model&co" not in tex
    assert "ab12cd34ef56" in tex and "temporal-global" in tex and "metric definitions v1" in tex
    assert "paired t-test" in tex and "Holm" in tex and r"$^{\dagger}$" in tex
    assert r"\toprule" in tex and r"\benchbest{" in tex and r"\benchsecond{" in tex


LATEX_PACKAGES = ("booktabs", "graphicx", "amsmath", "amssymb", "xcolor", "multirow")


def _latex_missing() -> str:
    if shutil.which("pdflatex") is None or shutil.which("kpsewhich") is None:
        return "pdflatex not installed"
    res = subprocess.run(
        ["kpsewhich", *[f"{p}.sty" for p in LATEX_PACKAGES]], capture_output=True, text=True
    )
    missing = [p for p in LATEX_PACKAGES if f"/{p}.sty" not in res.stdout]
    return f"LaTeX packages missing: {', '.join(missing)}" if missing else ""


@pytest.mark.skipif(bool(_latex_missing()), reason=_latex_missing() or "ok")
def test_report_tex_compiles(report_dir, tmp_path):
    (tmp_path / "table.tex").write_text((report_dir / "table.tex").read_text())
    doc = (
        "\\documentclass{article}\n\\usepackage{" + ",".join(LATEX_PACKAGES) + "}\n"
        "\\begin{document}\n\\input{table.tex}\n\\end{document}\n"
    )
    (tmp_path / "main.tex").write_text(doc)
    res = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "main.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout[-2000:]
    assert (tmp_path / "main.pdf").stat().st_size > 1000


TWO_COLUMN_TABLES = {
    # the README's tables and what authors ask for: 6 default metrics with stds, 3 metrics
    # over 3 seeds, all pairs, forced one-column layout, many renamed long rows
    "default": [],
    "three": ["--metrics", "ndcg@10,recall@10,coverage@10", "--baseline", "pop"],
    "all-pairs": ["--all-pairs", "--precision", "3"],
    "column": ["--layout", "column", "--rename", "pop=Most popular (train counts)"],
    "readme": ["--metrics", "ndcg_at_10,recall_at_10,coverage_at_10", "--baseline", "pop",
               "--test", "wilcoxon", "--correction", "holm", "--label", "tab:readme"],
}


@pytest.mark.skipif(bool(_latex_missing()), reason=_latex_missing() or "ok")
def test_tables_fit_a_two_column_article_with_no_overfull_box(store, tmp_path):
    """Every table compiles in \\documentclass[twocolumn]{article} with no overfull box,
    and the labels of two tables of one split differ (all in one document)."""
    from bench.report.build import report_main

    inputs = []
    for name, extra in TWO_COLUMN_TABLES.items():
        out = tmp_path / name
        argv = ["--out", str(out), "--tracking-uri", store["uri"], "--dataset", "toy",
                "--split", "temporal", "--figures", "metric_at_k", *extra]
        assert report_main(argv) == 0, name
        (tmp_path / f"{name}.tex").write_text((out / "table.tex").read_text())
        inputs.append(f"\\input{{{name}.tex}}")
    labels = [re.search(r"\\label\{([^}]*)\}", (tmp_path / f"{n}.tex").read_text())[1]
              for n in TWO_COLUMN_TABLES]
    assert len(set(labels)) == len(labels) and "tab:readme" in labels
    doc = ("\\documentclass[twocolumn]{article}\n\\usepackage{booktabs,graphicx}\n"
           "\\begin{document}\n" + "\n".join(inputs) + "\n\\end{document}\n")
    (tmp_path / "main.tex").write_text(doc)
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "main.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    log = (tmp_path / "main.log").read_text(errors="replace")
    assert res.returncode == 0, res.stdout[-2000:]
    assert "Overfull \\hbox" not in log, log[log.find("Overfull"):][:600]
    assert "multiply defined" not in log


def test_provenance(store, report_dir):
    prov = json.loads((report_dir / "provenance.json").read_text())
    assert {r["run_id"] for r in prov["runs"]} == set(store["ids"].values())
    run = prov["runs"][0]
    for field in (
        "run_name",
        "model",
        "seed",
        "git_sha",
        "split_sha256",
        "bench_version",
        "metric_definitions",
    ):
        assert run[field] is not None
    assert prov["tracking_uri"] == store["uri"] and prov["split_sha256"] == SHA
    assert prov["command"][:2] == ["bench", "report"] and "created_at" in prov
    assert prov["config"]["baseline"] == "pop"


def test_out_is_never_overwritten_silently(store, report_dir, capsys):
    from bench.report.build import report_main

    before = (report_dir / "table.csv").read_text()
    argv = [
        "--out",
        str(report_dir),
        "--tracking-uri",
        store["uri"],
        "--dataset",
        "toy",
        "--figures",
        "metric_at_k",
    ]
    code, _, err = run_cli(report_main, argv, capsys)
    assert code == 2 and "--force" in err
    assert (report_dir / "table.csv").read_text() == before
    out2 = report_dir.parent / "copy"
    shutil.copytree(report_dir, out2)
    code, _, err = run_cli(report_main, [*argv[2:], "--out", str(out2), "--force"], capsys)
    assert code == 0, err
    assert not (out2 / "fairness.png").exists() and (out2 / "metric_at_k.png").exists()
    assert not [p for p in out2.parent.iterdir() if p.name.startswith(".copy.")]


def test_legacy_runs_without_newer_tags_still_report(store, tmp_path, capsys):
    from bench.report.build import report_main

    code, _, err = run_cli(
        report_main,
        [
            "--out",
            str(tmp_path / "r"),
            "--tracking-uri",
            store["uri"],
            "--experiment",
            "legacy",
            "--baseline",
            "pop",
            "--test",
            "wilcoxon",
            "--figures",
            "accuracy_vs_coverage,accuracy_vs_latency",
        ],
        capsys,
    )
    assert code == 0, err
    assert "different bench versions" in err
    prov = json.loads((tmp_path / "r" / "provenance.json").read_text())
    assert prov["split_protocol"] == "temporal-global"  # from the one run that has the tag
    assert any("0.0.9" in w for w in prov["warnings"])
    assert "Wilcoxon" in (tmp_path / "r" / "table.tex").read_text()


def test_report_skips_figures_with_a_note(store, tmp_path, capsys):
    from bench.report.build import report_main

    code, _, err = run_cli(
        report_main,
        ["--out", str(tmp_path / "r"), "--tracking-uri", store["uri"], "--experiment", "devices"],
        capsys,
    )
    assert code == 0, err
    readme = (tmp_path / "r" / "README.md").read_text()
    assert "figure skipped: accuracy_vs_latency: runs come from 2 devices" in readme
    assert not (tmp_path / "r" / "accuracy_vs_latency.png").exists()
