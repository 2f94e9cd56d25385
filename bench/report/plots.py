"""What the report's figures plot, and their files: every logged metric's cells over seeds with
bootstrap CIs over users where per-user values exist, the fairness groups' sizes, and
``draw_figures``, which writes each figure at one-column and two-column width. How each
figure is drawn is ``bench.report.figures``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

from bench.report import figures as figs
from bench.report import stats
from bench.report.comparisons import Report, model_cells
from bench.report.leaderboard import Cell
from bench.report.runs import Selection
from bench.report.spec import ReportConfig


def figure_data(selection: Selection) -> dict[str, dict[str, Cell]]:
    keys = sorted({k for r in selection.runs for k in r.metrics})
    return model_cells(selection, keys)


@dataclass(frozen=True)
class Point:
    """A figure's value: mean and std over seeds, and a bootstrap CI over users (lo, hi)."""

    mean: float
    std: float
    n: int
    lo: float = math.nan
    hi: float = math.nan


#: keys whose figure error bars are bootstrap CIs over users (when per-user values exist)
CI_PATTERN = re.compile(r"^(ndcg|recall|novelty)_at_\d+$")


def with_cis(data: dict[str, dict[str, Cell]], users: dict[str, Any],
             cfg: ReportConfig) -> dict[str, dict[str, Any]]:
    """``data`` with a bootstrap CI over users on the per-user keys the figures plot."""
    out: dict[str, dict[str, Any]] = {}
    for model, cells in data.items():
        frame = users.get(model)
        row: dict[str, Any] = {}
        for k, c in cells.items():
            if frame is not None and CI_PATTERN.match(k) and k in frame.columns:
                lo, hi = stats.bootstrap_ci(frame[k].to_numpy(), cfg.n_bootstrap, cfg.seed)
                row[k] = Point(c.mean, c.std, c.n, lo, hi)
            else:
                row[k] = c
        out[model] = row
    return out


def min_group_size(selection: Selection) -> int:
    """The runs' ``metrics.fairness.min_group_size`` (the largest; 1 for older runs)."""
    values = [r.params.get("metrics.fairness.min_group_size") for r in selection.runs]
    return max((int(v) for v in values if v and v.isdigit()), default=1)


def small_groups(report: Report, min_size: int) -> str:
    """'3 of 29 groups' under ``min_size`` users (from ``n_users/<attr>/<group>``)."""
    sizes: dict[str, float] = {}
    for r in report.selection.runs:
        for k, v in r.metrics.items():
            if k.startswith("n_users/") and not k.startswith("n_users/segment/"):
                sizes[k] = max(sizes.get(k, 0.0), v)
    n_small = sum(0 < v < min_size for v in sizes.values())
    return f"{n_small} of {len(sizes)} groups"


def draw_figures(report: Report, out: Path) -> tuple[list[str], list[str]]:
    """Write every figure asked for (default: all) at one-column width (``<name>.png/.pdf``,
    3.3 in) and two-column width (``<name>-wide.png/.pdf``, 7 in); returns (files written,
    skip notes)."""
    selection, cfg = report.selection, report.config
    data = with_cis(figure_data(selection), report.users, cfg)
    written: list[str] = []
    skipped: list[str] = []
    for name in [f for f in cfg.figures or list(figs.FIGURES) if f in figs.FIGURES]:
        if name == "accuracy_vs_latency" and len(selection.devices) > 1:
            skipped.append(f"{name}: runs come from {len(selection.devices)} devices "
                           f"({', '.join(selection.devices)}); rebuild with --device")
            continue
        kw = {"min_group_size": min_group_size(selection)} if name == "fairness" else {}
        draw = partial(figs.FIGURES[name], data, **kw)
        _at_both_widths(draw, out, name, written, skipped)
    for name in figs.TUNING_FIGURES if selection.curves else ():
        if cfg.figures and name not in cfg.figures:
            continue
        metric = selection.runs[0].tag("tuning.metric") or "valid/ndcg_at_10"
        draw = partial(figs.TUNING_FIGURES[name], selection.curves, metric)
        _at_both_widths(draw, out, name, written, skipped)
    return written, skipped


def _at_both_widths(draw: Callable[..., Any], out: Path, name: str, written: list[str],
                    skipped: list[str]) -> None:
    """``draw(size=...)`` at one-column and two-column width, each saved as PNG and PDF (file
    names appended to ``written``); a figure that cannot be drawn is a note in ``skipped``."""
    import matplotlib

    for size, suffix in (("column", ""), ("wide", "-wide")):
        with matplotlib.rc_context(cast(Any, figs.FONTS[size])):
            fig, reason = draw(size=size)
            if fig is None:
                skipped.append(f"{name}: {reason}")
                return
            written += [p.name for p in figs.save(fig, out, name + suffix)]
