"""Writing files and folders so that nothing is half written and modes are what ``mkdir`` and
``open`` would give (``tempfile`` makes 0600 files and 0700 folders)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def normal_dir_mode() -> int:
    """The mode ``mkdir`` gives a new folder (0o777 minus the umask). ``tempfile.mkdtemp``
    makes 0700 folders; a split or report renamed into place gets this mode instead."""
    try:  # Linux: read the umask without changing it (os.umask() is process-wide)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o777 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o777 & ~mask


def write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temporary file next to ``target``, then rename it into place: an
    interrupted write never leaves a half file, and the old file stays until the new one is
    complete. The file gets the mode a plain ``open`` would give it (0o666 minus the umask)."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, normal_dir_mode() & 0o666)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_yaml(path: Path, what: str) -> Any:
    """A YAML file's content; a syntax error is one ``ConfigError`` naming ``what`` (e.g.
    ``report spec reports/specs/x.yaml``) and the line."""
    import yaml

    from bench.errors import ConfigError

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", -1) + 1
        raise ConfigError(f"{what} is not valid YAML (line {line})") from exc
