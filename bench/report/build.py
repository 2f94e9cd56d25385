"""``bench report``: paper tables, figures and provenance rebuilt from MLflow alone.

Writes into a fresh temporary folder next to ``--out`` and moves it into place at the end, so a
failed build never leaves half a report, and an existing non-empty ``--out`` is replaced only
with ``--force``. Files: ``table.tex``, ``table.md``, ``table.csv``, ``<figure>.png|pdf``,
``provenance.json`` and ``README.md`` (what was built, what was skipped and why).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import re
import sys
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np

from bench.errors import BenchError, ConfigError, did_you_mean, unknown
from bench.files import write_folder_atomically
from bench.report import metrics as cat
from bench.report import stats
from bench.report.leaderboard import (
    Cell,
    add_store_args,
    deterministic,
    fmt,
    has_spread,
    seeds_phrase,
    summarize,
)
from bench.report.runs import ReportError, Run, Selection, redact_uri

DEFAULT_METRICS = ("ndcg_at_10", "recall_at_10", "hit_rate_at_10", "mrr_at_10",
                   "coverage_at_10", "novelty_at_10")
SPEC_KEYS = ("dataset", "split", "split_sha256", "experiment", "device", "eval_users",
             "fit_data", "candidates", "metrics", "baseline", "test", "correction", "alpha",
             "figures", "n_resamples", "n_bootstrap", "seed", "models", "rename", "precision",
             "layout", "label", "all_pairs", "tuned")
LAYOUTS = ("auto", "column", "wide")
#: \columnwidth of a two-column article (pt); wider tables go to table* in layout auto
COLUMN_PT = 235.0


@dataclass
class ReportConfig:
    """What to report; the spec file fills it, command-line options override the spec."""

    dataset: str | None = None
    split: str | None = None
    split_sha256: str | None = None
    experiment: str = "bench"
    device: str | None = None
    sweep: str | None = None  # a sweep's parent run id (command line only)
    eval_users: str | None = None  # bench.eval_users to keep (None: the runs' one value)
    fit_data: str | None = None  # bench.fit_data to keep
    candidates: str | None = None  # bench.candidates to keep
    metrics: list[str] | None = None
    baseline: str | None = None
    test: str = "ttest"
    correction: str = "holm"
    alpha: float = 0.05
    figures: list[str] | None = None  # None = every figure whose metrics are present
    n_resamples: int = 10_000  # randomisation test
    n_bootstrap: int = 2_000  # bootstrap CI over users
    seed: int = 0  # of the randomisation test and the bootstrap
    models: list[str] | None = None  # rows to show, in this order (row labels); None: all
    rename: dict[str, str] | None = None  # shown names: row label or metric key -> name
    precision: int = 4  # decimals of the table cells
    layout: str = "auto"  # auto | column (table) | wide (table*)
    label: str | None = None  # \label of table.tex (default: unique per table)
    all_pairs: bool = False  # test every pair of rows; cells get compact letter codes
    tuned: bool = False  # only the final runs of `bench tune` (and the tuning figure)


@dataclass
class Comparison:
    """The report's numbers for one model and one metric."""

    cell: Cell
    ci: tuple[float, float] = (math.nan, math.nan)  # bootstrap over users
    seed_ci: tuple[float, float] = (math.nan, math.nan)  # t-based over seeds
    p: float = math.nan
    p_adj: float = math.nan
    dz: float = math.nan
    better: bool | None = None  # tested: is the model better than the baseline on this key?
    beats: list[str] = field(default_factory=list)  # --all-pairs: letters of rows it beats


@dataclass
class Report:
    selection: Selection
    config: ReportConfig
    keys: list[str]
    table: dict[str, dict[str, Comparison]]  # row label -> key -> numbers
    notes: list[str] = field(default_factory=list)
    untested: dict[str, str] = field(default_factory=dict)  # key -> why no test (baseline set)
    pair_tests: int = 0  # --all-pairs: tests in the family
    users: dict[str, Any] = field(default_factory=dict)  # row -> per-user frame (seed means)


# ----------------------------------------------------------------------------- spec and options


def load_spec(path: Path) -> dict[str, Any]:
    """A report spec (YAML mapping with keys of ``SPEC_KEYS``)."""
    from bench.files import read_yaml

    if not path.is_file():
        raise ConfigError(f"report spec {path} does not exist (specs live in reports/specs/)")
    data = read_yaml(path, f"report spec {path}") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"report spec {path} must be a mapping of {', '.join(SPEC_KEYS)}")
    for key in data:
        if key not in SPEC_KEYS:
            raise unknown("report spec key", str(key), SPEC_KEYS, where=str(path))
    return data


def _as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _as_mapping(value: Any) -> dict[str, str] | None:
    """``{old: new}`` from a spec mapping or ``old=new,old2=new2`` on the command line."""
    if value is None or isinstance(value, dict):
        return None if value is None else {str(k): str(v) for k, v in value.items()}
    out = {}
    for part in _as_list(value) or []:
        old, sep, new = part.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ConfigError(f"--rename {part!r}: write old=new, e.g. --rename "
                              "'llm-embed-pop=LLM-Embed+Pop,ndcg_at_10=NDCG@10'")
        out[old.strip()] = new.strip()
    return out


def make_config(args: argparse.Namespace) -> ReportConfig:
    """Defaults < spec file < command-line options; validated."""
    merged: dict[str, Any] = load_spec(Path(args.spec)) if args.spec else {}
    # --all-pairs and --baseline exclude each other: the command line's replaces the spec's
    if getattr(args, "all_pairs", None) and getattr(args, "baseline", None) is None:
        merged.pop("baseline", None)
    if getattr(args, "baseline", None) and getattr(args, "all_pairs", None) is None:
        merged.pop("all_pairs", None)
    for f in fields(ReportConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            merged[f.name] = value
    merged["metrics"] = _as_list(merged.get("metrics"))
    merged["figures"] = _as_list(merged.get("figures"))
    merged["models"] = _as_list(merged.get("models"))
    merged["rename"] = _as_mapping(merged.get("rename"))
    if merged["figures"] == ["all"]:
        merged["figures"] = None
    cfg = ReportConfig(**merged)
    _validate(cfg)
    return cfg


def _validate(cfg: ReportConfig) -> None:
    from bench.report.figures import FIGURES

    if cfg.test not in stats.TESTS:
        raise unknown("test", cfg.test, stats.TESTS)
    if cfg.correction not in stats.CORRECTIONS:
        raise unknown("correction", cfg.correction, stats.CORRECTIONS)
    from bench.report.figures import TUNING_FIGURES

    for name in cfg.figures or []:
        if name not in FIGURES and name not in TUNING_FIGURES:
            raise unknown("figure", name, [*FIGURES, *TUNING_FIGURES])
    try:
        cfg.alpha, cfg.n_resamples = float(cfg.alpha), int(cfg.n_resamples)
        cfg.n_bootstrap, cfg.seed = int(cfg.n_bootstrap), int(cfg.seed)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"alpha, n_resamples, n_bootstrap and seed must be numbers ({exc})") \
            from exc
    if not 0 < cfg.alpha < 1:
        raise ConfigError(f"alpha must be between 0 and 1 (got {cfg.alpha})")
    if cfg.n_resamples < 1 or cfg.n_bootstrap < 1:
        raise ConfigError("n_resamples and n_bootstrap must be >= 1")
    if cfg.layout not in LAYOUTS:
        raise unknown("layout", cfg.layout, LAYOUTS)
    if not isinstance(cfg.precision, int) or not 1 <= cfg.precision <= 8:
        raise ConfigError(f"precision must be an integer from 1 to 8 (got {cfg.precision!r})")
    if cfg.label is not None and not re.fullmatch(r"[A-Za-z0-9:_.\-]+", cfg.label):
        raise ConfigError(f"label {cfg.label!r} may hold letters, digits and : _ . - only "
                          "(e.g. --label tab:main-results)")
    if cfg.all_pairs and cfg.baseline:
        raise ConfigError("--all-pairs tests every pair of rows and --baseline one row against "
                          "the others: choose one")


# ----------------------------------------------------------------------------- numbers


def choose_keys(selection: Selection, cfg: ReportConfig) -> list[str]:
    """Metric keys of the table: the asked ones (all must be logged) or the default ones."""
    from bench.report.runs import check_devices

    have = sorted({k for r in selection.runs for k in r.metrics})
    if cfg.metrics:
        keys = [cat.normalize_key(m) for m in cfg.metrics]
        for k in keys:
            if k not in have:
                shown = [h for h in have if "/" not in h]
                raise ReportError(f"no run logged metric '{k}'{did_you_mean(k, shown)}; "
                                  f"logged: {', '.join(shown)}")
        return check_devices(selection, list(dict.fromkeys(keys)), explicit=True)
    keys = [k for k in DEFAULT_METRICS if k in have]
    return keys or [h for h in have if "/" not in h][:6]


def model_cells(selection: Selection, keys: list[str]) -> dict[str, dict[str, Cell]]:
    """``{row label: {key: Cell}}`` over the row's seeds, for every key asked."""
    return {m: {k: summarize([r.metrics[k] for r in runs if k in r.metrics]) for k in keys}
            for m, runs in selection.by_model().items()}


def user_means(frames: list[Any], model: str) -> Any:
    """Per-user metrics averaged over a model's seeds (the seeds must share their users)."""
    import polars as pl

    users = set(frames[0]["user_id"].to_list())
    for f in frames[1:]:
        if set(f["user_id"].to_list()) != users:
            raise stats.StatsError(f"the seeds of {model} were evaluated on different users; "
                                   "were they run on the same split?")
    cols = [c for c in frames[0].columns if c != "user_id" and all(c in f.columns for f in frames)]
    stacked = pl.concat([f.select("user_id", *[pl.col(c).cast(pl.Float64) for c in cols])
                         for f in frames])
    return stacked.group_by("user_id").agg([pl.col(c).mean() for c in cols]).sort("user_id")


def load_user_tables(selection: Selection, client: Any, notes: list[str]) -> dict[str, Any]:
    """``{row label: per-user frame averaged over seeds}``; rows lacking it are noted."""
    from bench.report.runs import DamagedArtifactError, per_user_frame

    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        for model, runs in selection.by_model().items():
            try:
                frames = [per_user_frame(client, r, Path(tmp)) for r in runs]
                out[model] = user_means(frames, model)
            except DamagedArtifactError:
                raise
            except (ReportError, stats.StatsError) as exc:
                notes.append(f"no per-user statistics for {model}: {exc}")
    return out


def compute(selection: Selection, cfg: ReportConfig, keys: list[str],
            users: dict[str, Any], notes: list[str],
            untested: dict[str, str] | None = None,
            pair_tests: list[int] | None = None) -> dict[str, dict[str, Comparison]]:
    """Means/stds over seeds, CIs over users and seeds, paired tests against the baseline (or
    between all pairs of rows); ``untested`` receives the keys no test was run on, with the
    reason, ``pair_tests`` the number of pairwise tests."""
    cells = model_cells(selection, keys)
    table = {m: {k: Comparison(c) for k, c in row.items()} for m, row in cells.items()}
    for model, row in table.items():
        runs = selection.by_model()[model]
        for k, comp in row.items():
            s = stats.seed_summary([r.metrics[k] for r in runs if k in r.metrics])
            comp.seed_ci = (s.ci_low, s.ci_high)
            frame = users.get(model)
            if frame is not None and k in frame.columns:
                comp.ci = stats.bootstrap_ci(frame[k].to_numpy(), cfg.n_bootstrap, cfg.seed)
    table = {m: table[m] for m in row_order(table, cfg, keys[0])}
    if cfg.baseline:
        _significance(table, cfg, keys, users, notes)
        if untested is not None:
            untested.update(_untested(table, cfg, keys, users))
    if cfg.all_pairs:
        n = _all_pairs(table, cfg, keys, users, notes)
        if pair_tests is not None:
            pair_tests.append(n)
    return table


def row_order(table: dict[str, Any], cfg: ReportConfig, key: str) -> list[str]:
    """The rows to show: ``cfg.models`` in its order (each must be a row label; the baseline
    is kept, first, when left out), else every row by ``key`` in its direction."""
    if cfg.models:
        for m in cfg.models:
            if m not in table:
                raise unknown("model (--models)", m, table)
        rows = list(dict.fromkeys(cfg.models))
        if cfg.baseline and cfg.baseline in table and cfg.baseline not in rows:
            rows.insert(0, cfg.baseline)
        return rows
    sign = -1.0 if cat.higher_is_better(key) else 1.0

    def order(m: str) -> tuple[bool, float, str]:
        v = table[m][key].cell.mean
        return (math.isnan(v), 0.0 if math.isnan(v) else sign * v, m)

    return sorted(table, key=order)


def letters(rows: list[str]) -> dict[str, str]:
    """Compact letter codes of the rows, in order: a, b, ..., z, aa, ab, ..."""
    def code(i: int) -> str:
        return chr(97 + i) if i < 26 else code(i // 26 - 1) + chr(97 + i % 26)

    return {m: code(i) for i, m in enumerate(rows)}


def _all_pairs(table: dict[str, dict[str, Comparison]], cfg: ReportConfig, keys: list[str],
               users: dict[str, Any], notes: list[str]) -> int:
    """Every pair of rows tested on every key (one family for the correction); a cell lists
    the letters of the rows it is significantly better than (ranx-style). Returns the number
    of tests."""
    code = letters(list(table))
    tests: list[tuple[str, str, str, float]] = []  # (winner if significant, loser, key, p)
    rows = [m for m in table if users.get(m) is not None]
    for k in keys:
        for i, a in enumerate(rows):
            for b in rows[i + 1:]:
                fa, fb = users[a], users[b]
                if k not in fa.columns or k not in fb.columns:
                    continue
                x, y = stats.paired_vectors(fa, fb, k, (a, b))
                if x.size < 2:
                    continue
                res = stats.run_test(cfg.test, x, y, cfg.n_resamples, cfg.seed)
                a_wins = (x.mean() > y.mean()) == cat.higher_is_better(k)
                tests.append((a, b, k, res.p_value) if a_wins else (b, a, k, res.p_value))
    adjusted = stats.correct([t[3] for t in tests], cfg.correction)
    for (win, lose, k, _), p_adj in zip(tests, adjusted, strict=True):
        if p_adj < cfg.alpha:
            table[win][k].beats.append(code[lose])
    for row in table.values():
        for comp in row.values():
            comp.beats.sort()
    missing = [m for m in table if users.get(m) is None]
    if missing:
        notes.append(f"not in the pairwise tests (no per-user values): {', '.join(missing)}")
    return len(tests)


def _untested(table: dict[str, dict[str, Comparison]], cfg: ReportConfig, keys: list[str],
              users: dict[str, Any]) -> dict[str, str]:
    """The keys on which no model was tested against the baseline, and why."""
    base = users.get(str(cfg.baseline))
    out = {}
    for k in keys:
        if any(not math.isnan(row[k].p) for row in table.values()):
            continue
        others = [users.get(m) for m in table if m != cfg.baseline]
        has_values = base is not None and k in base.columns and any(
            f is not None and k in f.columns for f in others)
        out[k] = "fewer than 2 users with a value" if has_values else "no per-user values"
    return out


def _significance(table: dict[str, dict[str, Comparison]], cfg: ReportConfig, keys: list[str],
                  users: dict[str, Any], notes: list[str]) -> None:
    if cfg.baseline not in table:
        rows = [m for m in table if m.startswith(f"{cfg.baseline} (")]
        if rows:
            raise ReportError(f"--baseline {cfg.baseline}: the model has {len(rows)} "
                              f"configurations here ({', '.join(repr(r) for r in rows)}); "
                              "give one of these row labels")
        raise unknown("baseline model", str(cfg.baseline), table)
    base = users.get(cfg.baseline)
    if base is None:
        notes.append(f"no significance tests: baseline {cfg.baseline} has no per_user.parquet")
        return
    family: list[Comparison] = []
    for model, row in table.items():
        frame = users.get(model)
        if model == cfg.baseline or frame is None:
            continue
        for k in keys:
            if k in base.columns and k in frame.columns:
                x, y = stats.paired_vectors(frame, base, k, (model, str(cfg.baseline)))
                if x.size < 2:
                    notes.append(f"{model} vs {cfg.baseline} on {k}: fewer than 2 users with a "
                                 "value; not tested")
                    continue
                res = stats.run_test(cfg.test, x, y, cfg.n_resamples, cfg.seed)
                row[k].p, row[k].dz = res.p_value, stats.cohens_dz(x, y)
                row[k].better = bool((x.mean() > y.mean()) == cat.higher_is_better(k))
                family.append(row[k])
    adjusted = stats.correct([c.p for c in family], cfg.correction)
    for comp, p_adj in zip(family, adjusted, strict=True):
        comp.p_adj = float(p_adj)
    no_user = [k for k in keys if k not in base.columns]
    if no_user:
        notes.append(f"not tested (no per-user values): {', '.join(no_user)}")


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


# ----------------------------------------------------------------------------- tables


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
    cfg, sel = report.config, report.selection
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
    alpha = rf"$\alpha = {cfg.alpha}$" if latex else f"alpha = {cfg.alpha}"
    if cfg.all_pairs:
        return (f"{text} Superscript letters: significantly better than the row with that "
                f"letter at {alpha} ({stats.TEST_NAMES[cfg.test]} over users, "
                f"{stats.CORRECTION_NAMES[cfg.correction]} correction over the "
                f"{report.pair_tests} pairwise comparisons of the table).")
    if not cfg.baseline:
        return text
    dag, ddag = (m[int(latex)] for m in (MARKS[True], MARKS[False]))
    shown = shown_name(report, cfg.baseline)
    base = r"\emph{" + latex_escape(shown) + "}" if latex else shown
    text = (f"{text} {dag}/{ddag}: significantly better/worse than {base} at {alpha} "
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


def _tex_cell(report: Report, c: Comparison, place: int) -> str:
    if math.isnan(c.cell.mean):
        return "--"
    digits = report.config.precision
    value = fmt(c.cell.mean, digits)
    value = {1: rf"\benchbest{{{value}}}", 2: rf"\benchsecond{{{value}}}"}.get(place, value)
    std = rf"{{\scriptsize$\pm${fmt(c.cell.std, digits)}}}" if has_spread(c.cell) else ""
    return value + std + _marks(report, c, latex=True)


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
        cells = [_tex_cell(report, row[k], places[k].get(model, 0)) for k in keys]
        lines.append(" & ".join([_row_name(report, model, latex=True), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}%",
              r"\ifdim\wd\benchbox>\linewidth\resizebox{\linewidth}{!}{\usebox{\benchbox}}%",
              r"\else\usebox{\benchbox}\fi", rf"\end{{{env}}}"]
    return "\n".join(lines) + "\n"


def _md_cell(report: Report, c: Comparison, place: int) -> str:
    if math.isnan(c.cell.mean):
        return "—"
    digits = report.config.precision
    value = fmt(c.cell.mean, digits)
    value = {1: f"**{value}**", 2: f"<u>{value}</u>"}.get(place, value)
    std = f" ± {fmt(c.cell.std, digits)}" if has_spread(c.cell) else ""
    return value + std + _marks(report, c, latex=False)


def table_md(report: Report) -> str:
    keys = report.keys
    places = {k: ranks(report.table, k, report.config.precision) for k in keys}
    arrows = ["↑" if cat.higher_is_better(k) else "↓" for k in keys]
    lines = ["| model | " + " | ".join(f"{shown_name(report, k)} {a}" for k, a in
                                        zip(keys, arrows, strict=True)) + " |",
             "|:---|" + "---:|" * len(keys)]
    for model, row in report.table.items():
        cells = [_md_cell(report, row[k], places[k].get(model, 0)) for k in keys]
        lines.append(f"| {_row_name(report, model, latex=False)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + _legend(report, latex=False) + "\n"


# ----------------------------------------------------------------------------- figures


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


def figs_tolerance() -> float:
    from bench.report.figures import LATENCY_TOLERANCE

    return LATENCY_TOLERANCE


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
    import matplotlib

    from bench.report import figures as figs

    selection, cfg = report.selection, report.config
    data = with_cis(figure_data(selection), report.users, cfg)
    written, skipped = [], []
    for name in [f for f in cfg.figures or list(figs.FIGURES) if f in figs.FIGURES]:
        if name == "accuracy_vs_latency" and len(selection.devices) > 1:
            skipped.append(f"{name}: runs come from {len(selection.devices)} devices "
                           f"({', '.join(selection.devices)}); rebuild with --device")
            continue
        kw = {"min_group_size": min_group_size(selection)} if name == "fairness" else {}
        for size, suffix in (("column", ""), ("wide", "-wide")):
            with matplotlib.rc_context(cast(Any, figs.FONTS[size])):
                fig, reason = figs.FIGURES[name](data, size=size, **kw)
                if fig is None:
                    skipped.append(f"{name}: {reason}")
                    break
                written += [p.name for p in figs.save(fig, out, name + suffix)]
    for name in figs.TUNING_FIGURES if selection.curves else ():
        if cfg.figures and name not in cfg.figures:
            continue
        metric = selection.runs[0].tag("tuning.metric") or "valid/ndcg_at_10"
        for size, suffix in (("column", ""), ("wide", "-wide")):
            with matplotlib.rc_context(cast(Any, figs.FONTS[size])):
                fig, reason = figs.TUNING_FIGURES[name](selection.curves, metric, size=size)
                if fig is None:
                    skipped.append(f"{name}: {reason}")
                    break
                written += [p.name for p in figs.save(fig, out, name + suffix)]
    return written, skipped


# ----------------------------------------------------------------------------- provenance


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
    sel, cfg = report.selection, report.config
    lines = [f"# Report: {sel.dataset} / {sel.split}", "",
             f"Built by `bench report` from {len(sel.runs)} MLflow runs "
             f"({len(sel.by_model())} models); every number comes from MLflow "
             "(see `provenance.json` for run ids, git shas and the command).", "",
             "## Files", "", *[f"- `{f}`" for f in sorted(files)], "", "## Table", "",
             table_md(report), "## Statistics", "",
             "- mean ± sample std over seeds; `_seed_ci_*`: t-based 95 % CI over seeds;",
             f"- `_ci_*`: 95 % percentile bootstrap CI over users ({cfg.n_bootstrap} resamples, "
             f"seed {cfg.seed}) of the per-user metric averaged over seeds;"]
    if cfg.baseline:
        lines.append(f"- `_p`: {stats.TEST_NAMES[cfg.test]} against {cfg.baseline} on the "
                     "seed-averaged per-user values; `_p_adj`: "
                     f"{stats.CORRECTION_NAMES[cfg.correction]}-corrected; `_dz`: Cohen's d_z.")
    else:
        lines.append("- no baseline given: no significance tests (`--baseline MODEL`).")
    lines += ["", "## Figures", "",
              "- `<name>.pdf`/`.png` fit one column of a two-column paper (3.3 in), "
              "`<name>-wide.*` both columns (7 in);",
              "- error bars: 95 % bootstrap CI over users for nDCG, recall and novelty (per-user "
              "values averaged over seeds), else the std over seeds;",
              "- accuracy vs latency: latencies within "
              f"{int(100 * figs_tolerance())} % of each other count as one cost on the Pareto "
              "front (timer noise);"]
    small = min_group_size(sel)
    if small > 1:
        lines.append(f"- fairness: groups with fewer than {small} evaluated users "
                     f"(metrics.fairness.min_group_size) are hatched and left out of the logged "
                     f"gap ({small_groups(report, small)}); every bar names its group size.")
    notes = sel.notes + report.notes + [f"figure skipped: {s}" for s in skipped]
    if notes or sel.warnings:
        lines += ["", "## Notes", "", *[f"- warning: {w}" for w in sel.warnings],
                  *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- output folder


#: ``provenance.json["generator"]``: marks a folder written by ``bench report`` (``--force``
#: replaces only such a folder, or an empty one)
GENERATOR = "bench report"


def _within(inner: Path, outer: Path) -> bool:
    """``inner`` is ``outer`` or lies inside it (both resolved)."""
    return inner == outer or outer in inner.parents


def protected_paths(uri: str, mlflow_client: Any = None) -> list[tuple[Path, str]]:
    """What an ``--out`` may never be or contain: the tracking store file, its artifact
    root(s), the working directory and the home directory, with their description."""
    from bench.tracking import sqlite_path

    out: list[tuple[Path, str]] = [(Path.cwd().resolve(), "the current working directory"),
                                   (Path.home().resolve(), "your home directory")]
    db = sqlite_path(uri)
    if db is not None:
        db = Path(db).resolve()
        art = db.parent / "mlartifacts"  # where bench.tracking puts a sqlite store's artifacts
        out += [(db, "the MLflow tracking store"), (art, "the MLflow artifact root")]
    for location in _artifact_locations(mlflow_client):
        out.append((location, "the MLflow artifact root"))
    return out


def _artifact_locations(mlflow_client: Any) -> list[Path]:
    """Local artifact roots of the store's experiments (``file:`` URIs or plain paths)."""
    if mlflow_client is None:
        return []
    from urllib.parse import unquote, urlsplit

    try:
        from mlflow.entities import ViewType

        exps = mlflow_client.search_experiments(view_type=ViewType.ALL)
    except Exception:  # noqa: BLE001 - the cwd/home/store checks still apply
        return []
    roots = []
    for exp in exps:
        loc = str(getattr(exp, "artifact_location", "") or "")
        parts = urlsplit(loc)
        if parts.scheme == "file":
            roots.append(Path(unquote(parts.path)).resolve())
        elif not parts.scheme and loc:
            roots.append(Path(loc).resolve())
    return roots


def _refuse_protected(out: Path, protected: list[tuple[Path, str]]) -> None:
    from bench.splits import is_split_folder, split_folder_holding

    for path, what in protected:
        if _within(path, out):
            found = f"is {what}" if path == out else f"contains {what} {path}"
            raise ReportError(f"--out {out} {found}, which bench report never replaces; "
                              "choose a new --out, e.g. reports/out/NAME")
    split = split_folder_holding(out)
    if split is not None:
        found = "is a split folder" if split == out else f"is inside the split folder {split}"
        raise ReportError(f"--out {out} {found}, which bench report never writes to; choose "
                          "a new --out, e.g. reports/out/NAME")
    if out.is_dir():
        for root, dirs, _ in os.walk(out):
            depth = len(Path(root).relative_to(out).parts)
            for d in dirs:
                if is_split_folder(Path(root) / d):
                    raise ReportError(f"--out {out} contains the split folder {Path(root) / d}, "
                                      "which bench report never replaces; choose a new --out, "
                                      "e.g. reports/out/NAME")
            if depth >= 4:
                dirs.clear()


def report_folder_problem(out: Path) -> str | None:
    """Why ``out`` is not a folder that ``bench report`` wrote (``None`` if it is): it must
    hold a provenance.json written by bench report and only the files that lists."""
    prov_path = out / "provenance.json"
    if not prov_path.is_file():
        return "is not a report folder (no provenance.json written by bench report)"
    try:
        prov = json.loads(prov_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "is not a report folder (its provenance.json is not valid JSON)"
    if not isinstance(prov, dict):
        return "is not a report folder (its provenance.json was not written by bench report)"
    command = prov.get("command")
    ours = prov.get("generator") == GENERATOR or (  # reports made before the marker existed
        isinstance(command, list) and command[:2] == ["bench", "report"])
    if not ours:
        return "is not a report folder (its provenance.json was not written by bench report)"
    listed = {str(f) for f in prov.get("files") or []} | {"provenance.json", "README.md"}
    extra = sorted(p.name for p in out.iterdir() if p.name not in listed or p.is_dir())
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        return (f"holds {shown}, which bench report did not write (move "
                f"{'it' if len(extra) == 1 else 'them'} out first)")
    return None


def check_out(out: Path, force: bool, protected: list[tuple[Path, str]] | None = None) -> None:
    """Refuse an ``--out`` that would lose data: a file; the tracking store, its artifacts,
    the working or home directory or a split folder (or a folder holding one); a non-empty
    folder without ``--force``; with ``--force``, a non-empty folder bench report did not
    write."""
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file; give a folder")
    _refuse_protected(out, protected or [])
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise ReportError(f"--out {out} exists and is not empty; choose another folder or add "
                          "--force to replace it")
    problem = report_folder_problem(out)
    if problem:
        raise ReportError(f"--out {out} {problem}; --force replaces only a folder written by "
                          "bench report; choose a new --out")


def build(cfg: ReportConfig, out: Path, uri: str, argv: list[str], force: bool = False) -> Report:
    """Build the report of ``cfg`` from the store at ``uri`` into ``out``."""
    from bench.report import runs as rr

    out = out.resolve()
    _refuse_protected(out, protected_paths(uri))  # before the store is even opened
    mlflow_client = rr.client(uri)
    check_out(out, force, protected_paths(uri, mlflow_client))  # + the experiments' artifacts
    found = rr.find_runs(mlflow_client, cfg.experiment, dataset=cfg.dataset, split=cfg.split,
                         split_sha256=cfg.split_sha256, device=cfg.device, sweep=cfg.sweep,
                         eval_users=cfg.eval_users, fit_data=cfg.fit_data,
                         candidates=cfg.candidates, tuned=bool(cfg.tuned))
    selection = rr.select(found, cfg.dataset, cfg.split)
    if cfg.tuned:
        selection.tuning = rr.tuning_caption(selection.runs)
        selection.curves = rr.trial_curves(mlflow_client, selection.runs)
    keys = choose_keys(selection, cfg)
    notes: list[str] = []
    users = load_user_tables(selection, mlflow_client, notes)
    untested: dict[str, str] = {}
    pair_tests: list[int] = []
    table = compute(selection, cfg, keys, users, notes, untested, pair_tests)
    report = Report(selection, cfg, keys, table, notes, untested, sum(pair_tests), users)

    def write(tmp: Path) -> None:
        write_all(report, tmp, uri, argv)
        check_out(out, force, protected_paths(uri, mlflow_client))  # unchanged while we built

    write_folder_atomically(out, write, existing="swap")
    return report


def write_all(report: Report, tmp: Path, uri: str, argv: list[str]) -> None:
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
    p.add_argument("--force", action="store_true",
                   help="replace a non-empty --out (atomically, after the new report is built)")
    return p


def report_main(argv: list[str]) -> int:
    """``bench report --out DIR [options]``; returns the exit code (2 for user errors)."""
    args = parser().parse_args(argv)
    try:
        from bench.report.runs import default_tracking_uri

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
