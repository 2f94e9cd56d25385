"""Hydra callbacks: launcher-side set-up of a sweep (store, experiment, parent run, reaper)
and its summary (parent status, leaderboard, report) at the end. The summary covers this
sweep's runs only (``--sweep <parent run id>``: its children and the runs its jobs reused)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from bench import tracking
from bench.errors import BenchError


def _section(config: DictConfig, key: str, resolve: bool = True) -> dict[str, Any]:
    node = config.get(key)
    out = OmegaConf.to_container(node, resolve=resolve) if node is not None else {}
    return {str(k): v for k, v in out.items()} if isinstance(out, dict) else {}


def _store(config: DictConfig) -> tracking.Store | None:
    return tracking.store_for(_section(config, "tracking"), Path(os.getcwd()))


_ACTIVE: list[BenchCallback] = []  # the sweep this process launched, until it ends
#: set at the end of a sweep this process launched: True when a job failed (``bench run`` then
#: exits 1 after the summary)
SWEEP_FAILED: list[bool] = []


def close_interrupted_sweep(status: str = "FAILED") -> None:
    """Finish the parent run of a sweep whose end callback never ran: the sweep did not
    complete (a signal, or Hydra skipped ``on_multirun_end`` after a job raised), so the parent
    ends ``status`` (KILLED for a signal, FAILED otherwise) even if every child it has
    FINISHED."""
    while _ACTIVE:
        cb = _ACTIVE.pop()
        cb.restore_signals()
        if cb.store is not None and cb.parent_id is not None:
            import contextlib

            with contextlib.suppress(Exception):
                tracking.end_parent(cb.store, cb.parent_id, interrupted=status)
        os.environ.pop(tracking.PARENT_ENV, None)


def _sigint(signum: int, frame: Any) -> None:
    """SIGINT or SIGTERM in the launcher: deferred to the next safe point (a job's start, a
    stage boundary), where it exits 130/143 through KeyboardInterrupt/SystemExit so that the
    sweep's parent is closed KILLED on the way out; never raised inside Hydra's or OmegaConf's
    code (which turned it into an unrelated error and exit 1)."""
    tracking.defer_signal(signum, frame)


class BenchCallback(Callback):
    """Creates the DB, the experiment and the sweep's parent run once, before any job starts
    (jobs in other processes inherit the parent id through the environment)."""

    def __init__(self) -> None:
        self.parent_id: str | None = None
        self.store: tracking.Store | None = None
        self._prev_sigterm: Any = None
        self._prev_sigint: Any = None

    def restore_signals(self) -> None:
        import signal
        import threading

        if self._prev_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._prev_sigterm)
        if self._prev_sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._prev_sigint)
        self._prev_sigterm = self._prev_sigint = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from bench.console import say

        try:
            self.store = _store(config)
        except BenchError as e:
            say(f"error: {e}")
            raise
        if self.store is None:
            return
        reaped = self.store.reap_stale()
        if reaped:
            say(f"marked {len(reaped)} stale RUNNING run(s) KILLED: {', '.join(reaped)}")
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._prev_sigterm = signal.signal(signal.SIGTERM, _sigint)
            self._prev_sigint = signal.signal(signal.SIGINT, _sigint)
        _ACTIVE.append(self)  # from here on, however the sweep ends, its parent is closed
        sweep_id = uuid.uuid4().hex[:12]
        self.parent_id = tracking.start_parent(
            self.store, sweep_id, {"bench.dataset": str(config.dataset.name)}
        )
        os.environ[tracking.PARENT_ENV] = self.parent_id
        os.environ[tracking.SWEEP_ENV] = sweep_id

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from bench.console import say

        if self.store is None or self.parent_id is None:
            return
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        self.restore_signals()
        counts = tracking.end_parent(self.store, self.parent_id)
        SWEEP_FAILED.append(any(k != "FINISHED" for k in counts))
        runs = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        say(f"sweep {os.environ.get(tracking.SWEEP_ENV)} (parent run {self.parent_id}): "
            f"{runs or 'no new runs'}; `bench leaderboard --sweep "
            f"{os.environ.get(tracking.SWEEP_ENV)}` shows it again")
        os.environ.pop(tracking.PARENT_ENV, None)
        self._leaderboard(config)

    def _leaderboard(self, config: DictConfig) -> None:
        """One leaderboard (and report, with ``report.out``) per dataset, split and evaluation
        protocol the sweep ran (``-m dataset=a,b``, ``-m eval.users=warm,cold``): never
        mixed in one table."""
        from hydra.core.hydra_config import HydraConfig

        from bench.console import say
        from bench.report import runs as report_runs

        if self.store is None or self.parent_id is None:
            return
        try:
            if not HydraConfig.initialized() and "hydra" in config:
                # after the last job: ${hydra:...} (as in ${paths.root}) resolves again
                HydraConfig.instance().set_config(config)
            rep = _section(config, "report")
            found = report_runs.find_runs(
                report_runs.source(self.store.uri), self.store.experiment_name, sweep=self.parent_id
            )
            combos = sorted({(r.dataset, r.split, *report_runs.protocol_of(r)) for r in found})
            if not combos:
                say("summary: the sweep has no FINISHED run to rank")
                return
            varies = [len({c[i] for c in combos}) > 1 for i in range(len(combos[0]))]
            for combo in combos:
                if rep.get("leaderboard_on_end", True):
                    _show(found, combo, str(rep.get("leaderboard_metric", "ndcg_at_10")),
                          self.store.uri)
                if rep.get("out"):
                    _report(self.store, self.parent_id, combo, rep, varies)
        except Exception as e:  # noqa: BLE001 - the sweep itself succeeded; say why the summary failed
            say(f"summary failed: {e}")


def _report(store: tracking.Store, parent_id: str, combo: tuple[str, ...], rep: dict[str, Any],
            varies: list[bool]) -> None:
    """``bench report`` of one combo into ``report.out`` (a sub-folder
    ``dataset_split[_<protocol values that vary>]`` when the sweep ran several). Through its
    command line: the report's provenance records it as the command that rebuilds the report."""
    from bench.report.build import report_main
    from bench.report.runs import PROTOCOL_CHOICES

    dataset, split, *proto = combo
    argv = ["--tracking-uri", store.uri, "--experiment", store.experiment_name,
            "--sweep", parent_id, "--dataset", dataset, "--split", split]
    for (_, _, option), value in zip(PROTOCOL_CHOICES, proto, strict=True):
        argv += [option, value] if value else []
    out = Path(str(rep["out"])).resolve()
    if any(varies):
        parts = [dataset, split] + [
            v.replace("+", "-") for v, x in zip(proto, varies[2:], strict=True) if x
        ]
        out = out / "_".join(parts)
    spec = ["--spec", str(rep["spec"])] if rep.get("spec") else []
    report_main([*argv, *spec, "--out", str(out), "--force"])


def _show(found: list[Any], combo: tuple[str, ...], metric: str, uri: str) -> None:
    """The leaderboard of the sweep's runs of one dataset, split and protocol (a protocol tag
    the runs do not record is not filtered on, as ``bench leaderboard`` without its option)."""
    from bench.report import runs as report_runs
    from bench.report.leaderboard import show

    dataset, split, *proto = combo
    tags = [tag for tag, _, _ in report_runs.PROTOCOL_CHOICES]
    runs = [r for r in found if (r.dataset, r.split) == (dataset, split)
            and all(not v or r.tag(t) == v for t, v in zip(tags, proto, strict=True))]
    try:
        show(report_runs.select(runs, dataset, split), metric, uri=uri)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
