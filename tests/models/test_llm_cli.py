"""llm-rerank through the real CLI: bad input fails at build time (one line, exit 2, no MLflow
run); a backend that fails during a run is one line, exit 1, and the run ends FAILED."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from baselines.llm.testing import tiny_causal_lm
from tests.integration.conftest import bench, runs, store

pytestmark = [pytest.mark.integration]
FAST = ["dataset=synthetic", "dataset.params.n_users=200", "dataset.params.n_items=100",
        "dataset.params.n_interactions=3000", "latency.n_requests=5", "latency.warmup=1"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    good = tiny_causal_lm(root / "tiny", hidden=16, layers=1)
    empty = root / "empty"
    empty.mkdir()
    bin_only = root / "bin-only"
    bin_only.mkdir()
    for f in good.iterdir():
        name = "pytorch_model.bin" if f.name == "model.safetensors" else f.name
        (bin_only / name).write_bytes(f.read_bytes())  # never loaded
    return {"empty": empty, "bin-only": bin_only}


CASES = {
    "no-llm": ([], "llm-rerank: backend=hf needs params.llm=<local model folder>"),
    "nonexistent": (
        ["model.params.llm=/nonexistent/model"],
        "llm-rerank: params.llm='/nonexistent/model' does not exist",
    ),
    "first-stage-typo": (
        ["model.params.backend=openai", "model.params.llm=m", "model.params.first_stage=popp"],
        "llm-rerank: first_stage='popp' is not a registered model (did you mean 'pop'?)",
    ),
    "empty-folder": (
        ["model.params.llm={empty}"],
        "is not a usable model folder: missing config.json; tokenizer files",
    ),
    "bin-only": (
        ["model.params.llm={bin-only}"],
        "found only pytorch_model.bin: pickle weights are refused for safety",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_llm_input_fails_before_any_run(tmp_path, folders, case):
    overrides, want = CASES[case]
    overrides = [o.format(**{k: str(v) for k, v in folders.items()}) for o in overrides]
    out = bench("run", "model=llm-rerank", *FAST, *overrides, cwd=tmp_path, check=False)
    assert out.returncode == 2, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and want in errors[0], out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "[bench] run " not in out.stderr
    assert not (tmp_path / "mlflow.db").exists() or runs(tmp_path) == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_backend_failure_is_one_line_exit_1_and_the_run_fails(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/v1"  # nothing listens there
    out = bench(
        "run",
        "model=llm-rerank",
        "model.params.backend=openai",
        f"model.params.base_url={url}",
        "model.params.llm=stub-model",
        "model.params.n_candidates=5",
        "model.params.max_retries=1",
        "model.params.backoff_s=0.01",
        *FAST,
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 1, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out.stderr[-3000:]
    assert errors[0].startswith(f"error: llm-rerank: POST {url}/chat/completions")
    assert "failed after 2 attempt(s): connection error" in errors[0]
    assert "Traceback" not in out.stderr
    (run,) = runs(tmp_path)
    assert run.info.status == "FAILED"
    client = store(tmp_path).client
    assert "error.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}
    text = Path(client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path))).read_text()
    assert "LLMBackendError" in text
