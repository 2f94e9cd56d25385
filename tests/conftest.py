"""Shared fixtures: offline, quiet, deterministic."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# datasets are never downloaded by tests (the fetch tests use a 127.0.0.1 server and unset it)
os.environ.setdefault("BENCH_OFFLINE", "1")
