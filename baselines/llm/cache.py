"""The replay cache of the LLM backends: every successful reply stored on disk under a key
that names the model (``hf_identity`` / ``openai_identity``), the prompt and the decoding, so a
re-run replays instead of calling the LLM again.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from baselines.llm.common import hash_model_dir, sha256_json
from baselines.llm.http import normalise_base_url

__all__ = ["ReplayCache", "cache_key", "hf_identity", "openai_identity"]


class ReplayCache:
    """Successful LLM responses on disk (SQLite, JSON values; no pickle), keyed by sha256.

    Safe for several processes of one sweep on a local disk (WAL + busy timeout).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), timeout=60, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=60000")
        with contextlib.suppress(sqlite3.OperationalError):  # e.g. unsupported filesystem
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS replay (key TEXT PRIMARY KEY, value TEXT)")

    def get(self, key: str) -> Any | None:
        row = self._db.execute("SELECT value FROM replay WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO replay (key, value) VALUES (?, ?)", (key, json.dumps(value))
        )

    def close(self) -> None:
        self._db.close()


def hf_identity(path: str | Path, revision: str = "") -> dict[str, Any]:
    """Replay-cache identity of a local model: the content sha256 of its folder and
    ``revision``."""
    return {"backend": "hf", "model_sha256": hash_model_dir(path), "rev": revision}


def openai_identity(base_url: str, model: str, revision: str = "") -> dict[str, Any]:
    """Replay-cache identity of a served model: the normalised endpoint, the model name and
    ``revision``. Another server (or a dead one) never replays this server's answers."""
    return {
        "backend": "openai",
        "endpoint": normalise_base_url(base_url),
        "model": model,
        "rev": revision,
    }


def cache_key(identity: dict[str, Any], **parts: Any) -> str:
    """Replay-cache key: backend + model identity + template/prompt hashes + decoding + seed."""
    return sha256_json({"identity": identity, **parts})
