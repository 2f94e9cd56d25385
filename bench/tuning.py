"""``bench tune``: equal-budget hyper-parameter search on validation, then final test runs.

For each model of ``model=a,b,...`` (or ``tuning.models``): one Optuna study with the same
sampler, seed and budget (``tuning.trials`` finished trials and/or ``tuning.time_budget_s``
seconds of finished trials), maximizing (or minimizing, by the metric catalog) a validation
metric (``tuning.metric``, default ``valid/ndcg_at_10``). A trial is one MLflow run tagged
``bench.tuning.role=trial`` made by ``run_experiment(..., test=False)``: the model is fitted on
train and scored on valid; the test split is never ranked. Trials are children of the study's
parent run (``bench.tuning.role=study``). When the budget is spent, the best trial's parameters
are run on test for each of ``tuning.seeds`` as ordinary runs tagged ``bench.tuning.role=final``,
``bench.tuning.study``, ``bench.tuning.trials``, ``bench.tuning.budget``.

Why Optuna directly and not Hydra's Optuna sweeper: a study must resume after a kill (RDB
storage, trials re-asked deterministically), trials must skip the test evaluation, and each
model needs its own study and search space; the sweeper launches whole Hydra jobs that always
test and has one space per sweep.

Resume: the study lives in Optuna's RDB storage (``optuna.db`` beside the MLflow sqlite store),
named from the model, dataset, split sha256, search-space hash, metric, budget, sampler and base
config. Re-running the command continues it: trials left RUNNING by a dead process are marked
FAIL (their MLflow runs KILLED by the store's reaper) and only COMPLETE trials count. Each
trial's sampler is seeded by ``tuning.seed`` and the number of finished trials, so a resumed study
asks exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench import console
from bench.errors import BenchError, ConfigError, did_you_mean
from bench.tuning_space import SearchSpace, load_space

ROLE = "bench.tuning.role"
STUDY = "bench.tuning.study"
TRIAL = "bench.tuning.trial"
#: test hook: SIGKILL this process inside trial number N (its MLflow run RUNNING)
KILL_ENV = "BENCH_TUNE_SIGKILL_AT_TRIAL"
SAMPLERS = ("tpe", "random")
TUNING_KEYS = ("models", "trials", "time_budget_s", "metric", "seeds", "sampler",
               "n_startup_trials", "seed", "search_dir", "storage")

HELP = """usage: bench tune model=<a>,<b>,... [tuning.trials=N] [tuning.time_budget_s=S]
                  [tuning.metric=valid/ndcg_at_10] [tuning.seeds=[0,1,2]] [overrides]

Equal-budget tuning on validation: one Optuna study per model (search space
conf/search/<model>.yaml), the same sampler, seed and budget for every model, objective a
validation metric; trials never touch the test split. The best configuration of each model is
then run on test for every seed of tuning.seeds (runs tagged bench.tuning.role=final), and the
tuned leaderboard is printed (bench leaderboard --tuned; bench report --tuned builds the table).
Re-running the same command resumes the studies. Config group `tuning`: conf/tuning/default.yaml.
Example: bench tune model=pop,itemknn,ease tuning.trials=20 tuning.seeds=[0]
"""


@dataclass(frozen=True)
class TuningConfig:
    trials: int | None
    time_budget_s: float | None
    metric: str
    seeds: tuple[int, ...]
    sampler: str
    n_startup_trials: int
    seed: int
    search_dir: Path | None
    storage: str | None
    models: tuple[str, ...] = ()

    @property
    def budget(self) -> str:
        """The budget as its tag reads: ``trials=20``, ``time=600s`` or both."""
        parts = [f"trials={self.trials}"] if self.trials is not None else []
        if self.time_budget_s is not None:
            parts.append(f"time={self.time_budget_s:g}s")
        return ",".join(parts)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], ks: list[int]) -> TuningConfig:
        for key in raw:
            if key not in TUNING_KEYS:
                raise ConfigError(f"unknown config key 'tuning.{key}'"
                                  f"{did_you_mean(str(key), TUNING_KEYS)}; tuning has: "
                                  f"{', '.join(TUNING_KEYS)}")
        trials, budget = raw.get("trials"), raw.get("time_budget_s")
        if trials is not None and (not _int(trials) or trials < 1):
            raise ConfigError(f"tuning.trials must be an integer >= 1 or null, got {trials!r}")
        if budget is not None and (isinstance(budget, bool) or not isinstance(
                budget, int | float) or budget <= 0):
            raise ConfigError(f"tuning.time_budget_s must be a number > 0 or null, got {budget!r}")
        if trials is None and budget is None:
            raise ConfigError("tuning.trials and tuning.time_budget_s are both null: set a "
                              "budget (e.g. tuning.trials=20)")
        seeds = raw.get("seeds")
        if not isinstance(seeds, list) or not seeds or not all(_int(s) and s >= 0 for s in seeds):
            raise ConfigError(f"tuning.seeds must be a non-empty list of integers >= 0, got "
                              f"{seeds!r} (e.g. tuning.seeds=[0,1,2])")
        sampler = raw.get("sampler", "tpe")
        if sampler not in SAMPLERS:
            raise ConfigError(f"tuning.sampler must be one of {', '.join(SAMPLERS)}, got "
                              f"{sampler!r}{did_you_mean(str(sampler), SAMPLERS)}")
        for key in ("n_startup_trials", "seed"):
            if not _int(raw.get(key, 0)) or raw.get(key, 0) < 0:
                raise ConfigError(f"tuning.{key} must be an integer >= 0, got {raw.get(key)!r}")
        models = raw.get("models") or []
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise ConfigError(f"tuning.models must be a list of model names, got {models!r}")
        return cls(trials, None if budget is None else float(budget),
                   validation_metric(str(raw.get("metric", "valid/ndcg_at_10")), ks),
                   tuple(seeds), str(sampler), int(raw.get("n_startup_trials", 10)),
                   int(raw.get("seed", 0)),
                   Path(raw["search_dir"]) if raw.get("search_dir") else None,
                   str(raw["storage"]) if raw.get("storage") else None, tuple(models))


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validation_metric(metric: str, ks: list[int]) -> str:
    """The canonical ``valid/<key>`` of ``tuning.metric``; refuses anything not computed on
    the validation split (test metrics are never an objective)."""
    from bench.metrics.catalog import CATALOG, resolve_metric

    if not metric.startswith("valid/"):
        raise ConfigError(f"tuning.metric must be a validation metric valid/<key> (e.g. "
                          f"valid/ndcg_at_10), got {metric!r}: trials never compute test metrics")
    key = resolve_metric(metric.removeprefix("valid/"))
    m = re.fullmatch(r"(\w+?)_at_(\d+)", key)
    name = m.group(1) if m else key
    spec = CATALOG.get(name)
    if m is None or spec is None or spec.group != "accuracy":
        raise ConfigError(f"tuning.metric {metric!r}: only accuracy metrics at a cut-off are "
                          "computed on valid (valid/ndcg_at_10, valid/recall_at_20, ...)")
    if int(m.group(2)) not in ks:
        raise ConfigError(f"tuning.metric {metric!r}: k={m.group(2)} is not in eval.ks={ks}; "
                          f"add it (eval.ks=[...,{m.group(2)}]) or choose another k")
    return f"valid/{key}"


# ----------------------------------------------------------------------------- composition


@dataclass
class Job:
    """One model to tune: its resolved base config and checked search space."""

    model: str
    cfg: dict[str, Any]
    space: SearchSpace


def split_models(argv: list[str]) -> tuple[list[str], list[str]]:
    """(models of ``model=a,b``, the other overrides); sweeps of other keys are refused."""
    models: list[str] = []
    rest = []
    for arg in argv:
        m = re.fullmatch(r"model=(.*)", arg)
        if m:
            models += [v for v in m.group(1).split(",") if v]
            continue
        key, _, value = arg.partition("=")
        if value and "," in value and not value.strip().startswith(("[", "{", "'", '"')):
            raise ConfigError(f"bench tune takes one value per key except model=a,b,...; got "
                              f"'{arg}' (tune, then compare seeds with tuning.seeds=[...])")
        rest.append(arg)
    return models, rest


def compose(overrides: list[str], root: Path) -> dict[str, Any]:
    """The resolved job config of ``overrides`` (one-line errors, exit 2)."""
    from bench.config import resolved

    return resolved(overrides, str(root))


def prepare(argv: list[str], root: Path) -> tuple[TuningConfig, list[Job]]:
    """Every model's config, the tuning config and every search space, checked before any
    trial runs (one-line errors, exit 2)."""
    from bench.config import check_model, sets_model_params, validate

    models, rest = split_models(argv)
    base = compose(rest, root)
    validate(base)
    tcfg = TuningConfig.from_mapping(base.get("tuning") or {}, list(base["eval"]["ks"]))
    models = models or list(tcfg.models)
    if not models:
        raise ConfigError("bench tune needs models: model=<a>,<b>,... (or tuning.models in an "
                          "experiment file)")
    jobs = []
    for model in dict.fromkeys(models):
        cfg = compose([*rest, f"model={model}"], root)
        if sets_model_params(rest):
            check_model(cfg)
        params = dict(cfg["model"].get("params") or {})
        space = load_space(model, str(cfg["model"]["name"]), params, tcfg.search_dir)
        jobs.append(Job(model, cfg, space))
    return tcfg, jobs


# ----------------------------------------------------------------------------- the study


def storage_url(tcfg: TuningConfig, store: Any, root: Path) -> str:
    """``tuning.storage``, else ``sqlite:///<folder of the MLflow sqlite store>/optuna.db``."""
    from bench.tracking import sqlite_path

    if tcfg.storage:
        return tcfg.storage
    db = sqlite_path(store.uri) if store is not None else None
    folder = db.parent if db is not None else root
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


def study_name(job: Job, tcfg: TuningConfig, split_sha: str) -> str:
    """``<model>-<dataset>-<12 hex>``: the hex digest covers everything that defines the study
    (split, space, objective, budget, sampler, the base config without tuning keys)."""
    from bench.tracking import config_key

    cfg = job.cfg
    ident = {
        "model": job.model, "dataset": cfg["dataset"]["name"], "split": cfg["split"]["name"],
        "split_sha256": split_sha, "space": job.space.sha256, "metric": tcfg.metric,
        "budget": tcfg.budget, "sampler": tcfg.sampler, "n_startup": tcfg.n_startup_trials,
        "sampler_seed": tcfg.seed, "config": config_key(cfg, split_sha), "seed": cfg["seed"],
    }
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    return f"{job.model}-{cfg['dataset']['name']}-{digest}"


def higher_is_better(metric: str) -> bool:
    from bench.metrics.catalog import higher_is_better as hib

    return hib(metric.removeprefix("valid/"))


def make_sampler(tcfg: TuningConfig, n_done: int) -> Any:
    import optuna

    seed = tcfg.seed * 1_000_003 + n_done
    if tcfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=tcfg.n_startup_trials)


def complete(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                  key=lambda t: t.number)


def budget_left(tcfg: TuningConfig, space: SearchSpace, done: list[Any]) -> bool:
    """True while the study may run another trial: fewer finished trials than the budget
    (1 for a space without parameters) and less finished-trial time than the time budget."""
    limit = 1 if not space.params else tcfg.trials
    if limit is not None and len(done) >= limit:
        return False
    if tcfg.time_budget_s is not None:
        spent = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
        return spent < tcfg.time_budget_s
    return True


def reap_trials(study: Any) -> list[int]:
    """Mark FAIL the RUNNING trials whose process (recorded in user attrs) is gone."""
    from optuna.trial import TrialState

    from bench.tracking import _pid_alive

    reaped = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        pid = int(attrs.get("pid") or 0)
        if pid and attrs.get("host") == socket.gethostname() and _pid_alive(
                pid, attrs.get("pid_start") or None):
            continue
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        reaped.append(t.number)
    return reaped


def open_study(name: str, url: str, direction: str) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return optuna.create_study(study_name=name, storage=storage,
                               direction=direction,  # type: ignore[arg-type]
                               load_if_exists=True)


def parent_run(store: Any, name: str, job: Job, tags: Mapping[str, str]) -> str:
    """The study's MLflow parent run (created once, reopened on resume)."""
    from bench import tracking

    found = store.search(f"tags.\"{STUDY}\" = '{name}' and tags.\"{ROLE}\" = 'study'")
    owner = tracking._owner_tags()
    if found:
        rid = found[0].info.run_id
        store.client.update_run(rid, status="RUNNING")
        for k, v in owner.items():
            tracking.retry(partial(store.client.set_tag, rid, k, v))
        return str(rid)
    run = tracking.retry(lambda: store.client.create_run(
        store.experiment_id, run_name=f"tune-{name}",
        tags={**tags, **owner, ROLE: "study", STUDY: name,
              "bench.model": job.model, "bench.dataset": str(job.cfg["dataset"]["name"]),
              "bench.split": str(job.cfg["split"]["name"])}))
    return str(run.info.run_id)


def say(msg: str) -> None:
    console.say(msg, who="bench tune")


def _kill_hook() -> None:
    """Test hook (``BENCH_TUNE_SIGKILL_AT_TRIAL``): SIGKILL this process inside the trial's
    evaluation, i.e. while its MLflow run and its Optuna trial are RUNNING, as a crash or the
    OOM killer would."""
    from bench import runner

    def die(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGKILL)

    runner.validation_only = die  # type: ignore[assignment]


def run_trial(job: Job, study: Any, tcfg: TuningConfig, store: Any, name: str,
              parent: str, n_done: int) -> None:
    """Ask one trial, run it on validation only, tell its value (FAIL on an error)."""
    from optuna.trial import TrialState

    from bench import tracking
    from bench.runner import run_experiment

    study.sampler = make_sampler(tcfg, n_done)
    trial = study.ask()
    owner = tracking._owner_tags()
    for k in ("host", "pid", "pid_start"):
        trial.set_user_attr(k, owner[f"bench.{k}"])
    params = job.space.suggest(trial)
    cfg = copy.deepcopy(job.cfg)
    cfg["model"]["params"] = {**(cfg["model"].get("params") or {}), **params}
    tags = {ROLE: "trial", STUDY: name, TRIAL: str(trial.number),
            "bench.tuning.metric": tcfg.metric, "bench.tuning.params": json.dumps(params)}
    if os.environ.get(KILL_ENV) == str(trial.number):
        _kill_hook()
    try:
        outcome = run_experiment(cfg, store, test=False, tags=tags, parent_run_id=parent)
        value = outcome.metrics.get(tcfg.metric)
        if value is None:
            raise BenchError(f"trial {trial.number} logged no {tcfg.metric}")
    except Exception as e:
        study.tell(trial, state=TrialState.FAIL)
        say(f"{job.model} trial {trial.number} failed: {str(e).splitlines()[0] if str(e) else e!r}")
        return
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        raise
    trial.set_user_attr("mlflow_run_id", outcome.run_id)
    study.tell(trial, float(value))
    say(f"{job.model} trial {trial.number} ({len(complete(study))} finished): "
        f"{tcfg.metric} = {value:.6f} {params}")


def tune_one(job: Job, tcfg: TuningConfig, store: Any, root: Path) -> tuple[Any, str, str]:
    """Run (or resume) one model's study to its budget; returns (study, name, parent run)."""
    from bench.runner import load_split

    split_sha = load_split(job.cfg).sha256
    name = study_name(job, tcfg, split_sha)
    direction = "maximize" if higher_is_better(tcfg.metric) else "minimize"
    study = open_study(name, storage_url(tcfg, store, root), direction)
    reaped = reap_trials(study)
    if reaped:
        say(f"{name}: trials {reaped} were left RUNNING by a killed process: marked FAIL")
    info = {"bench.tuning.metric": tcfg.metric, "bench.tuning.budget": tcfg.budget,
            "bench.tuning.search_space": str(job.space.path)}
    parent = parent_run(store, name, job, info)
    failures, max_failures = 0, max(3, tcfg.trials or 3)
    done = complete(study)
    if done:
        say(f"{name}: resuming with {len(done)} finished trials")
    while budget_left(tcfg, job.space, done):
        if failures >= max_failures:
            raise BenchError(f"{job.model}: {failures} trials failed in a row (see the FAILED "
                             f"runs of study {name}); fix the model or its search space")
        before = len(done)
        run_trial(job, study, tcfg, store, name, parent, before)
        done = complete(study)
        failures = 0 if len(done) > before else failures + 1
    return study, name, parent


def run_finals(job: Job, tcfg: TuningConfig, store: Any, study: Any, name: str,
               parent: str) -> list[str]:
    """The best trial's parameters on test, once per seed (skipped when already FINISHED)."""
    from bench.runner import run_experiment

    done = complete(study)
    best = study.best_trial
    tags = {ROLE: "final", STUDY: name, "bench.tuning.trials": str(len(done)),
            "bench.tuning.budget": tcfg.budget, "bench.tuning.metric": tcfg.metric,
            "bench.tuning.sampler": f"{tcfg.sampler} seed {tcfg.seed}",
            "bench.tuning.best_trial": str(best.number),
            "bench.tuning.search_space": f"conf/search/{job.model}.yaml"
            if tcfg.search_dir is None else str(job.space.path)}
    run_ids = []
    for seed in tcfg.seeds:
        cfg = copy.deepcopy(job.cfg)
        cfg["seed"] = int(seed)
        cfg["model"]["params"] = {**(cfg["model"].get("params") or {}), **best.params}
        outcome = run_experiment(cfg, store, tags=tags, parent_run_id=parent)
        run_ids.append(str(outcome.run_id))
    return run_ids


def finish_parent(store: Any, parent: str, study: Any) -> None:
    from bench import tracking

    done = complete(study)
    tags = {"bench.tuning.trials": str(len(done)), "bench.tuning.best_trial":
            str(study.best_trial.number), "bench.tuning.best_params":
            json.dumps(study.best_trial.params)}
    for k, v in tags.items():
        tracking.retry(partial(store.client.set_tag, parent, k, v))
    store.client.log_metric(parent, "tuning/best_value", float(study.best_value))
    tracking.retry(lambda: store.client.set_terminated(parent, "FINISHED"))


def tune_main(argv: list[str]) -> int:
    """``bench tune``; returns the exit code."""
    from bench import tracking
    from bench.config import force_model_params

    if not argv or any(a in ("-h", "--help") for a in argv):
        print(HELP)
        return 0 if argv else 2
    argv = force_model_params(argv)
    root = Path.cwd().resolve()
    tcfg, jobs = prepare(argv, root)
    store = tracking.store_for(jobs[0].cfg.get("tracking") or {}, root)
    if store is None:
        raise ConfigError("bench tune needs tracking (trials are MLflow runs); remove "
                          "tracking=disabled / tracking.enabled=false")
    reaped = store.reap_stale()
    if reaped:
        say(f"marked {len(reaped)} stale RUNNING run(s) KILLED: {', '.join(reaped)}")
    say(f"{len(jobs)} studies, budget {tcfg.budget} each, objective {tcfg.metric}, sampler "
        f"{tcfg.sampler} (seed {tcfg.seed}); storage {storage_url(tcfg, store, root)}")
    names = []
    for job in jobs:
        study, name, parent = tune_one(job, tcfg, store, root)
        names.append(name)
        say(f"{name}: best trial {study.best_trial.number} {tcfg.metric} = "
            f"{study.best_value:.6f} {study.best_trial.params}; final runs on test, seeds "
            f"{list(tcfg.seeds)}")
        run_finals(job, tcfg, store, study, name, parent)
        finish_parent(store, parent, study)
    return summary(jobs, store, names)


def summary(jobs: list[Job], store: Any, names: list[str]) -> int:
    """The tuned leaderboard of this command's studies (``bench leaderboard --tuned`` would
    also show other models' latest studies on the dataset)."""
    from bench.report import runs as rr
    from bench.report.leaderboard import rank_rows, resolve_columns, title_line, to_plain

    found = rr.search_runs(rr.client(store.uri), store.experiment_name,
                           dataset=str(jobs[0].cfg["dataset"]["name"]))
    finals = [r for r in found if r.tags.get(ROLE) == "final" and r.tags.get(STUDY) in names]
    try:
        selection = rr.select(finals)
        selection.tuning = rr.tuning_caption(selection.runs)
        keys = resolve_columns(selection, "ndcg_at_10", None)
        rows = rank_rows(selection, keys)
    except BenchError as e:
        say(f"no summary table: {e}")
        return 0
    sys.stdout.write(title_line(selection, keys[0], rows) + "\n" + to_plain(rows, keys))
    return 0
