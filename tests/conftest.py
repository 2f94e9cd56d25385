"""Shared fixtures: offline, quiet, deterministic."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# datasets are never downloaded by tests (the fetch tests use a 127.0.0.1 server and unset it)
os.environ.setdefault("BENCH_OFFLINE", "1")
# one compute thread per process: xdist runs one worker per core and the workers' commands run
# side by side, so OpenMP/BLAS thread pools would only spin-wait against each other (torch's
# llm-embed sweep took 85 CPU-s inside the suite with its default 2 threads, 28 s alone)
os.environ.setdefault("OMP_NUM_THREADS", "1")
# one per-user cache for the whole session (xdist workers inherit it), never the developer's
# ~/.cache/bench: it keeps the empty MLflow store each new test store is copied from
if "BENCH_CACHE_HOME" not in os.environ:
    os.environ["BENCH_CACHE_HOME"] = tempfile.mkdtemp(prefix="bench-cache-")
    atexit.register(shutil.rmtree, os.environ["BENCH_CACHE_HOME"], True)
