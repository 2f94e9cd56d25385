"""The one file digest of the project (splits, dataset pins, LLM model identity, caches)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path | str, chunk: int = 1 << 22) -> str:
    """sha256 hex digest of a file's bytes (read in chunks, never cached: integrity checks
    must see an edit even when the file's size and mtime were kept)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
