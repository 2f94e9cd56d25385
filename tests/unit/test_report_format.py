"""Report formatting, figures, selection rules and the fast-import promise (no MLflow store)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.errors import BenchError
from bench.report import figures, metrics
from bench.report.leaderboard import Cell, fmt, leaderboard_main
from bench.report.runs import ReportError, Run, filter_string, redact_uri, select
from bench.report.spec import load_spec
from bench.report.tables import latex_escape, ranks

SHA = "a" * 64


def run(model, seed, sha=SHA, start=1, defs="1", version="0.1.0", **metrics_):
    tags = {"bench.model": model, "bench.seed": str(seed), "bench.dataset": "toy",
            "bench.split": "t", "bench.split_sha256": sha, "bench.metric_definitions": defs,
            "bench.version": version, "bench.device": "cpu"}
    return Run(f"{model}{seed}{start}", f"{model}-toy-t-s{seed}", start, tags, metrics_)


def test_metric_adapter_uses_the_catalog():
    assert metrics.normalize_key("ndcg@10") == "ndcg_at_10"
    assert metrics.normalize_key("ndcg_at_10/gender/F") == "ndcg_at_10/gender/F"
    assert metrics.higher_is_better("ndcg_at_10")
    assert not metrics.higher_is_better("latency_p50_ms")
    assert not metrics.higher_is_better("ndcg_at_10/gender/gap")
    assert not metrics.higher_is_better("latency_ms/retrieve")  # unknown to the catalog
    assert metrics.display("ndcg_at_10") == "ndcg@10"
    assert metrics.device_bound("latency_p95_ms") and not metrics.device_bound("n_parameters")


def test_fmt_and_latex_escape():
    assert fmt(0.123456) == "0.1235" and fmt(1234.56) == "1234.6" and fmt(math.nan) == "—"
    assert latex_escape("a_b&c%d$e#f{g}h~i^j\\") == (
        r"a\_b\&c\%d\$e\#f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}")


def test_redact_uri_and_filter_string():
    assert redact_uri("https://user:secret@mlflow.example:5000/x") == \
        "https://***@mlflow.example:5000/x"
    assert "secret" not in redact_uri("postgresql://u:secret@db/mlflow?password=secret")
    assert redact_uri("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
    f = filter_string(dataset="ml-1m", split_sha256="abc")
    assert f == ("attributes.status = 'FINISHED' and tags.\"bench.dataset\" = 'ml-1m' and "
                 "tags.\"bench.split_sha256\" LIKE 'abc%'")
    with pytest.raises(ReportError, match="characters"):
        filter_string(dataset="x' or 1=1 --")


def test_select_refuses_mixed_definitions_and_flags_versions():
    with pytest.raises(ReportError, match="metric definitions versions: 1 .*2 "):
        select([run("pop", 0), run("ease", 0, defs="2")])
    sel = select([run("pop", 0, version="0.1.0"), run("ease", 0, version="0.2.0")])
    assert "different bench versions" in sel.warnings[0]


def test_select_keeps_most_recent_run_per_model_and_seed():
    old, new = run("pop", 0, start=1, ndcg_at_10=0.1), run("pop", 0, start=5, ndcg_at_10=0.2)
    sel = select([old, new, run("pop", 1)])
    assert {r.run_id for r in sel.runs} == {new.run_id, "pop11"}
    assert sel.ignored[0]["run_id"] == old.run_id and "ignored" in sel.notes[0]


def test_ranks_respect_direction_and_ties():
    from bench.report.comparisons import Comparison

    table = {m: {"ndcg_at_10": Comparison(Cell(v, math.nan, 1)),
                 "latency_p50_ms": Comparison(Cell(10 * v, math.nan, 1))}
             for m, v in {"a": 0.3, "b": 0.5, "c": 0.5, "d": 0.1}.items()}
    assert ranks(table, "ndcg_at_10") == {"a": 2, "b": 1, "c": 1, "d": 0}
    assert ranks(table, "latency_p50_ms") == {"a": 2, "b": 0, "c": 0, "d": 1}


def test_spec_validation(tmp_path: Path):
    spec = tmp_path / "s.yaml"
    spec.write_text("dataset: ml-1m\nbaselne: pop\n")
    with pytest.raises(BenchError, match="did you mean 'baseline'"):
        load_spec(spec)
    shipped = Path(__file__).parents[2] / "reports" / "specs" / "quickstart.yaml"
    assert set(load_spec(shipped)) <= {"dataset", "split", "metrics", "baseline", "test",
                                       "correction", "alpha", "figures", "n_resamples",
                                       "n_bootstrap", "seed"}


DATA = {
    "pop": {"ndcg_at_10": Cell(0.10, 0.01, 3), "ndcg_at_20": Cell(0.12, 0.01, 3),
            "recall_at_10": Cell(0.2, 0.0, 3), "recall_at_20": Cell(0.3, 0.0, 3),
            "latency_p50_ms": Cell(0.05, 0.001, 3), "novelty_at_10": Cell(5.0, 0.1, 3),
            "ndcg_at_10/gender/F": Cell(0.09, 0.0, 3), "ndcg_at_10/gender/M": Cell(0.11, 0.0, 3)},
    "ease": {"ndcg_at_10": Cell(0.30, 0.02, 3), "ndcg_at_20": Cell(0.33, 0.02, 3),
             "recall_at_10": Cell(0.4, 0.0, 3), "recall_at_20": Cell(0.5, 0.0, 3),
             "latency_p50_ms": Cell(0.8, 0.01, 3), "novelty_at_10": Cell(6.0, 0.1, 3),
             "ndcg_at_10/gender/F": Cell(0.28, 0.0, 3), "ndcg_at_10/gender/M": Cell(0.31, 0.0, 3)},
    "slow": {"ndcg_at_10": Cell(0.20, math.nan, 1), "latency_p50_ms": Cell(3.0, math.nan, 1)},
}


def test_figures_plot_the_series():
    fig, reason = figures.metric_at_k(DATA)
    assert reason is None
    ndcg_ax = fig.axes[0]
    lines = {c.get_label(): (list(c.lines[0].get_xdata()), list(c.lines[0].get_ydata()))
             for c in ndcg_ax.containers}
    assert lines["pop"] == ([10, 20], [0.10, 0.12]) and lines["ease"] == ([10, 20], [0.30, 0.33])
    assert "slow" in lines and lines["slow"] == ([10], [0.20])

    fig, _ = figures.accuracy_vs_latency(DATA)
    ax = fig.axes[0]
    front = next(ln for ln in ax.get_lines() if ln.get_gid() == "pareto-front")
    assert list(front.get_xdata()) == [0.05, 0.8] and list(front.get_ydata()) == [0.10, 0.30]
    assert ax.get_xscale() == "log"
    assert figures.pareto_front([(1, 0.1), (2, 0.3), (3, 0.2), (4, 0.4)]) == [
        (1, 0.1), (2, 0.3), (4, 0.4)]

    fig, _ = figures.fairness(DATA)
    bars = {(p.get_gid(), round(p.get_height(), 6)) for p in fig.axes[0].patches}
    assert {("pop", 0.09), ("pop", 0.11), ("ease", 0.28), ("ease", 0.31)} <= bars

    fig, reason = figures.tradeoff(DATA, "coverage_at_10")
    assert fig is None and "coverage_at_10" in reason
    fig, _ = figures.tradeoff(DATA, "novelty_at_10")
    points = {c.get_label(): c.lines[0].get_xydata().tolist() for c in fig.axes[0].containers}
    assert points == {"pop": [[5.0, 0.10]], "ease": [[6.0, 0.30]]}


def test_figure_png_is_not_blank(tmp_path: Path):
    from matplotlib.image import imread

    fig, _ = figures.metric_at_k(DATA)
    png, pdf = figures.save(fig, tmp_path, "m")
    img = imread(png)
    assert img.shape[0] > 300 and img[..., :3].std() > 0.05
    # the two model colours (matplotlib's C0 blue and C1 orange) are drawn
    blue = ((abs(img[..., 0] - 0.12) < 0.05) & (abs(img[..., 2] - 0.71) < 0.05)).sum()
    orange = ((abs(img[..., 0] - 1.0) < 0.05) & (abs(img[..., 1] - 0.5) < 0.05)).sum()
    assert blue > 50 and orange > 50
    assert pdf.read_bytes().startswith(b"%PDF")


def test_help_and_fast_import():
    with pytest.raises(SystemExit) as exc:
        leaderboard_main(["--help"])
    assert exc.value.code == 0
    code = ("import sys, bench.report, bench.report.leaderboard, bench.report.build; "
            "print(sorted(m for m in ('mlflow', 'torch', 'ranx', 'matplotlib', 'scipy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_model_deserialization_in_report_code():
    """G7: the report path never loads models or pickles from the tracking store."""
    src = Path(__file__).parents[2] / "bench" / "report"
    pattern = re.compile(r"load_model|import pickle|pickle\.loads?\(|joblib|torch\.load"
                         r"|cloudpickle")
    offenders = [p.name for p in src.glob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_each_model_keeps_one_distinct_style_in_every_figure():
    many = {f"model{i:02d}": {"ndcg_at_10": Cell(0.1 + i / 100, 0.0, 1),
                              "ndcg_at_20": Cell(0.2 + i / 100, 0.0, 1),
                              "novelty_at_10": Cell(1.0 + i, 0.0, 1)} for i in range(12)}
    style = figures.styles(list(many))
    assert len({(s["color"], s["marker"]) for s in style.values()}) == 12
    assert len({s["color"] for s in style.values()}) == 12  # tab20 beyond 10 models
    from matplotlib.colors import to_hex

    fig, _ = figures.metric_at_k(many, names=("ndcg",))
    line_colors = {c.get_label(): to_hex(c.lines[0].get_color()) for c in fig.axes[0].containers}
    fig, _ = figures.tradeoff(many, "novelty_at_10")
    point_colors = {c.get_label(): to_hex(c.lines[0].get_color()) for c in fig.axes[0].containers}
    assert line_colors == point_colors == {m: s["color"] for m, s in style.items()}
    # with many models, points are named in the legend only (annotations would overlap)
    assert not fig.axes[0].texts


def test_fairness_groups_in_natural_order_and_bounded_width():
    data = {"pop": {f"ndcg_at_10/{a}/{g}": Cell(0.1, 0.0, 1)
                    for a, gs in {"activity": ["hot", "cold", "warm"],
                                  "age": ["56plus", "18-24", "under18", "25-34"],
                                  "occupation": [f"occ {j}" for j in range(21)]}.items()
                    for g in gs}}
    groups = figures.fairness_groups(data)
    assert groups["activity"] == ["cold", "warm", "hot"]
    assert groups["age"] == ["under18", "18-24", "25-34", "56plus"]
    assert groups["occupation"][:3] == ["occ 0", "occ 1", "occ 2"]
    fig, _ = figures.fairness(data)
    width, height = fig.get_size_inches()
    assert width <= 14 and len(fig.axes) == 3 and height < 10


def test_terminal_leaderboard_never_drops_or_cuts_a_column():
    """At 80 columns the rich table used to drop every column after recall and cut headers to
    'recal…'; at 120 it dropped latency and n_seeds. Now narrow terminals get several tables."""
    import math

    from bench.report.leaderboard import Cell, Row, header, render_rich

    keys = ["ndcg_at_10", "recall_at_10", "hit_rate_at_10", "mrr_at_10", "coverage_at_10",
            "novelty_at_10", "latency_p50_ms"]
    rows = [Row(f"model-{i}", 3, {k: Cell(0.1234 + i, 0.0123, 3) for k in keys}, ())
            for i in range(3)]
    rows.append(Row("itemknn (k=100, shrink=10)", 1, {k: Cell(0.5, math.nan, 1) for k in keys},
                    ()))
    for width in (80, 120, 200):
        out = render_rich(rows, keys, "a title", width)
        assert max(len(line.rstrip()) for line in out.splitlines()) <= width
        for head in header(keys):
            assert head in out, (width, head)
        assert "…" not in out
        assert out.count("itemknn (k=100, shrink=10)") >= 1
    assert "columns 1/" in render_rich(rows, keys, "t", 80)
    assert "columns" not in render_rich(rows, keys, "t", 200)


def test_figures_fit_one_column_or_both_and_show_uncertainty():
    """3.3 in for one column of a two-column paper, 7 in for both; a cell's bootstrap CI
    (lo, hi) is its error bar, else the std over seeds."""
    from bench.report.plots import Point

    for size, width in (("column", 3.3), ("wide", 7.0)):
        for fig, _ in (figures.metric_at_k(DATA, size=size),
                       figures.accuracy_vs_latency(DATA, size=size),
                       figures.fairness(DATA, size=size)):
            assert fig.get_size_inches()[0] == pytest.approx(width)
    data = {"pop": {"ndcg_at_10": Point(0.10, 0.01, 3, 0.07, 0.14),
                    "ndcg_at_20": Point(0.12, 0.01, 3, 0.09, 0.16)}}
    fig, _ = figures.metric_at_k(data, names=("ndcg",))
    (container,) = fig.axes[0].containers
    segs = container.lines[2][0].get_segments()
    assert [tuple(np.round(s[:, 1], 6)) for s in segs] == [(0.07, 0.14), (0.09, 0.16)]


def test_pareto_front_ignores_latency_noise():
    """A 0.02 ms (2 %) latency advantage does not make a less accurate model Pareto-optimal."""
    pts = [(1.00, 0.30), (0.98, 0.10), (5.0, 0.40)]
    assert figures.pareto_front(pts) == [(0.98, 0.10), (1.00, 0.30), (5.0, 0.40)]
    assert figures.pareto_front(pts, 0.10) == [(1.00, 0.30), (5.0, 0.40)]


def test_fairness_hatches_small_groups_names_sizes_and_draws_zero_bars():
    data = {"pop": {"ndcg_at_10/occupation/retired": Cell(0.49, math.nan, 1),
                    "ndcg_at_10/occupation/student": Cell(0.0, math.nan, 1),
                    "n_users/occupation/retired": Cell(1.0, math.nan, 1),
                    "n_users/occupation/student": Cell(20.0, math.nan, 1)}}
    fig, _ = figures.fairness(data, min_group_size=5)
    ax = fig.axes[0]
    bars = {round(p.get_height(), 2): p for p in ax.patches}
    assert bars[0.49].get_hatch() and not bars[0.0].get_hatch()
    assert bars[0.0].get_linewidth() > 0  # a zero bar is a visible line, not a gap
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["retired\nn=1", "student\nn=20"]
