"""Environment fingerprint, device tags and device resolution (bench/environment.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bench.environment as env
from bench.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CANARIES = {
    "OPENAI_API_KEY": "sk-canary-XYZ",
    "HF_TOKEN": "hf_canary_token_XYZ",
    "MLFLOW_TRACKING_PASSWORD": "pw-canary-XYZ",
    "AWS_SECRET_ACCESS_KEY": "aws-canary-XYZ",
}
CUDA = pytest.importorskip("torch").cuda.is_available() if env.torch_available() else False


@pytest.fixture(scope="module")
def info() -> dict:
    mp = pytest.MonkeyPatch()
    for k, v in CANARIES.items():
        mp.setenv(k, v)
    mp.setenv("OMP_NUM_THREADS", "2")
    try:
        yield env.environment_info()
    finally:
        mp.undo()


def test_environment_info_has_the_contract_fields(info):
    for key in (
        "python",
        "platform",
        "packages",
        "packages_sha256",
        "cpu_model",
        "cpu_count",
        "env",
        "torch",
        "gpus",
        "git",
        "fingerprint",
        "collected_at",
    ):
        assert key in info, key
    for pkg in (
        "numpy",
        "scipy",
        "polars",
        "torch",
        "transformers",
        "recbole",
        "mlflow",
        "hydra-core",
        "ranx",
    ):
        assert pkg in info["packages"]
    assert info["python"] == sys.version.split()[0]
    assert re.fullmatch(r"[0-9a-f]{64}", info["packages_sha256"])
    assert re.fullmatch(r"[0-9a-f]{64}", info["fingerprint"])
    assert info["env"] == {"OMP_NUM_THREADS": "2"}
    if env.torch_available():
        import torch

        assert info["torch"]["version"] == torch.__version__
        assert {"cuda_version", "cudnn_version", "num_threads"} <= set(info["torch"])


def test_environment_info_is_json_and_contains_no_secret(info):
    text = json.dumps(info)
    for name, value in CANARIES.items():
        assert value not in text and name not in text
    assert json.loads(text) == info


def test_device_tags_contain_no_secret_and_are_strings(monkeypatch):
    for k, v in CANARIES.items():
        monkeypatch.setenv(k, v)
    tags = env.device_tags("cpu")
    assert set(tags) == {
        "bench.device",
        "bench.gpu_name",
        "bench.gpu_driver",
        "bench.cuda_version",
        "bench.torch_version",
        "bench.cpu_model",
        "bench.threads",
    }
    assert all(isinstance(v, str) and v for v in tags.values())
    assert tags["bench.device"] == f"cpu:{env.cpu_model()}"
    assert tags["bench.gpu_name"] == "none"
    assert not any(v in json.dumps(tags) for v in CANARIES.values())


def test_packages_fingerprint_is_stable():
    assert env.packages_fingerprint() == env.packages_fingerprint()


def test_packages_fingerprint_reads_the_names_and_versions_the_metadata_parser_reads():
    """The header-only reader agrees with ``importlib.metadata``'s full parse for every
    installed distribution, and the fingerprint is the hash of that ``pip freeze`` list."""
    import hashlib
    import importlib.metadata as md
    import re

    lines = set()
    for dist in md.distributions():
        assert env._name_and_version(dist) == (dist.metadata["Name"], dist.version)
        lines.add(f"{re.sub(r'[-_.]+', '-', dist.metadata['Name']).lower()}=={dist.version}")
    assert len(lines) > 50  # the test environment's packages, bench's own included
    assert "mlflow==" + md.version("mlflow") in lines
    digest = hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()
    assert env.packages_fingerprint() == digest


def test_git_info_of_this_checkout_and_of_a_non_checkout(tmp_path):
    here = env.git_info()
    if (REPO / ".git").exists():
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        assert here["sha"] == head and isinstance(here["dirty"], bool)
    assert env.git_info(tmp_path) == {"sha": "unknown", "dirty": "unknown"}


def test_cpu_model_is_named():
    assert env.cpu_model() and env.cpu_model() != "unknown"


def test_import_and_cpu_device_calls_are_torch_free():
    # importing torch costs hundreds of MB of RSS: a CPU run must not pay it in peak_memory_mb
    code = (
        "import sys, bench.environment as E\n"
        "assert E.resolve_device('cpu') == 'cpu'\n"
        "tags = E.device_tags('cpu')\n"
        "info = E.environment_info()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert tags['bench.cuda_version'] == 'none'\n"
        "if E.torch_build() and not E._gpu_build():\n"
        "    # a CPU-only build is described without importing it; loading it changes no field\n"
        "    # of the fingerprint (thread settings are recorded, as process state, outside it)\n"
        "    import torch\n"
        "    loaded = E.environment_info()\n"
        "    assert info['torch']['version'] == torch.__version__\n"
        "    assert loaded['torch']['num_threads'] == torch.get_num_threads()\n"
        "    assert 'num_threads' not in info['torch']\n"
        "    assert loaded['fingerprint'] == info['fingerprint']\n"
        "    assert E.resolve_device('auto') == 'cpu'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_threads_tag_follows_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert env.device_tags("cpu")["bench.threads"] == "3"
    monkeypatch.setenv("OMP_NUM_THREADS", "garbage")
    assert int(env.device_tags("cpu")["bench.threads"]) >= 1


# ------------------------------------------------------------------------------ devices


def test_resolve_device_cpu_and_auto():
    assert env.resolve_device("cpu") == "cpu"
    assert env.resolve_device(" CPU ") == "cpu"
    assert env.resolve_device("auto") == ("cuda" if CUDA else "cpu")


@pytest.mark.skipif(CUDA, reason="a CUDA device is available")
def test_resolve_device_cuda_without_cuda_is_a_one_line_config_error():
    for requested in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError) as e:
            env.resolve_device(requested)
        msg = str(e.value)
        assert "\n" not in msg and f"device={requested}" in msg and "device=cpu" in msg


def test_resolve_device_index_beyond_the_visible_devices(monkeypatch):
    monkeypatch.setattr(env, "_cuda_device_count", lambda: 1)
    assert env.resolve_device("cuda") == "cuda"
    assert env.resolve_device("cuda:0") == "cuda:0"
    assert env.resolve_device("auto") == "cuda"
    with pytest.raises(ConfigError, match=r"only 1 CUDA device\(s\)"):
        env.resolve_device("cuda:1")


@pytest.mark.parametrize(
    "bad,hint",
    [
        ("gpu", "did you mean 'cuda'"),
        ("mps", "valid: auto"),
        ("cpu:0", "did you mean 'cpu'"),
        ("", "valid: auto"),
    ],
)
def test_resolve_device_unknown_names(bad, hint):
    with pytest.raises(ConfigError, match=hint) as e:
        env.resolve_device(bad)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(not CUDA, reason="no CUDA device")
def test_device_tags_on_cuda_name_the_gpu():
    import torch

    tags = env.device_tags("cuda")
    assert tags["bench.device"] == f"cuda:{tags['bench.gpu_name']}"
    assert torch.cuda.get_device_name(0) in tags["bench.gpu_name"]
    assert tags["bench.cuda_version"] == torch.version.cuda
    assert env.resolve_device("cuda:0") == "cuda:0"
