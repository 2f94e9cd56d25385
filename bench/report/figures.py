"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot state).

Every figure function takes ``{model: {metric key: Cell}}`` (means and stds over seeds) and
returns ``(Figure, None)`` or ``(None, reason)`` when the metrics it needs are absent; the
builder writes the reason into the report's README. Artists carry the model name as ``gid`` and
``label`` so tests can check the plotted series.
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


def _figure(ncols: int = 1, width: float = 5.0, height: float = 3.6,
            nrows: int = 1) -> tuple[Any, list[Any]]:
    """A figure of ``nrows`` x ``ncols`` panels of ``width`` x ``height`` inches each."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(nrows * ncols)]
    return fig, axes


def _points(data: Data, x: str, y: str) -> list[tuple[str, Any, Any]]:
    out = []
    for model, cells in data.items():
        cx, cy = cells.get(x), cells.get(y)
        if cx is not None and cy is not None and not (math.isnan(cx.mean) or math.isnan(cy.mean)):
            out.append((model, cx, cy))
    return out


def _err(cell: Any) -> float | None:
    return None if math.isnan(cell.std) else cell.std


def _scatter(fig: Any, ax: Any, pts: Sequence[tuple[str, Any, Any]], style: dict) -> None:
    """One point (with std error bars) per model; named next to the point when there are few
    models, and always in the legend outside the axes."""
    for model, cx, cy in pts:
        st = style[model]
        ax.errorbar([cx.mean], [cy.mean], xerr=_err(cx), yerr=_err(cy), fmt=st["marker"],
                    color=st["color"], capsize=2, label=model, gid=model)
        if len(pts) <= MAX_ANNOTATED:
            ax.annotate(model, (cx.mean, cy.mean), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
    _legend(fig, ax)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another one with lower-or-equal cost and higher accuracy."""
    front: list[tuple[float, float]] = []
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((cost, acc))
    return front


def accuracy_vs_latency(data: Data, acc: str = ACCURACY, cost: str = LATENCY) -> FigureResult:
    """Accuracy against median latency per user, with the Pareto front (log x-axis)."""
    pts = _points(data, cost, acc)
    if len(pts) < 1:
        return None, f"no model logged both {acc} and {cost}"
    fig, (ax,) = _figure()
    front = pareto_front([(cx.mean, cy.mean) for _, cx, cy in pts])
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="grey",
            linestyle="--", label="Pareto front", gid="pareto-front")
    _scatter(fig, ax, pts, styles(list(data)))
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


def metric_at_k(data: Data, names: Sequence[str] = ("ndcg", "recall")) -> FigureResult:
    """One panel per metric name: its value at every k present, one line per model."""
    present = [n for n in names if len(_ks(data, n)) >= 2]
    if not present:
        return None, f"fewer than two cut-offs k logged for {', '.join(names)}"
    fig, axes = _figure(len(present))
    style = styles(list(data))
    for ax, name in zip(axes, present, strict=True):
        ks = _ks(data, name)
        for model, cells in data.items():
            xs = [k for k in ks if f"{name}_at_{k}" in cells
                  and not math.isnan(cells[f"{name}_at_{k}"].mean)]
            if xs:
                ax.plot(xs, [cells[f"{name}_at_{k}"].mean for k in xs], label=model,
                        gid=model, **style[model])
        ax.set_xticks(ks)
        ax.set_xlabel("k")
        ax.set_ylabel(cat.display(f"{name}_at_{ks[0]}").replace(f"@{ks[0]}", "@k"))
    _legend(fig, axes[-1])
    return fig, None


def _legend(fig: Any, ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)


def tradeoff(data: Data, other: str, acc: str = ACCURACY) -> FigureResult:
    """Accuracy against a beyond-accuracy metric (novelty, coverage), one point per model."""
    pts = _points(data, other, acc)
    if not pts:
        return None, f"no model logged both {acc} and {other}"
    fig, (ax,) = _figure()
    _scatter(fig, ax, pts, styles(list(data)))
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


def fairness(data: Data, acc: str = ACCURACY) -> FigureResult:
    """Per-group accuracy bars: one panel per user attribute, one bar colour per model."""
    groups = fairness_groups(data, acc)
    if not groups:
        return None, f"no per-group keys {acc}/<attribute>/<group> logged"
    import numpy as np

    models = list(data)
    style = styles(models)
    # one row per attribute (a row of side-by-side panels grew to thousands of pixels wide)
    most = max(map(len, groups.values()))
    fig, axes = _figure(width=min(14.0, max(6.0, 0.5 * most + 3)), height=2.6,
                        nrows=len(groups))
    width = 0.8 / max(1, len(models))
    for ax, (attr, gs) in zip(axes, groups.items(), strict=True):
        x = np.arange(len(gs))
        for i, model in enumerate(models):
            vals = [data[model].get(f"{acc}/{attr}/{g}") for g in gs]
            ys = [v.mean if v is not None else float("nan") for v in vals]
            ax.bar(x + i * width - 0.4 + width / 2, ys, width, label=model, gid=model,
                   color=style[model]["color"])
        ax.set_xticks(x, gs, rotation=45 if len(gs) > 6 else 0, fontsize=8)
        ax.set_title(attr)
        ax.set_ylabel(cat.display(acc))
    _legend(fig, axes[0])
    return fig, None


FIGURES: dict[str, Callable[[Data], FigureResult]] = {
    "accuracy_vs_latency": accuracy_vs_latency,
    "metric_at_k": metric_at_k,
    "accuracy_vs_novelty": lambda d: tradeoff(d, "novelty_at_10"),
    "accuracy_vs_coverage": lambda d: tradeoff(d, "coverage_at_10"),
    "fairness": fairness,
}


def best_so_far(values: Sequence[float], higher: bool = True) -> list[float]:
    """The running best of a study's objective values, in trial order."""
    out: list[float] = []
    for v in values:
        out.append(v if not out else (max if higher else min)(out[-1], v))
    return out


def tuning_progress(curves: Mapping[str, Sequence[float]], metric: str) -> FigureResult:
    """Best validation objective so far against the number of finished trials, one line per
    model (``bench report --tuned``): a curve still rising at its end says the budget was
    short."""
    curves = {m: v for m, v in curves.items() if v}
    if not curves:
        return None, "no finished tuning trials found for the final runs"
    fig, (ax,) = _figure(width=5.5)
    style = styles(list(curves))
    higher = cat.higher_is_better(metric.removeprefix("valid/"))
    for model, values in sorted(curves.items()):
        xs = list(range(1, len(values) + 1))
        ax.plot(xs, best_so_far(values, higher), label=model, gid=model,
                drawstyle="steps-post", markevery=[len(xs) - 1], **style[model])
    ax.set_xlabel("finished trials")
    ax.set_ylabel(f"best {metric.removeprefix('valid/').replace('_at_', '@')} on valid so far")
    ax.set_title("Tuning progress (equal budget per model)")
    _legend(fig, ax)
    return fig, None


#: figures drawn from the tuning trials (``bench report --tuned``): (curves, metric) -> figure
TUNING_FIGURES: dict[str, Callable[[Mapping[str, Sequence[float]], str], FigureResult]] = {
    "tuning_progress": tuning_progress,
}


def save(fig: Any, out_dir: Path, name: str) -> list[Path]:
    """``name.png`` (150 dpi) and ``name.pdf``."""
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths
