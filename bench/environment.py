"""The environment fingerprint of a run (``environment.json``), device tags, device resolution.

``environment_info()`` is what a reader needs to reproduce or compare a figure: python,
platform, package versions (read from installed metadata, never by importing the packages),
torch / CUDA / cuDNN, GPU and driver, CPU model, thread settings, the git state of the checkout
holding ``bench`` and a hash of the installed distributions. Only an explicit allow-list of
environment variables (thread counts and determinism knobs) is read, so no secret can leak.

Importing this module is cheap; torch is imported only by the functions that need it, and only
when it is installed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.errors import ConfigError, did_you_mean

__all__ = [
    "device_tags",
    "environment_info",
    "git_info",
    "packages_fingerprint",
    "resolve_device",
]

#: distributions whose versions are recorded (by importlib.metadata; "not installed" if absent)
PACKAGES = (
    "numpy",
    "scipy",
    "polars",
    "pyarrow",
    "torch",
    "transformers",
    "recbole",
    "mlflow",
    "hydra-core",
    "omegaconf",
    "ranx",
    "llmrec-harness",
)
#: the ONLY environment variables ever read into the fingerprint (no secrets by construction)
ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "CUBLAS_WORKSPACE_CONFIG",
    "CUDA_VISIBLE_DEVICES",
    "PYTHONHASHSEED",
)
UNKNOWN = "unknown"
NONE = "none"
_GIT_TIMEOUT_S = 10
_SMI_TIMEOUT_S = 15


# --------------------------------------------------------------------------------------------
# the fingerprint


def environment_info() -> dict[str, Any]:
    """Everything in ``environment.json``; JSON-serializable. See ``docs/latency.md``.

    ``fingerprint`` is a sha256 over every field except ``collected_at``, the git dirty
    flag's details and torch's runtime thread settings: two runs with equal fingerprints ran
    the same code on the same software and hardware configuration.
    """
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": package_versions(),
        "packages_sha256": packages_fingerprint(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": _affinity_count(),
        "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
        "torch": torch_info(),
        "gpus": gpu_info(),
        "git": git_info(),
    }
    stable = {**info, "torch": {k: v for k, v in info["torch"].items() if k not in TORCH_RUNTIME}}
    info["fingerprint"] = hashlib.sha256(
        json.dumps(stable, sort_keys=True, default=str).encode()
    ).hexdigest()
    info["collected_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return info


#: the version recorded for a distribution that is not installed
NOT_INSTALLED = "not installed"


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """``name -> version`` from installed metadata (``NOT_INSTALLED`` if absent)."""
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = NOT_INSTALLED
    return out


def packages_fingerprint() -> str:
    """sha256 of the sorted ``name==version`` lines of every installed distribution (the
    ``pip freeze`` equivalent, names normalized as in PEP 503)."""
    lines = set()
    for dist in md.distributions():
        name, version = _name_and_version(dist)
        if name:
            lines.add(f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def _name_and_version(dist: md.Distribution) -> tuple[str | None, str | None]:
    """The ``Name`` and ``Version`` headers of a distribution's metadata, read from its header
    block only: ``dist.metadata`` parses the whole file (long descriptions included) as an
    email message, which made this fingerprint 0.3 s of every run."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    found: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key in ("name", "version") and key not in found:
            found[key] = value.strip()
    return found.get("name"), found.get("version")


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo`` "model name", else ``platform.processor()``)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
            return " ".join(value.split())
    return platform.processor() or platform.machine() or UNKNOWN


def _affinity_count() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def torch_available() -> bool:
    """Whether torch is installed (without importing it)."""
    return "torch" in sys.modules or importlib.util.find_spec("torch") is not None


def torch_info() -> dict[str, Any]:
    """torch / CUDA / cuDNN versions and thread settings; ``{}`` when torch is not installed.

    The build (version, CUDA/ROCm) is read from ``torch/version.py`` without importing torch. A
    CPU-only build that this process has not loaded is not imported just to be described: it
    has no CUDA device and no cuDNN, and its thread settings are those of a library the run
    did not use. Otherwise torch is imported (it is loaded already, or it may see a GPU) and the
    runtime fields are added: ``num_threads``, ``num_interop_threads`` and
    ``deterministic_algorithms`` are process state and so not part of the fingerprint.
    """
    build = torch_build()
    if build is None:
        return {}
    if "torch" not in sys.modules and not _gpu_build():
        return {
            "version": str(build.get("__version__", UNKNOWN)),
            "cuda_version": NONE,
            "cudnn_version": NONE,
            "cuda_available": False,
            "device_count": 0,
        }
    import torch

    cudnn = None
    try:
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:  # noqa: BLE001 - a broken cuDNN must not break a run
        cudnn = None
    return {
        "version": torch.__version__,
        "cuda_version": torch.version.cuda or NONE,
        "cudnn_version": cudnn if cudnn is not None else NONE,
        "cuda_available": bool(torch.cuda.is_available()),
        "device_count": int(torch.cuda.device_count()) if torch.cuda.is_available() else 0,
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
    }


#: torch fields that are process state, left out of the fingerprint
TORCH_RUNTIME = ("num_threads", "num_interop_threads", "deterministic_algorithms")


@functools.lru_cache(maxsize=1)
def _torch_build_cached() -> tuple[tuple[str, Any], ...] | None:
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    values: dict[str, Any] = {}
    try:
        tree = ast.parse((Path(spec.submodule_search_locations[0]) / "version.py").read_text())
    except (OSError, SyntaxError, ValueError):
        return (("__version__", package_versions(("torch",))["torch"]), ("cuda", None))
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and isinstance(node, ast.Assign | ast.AnnAssign):
            try:
                values[target.id] = ast.literal_eval(node.value) if node.value else None
            except ValueError:
                continue
    return tuple((k, values.get(k)) for k in ("__version__", "cuda", "hip"))


def _gpu_build() -> bool:
    """Whether the installed torch was built with CUDA or ROCm (a CPU-only build sees no GPU)."""
    build = torch_build() or {}
    return build.get("cuda") is not None or build.get("hip") is not None


def torch_build() -> dict[str, Any] | None:
    """``__version__``, ``cuda`` and ``hip`` of the installed torch build, read from its
    ``version.py`` without importing torch; ``None`` when torch is not installed."""
    build = _torch_build_cached()
    return None if build is None else dict(build)


def gpu_info() -> list[dict[str, str]]:
    """One entry per visible GPU: ``name``, ``driver``, ``memory_total_mib`` (``nvidia-smi``),
    else names from ``torch.cuda.get_device_name``; ``[]`` without a GPU."""
    return [dict(g) for g in _gpu_info_cached()]


@functools.lru_cache(maxsize=1)
def _gpu_info_cached() -> tuple[tuple[tuple[str, str], ...], ...]:
    gpus = _nvidia_smi()
    if not gpus and torch_available() and _gpu_build():
        import torch

        if torch.cuda.is_available():
            gpus = [
                {"name": torch.cuda.get_device_name(i), "driver": UNKNOWN}
                for i in range(torch.cuda.device_count())
            ]
    return tuple(tuple(sorted(g.items())) for g in gpus)


def _nvidia_smi() -> list[dict[str, str]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    query = "--query-gpu=index,name,driver_version,memory.total"
    try:
        res = subprocess.run(
            [exe, query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in res.stdout.splitlines() if res.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            gpus.append(
                {
                    "index": parts[0],
                    "name": parts[1],
                    "driver": parts[2],
                    "memory_total_mib": parts[3],
                }
            )
    return gpus


def git_info(path: Path | None = None) -> dict[str, Any]:
    """``{"sha": ..., "dirty": bool}`` of the git checkout holding the ``bench`` package.

    ``dirty`` means tracked files differ from HEAD (untracked files are ignored, as in
    ``git describe --dirty``). ``{"sha": "unknown", "dirty": "unknown"}`` when ``bench`` is not
    in a checkout (an installed wheel) or git is unavailable.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    unknown: dict[str, Any] = {"sha": UNKNOWN, "dirty": UNKNOWN}
    tracked = _git(where, "ls-files", "--", ".")
    if not tracked:  # not a checkout, or bench lives inside some other repo untracked
        return unknown
    sha = _git(where, "rev-parse", "HEAD")
    status = _git(where, "status", "--porcelain", "--untracked-files=no")
    if sha is None or status is None:
        return unknown
    return {"sha": sha.strip(), "dirty": bool(status.strip())}


def _git(cwd: Path, *args: str) -> str | None:
    if shutil.which("git") is None:
        return None
    try:
        res = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


# --------------------------------------------------------------------------------------------
# tags and devices


def device_tags(device: str) -> dict[str, str]:
    """MLflow tags naming the hardware/software a run's efficiency figures come from.

    ``bench.device`` is ``cpu:<CPU model>`` or ``cuda:<GPU name>``; latency and throughput are
    comparable only between runs with the same ``bench.device`` (and threads).
    ``bench.cuda_version`` is the CUDA version of torch on a CUDA run, ``none`` on a CPU run;
    ``bench.threads`` is ``OMP_NUM_THREADS`` if set, else the CPUs the process may use (torch's
    own thread counts are in ``environment.json``). For a CPU device this imports no torch, so a
    run's ``peak_memory_mb`` does not pay for a library its model does not use.
    """
    cuda = device.startswith("cuda")
    tinfo = torch_info() if cuda else {}
    cpu = cpu_model()
    gpu = _gpu_for(device) if cuda else {}
    hw = f"cuda:{gpu.get('name', UNKNOWN)}" if cuda else f"cpu:{cpu}"
    torch_version = tinfo.get("version") or package_versions(("torch",))["torch"]
    return {
        "bench.device": hw,
        "bench.gpu_name": gpu.get("name", NONE),
        "bench.gpu_driver": gpu.get("driver", NONE),
        "bench.cuda_version": str(tinfo.get("cuda_version", NONE)),
        "bench.torch_version": str(torch_version),
        "bench.cpu_model": cpu,
        "bench.threads": str(thread_count()),
    }


def thread_count() -> int:
    """``OMP_NUM_THREADS`` when set to a positive integer, else the CPUs this process may use."""
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return _affinity_count() or os.cpu_count() or 1


def _gpu_for(device: str) -> dict[str, str]:
    """The GPU entry of ``cuda`` / ``cuda:<n>`` (index among the visible devices)."""
    gpus = gpu_info()
    index = int(device.split(":", 1)[1]) if ":" in device else _current_cuda_index()
    if 0 <= index < len(gpus):
        return gpus[index]
    return {"name": UNKNOWN, "driver": UNKNOWN}


def _current_cuda_index() -> int:
    try:
        import torch

        return int(torch.cuda.current_device())
    except Exception:  # noqa: BLE001 - tags must not fail a run
        return 0


_DEVICE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def resolve_device(requested: str) -> str:
    """``auto`` -> ``cuda`` if a CUDA device is usable, else ``cpu``; ``cpu``, ``cuda`` and
    ``cuda:<n>`` are checked and returned as given. A CUDA device that does not exist is a
    one-line ``ConfigError``."""
    req = str(requested).strip().lower()
    m = _DEVICE.match(req)
    if m is None or (m.group(2) is not None and m.group(1) != "cuda"):
        options = ("auto", "cpu", "cuda", "cuda:<n>")
        hint = " (did you mean 'cuda'?)" if req.startswith("gpu") else did_you_mean(req, options)
        raise ConfigError(f"unknown device '{requested}'{hint}; valid: {', '.join(options)}")
    if req == "cpu":
        return "cpu"
    n = _cuda_device_count()
    if req == "auto":
        return "cuda" if n > 0 else "cpu"
    if n == 0:
        why = "torch is not installed" if not torch_available() else _no_cuda_reason()
        raise ConfigError(f"device={requested} was requested but {why}; use device=cpu or auto")
    index = int(m.group(2) or 0)
    if index >= n:
        raise ConfigError(
            f"device={requested} was requested but only {n} CUDA device(s) are visible "
            f"(cuda:0..cuda:{n - 1})"
        )
    return req


def _cuda_device_count() -> int:
    if not torch_available() or not _gpu_build():
        return 0
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def _no_cuda_reason() -> str:
    import torch

    if torch.version.cuda is None:
        return f"this torch build ({torch.__version__}) has no CUDA support"
    return "no CUDA device is available (driver missing or CUDA_VISIBLE_DEVICES empty)"
