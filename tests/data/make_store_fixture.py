"""Write the MLflow store fixture of this release into tests/data/store-<version>/.

Run once per release (``python tests/data/make_store_fixture.py``) and commit the folder: the
upgrade test opens every committed store with the current code, so later releases keep reading
stores written by earlier ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import __version__

HERE = Path(__file__).resolve().parent


def main() -> None:
    out = HERE / f"store-{__version__}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
        env.pop("MLFLOW_TRACKING_URI", None)
        args = [
            sys.executable,
            "-m",
            "bench",
            "run",
            "-m",
            "model=pop,random",
            "seed=0,1",
            "dataset=synthetic",
            "dataset.params.n_users=200",
            "dataset.params.n_items=100",
            "dataset.params.n_interactions=4000",
            "eval.ks=[5,10]",
            "latency.n_requests=20",
            "report.leaderboard_on_end=false",
        ]
        subprocess.run(args, cwd=tmp, env=env, check=True)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir()
        shutil.copy(Path(tmp) / "mlflow.db", out / "mlflow.db")
        shutil.copytree(Path(tmp) / "mlartifacts", out / "mlartifacts")
        (out / "fixture.json").write_text(
            json.dumps({"bench_version": __version__, "root": str(Path(tmp).resolve())}, indent=2)
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
