"""The report's tables: ``table.tex`` (booktabs, sized to a column or both), ``table.md`` and
``table.csv`` (full precision), with the caption that states what was compared and how.
Best values are bold, second underlined; significance marks come from ``Comparison``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass

from bench.report import metrics as cat
from bench.report import stats
from bench.report.comparisons import Comparison, Report, letters
from bench.report.leaderboard import deterministic, fmt, has_spread, seeds_phrase

#: \columnwidth of a two-column article (pt); wider tables go to table* in layout auto
COLUMN_PT = 235.0


def ranks(table: dict[str, dict[str, Comparison]], key: str, digits: int = 4) -> dict[str, int]:
    """1 for the best model(s) of a key, 2 for the second (at the shown precision), else 0."""
    vals = {m: float(fmt(row[key].cell.mean, digits)) for m, row in table.items()
            if not math.isnan(row[key].cell.mean)}
    distinct = sorted(set(vals.values()), reverse=cat.higher_is_better(key))
    place = {v: i + 1 for i, v in enumerate(distinct[:2])}
    return {m: place.get(v, 0) for m, v in vals.items()}


def significant(comp: Comparison, alpha: float) -> bool:
    return not math.isnan(comp.p_adj) and comp.p_adj < alpha


#: significance marks by direction: (Markdown, LaTeX) for better and worse than the baseline
MARKS = {True: ("†", r"$^{\dagger}$"), False: ("‡", r"$^{\ddagger}$")}


def mark(comp: Comparison, alpha: float, latex: bool) -> str:
    """† when significantly better than the baseline, ‡ when significantly worse, else ''."""
    if not significant(comp, alpha) or comp.better is None:
        return ""
    return MARKS[comp.better][int(latex)]


def table_csv(report: Report) -> str:
    """``model``, the means, then per key ``_std, _ci_low, _ci_high, _seed_ci_low,
    _seed_ci_high, _p, _p_adj, _dz``, then ``n_seeds``. Full precision; empty = not available."""
    suffixes = ("std", "ci_low", "ci_high", "seed_ci_low", "seed_ci_high", "p", "p_adj", "dz")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", *report.keys, *[f"{k}_{s}" for k in report.keys for s in suffixes],
                "n_seeds"])
    for model, row in report.table.items():
        extra = []
        for k in report.keys:
            c = row[k]
            extra += [c.cell.std, *c.ci, *c.seed_ci, c.p, c.p_adj, c.dz]
        n = len(report.selection.by_model()[model])
        w.writerow([model, *[_num(row[k].cell.mean) for k in report.keys],
                    *[_num(v) for v in extra], n])
    return buf.getvalue()


def _num(v: float) -> str:
    return "" if v is None or math.isnan(v) else repr(float(v))


def _legend(report: Report, latex: bool) -> str:
    """The caption: dataset, split protocol and sha256 prefix, definitions, test, correction."""
    cfg = report.config
    text = _what_was_compared(report, latex)
    alpha = rf"$\alpha = {cfg.alpha}$" if latex else f"alpha = {cfg.alpha}"
    if cfg.all_pairs:
        return (f"{text} Superscript letters: significantly better than the row with that "
                f"letter at {alpha} ({stats.TEST_NAMES[cfg.test]} over users, "
                f"{stats.CORRECTION_NAMES[cfg.correction]} correction over the "
                f"{report.pair_tests} pairwise comparisons of the table).")
    if not cfg.baseline:
        return text
    return f"{text} {_baseline_tests(report, latex, alpha)}"


def _what_was_compared(report: Report, latex: bool) -> str:
    """Dataset, split, definitions, population, seeds (and candidates, tuning) of the caption."""
    sel = report.selection
    esc = latex_escape if latex else str
    identical = [shown_name(report, m) for m, row in report.table.items()
                 if deterministic({k: c.cell for k, c in row.items()})]
    seeds = seeds_phrase([len(rs) for rs in sel.by_model().values()], identical)
    seeds = seeds[0].upper() + seeds[1:]
    text = (f"{esc(sel.dataset)}, split {esc(sel.split)} (protocol {esc(sel.split_protocol)}, "
            f"sha256 {esc(sel.split_sha256[:12])}), metric definitions "
            f"v{esc(sel.metric_definitions)}. Evaluated: {esc(sel.population)}. "
            f"{esc(seeds)}; best in bold, second underlined.")
    if sel.candidates_note:
        text += " " + esc(sel.candidates_note)
    if sel.tuning:
        text += " " + esc(sel.tuning)
    if latex:
        text = text.replace("±", r"$\pm$")
    return text


def _baseline_tests(report: Report, latex: bool, alpha: str) -> str:
    """The caption's †/‡ legend, and the columns on which nothing was tested, with why."""
    cfg = report.config
    esc = latex_escape if latex else str
    dag, ddag = (m[int(latex)] for m in (MARKS[True], MARKS[False]))
    shown = shown_name(report, str(cfg.baseline))
    base = r"\emph{" + latex_escape(shown) + "}" if latex else shown
    text = (f"{dag}/{ddag}: significantly better/worse than {base} at {alpha} "
            f"({stats.TEST_NAMES[cfg.test]} "
            f"over users, {stats.CORRECTION_NAMES[cfg.correction]} correction over the "
            f"{_family_size(report)} comparisons of the table).")
    by_reason: dict[str, list[str]] = {}
    for k, reason in report.untested.items():
        by_reason.setdefault(reason, []).append(esc(cat.display(k)))
    for reason, names in by_reason.items():
        cols = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        text += f" {cols} not tested: {reason}."
    return text


def _family_size(report: Report) -> int:
    return sum(not math.isnan(c.p) for row in report.table.values() for c in row.values())


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters (model, dataset and metric names are plain text)."""
    return "".join(_TEX.get(ch, ch) for ch in text)


def shown_name(report: Report, name: str) -> str:
    """A row label or metric key as the table shows it: ``--rename``d, else the label itself
    (rows) or the metric's paper name from the catalog (``nDCG@10``)."""
    renamed = (report.config.rename or {}).get(name)
    if renamed is not None:
        return renamed
    return name if name in report.table else cat.paper_display(name)


def _marks(report: Report, c: Comparison, latex: bool) -> str:
    """The significance mark of a cell (†/‡ against the baseline) or, with --all-pairs, the
    letters of the rows it beats as a superscript."""
    if c.beats:
        letters_ = "".join(c.beats)
        return rf"\textsuperscript{{{letters_}}}" if latex else f"<sup>{letters_}</sup>"
    return mark(c, report.config.alpha, latex)


@dataclass(frozen=True)
class _Markup:
    """How a table cell is written: no value, the best and second-best value (``{v}``), the
    spread across seeds (``{s}``)."""

    latex: bool
    missing: str
    best: str
    second: str
    spread: str


_TEX_CELL = _Markup(
    True, "--", r"\benchbest{{{v}}}", r"\benchsecond{{{v}}}", r"{{\scriptsize$\pm${s}}}"
)
_MD_CELL = _Markup(False, "—", "**{v}**", "<u>{v}</u>", " ± {s}")


def _cell(report: Report, c: Comparison, place: int, markup: _Markup) -> str:
    """A cell: mean (bold / underlined for first / second place), ± std over seeds when there
    is a spread, then the significance marks."""
    if math.isnan(c.cell.mean):
        return markup.missing
    digits = report.config.precision
    value = fmt(c.cell.mean, digits)
    value = {1: markup.best, 2: markup.second}.get(place, "{v}").format(v=value)
    std = markup.spread.format(s=fmt(c.cell.std, digits)) if has_spread(c.cell) else ""
    return value + std + _marks(report, c, latex=markup.latex)


def _row_name(report: Report, model: str, latex: bool) -> str:
    name = shown_name(report, model)
    name = latex_escape(name) if latex else name.replace("|", "/")
    if report.config.all_pairs:
        name = f"({letters(list(report.table))[model]}) {name}"
    return name


def table_label(report: Report) -> str:
    """``--label``, else one unique to this table: dataset, split and a hash of its rows,
    metrics, population and candidates (two tables of one split never share a label)."""
    if report.config.label:
        return report.config.label
    sel = report.selection
    cfg = report.config
    what = json.dumps([list(report.table), report.keys, sel.population, sel.candidates,
                       cfg.baseline, cfg.all_pairs, cfg.test, cfg.correction, cfg.rename,
                       cfg.precision, cfg.layout], sort_keys=True)
    digest = hashlib.sha256(what.encode()).hexdigest()[:6]
    return "tab:" + re.sub(r"[^A-Za-z0-9]+", "-", f"{sel.dataset}-{sel.split}-{digest}")


def tex_width_pt(report: Report) -> float:
    """Estimated natural width of the tabular at \\small (digits 4.6 pt, 12 pt of column
    padding): where ``layout=auto`` chooses between table and table*."""
    keys = report.keys
    model = max((len(_row_name(report, m, False)) for m in report.table), default=5)
    width = model * 4.6 + 12
    for k in keys:
        cells = [report.table[m][k] for m in report.table]
        chars = max([len(shown_name(report, k)) + 2]
                    + [len(fmt(c.cell.mean, report.config.precision)) + len(c.beats)
                       + (0.8 * (len(fmt(c.cell.std, report.config.precision)) + 1)
                          if has_spread(c.cell) else 0)
                       + (1 if significant(c, report.config.alpha) else 0)
                       for c in cells])
        width += chars * 4.6 + 12
    return width


def table_tex(report: Report) -> str:
    """A booktabs table that never overflows its column: ``table`` (one column) or ``table*``
    (both; ``layout=auto`` picks by the estimated width), and a tabular scaled down to
    ``\\linewidth`` only if it is still wider there. Needs booktabs and graphicx."""
    keys = report.keys
    places = {k: ranks(report.table, k, report.config.precision) for k in keys}
    layout = report.config.layout
    # auto: one column unless it would be scaled below 80 % there
    wide = layout == "wide" or (layout == "auto" and tex_width_pt(report) > COLUMN_PT / 0.8)
    env = "table*" if wide else "table"
    head = " & ".join(
        [r"Model"] + [latex_escape(shown_name(report, k))
                      + (r" $\uparrow$" if cat.higher_is_better(k) else r" $\downarrow$")
                      for k in keys])
    lines = [
        "% generated by `bench report` from MLflow; see provenance.json",
        "% needs \\usepackage{booktabs,graphicx}",
        r"\providecommand{\benchbest}[1]{\textbf{#1}}",
        r"\providecommand{\benchsecond}[1]{\underline{#1}}",
        r"\ifdefined\benchbox\else\newsavebox{\benchbox}\fi",
        rf"\begin{{{env}}}[t]", r"\centering", r"\small",
        r"\caption{" + _legend(report, latex=True) + "}",
        r"\label{" + table_label(report) + "}",
        r"\sbox{\benchbox}{%",
        r"\begin{tabular}{l" + "r" * len(keys) + "}", r"\toprule", head + r" \\", r"\midrule",
    ]
    for model, row in report.table.items():
        cells = [_cell(report, row[k], places[k].get(model, 0), _TEX_CELL) for k in keys]
        lines.append(" & ".join([_row_name(report, model, latex=True), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}%",
              r"\ifdim\wd\benchbox>\linewidth\resizebox{\linewidth}{!}{\usebox{\benchbox}}%",
              r"\else\usebox{\benchbox}\fi", rf"\end{{{env}}}"]
    return "\n".join(lines) + "\n"


def table_md(report: Report) -> str:
    keys = report.keys
    places = {k: ranks(report.table, k, report.config.precision) for k in keys}
    arrows = ["↑" if cat.higher_is_better(k) else "↓" for k in keys]
    lines = ["| model | " + " | ".join(f"{shown_name(report, k)} {a}" for k, a in
                                        zip(keys, arrows, strict=True)) + " |",
             "|:---|" + "---:|" * len(keys)]
    for model, row in report.table.items():
        cells = [_cell(report, row[k], places[k].get(model, 0), _MD_CELL) for k in keys]
        lines.append(f"| {_row_name(report, model, latex=False)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + _legend(report, latex=False) + "\n"
