"""The latency pass of a remote LLM backend is bounded and announced: its extra calls are
sized to the evaluation, said (with ``latency=disabled``) before they are made, and counted."""

from __future__ import annotations

import re

import pytest

from baselines.llm.testing import StubLLMServer

from .conftest import bench, runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _args(stub) -> list[str]:
    return [
        "run", "model=llm-rerank", "model.params.backend=openai",
        f"model.params.base_url={stub.base_url}", "model.params.llm=stub-model",
        "model.params.n_candidates=10", "dataset=ml-100k",
    ]  # fmt: skip


def test_remote_latency_pass_is_sized_to_the_evaluation_and_announced(tmp_path):
    with StubLLMServer() as stub:
        out = bench(*_args(stub), cwd=tmp_path, env={"OPENAI_API_KEY": "x"})  # default latency
        total = len(stub.state.requests)
    (run,) = runs(tmp_path)
    m = run.data.metrics
    (line,) = [x for x in out.stderr.splitlines() if "latency pass: llm-rerank calls" in x]
    assert "latency=disabled sends none" in line and "latency.remote_requests" in line
    said = int(re.search(r"sends about (\d+) more", line).group(1))
    evaluation = int(re.search(r"the evaluation sent (\d+) request", line).group(1))
    extra = total - int(m["llm_backend_calls"])  # timed requests are never replayed
    assert 0 < extra <= said  # announced before, never exceeded
    # sized to the evaluation: a fraction of its calls, not the 476 users of the local default
    assert extra <= evaluation // 2, (extra, evaluation)
    assert m["latency_n_requests"] == max(5, -(-int(m["n_users/segment/warm"] + m[
        "n_users/segment/cold"]) // 10))
    assert "latency_p50_ms" in m
    # the announcement comes before the first timed request: it precedes the run's result line
    lines = out.stderr.splitlines()
    assert lines.index(line) < next(i for i, x in enumerate(lines) if "ndcg_at_10 =" in x)


def test_latency_disabled_sends_no_extra_call(tmp_path):
    with StubLLMServer() as stub:
        out = bench(*_args(stub), "latency=disabled", cwd=tmp_path, env={"OPENAI_API_KEY": "x"})
        total = len(stub.state.requests)
    (run,) = runs(tmp_path)
    assert total == run.data.metrics["llm_backend_calls"]
    assert "latency pass:" not in out.stderr


def test_remote_requests_sets_the_count(tmp_path):
    with StubLLMServer() as stub:
        bench(*_args(stub), "latency.remote_requests=3", cwd=tmp_path,
              env={"OPENAI_API_KEY": "x"})  # fmt: skip
    (run,) = runs(tmp_path)
    assert run.data.metrics["latency_n_requests"] == 3
