"""End to end at MovieLens-20M scale: `bench run` per model, time and peak RSS per stage.

    python benchmarks/perf_scale.py --out reports/perf                 # full scale (long)
    python benchmarks/perf_scale.py --out /tmp/perf --scale 0.01       # quick check

``dataset=synthetic`` with ML-20M's counts (138,493 users x 26,744 items x 20,000,263
interactions; ``--scale`` multiplies all three), split ``temporal-global``, ``latency=disabled``,
for ``pop``, ``itemknn``, ``ease``, ``bpr`` (1 epoch) and ``llm-embed``. Each model is one
``python -m bench run`` subprocess, one at a time, with the checked-out code (PYTHONPATH), its
own MLflow store, split folder, cache and TMPDIR under ``--workdir`` (emptied first), so the
first run materializes the split and the others verify and load it. The runner prints each
stage's wall seconds and peak RSS (``progress=true``; the same figures are logged as
``stage_seconds/*`` and ``stage_peak_rss_mb/*``); this script reads them from the run's stderr
(so a run that dies still reports the stages it finished) and samples the whole process tree's
RSS every 0.2 s.
Writes ``<out>/scale.md`` and ``<out>/scale.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ML20M = {"n_users": 138_493, "n_items": 26_744, "n_interactions": 20_000_263}
#: model -> extra overrides of its run
MODELS: dict[str, list[str]] = {
    "pop": [],
    "itemknn": [],
    "ease": [],
    "bpr": ["model.params.epochs=1"],
    "llm-embed": [],
}
#: what each model's row means (the same at every scale)
NOTES = {
    "pop": "its split stage materializes the split (synthetic generation, cuts, parquet + "
    "sha256): the largest RSS of the pop run comes from there, not from the model",
    "itemknn": "k=50 cosine; X^T X in blocks of target items, never n_items^2 dense",
    "ease": "float64 weights (n_items^2 x 8 bytes: 5.7 GB at 26,744 items); potrf/potri run on "
    "one BLAS thread above 16,384 items because OpenBLAS's multithreaded potrf segfaults from "
    "about 22,700 (baselines/classical/ease.py), which makes fit about 2x slower than 2 threads "
    "would; scoring is a single-threaded sparse history x dense B product, bound by reading "
    "B's rows. `model.params.dtype=float32` halves the weights",
    "bpr": "RecBole BPR, 1 epoch, 1 torch thread (the conf default), train batch 2048: about "
    "7,800 Adam steps over the dense user and item tables (10.5M parameters; dense Adam was "
    "about half of the epoch in a py-spy sample), then one validation pass by the harness; fit "
    "includes writing RecBole's atomic files (about 400 MB) and its dataset build",
    "llm-embed": "fit encodes every item text with the bundled all-MiniLM-L6-v2 (cached under "
    "paths.cache, so a second run skips it). Synthetic items' side information is a title "
    "'Item <n>', a year and 1-3 genres drawn independently of the interactions: the text "
    "carries no signal, so accuracy is at chance level and only the cost is meaningful",
}
STAGES = ("split", "index", "fit", "validation", "scoring", "latency", "metrics", "artifacts")
STAGE_LINE = re.compile(r"\[bench\] stage (\S+): ([\d.]+) s, peak RSS ([\d,]+) MB")
MARKER = ".perf_scale"


def sizes(scale: float) -> dict[str, int]:
    n = {k: max(1, round(v * scale)) for k, v in ML20M.items()}
    # keep the density feasible at tiny scales (at most half the user x item pairs)
    n["n_interactions"] = min(n["n_interactions"], n["n_users"] * n["n_items"] // 2)
    return n


def dataset_overrides(scale: float) -> list[str]:
    return ["dataset=synthetic"] + [f"dataset.params.{k}={v}" for k, v in sizes(scale).items()]


def tree_rss_mb(proc: Any) -> float:
    """RSS of a psutil process and its children, MiB (0 once it is gone)."""
    import psutil

    total = 0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
    except psutil.Error:
        return 0.0
    return total / 2**20


def run_model(
    model: str, scale: float, root: Path, timeout: float, force: bool = False
) -> dict[str, Any]:
    import psutil

    cmd = [
        sys.executable,
        "-m",
        "bench",
        "run",
        f"model={model}",
        *dataset_overrides(scale),
        "split=temporal-global",
        "latency=disabled",
        "progress=true",
        f"paths.root={root}",
        f"tracking.uri=sqlite:///{root}/mlflow.db",
        f"hydra.run.dir={root}/outputs/{model}",
        *MODELS[model],
        *(["tracking.force=true"] if force else []),
    ]
    tmp = root / "tmp"  # the run's temporary folder (RecBole's atomic files ...) stays here
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", "TMPDIR": str(tmp)}
    log_path = root / f"{model}.log"
    t0 = time.perf_counter()
    peak = 0.0
    with open(log_path, "w") as log:
        child = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        proc = psutil.Process(child.pid)
        timed_out = False
        while child.poll() is None:
            peak = max(peak, tree_rss_mb(proc))
            if time.perf_counter() - t0 > timeout:
                timed_out = True
                os.killpg(child.pid, signal.SIGTERM)  # our own child's session only
                child.wait(60)
                break
            time.sleep(0.2)
    wall = time.perf_counter() - t0
    text = log_path.read_text(errors="replace")
    stages = {
        m.group(1): {
            "seconds": float(m.group(2)),
            "peak_rss_mb": float(m.group(3).replace(",", "")),
        }
        for m in STAGE_LINE.finditer(text)
    }
    rc = child.returncode
    errors = [ln for ln in text.splitlines() if ln.startswith(("error:", "Fatal Python error"))]
    return {
        "model": model,
        "command": " ".join(cmd[1:]),
        "returncode": rc,
        "status": "timeout" if timed_out else ("ok" if rc == 0 else _describe(rc)),
        "wall_seconds": wall,
        "tree_peak_rss_mb": peak,
        "stages": stages,
        "error": errors[-1] if errors else (text.strip().splitlines() or [""])[-1][:300],
        "log": str(log_path),
        **_run_record(root, model),
    }


def _describe(rc: int | None) -> str:
    if rc is not None and rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit {rc}"


def _run_record(root: Path, model: str) -> dict[str, Any]:
    """Status and a few metrics of the model's MLflow run(s) in the store under ``root``."""
    db = root / "mlflow.db"
    if not db.exists():
        return {"mlflow_status": None, "metrics": {}}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("bench")
    if exp is None:
        return {"mlflow_status": None, "metrics": {}}
    runs = client.search_runs(
        [exp.experiment_id], f"tags.`bench.model` = '{model}'", order_by=["start_time DESC"]
    )
    if not runs:
        return {"mlflow_status": None, "metrics": {}}
    run = runs[0]
    keep = (
        "ndcg_at_10",
        "recall_at_10",
        "coverage_at_10",
        "fit_seconds",
        "scoring_seconds",
        "peak_memory_mb",
        "n_parameters",
        "n_users_evaluated",
    )
    return {
        "mlflow_status": run.info.status,
        "run_id": run.info.run_id,
        "metrics": {k: run.data.metrics[k] for k in keep if k in run.data.metrics},
    }


def environment() -> dict[str, Any]:
    import numpy as np
    import psutil
    import scipy
    import scipy.linalg  # noqa: F401  (loads scipy's own OpenBLAS, listed below)
    import torch
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gb": psutil.virtual_memory().total / 1e9,
        "available_gb_at_start": psutil.virtual_memory().available / 1e9,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "blas": [
            {k: i.get(k) for k in ("internal_api", "prefix", "num_threads", "version")}
            for i in threadpool_info()
        ],
        "load_at_start": os.getloadavg(),
    }


def _f(v: Any, nd: int = 0) -> str:
    return "-" if v is None else f"{v:,.{nd}f}"


def write_report(res: list[dict[str, Any]], env: dict[str, Any], args: Any, wall: float) -> Path:
    n = sizes(args.scale)
    lines = [
        "# End to end at MovieLens-20M scale: time and peak RSS per stage",
        "",
        "Generated by `python benchmarks/perf_scale.py --out reports/perf"
        + (f" --scale {args.scale:g}" if args.scale != 1.0 else "")
        + f"` in {wall / 60:,.0f} min wall.",
        f"Machine: {env['cpu']}, {env['cpus']} CPUs, {env['memory_gb']:.1f} GB RAM "
        f"({env['available_gb_at_start']:.1f} GB available at start), no GPU; "
        f"{env['platform']}, python {env['python']}, numpy {env['numpy']}, scipy {env['scipy']}, "
        f"torch {env['torch']}; BLAS "
        + ", ".join(
            f"{b['prefix']} {b['internal_api']} {b['version']} x{b['num_threads']}"
            for b in env["blas"]
        )
        + f". Load average (1 min) {env['load_at_start'][0]:.1f} at start, "
        f"{env['load_at_end'][0]:.1f} at end: the machine was shared with other jobs, so "
        "seconds are upper bounds.",
        "",
        f"Data: `dataset=synthetic` with {n['n_users']:,} users x {n['n_items']:,} items x "
        f"{n['n_interactions']:,} interactions (ML-20M's counts"
        + (f" x {args.scale}" if args.scale != 1.0 else "")
        + "), split `temporal-global`, `latency=disabled`, one `python -m bench run` "
        "subprocess per model, one at a time. The first run (pop) materializes the split; "
        "later runs verify its sha256 and load it.",
        "",
        "Stages (runner's `stage_seconds/*`, `stage_peak_rss_mb/*`): split = materialize or "
        "verify + load; index = string ids to indices, CSR matrices and histories; fit; "
        "validation = rank every valid user (train history) and compute the `valid/` metrics; "
        "scoring = rank every test user (top-k, seen masked); metrics = the whole metric "
        "suite; artifacts = recommendations/per-user parquet and the rest written before "
        "MLflow copies them. Peak RSS of a stage is the process's largest RSS sampled while it "
        "ran (every 50 ms), so it includes what earlier stages still hold. Run peak = the "
        "process tree's largest RSS (sampled every 0.2 s); wall includes interpreter start, "
        "imports and MLflow logging.",
        "",
        "| model | status | wall s | run peak RSS MB | "
        + " | ".join(f"{s} s / MB" for s in STAGES)
        + " | ndcg@10 |",
        "|---|---|---:|---:|" + "---:|" * len(STAGES) + "---:|",
    ]
    for r in res:
        cells = []
        for s in STAGES:
            st = r["stages"].get(s)
            cells.append("-" if st is None else f"{st['seconds']:,.1f} / {st['peak_rss_mb']:,.0f}")
        lines.append(
            f"| {r['model']}{' (earlier run)' if r.get('earlier') else ''} | {r['status']} | "
            f"{_f(r['wall_seconds'])} | "
            f"{_f(r['tree_peak_rss_mb'])} | "
            + " | ".join(cells)
            + f" | {_f(r['metrics'].get('ndcg_at_10'), 4)} |"
        )
    lines.append("")
    for r in res:
        if r["model"] in NOTES:
            lines.append(f"- {r['model']}: {NOTES[r['model']]}.")
    for r in res:
        if r["status"] != "ok":
            lines.append(
                f"- {r['model']}: {r['status']}: `{r['error']}` (MLflow run status: "
                f"{r['mlflow_status']})"
            )
    lines += [
        "- Commands: `python -m bench run model=<model> "
        + " ".join(dataset_overrides(args.scale))
        + " split=temporal-global latency=disabled` (+ `model.params.epochs=1` for bpr).",
        "- A run killed by a signal (e.g. a segfault) cannot close its MLflow run: it stays "
        "RUNNING until the next `bench run` on the store marks it KILLED (owner process gone).",
        "",
    ]
    path = args.out / "scale.md"
    path.write_text("\n".join(lines))
    (args.out / "scale.json").write_text(
        json.dumps(
            {"environment": env, "scale": args.scale, "wall_seconds": wall, "results": res},
            indent=2,
            default=str,
        )
        + "\n"
    )
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "perf")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies users, items, events")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "llmrec-perf-scale",
        help="MLflow store, split and cache (emptied first; default under the temp dir)",
    )
    ap.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per model run")
    ap.add_argument("--render", action="store_true", help="rewrite scale.md from scale.json")
    ap.add_argument(
        "--keep",
        action="store_true",
        help="reuse --workdir's split and store (runs are forced); rows of models not run "
        "now are kept from <out>/scale.json of the same --scale",
    )
    args = ap.parse_args(argv)
    if args.render:  # the table again from the figures already measured
        data = json.loads((args.out / "scale.json").read_text())
        args.scale = data["scale"]
        path = write_report(data["results"], data["environment"], args, data["wall_seconds"])
        print(f"wrote {path}")
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown or not 0 < args.scale <= 1:
        ap.error(f"--models from {', '.join(MODELS)}; --scale in (0, 1]; got {unknown}")
    root = (args.workdir / f"scale-{args.scale:g}").resolve()
    if root.exists():
        if not (root / MARKER).exists():
            ap.error(f"{root} exists and was not made by this script; pick another --workdir")
        if not args.keep:
            shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("made by benchmarks/perf_scale.py; emptied on every run\n")
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment()
    earlier: dict[str, dict[str, Any]] = {}
    old = args.out / "scale.json"
    if args.keep and old.exists():
        prev = json.loads(old.read_text())
        if prev.get("scale") == args.scale:
            earlier = {r["model"]: {**r, "earlier": True} for r in prev["results"]}
    results, t0 = [], time.perf_counter()
    for model in models:
        r = run_model(model, args.scale, root, args.timeout, force=args.keep)
        stages = ", ".join(
            f"{k} {v['seconds']:.0f}s/{v['peak_rss_mb']:,.0f}MB" for k, v in r["stages"].items()
        )
        print(
            f"{model:10s} {r['status']:10s} {r['wall_seconds']:7.0f} s  "
            f"peak {r['tree_peak_rss_mb']:7,.0f} MB  {stages}",
            flush=True,
        )
        results.append(r)
    ran = {r["model"] for r in results}
    results = [
        next(r for r in results if r["model"] == m) if m in ran else earlier[m]
        for m in MODELS
        if m in ran or m in earlier
    ]
    env["load_at_end"] = os.getloadavg()
    path = write_report(results, env, args, time.perf_counter() - t0)
    print(f"wrote {path}")
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
