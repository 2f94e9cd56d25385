"""The latency harness against work of known duration (bench/latency.py, docs/latency.md).

Timing assertions compare the harness with the request's OWN measurement of how long it took
(perf_counter_ns inside the request): both see the same scheduler, so the comparison holds on a
loaded machine. Checks against the nominal duration only bound it from below plus a loose sanity
ceiling, since time.sleep overshoots by a load-dependent amount.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.errors import ConfigError
from bench.latency import (
    CpuClock,
    CudaClock,
    LatencyConfig,
    PeakMemory,
    StageMemory,
    StageMeter,
    Timer,
    count_parameters,
    make_clock,
    max_rss_mb,
    measure,
    percentiles,
    sample_users,
    tokens_per_s,
)

REPO = Path(__file__).resolve().parents[2]
MLFLOW_KEY = re.compile(r"^[/\w.\- ]*$")


class Recorder:
    """A request that sleeps a known time and records how long each call really took."""

    def __init__(self, ms_of_batch):
        self.ms_of_batch = ms_of_batch
        self.inner_ms: list[float] = []
        self.sizes: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter_ns()
        time.sleep(self.ms_of_batch(batch) / 1e3)
        self.inner_ms.append((time.perf_counter_ns() - t0) / 1e6)
        self.sizes.append(len(batch))
        return batch[::-1]


def nearest_rank(x, q):
    return float(np.percentile(np.asarray(x), q, method="inverted_cdf"))


# ------------------------------------------------------------------------------ percentiles


def test_percentiles_nearest_rank_hand_computed():
    x = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 6.0, 7.0, 8.0, 9.0]
    assert percentiles(x, (0, 10, 50, 51, 95, 99, 100)) == [1, 1, 5, 6, 10, 10, 10]
    assert percentiles([3.0], (50, 95, 99)) == [3.0, 3.0, 3.0]
    with pytest.raises(ValueError):
        percentiles([], (50,))
    with pytest.raises(ValueError):
        percentiles([1.0], (101,))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=300))
def test_percentiles_are_observed_ordered_and_equal_numpy_inverted_cdf(xs):
    p50, p95, p99 = percentiles(xs, (50, 95, 99))
    assert p50 <= p95 <= p99
    assert {p50, p95, p99} <= set(xs)
    for q, p in ((50, p50), (95, p95), (99, p99)):
        assert p == nearest_rank(xs, q)


def test_sample_users_without_replacement_when_possible_and_seeded():
    users = np.arange(1000, 1100)
    a = sample_users(users, 50, np.random.default_rng(3))
    assert len(set(a.tolist())) == 50 and set(a.tolist()) <= set(users.tolist())
    assert a.tolist() == sample_users(users, 50, np.random.default_rng(3)).tolist()
    b = sample_users(users[:7], 30, np.random.default_rng(0))
    counts = np.bincount(b - 1000)
    assert len(b) == 30 and counts.max() - counts[counts > 0].min() <= 1
    with pytest.raises(ValueError):
        sample_users(np.array([], dtype=np.int64), 5, np.random.default_rng(0))


# ------------------------------------------------------------------------------ timing


def test_p50_p95_p99_of_known_durations_within_5_percent():
    # users 0..99, request of user u sleeps 2 + u % 5 ms: 20 requests each of 2..6 ms,
    # so the nearest-rank p50 is the 4 ms group and p95/p99 the 6 ms one
    rec = Recorder(lambda b: 2.0 + float(b[0] % 5))
    cfg = LatencyConfig(n_requests=100, warmup=5, batch_size=100)
    out = measure(rec, np.arange(100), cfg)
    timed = rec.inner_ms[cfg.warmup : cfg.warmup + cfg.n_requests]
    assert rec.sizes[cfg.warmup : cfg.warmup + cfg.n_requests] == [1] * cfg.n_requests
    for q in (50, 95, 99):
        truth = nearest_rank(timed, q)
        assert abs(out[f"latency_p{q}_ms"] - truth) / truth < 0.05, (q, out, truth)
    assert out["latency_p50_ms"] <= out["latency_p95_ms"] <= out["latency_p99_ms"]
    assert abs(out["latency_mean_ms"] - np.mean(timed)) / np.mean(timed) < 0.05
    # never below the nominal durations (a busy machine only makes sleeps longer)
    assert out["latency_p50_ms"] >= 4.0 and out["latency_p95_ms"] >= 6.0


def test_sleep_5ms_request_reported_within_5_percent_at_p50():
    rec = Recorder(lambda b: 5.0)
    cfg = LatencyConfig(n_requests=60, warmup=3, batch_size=60)
    out = measure(rec, np.arange(500), cfg)
    truth = float(np.median(rec.inner_ms[3:63]))
    assert abs(out["latency_p50_ms"] - truth) / truth < 0.05
    assert out["latency_p50_ms"] >= 5.0


def test_throughput_matches_known_batch_durations():
    # 0.2 ms per user: a batch of 50 users takes 10 ms, i.e. 5000 users/s nominal
    rec = Recorder(lambda b: 0.2 * len(b))
    cfg = LatencyConfig(n_requests=200, warmup=2, batch_size=50)
    out = measure(rec, np.arange(1000), cfg)
    batches = rec.inner_ms[-4:]
    assert rec.sizes[-5:] == [50] * 5  # one warm-up batch, then 4 timed ones
    truth = 200 / (sum(batches) / 1e3)
    assert abs(out["throughput_users_per_s"] - truth) / truth < 0.05
    assert out["throughput_users_per_s"] <= 5000  # batches never take less than 10 ms


def test_harness_adds_under_5_percent_to_a_1ms_request():
    rec = Recorder(lambda b: 1.0)
    cfg = LatencyConfig(n_requests=200, warmup=10, batch_size=200)
    out = measure(rec, np.arange(300), cfg)
    inner_p50 = float(np.median(rec.inner_ms[10:210]))
    # the harness's own cost (no-op request through the same loop) and its effect on 1 ms
    assert out["latency_overhead_ms"] < 0.05
    assert out["latency_p50_ms"] - inner_p50 < 0.05 * 1.0


def test_between_runs_before_each_request_and_a_deferred_signal_stops_the_measurement():
    """The runner passes ``raise_pending``: a SIGTERM received during a 100,000-request pass
    stops it after the request in progress, not at the end of the stage."""
    order: list[str] = []

    def request(b):
        order.append("request")

    def between():
        order.append("between")
        if order.count("request") == 7:
            raise SystemExit(143)

    cfg = LatencyConfig(n_requests=100_000, warmup=2, batch_size=10)
    with pytest.raises(SystemExit):
        measure(request, np.arange(100), cfg, between=between)
    assert order.count("request") == 7
    assert order[:4] == ["between", "request", "between", "request"]
    n = []
    out = measure(request, np.arange(100), LatencyConfig(n_requests=20, warmup=2),
                  between=lambda: n.append(1))  # fmt: skip
    assert "latency_p50_ms" in out and "latency_overhead_ms" in out and len(n) > 40


def test_disabled_mode_returns_nothing_and_never_calls():
    calls = []
    assert measure(calls.append, np.arange(10), LatencyConfig(mode="disabled")) == {}
    assert calls == []


def test_sweep_keys_are_mlflow_safe_and_per_batch_size():
    rec = Recorder(lambda b: 0.0)
    cfg = LatencyConfig(
        mode="sweep", n_requests=20, warmup=2, batch_size=8, sweep_batch_sizes=(4, 1, 16)
    )
    out = measure(rec, np.arange(40), cfg)
    base = {
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "latency_mean_ms",
        "throughput_users_per_s",
        "latency_overhead_ms",
    }
    sweep = {
        f"{k}/bs_{b}" for b in (1, 4, 16) for k in ("throughput_users_per_s", "latency_p50_ms")
    }
    assert set(out) == base | sweep
    assert all(MLFLOW_KEY.match(k) for k in out)
    assert all(isinstance(v, float) and v > 0 for v in out.values())
    assert 16 in rec.sizes and 4 in rec.sizes


def test_default_mode_has_exactly_the_contract_keys():
    out = measure(lambda b: None, np.arange(5), LatencyConfig(n_requests=10, warmup=1))
    assert set(out) == {
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "latency_mean_ms",
        "throughput_users_per_s",
        "latency_overhead_ms",
    }


def test_same_seed_times_the_same_users():
    seen_a, seen_b = [], []
    cfg = LatencyConfig(n_requests=30, warmup=0, batch_size=30, seed=7)
    measure(lambda b: seen_a.append(b.tolist()), np.arange(100), cfg)
    measure(lambda b: seen_b.append(b.tolist()), np.arange(100), cfg)
    assert seen_a == seen_b


def test_cpu_measurement_does_not_import_torch():
    code = (
        "import sys, numpy as np\n"
        "import bench.latency as L, bench.environment as E\n"
        "assert 'torch' not in sys.modules\n"
        "L.measure(lambda b: b, np.arange(10), L.LatencyConfig(n_requests=5, warmup=1))\n"
        "with L.PeakMemory('cpu'):\n    pass\n"
        "with L.Timer().stage('x'):\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ------------------------------------------------------------------------------ CUDA branch


class FakeCuda:
    """A device whose kernels run asynchronously, in the shape of ``torch.cuda``.

    ``launch(s)`` enqueues ``s`` seconds of work and returns at once (like a kernel launch);
    ``synchronize`` blocks until the queue is drained; an event is stamped when the stream
    reaches it (after all work queued before it). Only the device is fake: the clock, its
    synchronization order and the harness are the real ones.
    """

    def __init__(self):
        self.busy_until = 0
        self.syncs = 0

    def launch(self, seconds: float) -> str:
        now = time.perf_counter_ns()
        self.busy_until = max(now, self.busy_until) + int(seconds * 1e9)
        return "tensor-being-computed"

    def synchronize(self, device=None) -> None:
        self.syncs += 1
        while (left := self.busy_until - time.perf_counter_ns()) > 0:
            time.sleep(left / 1e9)

    def current_stream(self, device=None):
        return self

    def Event(self, enable_timing: bool = False):  # noqa: N802 - torch.cuda's spelling
        return FakeEvent(self)


class FakeEvent:
    def __init__(self, cuda: FakeCuda):
        self.cuda, self.t = cuda, None

    def record(self, stream=None) -> None:
        self.t = max(time.perf_counter_ns(), self.cuda.busy_until)

    def elapsed_time(self, end: FakeEvent) -> float:
        return (end.t - self.t) / 1e6


def test_cuda_clock_counts_asynchronous_work_that_a_plain_clock_misses():
    fake = FakeCuda()
    cfg = LatencyConfig(n_requests=40, warmup=2, batch_size=40)
    request = lambda b: fake.launch(0.004)  # returns before the "kernel" finishes
    gpu = measure(request, np.arange(100), cfg, device="cuda", clock=CudaClock("cuda", fake))
    # the host clock waited for the queued work; the events measured it on the "device"
    assert gpu["latency_device_p50_ms"] >= 4.0
    assert gpu["latency_p50_ms"] >= gpu["latency_device_p50_ms"] - 0.05
    assert fake.syncs >= 2 * (cfg.warmup + cfg.n_requests)
    host = measure(request, np.arange(100), cfg, clock=CpuClock())
    fake.synchronize()
    assert host["latency_p50_ms"] < 1.0  # the unsynchronized clock sees only the launch


def test_cuda_clock_does_not_bill_earlier_queued_work_to_the_request():
    fake = FakeCuda()
    clock = CudaClock("cuda:0", fake)
    fake.launch(0.03)  # work queued before the request
    ns = clock.time_call(lambda b: fake.launch(0.002), np.arange(1))
    assert 2.0 <= ns / 1e6 < 2.0 + 20.0
    assert abs(clock.device_times_ms()[-1] - 2.0) < 0.1


def test_timer_stage_on_cuda_waits_for_queued_work():
    fake = FakeCuda()
    timer = Timer(clock=CudaClock("cuda", fake))
    with timer.stage("llm_scoring"):
        fake.launch(0.005)
    assert timer.total_ms("llm_scoring") >= 5.0


def test_make_clock_picks_the_device_clock():
    assert isinstance(make_clock("cpu"), CpuClock)
    with pytest.raises(ConfigError, match="cannot time on device 'mps'"):
        make_clock("mps")
    if importlib.util.find_spec("torch") is not None:
        import torch

        clock = make_clock("cuda:0")  # constructing needs no GPU; timing on it would
        assert isinstance(clock, CudaClock) and clock.device == "cuda:0"
        assert clock._cuda is torch.cuda


@pytest.mark.skipif(
    "torch" not in sys.modules and importlib.util.find_spec("torch") is None,
    reason="torch not installed",
)
def test_real_cuda_path():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x = torch.randn(2048, 2048, device="cuda")

    def request(b):
        return (x @ x).topk(10, dim=1).indices  # async: returns before the kernels finish

    cfg = LatencyConfig(
        mode="sweep", n_requests=50, warmup=5, batch_size=64, sweep_batch_sizes=(1, 8)
    )
    with PeakMemory("cuda") as mem:
        out = measure(request, np.arange(100), cfg, device="cuda")
        y = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")  # 64 MiB
        del y
    assert out["latency_p50_ms"] <= out["latency_p95_ms"] <= out["latency_p99_ms"]
    # synchronized host time covers the device time of the same requests
    assert out["latency_p50_ms"] >= 0.9 * out["latency_device_p50_ms"] > 0
    assert mem.peak_mb >= 64 and mem.metrics()["peak_memory_reserved_mb"] >= mem.peak_mb


# ------------------------------------------------------------------------------ memory


def test_peak_memory_on_cpu_grows_with_a_big_array():
    import psutil

    before = max_rss_mb()
    rss_now = psutil.Process().memory_info().rss / 2**20
    size_mb = max(256.0, before - rss_now + 128.0)  # enough to raise the lifetime maximum
    with PeakMemory("cpu") as mem:
        a = np.ones(int(size_mb * 2**20 / 8))  # written, so resident
        a[::4096] = 2.0
    del a
    assert mem.peak_mb > before
    assert mem.rss_delta_mb >= 0.9 * size_mb
    assert mem.rss_peak_mb >= mem.rss_delta_mb
    assert set(mem.metrics()) == {"peak_memory_mb", "rss_delta_mb"}


def test_peak_memory_small_block_reports_lifetime_peak_not_zero():
    with PeakMemory("cpu") as mem:
        pass
    assert mem.peak_mb >= mem.rss_peak_mb * 0.99 > 0  # ru_maxrss covers the whole process
    assert mem.rss_delta_mb < 64


# ------------------------------------------------------------------------------ stages, helpers


def test_timer_accumulates_stages_and_gives_mlflow_keys():
    timer = Timer()
    for _ in range(3):
        with timer.stage("retrieval"):
            time.sleep(0.002)
    with timer.stage("llm_scoring"), timer.stage("llm_scoring/parse"):
        time.sleep(0.004)
    assert timer.count("retrieval") == 3 and timer.total_ms("retrieval") >= 6.0
    assert timer.seconds("llm_scoring") >= 0.004 and timer.seconds("never") == 0.0
    per_entry = timer.metrics()
    assert set(per_entry) == {
        "latency_ms/retrieval",
        "latency_ms/llm_scoring",
        "latency_ms/llm_scoring/parse",
    }
    assert per_entry["latency_ms/retrieval"] >= 2.0
    per_request = timer.metrics(n_requests=6)
    assert per_request["latency_ms/retrieval"] == pytest.approx(timer.total_ms("retrieval") / 6)
    timer.add("server", 0.5)
    assert timer.total_ms("server") == pytest.approx(500.0)
    with pytest.raises(ValueError), timer.stage("bad@name"):
        pass
    timer.reset()
    assert timer.metrics() == {}


def test_timer_records_time_even_when_the_stage_raises():
    timer = Timer()
    with pytest.raises(RuntimeError), timer.stage("fit"):
        time.sleep(0.001)
        raise RuntimeError("boom")
    assert timer.count("fit") == 1 and timer.seconds("fit") >= 0.001


def test_tokens_per_s():
    assert tokens_per_s(100, 2.0) == 50.0
    assert tokens_per_s([10, 30], [0.5, 1.5]) == 20.0
    assert np.isnan(tokens_per_s(5, 0.0))
    with pytest.raises(ValueError):
        tokens_per_s(-1, 1.0)
    with pytest.raises(ValueError):
        tokens_per_s(1, -1.0)


def test_count_parameters():
    import scipy.sparse as sp

    assert count_parameters(np.zeros((3, 4))) == 12
    assert count_parameters({"u": np.zeros(5), "v": [np.zeros(2), np.zeros(3)]}) == 10
    assert count_parameters(sp.csr_matrix(np.eye(4))) == 4
    assert count_parameters(None) == 0
    with pytest.raises(TypeError):
        count_parameters("weights")


def test_count_parameters_torch_module_counts_shared_weights_once():
    torch = pytest.importorskip("torch")
    lin = torch.nn.Linear(4, 3)  # 12 + 3
    net = torch.nn.Sequential(lin, torch.nn.ReLU(), lin, torch.nn.Linear(3, 2, bias=False))
    net[3].weight.requires_grad_(False)
    assert count_parameters(net) == 15 + 6
    assert count_parameters(net, trainable_only=True) == 15
    assert count_parameters(torch.zeros(2, 5)) == 10


# ------------------------------------------------------------------------------ config


def test_config_validation_is_one_line_config_errors():
    with pytest.raises(ConfigError, match="latency.mode must be one of"):
        LatencyConfig(mode="off")
    with pytest.raises(ConfigError, match="did you mean 'sweep'"):
        LatencyConfig(mode="swep")
    with pytest.raises(ConfigError, match="n_requests"):
        LatencyConfig(n_requests=0)
    with pytest.raises(ConfigError, match="batch_size"):
        LatencyConfig(batch_size=True)
    with pytest.raises(ConfigError, match="sweep_batch_sizes"):
        LatencyConfig(sweep_batch_sizes=(8, 0))
    with pytest.raises(ConfigError, match="unknown key 'latency.n_request'.*n_requests"):
        LatencyConfig.from_mapping({"n_request": 5})
    assert LatencyConfig(sweep_batch_sizes=[64, 1, 8, 8]).sweep_batch_sizes == (1, 8, 64)


@pytest.mark.parametrize("name", ["default", "sweep", "disabled"])
def test_conf_latency_files_build_a_config(name):
    raw = yaml.safe_load((REPO / "conf" / "latency" / f"{name}.yaml").read_text())
    raw.pop("defaults", None)  # the file extends the group's schema (bench/config/schema.py)
    cfg = LatencyConfig.from_mapping(raw)
    assert cfg.mode == name
    assert json.dumps(raw)  # plain YAML values only (no on/off booleans)


def test_stage_meter_gives_seconds_and_peak_rss_per_stage_and_reports_each():
    seen = []
    meter = StageMeter(report=lambda name, sec, mb: seen.append((name, sec, mb)))
    with meter("split"):
        pass
    with meter("fit"):
        block = np.ones(4 * 2**20)  # 32 MiB held during the stage
        block[::4096] = 2.0
    del block
    m = meter.metrics()
    assert set(m) == {
        "stage_seconds/split",
        "stage_seconds/fit",
        "stage_peak_rss_mb/split",
        "stage_peak_rss_mb/fit",
    }
    assert all(v >= 0 for v in m.values())
    assert m["stage_peak_rss_mb/fit"] >= m["stage_peak_rss_mb/split"] + 16
    assert [s[0] for s in seen] == ["split", "fit"]
    assert seen[1][2] == m["stage_peak_rss_mb/fit"]


def test_stage_memory_leaves_no_thread_and_rejects_bad_names():
    import threading

    mem = StageMemory(interval_s=0.001)
    with mem.stage("metrics"):
        assert any(t.name == "bench-stage-rss" for t in threading.enumerate())
    assert not any(t.name == "bench-stage-rss" for t in threading.enumerate())
    assert mem.metrics()["stage_peak_rss_mb/metrics"] > 0
    with pytest.raises(ValueError, match="stage name"), mem.stage("bad name"):
        pass
