"""What a report shows: ``ReportConfig``, filled from a YAML spec (``reports/specs/``) and
overridden by command-line options, validated before the store is opened.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bench.errors import ConfigError, unknown
from bench.files import read_yaml
from bench.report import stats
from bench.report.figures import FIGURES, TUNING_FIGURES

DEFAULT_METRICS = ("ndcg_at_10", "recall_at_10", "hit_rate_at_10", "mrr_at_10",
                   "coverage_at_10", "novelty_at_10")
SPEC_KEYS = ("dataset", "split", "split_sha256", "experiment", "device", "eval_users",
             "fit_data", "candidates", "metrics", "baseline", "test", "correction", "alpha",
             "figures", "n_resamples", "n_bootstrap", "seed", "models", "rename", "precision",
             "layout", "label", "all_pairs", "tuned")
LAYOUTS = ("auto", "column", "wide")


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


def load_spec(path: Path) -> dict[str, Any]:
    """A report spec (YAML mapping with keys of ``SPEC_KEYS``)."""

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
    if cfg.test not in stats.TESTS:
        raise unknown("test", cfg.test, stats.TESTS)
    if cfg.correction not in stats.CORRECTIONS:
        raise unknown("correction", cfg.correction, stats.CORRECTIONS)
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
