"""Efficiency measurement for every run: request latency, throughput, memory, stage timings.

What each number means and how it is measured is documented in ``docs/latency.md``; in short:

- ``measure(request_fn, users, cfg, device)`` times ``request_fn`` on ONE user per request after
  a warm-up, and ``batch_size`` users per call for throughput. ``request_fn`` performs the whole
  per-request path (score + rank). On CPU the clock is ``time.perf_counter_ns`` around the call;
  on CUDA the device is synchronized before the clock starts and again before it stops, so
  asynchronous kernels (and a returned CUDA tensor still being computed) are counted; CUDA events
  additionally give the device-side time of the request (``latency_device_p50_ms``).
- Percentiles are **nearest-rank** (the smallest observed value with at least q % of the samples
  at or below it; numpy ``method="inverted_cdf"``), so every reported percentile is an observed
  latency and ``p50 <= p95 <= p99`` holds by construction.
- ``PeakMemory(device)``: on CUDA ``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats`` (tensor memory of that device, within the block); on CPU the
  process high-water RSS (``ru_maxrss``: a process-LIFETIME maximum, not the block's), plus
  ``rss_delta_mb``, the RSS growth observed inside the block by a sampling thread.
- ``Timer``: ``with timer.stage("llm_scoring"): ...`` accumulates per-stage milliseconds for the
  ``latency_ms/<stage>`` keys and ``fit_seconds``.

This module imports no torch: torch is imported only when a CUDA device is asked for.
"""

from __future__ import annotations

import math
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any, cast

import numpy as np

from bench.errors import ConfigError, did_you_mean

__all__ = [
    "LatencyConfig",
    "PeakMemory",
    "StageMemory",
    "StageMeter",
    "Timer",
    "count_parameters",
    "measure",
    "percentiles",
    "tokens_per_s",
]

MODES = ("default", "sweep", "disabled")
MIB = 1024 * 1024
#: in sweep mode each batch size is timed over at least this many calls (for its p50)
MIN_SWEEP_CALLS = 5
_STAGE_NAME = re.compile(r"^[\w.\-/]+$")


# --------------------------------------------------------------------------------------------
# config


@dataclass(frozen=True)
class LatencyConfig:
    """The ``latency`` config group (``conf/latency/*.yaml``).

    ``mode``: ``default`` (latency + throughput), ``sweep`` (also one throughput and p50 per
    batch size in ``sweep_batch_sizes``) or ``disabled`` (nothing measured, ``measure`` -> {}).
    ``n_requests`` single-user requests are timed after ``warmup`` untimed ones; ``batch_size``
    users per call for throughput; ``seed`` picks the sampled users. ``fresh_process`` is read by
    the runner (each job in a fresh interpreter), not by ``measure``.
    """

    mode: str = "default"
    n_requests: int = 200
    warmup: int = 20
    batch_size: int = 256
    sweep_batch_sizes: tuple[int, ...] = (1, 8, 64, 256)
    seed: int = 0
    fresh_process: bool = False
    #: requests timed for a model that calls a remote (possibly paid) API: ``auto`` sizes the
    #: pass to the evaluation (see ``for_remote``), an integer sets it
    remote_requests: int | str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(
                f"latency.mode must be one of {', '.join(MODES)}, got {self.mode!r}"
                f"{did_you_mean(str(self.mode), MODES)}"
            )
        for name, low in (("n_requests", 1), ("warmup", 0), ("batch_size", 1), ("seed", 0)):
            _check_int(f"latency.{name}", getattr(self, name), low)
        sizes = self.sweep_batch_sizes
        if isinstance(sizes, int | str) or not isinstance(sizes, Iterable):
            raise ConfigError(f"latency.sweep_batch_sizes must be a list of ints, got {sizes!r}")
        sizes = tuple(sizes)
        for b in sizes:
            _check_int("latency.sweep_batch_sizes[]", b, 1)
        if self.mode == "sweep" and not sizes:
            raise ConfigError("latency.sweep_batch_sizes must not be empty in mode 'sweep'")
        object.__setattr__(self, "sweep_batch_sizes", tuple(sorted(set(sizes))))
        if not isinstance(self.fresh_process, bool):
            raise ConfigError(
                f"latency.fresh_process must be true or false, got {self.fresh_process!r}"
            )
        if self.remote_requests != "auto":
            _check_int("latency.remote_requests (or auto)", self.remote_requests, 1)

    def planned_users(self) -> int:
        """How many users ``measure`` scores with this config (warm-up included): for a model
        whose every user is a backend call, the extra calls the latency pass makes."""
        if self.mode == "disabled":
            return 0
        n = self.warmup + self.n_requests
        n += (self.batch_size if self.warmup > 0 else 0) + max(self.n_requests, self.batch_size)
        if self.mode == "sweep":
            for b in self.sweep_batch_sizes:
                calls = max(-(-self.n_requests // b), MIN_SWEEP_CALLS)
                n += (b if self.warmup > 0 else 0) + max(self.n_requests, b * calls)
        return n

    def for_remote(self, n_evaluated: int) -> LatencyConfig:
        """The bounded pass for a model that calls a remote API (each timed user is a paid
        request): ``remote_requests`` timed requests (``auto``: a tenth of the evaluated users,
        at least 5 and at most ``n_requests``), 2 warm-up requests at most, throughput over
        batches no larger than that, and no batch-size sweep."""
        if self.mode == "disabled":
            return self
        if self.remote_requests == "auto":
            n = min(self.n_requests, max(5, -(-n_evaluated // 10)))
        else:
            n = int(self.remote_requests)
        return replace(
            self, mode="default", n_requests=n, warmup=min(self.warmup, 2),
            batch_size=min(self.batch_size, n),
        )  # fmt: skip

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> LatencyConfig:
        """Build from a config mapping, with a one-line error naming an unknown key."""
        known = {f.name for f in fields(cls)}
        values = dict(values or {})
        for key in values:
            if key not in known:
                raise ConfigError(
                    f"unknown key 'latency.{key}'{did_you_mean(key, known)}; "
                    f"valid: {', '.join(sorted(known))}"
                )
        return cls(**values)


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


# --------------------------------------------------------------------------------------------
# clocks: how one call is timed on a device


class CpuClock:
    """Wall clock around the call: ``time.perf_counter_ns`` (monotonic, ns resolution)."""

    device = "cpu"

    def sync(self) -> None:
        """Nothing to wait for on CPU."""

    def time_call(self, fn: Callable[[Any], object], arg: Any) -> int:
        """Nanoseconds taken by ``fn(arg)``."""
        t0 = time.perf_counter_ns()
        out = fn(arg)
        t1 = time.perf_counter_ns()
        del out
        return t1 - t0

    def device_times_ms(self) -> list[float]:
        return []


class CudaClock:
    """Synchronized wall clock on a CUDA device, plus CUDA-event device time.

    Per call: synchronize the device (earlier work is not billed to this request), record a
    start event on the device's current stream, start the host clock, call, record the end
    event, synchronize again (waits for every kernel the call launched, on every stream of the
    device, including a returned tensor still being computed), stop the host clock. The host
    time is the reported latency; ``device_times_ms()`` holds the event times (GPU time on the
    current stream between the two events).

    ``backend`` defaults to ``torch.cuda``; tests pass a fake with the same calls
    (``synchronize(device)``, ``current_stream(device)``, ``Event(enable_timing=True)``).
    """

    def __init__(self, device: str = "cuda", backend: Any = None) -> None:
        if backend is None:
            import torch

            backend = torch.cuda
        self.device = device
        self._cuda = backend
        self._device_ms: list[float] = []

    def sync(self) -> None:
        self._cuda.synchronize(self.device)

    def time_call(self, fn: Callable[[Any], object], arg: Any) -> int:
        cuda = self._cuda
        start = cuda.Event(enable_timing=True)
        end = cuda.Event(enable_timing=True)
        stream = cuda.current_stream(self.device)
        cuda.synchronize(self.device)
        start.record(stream)
        t0 = time.perf_counter_ns()
        out = fn(arg)
        end.record(stream)
        cuda.synchronize(self.device)
        t1 = time.perf_counter_ns()
        del out
        self._device_ms.append(float(start.elapsed_time(end)))
        return t1 - t0

    def device_times_ms(self) -> list[float]:
        return list(self._device_ms)


def make_clock(device: str) -> CpuClock | CudaClock:
    """The clock for a resolved device string (``cpu``, ``cuda``, ``cuda:<n>``)."""
    if device == "cpu":
        return CpuClock()
    if device.startswith("cuda"):
        return CudaClock(device)
    raise ConfigError(f"cannot time on device {device!r}; use cpu, cuda or cuda:<n>")


# --------------------------------------------------------------------------------------------
# statistics


def percentiles(samples_ms: Iterable[float], qs: Iterable[float] = (50, 95, 99)) -> list[float]:
    """Nearest-rank percentiles: for q, the ceil(q/100 * n)-th smallest sample (1-based).

    Equivalent to ``numpy.percentile(x, q, method="inverted_cdf")``. Every value is an observed
    sample and the result is non-decreasing in q.
    """
    x = np.sort(np.asarray(list(samples_ms), dtype=np.float64))
    if x.size == 0:
        raise ValueError("percentiles of an empty sample")
    out = []
    for q in qs:
        if not 0 <= q <= 100:
            raise ValueError(f"percentile must be in [0, 100], got {q}")
        rank = max(1, math.ceil(q / 100.0 * x.size - 1e-9))
        out.append(float(x[min(rank, x.size) - 1]))
    return out


def sample_users(users: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` users: without replacement when there are enough, else whole permutations repeated
    (every user appears ceil(n/len) or floor(n/len) times)."""
    users = np.asarray(users)
    if users.ndim != 1 or users.size == 0:
        raise ValueError(f"users must be a non-empty 1-d array, got shape {users.shape}")
    if n <= users.size:
        return rng.choice(users, size=n, replace=False)
    reps = -(-n // users.size)
    return np.concatenate([rng.permutation(users) for _ in range(reps)])[:n]


def _time_requests(clock: Any, fn: Callable, batches: list[np.ndarray]) -> np.ndarray:
    """Nanoseconds of each call, in order."""
    out = np.empty(len(batches), dtype=np.int64)
    time_call = clock.time_call
    for i, b in enumerate(batches):
        out[i] = time_call(fn, b)
    return out


def _chunks(users: np.ndarray, size: int) -> list[np.ndarray]:
    return [users[i : i + size] for i in range(0, len(users), size)]


def _noop(batch: np.ndarray) -> None:
    return None


# --------------------------------------------------------------------------------------------
# the harness


def measure(
    request_fn: Callable[[np.ndarray], object],
    users: np.ndarray,
    cfg: LatencyConfig,
    device: str = "cpu",
    *,
    clock: Any = None,
    between: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Latency percentiles and throughput of ``request_fn`` (see the module docstring).

    ``request_fn(batch)`` gets an int64 array of user indices and must do the whole request
    (score + rank). Returns (all floats, MLflow-safe keys): ``latency_p50_ms``,
    ``latency_p95_ms``, ``latency_p99_ms``, ``latency_mean_ms`` (one user per request),
    ``throughput_users_per_s`` (``batch_size`` users per call), ``latency_overhead_ms`` (the
    same loop timing a no-op request: the harness's own cost per request), on CUDA also
    ``latency_device_p50_ms``; in ``sweep`` mode ``throughput_users_per_s/bs_<b>`` and
    ``latency_p50_ms/bs_<b>`` (p50 of one call of b users). ``disabled`` returns {}.
    ``clock`` replaces the device's clock (tests, other accelerators). ``between()`` is called
    before every request, outside its timing: the run raises a deferred signal there, so a
    SIGTERM stops a long measurement after the request in progress.
    """
    if cfg.mode == "disabled":
        return {}
    clock = clock if clock is not None else make_clock(device)
    if between is not None:
        clock = _Between(clock, between)
    rng = np.random.default_rng(cfg.seed)
    sample = sample_users(np.asarray(users, dtype=np.int64), cfg.n_requests, rng)
    singles = [sample[i : i + 1] for i in range(sample.size)]
    warm = [singles[i % len(singles)] for i in range(cfg.warmup)]
    _time_requests(clock, request_fn, warm)
    ns = _time_requests(clock, request_fn, singles)
    out = _latency_stats(ns / 1e6)
    device_ms = clock.device_times_ms()[len(warm) :]
    if device_ms:
        out["latency_device_p50_ms"] = percentiles(device_ms, (50,))[0]
    out["throughput_users_per_s"] = _throughput(clock, request_fn, users, cfg.batch_size, 1, cfg)
    _time_requests(clock, _noop, warm)
    out["latency_overhead_ms"] = percentiles(_time_requests(clock, _noop, singles) / 1e6, (50,))[0]
    if cfg.mode == "sweep":
        for b in cfg.sweep_batch_sizes:
            calls = max(-(-cfg.n_requests // b), MIN_SWEEP_CALLS)
            tput, p50 = _sweep_point(clock, request_fn, users, b, calls, cfg)
            out[f"throughput_users_per_s/bs_{b}"] = tput
            out[f"latency_p50_ms/bs_{b}"] = p50
    return out


class _Between:
    """A clock that calls ``between()`` before each timed call, outside the timing."""

    def __init__(self, clock: Any, between: Callable[[], object]) -> None:
        self._clock = clock
        self._between = between

    def time_call(self, fn: Callable[[Any], object], arg: Any) -> int:
        self._between()
        return int(self._clock.time_call(fn, arg))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._clock, name)


def _latency_stats(ms: np.ndarray) -> dict[str, float]:
    p50, p95, p99 = percentiles(ms, (50, 95, 99))
    return {
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
        "latency_p99_ms": p99,
        "latency_mean_ms": float(np.mean(ms)),
    }


def _batched_ns(
    clock: Any, fn: Callable, users: np.ndarray, batch_size: int, min_calls: int, cfg: LatencyConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Per-call ns over max(n_requests, batch_size * min_calls) sampled users, in batches of
    ``batch_size`` (last one may be shorter), after one untimed warm-up batch if warmup > 0."""
    rng = np.random.default_rng([cfg.seed, batch_size])
    n = max(cfg.n_requests, batch_size * min_calls)
    pool = sample_users(np.asarray(users, dtype=np.int64), n, rng)
    batches = _chunks(pool, batch_size)
    if cfg.warmup > 0:
        _time_requests(clock, fn, batches[:1])
    return _time_requests(clock, fn, batches), np.array([len(b) for b in batches])


def _throughput(clock, fn, users, batch_size: int, min_calls: int, cfg) -> float:
    ns, sizes = _batched_ns(clock, fn, users, batch_size, min_calls, cfg)
    return float(sizes.sum() / (ns.sum() / 1e9)) if ns.sum() > 0 else float("inf")


def _sweep_point(clock, fn, users, b: int, calls: int, cfg) -> tuple[float, float]:
    ns, sizes = _batched_ns(clock, fn, users, b, calls, cfg)
    full = ns[sizes == b] if np.any(sizes == b) else ns
    tput = float(sizes.sum() / (ns.sum() / 1e9)) if ns.sum() > 0 else float("inf")
    return tput, percentiles(full / 1e6, (50,))[0]


# --------------------------------------------------------------------------------------------
# memory


class PeakMemory:
    """Peak memory of a block; ``with PeakMemory(device) as mem: ...; mem.metrics()``.

    After the block:

    - ``peak_mb``: on CUDA, ``torch.cuda.max_memory_allocated(device)`` after
      ``reset_peak_memory_stats(device)`` at entry: the most memory held by tensors on that
      device during the block (the caching allocator's reserve is ``reserved_peak_mb``). On
      CPU, the process high-water resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``),
      a maximum over the process's WHOLE LIFETIME so far, not only the block (it cannot be
      reset without changing process-global state), so earlier work in the same process can
      dominate it; see ``docs/latency.md`` and ``latency.fresh_process``.
    - ``rss_delta_mb``: the largest host RSS seen during the block minus the RSS at entry
      (psutil; sampled every ``interval_s`` by a daemon thread, and at entry/exit), so short
      spikes between samples can be missed; ``rss_peak_mb`` is that largest RSS.

    MB here means MiB (2**20 bytes).
    """

    def __init__(self, device: str = "cpu", interval_s: float = 0.01) -> None:
        self.device = device
        self.interval_s = interval_s
        self.peak_mb = float("nan")
        self.reserved_peak_mb = float("nan")
        self.rss_delta_mb = float("nan")
        self.rss_peak_mb = float("nan")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rss0 = 0
        self._rss_max = 0
        self._proc: Any = None

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._start_rss_sampling()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_rss_sampling()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / MIB
            self.reserved_peak_mb = torch.cuda.max_memory_reserved(self.device) / MIB
        else:
            self.peak_mb = max_rss_mb()

    def metrics(self) -> dict[str, float]:
        """``peak_memory_mb``, ``rss_delta_mb`` (+ ``peak_memory_reserved_mb`` on CUDA)."""
        out = {"peak_memory_mb": self.peak_mb, "rss_delta_mb": self.rss_delta_mb}
        if self.device.startswith("cuda"):
            out["peak_memory_reserved_mb"] = self.reserved_peak_mb
        return out

    def _rss(self) -> int:
        return int(self._proc.memory_info().rss) if self._proc is not None else 0

    def _start_rss_sampling(self) -> None:
        try:
            import psutil

            self._proc = psutil.Process()
        except ImportError:  # pragma: no cover - psutil is a dependency
            self._proc = None
            return
        self._rss0 = self._rss_max = self._rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._rss_max = max(self._rss_max, self._rss())

    def _stop_rss_sampling(self) -> None:
        if self._proc is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._rss_max = max(self._rss_max, self._rss())
        self.rss_delta_mb = (self._rss_max - self._rss0) / MIB
        self.rss_peak_mb = self._rss_max / MIB


class StageMemory:
    """Peak host RSS (MiB) per named stage, sampled by a daemon thread while the stage runs.

    >>> mem = StageMemory()
    >>> with mem.stage("fit"):
    ...     pass
    >>> sorted(mem.metrics())
    ['stage_peak_rss_mb/fit']

    Unlike ``ru_maxrss`` each stage gets its own peak (sampled every ``interval_s`` and at the
    stage's entry and exit, so spikes shorter than the interval can be missed). Stages do not
    nest; a repeated stage keeps its largest peak. No thread outlives its stage.
    """

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.peaks_mb: dict[str, float] = {}
        self._proc: Any = None

    def _note(self, name: str) -> None:
        if self._proc is None:
            import psutil

            self._proc = psutil.Process()
        rss = float(self._proc.memory_info().rss) / MIB
        self.peaks_mb[name] = max(self.peaks_mb.get(name, 0.0), rss)

    @contextmanager
    def stage(self, name: str) -> Iterator[StageMemory]:
        if not isinstance(name, str) or not _STAGE_NAME.match(name):
            raise ValueError(f"stage name must match {_STAGE_NAME.pattern}, got {name!r}")
        self._note(name)
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(self.interval_s):
                self._note(name)

        thread = threading.Thread(target=sample, name="bench-stage-rss", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            self._note(name)

    def metrics(self) -> dict[str, float]:
        """``stage_peak_rss_mb/<stage>`` for every stage entered."""
        return {f"stage_peak_rss_mb/{k}": v for k, v in self.peaks_mb.items()}


class StageMeter:
    """Wall seconds (a ``Timer``) and peak RSS (a ``StageMemory``) per stage of a run.

    ``with meter("fit"): ...``; ``metrics()`` gives ``stage_seconds/<stage>`` and
    ``stage_peak_rss_mb/<stage>``. ``report(name, seconds, peak_mb)``, if given, is called
    when a stage ends (the runner prints it as progress).
    """

    def __init__(
        self, device: str = "cpu", report: Callable[[str, float, float], None] | None = None
    ) -> None:
        self.timer = Timer(device)
        self.memory = StageMemory()
        self.report = report

    @contextmanager
    def __call__(self, name: str) -> Iterator[StageMeter]:
        with self.timer.stage(name), self.memory.stage(name):
            yield self
        if self.report is not None:
            self.report(name, self.timer.seconds(name), self.memory.peaks_mb[name])

    def metrics(self) -> dict[str, float]:
        out = {f"stage_seconds/{k}": self.timer.seconds(k) for k in self.timer.stages}
        out.update(self.memory.metrics())
        return out


def max_rss_mb() -> float:
    """The process's lifetime high-water RSS in MiB (``ru_maxrss``: KiB on Linux, bytes on
    macOS)."""
    import resource

    raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return raw / MIB if sys.platform == "darwin" else raw / 1024.0


# --------------------------------------------------------------------------------------------
# stage timer


class Timer:
    """Accumulates wall time per named stage; on CUDA each stage boundary synchronizes.

    >>> timer = Timer()
    >>> with timer.stage("fit"):
    ...     pass
    >>> fit_seconds = timer.seconds("fit")

    ``metrics(n_requests)`` gives ``latency_ms/<stage>`` = total ms of the stage divided by
    ``n_requests`` (mean per request), or by the number of times the stage was entered when
    ``n_requests`` is None. Stage names must be MLflow-safe (letters, digits, ``_ - . /``).
    Nested and repeated stages are fine: each name accumulates its own time.
    """

    def __init__(self, device: str = "cpu", clock: Any = None) -> None:
        self._clock = clock if clock is not None else make_clock(device)
        self._ns: dict[str, int] = {}
        self._count: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def stage(self, name: str) -> Iterator[Timer]:
        if not isinstance(name, str) or not _STAGE_NAME.match(name):
            raise ValueError(f"stage name must match {_STAGE_NAME.pattern}, got {name!r}")
        self._clock.sync()
        t0 = time.perf_counter_ns()
        try:
            yield self
        finally:
            self._clock.sync()
            elapsed = time.perf_counter_ns() - t0
            with self._lock:
                self._ns[name] = self._ns.get(name, 0) + elapsed
                self._count[name] = self._count.get(name, 0) + 1

    def add(self, name: str, seconds: float) -> None:
        """Account time measured elsewhere (e.g. reported by an LLM server) to a stage."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        with self._lock:
            self._ns[name] = self._ns.get(name, 0) + round(seconds * 1e9)
            self._count[name] = self._count.get(name, 0) + 1

    def seconds(self, name: str) -> float:
        """Total seconds spent in ``name`` (0.0 if never entered)."""
        return self._ns.get(name, 0) / 1e9

    def total_ms(self, name: str) -> float:
        return self._ns.get(name, 0) / 1e6

    def count(self, name: str) -> int:
        return self._count.get(name, 0)

    @property
    def stages(self) -> list[str]:
        return list(self._ns)

    def metrics(
        self, n_requests: int | None = None, prefix: str = "latency_ms/"
    ) -> dict[str, float]:
        """``{prefix + stage: mean ms}``: per request if ``n_requests`` is given, else per entry."""
        if n_requests is not None and n_requests < 1:
            raise ValueError(f"n_requests must be >= 1, got {n_requests}")
        return {
            f"{prefix}{name}": self._ns[name] / 1e6 / (n_requests or self._count[name])
            for name in self._ns
        }

    def reset(self) -> None:
        with self._lock:
            self._ns.clear()
            self._count.clear()


# --------------------------------------------------------------------------------------------
# small helpers


def tokens_per_s(n_tokens: float | Iterable[float], seconds: float | Iterable[float]) -> float:
    """Generation/processing speed: total tokens / total seconds (scalars or per-request lists).

    NaN when no time was measured (0 seconds); a negative count or time is a ValueError.
    """
    tok, sec = _total(n_tokens), _total(seconds)
    if tok < 0 or sec < 0 or math.isnan(tok) or math.isnan(sec):
        raise ValueError(f"token counts and seconds must be >= 0, got {tok} tokens, {sec} s")
    return tok / sec if sec > 0 else float("nan")


def _total(x: float | Iterable[float]) -> float:
    values = list(cast(Iterable[float], x)) if _iterable(x) else [cast(float, x)]
    return float(np.sum(np.asarray(values, dtype=np.float64)))


def _iterable(x: object) -> bool:
    return isinstance(x, Iterable) and not isinstance(x, str | bytes)


def count_parameters(obj: Any, trainable_only: bool = False) -> int:
    """Number of parameters held by ``obj``.

    torch ``nn.Module``: sum of ``numel`` over its parameters (shared ones once; only those
    with ``requires_grad`` if ``trainable_only``); a tensor: ``numel()``; a numpy array:
    ``size``; a scipy sparse matrix: ``nnz`` (stored entries); a model with ``n_parameters()``:
    that; a mapping/list/tuple: the sum over its values; ``None``: 0.
    """
    if obj is None:
        return 0
    if isinstance(obj, np.ndarray):
        return int(obj.size)
    if hasattr(obj, "nnz") and hasattr(obj, "tocsr"):
        return int(obj.nnz)
    if callable(getattr(obj, "parameters", None)) and hasattr(obj, "named_modules"):
        seen: dict[int, int] = {}
        for p in obj.parameters():
            if not trainable_only or p.requires_grad:
                seen[id(p)] = int(p.numel())
        return sum(seen.values())
    if callable(getattr(obj, "numel", None)):
        return int(obj.numel())
    if callable(getattr(obj, "n_parameters", None)):
        return int(obj.n_parameters())
    if isinstance(obj, Mapping):
        return sum(count_parameters(v, trainable_only) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(count_parameters(v, trainable_only) for v in obj)
    raise TypeError(f"cannot count parameters of {type(obj).__name__}")
