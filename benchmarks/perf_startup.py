"""Start-up cost of the `bench` console script, against the interpreter alone and the imports
a harness usually pays, in one session (fresh processes, best of 5).

    python benchmarks/perf_startup.py --out reports/perf

`bench --help` imports only the standard library (tests/unit/test_cli.py checks which modules
load); this measures what that buys. Writes ``<out>/startup.md`` and ``<out>/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 5


def best(cmd: list[str]) -> float:
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "perf")
    a = ap.parse_args()
    exe = shutil.which("bench") or ""
    cases = {
        "python -c pass (floor)": [sys.executable, "-c", "pass"],
        "bench --help": [exe, "--help"] if exe else [sys.executable, "-m", "bench", "--help"],
        "python -c 'import hydra' (peer)": [sys.executable, "-c", "import hydra"],
        "python -c 'import mlflow' (peer)": [sys.executable, "-c", "import mlflow"],
    }
    seconds = {name: best(cmd) for name, cmd in cases.items()}
    floor = seconds["python -c pass (floor)"]
    lines = [
        "# Start-up of the `bench` command",
        "",
        f"Best of {REPEATS} fresh processes. Machine: {platform.machine()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} "
        "(shared machine: compare the ratios). Written by `benchmarks/perf_startup.py` "
        "(`nox -s perf`).",
        "",
        "| command | best s | / python -c pass |",
        "|---|---:|---:|",
        *(f"| {k} | {v:.3f} | {v / floor:.1f} |" for k, v in seconds.items()),
    ]
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "startup.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (a.out / "startup.json").write_text(json.dumps(seconds, indent=2) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
