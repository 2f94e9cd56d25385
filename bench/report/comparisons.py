"""The report's numbers, apart from how they are printed: per model and metric the mean and std
over seeds, a bootstrap CI over users and a t-based CI over seeds, and paired tests over users
against a baseline (``†``/``‡``) or between all pairs of rows (letters), corrected for
multiple testing over the table. The tests themselves are in ``bench.report.stats``.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from bench.errors import did_you_mean, unknown
from bench.report import metrics as cat
from bench.report import stats
from bench.report.leaderboard import Cell, summarize
from bench.report.runs import (
    DamagedArtifactError,
    ReportError,
    Selection,
    check_devices,
    per_user_frame,
)
from bench.report.spec import DEFAULT_METRICS, ReportConfig


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
    """Everything a report prints: the selected runs, the config, the table's keys and rows,
    the per-user frames behind the tests, and the notes for README.md."""

    selection: Selection
    config: ReportConfig
    keys: list[str]
    table: dict[str, dict[str, Comparison]]  # row label -> key -> numbers
    notes: list[str] = field(default_factory=list)
    untested: dict[str, str] = field(default_factory=dict)  # key -> why no test (baseline set)
    pair_tests: int = 0  # --all-pairs: tests in the family
    users: dict[str, Any] = field(default_factory=dict)  # row -> per-user frame (seed means)


def choose_keys(selection: Selection, cfg: ReportConfig) -> list[str]:
    """Metric keys of the table: the asked ones (all must be logged) or the default ones."""
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
    """Every row tested against the baseline on every key with per-user values (one family
    for the correction); fills ``p``, ``p_adj``, ``dz`` and ``better`` of the cells."""
    base = users.get(_check_baseline(table, cfg))
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


def _check_baseline(table: dict[str, dict[str, Comparison]], cfg: ReportConfig) -> str:
    """``--baseline``, which must be a row label (a model with several configurations has
    several)."""
    if cfg.baseline in table:
        return cfg.baseline
    rows = [m for m in table if m.startswith(f"{cfg.baseline} (")]
    if rows:
        raise ReportError(f"--baseline {cfg.baseline}: the model has {len(rows)} "
                          f"configurations here ({', '.join(repr(r) for r in rows)}); "
                          "give one of these row labels")
    raise unknown("baseline model", str(cfg.baseline), table)
