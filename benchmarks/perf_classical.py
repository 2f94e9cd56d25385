"""Fit and scoring cost of the classical baselines on synthetic data at MovieLens scale.

    python benchmarks/perf_classical.py --out reports/perf            # full run (a few minutes)
    python benchmarks/perf_classical.py --out /tmp/perf --quick        # 10x smaller, smoke test

Each case runs in its own subprocess so ``peak_rss_mb`` (``ru_maxrss``) is that case's own peak
(data generation included; ``data_rss_mb`` is the RSS once the data exists, before fitting).
Peers measured in the same run: the textbook dense implementations (``X.T @ X`` densified,
``numpy.linalg.inv``), so the report can print ratios rather than bare seconds.
Writes ``<out>/classical.md`` and ``<out>/classical.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.data.indexing import history  # noqa: E402
from bench.models.base import FitContext, ModelData  # noqa: E402

#: (n_users, n_items, target interactions, minimum per user). ML-1M: 1,000,209 ratings, at
#: least 20 per user; ML-20M: 20,000,263. At 2M interactions ML-20M's 20-per-user minimum is
#: impossible (138,493 x 20 = 2.77M), so that scale only keeps a minimum of 1.
SCALES = {
    "ml-1m": (6_040, 3_706, 1_000_000, 20),
    "ml-20m-items": (138_493, 26_744, 2_000_000, 1),
}
CASES = [
    ("itemknn", "ml-1m"),
    ("itemknn-dense-peer", "ml-1m"),
    ("ease", "ml-1m"),
    ("ease-inv-peer", "ml-1m"),
    ("itemknn", "ml-20m-items"),
]


def _sample(n_users: int, n_items: int, n_events: float, min_per_user: int, seed: int):
    rng = np.random.default_rng(seed)
    act = rng.lognormal(0.0, 1.0, n_users)
    act = np.round(act / act.sum() * n_events)
    act = np.clip(act, min_per_user, n_items // 2).astype(np.int64)
    pop = 1.0 / (np.arange(n_items) + 10.0) ** 0.9
    users = np.repeat(np.arange(n_users), act)
    items = rng.choice(n_items, size=len(users), p=pop / pop.sum())
    key = np.unique(users * n_items + items)
    return key // n_items, key % n_items


def synthetic(
    n_users: int, n_items: int, n_events: int, min_per_user: int = 1, seed: int = 0
) -> ModelData:
    """Power-law user activity (lognormal) and item popularity (Zipf-like, exponent 0.9).
    Duplicate (user, item) draws are dropped; the draw size is rescaled (twice at most) so the
    distinct count lands within about 1 % of ``n_events``."""
    target = float(n_events)
    for _ in range(3):
        users, items = _sample(n_users, n_items, target, min_per_user, seed)
        if abs(len(users) - n_events) <= 0.01 * n_events:
            break
        target *= n_events / len(users)
    train = pl.DataFrame(
        {
            "user_idx": users,
            "item_idx": items,
            "timestamp": np.zeros(len(users), np.int64),
            "rating": np.ones(len(users)),
        }
    )
    h = history([train], n_users, n_items)
    empty = train.head(0)
    return ModelData(
        user_ids=np.array([f"u{u}" for u in range(n_users)], dtype=object),
        item_ids=np.array([f"i{i:06d}" for i in range(n_items)], dtype=object),
        train=train,
        valid=empty,
        items=pl.DataFrame({"item_idx": np.arange(n_items)}),
        users=pl.DataFrame({"user_idx": np.arange(n_users)}),
        train_history=h,
        test_history=h,
    )


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _dense_knn_peer(data: ModelData, k: int) -> Any:
    """The textbook dense cosine: densify X^T X, normalise, argpartition every column."""
    x = data.train_history.matrix.astype(np.float64)
    co = (x.T @ x).toarray()
    n = np.sqrt(np.diag(co))
    sim = co / np.maximum(np.outer(n, n), 1e-12)
    np.fill_diagonal(sim, 0.0)
    top = np.argpartition(-sim, k - 1, axis=0)[:k]
    return top


def _inv_peer(data: ModelData, l2: float) -> Any:
    """The textbook EASE: dense Gram, numpy.linalg.inv, B = -P / diag(P)."""
    x = data.train_history.matrix.astype(np.float64)
    g = (x.T @ x).toarray()
    g[np.diag_indices_from(g)] += l2
    p = np.linalg.inv(g)
    b = p / (-np.diag(p))
    np.fill_diagonal(b, 0.0)
    return b


def _time_scoring(model: Any, data: ModelData, batch: int, n_single: int) -> dict[str, float]:
    h = data.test_history
    users = np.arange(data.n_users)
    n_batched = min(data.n_users, 20 * batch)
    t0 = time.perf_counter()
    for start in range(0, n_batched, batch):
        model.score(users[start : min(start + batch, n_batched)], h)
    batched = time.perf_counter() - t0
    lat = []
    for u in np.random.default_rng(1).choice(data.n_users, n_single, replace=False):
        t = time.perf_counter()
        model.score(np.array([u]), h)
        lat.append((time.perf_counter() - t) * 1e3)
    return {
        "score_users": float(n_batched),
        "score_batch": float(batch),
        "score_seconds": batched,
        "throughput_users_per_s": n_batched / batched,
        "latency_p50_ms": float(np.percentile(lat, 50)),
        "latency_p95_ms": float(np.percentile(lat, 95)),
    }


def run_case(case: str, scale: str, quick: bool) -> dict[str, Any]:
    from baselines.classical.ease import EASE
    from baselines.classical.itemknn import ItemKNN

    n_users, n_items, n_events, min_per_user = SCALES[scale]
    if quick:
        n_users, n_items, n_events = n_users // 10, n_items // 10, n_events // 100
        min_per_user = min(min_per_user, 2)
    data = synthetic(n_users, n_items, n_events, min_per_user)
    out: dict[str, Any] = {
        "case": case,
        "scale": scale,
        "n_users": n_users,
        "n_items": n_items,
        "n_interactions": data.train.height,
        "data_rss_mb": rss_mb(),
    }
    t0 = time.perf_counter()
    model: Any = None
    if case == "itemknn":
        model = ItemKNN.from_params({"k": 50})
        model.fit(data, FitContext(seed=0))
    elif case == "ease":
        model = EASE.from_params({"l2": 500.0})
        model.fit(data, FitContext(seed=0))
    elif case == "itemknn-dense-peer":
        _dense_knn_peer(data, 50)
    elif case == "ease-inv-peer":
        _inv_peer(data, 500.0)
    out["fit_seconds"] = time.perf_counter() - t0
    out["fit_peak_rss_mb"] = peak_rss_mb()
    if model is not None:
        out["n_parameters"] = model.n_parameters()
        out.update(_time_scoring(model, data, batch=256, n_single=100))
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}"


def _environment() -> dict[str, Any]:
    from threadpoolctl import threadpool_info

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": sp.__name__ and __import__("scipy").__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "blas": [
            {k: i.get(k) for k in ("internal_api", "num_threads", "version")}
            for i in threadpool_info()
        ],
    }


def write_report(
    results: list[dict[str, Any]], out: Path, quick: bool, wall: float, load: tuple
) -> Path:
    env = _environment()
    by = {(r["case"], r["scale"]): r for r in results}
    lines = [
        "# Classical baselines: fit and scoring cost",
        "",
        "Generated by `python benchmarks/perf_classical.py --out reports/perf`"
        + (" --quick (10x fewer users/items, 100x fewer interactions)" if quick else "")
        + f" in {wall:,.0f} s wall.",
        f"Machine: {env['cpus']} CPUs ({env['platform']}), python {env['python']}, "
        f"numpy {env['numpy']}, scipy {env['scipy']}, BLAS "
        + ", ".join(f"{b['internal_api']} {b['version']} x{b['num_threads']}" for b in env["blas"])
        + ". The CPU was shared with other jobs: treat seconds as upper bounds and compare "
        "ratios measured in the same run.",
        "",
        "Data: synthetic, power-law user activity (lognormal, capped at half the catalogue) and "
        "item popularity (Zipf-like, exponent 0.9), duplicates dropped. `ml-1m` = ML-1M's 6,040 "
        "users x 3,706 items, ~1M interactions, at least 20 draws per user before "
        "de-duplication; `ml-20m-items` = ML-20M's "
        "138,493 users x 26,744 items but 2M interactions instead of 20M (one tenth of the real "
        "density, at least 1 per user since 20 per user would already be 2.77M; the full 20M "
        "would take far longer on this shared 2-core box: itemknn's co-occurrence work grows "
        "with the sum of squared user activities). Models: itemknn k=50 cosine shrink 0, ease "
        "l2=500. Scoring: 20 batches of 256 users (or all users), then 100 single-user calls.",
        "",
        "| case | data | users x items | interactions | fit s | fit peak RSS MB | "
        "RSS before fit MB | n_parameters | users/s (batch 256) | p50 ms (1 user) | "
        "p95 ms (1 user) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['case']} | {r['scale']} | {r['n_users']:,} x {r['n_items']:,} | "
            f"{r['n_interactions']:,} | {_fmt(r['fit_seconds'], 2)} | "
            f"{_fmt(r['fit_peak_rss_mb'], 0)} | {_fmt(r['data_rss_mb'], 0)} | "
            f"{_fmt(r.get('n_parameters'))} | {_fmt(r.get('throughput_users_per_s'), 0)} | "
            f"{_fmt(r.get('latency_p50_ms'), 2)} | {_fmt(r.get('latency_p95_ms'), 2)} |"
        )
    lines += ["", "Ratios against the textbook peers (same data, same run):", ""]
    for ours, peer in (("itemknn", "itemknn-dense-peer"), ("ease", "ease-inv-peer")):
        a, b = by.get((ours, "ml-1m")), by.get((peer, "ml-1m"))
        if a and b:
            extra_a = a["fit_peak_rss_mb"] - a["data_rss_mb"]
            extra_b = b["fit_peak_rss_mb"] - b["data_rss_mb"]
            lines.append(
                f"- {ours} / {peer} on ml-1m: fit time {a['fit_seconds'] / b['fit_seconds']:.2f}x, "
                f"memory added by fitting {extra_a:,.0f} MB vs {extra_b:,.0f} MB "
                f"({extra_a / max(extra_b, 1e-9):.2f}x)."
            )
    lines += [
        "- No dense peer at 26,744 items: one dense float64 26,744^2 matrix is 5.7 GB (float32 "
        "2.9 GB) and the textbook cosine holds about three; itemknn keeps one "
        "block of about 8M entries (3 buffers, ~200 MB) and the top-k.",
        f"- Load average (1 min) at start {load[0]:.1f}, at end {os.getloadavg()[0]:.1f} on "
        f"{env['cpus']} CPUs: fit seconds of dense BLAS/LAPACK work (ease) are the most "
        "sensitive to it.",
        "",
    ]
    path = out / "classical.md"
    path.write_text("\n".join(lines))
    (out / "classical.json").write_text(
        json.dumps({"environment": env, "quick": quick, "results": results}, indent=2) + "\n"
    )
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "perf")
    ap.add_argument("--quick", action="store_true", help="10x smaller data: a smoke test")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    ap.add_argument("--scale", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.scale, args.quick)))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    results, t0, load = [], time.perf_counter(), os.getloadavg()
    for case, scale in CASES:
        cmd = [sys.executable, __file__, "--case", case, "--scale", scale]
        proc = subprocess.run(
            cmd + (["--quick"] if args.quick else []), capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            print(f"{case} on {scale} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{case:20s} {scale:14s} fit {res['fit_seconds']:8.2f} s  "
            f"peak {res['peak_rss_mb']:8.0f} MB",
            flush=True,
        )
        results.append(res)
    path = write_report(results, args.out, args.quick, time.perf_counter() - t0, load)
    print(f"wrote {path}")
    return 0 if len(results) == len(CASES) else 1


if __name__ == "__main__":
    raise SystemExit(main())
