"""What the harness says on the terminal: one-line ``[bench]`` messages on stderr, and whether
progress bars are shown.

Models print through ``say`` too (``say("warning: llm-rerank: ...")``), so every line a run
prints has the same prefix and goes to the same stream; stdout stays for results (the
leaderboard).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["progress_enabled", "say"]


def say(msg: str, who: str = "bench") -> None:
    """Print ``[<who>] <msg>`` on stderr, flushed (so it interleaves with bars and logs);
    ``bench tune`` says ``[bench tune]``."""
    print(f"[{who}] {msg}", file=sys.stderr, flush=True)


def progress_enabled(cfg: Mapping[str, Any]) -> bool:
    """The config's ``progress``: ``auto`` (the default) shows bars only when stderr is a
    terminal; ``true``/``false`` force it."""
    p = cfg.get("progress", "auto")
    if p == "auto":
        return sys.stderr.isatty()
    return bool(p)
