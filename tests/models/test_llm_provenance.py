"""Provenance of weights named by a path: new weights under the same folder are a new
configuration (a new run key and a tag), never a reused run."""

from __future__ import annotations

import shutil

import pytest

from baselines.llm.testing import tiny_encoder
from tests.integration.conftest import bench, runs

pytestmark = [pytest.mark.integration]


def test_new_encoder_weights_under_the_same_path_are_a_new_run(tmp_path):
    enc = tmp_path / "enc"
    tiny_encoder(enc, seed=0)
    args = ["run", "model=llm-embed", f"model.params.encoder={enc}", "latency=disabled",
            "dataset=synthetic", "dataset.params.n_users=200", "dataset.params.n_items=100",
            "dataset.params.n_interactions=3000"]
    bench(*args, cwd=tmp_path)
    again = bench(*args, cwd=tmp_path)
    assert "skip llm-embed" in again.stderr + again.stdout  # same weights: reused
    shutil.rmtree(enc)
    tiny_encoder(enc, seed=1)  # other weights, same path and config
    bench(*args, cwd=tmp_path)
    done = runs(tmp_path, "FINISHED")
    assert len(done) == 2
    tags = [r.data.tags for r in done]
    shas = {t["bench.provenance.encoder_sha256"] for t in tags}
    assert len(shas) == 2 and all(len(s) == 64 for s in shas)
    assert len({t["bench.run_key"] for t in tags}) == 2
    assert len({t["bench.config_key"] for t in tags}) == 2  # never averaged as seeds
    params = [r.data.params["model.params.encoder"] for r in done]
    assert params[0] == params[1] == str(enc)  # the params alone cannot tell them apart
