"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot state).

Every figure function takes ``{model: {metric key: Cell}}`` (means and stds over seeds; a
cell with ``lo``/``hi`` carries a bootstrap CI over users, drawn as its error bar) and
``size``: ``column`` (3.3 in wide, panels stacked, legend below: one column of a two-column
paper) or ``wide`` (7 in, panels side by side: both columns). It returns ``(Figure, None)`` or
``(None, reason)`` when the metrics it needs are absent; the builder writes the reason into
the report's README. Artists carry the model name as ``gid`` and ``label`` so tests can check
the plotted series.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.report import metrics as cat

Data = Mapping[str, Mapping[str, Any]]  # model -> key -> Cell (mean, std, n)
FigureResult = tuple[Any, str | None]

ACCURACY = "ndcg_at_10"
LATENCY = "latency_p50_ms"
#: figure widths (inches) of one column and of both columns of a two-column paper
WIDTHS = {"column": 3.3, "wide": 7.0}
#: font sizes (pt) that stay readable at those widths
FONTS: dict[str, dict[str, Any]] = {
    "column": {"font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7,
               "xtick.labelsize": 6, "ytick.labelsize": 6, "legend.fontsize": 6},
         "wide": {"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8,
                  "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7}}
#: latencies within this relative difference are one cost on the Pareto front (timer noise)
LATENCY_TOLERANCE = 0.10
#: above this many models the scatter plots name points in the legend only (labels overlap)
MAX_ANNOTATED = 6
_MARKERS = "osD^vP*Xhp<>"


def styles(models: Sequence[str]) -> dict[str, dict[str, str]]:
    """One colour and marker per model, the same in every figure of a report: tab10 up to 10
    models, tab20 up to 20, then evenly spaced hues; markers cycle so no two models share
    both colour and marker."""
    from matplotlib import colormaps

    names = sorted(models)
    n = len(names)
    if n <= 10:
        colors = [colormaps["tab10"](i) for i in range(n)]
    elif n <= 20:
        colors = [colormaps["tab20"](i) for i in range(n)]
    else:
        colors = [colormaps["hsv"](i / n) for i in range(n)]
    from matplotlib.colors import to_hex

    return {m: {"color": to_hex(colors[i]), "marker": _MARKERS[i % len(_MARKERS)]}
            for i, m in enumerate(names)}


def _figure(n_panels: int = 1, size: str = "column",
            height: float | None = None) -> tuple[Any, list[Any]]:
    """A figure ``WIDTHS[size]`` inches wide with ``n_panels`` panels: stacked in one column,
    or side by side (up to three a row) when wide; ``height`` per row of panels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = 1 if size == "column" else min(3, n_panels)
    nrows = math.ceil(n_panels / ncols)
    row_h = height if height is not None else (2.2 if size == "column" else 2.8)
    legend_room = 0.9 if size == "column" else 0.0
    fig = Figure(figsize=(WIDTHS[size], row_h * nrows + legend_room), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n_panels)]
    return fig, axes


def _points(data: Data, x: str, y: str) -> list[tuple[str, Any, Any]]:
    out = []
    for model, cells in data.items():
        cx, cy = cells.get(x), cells.get(y)
        if cx is not None and cy is not None and not (math.isnan(cx.mean) or math.isnan(cy.mean)):
            out.append((model, cx, cy))
    return out


def _err(cell: Any) -> Any:
    """The error bar of a cell: its bootstrap CI over users when it has one, else the std over
    seeds, else none."""
    lo, hi = getattr(cell, "lo", math.nan), getattr(cell, "hi", math.nan)
    if not (math.isnan(lo) or math.isnan(hi)):
        return [[max(0.0, cell.mean - lo)], [max(0.0, hi - cell.mean)]]
    return None if math.isnan(cell.std) else cell.std


def _scatter(fig: Any, ax: Any, pts: Sequence[tuple[str, Any, Any]], style: dict,
             size: str) -> None:
    """One point (with std error bars) per model; named next to the point when there are few
    models, and always in the legend outside the axes."""
    for model, cx, cy in pts:
        st = style[model]
        ax.errorbar([cx.mean], [cy.mean], xerr=_err(cx), yerr=_err(cy), fmt=st["marker"],
                    color=st["color"], capsize=2, label=model, gid=model)
        if len(pts) <= MAX_ANNOTATED:
            ax.annotate(model, (cx.mean, cy.mean), textcoords="offset points", xytext=(4, 4))
    _legend(fig, ax, size)


def pareto_front(points: Sequence[tuple[float, float]],
                 tolerance: float = 0.0) -> list[tuple[float, float]]:
    """Points not dominated by another one with higher accuracy and a cost that is lower, or
    higher by at most ``tolerance`` (relative): with a tolerance, latencies that differ by
    timer noise (0.02 ms) do not make a less accurate model Pareto-optimal."""
    front: list[tuple[float, float]] = []
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        dominated = any(a > acc and c <= cost * (1 + tolerance) for c, a in points
                        if (c, a) != (cost, acc))
        if not dominated and (not front or acc > front[-1][1]):
            front.append((cost, acc))
    return front


def accuracy_vs_latency(data: Data, acc: str = ACCURACY, cost: str = LATENCY,
                        size: str = "column") -> FigureResult:
    """Accuracy against median latency per user, with the Pareto front (log x-axis);
    latencies within ``LATENCY_TOLERANCE`` of each other count as one cost."""
    pts = _points(data, cost, acc)
    if len(pts) < 1:
        return None, f"no model logged both {acc} and {cost}"
    fig, (ax,) = _figure(1, size)
    front = pareto_front([(cx.mean, cy.mean) for _, cx, cy in pts], LATENCY_TOLERANCE)
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="grey",
            linestyle="--", label=f"Pareto front (latency ±{LATENCY_TOLERANCE:.0%} = equal)",
            gid="pareto-front")
    _scatter(fig, ax, pts, styles(list(data)), size)
    costs = [cx.mean for _, cx, _ in pts]
    if min(costs) > 0 and max(costs) / min(costs) > 30:  # spans well over a decade
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overprint each other
    ax.set_xlabel(cat.display(cost))
    ax.set_ylabel(cat.display(acc))
    ax.set_title("Accuracy vs latency")
    return fig, None


def _ks(data: Data, name: str) -> list[int]:
    pat = re.compile(rf"^{name}_at_(\d+)$")
    return sorted({int(m[1]) for cells in data.values() for k in cells if (m := pat.match(k))})


def metric_at_k(data: Data, names: Sequence[str] = ("ndcg", "recall"),
                size: str = "column") -> FigureResult:
    """One panel per metric name: its value at every k present, one line per model (with its
    error bars)."""
    present = [n for n in names if len(_ks(data, n)) >= 2]
    if not present:
        return None, f"fewer than two cut-offs k logged for {', '.join(names)}"
    fig, axes = _figure(len(present), size)
    style = styles(list(data))
    for ax, name in zip(axes, present, strict=True):
        ks = _ks(data, name)
        for model, cells in data.items():
            xs = [k for k in ks if f"{name}_at_{k}" in cells
                  and not math.isnan(cells[f"{name}_at_{k}"].mean)]
            if xs:
                cs = [cells[f"{name}_at_{k}"] for k in xs]
                errs = [_err(c) for c in cs]
                yerr = None
                if all(e is not None for e in errs):
                    yerr = [[e[0][0] if isinstance(e, list) else e for e in errs],
                            [e[1][0] if isinstance(e, list) else e for e in errs]]
                ax.errorbar(xs, [c.mean for c in cs], yerr=yerr, label=model, gid=model,
                            capsize=2, markersize=3, linewidth=1, **style[model])
        ax.set_xticks(ks)
        ax.set_xlabel("k")
        ax.set_ylabel(cat.display(f"{name}_at_{ks[0]}").replace(f"@{ks[0]}", "@k"))
    _legend(fig, axes[-1], size)
    return fig, None


def _legend(fig: Any, ax: Any, size: str) -> None:
    """Below the panels in a column figure (keeps the plot width), right of them when wide."""
    handles, labels = ax.get_legend_handles_labels()
    if size == "column":
        fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels) or 1))
    else:
        fig.legend(handles, labels, loc="outside right upper")


def tradeoff(data: Data, other: str, acc: str = ACCURACY, size: str = "column") -> FigureResult:
    """Accuracy against a beyond-accuracy metric (novelty, coverage), one point per model."""
    pts = _points(data, other, acc)
    if not pts:
        return None, f"no model logged both {acc} and {other}"
    fig, (ax,) = _figure(1, size)
    _scatter(fig, ax, pts, styles(list(data)), size)
    ax.set_xlabel(cat.display(other))
    ax.set_ylabel(cat.display(acc))
    ax.set_title(f"Accuracy vs {cat.display(other)}")
    return fig, None


def fairness_groups(data: Data, acc: str = ACCURACY) -> dict[str, list[str]]:
    """``{attribute: [groups]}`` of the per-group keys ``<acc>/<attribute>/<group>`` present."""
    out: dict[str, set[str]] = {}
    for cells in data.values():
        for key in cells:
            parts = key.split("/")
            if len(parts) == 3 and parts[0] == acc and parts[2] != "gap":
                out.setdefault(parts[1], set()).add(parts[2])
    return {a: sorted(g, key=lambda x: _group_order(a, x)) for a, g in sorted(out.items())}


def _group_order(attr: str, group: str) -> tuple:
    """Activity in its order (cold, warm, hot); other groups by their first number (age
    buckets "under18" and "18-24" -> 18, "56plus" -> 56), a label opening with a word
    ("under18") before one opening with the number, then by name."""
    from bench.metrics.fairness import ACTIVITY_GROUPS

    if attr == "activity" and group in ACTIVITY_GROUPS:
        return (0, ACTIVITY_GROUPS.index(group), 0, group)
    m = re.search(r"\d+(\.\d+)?", group)
    return (1, float(m.group()) if m else math.inf, int(group[:1].isdigit()), group)


def group_sizes(data: Data, attr: str, groups: Sequence[str]) -> dict[str, int]:
    """Users per group (``n_users/<attr>/<group>``, the largest any model logged; 0 when the
    runs predate the key)."""
    out = {}
    for g in groups:
        cells = [c[f"n_users/{attr}/{g}"] for c in data.values() if f"n_users/{attr}/{g}" in c]
        out[g] = int(max((c.mean for c in cells), default=0))
    return out


def fairness(data: Data, acc: str = ACCURACY, size: str = "column",
             min_group_size: int = 1) -> FigureResult:
    """Per-group accuracy bars: one panel per user attribute, one bar colour per model, the
    group sizes under the group names. Groups smaller than ``min_group_size`` (left out of the
    logged gap) are hatched; a zero bar is drawn as a line at 0, never left blank."""
    groups = fairness_groups(data, acc)
    if not groups:
        return None, f"no per-group keys {acc}/<attribute>/<group> logged"
    import numpy as np

    models = list(data)
    style = styles(models)
    fig, axes = _figure(len(groups), "column" if size == "column" else "wide", height=2.0)
    width = 0.8 / max(1, len(models))
    for ax, (attr, gs) in zip(axes, groups.items(), strict=True):
        x = np.arange(len(gs))
        sizes = group_sizes(data, attr, gs)
        small = [0 < sizes[g] < min_group_size for g in gs]
        for i, model in enumerate(models):
            vals = [data[model].get(f"{acc}/{attr}/{g}") for g in gs]
            ys = [v.mean if v is not None else float("nan") for v in vals]
            errs = [v.std if v is not None and not math.isnan(v.std) else 0.0 for v in vals]
            bars = ax.bar(x + i * width - 0.4 + width / 2, ys, width, label=model, gid=model,
                          color=style[model]["color"], edgecolor=style[model]["color"],
                          linewidth=0.8, yerr=errs if any(errs) else None, capsize=1)
            for bar, is_small in zip(bars, small, strict=True):
                if is_small:
                    bar.set_hatch("////")
                    bar.set_alpha(0.45)
        names = [f"{g}\nn={sizes[g]}" if sizes[g] else g for g in gs]
        ax.set_xticks(x, names, rotation=45 if len(gs) > 6 else 0)
        ax.set_title(attr)
        ax.set_ylabel(cat.display(acc))
        ax.axhline(0.0, color="black", linewidth=0.5)
    _legend(fig, axes[0] if size != "column" else axes[-1], size)
    return fig, None


FIGURES: dict[str, Callable[..., FigureResult]] = {
    "accuracy_vs_latency": accuracy_vs_latency,
    "metric_at_k": metric_at_k,
    "accuracy_vs_novelty": lambda d, **kw: tradeoff(d, "novelty_at_10", **kw),
    "accuracy_vs_coverage": lambda d, **kw: tradeoff(d, "coverage_at_10", **kw),
    "fairness": fairness,
}


def best_so_far(values: Sequence[float], higher: bool = True) -> list[float]:
    """The running best of a study's objective values, in trial order."""
    out: list[float] = []
    for v in values:
        out.append(v if not out else (max if higher else min)(out[-1], v))
    return out


def tuning_progress(curves: Mapping[str, Sequence[float]], metric: str,
                    size: str = "column") -> FigureResult:
    """Best validation objective so far against the number of finished trials, one line per
    model (``bench report --tuned``): a curve still rising at its end says the budget was
    short."""
    curves = {m: v for m, v in curves.items() if v}
    if not curves:
        return None, "no finished tuning trials found for the final runs"
    fig, (ax,) = _figure(1, size)
    style = styles(list(curves))
    higher = cat.higher_is_better(metric.removeprefix("valid/"))
    for model, values in sorted(curves.items()):
        xs = list(range(1, len(values) + 1))
        ax.plot(xs, best_so_far(values, higher), label=model, gid=model,
                drawstyle="steps-post", markevery=[len(xs) - 1], markersize=3, linewidth=1,
                **style[model])
    ax.set_xlabel("finished trials")
    ax.set_ylabel(f"best {metric.removeprefix('valid/').replace('_at_', '@')} on valid so far")
    ax.set_title("Tuning progress (equal budget per model)")
    _legend(fig, ax, size)
    return fig, None


#: figures drawn from the tuning trials (``bench report --tuned``): (curves, metric) -> figure
TUNING_FIGURES: dict[str, Callable[..., FigureResult]] = {
    "tuning_progress": tuning_progress,
}


def save(fig: Any, out_dir: Path, name: str) -> list[Path]:
    """``name.png`` (150 dpi) and ``name.pdf``."""
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths
