"""Read evaluation runs from MLflow and decide which of them may be compared.

Only FINISHED runs that carry ``bench.model`` are read; sweep parents (``bench.sweep=parent``)
are left out. Runs are compared only when they share one ``bench.split_sha256`` and one
``bench.metric_definitions``; different ``bench.version`` values are allowed but flagged.
Efficiency metrics (latency, throughput, fit time, memory) compare only on one ``bench.device``.

A row of a leaderboard or report is one model *configuration* (tag ``bench.config_key``: the
hash of the resolved config without the seed); its seeds are averaged. When a model has several
configurations in the selection, each row is labelled with the logged params that tell them
apart (``itemknn (k=100)``). Runs without the tag (older stores) are one configuration per model.

Nothing here loads a model: the only artifacts downloaded are data files (parquet/json/yaml).
``mlflow`` is imported inside the functions that need it.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from bench.errors import BenchError, TrackingError, did_you_mean

if TYPE_CHECKING:
    import polars as pl

DATA_ARTIFACTS = (".parquet", ".json", ".yaml", ".yml")
_SAFE_VALUE = re.compile(r"^[\w.\-:/ +@]*$")


class ReportError(BenchError):
    """Runs that cannot be reported as asked (none found, not comparable, bad artifact)."""


class DamagedArtifactError(ReportError):
    """An artifact that exists but cannot be read (truncated, overwritten): an error, never a
    note, so a table is not published silently without the statistics it should carry."""


@dataclass(frozen=True)
class Run:
    """One FINISHED evaluation run as the report sees it (tags, params, latest metric values).

    ``label`` names the run's row (set by ``select``): the model name, plus the params that tell
    its configuration apart when the model has several in the selection.
    """

    run_id: str
    run_name: str
    start_time: int
    tags: dict[str, str]
    metrics: dict[str, float]
    experiment_id: str = ""
    artifact_uri: str = ""
    params: dict[str, str] = field(default_factory=dict)
    label: str = ""

    def tag(self, name: str, default: str = "") -> str:
        return self.tags.get(f"bench.{name}", default)

    @property
    def model(self) -> str:
        return self.tag("model")

    @property
    def config_key(self) -> str:
        """``bench.config_key`` ("" for runs made before the tag existed)."""
        return self.tag("config_key")

    @property
    def row(self) -> str:
        """The row this run belongs to: its label, else its model."""
        return self.label or self.model

    @property
    def dataset(self) -> str:
        return self.tag("dataset", "?")

    @property
    def split(self) -> str:
        return self.tag("split", "?")

    @property
    def split_sha256(self) -> str:
        return self.tag("split_sha256")

    @property
    def seed(self) -> int | None:
        try:
            return int(self.tag("seed"))
        except ValueError:
            return None

    @property
    def device(self) -> str:
        return self.tag("device", "unknown")

    @property
    def eval_users(self) -> str:
        """``bench.eval_users`` (``all`` for runs made before populations existed)."""
        return self.tag("eval_users", "all")

    def provenance(self) -> dict[str, Any]:
        """The fields ``provenance.json`` lists for every run."""
        return {
            "run_id": self.run_id,
            "run_name": self.run_name,
            "model": self.model,
            "label": self.row,
            "config_key": self.config_key or None,
            "seed": self.seed,
            "dataset": self.dataset,
            "split": self.split,
            "split_protocol": self.tag("split_protocol") or None,
            "split_sha256": self.split_sha256,
            "git_sha": self.tag("git_sha") or None,
            "bench_version": self.tag("version") or None,
            "metric_definitions": self.tag("metric_definitions") or None,
            "device": self.device,
            "eval_users": self.tag("eval_users") or None,
            "fit_data": self.tag("fit_data") or None,
            "candidates": self.tag("candidates") or None,
            "sweep_id": self.tag("sweep_id") or None,
            "parent_run_id": self.tags.get("mlflow.parentRunId"),
            "start_time_ms": self.start_time,
        }


@dataclass
class Selection:
    """The comparable runs of one dataset+split, with what the user should know about them."""

    runs: list[Run]
    dataset: str
    split: str
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ignored: list[dict[str, str]] = field(default_factory=list)
    #: ``--tuned``: what the tuning was (caption sentence) and each row's best-so-far curve
    tuning: str = ""
    curves: dict[str, list[float]] = field(default_factory=dict)

    @property
    def split_sha256(self) -> str:
        return self.runs[0].split_sha256

    @property
    def split_protocol(self) -> str:
        protocols = sorted({r.tag("split_protocol") for r in self.runs} - {""})
        return ", ".join(protocols) if protocols else "unrecorded"

    @property
    def metric_definitions(self) -> str:
        return self.runs[0].tag("metric_definitions") or "unrecorded"

    @property
    def devices(self) -> list[str]:
        return sorted({r.device for r in self.runs})

    def by_model(self) -> dict[str, list[Run]]:
        """Runs grouped by row label (model [+ config params], sorted), each sorted by seed."""
        return group_by_model(self.runs)

    @property
    def candidates(self) -> str:
        return self.runs[0].tag("candidates", "full")

    @property
    def population(self) -> str:
        """Who the headline metrics average over, its size and the other segment's, e.g.
        ``warm users (n = 57; 96 cold users not evaluated)``; plus the fit data when the
        models were refitted on train+valid."""
        users = self.runs[0].eval_users
        n = _count(self.runs, "n_users_evaluated")
        warm, cold = (_count(self.runs, f"n_users/segment/{s}") for s in ("warm", "cold"))
        if users == "warm":
            text = f"warm users (n = {n}; {cold} cold users not evaluated)"
        elif users == "cold":
            text = f"cold users (n = {n}; {warm} warm users not evaluated)"
        elif warm == "?":  # made before segments were logged
            text = f"all test users (n = {n})"
        else:
            text = f"all test users (n = {n}: {warm} warm, {cold} cold)"
        fit = self.runs[0].tag("fit_data")
        return text + (", models refitted on train+valid" if fit == "train+valid" else "")

    @property
    def candidates_note(self) -> str:
        """'' for full ranking; else what was sampled and that it is not comparable."""
        tag = self.candidates
        if not tag.startswith("sampled-"):
            return ""
        _, n, how = tag.split("-", 2)
        return (f"Sampled candidates: each user ranks its test items plus {n} {how}-sampled "
                "negatives (frozen per split); not comparable to full-ranking results "
                "(Krichene & Rendle 2020).")


def _count(runs: Sequence[Run], key: str) -> str:
    """A count metric over runs: one value, a range when runs differ, '?' when unlogged."""
    values = sorted({int(r.metrics[key]) for r in runs if key in r.metrics})
    if not values:
        return "?"
    return f"{values[0]:,}" if len(values) == 1 else f"{values[0]:,}-{values[-1]:,}"


# ----------------------------------------------------------------------------- store access


def default_tracking_uri() -> str:
    """The contract's default: ``MLFLOW_TRACKING_URI``, else ``sqlite:///<abs cwd>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    return env or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def redact_uri(uri: str) -> str:
    """The URI without userinfo (``https://u:p@h`` -> ``https://***@h``) or password params."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparsable uri>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = re.sub(r"(?i)((?:password|passwd|pwd|token|secret|key)=)[^&]*", r"\1***", parts.query)
    if (netloc, query) == (parts.netloc, parts.query):
        return uri  # nothing to hide (urlunsplit would also drop sqlite's empty netloc)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _check_store(uri: str) -> None:
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if not path.is_file():
            raise TrackingError(
                f"no MLflow store at {path}; run `bench run` here first, or pass "
                "--tracking-uri (or set MLFLOW_TRACKING_URI)"
            )
        from bench.tracking import inspect_sqlite_store

        # junk or truncated: one line naming the file, not SQLAlchemy's traceback
        tables, _ = inspect_sqlite_store(path, full_check=True)
        if "runs" not in tables:
            raise TrackingError(
                f"{path} is a SQLite file but not an MLflow store (no runs table); pass "
                "--tracking-uri with the store `bench run` wrote"
            )
    elif uri.startswith("file:") or Path(uri).is_dir():
        raise TrackingError(
            f"tracking URI {redact_uri(uri)} is a file store, which MLflow 3 no longer reads; "
            "migrate it with `mlflow migrate-filestore --source mlruns --target "
            "sqlite:///$PWD/mlflow.db`"
        )


def client(tracking_uri: str | None = None) -> Any:
    """An ``MlflowClient`` for the URI (default: ``default_tracking_uri()``)."""
    uri = tracking_uri or default_tracking_uri()
    _check_store(uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep stderr clean
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def source(tracking_uri: str | None = None, mlflow_client: Any = None) -> Any:
    """Where to read runs from: a read-only SQL reader for a local SQLite store (no ``mlflow``
    import; see ``bench.report.sources``), else ``mlflow_client`` (or a new ``MlflowClient``)."""
    from bench.report.sources import ClientSource, SqliteSource

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        if mlflow_client is None:  # ``client(uri)`` has checked the store already
            _check_store(uri)
        found = SqliteSource.open(Path(uri[len("sqlite:///"):]))
        if found is not None:
            return found
    return ClientSource(mlflow_client if mlflow_client is not None else client(uri))


def _quote(value: str, what: str) -> str:
    if not _SAFE_VALUE.match(value):
        raise ReportError(f"{what} {value!r} has characters a filter cannot hold; use letters, "
                          "digits and . _ - : / + @")
    return value


def filter_string(dataset: str | None = None, split: str | None = None,
                  split_sha256: str | None = None, device: str | None = None,
                  eval_users: str | None = None, fit_data: str | None = None,
                  candidates: str | None = None) -> str:
    """The MLflow search filter for FINISHED bench runs with the given tags."""
    from bench.report.sources import tag_filter

    tags = {f"bench.{tag}": _quote(value, tag) for tag, value in (
        ("dataset", dataset), ("split", split), ("device", device), ("eval_users", eval_users),
        ("fit_data", fit_data), ("candidates", candidates)) if value}
    return tag_filter(tags, _quote(split_sha256, "sha") if split_sha256 else "")


def search_runs(store: Any, experiment: str = "bench", **tags: str | None) -> list[Run]:
    """Every FINISHED evaluation run of the experiment matching the tags, newest first.

    ``store``: an ``MlflowClient`` or a ``bench.report.sources`` source. ``tags``: ``dataset``,
    ``split``, ``split_sha256`` (a prefix), ``device``, ``eval_users``, ``fit_data``,
    ``candidates``. Sweep parents and runs without ``bench.model`` are left out.
    """
    from bench.report.sources import as_source

    src = as_source(store)
    experiment_id = src.experiment_id(experiment)
    if experiment_id is None:
        names = src.experiment_names()
        raise ReportError(
            f"no experiment '{experiment}' in the store{did_you_mean(experiment, names)}; "
            f"experiments: {', '.join(names) or 'none'} (choose one with --experiment)"
        )
    sha = tags.pop("split_sha256", None) or ""
    wanted = {f"bench.{k}": _quote(v, k) for k, v in tags.items() if v}
    out = src.runs(experiment_id, wanted, _quote(sha, "sha") if sha else "")
    # tuning trials (validation only, no test metric) and study parents are never compared
    return [r for r in out if r.model and r.tags.get("bench.sweep") != "parent"
            and r.tags.get(TUNING_ROLE) not in ("trial", "study")]


TUNING_ROLE = "bench.tuning.role"
TUNING_STUDY = "bench.tuning.study"


def tuned_only(runs: Sequence[Run]) -> list[Run]:
    """The final runs of ``bench tune`` (``bench.tuning.role=final``), of the most recent
    study of each model per dataset, split and protocol."""
    finals = [r for r in runs if r.tags.get(TUNING_ROLE) == "final"]
    latest: dict[tuple[str, ...], tuple[int, str]] = {}
    for r in finals:
        key = (r.model, r.dataset, r.split, *protocol_of(r))
        study = r.tags.get(TUNING_STUDY, "")
        if key not in latest or r.start_time > latest[key][0]:
            latest[key] = (r.start_time, study)
    return [r for r in finals
            if r.tags.get(TUNING_STUDY, "") == latest[(r.model, r.dataset, r.split,
                                                       *protocol_of(r))][1]]


def tuning_caption(runs: Sequence[Run]) -> str:
    """What the tuning of the final runs was: budget, finished trials per model, objective,
    sampler, where the spaces are. Refuses runs tuned with different budgets or objectives."""
    for tag, what in (("budget", "budgets"), ("metric", "objectives"), ("sampler", "samplers")):
        _refuse_mixed(runs, f"tuning.{tag}", f"tuning {what} (bench.tuning.{tag})",
                      "re-tune the models with one `bench tune` budget")
    first = runs[0]
    per_model = sorted({(r.model, r.tag("tuning.trials", "?")) for r in runs})
    trials = ", ".join(f"{m} {n}" for m, n in per_model)
    one = [m for m, n in per_model if n == "1"]
    if one and len(per_model) > len(one):
        trials += f" ({', '.join(one)}: no hyper-parameters, 1 trial)"
    spaces = sorted({str(Path(r.tag("tuning.search_space")).parent) for r in runs
                     if r.tag("tuning.search_space")}) or ["conf/search"]
    return (f"Tuned on validation with an equal budget per model ({first.tag('tuning.budget')}; "
            f"finished trials: {trials}), objective {first.tag('tuning.metric')}, sampler "
            f"{first.tag('tuning.sampler')}, search spaces in {', '.join(spaces)}/; the best "
            "configuration of each model was then run on test.")


def trial_curves(store: Any, runs: Sequence[Run]) -> dict[str, list[float]]:
    """``{row label: objective of each finished trial, in trial order}`` of the studies of
    the (final) runs, read from MLflow."""
    from bench.report.sources import as_source

    src = as_source(store)
    curves: dict[str, list[float]] = {}
    for r in runs:
        study, metric = r.tags.get(TUNING_STUDY, ""), r.tag("tuning.metric")
        if r.row in curves or not study or not metric or not _SAFE_VALUE.match(study):
            continue
        trials = src.runs(r.experiment_id, {TUNING_STUDY: study, TUNING_ROLE: "trial"})
        points = sorted((int(t.tags.get("bench.tuning.trial", "0")), float(t.metrics[metric]))
                        for t in trials if metric in t.metrics)
        curves[r.row] = [v for _, v in points]
    return curves


def resolve_sweep(store: Any, experiment: str, value: str) -> Run:
    """The sweep parent run that ``value`` names: its run id or a prefix of it, the sweep id
    (``bench.sweep_id``, as ``bench run -m`` prints it) or a prefix, or the run name
    ``sweep-<id>``. One line naming the matches when it is ambiguous, or the sweeps there are
    when nothing matches."""
    from bench.report.sources import as_source

    src = as_source(store)
    value = value.strip()
    if not _SAFE_VALUE.match(value) or not value:
        raise ReportError(f"--sweep {value!r} is not a sweep id or run id")
    run = src.get_run(value)
    if run is not None:
        if run.tags.get("bench.sweep") == "parent":
            return run
        raise ReportError(f"--sweep {value}: run {run.run_name or value} is not a sweep "
                          "parent (tag bench.sweep=parent)")
    experiment_id = src.experiment_id(experiment)
    parents = [] if experiment_id is None else src.runs(
        experiment_id, {"bench.sweep": "parent"}, finished=False)
    key = value.removeprefix("sweep-")
    hits = [p for p in parents if p.run_id.startswith(value)
            or p.tags.get("bench.sweep_id", "").startswith(key) or p.run_name == value]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        names = ", ".join(f"{p.tags.get('bench.sweep_id', '?')} (run {p.run_id})"
                          for p in hits[:5])
        raise ReportError(f"--sweep {value} matches {len(hits)} sweeps: {names}; give more "
                          "characters")
    have = ", ".join(p.tags.get("bench.sweep_id", p.run_id) for p in parents[:5])
    raise ReportError(f"--sweep {value}: no sweep with that id, run id or name in experiment "
                      f"'{experiment}'; sweeps there: {have or 'none'} (give the id `bench "
                      "run -m` printed, the sweep-<id> name or the parent's run id)")


def sweep_runs(runs: Sequence[Run], parent: Run) -> list[Run]:
    """The runs of one sweep: children of its parent run plus the runs its jobs reused
    (recorded on the parent as ``bench.reused.<run_id>`` tags)."""
    from bench.tracking import REUSED_TAG

    reused = {v for k, v in parent.tags.items() if k.startswith(REUSED_TAG)}
    return [r for r in runs
            if r.tags.get("mlflow.parentRunId") == parent.run_id or r.run_id in reused]


def find_runs(store: Any, experiment: str = "bench", *, dataset: str | None = None,
              split: str | None = None, split_sha256: str | None = None,
              device: str | None = None, sweep: str | None = None, tuned: bool = False,
              **protocol: str | None) -> list[Run]:
    """``search_runs`` (then only the runs of ``sweep``, a parent run id); when a --dataset or
    --split matches nothing, a ``ReportError`` names the value, a did-you-mean and the
    dataset/split combos there are. ``protocol``: ``eval_users``, ``fit_data``,
    ``candidates`` tag values to keep. ``tuned``: only ``tuned_only``'s final runs."""
    from bench.report.sources import as_source

    store = as_source(store)
    found = search_runs(store, experiment, dataset=dataset, split=split,
                        split_sha256=split_sha256, device=device, **protocol)
    parent = resolve_sweep(store, experiment, sweep) if sweep else None
    if parent is not None:
        found = sweep_runs(found, parent)
    if tuned:
        found = tuned_only(found)
        if not found:
            raise ReportError("no final runs of `bench tune` (bench.tuning.role=final) match; "
                              "run `bench tune model=a,b,...` first, or drop --tuned")
    if not found and (dataset or split):
        everything = search_runs(store, experiment)
        if parent is not None:
            everything = sweep_runs(everything, parent)
        raise no_match(everything, dataset, split, "sweep" if sweep else "store")
    return found


def no_match(runs: Sequence[Run], dataset: str | None, split: str | None,
             where: str = "store") -> ReportError:
    """The error for a --dataset/--split that no run has: which value, did-you-mean, and the
    dataset/split combos of ``runs``."""
    have = Counter((r.dataset, r.split) for r in runs)
    combos = ", ".join(f"{d}/{s} ({n} run{'s' if n != 1 else ''})"
                       for (d, s), n in sorted(have.items())) or "no FINISHED bench runs"
    datasets = sorted({d for d, _ in have})
    splits = sorted({s for d, s in have if dataset in (None, d)})
    if dataset and dataset not in datasets:
        what = f"no FINISHED run has dataset '{dataset}'{did_you_mean(dataset, datasets)}"
    elif split and split not in {s for _, s in have}:
        what = (f"no FINISHED run has split '{split}'"
                f"{did_you_mean(split, splits or {s for _, s in have})}")
    elif dataset and split and (dataset, split) not in have:
        what = (f"dataset '{dataset}' has no FINISHED runs on split '{split}'"
                f"{did_you_mean(split, splits)}")
    else:
        what = (f"no FINISHED runs match dataset={dataset or '*'} split={split or '*'} "
                "and the other filters (--split-sha256, --device, --sweep)")
    return ReportError(f"{what}; the {where} has: {combos} (choose with --dataset/--split)")


def download_artifact(mlflow_client: Any, run_id: str, name: str, dst: Path) -> Path:
    """Download one data artifact (parquet/json/yaml only; never a model or a pickle)."""
    if not name.lower().endswith(DATA_ARTIFACTS) or ".." in Path(name).parts:
        raise ReportError(f"artifact {name!r} is not a data file; reports read only "
                          f"{', '.join(DATA_ARTIFACTS)} artifacts")
    dst.mkdir(parents=True, exist_ok=True)
    try:
        local = mlflow_client.download_artifacts(run_id, name, str(dst))
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a missing file
        raise ReportError(f"run {run_id} has no artifact {name} ({type(exc).__name__}); "
                          "was it made by an older bench or did the run fail to log it?") from exc
    return Path(local)


def per_user_frame(mlflow_client: Any, run: Run, cache_dir: Path | None = None) -> pl.DataFrame:
    """The run's ``per_user.parquet`` (``user_id`` + one column per per-user metric), rows of
    its headline population (``bench.eval_users``) only."""
    import polars as pl

    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        base = cache_dir if cache_dir is not None else Path(tmp)
        path = download_artifact(mlflow_client, run.run_id, "per_user.parquet", base / run.run_id)
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - polars raises ComputeError, OSError, ...
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DamagedArtifactError(
                f"per_user.parquet of run {run.run_name} ({run.run_id}) is damaged ({why}): "
                f"re-run that config with tracking.force=true, or delete the run "
                f"(mlflow runs delete --run-id {run.run_id}) to leave it out"
            ) from exc
    if "user_id" not in frame.columns:
        raise ReportError(f"per_user.parquet of run {run.run_name} ({run.run_id}) has no user_id "
                          f"column (columns: {', '.join(frame.columns)})")
    if "segment" in frame.columns:  # every evaluated user: keep the headline population's
        if run.eval_users != "all":
            frame = frame.filter(pl.col("segment") == run.eval_users)
        frame = frame.drop("segment")
    return frame


# ----------------------------------------------------------------------------- selection


def group_by_model(runs: Iterable[Run]) -> dict[str, list[Run]]:
    """Runs grouped by row label (``Run.row``, sorted), each group sorted by seed."""
    groups: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        groups[r.row].append(r)
    return {m: sorted(rs, key=lambda r: (r.seed is None, r.seed or 0, r.start_time))
            for m, rs in sorted(groups.items())}


def pick_combo(runs: Sequence[Run], dataset: str | None, split: str | None) -> tuple[
        list[Run], str, str, list[str]]:
    """Keep the runs of one dataset+split: the one asked for, else the most recent one.

    With several combos in the store and none chosen, the most recent combo (by its newest run)
    is reported, and a note names the others and how to choose them.
    """
    combos: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for r in runs:
        if (dataset is None or r.dataset == dataset) and (split is None or r.split == split):
            combos[(r.dataset, r.split)].append(r)
    if not combos:
        raise no_match(runs, dataset, split)
    newest = max(combos, key=lambda c: max(r.start_time for r in combos[c]))
    notes = []
    if len(combos) > 1:
        others = ", ".join(f"{d}/{s} ({len(combos[(d, s)])} runs)" for d, s in sorted(combos)
                           if (d, s) != newest)
        notes.append(f"showing {newest[0]}/{newest[1]}, the most recent of {len(combos)} "
                     f"dataset/split combos; others: {others} (choose with --dataset/--split)")
    return combos[newest], newest[0], newest[1], notes


#: protocol tags never mixed in one comparison: (tag, what it is, the option choosing one)
PROTOCOL_CHOICES = (
    ("eval_users", "evaluated populations (bench.eval_users)", "--eval-users"),
    ("fit_data", "fit data (bench.fit_data)", "--fit-data"),
    ("candidates", "candidate protocols (bench.candidates; sampled metrics are not comparable "
                   "to full ranking)", "--candidates"),
)


def protocol_of(run: Run) -> tuple[str, ...]:
    """The run's ``PROTOCOL_CHOICES`` tag values ('' where unrecorded)."""
    return tuple(run.tag(tag) for tag, _, _ in PROTOCOL_CHOICES)


def _refuse_mixed(runs: Sequence[Run], tag: str, what: str, fix: str) -> None:
    counts = Counter(r.tag(tag) or "unrecorded" for r in runs)
    if len(counts) > 1:
        width = 12 if tag == "split_sha256" else 40
        shown = ", ".join(f"{v[:width]} ({n} runs)" for v, n in counts.most_common())
        raise ReportError(f"refusing to compare runs with different {what}: {shown}; {fix}")


def dedupe(runs: Sequence[Run]) -> tuple[list[Run], list[dict[str, str]], list[str]]:
    """One run per (model, config_key, seed): the most recent; older ones are reported as
    ignored. Runs without ``bench.config_key`` share the key "" (one run per model+seed)."""
    keep: dict[tuple[str, str, int | None], Run] = {}
    ignored: list[dict[str, str]] = []
    for r in sorted(runs, key=lambda r: -r.start_time):
        key = (r.model, r.config_key, r.seed)
        if key in keep:
            ignored.append({"run_id": r.run_id, "run_name": r.run_name,
                            "config_key": r.config_key,
                            "reason": "older run of the same model configuration+seed as "
                                      f"{keep[key].run_id}"})
        else:
            keep[key] = r
    notes = []
    if ignored:
        n = len(ignored)
        notes.append(f"{n} older run{'s' if n != 1 else ''} of an already reported model "
                     "configuration+seed ignored (the most recent run of each is used; "
                     "`bench report` lists their run ids in provenance.json, ignored_runs)")
    return list(keep.values()), ignored, notes


MAX_LABEL_PARAMS = 4


def _short_value(value: str, width: int = 32) -> str:
    return value if len(value) <= width else value[: width - 3] + "..."


def distinguishing_params(params: dict[str, dict[str, str]]) -> list[str]:
    """The fewest logged params that tell the configurations (config_key -> params) apart:
    greedily the param that separates the most still-confused pairs; ``model.params.*`` first,
    then by name, among params that separate as many. Returned in name order."""
    from bench.tracking import identity_param

    names = sorted({k for p in params.values() for k in p if identity_param(k)},
                   key=lambda k: (not k.startswith("model.params."), k))
    keys = list(params)
    pairs = {(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]}
    chosen: list[str] = []
    while pairs:
        best, split = "", set[tuple[str, str]]()
        for name in names:
            parted = {(a, b) for a, b in pairs if params[a].get(name) != params[b].get(name)}
            if len(parted) > len(split):
                best, split = name, parted
        if not split:
            break  # the rest differ in no logged param: the config_key prefix tells them apart
        chosen.append(best)
        pairs -= split
    return sorted(chosen, key=lambda k: (not k.startswith("model.params."), k))


def label_rows(runs: Sequence[Run]) -> list[Run]:
    """The runs with ``label`` set: the model name when the model has one configuration in
    ``runs``; else ``model (k=v, ...)`` with the fewest logged params that tell that model's
    configurations apart (``distinguishing_params``; ``model.params.`` is dropped from the
    names), or the config_key prefix when no param does."""
    configs: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        configs[r.model][r.config_key].append(r)
    labels: dict[tuple[str, str], str] = {}
    for model, by_key in configs.items():
        if len(by_key) == 1:
            labels[(model, next(iter(by_key)))] = model
            continue
        params = {ck: max(rs, key=lambda r: r.start_time).params for ck, rs in by_key.items()}
        shown = distinguishing_params(params)
        for ck, p in params.items():
            parts = [f"{k.removeprefix('model.params.')}={_short_value(p.get(k, '-'))}"
                     for k in shown[:MAX_LABEL_PARAMS]]
            if len(shown) > MAX_LABEL_PARAMS:
                parts.append("...")
            labels[(model, ck)] = f"{model} ({', '.join(parts) or _config_id(ck)})"
        seen = Counter(labels[(model, ck)] for ck in by_key)
        for ck in by_key:  # params do not tell them apart: add the config_key prefix
            if seen[labels[(model, ck)]] > 1:
                labels[(model, ck)] = labels[(model, ck)][:-1] + f"; {_config_id(ck)})"
    return [replace(r, label=labels[(r.model, r.config_key)]) for r in runs]


def _config_id(config_key: str) -> str:
    return f"config {config_key[:8]}" if config_key else "config unrecorded"


def select(runs: Sequence[Run], dataset: str | None = None, split: str | None = None) -> Selection:
    """The comparable runs of one dataset+split, or a ``ReportError`` saying why not and the fix.

    Refuses different ``bench.split_sha256`` (the split was re-made: filter with
    ``--split-sha256``) and different ``bench.metric_definitions`` (the metrics mean different
    things). Different ``bench.version`` values give a warning.
    """
    if not runs:
        raise ReportError("no FINISHED bench runs match; run `bench run ...` first, or check "
                          "--tracking-uri/--experiment and the filters")
    combo, ds, sp, notes = pick_combo(runs, dataset, split)
    _refuse_mixed(combo, "split_sha256", f"split sha256 for {ds}/{sp}",
                  "choose one with --split-sha256 PREFIX (or re-run the models on one split)")
    _refuse_mixed(combo, "metric_definitions", "metric definitions versions",
                  "re-run the older models with the current bench, or filter them out")
    for tag, what, option in PROTOCOL_CHOICES:
        _refuse_mixed(combo, tag, what, f"choose one with {option} VALUE")
    kept, ignored, dnotes = dedupe(combo)
    kept = label_rows(kept)
    relabelled = sorted({r.model for r in kept if r.label != r.model})
    if relabelled:
        dnotes.append(f"{', '.join(relabelled)}: several configurations in the selection, one "
                      "row each (labelled with the params that differ)")
    warnings = []
    versions = Counter(r.tag("version") or "unrecorded" for r in kept)
    if len(versions) > 1:
        shown = ", ".join(f"{v} ({n} runs)" for v, n in sorted(versions.items()))
        warnings.append(f"runs come from different bench versions: {shown} "
                        "(listed per run in provenance.json)")
    return Selection(kept, ds, sp, notes + dnotes, warnings, ignored)


def check_devices(selection: Selection, keys: Iterable[str], explicit: bool) -> list[str]:
    """Device-bound keys (latency, ...) that may be shown; refuse or drop them across devices.

    With runs from several ``bench.device`` values, explicitly requested device-bound metrics
    are refused (fix: ``--device``); default ones are dropped with a note.
    """
    from bench.report.metrics import device_bound

    keys = list(keys)
    bound = [k for k in keys if device_bound(k)]
    devices = selection.devices
    if not bound or len(devices) <= 1:
        return keys
    if explicit:
        raise ReportError(f"{', '.join(bound)} measured on {len(devices)} devices "
                          f"({', '.join(devices)}) cannot be compared; add --device "
                          f"{devices[0]!r} (or drop the efficiency metrics)")
    selection.notes.append(f"efficiency metrics ({', '.join(bound)}) left out: runs come from "
                           f"{len(devices)} devices ({', '.join(devices)}); add --device")
    return [k for k in keys if k not in bound]
