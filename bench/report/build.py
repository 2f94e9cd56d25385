"""``bench report``: paper tables, figures and provenance rebuilt from MLflow alone.

Writes into a fresh temporary folder next to ``--out`` and moves it into place at the end, so a
failed build never leaves half a report, and an existing non-empty ``--out`` is replaced only
with ``--force``. Files: ``table.tex``, ``table.md``, ``table.csv``, ``<figure>.png|pdf``,
``provenance.json`` and ``README.md`` (what was built, what was skipped and why).

The steps live in their own modules: ``spec`` (what to report), ``comparisons`` (the numbers
and tests), ``tables``, ``plots`` (figures), ``provenance`` (provenance.json, README.md) and
``output`` (which folders may be replaced, and the atomic swap).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.report import runs as rr
from bench.report import stats
from bench.report.comparisons import Report, choose_keys, compute, load_user_tables
from bench.report.leaderboard import add_store_args
from bench.report.output import check_out, protected_paths, refuse_protected, write_out
from bench.report.plots import draw_figures, figure_data
from bench.report.provenance import provenance, readme
from bench.report.runs import Selection, default_tracking_uri
from bench.report.spec import LAYOUTS, ReportConfig, make_config
from bench.report.tables import table_csv, table_md, table_tex

__all__ = ["build", "figure_data", "parser", "report_main", "write_all"]


def build(cfg: ReportConfig, out: Path, uri: str, argv: list[str], force: bool = False) -> Report:
    """Build the report of ``cfg`` from the store at ``uri`` into ``out``."""
    out = out.resolve()
    refuse_protected(out, protected_paths(uri))  # before the store is even opened
    mlflow_client = rr.client(uri)
    check_out(out, force, protected_paths(uri, mlflow_client))  # + the experiments' artifacts
    report = make_report(cfg, mlflow_client, rr.source(uri, mlflow_client))
    write_out(out, force, lambda tmp: write_all(report, tmp, uri, argv),
              lambda: protected_paths(uri, mlflow_client))
    return report


def make_report(cfg: ReportConfig, mlflow_client: Any, runs_from: Any) -> Report:
    """The runs ``cfg`` selects from the store (``runs_from``: a ``bench.report.sources``
    source) and every number the report shows (artifacts through ``mlflow_client``)."""
    selection = select_runs(cfg, runs_from)
    keys = choose_keys(selection, cfg)
    notes: list[str] = []
    users = load_user_tables(selection, mlflow_client, notes)
    untested: dict[str, str] = {}
    pair_tests: list[int] = []
    table = compute(selection, cfg, keys, users, notes, untested, pair_tests)
    return Report(selection, cfg, keys, table, notes, untested, sum(pair_tests), users)


def select_runs(cfg: ReportConfig, runs_from: Any) -> Selection:
    """The comparable FINISHED runs of one dataset+split (``--tuned``: with their studies)."""
    found = rr.find_runs(runs_from, cfg.experiment, dataset=cfg.dataset, split=cfg.split,
                         split_sha256=cfg.split_sha256, device=cfg.device, sweep=cfg.sweep,
                         eval_users=cfg.eval_users, fit_data=cfg.fit_data,
                         candidates=cfg.candidates, tuned=bool(cfg.tuned))
    selection = rr.select(found, cfg.dataset, cfg.split)
    if cfg.tuned:
        selection.tuning = rr.tuning_caption(selection.runs)
        selection.curves = rr.trial_curves(runs_from, selection.runs)
    return selection


def write_all(report: Report, tmp: Path, uri: str, argv: list[str]) -> None:
    """Every file of the report into the folder ``tmp``: tables, figures, README, provenance."""
    texts = {"table.tex": table_tex(report), "table.md": table_md(report),
             "table.csv": table_csv(report)}
    for name, text in texts.items():
        (tmp / name).write_text(text, encoding="utf-8")
    written, skipped = draw_figures(report, tmp)
    report.notes += [f"figure skipped: {s}" for s in skipped]
    files = [*texts, *written, "provenance.json", "README.md"]
    (tmp / "README.md").write_text(readme(report, files, []), encoding="utf-8")
    prov = provenance(report, uri, argv, files)
    (tmp / "provenance.json").write_text(json.dumps(prov, indent=2, default=_json) + "\n",
                                         encoding="utf-8")


def _json(value: Any) -> Any:
    if isinstance(value, float | np.floating) and math.isnan(value):
        return None
    return str(value)


# ----------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench report",
        description="Build paper tables (table.tex, table.md, table.csv), figures (PNG+PDF), "
                    "README.md and provenance.json for one dataset+split from the MLflow runs "
                    "alone. Options override the --spec file.",
        epilog="example:\n  bench report --out reports/out/quickstart-copy --spec "
               "reports/specs/quickstart.yaml\n  bench report --out out/ml1m --dataset ml-1m "
               "--metrics ndcg@10,recall@10 --baseline pop --test randomization\n"
               "  bench report --out out/sweep --sweep PARENT_RUN_ID   (only one sweep's runs)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, type=Path,
                   help="report folder; refused if it exists and is not empty, unless --force")
    p.add_argument("--spec", default=None, help="YAML report spec (see reports/specs/)")
    add_store_args(p)
    _add_statistics_args(p)
    _add_table_args(p)
    p.add_argument("--force", action="store_true",
                   help="replace a non-empty --out (atomically, after the new report is built)")
    return p


def _add_statistics_args(p: argparse.ArgumentParser) -> None:
    """What is computed: metrics, tests, figures, resampling."""
    p.add_argument("--metrics", default=None,
                   help="comma-separated table metrics, ndcg@10 or ndcg_at_10 (default: nDCG, "
                        "recall, hit rate, MRR, coverage and novelty @10, where logged)")
    p.add_argument("--baseline", default=None,
                   help="model the others are tested against (default: no tests); when "
                        "the model has several configurations, its row label, e.g. "
                        "'itemknn (k=100)'")
    p.add_argument("--test", choices=stats.TESTS, default=None,
                   help="paired test over users (default: ttest)")
    p.add_argument("--correction", choices=stats.CORRECTIONS, default=None,
                   help="multiple-testing correction over the table's tests (default: holm)")
    p.add_argument("--alpha", type=float, default=None, help="significance level (default 0.05)")
    p.add_argument("--figures", default=None,
                   help="comma-separated figures, or 'all' (default): accuracy_vs_latency, "
                        "metric_at_k, accuracy_vs_novelty, accuracy_vs_coverage, fairness")
    p.add_argument("--n-resamples", type=int, default=None,
                   help="resamples of the randomisation test (default 10000)")
    p.add_argument("--n-bootstrap", type=int, default=None,
                   help="bootstrap resamples of the CIs over users (default 2000)")
    p.add_argument("--seed", type=int, default=None, help="seed of the resampling (default 0)")


def _add_table_args(p: argparse.ArgumentParser) -> None:
    """How the table shows it: rows, names, precision, float, label, pairwise letters."""
    p.add_argument("--models", default=None,
                   help="comma-separated row labels to show, in this order (default: every "
                        "model, best first by the first metric)")
    p.add_argument("--rename", default=None, metavar="OLD=NEW,...",
                   help="names shown for models (row labels) and metrics (keys), e.g. "
                        "'llm-embed-pop=LLM-Embed+Pop,ndcg_at_10=NDCG@10' (metrics default "
                        "to their paper names: nDCG@10, Recall@10, HR@10)")
    p.add_argument("--precision", type=int, default=None,
                   help="decimals of the table cells (default 4)")
    p.add_argument("--layout", choices=LAYOUTS, default=None,
                   help="table.tex float: column (table), wide (table*), or auto (default: "
                        "table* when the table is wider than a column); a table still wider "
                        "than its width is scaled down, never overfull")
    p.add_argument("--label", default=None,
                   help="\\label of table.tex (default: tab:<dataset>-<split>-<hash of the "
                        "table's rows and metrics>, unique per table)")
    p.add_argument("--all-pairs", action="store_true", default=None,
                   help="test every pair of rows on every metric (one corrected family); a "
                        "cell's superscript letters name the rows it is significantly better "
                        "than (instead of --baseline)")


def report_main(argv: list[str]) -> int:
    """``bench report --out DIR [options]``; returns the exit code (2 for user errors)."""
    args = parser().parse_args(argv)
    try:
        cfg = make_config(args)
        uri = args.tracking_uri or default_tracking_uri()
        report = build(cfg, args.out, uri, argv, force=args.force)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for w in report.selection.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for n in report.selection.notes + report.notes:
        print(f"note: {n}", file=sys.stderr)
    print(f"wrote {args.out} ({len(report.selection.runs)} runs, "
          f"{len(report.table)} models)", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(report_main(sys.argv[1:]))
