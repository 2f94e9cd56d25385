"""``bench``: run | leaderboard | report | evaluate | data.

This module imports only the standard library at start-up: ``bench --help`` never loads torch,
transformers, recbole or mlflow.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from pathlib import Path

from bench import __version__
from bench.confpaths import CONF_DIR, conf_dirs, find
from bench.errors import BenchError

HELP = f"""usage: bench <command> [options]

Reproducible benchmarks of LLM-based and classical recommenders (llmrec-harness {__version__}).

commands:
  run [overrides]      one experiment, Hydra-composed: bench run model=ease dataset=ml-100k
  run -m [overrides]   a sweep (Hydra multirun):      bench run -m model=pop,ease seed=0,1,2
  leaderboard          rank the MLflow runs of one dataset+split by a metric
  report               paper tables (LaTeX/Markdown/CSV), figures and provenance.json from MLflow
  evaluate             score an external recommendation file against a materialized split
  data                 datasets: list | info <id> | fetch <id> | verify <id>
  tune model=a,b,...   equal-budget tuning on validation, then the best configs on test

`bench <command> --help` describes each command; `bench run --help` shows the config groups.
Errors in your input print one line and exit with code 2 (BENCH_TRACEBACK=1 shows tracebacks).
"""

GROUPS = ("dataset", "split", "model", "eval", "metrics", "latency", "tracking", "experiment",
          "tuning")


def _options(group: str) -> list[str]:
    """The options of a config group in conf/ and in the packages' ``bench.conf`` folders."""
    return sorted({p.stem for d in conf_dirs() for p in (d / group).glob("*.yaml")})


# flags after which the primary config is not conf/config.yaml: its keys are not known here
OTHER_PRIMARY = ("-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir")


def _conf(rel: str) -> dict:
    """A YAML file of conf/ (``config.yaml``, ``experiment/quickstart.yaml``), parsed once per
    process (a fresh copy each call: callers may change it); {} when absent or empty."""
    import copy

    return copy.deepcopy(_parsed_conf(rel))


@functools.cache
def _parsed_conf(rel: str) -> dict:
    import yaml

    path = find(rel)
    return (yaml.safe_load(path.read_text()) or {}) if path is not None else {}


def _defaults(rel: str) -> dict[str, str]:
    """Group -> option of a config file's defaults list (``optional x``, ``override /x`` and
    ``x@pkg`` entries by their group name)."""
    out = {}
    for entry in _conf(rel).get("defaults") or []:
        if isinstance(entry, dict):
            for k, v in entry.items():
                out[str(k).split(" ")[-1].split("@")[0].lstrip("/")] = str(v)
    return out


def top_level_keys() -> set[str]:
    """The first key segments an override may set: the keys of conf/config.yaml, its config
    groups (defaults list), ``hydra``, and the keys that ``# @package _global_`` options of a
    group (experiments, dataset_model) set."""
    keys = {str(k) for k in _conf("config.yaml") if k != "defaults"} | {"hydra", *GROUPS}
    keys |= set(_defaults("config.yaml"))
    for path in CONF_DIR.glob("*/*.yaml"):
        if re.search(r"^#\s*@package\s+_global_", path.read_text(), re.M):
            rel = path.relative_to(CONF_DIR).as_posix()
            keys |= {str(k) for k in _conf(rel) if k != "defaults"}
    return keys


def check_keys(argv: list[str]) -> None:
    """Fail fast, with did-you-mean, on an override of a key the config does not have
    (``modle=ease``); Hydra's own message is a multi-line block with exit code 1.
    ``+key=``/``++key=`` (explicit additions), ``~key`` (deletions) and flags are left alone."""
    from bench.errors import ConfigError, did_you_mean

    if any(a.split("=", 1)[0] in OTHER_PRIMARY for a in argv):
        return
    keys: set[str] | None = None
    for arg in argv:
        m = re.fullmatch(r"([A-Za-z_][\w\-]*)([./@][^=]*)?=(.*)", arg, re.S)
        if not m:
            continue
        keys = top_level_keys() if keys is None else keys
        first = m.group(1)
        if first in keys:
            continue
        opts = sorted(keys)
        hint = did_you_mean(first, opts) or f" (to add a new key, write +{arg})"
        raise ConfigError(
            f"unknown config key '{first}' in override '{arg}'{hint}; "
            f"top-level keys: {', '.join(opts)}"
        )


#: groups whose nested keys are checked before Hydra (model params are checked per model)
NESTED_GROUPS = ("dataset", "split", "eval", "metrics", "latency", "tracking", "tuning")


def _chosen(argv: list[str]) -> dict[str, list[str]]:
    """The options each group of NESTED_GROUPS will use: every value of ``group=a,b`` in
    ``argv``, else the default of conf/config.yaml, else the experiment's ``override``."""
    chosen = {g: [v] for g, v in _defaults("config.yaml").items() if g in NESTED_GROUPS}
    given = {}
    for arg in argv:
        m = re.fullmatch(r"\+{0,2}([\w/]+)=(.*)", arg)
        if m and (m.group(1) in NESTED_GROUPS or m.group(1) == "experiment"):
            given[m.group(1)] = [v for v in m.group(2).split(",") if v]
    for exp in given.pop("experiment", []):
        chosen |= {g: [v] for g, v in _defaults(f"experiment/{exp}.yaml").items()
                   if g in NESTED_GROUPS}
    chosen.update(given)
    return chosen


def _group_tree(group: str, options: list[str], experiments: list[str]) -> dict:
    """The keys a group's chosen options (and ``_global_`` experiments) define, merged."""

    def merge(into: dict, new: dict) -> None:
        for k, v in new.items():
            if isinstance(v, dict) and isinstance(into.get(k), dict):
                merge(into[k], v)
            elif k not in into or into[k] is None or isinstance(v, dict):
                into[k] = v

    tree: dict = {}
    for opt in options:
        merge(tree, {k: v for k, v in _conf(f"{group}/{opt}.yaml").items() if k != "defaults"})
    for exp in experiments:
        merge(tree, _conf(f"experiment/{exp}.yaml").get(group) or {})
    return tree


def check_nested_keys(argv: list[str]) -> None:
    """Fail fast, with did-you-mean, on ``group.key=value`` where the group's chosen options do
    not define ``key`` (``eval.kss=[10]``), or set a key under one that is null
    (``metrics.item_embeddings.encoder=x``). ``+``/``++`` additions are left alone."""
    from bench.errors import ConfigError, did_you_mean

    if any(a.split("=", 1)[0] in OTHER_PRIMARY for a in argv):
        return
    chosen: dict[str, list[str]] | None = None
    experiments = [v for a in argv if a.startswith("experiment=") for v in a[11:].split(",") if v]
    for arg in argv:
        m = re.fullmatch(r"([a-z_]+)\.([\w.\-]+)=(.*)", arg, re.S)
        if not m or m.group(1) not in NESTED_GROUPS:
            continue
        chosen = _chosen(argv) if chosen is None else chosen
        group = m.group(1)
        node: object = _group_tree(group, chosen.get(group, []), experiments)
        path = [group]
        for seg in m.group(2).split("."):
            if not isinstance(node, dict):
                break  # a list or scalar: Hydra reports what is wrong with the value
            if seg not in node:
                where = ".".join(path)
                keys = sorted(str(k) for k in node)
                raise ConfigError(
                    f"unknown config key '{where}.{seg}' in override '{arg}'"
                    f"{did_you_mean(seg, keys)}; {where} has: {', '.join(keys) or 'no keys'} "
                    f"(to add a new key, write +{arg})"
                )
            if node[seg] is None and seg != m.group(2).split(".")[-1]:
                raise ConfigError(
                    f"override '{arg}': {'.'.join([*path, seg])} is null in the chosen config, "
                    f"so it has no keys to set; set it whole, e.g. "
                    f"{'.'.join([*path, seg])}={{key: value, ...}}"
                )
            path.append(seg)
            node = node[seg]


def check_seeds(argv: list[str]) -> None:
    """Every value of ``seed=a,b,...`` is an integer >= 0: checked before Hydra starts a sweep
    (inside a job, bench.app's check would fail each job of the sweep instead)."""
    from bench.errors import ConfigError

    for arg in argv:
        m = re.fullmatch(r"\+{0,2}seed=(.*)", arg)
        if not m or re.match(r"^\w+\(", m.group(1)) or "${" in m.group(1):
            continue  # sweeper functions (range(...)) and interpolations: checked in the job
        for v in m.group(1).split(","):
            if not re.fullmatch(r"\d+", v.strip()):
                raise ConfigError(
                    f"seed must be an integer >= 0, got {v.strip()!r} in override '{arg}' "
                    f"(e.g. seed=0, or seed=0,1,2 in a sweep)"
                )


def check_overrides(argv: list[str]) -> None:
    """Fail fast, with did-you-mean, on an unknown top-level key, an unknown option of a
    config group or an unknown key inside a group (Hydra's own messages are multi-line blocks
    with exit code 1)."""
    from bench.errors import unknown

    check_keys(argv)
    for arg in argv:
        m = re.fullmatch(r"\+{0,2}([\w/]+)=(.*)", arg)
        if not m or m.group(1) not in GROUPS:
            continue
        group, value = m.group(1), m.group(2)
        if re.match(r"^\w+\(", value) or value == "null":
            continue  # sweeper functions (choice(...), range(...)) and null
        options = _options(group)
        for v in value.split(","):
            if not v.strip():
                from bench.errors import ConfigError

                raise ConfigError(
                    f"override '{arg}' names no {group}; choose one of: {', '.join(options)} "
                    f"(e.g. {group}={options[0]}; a sweep lists several: {group}=a,b)"
                )
            if v not in options:
                raise unknown(group, v, options, where=f"override '{arg}'")
    check_nested_keys(argv)
    check_seeds(argv)


def _default_model() -> str:
    return _defaults("config.yaml").get("model", "pop")


def model_param_overrides(argv: list[str]) -> list[str]:
    """Validate ``model.params.<key>=<value>`` against each chosen model (one-line error with
    did-you-mean for an unknown key), then pass it as ``++model.params.<key>=<value>``: every
    parameter the model accepts can be set even when its YAML omits it, and a sweep over models
    (``-m model=bpr,sasrec model.params.epochs=2``) composes although Hydra first builds the
    sweep's base config with the default model."""
    import yaml

    pattern = re.compile(r"\+{0,2}model\.params\.(\w+)=(.*)")
    params = {}
    for a in argv:
        m = pattern.fullmatch(a)
        if m:
            first = m.group(2).split(",")[0] if "," in m.group(2) else m.group(2)
            params[m.group(1)] = yaml.safe_load(first) if first else None
    if not params:
        return argv
    if not any(a.startswith("experiment=") for a in argv):
        from bench.models import registry

        chosen = [a.split("=", 1)[1] for a in argv if a.startswith("model=")]
        for name in [v for c in chosen for v in c.split(",")] or [_default_model()]:
            conf = _conf(f"model/{name}.yaml")
            base = dict(conf.get("params") or {})
            registry.build(str(conf.get("name", name)), {**base, **params})
    return [f"++{a.lstrip('+')}" if pattern.fullmatch(a) else a for a in argv]


#: Hydra command-line options that change where or which config is read (no pre-check then)
_CONFIG_FLAGS = ("--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp")


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _per_job_only(key: str) -> bool:
    """Keys that cannot change ``eval`` or ``latency`` (checked per job without composing)."""
    return key == "seed" or key.startswith("model.params.")


def check_sweep_values(argv: list[str]) -> None:
    """Before a sweep starts, compose each of its jobs as Hydra's basic sweeper will (the
    ``hydra.sweeper.params`` of the config, then the command line) and check the values
    ``bench.app.check_values`` checks. A bad value (``eval.ks=[0,10]``) is then one line and
    exit 2 with no run created, instead of a failed job per combination and Hydra's traceback.

    Anything this cannot compose is left to Hydra, which reports it itself."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from bench.app import check_values
    from bench.errors import ConfigError

    if any(a.split("=", 1)[0] in _CONFIG_FLAGS for a in argv):
        return
    overrides = [a for a in argv if not a.startswith("-")]
    try:
        parser = OverridesParser.create()
        parsed = parser.parse_overrides(overrides)
        base = [str(o.input_line) for o in parsed if not o.is_sweep_override()]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            hcfg = compose("config", overrides=base, return_hydra_config=True)
            sweeper = str(hcfg.hydra.sweeper.get("_target_", ""))
            multirun = bool({"-m", "--multirun"} & set(argv)) or hcfg.hydra.mode == RunMode.MULTIRUN
            if not multirun or not sweeper.endswith("BasicSweeper"):
                return
            params = [f"{k}={v}" for k, v in (hcfg.hydra.sweeper.params or {}).items()]
            jobs = BasicSweeper.split_arguments(parser.parse_overrides(params + overrides), None)
            # seed and model.params do not change eval/latency: one composition serves every
            # job that differs only in them (a 4 models x 25 seeds sweep composes 4 times)
            composed: dict[tuple[str, ...], dict] = {}
            for num, job in enumerate(jobs[0]):
                own = [o for o in job if not _override_key(o).startswith("hydra")]
                shared = tuple(o for o in own if not _per_job_only(_override_key(o)))
                if shared not in composed:
                    cfg = compose("config", overrides=list(shared))
                    composed[shared] = {
                        key: OmegaConf.to_container(cfg[key], resolve=True)
                        if OmegaConf.is_config(cfg[key])
                        else cfg[key]
                        for key in ("seed", "eval", "latency", "split", "tracking")
                        if key in cfg
                    }
                values = dict(composed[shared])
                for o in own:
                    if _override_key(o) == "seed":
                        values["seed"] = parser.parse_override(o).value()
                try:
                    check_values(values)
                except ConfigError as e:
                    raise ConfigError(f"{e}; sweep job #{num}: {' '.join(own)}") from None
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - Hydra reports what it cannot compose, as it always has
        return


def cmd_run(argv: list[str]) -> int:
    from bench.app import main as app_main

    info = any(a in ("-h", "--help", "--hydra-help", "--info", "-i", "--cfg", "-c") for a in argv)
    # with extra config dirs (hydra.searchpath) the options are not all under conf/
    if not info and not any(a.startswith("hydra.searchpath") for a in argv):
        check_overrides(argv)
        argv = model_param_overrides(argv)
        check_sweep_values(argv)

    return app_main(argv)


def cmd_leaderboard(argv: list[str]) -> int:
    from bench.report.leaderboard import leaderboard_main

    return int(leaderboard_main(argv) or 0)


def cmd_report(argv: list[str]) -> int:
    from bench.report.build import report_main

    return int(report_main(argv) or 0)


def cmd_evaluate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="bench evaluate",
        description="Score an external recommendation file (parquet, csv or tsv with user_id, "
        "item_id, rank[, score]) against a materialized split folder, with the same metrics a "
        "run logs. Items in the user's train or valid set are counted as misses; the file is "
        "checked for them and a warning on stderr says how many.",
    )
    p.add_argument("--split", required=True, help="split folder (holds manifest.json)")
    p.add_argument("--recommendations", "-r", required=True, help="recommendations file")
    p.add_argument("--ks", default="5,10,20", help="cut-offs, comma-separated (default 5,10,20)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument(
        "--users",
        choices=("warm", "all", "cold"),
        default="warm",
        help="the test users the metrics average over, as bench run's eval.users: warm "
        "(default: with train interactions), all, or cold (without)",
    )
    p.add_argument(
        "--per-user",
        metavar="FILE",
        help="write the per-user metrics to this parquet file (a new file: an existing one is "
        "replaced only with --force; never inside a split folder)",
    )
    p.add_argument(
        "--force", action="store_true", help="let --per-user replace an existing file"
    )
    a = p.parse_args(argv)
    import json
    import warnings

    import polars as pl

    from bench import evaluate
    from bench.errors import DataError
    from bench.metrics.api import SeenItemsWarning
    from bench.splits import load_split

    split = load_split(a.split)
    path = Path(a.recommendations)
    if not path.is_file():
        raise DataError(f"{path}: no such recommendations file")
    try:
        ks = tuple(int(k) for k in a.ks.split(","))
    except ValueError as e:
        raise DataError(f"--ks {a.ks!r}: expected comma-separated integers, e.g. 5,10,20") from e
    per_user = check_per_user(Path(a.per_user), path, a.force) if a.per_user else None
    recs = read_recommendations(path)
    warn_long_ks(recs, ks, path)
    seen = pl.concat(
        [split.train.select("user_id", "item_id"), split.valid.select("user_id", "item_id")]
    )
    check_users_match(recs, split, path)
    test, left_out = population_of(split, a.users)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SeenItemsWarning)  # said below, naming the file
            ev = evaluate(
                recs,
                test,
                train=split.train,
                items=split.items,
                users=split.users,
                ks=ks,
                seen=seen,
            )
    except DataError as e:
        if str(e).startswith("recommendations"):  # name the file: ties, ranks < 1, nulls
            raise DataError(f"{path}: {e}") from e
        raise
    # users without test items, as a run counts them (not the other segment's users)
    ev.summary["n_users_skipped"] -= left_out
    n_seen = ev.n_seen_recommended
    if n_seen:
        print(
            f"warning: {path}: {n_seen} of {recs.height} recommendations "
            f"({100 * n_seen / recs.height:.1f}%) are items the user already has in train or "
            f"valid; they are kept and count as misses (a split holds each user-item pair once), "
            f"whereas bench run leaves them out of its lists (eval.exclude_seen=true, the default)",
            file=sys.stderr,
        )
    if per_user is not None:
        from bench.files import write_atomically

        write_atomically(per_user, ev.per_user.write_parquet)
    if a.format == "json":
        print(json.dumps(ev.summary, indent=2, sort_keys=True))
    elif a.format == "csv":
        print("metric,value")
        for k in sorted(ev.summary):
            print(f"{k},{ev.summary[k]:.10g}")
    else:
        print_summary(ev.summary)
    # on stderr in every format: stdout stays machine-readable for json/csv
    for metric, reason in getattr(ev, "skipped", []) or []:
        print(f"skipped {metric}: {reason}", file=sys.stderr)
    return 0


def print_summary(summary: dict[str, float]) -> None:
    """The headline keys first, by metric group in catalog order (accuracy, beyond accuracy,
    data), each metric's cut-offs together; then the breakdowns (``/`` keys) under a rule."""
    from bench.metrics import catalog

    order = {s.name: i for i, s in enumerate(catalog.specs())}

    def rank(key: str) -> tuple:
        try:
            spec, k, suffix = catalog.parse_key(key)
            return (bool(suffix) or "/" in key, order.get(spec.name, 99), k or 0, key)
        except BenchError:
            return ("/" in key, 100, 0, key)

    keys = sorted(summary, key=rank)
    width = max((len(k) for k in keys if "/" not in k), default=10)
    head = [k for k in keys if "/" not in k]
    for k in head:
        print(f"{k:<{width}}  {summary[k]:.6f}")
    rest = keys[len(head):]
    if rest:
        print(f"-- breakdowns ({len(rest)}: per user group and gap) --")
        for k in rest:
            print(f"{k}  {summary[k]:.6f}")


def check_users_match(recs, split, path: Path) -> None:
    """A file none of whose users is a test user of the split scores 0 everywhere: that is a
    wrong split or another id scheme, never a result (DataError naming both sides)."""
    from bench.errors import DataError

    file_users = recs["user_id"].cast(str).unique()
    test_users = split.test["user_id"].unique()
    if file_users.is_in(test_users.implode()).any():
        return
    import polars as pl

    everyone = pl.concat([split.train["user_id"], split.valid["user_id"], split.test["user_id"]])
    known = int(file_users.is_in(everyone.unique().implode()).sum())
    raise DataError(
        f"{path}: none of its {file_users.len()} users is a test user of the split "
        f"{split.path} ({known} are users of the split at all; e.g. {file_users[0]!r} in the "
        f"file, {test_users.sort()[0]!r} in the split): is it the right split, and are the ids "
        f"the dataset's own user ids?"
    )


def population_of(split, users: str):
    """The split's test rows of the ``--users`` population (warm: users with train
    interactions), said on stderr with its size and the other segment's; and the number of test
    users left out."""
    import polars as pl

    in_train = pl.col("user_id").is_in(split.train["user_id"].unique().implode())
    warm = split.test.filter(in_train)
    n_warm, n_all = warm["user_id"].n_unique(), split.test["user_id"].n_unique()
    test = {"warm": warm, "all": split.test, "cold": split.test.filter(~in_train)}[users]
    sizes = {"warm": f"{n_warm}; {n_all - n_warm} cold users not evaluated",
             "cold": f"{n_all - n_warm}; {n_warm} warm users not evaluated",
             "all": f"{n_all}: {n_warm} warm, {n_all - n_warm} cold"}[users]
    print(f"evaluated: {users} test users (n = {sizes}; --users chooses)", file=sys.stderr)
    if test.is_empty() and n_all:
        print(f"warning: no {users} test user in {split.path}: no metric can be computed; "
              "--users all evaluates every test user", file=sys.stderr)
    return test, n_all - test["user_id"].n_unique()


def cmd_tune(argv: list[str]) -> int:
    from bench.tuning import tune_main

    return tune_main(argv)


def cmd_data(argv: list[str]) -> int:
    from bench.data.commands import data_main

    return data_main(argv)


def check_per_user(out: Path, recs: Path, force: bool) -> Path:
    """The resolved ``--per-user`` target, checked before any work: never a folder, a file
    inside a split folder or the recommendations file; an existing file only with --force."""
    from bench.errors import DataError
    from bench.splits import split_folder_holding

    target = out.resolve()
    if target.is_dir():
        raise DataError(
            f"--per-user {out} is a folder; give a file name, e.g. {out / 'per_user.parquet'}"
        )
    split = split_folder_holding(target.parent)
    if split is not None:
        raise DataError(
            f"--per-user {out} is inside the split folder {split}, which bench never writes "
            f"to (it would corrupt the split); give a path outside it"
        )
    if target == recs.resolve():
        raise DataError(f"--per-user {out} is the --recommendations file; give another file name")
    if not target.parent.is_dir():
        raise DataError(
            f"--per-user {out}: folder {target.parent} does not exist; create it or give "
            f"another path"
        )
    if target.exists() and not force:
        raise DataError(
            f"--per-user {out} already exists; give a new file name, or add --force to replace it"
        )
    return target


def warn_long_ks(recs, ks: tuple[int, ...], path: Path) -> None:
    """One warning line when a cut-off exceeds the longest list of the file: its metrics are
    computed on the shorter lists as they are (e.g. @50 on top-20 lists equals @20 for most)."""
    if recs.height == 0:
        return
    longest = int(recs.group_by("user_id").len()["len"].max())
    over = [str(k) for k in dict.fromkeys(ks) if k > longest]
    if over:
        ats = [f"@{k}" for k in over]
        at = ats[0] if len(ats) == 1 else f"{', '.join(ats[:-1])} and {ats[-1]}"
        print(
            f"warning: {path}: its longest list has {longest} items, fewer than k = "
            f"{', '.join(over)} of --ks; the metrics {at} use the shorter lists as they are "
            f"(no items are added)",
            file=sys.stderr,
        )


REC_COLUMNS = ("user_id", "item_id", "rank")
REC_FORMATS = (
    "a parquet, csv or tsv (.tsv: tab-separated) file with columns user_id, item_id, rank[, score]"
)


def read_recommendations(path: Path):
    """The recommendations file as a polars frame: parquet by its suffix (``.parquet``/``.pq``),
    tab-separated for ``.tsv``, else csv. Unreadable files and missing columns are DataErrors
    naming the file and what is expected."""
    import polars as pl

    from bench.errors import DataError

    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            recs = pl.read_parquet(path)
        else:
            recs = pl.read_csv(path, separator="\t" if suffix == ".tsv" else ",")
    except Exception as e:  # polars ComputeError/NoDataError, OSError, decoding errors
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(
            f"{path}: not a readable recommendations table ({reason}); expected {REC_FORMATS}"
        ) from e
    renamed = (re.fullmatch(r"(.+)_duplicated_\d+", c) for c in recs.columns)
    dup = sorted({m.group(1) for m in renamed if m})
    if dup:  # polars renames a repeated column name instead of refusing it
        raise DataError(
            f"{path}: column {dup[0]!r} appears more than once in the header; keep one "
            f"(expected {REC_FORMATS})"
        )
    missing = [c for c in REC_COLUMNS if c not in recs.columns]
    if missing:
        # escaped and cut: a binary file's "column names" hold control characters
        cols = [c.encode("unicode_escape").decode()[:40] for c in recs.columns[:8]]
        shown = ", ".join(cols) + (", ..." if recs.width > 8 else "")
        raise DataError(
            f"{path}: no column {', '.join(repr(c) for c in missing)} (columns: {shown or 'none'}"
            f"); expected {REC_FORMATS}"
        )
    if recs.height == 0:
        raise DataError(
            f"{path}: no recommendations (the file has a header but 0 rows); expected "
            f"{REC_FORMATS}, one row per recommended item"
        )
    if recs["rank"].dtype == pl.Utf8 and (recs["rank"] == "rank").any():
        row = int((recs["rank"] == "rank").arg_true()[0]) + 2
        raise DataError(
            f"{path}: line {row} repeats the header (files concatenated with their headers?); "
            f"keep the first header only"
        )
    if not recs["rank"].dtype.is_integer():
        raise DataError(
            f"{path}: column 'rank' must hold integers (1-based), got {recs['rank'].dtype}; "
            f"expected {REC_FORMATS}"
        )
    return recs


COMMANDS = {
    "run": cmd_run,
    "leaderboard": cmd_leaderboard,
    "report": cmd_report,
    "evaluate": cmd_evaluate,
    "data": cmd_data,
    "tune": cmd_tune,
}


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C: a running run is already marked KILLED by tracking
        if os.environ.get("BENCH_TRACEBACK"):
            raise
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output stopped early (`bench ... | head`)
        # no traceback, and no second error when Python flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(HELP)
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"llmrec-harness {__version__}")
        return 0
    cmd = COMMANDS.get(argv[0])
    try:
        if cmd is None:
            from bench.errors import unknown

            raise unknown("command", argv[0], COMMANDS)
        return cmd(argv[1:])
    except Exception as e:
        from bench.errors import BenchError

        if not isinstance(e, BenchError) or os.environ.get("BENCH_TRACEBACK"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


def entry() -> None:  # pragma: no cover - console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
