"""A metric-only setting never splits a model in two (issue: after the quickstart, which sets
metrics.item_embeddings, a plain sweep gave 'pop (metrics.item_embeddings=-)' and
'pop (metrics.item_embeddings=None)' rows, and --baseline pop exited 2)."""

from __future__ import annotations

import pytest

from bench.report.build import report_main
from bench.report.leaderboard import leaderboard_main

from .test_protocol import run

pytestmark = [pytest.mark.integration]


def test_metric_settings_do_not_split_a_model(tmp_path, capsys):
    emb = "metrics.item_embeddings={encoder: '', template: '{title} ({year})'}"
    a = run(tmp_path, "model=pop", emb)
    b = run(tmp_path, "model=pop", "seed=1", "eval.ks=[10]")
    run(tmp_path, "model=itemknn")
    assert a.data.tags["bench.config_key"] == b.data.tags["bench.config_key"]
    assert a.data.tags["bench.run_key"] != b.data.tags["bench.run_key"]
    capsys.readouterr()
    uri = ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    assert leaderboard_main([*uri, "--format", "csv"]) == 0
    rows = [line.split(",")[1] for line in capsys.readouterr().out.splitlines()[1:]]
    assert sorted(rows) == ["itemknn", "pop"]
    out = tmp_path / "report"
    assert report_main([*uri, "--out", str(out), "--baseline", "pop", "--metrics",
                        "ndcg_at_10"]) == 0
    assert "| pop |" in (out / "table.md").read_text()
