"""The report's ``provenance.json`` (run ids, git shas, split sha256, command) and ``README.md``
(what was built, how the statistics were computed, what was skipped and why).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from bench.report import stats
from bench.report.comparisons import Report
from bench.report.figures import LATENCY_TOLERANCE
from bench.report.output import GENERATOR
from bench.report.plots import min_group_size, small_groups
from bench.report.runs import Run, Selection, redact_uri
from bench.report.tables import table_md


def command_line(argv: list[str]) -> list[str]:
    """``bench report <argv>`` with any URI's credentials redacted."""
    return ["bench", "report", *[redact_uri(a) if "://" in a else a for a in argv]]


def provenance(report: Report, uri: str, argv: list[str], files: list[str]) -> dict[str, Any]:
    sel = report.selection
    return {
        "generator": GENERATOR,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command_line(argv),
        "tracking_uri": redact_uri(uri),
        "experiment": report.config.experiment,
        "dataset": sel.dataset,
        "split": sel.split,
        "split_protocol": sel.split_protocol,
        "split_sha256": sel.split_sha256,
        "metric_definitions": sel.metric_definitions,
        "bench_versions": sorted({r.tag("version") or "unrecorded" for r in sel.runs}),
        "devices": sel.devices,
        "config": asdict(report.config),
        "metrics": report.keys,
        "runs": [r.provenance() for r in _ordered(sel)],
        "ignored_runs": sel.ignored,
        "warnings": sel.warnings,
        "notes": sel.notes + report.notes,
        "files": sorted(files),
    }


def _ordered(sel: Selection) -> list[Run]:
    return [r for runs in sel.by_model().values() for r in runs]


def readme(report: Report, files: list[str], skipped: list[str]) -> str:
    """README.md: what was built from which runs, the table, how its statistics and figures
    were made, and every note and warning."""
    sel = report.selection
    lines = [f"# Report: {sel.dataset} / {sel.split}", "",
             f"Built by `bench report` from {len(sel.runs)} MLflow runs "
             f"({len(sel.by_model())} models); every number comes from MLflow "
             "(see `provenance.json` for run ids, git shas and the command).", "",
             "## Files", "", *[f"- `{f}`" for f in sorted(files)], "", "## Table", "",
             table_md(report), *_statistics(report), *_figures(report)]
    notes = sel.notes + report.notes + [f"figure skipped: {s}" for s in skipped]
    if notes or sel.warnings:
        lines += ["", "## Notes", "", *[f"- warning: {w}" for w in sel.warnings],
                  *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def _statistics(report: Report) -> list[str]:
    """README lines: what the CSV's columns are and how they were computed."""
    cfg = report.config
    lines = ["## Statistics", "",
             "- mean ± sample std over seeds; `_seed_ci_*`: t-based 95 % CI over seeds;",
             f"- `_ci_*`: 95 % percentile bootstrap CI over users ({cfg.n_bootstrap} resamples, "
             f"seed {cfg.seed}) of the per-user metric averaged over seeds;"]
    if cfg.baseline:
        lines.append(f"- `_p`: {stats.TEST_NAMES[cfg.test]} against {cfg.baseline} on the "
                     "seed-averaged per-user values; `_p_adj`: "
                     f"{stats.CORRECTION_NAMES[cfg.correction]}-corrected; `_dz`: Cohen's d_z.")
    else:
        lines.append("- no baseline given: no significance tests (`--baseline MODEL`).")
    return lines


def _figures(report: Report) -> list[str]:
    """README lines: the figures' sizes, error bars, Pareto tolerance and small groups."""
    lines = ["", "## Figures", "",
             "- `<name>.pdf`/`.png` fit one column of a two-column paper (3.3 in), "
             "`<name>-wide.*` both columns (7 in);",
             "- error bars: 95 % bootstrap CI over users for nDCG, recall and novelty (per-user "
             "values averaged over seeds), else the std over seeds;",
             "- accuracy vs latency: latencies within "
             f"{int(100 * LATENCY_TOLERANCE)} % of each other count as one cost on the Pareto "
             "front (timer noise);"]
    small = min_group_size(report.selection)
    if small > 1:
        lines.append(f"- fairness: groups with fewer than {small} evaluated users "
                     f"(metrics.fairness.min_group_size) are hatched and left out of the logged "
                     f"gap ({small_groups(report, small)}); every bar names its group size.")
    return lines
