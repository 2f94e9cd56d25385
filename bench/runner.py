"""One experiment: split -> model -> topk -> metrics -> efficiency -> MLflow.

``run_experiment(cfg)`` takes the resolved Hydra config (a plain dict). Everything it logs is
defined in the contract; the order of work is chosen so that bad input fails before any model
loads (config validation, split checksums, model name and parameters).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from bench import __version__, item_text
from bench import candidates as cands
from bench.candidates import restrict
from bench.console import progress_enabled, say  # also imported from here by app, callbacks
from bench.data.indexing import IndexedSplit
from bench.errors import ConfigError
from bench.latency import LatencyConfig, PeakMemory, StageMeter, measure
from bench.metrics.engine import evaluate_arrays
from bench.metrics.fairness import MIN_GROUP_SIZE
from bench.models.base import FitContext, History, ModelData, Recommender
from bench.models.report import ModelReport, Probe, RemoteCalls
from bench.protocol import SEGMENTS, EvalProtocol, population, segments, warm_mask
from bench.ranking import rank_users, tie_ranks, topk
from bench.splits import Split
from bench.tracking import raise_pending

log = logging.getLogger("bench.run")


@dataclass
class RunOutcome:
    status: str  # FINISHED | SKIPPED | DRY
    run_id: str | None
    run_key: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class Job:
    """One run as decided before any run exists: the resolved config, the model built and
    checked from it, the materialized and verified split, the device, the checked
    ``metrics.item_embeddings`` (``embedding_spec``), the stage meter, and the run's identity
    in the store (``keyed``: the config it is keyed by, with the model's provenance and any
    run tags; ``run_key``; ``provenance``; ``tags``). ``test=False``: a tuning trial (fit and
    ``valid/`` metrics only)."""

    cfg: Mapping[str, Any]
    model: Recommender
    split: Split
    device: str
    emb_spec: tuple[str, str] | None
    stages: StageMeter
    keyed: Mapping[str, Any]
    run_key: str
    provenance: Mapping[str, str]
    tags: Mapping[str, str]
    test: bool = True

    @property
    def name(self) -> str:
        """``{model}-s{seed}-{dataset}-{split}`` (``run_name``)."""
        return run_name(self.cfg)

    def rebuild(self, overrides: Mapping[str, Any]) -> Recommender:
        """A fresh model from the registry with its params plus ``overrides`` (the refit)."""
        from bench.models import registry

        model_cfg = self.cfg["model"]
        params = {**dict(model_cfg.get("params") or {}), **overrides}
        return registry.build(str(model_cfg["name"]), params)


@dataclass
class Evaluation:
    """What ``execute`` gives back: the metrics to log, the files to log as artifacts, the
    model that scored the test set (the refitted one after a refit) and its report, and a
    refit's parameter overrides (None without a refit)."""

    metrics: dict[str, float]
    files: dict[str, Path]
    model: Recommender
    report: ModelReport = field(default_factory=ModelReport)
    refit_overrides: dict[str, Any] | None = None


@dataclass(frozen=True)
class EvalSetting:
    """How a run evaluates, derived once from the config and the indexed split."""

    data: IndexedSplit
    proto: EvalProtocol
    ks: tuple[int, ...]  # sorted
    exclude_seen: bool
    tie_rank: np.ndarray
    budget_mb: float
    cache_dir: Path

    @property
    def md(self) -> ModelData:
        return self.data.model_data

    @property
    def kmax(self) -> int:
        return max(self.ks)


@dataclass(frozen=True)
class RankedUsers:
    """The test users ranked by the harness: ``users`` (sorted; every user with a relevant
    test item) and their top-k ``rec``/``vals``, ``ties`` (a tie across the k-th place), the
    ``headline`` population (``eval.users``), the ``warm`` mask (interactions in the fit
    data), the test ``truth``, the scored ``hist`` (with the sampled candidate sets, if any)
    and what ``topk`` masked (``exclude``: the history, or None with exclude_seen=false)."""

    users: np.ndarray
    rec: np.ndarray
    vals: np.ndarray
    ties: np.ndarray
    headline: np.ndarray
    warm: np.ndarray
    truth: sp.csr_matrix
    hist: History
    exclude: sp.csr_matrix | None


@dataclass(frozen=True)
class RunRecord:
    """What ``write_artifacts`` writes beside the metrics: the config, the split's manifest,
    the recommendations, the per-user metric table, the model's own files (its report's
    ``artifacts``) and the sampled test candidate sets (None under full ranking)."""

    cfg: Mapping[str, Any]
    split: Split
    data: IndexedSplit
    ranking: RankedUsers
    per_user: pl.DataFrame
    model_files: Mapping[str, Path]
    candidates: sp.csr_matrix | None = None


# ---------------------------------------------------------------------------------------------
# pieces


def load_split(cfg: Mapping[str, Any]) -> Split:
    from bench.splits import SplitConfig, materialize

    split_cfg = SplitConfig.from_mapping(cfg["split"])
    root = Path(cfg["paths"]["splits"]).resolve()
    return materialize(cfg["dataset"], split_cfg, root, progress=say)


def item_genres(items: pl.DataFrame) -> list[frozenset[str]] | None:
    if "genres" not in items.columns:
        return None
    return [frozenset(g or ()) for g in items["genres"].to_list()]


def embedding_spec(cfg: Mapping[str, Any]) -> tuple[str, str] | None:
    """``metrics.item_embeddings`` checked: (encoder folder, template), or None when it is
    null. Called before any data work, so a bad value fails the job at once."""
    spec = (cfg.get("metrics") or {}).get("item_embeddings")
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or set(spec) - {"encoder", "template"}:
        raise ConfigError(
            f"metrics.item_embeddings must be null or {{encoder: <folder or ''>, template: "
            f"'<text with {{column}} fields>'}}, got {spec!r}"
        )
    template = str(spec.get("template") or "")
    fields = item_text.check_template(template, "metrics.item_embeddings.template")
    if not fields:
        raise ConfigError(
            "metrics.item_embeddings.template has no {column} field: every item would get the "
            "same text (e.g. template='{title} ({year}). Genres: {genres}.')"
        )
    encoder = str(spec.get("encoder") or "") or item_text.encoder().default_path()
    if not Path(encoder).is_dir():
        raise ConfigError(
            f"metrics.item_embeddings.encoder: '{encoder}' is not a folder (a local Hugging Face "
            f"encoder; '' = the bundled all-MiniLM-L6-v2)"
        )
    return encoder, template


def item_embeddings(
    spec: tuple[str, str] | None,
    items: pl.DataFrame,
    n_items: int,
    cache_dir: Path,
    progress: bool,
) -> np.ndarray | None:
    """Unit-norm item text embeddings for ``ild_emb`` (``metrics.item_embeddings``), or None.

    Texts come from the template, the encoder is a local folder (default: the bundled
    all-MiniLM-L6-v2) read by the ``bench.item_text`` encoder registered as ``hf``;
    embeddings are cached on disk like llm-embed's, so only the first run on a dataset
    encodes. Items whose text is empty (no side information) get a NaN row: they are
    left out of the pairs, as items without genres are for ``ild``. None when the option is
    null or no item has text. ``spec``: ``embedding_spec``'s (encoder, template).
    """
    if spec is None:
        return None
    encoder, template = spec
    # some fields are columns: a field that is not is a typo, not missing side information
    some = set(item_text.check_template(template, "metrics.item_embeddings")) & set(items.columns)
    where = ("metrics.item_embeddings", "metrics.item_embeddings.template")
    texts = item_text.render_item_texts(items, n_items, template, strict=where if some else None)
    blank = item_text.blank_item_text(template)
    has_text = np.array([t != blank for t in texts], dtype=bool)
    if not has_text.any():
        return None
    emb = item_text.encoder().embed(texts, encoder, cache_dir, template=template, progress=progress)
    out = np.asarray(emb).astype(np.float64)
    out[~has_text] = np.nan
    return out


def ranker(
    score: Callable[[np.ndarray], np.ndarray],
    candidates: sp.csr_matrix | None,
) -> Callable[[np.ndarray], np.ndarray]:
    """``score`` restricted to the sampled candidate sets (NaN elsewhere), or as it is."""
    if candidates is None:
        return score
    return lambda b: restrict(np.asarray(score(b), dtype=np.float64), candidates[b])


def candidate_sets(split, proto: EvalProtocol, part: str) -> sp.csr_matrix | None:
    """The frozen sampled candidate sets of ``part`` (test or valid), None for full ranking."""
    if not proto.sampled:
        return None
    md = split.model_data
    positives = split.matrix(part)
    history = (md.test_history if part == "test" else md.train_history).matrix
    pop = np.bincount(md.train_history.matrix.indices, minlength=md.n_items)  # distinct users
    seed = cands.seed_for(md.split_sha256, part, proto.n_negatives, proto.negatives)

    def make() -> sp.csr_matrix:
        say(f"drawing {part} candidate sets ({proto.candidates_tag}) once for this split")
        return cands.sample(positives, history, proto.n_negatives, proto.negatives, pop, seed)

    m, _ = cands.frozen(
        md.split_dir, md.split_sha256, part, proto.n_negatives, proto.negatives, make,
        md.user_ids, md.item_ids,
    )
    return m


def make_validator(
    split,
    cfg: Mapping[str, Any],
    tie_rank: np.ndarray,
    proto: EvalProtocol,
    candidates: sp.csr_matrix | None = None,
):
    """``ctx.validate``: rank the valid users of the run's population (``eval.users``, warm =
    with train interactions) on the train history with the harness's own topk (within the
    sampled candidate sets, if any) and score them with the harness's accuracy metrics on
    ``valid``."""
    md = split.model_data
    truth = split.matrix("valid")
    hist = dataclasses.replace(md.train_history, candidates=candidates)
    valid_users = np.flatnonzero(np.diff(truth.indptr) > 0).astype(np.int64)
    users = population(valid_users, warm_mask(hist.matrix), proto.users)
    ks = tuple(int(k) for k in cfg["eval"]["ks"])
    budget = float(cfg["eval"].get("batch_budget_mb", 256))

    def validate(model) -> dict[str, float]:
        rec, _, _ = rank_users(
            ranker(lambda b: model.score(b, hist), candidates),
            users,
            max(ks),
            hist.matrix,
            md.n_items,
            budget,
            tie_rank=tie_rank,
        )
        return evaluate_arrays(users, rec, truth, ks).summary

    return validate


def refit_data(md):
    """``ModelData`` for a refit on train+valid: ``train`` is train and valid together and
    both histories are the test history (``data.valid`` stays, but no validation runs)."""
    both = pl.concat([md.train, md.valid]).sort(["user_idx", "timestamp", "item_idx"])
    return dataclasses.replace(
        md, train=both, train_history=md.test_history, test_history=md.test_history
    )


def recommendations_frame(
    split, users: np.ndarray, rec: np.ndarray, vals: np.ndarray
) -> pl.DataFrame:
    k = rec.shape[1]
    mask = rec >= 0
    uu = np.repeat(users, k).reshape(len(users), k)[mask]
    ranks = np.tile(np.arange(1, k + 1), (len(users), 1))[mask]
    return pl.DataFrame(
        {
            "user_id": split.user_ids[uu].astype(str) if len(uu) else np.array([], dtype=str),
            "rank": ranks.astype(np.int64),
            "item_id": split.item_ids[rec[mask]].astype(str)
            if len(uu)
            else np.array([], dtype=str),
            "score": vals[mask].astype(np.float64),
        },
        schema={"user_id": pl.Utf8, "rank": pl.Int64, "item_id": pl.Utf8, "score": pl.Float64},
    )


def per_user_frame(split, by_segment: Mapping[str, Any]) -> pl.DataFrame:
    """``user_id``, ``segment`` (warm | cold) and one column per per-user metric, for every
    evaluated user of both segments, in user order."""
    frames = []
    for name, res in by_segment.items():
        cols: dict[str, Any] = {
            "user_id": split.user_ids[res.users].astype(str),
            "segment": [name] * len(res.users),
        }
        for k in sorted(res.per_user):
            cols[k] = np.asarray(res.per_user[k], dtype=np.float64)
        frames.append(pl.DataFrame(cols, schema_overrides={"segment": pl.Utf8}))
    if not frames:
        return pl.DataFrame(schema={"user_id": pl.Utf8, "segment": pl.Utf8})
    return pl.concat(frames, how="diagonal").sort("user_id")


def reference_metrics(report: ModelReport, evaluate) -> dict[str, float]:
    """Metrics of a model's ``reference_rankings`` and ``probes`` (``ModelReport``).

    ``evaluate(users, rec, full)``: the whole suite for a reference ranking (logged as
    ``<name>/<key>``), the accuracy metrics only (``full=False``) for a probe's rankings.
    """
    out: dict[str, float] = {}
    for name, ranking in report.reference_rankings.items():
        summary = evaluate(ranking.users, ranking.items, True)
        out.update({f"{name}/{k}": v for k, v in summary.items()})
    for name, probe in report.probes.items():
        out.update(probe_metrics(name, probe, evaluate))
    return out


def probe_metrics(name: str, probe: Probe, evaluate) -> dict[str, float]:
    """``<name>/<i>/<key>`` of each of the probe's rankings and ``<name>/<key>_std`` (sample
    std, 0 for one ranking) and ``<name>/<key>_range`` across them, for ``probe.metrics``."""
    out: dict[str, float] = {}
    values: dict[str, list[float]] = {}
    for i, ranking in enumerate(probe.rankings):
        summary = evaluate(ranking.users, ranking.items, False)
        for key in probe.metrics:
            if key in summary:
                out[f"{name}/{i}/{key}"] = summary[key]
                values.setdefault(key, []).append(summary[key])
    for key, vals in values.items():
        out[f"{name}/{key}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        out[f"{name}/{key}_range"] = float(np.max(vals) - np.min(vals))
    return out


# ---------------------------------------------------------------------------------------------
# the run


def run_name(cfg: Mapping[str, Any]) -> str:
    """``{model}-s{seed}-{dataset}-{split}``: model and seed first, where the MLflow runs
    table cuts long names."""
    return f"{cfg['model']['name']}-s{cfg['seed']}-{cfg['dataset']['name']}-{cfg['split']['name']}"


def base_tags(cfg: Mapping[str, Any], split, key: str, device: str) -> dict[str, str]:
    from bench import tracking
    from bench.environment import device_tags, git_info
    from bench.metrics.catalog import METRIC_DEFINITIONS_VERSION

    git = git_info()
    tags = {
        "bench.dataset": str(cfg["dataset"]["name"]),
        "bench.split": str(cfg["split"]["name"]),
        "bench.split_protocol": str(cfg["split"]["protocol"]),
        "bench.split_sha256": split.sha256,
        "bench.split_dir": str(split.path),
        "bench.model": str(cfg["model"]["name"]),
        "bench.seed": str(cfg["seed"]),
        "bench.run_key": key,
        "bench.config_key": tracking.config_key(cfg, split.sha256),
        "bench.version": __version__,
        "bench.git_sha": git.get("sha", "unknown"),
        "bench.git_dirty": str(git.get("dirty", "unknown")).lower(),
        "bench.metric_definitions": METRIC_DEFINITIONS_VERSION,
    }
    tags.update(device_tags(device))
    tags.update(EvalProtocol.for_run(cfg).tags())
    if os.environ.get("BENCH_SWEEP_ID"):
        tags["bench.sweep_id"] = os.environ["BENCH_SWEEP_ID"]
    return tags


def run_experiment(
    cfg: Mapping[str, Any],
    store=None,
    *,
    test: bool = True,
    tags: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
) -> RunOutcome:
    """Run one resolved config end to end and log it; see the module docstring.

    ``test=False`` (a tuning trial) stops after the fit and the ``valid/`` metrics: the test
    split is never ranked, scored or timed and no test artifact is written. ``tags`` are added
    to the run's tags and enter its run key (a tuning trial or final run is never a plain
    run's duplicate); ``parent_run_id`` nests the run (default: the sweep's, from the env)."""
    from bench import tracking

    job = prepare(cfg, test=test, tags=tags)
    if store is None:
        store = tracking.store_for(cfg.get("tracking", {}) or {}, Path(cfg["paths"]["root"]))
    if store is None:
        evaluation = execute(job, Path(tempfile.mkdtemp()))
        return RunOutcome("DRY", None, job.run_key, evaluation.metrics)
    try:
        return _tracked(job, store, parent_run_id)
    except Exception as e:
        from bench.errors import disk_full, is_disk_full

        if is_disk_full(e):  # the store, its artifacts, the run's temp folder: say which
            raise disk_full(e, _full_place(store), f"logging run {job.name}") from e
        raise


def prepare(
    cfg: Mapping[str, Any], *, test: bool = True, tags: Mapping[str, str] | None = None
) -> Job:
    """Everything checked before any run exists, in this order, so bad input fails before
    any data work: the device, the metric names, the model (name and parameters),
    ``metrics.item_embeddings``; then the split is materialized (or verified) and the run
    keyed by the config, the split and the model's provenance."""
    from bench import tracking
    from bench.config import validate
    from bench.environment import resolve_device
    from bench.metrics.catalog import resolve_metric
    from bench.models import registry

    validate(cfg)  # the schema's range checks, for callers that built ``cfg`` themselves
    device = resolve_device(str(cfg.get("device", "cpu")))
    resolve_metric(str(cfg["eval"].get("early_stopping_metric", "ndcg_at_10")))
    resolve_metric(str((cfg.get("report") or {}).get("leaderboard_metric", "ndcg_at_10")))
    model_cfg = cfg["model"]
    # validate the model before any data work: unknown names/params fail fast
    model = registry.build(str(model_cfg["name"]), dict(model_cfg.get("params") or {}))
    emb_spec = embedding_spec(cfg)
    stages = stage_meter(cfg, device)
    with stages("split"):
        split = load_split(cfg)
    provenance = {str(k): str(v) for k, v in model.report().provenance.items()}
    # what the config names by path (model folders) enters the keys by content
    keyed = {**cfg, "provenance": provenance} if provenance else cfg
    if tags or not test:
        keyed = {**keyed, "run_tags": dict(tags or {}), "phase": "test" if test else "valid"}
    return Job(
        cfg=cfg, model=model, split=split, device=device, emb_spec=emb_spec, stages=stages,
        keyed=keyed, run_key=tracking.run_key(keyed, split.sha256), provenance=provenance,
        tags={str(k): str(v) for k, v in (tags or {}).items()}, test=test,
    )


def _full_place(store) -> str:
    """Which of the places a run writes is (nearly) full: the experiment's artifact folder,
    the SQLite store, the temp folder; the store's URI when none of the local ones is."""
    import shutil
    from urllib.parse import urlparse

    from bench import tracking

    places: list[Path] = []
    with contextlib.suppress(Exception):
        loc = str(store.client.get_experiment(store.experiment_id).artifact_location)
        if loc.startswith("file:") or loc.startswith("/"):
            places.append(Path(urlparse(loc).path if loc.startswith("file:") else loc))
    db = tracking.sqlite_path(store.uri)
    places += [db] if db is not None else []
    places.append(Path(tempfile.gettempdir()))
    for place in places:
        probe = place
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        with contextlib.suppress(OSError):
            if shutil.disk_usage(probe).free < (1 << 20):
                return str(place)
    return str(db) if db is not None else tracking.redact_text(store.uri)


def _tracked(job: Job, store, parent_run_id: str | None = None) -> RunOutcome:
    """Claim the run key, then execute and log the run (``run_experiment``'s second half)."""
    from bench import tracking

    cfg, key = job.cfg, job.run_key
    tcfg = cfg.get("tracking", {}) or {}
    store.reap_stale()
    parent = parent_run_id or os.environ.get(tracking.PARENT_ENV) or None
    tags = base_tags(job.keyed, job.split, key, job.device)
    tags.update({f"bench.provenance.{k}": v for k, v in job.provenance.items()})
    tags.update(job.tags)

    def waiting(other) -> None:
        t = other.data.tags
        say(
            f"waiting: run {other.info.run_id} with the same run_key is RUNNING (pid "
            f"{t.get('bench.pid', '?')} on {t.get('bench.host', '?')}); {job.name} reuses "
            f"it when it finishes, or runs if it fails"
        )

    outcome, claimed = store.claim(
        key,
        lambda: tracking.create_run(store, job.name, tags, parent),
        force=bool(tcfg.get("force", False)),
        on_wait=waiting,
    )
    if outcome == "done":
        say(
            f"skip {job.name}: FINISHED run {claimed.info.run_id} has the same run_key "
            f"(tracking.force=true runs it again)"
        )
        if parent:  # the sweep's summary includes the reused run
            tracking.record_reuse(store, parent, claimed.info.run_id)
        return RunOutcome("SKIPPED", claimed.info.run_id, key, {})
    with tracking.TrackedRun(store, job.name, tags, parent, run_id=claimed) as run:
        say(f"run {job.name} -> {run.run_id}")
        run.log_params(tracking.params_of(cfg))
        tracking.log_split_input(
            store, run.run_id, str(cfg["dataset"]["name"]), str(cfg["split"]["name"]),
            job.split.sha256, str(job.split.path), job.split.manifest.get("counts", {}),
        )
        with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
            evaluation = execute(job, Path(tmp))
            log_evaluation(run, evaluation)
        return RunOutcome("FINISHED", run.run_id, key, evaluation.metrics)


def log_evaluation(run, evaluation: Evaluation) -> None:
    """Log an evaluation into the open ``run``: what a refit changed (tag
    ``bench.refit_params``), the metrics, the artifact files, the model's family tag."""
    overrides = evaluation.refit_overrides
    if overrides is not None:  # eval.fit_data=train+valid: what the refit changed
        run.set_tags({"bench.refit_params": json.dumps(overrides, sort_keys=True)})
    run.log_metrics(evaluation.metrics)
    for path in evaluation.files.values():
        run.log_artifact(path)
    if evaluation.report.family:
        run.set_tags({"bench.model_family": evaluation.report.family})


def stage_meter(cfg: Mapping[str, Any], device: str) -> StageMeter:
    """Seconds and peak RSS per stage of a run (``stage_seconds/*``, ``stage_peak_rss_mb/*``),
    each stage's figures printed when it ends if progress is on. A signal received during a
    stage whose exception was swallowed is raised when the stage ends."""
    show = progress_enabled(cfg)

    def report(name: str, seconds: float, peak_mb: float) -> None:
        if show:
            say(f"stage {name}: {seconds:.1f} s, peak RSS {peak_mb:,.0f} MB")
        raise_pending()

    return StageMeter(device, report=report)


# ---------------------------------------------------------------------------------------------
# the evaluation


def execute(job: Job, workdir: Path) -> Evaluation:
    """Fit, rank, evaluate, measure; files go to ``workdir``. ``job.test=False``: fit and
    ``valid/`` metrics only (``validation_only``)."""
    cfg, stages = job.cfg, job.stages
    setting = eval_setting(job)
    valid_cands = candidate_sets(setting.data, setting.proto, "valid")
    validate = make_validator(setting.data, cfg, setting.tie_rank, setting.proto, valid_cands)
    ctx = fit_context(job, setting, workdir, validate)
    if not job.test:
        return validation_only(cfg, job.model, setting.md, ctx, validate, job.device, workdir)
    test_cands = candidate_sets(setting.data, setting.proto, "test")
    lcfg = LatencyConfig.from_mapping(cfg.get("latency") or {})
    with PeakMemory(job.device) as mem:
        model, fit_md, metrics, overrides = fit_model(job, setting, ctx, validate)
        ranking = rank_test_users(job, setting, model, fit_md, test_cands)
        metrics.update(time_requests(job, setting, model, ranking, lcfg))
    metrics.update(cost_metrics(stages, mem, model, ranking, setting.kmax))
    inputs = metric_inputs(cfg, setting.data, ranking.hist, job.emb_spec, setting.cache_dir)
    with stages("metrics"):
        res, by_segment = evaluate_population(
            ranking.users, ranking.rec, ranking.truth, setting.ks, ranking.warm,
            setting.proto.users, inputs,
        )
    metrics.update(res.summary)
    metrics.update(segment_metrics(by_segment))
    metrics["n_users_skipped"] = float(setting.md.n_users - len(ranking.users))
    metrics.update({k: float(v) for k, v in job.split.manifest.get("audit", {}).items()})
    report = model.report()
    metrics.update(model_metrics(report, setting, ranking))
    with stages("artifacts"):
        per_user = per_user_frame(setting.data, by_segment)
        record = RunRecord(cfg, job.split, setting.data, ranking, per_user, report.artifacts,
                           test_cands)
        files = write_artifacts(record, workdir)
    metrics.update(stages.metrics())
    return Evaluation(metrics, files, model, report, overrides)


def eval_setting(job: Job) -> EvalSetting:
    """The evaluation settings of ``job`` (``eval.*``, the split indexed, the tie order, the
    cache folder, created)."""
    cfg = job.cfg
    proto = EvalProtocol.for_run(cfg)
    ks = tuple(sorted(int(k) for k in cfg["eval"]["ks"]))
    exclude_seen = bool(cfg["eval"]["exclude_seen"])  # a bool: prepare's validate checked it
    with job.stages("index"):
        data = job.split.indexed()
    cache_dir = Path(cfg["paths"]["cache"]).resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    budget = float(cfg["eval"].get("batch_budget_mb", 256))
    return EvalSetting(data, proto, ks, exclude_seen, tie_ranks(data.item_ids), budget, cache_dir)


def fit_context(
    job: Job, setting: EvalSetting, workdir: Path, validate: Callable[[Recommender], dict]
) -> FitContext:
    """The frozen context the model is fitted with: seed, device, folders, progress, the
    validator and the harness's ranking (``FitContext.rank``: the split's tie order)."""
    cfg = job.cfg
    return FitContext(
        seed=int(cfg["seed"]),
        device=job.device,
        workdir=workdir,
        cache_dir=setting.cache_dir,
        progress=progress_enabled(cfg),
        early_stopping_metric=str(cfg["eval"].get("early_stopping_metric", "ndcg_at_10")),
        validate=validate,
        extra={"dataset": cfg["dataset"]["name"]},
        tie_rank=setting.tie_rank,
        batch_budget_mb=setting.budget_mb,
    )


def fit_model(
    job: Job, setting: EvalSetting, ctx: FitContext, validate: Callable[[Recommender], dict]
) -> tuple[Recommender, ModelData, dict[str, float], dict[str, Any] | None]:
    """Fit on train and compute the ``valid/`` metrics; with ``eval.fit_data=train+valid``,
    refit a fresh model on train+valid. Returns (the model that scores the test set, the data
    it was fitted on, the ``valid/`` metrics, the refit's overrides or None)."""
    md = setting.md
    with job.stages("fit"):
        job.model.fit(md, ctx)
    with job.stages("validation"):
        metrics = {f"valid/{k}": v for k, v in validate(job.model).items()}
    if setting.proto.fit_data != "train+valid":
        return job.model, md, metrics, None
    fit_md = refit_data(md)
    with job.stages("fit"):
        model, overrides = refit(job.model, fit_md, ctx, job.rebuild)
    return model, fit_md, metrics, overrides


def rank_test_users(
    job: Job, setting: EvalSetting, model: Recommender, fit_md: ModelData,
    candidates: sp.csr_matrix | None,
) -> RankedUsers:
    """Rank every test user with a relevant item by the harness's topk (the ``scoring``
    stage): the test history masked unless ``eval.exclude_seen=false``, within the sampled
    ``candidates`` if any."""
    md = setting.md
    truth = setting.data.matrix("test")
    users = np.flatnonzero(np.diff(truth.indptr) > 0).astype(np.int64)
    warm = warm_mask(fit_md.train_history.matrix)
    hist = dataclasses.replace(md.test_history, candidates=candidates)
    exclude = hist.matrix if setting.exclude_seen else None
    score = ranker(lambda b: model.score(b, hist), candidates)
    with job.stages("scoring"):
        rec, vals, ties = rank_users(
            score, users, setting.kmax, exclude, md.n_items, setting.budget_mb,
            tie_rank=setting.tie_rank,
        )
    headline = population(users, warm, setting.proto.users)
    return RankedUsers(users, rec, vals, ties, headline, warm, truth, hist, exclude)


def time_requests(
    job: Job, setting: EvalSetting, model: Recommender, ranking: RankedUsers, lcfg: LatencyConfig
) -> dict[str, float]:
    """Latency and throughput of requests (score + topk for single users or batches) of the
    headline population (all test users when it is empty), after the model's
    ``start_latency_pass``; a model calling a remote API gets a bounded, announced pass."""
    score = ranker(lambda b: model.score(b, ranking.hist), ranking.hist.candidates)
    exclude = ranking.exclude

    def request(b: np.ndarray):
        ex = exclude[b] if exclude is not None else None
        return topk(score(b), setting.kmax, ex, inplace=True, tie_rank=setting.tie_rank)

    # from here on timed requests are computed, never replayed from a cache
    remote = model.start_latency_pass()
    lcfg = bounded_latency(remote, lcfg, len(ranking.users), str(job.cfg["model"]["name"]))
    users = ranking.headline if len(ranking.headline) else ranking.users
    with job.stages("latency"):  # a deferred SIGTERM/SIGINT stops it between two requests
        out = measure(request, users, lcfg, job.device, between=raise_pending)
    if lcfg.mode != "disabled":
        out["latency_n_requests"] = float(lcfg.n_requests)
    return out


def cost_metrics(
    stages: StageMeter, mem: PeakMemory, model: Recommender, ranking: RankedUsers, k: int
) -> dict[str, float]:
    """Fit and scoring seconds, memory, parameters, and the share of headline users whose
    top-``k`` ends inside a tie (``tie_rate_at_<k>``)."""
    out = {
        "fit_seconds": stages.timer.seconds("fit"),  # synchronizes CUDA at stage boundaries
        "scoring_seconds": stages.timer.seconds("scoring"),
    }
    out.update(mem.metrics())
    out["n_parameters"] = float(model.n_parameters())
    rows = np.searchsorted(ranking.users, ranking.headline)
    out[f"tie_rate_at_{k}"] = float(ranking.ties[rows].mean()) if len(rows) else 0.0
    return out


def model_metrics(
    report: ModelReport, setting: EvalSetting, ranking: RankedUsers
) -> dict[str, float]:
    """What the model's report adds: its own metrics, ``latency_ms/<stage>`` and the
    metrics of its reference rankings and probes over the headline population."""
    out = {k: float(v) for k, v in report.metrics.items()}
    out.update({f"latency_ms/{k}": float(v) for k, v in report.stage_latency_ms.items()})
    in_headline = np.zeros(setting.md.n_users, dtype=bool)
    in_headline[ranking.headline] = True
    train, truth, ks = setting.data.matrix("train"), ranking.truth, setting.ks

    def evaluate(u: np.ndarray, r: np.ndarray, full: bool) -> dict[str, float]:
        keep = in_headline[u]
        u, r = u[keep], r[keep]
        if not full:
            return evaluate_arrays(u, r, truth, ks).summary
        return evaluate_arrays(u, r, truth, ks, train=train, seen=ranking.hist.matrix).summary

    out.update(reference_metrics(report, evaluate))
    return out


def validation_only(
    cfg: Mapping[str, Any], model: Recommender, md: ModelData, ctx: FitContext,
    validate: Callable[[Recommender], dict], device: str, workdir: Path,
) -> Evaluation:
    """A tuning trial's evaluation: fit on train, the ``valid/`` metrics, fit time, memory
    and size. The test split is never ranked or scored, latency is not measured, the model's
    report is not asked, and the only artifacts are ``config.yaml`` and
    ``environment.json``."""
    import yaml

    from bench.environment import environment_info
    from bench.latency import Timer
    from bench.tracking import redact

    timer = Timer(device)
    with PeakMemory(device) as mem:
        with timer.stage("fit"):
            model.fit(md, ctx)
        metrics = {f"valid/{k}": v for k, v in validate(model).items()}
    metrics["fit_seconds"] = timer.seconds("fit")
    metrics.update(mem.metrics())
    metrics["n_parameters"] = float(model.n_parameters())
    files = {name: workdir / name for name in ("config.yaml", "environment.json")}
    files["config.yaml"].write_text(yaml.safe_dump(redact(dict(cfg)), sort_keys=False))
    files["environment.json"].write_text(json.dumps(environment_info(), indent=2, default=str))
    return Evaluation(metrics, files, model)


def bounded_latency(
    remote: RemoteCalls | None, lcfg, n_evaluated: int, model_name: str
) -> LatencyConfig:
    """The latency config to time a model with. A model that calls a remote API (its
    ``start_latency_pass()`` returned ``RemoteCalls``) gets the bounded pass of
    ``LatencyConfig.for_remote``, and the number of extra requests it will send is said
    before any is sent, with how to avoid them."""
    if remote is None or lcfg.mode == "disabled":
        return lcfg
    made, ranked = remote.requests, remote.users
    bounded = lcfg.for_remote(n_evaluated)
    per_user = made / ranked if ranked else 1.0
    extra = int(-(-bounded.planned_users() * max(per_user, 1.0) // 1))
    sized = (
        "a tenth of the evaluated users, latency.remote_requests=auto"
        if bounded.remote_requests == "auto"
        else f"latency.remote_requests={bounded.remote_requests}"
    )
    say(
        f"latency pass: {model_name} calls {remote.what}; the evaluation sent {made} "
        f"request(s), timing latency sends about {extra} more ({bounded.n_requests} timed, "
        f"{sized}; {bounded.warmup} warm-up; throughput in batches of {bounded.batch_size}). "
        f"latency=disabled sends none; latency.remote_requests=<n> sets the count"
    )
    return bounded


def refit(
    model: Recommender, fit_md: ModelData, ctx: FitContext,
    rebuild: Callable[[Mapping[str, Any]], Recommender],
) -> tuple[Recommender, dict[str, Any]]:
    """A fresh model with ``model.refit_params()`` fitted on train+valid, no validation.
    Returns (the fresh model, the overrides)."""
    overrides = dict(model.refit_params())
    fresh = rebuild(overrides)
    fresh.fit(fit_md, dataclasses.replace(ctx, validate=None))
    return fresh, overrides


def metric_inputs(
    cfg: Mapping[str, Any], split, hist, emb_spec: tuple[str, str] | None, cache_dir: Path
) -> dict[str, Any]:
    """The side inputs of ``evaluate_arrays`` for a run: train popularity, the test history as
    ``seen``, genres, user attributes and (``metrics.item_embeddings``) item embeddings."""
    from bench.metrics.api import attribute_labels

    md = split.model_data
    attrs = attribute_labels(md.users, list(cfg.get("metrics", {}).get("user_attributes") or []))
    emb = item_embeddings(emb_spec, md.items, md.n_items, cache_dir, progress_enabled(cfg))
    fair = (cfg.get("metrics") or {}).get("fairness") or {}
    min_size = fair.get("min_group_size", MIN_GROUP_SIZE)
    if not isinstance(min_size, int) or isinstance(min_size, bool) or min_size < 1:
        raise ConfigError(
            f"metrics.fairness.min_group_size must be an integer >= 1, got {min_size!r} "
            "(1 = every group counts in the gap)"
        )
    return {
        "train": split.matrix("train"),
        "seen": hist.matrix,
        "item_genres": item_genres(md.items),
        "user_attrs": attrs,
        "item_embeddings": emb,
        "min_group_size": min_size,
    }


def evaluate_population(users, rec, truth, ks, warm, choice: str, inputs: Mapping[str, Any]):
    """The headline evaluation over the population ``choice`` and one per non-empty segment.

    ``users`` are sorted (the rows of ``rec``). Returns (headline EvalResult, {segment:
    EvalResult}); the headline is the segment's own result when it is one."""
    def evaluate(group: np.ndarray):
        # the engine evaluates every user with a truth row: keep only the group's rows
        keep = np.zeros(truth.shape[0], dtype=bool)
        keep[group] = True
        group_truth = sp.csr_matrix(sp.diags(keep.astype(np.float32)) @ truth)
        group_truth.eliminate_zeros()
        return evaluate_arrays(
            group, rec[np.searchsorted(users, group)], group_truth, ks, **inputs
        )

    by_segment = {name: evaluate(seg) for name, seg in segments(users, warm).items() if len(seg)}
    if choice in by_segment:
        return by_segment[choice], by_segment
    return evaluate(population(users, warm, choice)), by_segment


def segment_metrics(by_segment: Mapping[str, Any]) -> dict[str, float]:
    """``<per-user key>/segment/<s>``, ``n_users/segment/<s>`` and
    ``n_users_without_recommendations/segment/<s>`` for both segments (0 users when empty)."""
    out: dict[str, float] = {}
    for name in SEGMENTS:
        res = by_segment.get(name)
        out[f"n_users/segment/{name}"] = float(len(res.users)) if res is not None else 0.0
        out[f"n_users_without_recommendations/segment/{name}"] = (
            res.summary["n_users_without_recommendations"] if res is not None else 0.0
        )
        if res is None:
            continue
        for key in res.per_user:
            if key in res.summary:
                out[f"{key}/segment/{name}"] = res.summary[key]
    return out


def write_artifacts(record: RunRecord, workdir: Path) -> dict[str, Path]:
    """Write a run's files into ``workdir``: ``config.yaml`` (secrets redacted),
    ``recommendations.parquet``, ``per_user.parquet``, ``environment.json``,
    ``split_manifest.json``, the model's files (copied when their name differs from the name
    they are logged under) and ``candidates.parquet`` under sampled candidates. Returns
    name -> path, in that order."""
    import shutil

    import yaml

    from bench.environment import environment_info
    from bench.tracking import redact

    names = ("config.yaml", "recommendations.parquet", "per_user.parquet", "environment.json",
             "split_manifest.json")
    files = {name: workdir / name for name in names}
    files["config.yaml"].write_text(yaml.safe_dump(redact(dict(record.cfg)), sort_keys=False))
    r = record.ranking
    recommendations_frame(record.data, r.users, r.rec, r.vals).write_parquet(
        files["recommendations.parquet"]
    )
    record.per_user.write_parquet(files["per_user.parquet"])
    files["environment.json"].write_text(json.dumps(environment_info(), indent=2, default=str))
    manifest = json.dumps(record.split.manifest, indent=2, default=str)
    files["split_manifest.json"].write_text(manifest)
    for name, path in record.model_files.items():
        path = Path(path)
        files[name] = path if path.name == name else Path(shutil.copy(path, workdir / name))
    if record.candidates is not None:
        files["candidates.parquet"] = workdir / "candidates.parquet"
        md = record.data.model_data
        cands.to_frame(record.candidates, md.user_ids, md.item_ids).write_parquet(
            files["candidates.parquet"]
        )
    return files
