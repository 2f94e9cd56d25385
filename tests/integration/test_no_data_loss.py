"""Nothing is lost (user audit): ``bench report --force`` replaces only a folder bench report
wrote, never the working directory, the tracking store, its artifacts, the home directory or
a split; ``bench evaluate --per-user`` never overwrites silently nor writes into a split;
Ctrl-C ends a run KILLED with one line and exit code 130; a damaged split folder names the
right fix; output folders get the mode ``mkdir`` would give them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from .conftest import REPO, bench, runs
from .test_bad_input import good_csv, one_line_error, write_dataset

pytestmark = [pytest.mark.integration]

mlflow = pytest.importorskip("mlflow")


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256): equal snapshots = nothing lost."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ----------------------------------------------------------------------------- bench report


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict:
    """A working folder as `bench run` leaves it: mlflow.db (real SQLite store), mlartifacts/
    with the runs' artifacts, data/splits/<dataset>/<split>/ with a manifest."""
    from .test_report_mlflow import log_run

    root = tmp_path_factory.mktemp("work")
    staging = tmp_path_factory.mktemp("staging")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(uri)
    exp = client.create_experiment(
        "bench", artifact_location=(root / "mlartifacts" / "bench").as_uri()
    )
    for model, offset in (("pop", 0.1), ("ease", 0.3)):
        for seed in (0, 1):
            log_run(client, exp, staging, model, seed, offset)
    split = root / "data" / "splits" / "toy" / "temporal-global-0123456789ab"
    split.mkdir(parents=True)
    (split / "train.parquet").write_bytes(b"PAR1 not really")
    (split / "manifest.json").write_text(json.dumps({"split_sha256": "0" * 64, "files": {}}))
    (root / "home").mkdir()
    return {"root": root, "uri": uri}


def report(work: dict, out: str | Path, *extra: str, capsys) -> tuple[int, str]:
    from bench.report.build import report_main

    argv = ["--out", str(out), "--tracking-uri", work["uri"], "--figures", "metric_at_k",
            "--n-bootstrap", "50", *extra]  # fmt: skip
    code = report_main(argv)
    err = capsys.readouterr().err
    return code, err


def refused(code: int, err: str) -> str:
    assert code == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and "Traceback" not in err
    return line


def test_force_never_replaces_the_working_directory_holding_the_store(work, capsys, monkeypatch):
    root = work["root"]
    before = snapshot(root)
    monkeypatch.chdir(root)
    msg = refused(*report(work, ".", "--force", capsys=capsys))
    assert f"--out {root} is the current working directory" in msg
    assert "choose a new --out" in msg
    assert snapshot(root) == before and (root / "mlflow.db").is_file()
    assert not [p for p in root.parent.iterdir() if p.name.startswith(f".{root.name}.")]


def test_force_never_replaces_a_folder_holding_the_store(work, capsys, tmp_path, monkeypatch):
    root = work["root"]
    before = snapshot(root)
    monkeypatch.chdir(tmp_path)  # the store's folder is not the working directory here
    msg = refused(*report(work, root, "--force", capsys=capsys))
    assert f"contains the MLflow tracking store {root / 'mlflow.db'}" in msg
    assert snapshot(root) == before


@pytest.mark.parametrize(
    "rel, needle",
    [
        ("mlartifacts", "is the MLflow artifact root"),
        ("mlartifacts/bench", "is the MLflow artifact root"),
        ("data", "contains the split folder"),
        ("data/splits/toy/temporal-global-0123456789ab", "is a split folder"),
        ("data/splits/toy/temporal-global-0123456789ab/report", "is inside the split folder"),
        ("home", "is your home directory"),
    ],
)
def test_force_never_replaces_store_artifacts_splits_or_home(
    work, capsys, tmp_path, monkeypatch, rel, needle
):
    root = work["root"]
    monkeypatch.setenv("HOME", str(root / "home"))
    monkeypatch.chdir(tmp_path)
    before = snapshot(root)
    msg = refused(*report(work, root / rel, "--force", capsys=capsys))
    assert needle in msg and "choose a new --out" in msg
    assert snapshot(root) == before
    assert not (root / "data/splits/toy/temporal-global-0123456789ab/report").exists()


def test_force_refuses_a_folder_bench_report_did_not_write(work, capsys, tmp_path):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    msg = refused(*report(work, mine, "--force", capsys=capsys))
    assert msg == (
        f"error: --out {mine} is not a report folder (no provenance.json written by bench "
        "report); --force replaces only a folder written by bench report; choose a new --out"
    )
    (mine / "provenance.json").write_text('{"command": ["python", "train.py"]}')
    msg = refused(*report(work, mine, "--force", capsys=capsys))
    assert "its provenance.json was not written by bench report" in msg
    assert (mine / "chapter1.tex").read_text() == "precious"


def written_report(work, out, capsys) -> dict:
    """Build a report into ``out`` (it must succeed); its provenance.json."""
    code, err = report(work, out, capsys=capsys)
    assert code == 0, err
    return json.loads((out / "provenance.json").read_text())


def test_force_replaces_a_previous_report_but_not_files_added_to_it(work, capsys, tmp_path):
    out = tmp_path / "rep"
    prov = written_report(work, out, capsys)
    assert prov["generator"] == "bench report"
    first = prov["created_at"], (out / "table.csv").read_text()
    code, err = report(work, out, "--force", "--metrics", "ndcg@10", capsys=capsys)
    assert code == 0, err
    assert (out / "table.csv").read_text() != first[1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rep.")]
    (out / "my-notes.md").write_text("keep me")
    msg = refused(*report(work, out, "--force", capsys=capsys))
    assert "holds my-notes.md, which bench report did not write" in msg
    assert (out / "my-notes.md").read_text() == "keep me"


def test_force_replaces_a_report_made_before_the_generator_marker(work, capsys, tmp_path):
    out = tmp_path / "old"
    prov = written_report(work, out, capsys)
    del prov["generator"]  # as written by earlier versions: command is ["bench", "report", ...]
    (out / "provenance.json").write_text(json.dumps(prov))
    code, err = report(work, out, "--force", capsys=capsys)
    assert code == 0, err


def test_an_empty_out_folder_is_used_with_or_without_force(work, capsys, tmp_path):
    for name, extra in (("a", ()), ("b", ("--force",))):
        (tmp_path / name).mkdir()
        code, err = report(work, tmp_path / name, *extra, capsys=capsys)
        assert code == 0, err
        assert (tmp_path / name / "table.md").is_file()


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_report_folder_gets_the_mode_mkdir_gives(work, capsys, tmp_path, mask):
    out = tmp_path / "rep"
    with umask(mask):
        code, err = report(work, out, capsys=capsys)
    assert code == 0, err
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask


def test_caption_names_the_columns_not_tested(work, capsys, tmp_path):
    out = tmp_path / "rep"
    metrics = "ndcg@10,coverage@10,latency_p50_ms"
    code, err = report(work, out, "--metrics", metrics, "--baseline", "pop", capsys=capsys)
    assert code == 0, err
    md = (out / "table.md").read_text()
    assert "coverage@10 and latency p50 (ms) not tested: no per-user values." in md
    assert "ndcg@10 not tested" not in md
    tex = (out / "table.tex").read_text()
    assert "coverage@10 and latency p50 (ms) not tested: no per-user values." in tex
    code, err = report(work, tmp_path / "nobase", "--metrics", metrics, capsys=capsys)
    assert code == 0, err
    assert "not tested" not in (tmp_path / "nobase" / "table.md").read_text()


# ----------------------------------------------------------------------------- bench evaluate


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evaluate")
    args = write_dataset(root, good_csv())
    with umask(0o027):
        bench("run", *args, "model=pop", "tracking=disabled", cwd=root)
    (path,) = (root / "data" / "splits" / "mycsv").iterdir()
    return path


def test_split_folder_gets_the_mode_mkdir_gives(split_dir):
    assert split_dir.stat().st_mode & 0o777 == 0o750  # made under umask 027


def _recs(split_dir: Path, path: Path) -> Path:
    """Each test user's test items, ranked 1..n (lists of 1 to a few items)."""
    test = pl.read_parquet(split_dir / "test.parquet").select("user_id", "item_id")
    test.with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int64)).write_csv(
        path
    )
    return path


def _evaluate(split_dir: Path, recs: Path, *extra: str):
    # every test user of this tiny split is cold (no train history): --users all scores them
    return bench(
        "evaluate", "--split", str(split_dir), "--recommendations", str(recs), "--users", "all",
        *extra, cwd=recs.parent, check=False,
    )  # fmt: skip


def test_per_user_never_writes_into_a_split_folder(split_dir, tmp_path):
    recs = _recs(split_dir, tmp_path / "recs.csv")
    before = snapshot(split_dir)
    for extra in ((), ("--force",)):
        for target in (split_dir / "test.parquet", split_dir / "new.parquet"):
            msg = one_line_error(_evaluate(split_dir, recs, "--per-user", str(target), *extra))
            assert f"is inside the split folder {split_dir}" in msg
            assert "give a path outside it" in msg
    assert snapshot(split_dir) == before
    bench("evaluate", "--split", str(split_dir), "--recommendations", str(recs), cwd=tmp_path)


def test_per_user_replaces_an_existing_file_only_with_force(split_dir, tmp_path):
    recs = _recs(split_dir, tmp_path / "recs.csv")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    msg = one_line_error(_evaluate(split_dir, recs, "--per-user", str(notes)))
    assert msg == (
        f"error: --per-user {notes} already exists; give a new file name, or add --force to "
        "replace it"
    )
    assert notes.read_text() == "my notes"
    msg = one_line_error(_evaluate(split_dir, recs, "--per-user", str(recs), "--force"))
    assert "is the --recommendations file" in msg
    out = tmp_path / "per_user.parquet"
    with umask(0o022):
        assert _evaluate(split_dir, recs, "--per-user", str(out)).returncode == 0
    assert out.stat().st_mode & 0o777 == 0o644
    assert "ndcg_at_10" in pl.read_parquet(out).columns
    assert _evaluate(split_dir, recs, "--per-user", str(notes), "--force").returncode == 0
    assert "ndcg_at_10" in pl.read_parquet(notes).columns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "per_user.parquet",
                                                          "recs.csv"]  # no temp files left


def test_per_user_in_a_missing_folder_is_one_line(split_dir, tmp_path):
    recs = _recs(split_dir, tmp_path / "recs.csv")
    msg = one_line_error(_evaluate(split_dir, recs, "--per-user", str(tmp_path / "no" / "x.pq")))
    assert f"folder {tmp_path / 'no'} does not exist" in msg


def test_a_cut_off_beyond_the_longest_list_is_one_warning(split_dir, tmp_path):
    recs = _recs(split_dir, tmp_path / "recs.csv")
    longest = pl.read_csv(recs).group_by("user_id").len()["len"].max()
    out = _evaluate(split_dir, recs, "--ks", f"1,{longest},50,100", "--format", "json")
    assert out.returncode == 0, out.stderr
    warnings = [ln for ln in out.stderr.splitlines() if ln.startswith("warning: ")]
    assert warnings == [
        f"warning: {recs}: its longest list has {longest} items, fewer than k = 50, 100 of "
        "--ks; the metrics @50 and @100 use the shorter lists as they are (no items are added)"
    ]
    ev = json.loads(out.stdout)
    assert ev["recall_at_50"] == ev[f"recall_at_{longest}"]
    out = _evaluate(split_dir, recs, "--ks", f"1,{longest}")
    assert "warning" not in out.stderr


# ----------------------------------------------------------------------------- splits


def test_a_split_folder_without_manifest_names_the_fix(tmp_path):
    args = write_dataset(tmp_path, good_csv())
    bench("run", *args, "model=pop", "tracking=disabled", cwd=tmp_path)
    (split,) = (tmp_path / "data" / "splits" / "mycsv").iterdir()
    (split / "manifest.json").unlink()
    msg = one_line_error(
        bench("run", *args, "model=pop", "tracking=disabled", cwd=tmp_path, check=False)
    )
    assert msg == (
        f"error: {split}: incomplete or damaged split folder (no manifest.json); delete the "
        "folder and 'bench run' re-creates it"
    )
    recs = _recs(split, tmp_path / "recs.csv")
    msg = one_line_error(_evaluate(tmp_path / "data", recs))
    assert f"{tmp_path / 'data'}: not a split folder (no manifest.json)" in msg
    assert "give a folder made by 'bench run'" in msg
    import shutil

    shutil.rmtree(split)  # the fix the message names
    bench("run", *args, "model=pop", "tracking=disabled", cwd=tmp_path)
    assert (split / "manifest.json").is_file()


# ----------------------------------------------------------------------------- Ctrl-C


def _count(db: Path, status: str) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute("select count(*) from runs where status=?", (status,)).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_ctrl_c_marks_the_run_killed_and_exits_130_without_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "BENCH_TRACEBACK": ""}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "model=itemknn", "dataset=ml-100k",
         "latency.n_requests=5000"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
        # a shell without job control starts background jobs with SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    db = tmp_path / "mlflow.db"
    try:
        end = time.time() + 300
        while _count(db, "RUNNING") < 1 and proc.poll() is None and time.time() < end:
            time.sleep(0.05)
        assert _count(db, "RUNNING") >= 1, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1] == "interrupted"
    (run,) = runs(tmp_path)
    assert run.info.status == "KILLED"
