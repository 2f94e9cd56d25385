"""MLflow tracking exactly as the contract says, made safe for sweeps.

- Store: ``sqlite:///<abs cwd>/mlflow.db`` by default (never Hydra's job dir); ``tracking.uri`` or
  ``MLFLOW_TRACKING_URI`` override it. SQLite gets WAL and a 60 s busy timeout, the schema and
  the experiment are created once under a file lock, and SQLite on a network filesystem is
  refused (WAL and fcntl locks do not work there): use a tracking server.
- Status discipline: a run ends FINISHED, FAILED (with ``error.txt``) or KILLED (SIGTERM); runs left
  RUNNING by a dead process on this host are reaped to KILLED on the next start.
- Dedupe: ``bench.run_key`` = hash of the resolved config (minus volatile keys) + split sha256; a
  FINISHED run with the same key is skipped unless ``tracking.force=true`` (inside a sweep, the
  reused run is recorded on the parent as ``bench.reused.<run_id>``). ``bench.config_key`` is the
  same hash without the seed: reports compare one row per model configuration.
- No secret reaches params, tags or artifacts: params are the allowlisted config groups with
  secret-looking keys and URL credentials redacted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import random
import re
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bench.errors import BenchError, TrackingError

DEFAULT_EXPERIMENT = "bench"
PARENT_ENV = "BENCH_PARENT_RUN_ID"
SWEEP_ENV = "BENCH_SWEEP_ID"
#: tag prefix on a sweep's parent run: one tag per FINISHED run a job of the sweep reused
REUSED_TAG = "bench.reused."
#: tag prefix on a sweep's parent run: one tag per job that failed before it created a run
JOB_FAILED_TAG = "bench.job_failed."
#: config keys that do not change results (excluded from run_key; ``tuning`` only steers
#: ``bench tune``, whose runs carry their study in tags that enter the key)
VOLATILE_KEYS = ("tracking", "progress", "paths", "hydra", "report", "tuning")
#: config groups logged as params (allowlist)
PARAM_GROUPS = ("dataset", "split", "model", "eval", "latency", "seed", "device", "metrics")
#: a key is secret-looking when one of its words (split at ``_``, ``-``, ``.``, camelCase) is
#: one of these, or it names an API key: ``hf_token``, ``authToken``, ``db_password`` are;
#: ``max_new_tokens``, ``n_tokens``, ``author`` are not (counts and names, logged as they are)
SECRET_WORDS = frozenset(
    {"token", "secret", "password", "passwd", "pwd", "credential", "credentials", "auth",
     "authorization", "apikey", "bearer", "cookie", "session"}
)  # fmt: skip
API_KEY = re.compile(r"api[_\-]?key", re.I)


def is_secret_key(key: str) -> bool:
    """True for a config key whose value must never be logged (see ``SECRET_WORDS``)."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower().replace("-", "_").replace(".", "_")
    return bool(API_KEY.search(key)) or any(w in SECRET_WORDS for w in words.split("_"))
URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)
MAX_PARAM_LEN = 6000
# statfs magic numbers of network / cluster filesystems where SQLite locking is unsafe
NETWORK_FS = {
    0x6969: "nfs",
    0x517B: "smb",
    0xFF534D42: "cifs",
    0xFE534D42: "smb2",
    0x0BD00BD0: "lustre",
    0x47504653: "gpfs",
    0x65735546: "fuse",
    0x013111A8: "ibrix",
    0x19830326: "fhgfs/beegfs",
    0x5346414F: "afs",
}

#: a RUNNING run of another host is stale when its ``bench.heartbeat`` (epoch seconds, renewed
#: every ``HEARTBEAT_S`` by the owner while it runs against a tracking server) is this old
HEARTBEAT_S = 60.0
STALE_AFTER_S = 900.0

T = TypeVar("T")
log = logging.getLogger("bench.tracking")


# ---------------------------------------------------------------------------------------------
# store location


def resolve_uri(uri: str | None, base_dir: Path) -> str:
    """Absolute tracking URI: explicit > $MLFLOW_TRACKING_URI > sqlite file in ``base_dir``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri:
        return f"sqlite:///{(Path(base_dir) / 'mlflow.db').resolve()}"
    if uri.startswith("sqlite:///"):
        rest = uri[len("sqlite:///") :]
        path, _, query = rest.partition("?")
        if not path.startswith("/"):
            path = str((Path(base_dir) / path).resolve())
        return f"sqlite:///{path}" + (f"?{query}" if query else "")
    if "://" not in uri:  # a bare path: a file store is deprecated in MLflow 3
        raise TrackingError(
            f"tracking.uri={uri!r} is a path; MLflow 3 needs a database or server URI, e.g. "
            f"sqlite:///{Path(base_dir).resolve() / 'mlflow.db'} (for an old ./mlruns folder run "
            f"'mlflow migrate-filestore')"
        )
    return uri


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :].partition("?")[0])


def filesystem_type(path: Path) -> str | None:
    """Name of a network filesystem holding ``path`` (None for a local disk)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    with contextlib.suppress(OSError):
        with open("/proc/mounts") as f:
            mounts = [line.split()[:3] for line in f]
        best = ("", "")
        target = str(probe.resolve())
        for _, mnt, fstype in mounts:
            if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(
                best[0]
            ):
                best = (mnt, fstype)
        if best[1] and re.match(
            r"^(nfs\d?|cifs|smb\d?|lustre|gpfs|fuse\.\w+|beegfs|afs|ceph)$", best[1]
        ):
            return best[1]
    return None


def check_location(uri: str, allow_network_fs: bool = False) -> None:
    """Refuse SQLite on a network filesystem (SQLite's WAL and locks break there)."""
    path = sqlite_path(uri)
    if path is None or allow_network_fs:
        return
    fs = filesystem_type(path.parent)
    if fs:
        raise TrackingError(
            f"tracking store {path} is on a network filesystem ({fs}); SQLite locking is unsafe "
            f"there. Run 'mlflow server --backend-store-uri postgresql://... --host 127.0.0.1' "
            f"and set tracking.uri=http://127.0.0.1:5000 (or tracking.allow_network_fs=true to "
            f"accept the risk)"
        )


def _connect_uri(uri: str) -> str:
    """URI handed to MLflow: SQLite gets a 60 s busy timeout."""
    if uri.startswith("sqlite:///") and "timeout=" not in uri:
        return uri + ("&" if "?" in uri else "?") + "timeout=60"
    return uri


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Exclusive lock around schema creation and experiment get-or-create (SQLite only)."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _quiet_mlflow() -> None:
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # it logs every database error with a traceback before re-raising it; the harness turns
    # the error it re-raises into one line (disk full, damaged store, ...)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def retry(fn: Callable[[], T], attempts: int = 8, base: float = 0.2) -> T:
    """Call ``fn`` with exponential backoff on SQLite 'database is locked' errors."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - MLflow wraps the sqlite error in its own types
            msg = str(e).lower()
            if i == attempts - 1 or ("locked" not in msg and "busy" not in msg):
                raise
            time.sleep(base * (2**i) * (1 + 0.25 * ((os.getpid() + i) % 4)))
    raise AssertionError("unreachable")


class Store:
    """A ready tracking store: MlflowClient + experiment id."""

    def __init__(
        self,
        uri: str,
        experiment: str = DEFAULT_EXPERIMENT,
        allow_network_fs: bool = False,
    ) -> None:
        check_location(uri, allow_network_fs)
        _quiet_mlflow()
        from mlflow import MlflowClient

        self.uri = uri
        self.experiment_name = experiment
        with store_lock(uri):
            path = sqlite_path(uri)
            try:
                if path is not None:
                    prepare_sqlite_store(path)
                self.client = MlflowClient(tracking_uri=_connect_uri(uri))
                if path is not None:
                    _enable_wal(path)
                self.experiment_id = self._get_or_create(experiment)
            except BenchError:
                raise
            except Exception as e:
                raise _store_error(uri, e) from e

    def _get_or_create(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage != "active":
                raise TrackingError(
                    f"experiment '{name}' in {self.uri} is deleted; restore it in the MLflow UI "
                    f"or choose tracking.experiment=<other name>"
                )
            self._set_views(str(exp.experiment_id), dict(exp.tags or {}))
            return str(exp.experiment_id)
        path = sqlite_path(self.uri)
        location = None
        if path is not None:
            location = str(path.parent / "mlartifacts" / name)
        try:
            experiment_id = str(self.client.create_experiment(name, artifact_location=location))
            self._set_views(experiment_id, {})
            return experiment_id
        except Exception:
            # another process created it meanwhile (a tracking server has no file lock)
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return str(exp.experiment_id)

    def _set_views(self, experiment_id: str, have: Mapping[str, str]) -> None:
        """The experiment opens on its runs table, and holds the ``bench-leaderboard`` view
        (``leaderboard_view``); tags are written only when missing or different."""
        for key, value in experiment_tags().items():
            if have.get(key) != value:
                try:
                    self.client.set_experiment_tag(experiment_id, key, value)
                except Exception as e:  # noqa: BLE001 - UI sugar never fails a run
                    # e.g. two processes inserting the same tag at once behind a server
                    # (MLflow looks up, then inserts: PostgreSQL's experiment_tag_pk)
                    log.debug("experiment tag %s not set: %s", key, e)

    def view_url(self, base: str = "") -> str:
        """The MLflow UI address of the ``bench-leaderboard`` view (``base``: the UI's URL)."""
        return leaderboard_url(base or self.uri, self.experiment_id)

    # -- queries ---------------------------------------------------------------------------

    def search(self, filter_string: str, max_results: int = 1000) -> list[Any]:
        return list(
            retry(
                lambda: self.client.search_runs(
                    [self.experiment_id], filter_string=filter_string, max_results=max_results
                )
            )
        )

    def finished_run(self, key: str) -> Any | None:
        runs = self.search(f"tags.\"bench.run_key\" = '{key}' and attributes.status = 'FINISHED'")
        return runs[0] if runs else None

    def key_runs(self, key: str) -> list[Any]:
        """The active (not deleted) RUNNING and FINISHED runs carrying ``bench.run_key`` = key,
        sweep parents excluded."""
        runs = self.search(f"tags.\"bench.run_key\" = '{key}'")
        live = ("RUNNING", "FINISHED")
        return [
            r for r in runs
            if r.info.status in live and r.data.tags.get("bench.sweep") != "parent"
        ]  # fmt: skip

    def claim(
        self,
        key: str,
        create: Callable[[], str],
        force: bool = False,
        on_wait: Callable[[Any], None] | None = None,
        poll: float = 2.0,
    ) -> tuple[str, Any]:
        """Claim ``bench.run_key`` = ``key`` atomically: ``("run", run_id)`` when this process
        owns the key (``create()`` made the RUNNING run that is the claim), ``("done", run)``
        when a FINISHED run has the key (never with ``force``).

        The protocol uses MLflow's API only, so it holds on SQLite and behind a tracking server
        alike: create the run, then re-read every live run of the key; the claim stands only if
        no *other* RUNNING run (nor, without ``force``, a FINISHED one) is there. Otherwise the
        new run is deleted and, after a random back-off, the process tries again. Two claims can
        never both stand: the later of the two creations happens before its owner's re-read,
        which therefore sees the earlier claim. While another process holds the key (its run is
        RUNNING), this one waits (``on_wait(run)`` once per holder) and claims the key when the
        holder ends FAILED or KILLED, or reuses its FINISHED run. A claim left RUNNING by a
        process that died on this host is reaped to KILLED (``reap_stale``); on SQLite the
        create-and-re-read also runs under the store's file lock, so local racers never collide.
        """
        import random

        rng = random.Random(os.getpid() ^ time.monotonic_ns())
        told: set[str] = set()
        while True:
            live = self.key_runs(key)
            done = [r for r in live if r.info.status == "FINISHED"]
            if done and not force:
                return "done", done[0]
            holders = [r for r in live if r.info.status == "RUNNING"]
            if holders:
                for r in holders:
                    if r.info.run_id not in told and on_wait is not None:
                        on_wait(r)
                    told.add(r.info.run_id)
                time.sleep(poll * (0.5 + rng.random()))
                self.reap_stale()
                continue
            with store_lock(self.uri):
                mine = create()
                live = self.key_runs(key)
            others = [
                r for r in live
                if r.info.run_id != mine and (r.info.status == "RUNNING" or not force)
            ]  # fmt: skip
            if not others:
                return "run", mine
            retry(partial(self.client.delete_run, mine))  # withdraw; the other claim stands
            time.sleep(0.2 + rng.random() * 1.5)

    def reap_stale(self) -> list[str]:
        """Mark KILLED the RUNNING runs whose owner is gone: a process on this host that no
        longer runs, or (behind a tracking server, where jobs run on other hosts) an owner
        whose ``bench.heartbeat`` is older than ``STALE_AFTER_S``."""
        host = socket.gethostname()
        now = time.time()
        reaped = []
        for run in self.search("attributes.status = 'RUNNING'"):
            tags = run.data.tags
            note = None
            if tags.get("bench.host") == host and tags.get("bench.pid"):
                if not _pid_alive(int(tags["bench.pid"]), tags.get("bench.pid_start")):
                    note = "reaped: owner gone"
            elif tags.get("bench.heartbeat", "").isdigit():
                age = now - int(tags["bench.heartbeat"])
                if age > STALE_AFTER_S:
                    note = f"reaped: no heartbeat for {age:.0f} s from {tags.get('bench.host')}"
            if note is None:
                continue
            rid = run.info.run_id
            # the owner may have ended the run between the search and the check above; it is
            # gone now, so a status read after the check is final
            if retry(partial(self.client.get_run, rid)).info.status != "RUNNING":
                continue
            retry(partial(self.client.set_tag, rid, "bench.status_note", note))
            retry(partial(self.client.set_terminated, rid, "KILLED"))
            reaped.append(rid)
        return reaped


VIEW_KEY = "bench-leaderboard"
VIEW_TAG = "mlflow.sharedViewState." + VIEW_KEY
#: MLflow 3's experiment kind: open on "Training runs", not the GenAI overview
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def leaderboard_view() -> dict[str, Any]:
    """The MLflow UI view state (a shared view, MLflow's own "Share" format) of the runs table
    as a leaderboard: evaluation runs only (those with the headline metric), sorted by it, with
    the headline metrics, the number of evaluated users, the population and the Dataset as
    columns. The hundreds of breakdown keys (``<key>/segment/*``, ``<key>/<attribute>/<group>``,
    ``valid/*``) stay logged and selectable under "Columns"."""
    from bench.metrics.catalog import HEADLINE

    metric = f"metrics.`{HEADLINE[0]}`"
    columns = [*(f"metrics.`{k}`" for k in HEADLINE), "metrics.`n_users_evaluated`",
               "tags.`bench.eval_users`", "metrics.`latency_p50_ms`", "attributes.`Dataset`"]
    # columnOrder: without it the UI sorts metric columns by name (ndcg@10 off screen)
    return {"searchFilter": f"metrics.{HEADLINE[0]} >= 0", "orderByKey": metric,
            "orderByAsc": False, "selectedColumns": columns, "columnOrder": columns}


def experiment_tags() -> dict[str, str]:
    return {KIND_TAG: KIND, VIEW_TAG: json.dumps(leaderboard_view(), sort_keys=True)}


def leaderboard_url(base: str, experiment_id: str) -> str:
    """``<MLflow UI>/#/experiments/<id>/runs?viewStateShareKey=bench-leaderboard``; a SQLite
    store has no UI of its own, so its address is that of ``mlflow ui`` on this machine."""
    remote = base.startswith(("http://", "https://"))
    ui = URL_USERINFO.sub(r"\g<scheme>", base).rstrip("/") if remote else "http://127.0.0.1:5000"
    return f"{ui}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}"


def inspect_sqlite_store(path: Path, full_check: bool = False) -> tuple[set[str], int]:
    """(table names, number of runs) of an existing SQLite store; a file that is not a
    readable SQLite database (junk, truncated: ``full_check`` runs ``PRAGMA quick_check``,
    which reads every page) is a one-line TrackingError."""
    import sqlite3

    try:
        con = sqlite3.connect(str(path), timeout=60)
        try:
            rows = con.execute("select name from sqlite_master where type='table'")
            tables = {r[0] for r in rows}
            n_runs = 0
            if "runs" in tables:
                n_runs = con.execute("select count(*) from runs").fetchone()[0]
            check = con.execute("PRAGMA quick_check").fetchone()[0] if full_check else "ok"
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        from bench.errors import disk_full, is_disk_full

        # SQLite reports a full disk while it sets up WAL's shared memory as an I/O error
        if is_disk_full(e) or ("disk i/o" in str(e).lower() and _nearly_full(path.parent)):
            raise disk_full(e, path, "opening the tracking store") from e
        raise damaged_store(path, str(e)) from e
    if check != "ok":
        raise damaged_store(path, str(check))
    return tables, int(n_runs)


def _nearly_full(folder: Path, below: int = 1 << 20) -> bool:
    import shutil

    try:
        return shutil.disk_usage(folder).free < below
    except OSError:
        return False


def damaged_store(path: Path, why: str) -> TrackingError:
    return TrackingError(
        f"tracking store {path} is damaged ({why.splitlines()[0]}): it is not a readable MLflow "
        f"SQLite database; restore it from a backup, or move it aside (mv {path} {path}.broken) "
        f"to start a new store; nothing was changed"
    )


def prepare_sqlite_store(path: Path) -> None:
    """Make sure ``path`` is a usable store before MLflow opens it (call under the store lock).

    A missing (or empty) store is created atomically: schema and migrations go into a temporary
    file next to it, renamed into place when complete, so a full disk or a kill never leaves a
    half-migrated store. An existing store left half-migrated by an older harness or by an
    interrupted ``mlflow db upgrade`` (``_alembic_tmp_*`` tables) is moved aside and recreated
    when it holds no run, refused with the fix otherwise. A junk file is refused."""
    from bench.errors import disk_full, is_disk_full

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if is_disk_full(e):
            raise disk_full(e, path.parent, "creating the MLflow store's folder") from e
        raise
    if path.is_file() and path.stat().st_size > 0:
        tables, n_runs = inspect_sqlite_store(path)
        leftovers = migration_leftovers(tables)
        if not leftovers:
            return
        if n_runs:
            raise TrackingError(
                f"tracking store {path} was left half-migrated (table {leftovers[0]} from an "
                f"interrupted migration, e.g. on a full disk) and holds {n_runs} run(s): restore "
                f"it from the backup taken before 'mlflow db upgrade'; nothing was changed"
            )
        aside = path.with_name(f"{path.name}.half-migrated-{int(time.time())}")
        os.replace(path, aside)
        log.warning("moved the half-migrated, empty store %s aside to %s", path, aside)
        print(f"[bench] {path} was a half-migrated store with no run: moved aside to {aside.name}"
              f" and created again", file=sys.stderr)  # fmt: skip
    _create_sqlite_store(path)


def _create_sqlite_store(path: Path) -> None:
    from bench.errors import disk_full, is_disk_full
    from bench.files import write_atomically

    try:
        write_atomically(path, _initialize_sqlite_store)
    except Exception as e:
        if is_disk_full(e):
            raise disk_full(
                e, path, "creating the MLflow store (nothing was written: no store was created)"
            ) from e
        raise


def migration_leftovers(tables: set[str]) -> list[str]:
    """The tables an interrupted alembic migration leaves behind (``_alembic_tmp_*``)."""
    return sorted(t for t in tables if t.startswith("_alembic_tmp_"))


def _initialize_sqlite_store(tmp: Path) -> None:
    """MLflow's schema in the new SQLite file ``tmp``: a copy of the empty store this MLflow
    made before (``schema_template``), else its migrations run here and their result is kept
    as that copy. Running MLflow's ~60 migrations takes about 2 s; the copy takes
    milliseconds."""
    template = schema_template()
    empty = _read_template(template) if template is not None else None
    if empty is not None:  # a write error (a full disk) names the store, not the template
        tmp.write_bytes(empty)
        return
    _migrate_sqlite_store(tmp)
    if template is not None:
        _keep_template(tmp, template)


def _migrate_sqlite_store(tmp: Path) -> None:
    """MLflow's schema and migrations in the new SQLite file ``tmp``; on failure its journal
    is removed too (``write_atomically`` removes ``tmp``)."""
    from mlflow.store.db.utils import _initialize_tables
    from sqlalchemy import create_engine

    try:
        engine = create_engine(f"sqlite:///{tmp}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
    except BaseException:
        Path(f"{tmp}-journal").unlink(missing_ok=True)
        raise


def cache_home() -> Path | None:
    """The harness's per-user cache (``$BENCH_CACHE_HOME``, else ``$XDG_CACHE_HOME/bench``,
    else ``~/.cache/bench``); None when ``BENCH_CACHE_HOME`` is ``off``."""
    own = os.environ.get("BENCH_CACHE_HOME", "").strip()
    if own.lower() == "off":
        return None
    if own:
        return Path(own).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg:
        return Path(xdg) / "bench"
    try:
        return Path.home() / ".cache" / "bench"
    except RuntimeError:  # no home directory: no cache
        return None


def schema_template() -> Path | None:
    """Where the empty SQLite store of this MLflow is kept: named by the versions of MLflow,
    SQLAlchemy, alembic and SQLite and by MLflow's migration files, so another version never
    reuses it (None when the cache is off)."""
    import importlib.util
    import sqlite3

    from bench.environment import NOT_INSTALLED, package_versions

    home = cache_home()
    spec = importlib.util.find_spec("mlflow")
    if home is None or spec is None or spec.origin is None:
        return None
    versions = Path(spec.origin).parent / "store" / "db_migrations" / "versions"
    h = hashlib.sha256()
    parts = list(package_versions(("mlflow", "sqlalchemy", "alembic")).values())
    if NOT_INSTALLED in parts:  # not a regular install: no cache
        return None
    parts.append(sqlite3.sqlite_version)
    for part in parts:
        h.update(f"{part}\n".encode())
    with contextlib.suppress(OSError):
        for f in sorted(versions.glob("*.py")):
            h.update(f"{f.name} {f.stat().st_size}\n".encode())
    return home / "mlflow-schema" / f"empty-{h.hexdigest()[:16]}.db"


def _read_template(template: Path) -> bytes | None:
    """The bytes of ``template`` when they are a complete empty store (MLflow's tables, one
    alembic revision, no run, no leftover of a migration), checked in memory so that what was
    checked is what is copied; None for anything else (it is made again)."""
    import sqlite3

    try:
        data = template.read_bytes()
    except OSError:  # missing or unreadable
        return None
    if not data:  # deserialize() cannot take an empty buffer
        return None
    con = sqlite3.connect(":memory:")
    try:
        con.deserialize(data)
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        ok = {"alembic_version", "runs", "experiments"} <= tables and not migration_leftovers(
            tables
        )
        ok = ok and con.execute("select count(*) from alembic_version").fetchone()[0] == 1
        ok = ok and con.execute("select count(*) from runs").fetchone()[0] == 0
        ok = ok and con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    except sqlite3.DatabaseError:
        return None
    finally:
        con.close()
    return data if ok else None


def _keep_template(store: Path, template: Path) -> None:
    """Keep a copy of the freshly migrated ``store`` as ``template``, written atomically; a
    cache that cannot be written is skipped (the store is made by migrations each time)."""
    import shutil

    from bench.files import write_atomically

    with contextlib.suppress(OSError):
        template.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(template, lambda t: shutil.copyfile(store, t))


def _enable_wal(path: Path) -> None:
    import sqlite3

    with contextlib.suppress(sqlite3.DatabaseError):
        con = sqlite3.connect(str(path), timeout=60)
        try:
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()


def _store_error(uri: str, e: Exception) -> BenchError:
    from bench.errors import disk_full, is_disk_full

    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    path = sqlite_path(uri)
    if is_disk_full(e):
        return disk_full(e, path or redact_text(uri), "writing to the tracking store")
    low = str(e).lower()
    if path is not None and "disk i/o" in low and _nearly_full(path.parent):
        return disk_full(e, path, "writing to the tracking store")
    if path is not None and ("malformed" in low or "not a database" in low):
        return damaged_store(path, msg)
    if "out-of-date database schema" in str(e).lower() or "alembic" in str(e).lower():
        return TrackingError(
            f"tracking store {redact_text(uri)} has an older MLflow schema: back it up, then run "
            f"'mlflow db upgrade {redact_text(uri)}' ({msg})"
        )
    return TrackingError(f"cannot open tracking store {redact_text(uri)}: {msg}")


def _process_start(pid: int) -> str | None:
    with contextlib.suppress(OSError, IndexError), open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[19]
    return None


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # guard against pid reuse: compare the process start time recorded at run start
    return start is None or _process_start(pid) == start


# ---------------------------------------------------------------------------------------------
# config -> params, run key


def redact_text(value: str) -> str:
    """Remove credentials from URLs (``https://user:pw@host`` -> ``https://***@host``)."""
    return URL_USERINFO.sub(lambda m: f"{m.group('scheme')}***@", value)


def redact(obj: Any, key: str = "") -> Any:
    """Deep-copy a config with secret-looking keys and URL credentials redacted."""
    if isinstance(obj, Mapping):
        return {k: redact(v, str(k)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact(v, key) for v in obj]
    if key and is_secret_key(key) and not key.endswith("_env") and obj not in (None, ""):
        return "***"
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, list | tuple) and any(isinstance(v, Mapping) for v in obj):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = obj
    return out


def params_of(cfg: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params: the allowlisted config groups, flattened, redacted, length-capped."""
    chosen = {k: cfg[k] for k in PARAM_GROUPS if k in cfg}
    out = {}
    for k, v in flatten(redact(chosen)).items():
        s = json.dumps(v) if isinstance(v, list | tuple | dict) else str(v)
        if len(s) > MAX_PARAM_LEN:
            digest = hashlib.sha256(s.encode()).hexdigest()[:12]
            s = s[: MAX_PARAM_LEN - 22] + f"...sha256:{digest}"
        out[re.sub(r"[^\w./\- ]", "_", k)] = s
    return out


def _config_hash(cfg: Mapping[str, Any], split_sha: str, drop: tuple[str, ...]) -> str:
    stable = {k: v for k, v in cfg.items() if k not in drop}
    payload = json.dumps({"config": stable, "split_sha256": split_sha}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def run_key(cfg: Mapping[str, Any], split_sha: str) -> str:
    """sha256 of the resolved config minus volatile keys, plus the split's sha256."""
    return _config_hash(cfg, split_sha, VOLATILE_KEYS)


#: config sections and keys that do not change a model's recommendations: what is measured
#: about them (metrics, latency, device, cut-offs, batch memory). They are in the run key (a
#: run measured differently is another run) but not in the configuration's identity.
MEASUREMENT_KEYS = ("metrics", "latency", "device")
MEASUREMENT_EVAL_KEYS = ("ks", "batch_budget_mb")


def config_key(cfg: Mapping[str, Any], split_sha: str) -> str:
    """The identity of a model configuration (tag ``bench.config_key``): the resolved config
    without the seed and without what only changes how runs are measured
    (``MEASUREMENT_KEYS``, ``eval.ks``, ``eval.batch_budget_mb``); the runs of one
    configuration share it, so reports average seeds of one configuration only, and a
    metric-only setting (``metrics.item_embeddings``) never splits a model in two."""
    ident = dict(cfg)
    if isinstance(ident.get("eval"), Mapping):
        ident["eval"] = {k: v for k, v in ident["eval"].items() if k not in MEASUREMENT_EVAL_KEYS}
    return _config_hash(ident, split_sha, (*VOLATILE_KEYS, *MEASUREMENT_KEYS, "seed"))


def identity_param(name: str) -> bool:
    """A logged param (``eval.ks``, ``model.params.k``, ...) that is part of the identity."""
    head, _, rest = name.partition(".")
    if head in MEASUREMENT_KEYS or head == "seed":
        return False
    return not (head == "eval" and rest in MEASUREMENT_EVAL_KEYS)


def record_reuse(store: Store, parent_id: str, run_id: str) -> None:
    """Note on a sweep's parent that one of its jobs reused the FINISHED run ``run_id``
    (tag ``bench.reused.<run_id>``), so the sweep's summary includes it."""
    retry(partial(store.client.set_tag, parent_id, f"{REUSED_TAG}{run_id}", run_id))


def store_for(tcfg: Mapping[str, Any], root: Path) -> Store | None:
    """The store a config's ``tracking`` section names (a relative ``uri`` resolved against
    ``root``), or None when ``tracking.enabled`` is false."""
    if not tcfg.get("enabled", True):
        return None
    return Store(
        resolve_uri(tcfg.get("uri"), root),
        str(tcfg.get("experiment", DEFAULT_EXPERIMENT)),
        bool(tcfg.get("allow_network_fs", False)),
    )


def record_job_failure(store: Store, parent_id: str, job: int, message: str) -> None:
    """Note on a sweep's parent that job ``job`` failed before creating a run (a config or
    data error), so the parent ends FAILED and counts it (tag ``bench.job_failed.<job>``)."""
    retry(partial(store.client.set_tag, parent_id, f"{JOB_FAILED_TAG}{job}", message[:4000]))


def safe_metric_key(key: str) -> str:
    """MLflow-safe metric name (``@`` -> ``_at_``; other illegal characters -> ``_``)."""
    key = key.replace("@", "_at_")
    return re.sub(r"[^\w./\- ]", "_", key)


# ---------------------------------------------------------------------------------------------
# runs


#: signals received while a run was open (a handler's exception can be swallowed when the
#: signal lands in a garbage-collection callback: ``raise_pending`` raises it again later)
PENDING_SIGNALS: list[int] = []


def defer_signal(signum: int, frame: Any) -> None:
    """A SIGINT/SIGTERM handler that never raises inside whatever code is running (an
    exception raised in a library's garbage-collection callback is swallowed): the signal is
    recorded and ``raise_pending`` raises it at the next safe point (a stage boundary, a job's
    start, a run's end). A second signal stops at once."""
    if PENDING_SIGNALS:
        raise SystemExit(143) if signum == signal.SIGTERM else KeyboardInterrupt
    PENDING_SIGNALS.append(signum)
    print("[bench] interrupt received: stopping at the next step (again to stop now)",
          file=sys.stderr, flush=True)


def raise_pending() -> None:
    """Raise the exception of a signal a run received but did not act on: SystemExit(143)
    for SIGTERM, KeyboardInterrupt for SIGINT. Called between a run's stages and at its end."""
    if not PENDING_SIGNALS:
        return
    signum = PENDING_SIGNALS[0]
    if signum == signal.SIGTERM:
        raise SystemExit(143)
    raise KeyboardInterrupt


class TrackedRun:
    """One MLflow run with status discipline (context manager).

    Exceptions end it FAILED with ``error.txt``; SIGTERM ends it KILLED and exits 143; SIGINT
    ends it KILLED (KeyboardInterrupt). Signals are deferred (``defer_signal``) to the next
    stage boundary or the run's end, never raised inside library code, never lost."""

    def __init__(
        self,
        store: Store,
        run_name: str,
        tags: Mapping[str, str],
        parent_run_id: str | None = None,
        run_id: str | None = None,
    ) -> None:
        self.store = store
        self.run_id: str = run_id or create_run(store, run_name, tags, parent_run_id)
        self._prev_handler: Any = None

    def __enter__(self) -> TrackedRun:
        if _in_main_thread():
            self._prev_handler = signal.signal(signal.SIGTERM, defer_signal)
            self._prev_int = signal.signal(signal.SIGINT, defer_signal)
            self._prev_unraisable = sys.unraisablehook
            sys.unraisablehook = self._unraisable
        if sqlite_path(self.store.uri) is None:  # jobs of other hosts see that we are alive
            import threading

            self._beating = threading.Event()
            threading.Thread(target=self._heartbeat, daemon=True, name="bench-heartbeat").start()
        return self

    _beating: Any = None
    _prev_int: Any = None
    _prev_unraisable: Any = None

    def _unraisable(self, info: Any) -> None:
        """A signal's exception swallowed in a garbage-collection callback is not printed as
        a traceback: it is pending, and raised at the next stage boundary (raise_pending)."""
        if PENDING_SIGNALS and issubclass(info.exc_type, KeyboardInterrupt | SystemExit):
            return
        (self._prev_unraisable or sys.__unraisablehook__)(info)


    def _heartbeat(self) -> None:
        while not self._beating.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):
                self.store.client.set_tag(self.run_id, "bench.heartbeat", str(int(time.time())))


    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._beating is not None:
            self._beating.set()
        if _in_main_thread() and self._prev_handler is not None:
            signal.signal(signal.SIGTERM, self._prev_handler)
        if _in_main_thread() and self._prev_int is not None:
            signal.signal(signal.SIGINT, self._prev_int)
        if self._prev_unraisable is not None:
            sys.unraisablehook = self._prev_unraisable
        signalled = exc_type is KeyboardInterrupt or (
            exc_type is SystemExit and getattr(exc, "code", None) == 143
        )
        if PENDING_SIGNALS and (exc_type is None or signalled):
            term = PENDING_SIGNALS[0] == signal.SIGTERM
            with contextlib.suppress(Exception):
                self.store.client.set_tag(self.run_id, "bench.status_note",
                                          "SIGTERM" if term else "SIGINT")
                retry(lambda: self.store.client.set_terminated(self.run_id, "KILLED"))
            if exc_type is not None:
                return
            if term:
                raise SystemExit(143)
            raise KeyboardInterrupt
        if exc_type is None:
            retry(lambda: self.store.client.set_terminated(self.run_id, "FINISHED"))
            return
        status = "KILLED" if exc_type is KeyboardInterrupt else "FAILED"
        with contextlib.suppress(AttributeError, TypeError):
            exc.bench_run_id = self.run_id  # the failure is recorded on this run
        with contextlib.suppress(Exception):
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            self.store.client.log_text(self.run_id, redact_text(text), "error.txt")
        with contextlib.suppress(Exception):
            retry(lambda: self.store.client.set_terminated(self.run_id, status))

    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):
            retry(partial(self.store.client.log_batch, self.run_id, params=items[i : i + 100]))

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [
            Metric(safe_metric_key(k), float(v), ts, 0)
            for k, v in metrics.items()
            if v is not None and v == v  # NaN is not logged
        ]
        for i in range(0, len(items), 1000):
            chunk = items[i : i + 1000]
            retry(partial(self.store.client.log_batch, self.run_id, metrics=chunk))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            retry(partial(self.store.client.log_batch, self.run_id, tags=items[i : i + 100]))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        retry(lambda: self.store.client.log_artifact(self.run_id, str(path), artifact_path))


def create_run(
    store: Store, run_name: str, tags: Mapping[str, str], parent_run_id: str | None = None
) -> str:
    """A new RUNNING run with ``tags`` plus the owner tags (host, pid, pid start time)."""
    all_tags = {**{k: str(v) for k, v in tags.items()}, **_owner_tags()}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = retry(
        lambda: store.client.create_run(store.experiment_id, tags=all_tags, run_name=run_name)
    )
    return str(run.info.run_id)


def _owner_tags(heartbeat: bool = True) -> dict[str, str]:
    """Who owns a RUNNING run: host, pid and the pid's start time (guards against pid reuse),
    and the first heartbeat (renewed by ``TrackedRun`` behind a tracking server)."""
    tags = {
        "bench.host": socket.gethostname(),
        "bench.pid": str(os.getpid()),
        "bench.pid_start": _process_start(os.getpid()) or "",
    }
    if heartbeat:
        tags["bench.heartbeat"] = str(int(time.time()))
    return tags


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def start_parent(store: Store, sweep_id: str, tags: Mapping[str, str]) -> str:
    """Create the parent run of a sweep (tag ``bench.sweep=parent``); returns its id."""
    run = retry(
        lambda: store.client.create_run(
            store.experiment_id,
            # no heartbeat: the launcher does not renew one, and jobs on other hosts must not
            # reap the parent of a long sweep (it is closed by its launcher, or by a re-run)
            tags={**tags, **_owner_tags(heartbeat=False), "bench.sweep": "parent",
                  "bench.sweep_id": sweep_id},  # fmt: skip
            run_name=f"sweep-{sweep_id}",
        )
    )
    return str(run.info.run_id)


def end_parent(store: Store, parent_id: str, interrupted: str | None = None) -> dict[str, int]:
    """Finish a sweep's parent with a status summary of its children: FINISHED only when
    every job ran and FINISHED. ``interrupted`` (the sweep did not complete): ``KILLED`` (a
    signal) or ``FAILED`` (an error), whatever the children's status."""
    children = store.search(f"tags.\"mlflow.parentRunId\" = '{parent_id}'", max_results=5000)
    counts: dict[str, int] = {}
    for r in children:
        counts[r.info.status] = counts.get(r.info.status, 0) + 1
    tags = {f"bench.n_{k.lower()}": str(v) for k, v in counts.items()}
    tags["bench.n_children"] = str(len(children))
    parent_tags = retry(lambda: store.client.get_run(parent_id)).data.tags
    n_jobs_failed = sum(k.startswith(JOB_FAILED_TAG) for k in parent_tags)
    if n_jobs_failed:  # jobs that failed before creating a run (no child to count)
        counts["jobs failed before a run"] = n_jobs_failed
        tags["bench.n_jobs_failed_before_run"] = str(n_jobs_failed)
    ok = counts.get("FINISHED", 0) == len(children) and not n_jobs_failed
    status = "FINISHED" if ok else "FAILED"
    if interrupted:
        status = interrupted
        note = "interrupted by a signal" if interrupted == "KILLED" else "ended by an error"
        tags["bench.status_note"] = f"sweep {note} before all its jobs ran"
        counts[f"sweep {interrupted}"] = 1
    for k, v in tags.items():
        retry(partial(store.client.set_tag, parent_id, k, v))
    retry(lambda: store.client.set_terminated(parent_id, status))
    return counts


def log_split_input(store: Store, run_id: str, dataset: str, split: str, split_sha: str,
                    split_dir: str, counts: Mapping[str, Any]) -> None:
    """The split as the run's MLflow dataset input (the UI's Dataset column shows
    ``<dataset>/<split>`` with its sha256 prefix as digest; context ``test``)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    profile = json.dumps({k: counts[k] for k in sorted(counts)}, default=str)
    ds = Dataset(name=f"{dataset}/{split}", digest=split_sha[:12], source_type="local",
                 source=json.dumps({"uri": split_dir}), profile=profile)
    tags = [InputTag(key="mlflow.data.context", value="test")]
    log = partial(store.client.log_inputs, run_id, [DatasetInput(ds, tags)])
    try:
        retry(log)
    except Exception:  # noqa: BLE001 - concurrent runs insert the same dataset row: once more
        # MLflow looks the dataset up, then inserts it: two runs of one split started together
        # race on the (experiment, name, digest) key; the second try finds the first's row
        time.sleep(0.2 + random.random())
        try:
            retry(log)
        except Exception as e:  # noqa: BLE001 - the Dataset column is a convenience
            print(f"[bench] warning: the split was not logged as the run's dataset input "
                  f"({type(e).__name__}); the run is complete without it", file=sys.stderr)
