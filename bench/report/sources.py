"""Where ``bench leaderboard`` and ``bench report`` read runs from.

Two sources give the same ``Run`` values (a differential test compares them on real stores):

- ``ClientSource``: MLflow's ``MlflowClient``, for any store and any tracking server.
- ``SqliteSource``: a read-only SQL reader of a local SQLite store's MLflow tables (``runs``,
  ``tags``, ``params``, ``latest_metrics``, ``experiments``). It never imports ``mlflow``,
  whose import alone takes longer than answering from 1,000 runs
  (``reports/perf/leaderboard.md``). It is used only when the store has exactly the columns
  it reads; otherwise the client is used.

Both return FINISHED, non-deleted runs newest first (start time descending, then run id, as
MLflow's own ``search_runs`` orders them).
"""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import Any, Protocol

#: the MLflow SQL schema columns ``SqliteSource`` reads; a store without them is read by MLflow
COLUMNS = {
    "experiments": {"experiment_id", "name", "lifecycle_stage"},
    "runs": {"run_uuid", "name", "experiment_id", "status", "start_time", "lifecycle_stage",
             "artifact_uri"},
    "tags": {"key", "value", "run_uuid"},
    "params": {"key", "value", "run_uuid"},
    "latest_metrics": {"key", "value", "is_nan", "run_uuid"},
}


class RunSource(Protocol):
    """What the report commands need from a store."""

    def experiment_id(self, name: str) -> str | None: ...

    def experiment_names(self) -> list[str]: ...

    def runs(self, experiment_id: str, tags: Mapping[str, str], sha_prefix: str = "",
             finished: bool = True) -> list[Any]: ...

    def get_run(self, run_id: str) -> Any | None: ...


def as_source(store: Any) -> RunSource:
    """``store`` if it is already a source, else an ``MlflowClient`` wrapped in one."""
    return store if isinstance(store, ClientSource | SqliteSource) else ClientSource(store)


class ClientSource:
    """Runs through MLflow's client (every store type, every tracking server)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def experiment_id(self, name: str) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        return None if exp is None else str(exp.experiment_id)

    def experiment_names(self) -> list[str]:
        return sorted(e.name for e in self.client.search_experiments())

    def runs(self, experiment_id: str, tags: Mapping[str, str], sha_prefix: str = "",
             finished: bool = True) -> list[Any]:
        query = tag_filter(tags, sha_prefix, finished)
        out: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                [experiment_id], filter_string=query, max_results=1000,
                order_by=["attributes.start_time DESC"], page_token=token)
            out.extend(from_mlflow(r) for r in page)
            token = page.token
            if not token:
                return out

    def get_run(self, run_id: str) -> Any | None:
        try:
            return from_mlflow(self.client.get_run(run_id))
        except Exception:  # MLflow raises several types for a missing or malformed id
            return None


def tag_filter(tags: Mapping[str, str], sha_prefix: str = "", finished: bool = True) -> str:
    """MLflow's search filter for runs with these tag values (already checked to be safe to
    quote by ``bench.report.runs``) and a ``bench.split_sha256`` prefix."""
    parts = ["attributes.status = 'FINISHED'"] if finished else []
    parts += [f"tags.\"{k}\" = '{v}'" for k, v in tags.items()]
    if sha_prefix:
        parts.append(f"tags.\"bench.split_sha256\" LIKE '{sha_prefix}%'")
    return " and ".join(parts)


def from_mlflow(r: Any) -> Any:
    from bench.report.runs import Run

    return Run(
        run_id=r.info.run_id,
        run_name=r.info.run_name or r.data.tags.get("mlflow.runName", ""),
        start_time=int(r.info.start_time or 0),
        tags=dict(r.data.tags),
        metrics={k: float(v) for k, v in r.data.metrics.items()},
        experiment_id=r.info.experiment_id,
        artifact_uri=r.info.artifact_uri or "",
        params={str(k): str(v) for k, v in (r.data.params or {}).items()},
    )


class SqliteSource:
    """Read-only SQL over a local MLflow SQLite store (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def open(cls, path: Path) -> SqliteSource | None:
        """A source for ``path``, or None when its schema lacks a column this reader needs."""
        source = cls(path)
        try:
            with closing(source._connect()) as con:
                for table, wanted in COLUMNS.items():
                    have = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
                    if not wanted <= have:
                        return None
        except sqlite3.DatabaseError:
            return None
        return source

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)

    def experiment_id(self, name: str) -> str | None:
        with closing(self._connect()) as con:
            row = con.execute("SELECT experiment_id FROM experiments WHERE name = ?",
                              (name,)).fetchone()
        return None if row is None else str(row[0])

    def experiment_names(self) -> list[str]:
        with closing(self._connect()) as con:
            return sorted(r[0] for r in con.execute(
                "SELECT name FROM experiments WHERE lifecycle_stage = 'active'"))

    def runs(self, experiment_id: str, tags: Mapping[str, str], sha_prefix: str = "",
             finished: bool = True) -> list[Any]:
        where = ["r.experiment_id = ?", "r.lifecycle_stage = 'active'"]
        args: list[Any] = [int(experiment_id)]
        if finished:
            where.append("r.status = 'FINISHED'")
        for key, value in tags.items():
            where.append("r.run_uuid IN (SELECT run_uuid FROM tags WHERE key = ? AND value = ?)")
            args += [key, value]
        if sha_prefix:
            where.append("r.run_uuid IN (SELECT run_uuid FROM tags WHERE key = "
                         "'bench.split_sha256' AND substr(value, 1, ?) = ?)")
            args += [len(sha_prefix), sha_prefix]
        return self._select(" AND ".join(where), args)

    def get_run(self, run_id: str) -> Any | None:
        found = self._select("r.run_uuid = ?", [run_id])
        return found[0] if found else None

    def _select(self, where: str, args: list[Any]) -> list[Any]:
        selected = f"SELECT r.run_uuid FROM runs r WHERE {where}"
        with closing(self._connect()) as con:
            heads = con.execute(
                "SELECT r.run_uuid, r.name, r.start_time, r.experiment_id, r.artifact_uri "
                f"FROM runs r WHERE {where} ORDER BY r.start_time DESC, r.run_uuid",
                args).fetchall()
            if not heads:
                return []
            tags_of = _pairs(con, "tags", selected, args)
            params_of = _pairs(con, "params", selected, args)
            metrics_of = _metrics(con, selected, args)
        return [_run(h, tags_of, params_of, metrics_of) for h in heads]


def _pairs(con: sqlite3.Connection, table: str, selected: str,
           args: list[Any]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = defaultdict(dict)
    rows = con.execute(f"SELECT t.run_uuid, t.key, t.value FROM {table} t "
                       f"WHERE t.run_uuid IN ({selected})", args)
    for run_uuid, key, value in rows:
        out[run_uuid][key] = "" if value is None else str(value)
    return out


def _metrics(con: sqlite3.Connection, selected: str,
             args: list[Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(dict)
    rows = con.execute("SELECT m.run_uuid, m.key, m.value, m.is_nan FROM latest_metrics m "
                       f"WHERE m.run_uuid IN ({selected})", args)
    for run_uuid, key, value, is_nan in rows:
        out[run_uuid][key] = math.nan if is_nan else float(value)
    return out


def _run(head: tuple, tags_of: dict, params_of: dict, metrics_of: dict) -> Any:
    from bench.report.runs import Run

    run_uuid, name, start_time, experiment_id, artifact_uri = head
    tags = dict(tags_of.get(run_uuid, {}))
    return Run(
        run_id=run_uuid,
        run_name=name or tags.get("mlflow.runName", ""),
        start_time=int(start_time or 0),
        tags=tags,
        metrics=dict(metrics_of.get(run_uuid, {})),
        experiment_id=str(experiment_id),
        artifact_uri=artifact_uri or "",
        params=dict(params_of.get(run_uuid, {})),
    )
