"""The MLflow runs table as a leaderboard, checked in a real browser against a real server.

One real ``bench run`` sweep (pop, itemknn; 2 seeds) on a small synthetic dataset; then
``mlflow server`` on that store and headless Chromium on the ``bench-leaderboard`` view the
store carries. The runs table virtualizes its columns (only columns inside the window are in the
page), so finding ``ndcg_at_10`` in a 1280-pixel window means it is there without scrolling.
The same store also checks that the SQL reader of ``bench leaderboard`` and MLflow's client
read identical runs.
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import bench
from .pg_server import serve

pytestmark = pytest.mark.integration

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("ui")
    bench("run", "-m", "model=pop,itemknn", "seed=0,1", "dataset=synthetic",
          "dataset.params.n_users=200", "dataset.params.n_items=120",
          "dataset.params.n_interactions=4000", "latency=disabled", cwd=cwd)
    return cwd


def test_store_carries_the_leaderboard_view(swept: Path):
    from bench import tracking

    store = tracking.Store(f"sqlite:///{swept}/mlflow.db")
    tags = store.client.get_experiment(store.experiment_id).tags
    assert tags[tracking.KIND_TAG] == "custom_model_development"
    view = json.loads(tags[tracking.VIEW_TAG])
    assert view["orderByKey"] == "metrics.`ndcg_at_10`" and view["orderByAsc"] is False
    assert view["selectedColumns"][:2] == ["metrics.`ndcg_at_10`", "metrics.`recall_at_10`"]
    assert view["columnOrder"] == view["selectedColumns"]
    assert "attributes.`Dataset`" in view["selectedColumns"]
    assert store.view_url().endswith(
        f"/#/experiments/{store.experiment_id}/runs?viewStateShareKey=bench-leaderboard")


def test_sql_reader_reads_what_mlflow_reads(swept: Path):
    from bench.report import runs as rr
    from bench.report.sources import ClientSource, SqliteSource

    uri = f"sqlite:///{swept}/mlflow.db"
    fast = rr.source(uri)
    assert isinstance(fast, SqliteSource)
    slow = ClientSource(rr.client(uri))
    experiment = slow.experiment_id("bench")
    assert fast.experiment_id("bench") == experiment and fast.experiment_names() == \
        slow.experiment_names()
    for tags, finished in (({}, True), ({}, False), ({"bench.model": "pop"}, True),
                           ({"bench.sweep": "parent"}, False)):
        a, b = fast.runs(experiment, tags, finished=finished), slow.runs(
            experiment, tags, finished=finished)
        assert [r.run_id for r in a] == [r.run_id for r in b] and a
        for x, y in zip(a, b, strict=True):
            assert (x.run_name, x.start_time, x.tags, x.params, x.experiment_id,
                    x.artifact_uri) == (y.run_name, y.start_time, y.tags, y.params,
                                        y.experiment_id, y.artifact_uri)
            assert x.metrics.keys() == y.metrics.keys()
            assert all(x.metrics[k] == y.metrics[k] or (math.isnan(x.metrics[k])
                       and math.isnan(y.metrics[k])) for k in x.metrics)
    sha = a[0].split_sha256[:6]
    assert [r.run_id for r in fast.runs(experiment, {}, sha)] == \
        [r.run_id for r in slow.runs(experiment, {}, sha)]
    (parent,) = fast.runs(experiment, {"bench.sweep": "parent"}, finished=False)
    sweep_id = parent.tags["bench.sweep_id"]
    assert rr.resolve_sweep(fast, "bench", f"sweep-{sweep_id}") == parent
    assert rr.resolve_sweep(slow, "bench", sweep_id[:6]) == parent
    assert fast.get_run("0" * 32) is None and slow.get_run("0" * 32) is None


@pytest.fixture(scope="module")
def server(swept: Path):
    with serve(f"sqlite:///{swept}/mlflow.db", swept, workers=1) as url:
        yield url


def _page_text(browser: str, url: str) -> str:
    out = subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800",
         "--virtual-time-budget=30000", "--dump-dom", url],
        capture_output=True, text=True, timeout=300)
    page = re.sub(r"<(script|style)\b.*?</\1>", "", out.stdout, flags=re.S)
    return html.unescape(re.sub(r"\s*(<[^>]+>\s*)+", " | ", page))


def test_runs_page_is_a_leaderboard(swept: Path, server: str):
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        pytest.skip("no Chromium (apt-get install chromium); .ci/run installs it")
    from bench import tracking

    store = tracking.Store(f"sqlite:///{swept}/mlflow.db")
    best = max((r for r in store.search("attributes.status = 'FINISHED'")
                if "ndcg_at_10" in r.data.metrics), key=lambda r: r.data.metrics["ndcg_at_10"])
    text = _page_text(browser, store.view_url(server))
    header = text[text.index("Run Name"):]
    for column in ("ndcg_at_10", "recall_at_10", "hit_rate_at_10", "mrr_at_10"):
        assert f"| {column} |" in header, column
    # model and seed lead every run name; the best run comes first, with its ndcg@10
    names = re.findall(r"\| ((?:pop|itemknn)-s[01]-synthetic-temporal-global) \|", text)
    assert sorted(names) == sorted(f"{m}-s{s}-synthetic-temporal-global"
                                   for m in ("pop", "itemknn") for s in (0, 1))
    assert names[0] == best.info.run_name
    assert f"| {best.data.metrics['ndcg_at_10']!r}"[:12] in text
    assert "| sweep-" not in text  # the view keeps evaluation runs only, not sweep parents
