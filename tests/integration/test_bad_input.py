"""Bad input through the real CLI: one line naming the file/field/value, exit code 2, no
traceback, nothing overwritten (issue 2 acceptance; pitfalls H1-H5, D1)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from .conftest import bench

pytestmark = [pytest.mark.integration]

CONF = """name: mycsv
loader: table
path: mycsv
files:
  interactions: ratings.csv
columns:
  user_id: user
  item_id: item
  rating: stars
  timestamp: ts
separator: ","
relevance_threshold: 4.0
manifest: null
"""


def write_dataset(root: Path, csv: str, **conf_changes: str) -> list[str]:
    (root / "data" / "mycsv").mkdir(parents=True, exist_ok=True)
    (root / "data" / "mycsv" / "ratings.csv").write_text(csv)
    conf = root / "myconf" / "dataset"
    conf.mkdir(parents=True, exist_ok=True)
    text = CONF
    for k, v in conf_changes.items():
        text = text.replace(f"{k}: ", f"{k}: {v}  # was: ")
    (conf / "mycsv.yaml").write_text(text)
    return [f"hydra.searchpath=[file://{root / 'myconf'}]", "dataset=mycsv"]


def good_csv(n_users: int = 30, n_items: int = 20) -> str:
    rows = ["user,item,stars,ts"]
    t = 1_000_000
    for u in range(n_users):
        for i in range(u % 7, n_items, 3):
            t += 17
            rows.append(f"u{u},i{i},{1 + (u * i) % 5},{t}")
    return "\n".join(rows) + "\n"


def refused(*argv: str, cwd: Path, monkeypatch, capsys) -> str:
    """``bench <argv>`` in-process, for input refused before anything runs: its one-line error
    (exit code 2; the exit code of the process itself is tested in tests/unit/test_cli.py)."""
    from bench.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.delenv("BENCH_TRACEBACK", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err[-3000:]
    return err.strip()


def one_line_error(out) -> str:
    assert out.returncode == 2, out.stderr[-3000:]
    err = out.stderr.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    return errors[0]


def test_missing_column(tmp_path):
    args = write_dataset(tmp_path, "user,item,stars\nu1,i1,5\n")
    msg = one_line_error(bench("run", *args, cwd=tmp_path, check=False))
    assert "ratings.csv" in msg and "ts" in msg


def test_wrong_dtype_names_file_column_row_and_value(tmp_path):
    csv = good_csv().splitlines()
    csv[5] = csv[5].rsplit(",", 2)[0] + ",—," + csv[5].rsplit(",", 1)[1]
    args = write_dataset(tmp_path, "\n".join(csv) + "\n")
    msg = one_line_error(bench("run", *args, cwd=tmp_path, check=False))
    assert "ratings.csv" in msg and "stars" in msg and "'—'" in msg and "5" in msg


def test_wrong_separator(tmp_path):
    args = write_dataset(tmp_path, good_csv().replace(",", "\t"))
    msg = one_line_error(bench("run", *args, cwd=tmp_path, check=False))
    assert "ratings.csv" in msg and "separat" in msg


def test_empty_after_k_core(tmp_path):
    args = write_dataset(tmp_path, good_csv())
    msg = one_line_error(bench("run", *args, "split.k_core=50", cwd=tmp_path, check=False))
    assert "0 interactions remain after k-core=50 filtering" in msg


@pytest.mark.parametrize(
    "override, needle",
    [
        ("model=poop", "unknown model 'poop'"),
        ("dataset=ml-10k", "unknown dataset 'ml-10k'"),
        ("split=loo", "unknown split 'loo'"),
        ("eval.early_stopping_metric=ndgc@10", "unknown metric 'ndgc@10'"),
        ("model.params.kk=3", "unknown parameter 'kk' for model 'pop'"),
    ],
)
def test_unknown_names_list_options_with_did_you_mean(tmp_path, override, needle):
    msg = one_line_error(bench("run", override, cwd=tmp_path, check=False))
    assert needle in msg
    assert "did you mean" in msg or "valid:" in msg


def test_edited_split_is_refused_and_runs_are_kept(tmp_path):
    args = write_dataset(tmp_path, good_csv())
    bench("run", *args, "model=pop", cwd=tmp_path)
    (split_dir,) = (tmp_path / "data" / "splits" / "mycsv").iterdir()
    test_file = split_dir / "test.parquet"
    data = bytearray(test_file.read_bytes())
    data[-40] ^= 0x01
    test_file.write_bytes(bytes(data))
    db_before = hashlib.sha256((tmp_path / "mlflow.db").read_bytes()).hexdigest()
    msg = one_line_error(bench("run", *args, "model=random", cwd=tmp_path, check=False))
    assert "test.parquet" in msg and "differs from manifest" in msg
    assert test_file.read_bytes() == bytes(data)  # not re-made
    assert hashlib.sha256((tmp_path / "mlflow.db").read_bytes()).hexdigest() == db_before


def test_split_folder_from_another_config_is_refused(tmp_path):
    args = write_dataset(tmp_path, good_csv())
    bench("run", *args, "model=pop", cwd=tmp_path)
    (split_dir,) = (tmp_path / "data" / "splits" / "mycsv").iterdir()
    # the same folder name, but the manifest says it was made from another config
    manifest = split_dir / "manifest.json"
    text = manifest.read_text()
    import json

    m = json.loads(text)
    m["config_fingerprint"] = "f" * 64
    manifest.write_text(json.dumps(m))
    msg = one_line_error(
        bench("run", *args, "model=pop", "tracking.force=true", cwd=tmp_path, check=False)
    )
    assert "another config" in msg and str(split_dir) in msg
