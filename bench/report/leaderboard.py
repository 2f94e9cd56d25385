"""``bench leaderboard``: rank the MLflow runs of one dataset+split by a metric.

One row per model configuration: mean +/- sample std over its seeds (the most recent run of each
model+config+seed; a model with several configurations gets one labelled row each, see
``bench.report.runs``), sorted in the metric's direction (from the metric catalog), ties by
label; rows without the metric come last. Notes and warnings go to stderr so
``--format md|csv`` output stays clean.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from bench.errors import BenchError, did_you_mean
from bench.metrics.catalog import HEADLINE
from bench.report import metrics as cat
from bench.report.runs import ReportError, Selection, check_devices

DEFAULT_METRIC = HEADLINE[0]
DEFAULT_COLUMNS = (*HEADLINE[1:], "latency_p50_ms")
FORMATS = ("table", "md", "csv")


@dataclass(frozen=True)
class Cell:
    """Mean, sample std (NaN for one seed) and number of seeds that logged the metric."""

    mean: float
    std: float
    n: int


@dataclass(frozen=True)
class Row:
    model: str  # the row label: model name [+ the params of its configuration]
    n_seeds: int
    cells: dict[str, Cell]
    run_ids: tuple[str, ...]


def fmt(value: float, digits: int = 4) -> str:
    """A metric value for tables: 4 decimals below 100, 1 decimal above, '—' for missing."""
    if value is None or math.isnan(value):
        return "—"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.{digits}f}"


def fmt_cell(cell: Cell | None) -> str:
    """``mean ± std``; the mean alone for one seed or seeds that agree exactly."""
    if cell is None or math.isnan(cell.mean):
        return "—"
    return f"{fmt(cell.mean)} ± {fmt(cell.std)}" if has_spread(cell) else fmt(cell.mean)


def has_spread(cell: Cell) -> bool:
    """Several seeds that do not all give the same value (a ± is worth printing)."""
    return not math.isnan(cell.std) and cell.std != 0


def deterministic(cells: dict[str, Cell]) -> bool:
    """Several seeds, and each shown metric that is not device-bound (latency, ...) is the same
    for all of them."""
    shown = [c for k, c in cells.items() if not cat.device_bound(k) and not math.isnan(c.mean)]
    return bool(shown) and all(c.n > 1 and c.std == 0 for c in shown)


def seeds_phrase(n_seeds: Sequence[int], identical: Sequence[str]) -> str:
    """What the cells are: 'values of 1 seed (no ±)' or 'mean ± std over 3 seeds', naming the
    rows whose seeds agree exactly (printed without ±)."""
    most, least = max(n_seeds, default=1), min(n_seeds, default=1)
    if most == 1:
        return "values of 1 seed (no ±)"
    n = f"{most} seeds" if most == least else f"{least}-{most} seeds"
    text = f"mean ± std over {n}"
    if identical:
        text += (f"; {', '.join(identical)}: identical across seeds (deterministic), "
                 "shown without ±")
    return text


def summarize(values: Sequence[float]) -> Cell:
    """Mean and sample std (ddof=1) of the values that exist."""
    from bench.report.stats import seed_summary

    s = seed_summary(values)
    return Cell(s.mean, s.std, s.n)


def available_keys(selection: Selection) -> list[str]:
    return sorted({k for r in selection.runs for k in r.metrics})


def resolve_columns(selection: Selection, metric: str, columns: str | None) -> list[str]:
    """Canonical keys: the rank metric first, then the asked (or default) columns in the store."""
    have = available_keys(selection)
    shown = ", ".join(k for k in have if "/" not in k)
    key = cat.normalize_key(metric)
    if key not in have:
        raise ReportError(f"no run of {selection.dataset}/{selection.split} logged metric "
                          f"'{metric}'{did_you_mean(key, have)}; logged: {shown}")
    if columns:
        asked = [cat.normalize_key(c) for c in columns.split(",") if c.strip()]
        for c in asked:
            if c not in have:
                raise ReportError(f"no run logged metric '{c}'{did_you_mean(c, have)} "
                                  f"(--columns); logged: {shown}")
        asked = check_devices(selection, asked, explicit=True)
    else:
        asked = check_devices(selection, [c for c in DEFAULT_COLUMNS if c in have], explicit=False)
    return [key] + [c for c in dict.fromkeys(asked) if c != key]


def rank_rows(selection: Selection, keys: Sequence[str]) -> list[Row]:
    """One row per model configuration, sorted by ``keys[0]`` in the catalog's direction
    (ties: label)."""
    rows = []
    for model, runs in selection.by_model().items():
        cells = {k: summarize([r.metrics[k] for r in runs if k in r.metrics]) for k in keys}
        rows.append(Row(model, len(runs), cells, tuple(r.run_id for r in runs)))
    sign = -1.0 if cat.higher_is_better(keys[0]) else 1.0

    def order(row: Row) -> tuple[bool, float, str]:
        m = row.cells[keys[0]].mean
        return (math.isnan(m), 0.0 if math.isnan(m) else sign * m, row.model)

    return sorted(rows, key=order)


def header(keys: Sequence[str]) -> list[str]:
    arrows = ["↑" if cat.higher_is_better(k) else "↓" for k in keys]
    return ["#", "model", *[f"{cat.display(k)} {a}" for k, a in zip(keys, arrows, strict=True)],
            "n_seeds"]


def body(rows: Sequence[Row], keys: Sequence[str]) -> list[list[str]]:
    return [[str(i), r.model, *[fmt_cell(r.cells[k]) for k in keys],
             f"{r.n_seeds}*" if deterministic(r.cells) else str(r.n_seeds)]
            for i, r in enumerate(rows, 1)]


def to_csv(rows: Sequence[Row], keys: Sequence[str]) -> str:
    """``rank,model,<key>...,<key>_std...,n_seeds``: full-precision means and stds."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "model", *keys, *[f"{k}_std" for k in keys], "n_seeds"])
    for i, r in enumerate(rows, 1):
        w.writerow([i, r.model, *[_num(r.cells[k].mean) for k in keys],
                    *[_num(r.cells[k].std) for k in keys], r.n_seeds])
    return buf.getvalue()


def _num(v: float) -> str:
    return "" if v is None or math.isnan(v) else repr(float(v))


def to_markdown(rows: Sequence[Row], keys: Sequence[str]) -> str:
    head = header(keys)
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---:", ":---"] + ["---:"] * (len(head) - 2)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body(rows, keys)]
    return "\n".join(lines) + "\n"


def to_plain(rows: Sequence[Row], keys: Sequence[str]) -> str:
    table = [header(keys), *body(rows, keys)]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    out = []
    for n, line in enumerate(table):
        cells = [c.ljust(w) if i == 1 else c.rjust(w)
                 for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n"


def _print_rich(rows: Sequence[Row], keys: Sequence[str], title: str) -> None:
    from rich.console import Console

    console = Console()
    console.print(render_rich(rows, keys, title, console.width), end="", soft_wrap=True,
                  markup=False, highlight=False)


def column_groups(rows: Sequence[Row], keys: Sequence[str], width: int) -> list[list[str]]:
    """The metric columns in consecutive groups whose table (rank, model, the group, n_seeds)
    fits ``width`` characters: a narrow terminal gets several tables, never a dropped or
    truncated column. A column too wide alone still gets a group of its own."""
    lines = body(rows, keys)
    heads = header(keys)

    def col_width(i: int) -> int:
        cells = [heads[i], *(line[i] for line in lines)]
        return max(len(part) for c in cells for part in c.split("\n")) + 2

    fixed = col_width(0) + col_width(1) + col_width(len(heads) - 1)
    groups: list[list[str]] = [[]]
    used = fixed
    for j, key in enumerate(keys):
        w = col_width(j + 2)
        if groups[-1] and used + w > width:
            groups.append([])
            used = fixed
        groups[-1].append(key)
        used += w
    return groups


def render_rich(rows: Sequence[Row], keys: Sequence[str], title: str, width: int) -> str:
    """The rich leaderboard as text for a terminal ``width`` wide: the title wrapped, then
    one table per column group (``column_groups``), each repeating rank, model and n_seeds."""
    import io

    from rich import box
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=False, color_system=None)
    console.print(title, markup=False, highlight=False)
    groups = column_groups(rows, keys, width)
    for n, group in enumerate(groups, 1):
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left",
                      title=f"columns {n}/{len(groups)}" if len(groups) > 1 else None)
        heads = header(group)
        lines = body(rows, group)
        for i, h in enumerate(heads):
            table.add_column(h, justify="left" if i == 1 else "right", no_wrap=True,
                             style="bold" if i == 1 else "")
        for cells in lines:
            table.add_row(*cells)
        console.print(table)
    return buf.getvalue()


def title_line(selection: Selection, key: str, rows: Sequence[Row] = ()) -> str:
    """What the table ranks, over whom (population and its size, the other segment's size),
    the candidate protocol and what a cell is (seeds)."""
    direction = "higher" if cat.higher_is_better(key) else "lower"
    identical = [f"{r.model}*" for r in rows if deterministic(r.cells)]
    text = (f"{selection.dataset} / {selection.split} (protocol {selection.split_protocol}, "
            f"split {selection.split_sha256[:12]}, metric definitions "
            f"v{selection.metric_definitions}): ranked by {cat.display(key)} "
            f"({direction} is better) over {selection.population}; "
            f"{seeds_phrase([r.n_seeds for r in rows], identical)}")
    note = selection.candidates_note
    text += f"\n{note}" if note else ""
    return text + (f"\n{selection.tuning}" if selection.tuning else "")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench leaderboard",
        description="Rank the FINISHED MLflow runs of one dataset+split by a metric: one row per "
                    "model configuration, mean ± std over seeds (a model run with several "
                    "configurations gets one row each, labelled with the params that differ, "
                    "e.g. 'itemknn (k=100)'). With several dataset/split combos in the store and "
                    "none chosen, the most recent combo is shown (a note names the others).",
        epilog="examples:\n  bench leaderboard\n  bench leaderboard --metric recall@20 "
               "--format md\n  bench leaderboard --dataset ml-1m --split temporal-global "
               "--columns recall_at_10,latency_p50_ms --device cpu\n"
               "  bench leaderboard --sweep PARENT_RUN_ID   (only one sweep's runs)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_args(p)
    p.add_argument("--metric", default=DEFAULT_METRIC,
                   help="rank by this metric, as ndcg@10 or ndcg_at_10 (default: %(default)s)")
    p.add_argument("--columns", default=None,
                   help="comma-separated metrics to show next to it (default: recall, hit rate, "
                        "MRR, coverage, novelty @10 and latency_p50_ms, where logged)")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (rich on a terminal, plain text otherwise), md or csv")
    return p


def add_store_args(p: argparse.ArgumentParser) -> None:
    """Options shared by ``bench leaderboard`` and ``bench report``."""
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                        "sqlite:///$PWD/mlflow.db)")
    p.add_argument("--experiment", default=None, help="MLflow experiment (default: bench)")
    p.add_argument("--dataset", default=None, help="dataset name (tag bench.dataset)")
    p.add_argument("--split", default=None, help="split name (tag bench.split)")
    p.add_argument("--split-sha256", default=None, metavar="PREFIX",
                   help="only runs whose bench.split_sha256 starts with PREFIX (when a split was "
                        "re-made and the store holds both)")
    p.add_argument("--device", default=None,
                   help="only runs of this bench.device (needed to compare latency across runs "
                        "made on several devices)")
    p.add_argument("--eval-users", default=None, choices=("warm", "all", "cold"),
                   help="only runs whose headline population (bench.eval_users) is this; runs "
                        "of different populations are never compared")
    p.add_argument("--fit-data", default=None, choices=("train", "train+valid"),
                   help="only runs whose models were fitted on this (bench.fit_data)")
    p.add_argument("--candidates", default=None, metavar="full|sampled-N-HOW",
                   help="only runs of this candidate protocol (bench.candidates, e.g. full or "
                        "sampled-100-uniform); sampled and full ranking are never compared")
    p.add_argument("--tuned", action="store_true", default=None,
                   help="only the final runs of `bench tune` (the best configuration of each "
                        "model's latest equal-budget study, run on test); the caption states "
                        "the budget, the objective and where the search spaces are")
    p.add_argument("--sweep", default=None, metavar="PARENT_RUN_ID",
                   help="only the runs of one sweep: the children of this sweep parent run "
                        "(named sweep-<id> in the MLflow UI) and the FINISHED runs its jobs "
                        "reused instead of re-running them")


def load_selection(args: argparse.Namespace) -> tuple[Selection, str]:
    """Runs of the store that match the options, checked for comparability; and the URI."""
    from bench.report import runs as rr

    uri = args.tracking_uri or rr.default_tracking_uri()
    found = rr.find_runs(rr.source(uri), args.experiment or "bench", dataset=args.dataset,
                         split=args.split, split_sha256=args.split_sha256, device=args.device,
                         sweep=args.sweep, eval_users=args.eval_users, fit_data=args.fit_data,
                         candidates=args.candidates, tuned=bool(args.tuned))
    selection = rr.select(found, args.dataset, args.split)
    if args.tuned:
        selection.tuning = rr.tuning_caption(selection.runs)
    return selection, uri


def ui_note(uri: str, experiment_id: str) -> str:
    """Where the same runs are a leaderboard in the MLflow UI (its ``bench-leaderboard`` view)."""
    from bench.tracking import leaderboard_url

    url = leaderboard_url(uri, experiment_id)
    if uri.startswith(("http://", "https://")):
        return f"in the MLflow UI: {url}"
    return f"in the MLflow UI (`mlflow ui --backend-store-uri {uri}`): {url}"


def show(selection: Selection, metric: str, columns: str | None = None,
         fmt: str = "table", uri: str = "") -> None:
    """Print the leaderboard of ``selection`` ranked by ``metric``: its notes and warnings on
    stderr (and, given the store's ``uri``, where the MLflow UI shows the same runs), the
    table on stdout (rich on a terminal, plain text otherwise; md or csv)."""
    keys = resolve_columns(selection, metric, columns)
    rows = rank_rows(selection, keys)
    for note in selection.notes:
        print(f"note: {note}", file=sys.stderr)
    for warning in selection.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if uri:
        print(f"note: {ui_note(uri, selection.runs[0].experiment_id)}", file=sys.stderr)
    if fmt == "csv":
        sys.stdout.write(to_csv(rows, keys))
    elif fmt == "md":
        sys.stdout.write(to_markdown(rows, keys))
    elif sys.stdout.isatty():
        _print_rich(rows, keys, title_line(selection, keys[0], rows))
    else:
        sys.stdout.write(title_line(selection, keys[0], rows) + "\n" + to_plain(rows, keys))


def leaderboard_main(argv: list[str]) -> int:
    """``bench leaderboard [options]``; returns the exit code (2 for user errors)."""
    args = parser().parse_args(argv)
    try:
        selection, uri = load_selection(args)
        show(selection, args.metric, args.columns, args.format, uri)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(leaderboard_main(sys.argv[1:]))
