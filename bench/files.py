"""The one place the harness writes atomically: ``write_atomically`` for a file,
``write_folder_atomically`` for a folder.

Both write into a hidden temporary sibling of the target (``.<name>.*.tmp``) and rename it into
place only when it is complete: an interrupted write never leaves half a file or folder, the old
content stays until the new one is complete, and on any failure (an exception, Ctrl-C) the
temporary is removed. What is renamed into place gets the mode ``open`` or ``mkdir`` would give
it (0o666 / 0o777 minus the umask; ``tempfile`` makes 0600 files and 0700 folders).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

#: what ``write_folder_atomically`` does with a folder already at the target
EXISTING = ("keep", "swap", "merge")


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


def normal_file_mode() -> int:
    """The mode a plain ``open`` gives a new file (0o666 minus the umask)."""
    return normal_dir_mode() & 0o666


def write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temporary file next to ``target``, then rename it into place: an
    interrupted write never leaves a half file, and the old file stays until the new one is
    complete. The file gets the mode a plain ``open`` would give it (0o666 minus the umask).
    The folder of ``target`` must exist."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, normal_file_mode())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_folder_atomically(
    target: Path,
    write: Callable[[Path], object],
    *,
    existing: str = "keep",
    last: Collection[str] = (),
) -> bool:
    """``write(tmp)`` into a new temporary folder next to ``target`` (its parents are made),
    give it the mode ``mkdir`` would, then put it in place. Returns False only when
    ``existing="keep"`` found a folder already there (ours is discarded).

    ``existing`` says what happens to a folder already at ``target``:

    - ``keep`` (splits): it is never touched; when another process renamed its folder into
      place first, ours is removed and the caller uses theirs.
    - ``swap`` (reports): it is moved aside, the new folder renamed in, and the old one deleted
      only then (moved back if the rename fails).
    - ``merge`` (fetched datasets): the new entries are renamed into it one by one (a sub-folder
      of the same name is replaced), the names in ``last`` (a lock file) after all others;
      its other entries stay.

    ``write`` may raise to abandon the folder (e.g. a last check before it is placed): the
    temporary folder is removed and ``target`` is as it was."""
    if existing not in EXISTING:
        raise ValueError(f"existing must be one of {', '.join(EXISTING)}, got {existing!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        write(tmp)
        os.chmod(tmp, normal_dir_mode())
        return _PLACE[existing](tmp, target, last)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # already gone once renamed into place


def _keep(tmp: Path, target: Path, last: Collection[str]) -> bool:
    try:
        os.rename(tmp, target)
    except OSError:
        if not target.exists():
            raise
        return False  # another process made it first
    return True


def _swap(tmp: Path, target: Path, last: Collection[str]) -> bool:
    if not target.is_dir():
        os.replace(tmp, target)
        return True
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    old = aside / target.name
    try:
        os.replace(target, old)
    except BaseException:
        aside.rmdir()
        raise
    try:
        os.replace(tmp, target)
    except BaseException:
        if not target.exists():
            os.replace(old, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return True


def _merge(tmp: Path, target: Path, last: Collection[str]) -> bool:
    if not target.exists():
        os.replace(tmp, target)
        return True
    for entry in sorted(tmp.iterdir(), key=lambda p: p.name in last):
        dest = target / entry.name
        if dest.is_dir() and entry.is_dir():
            shutil.rmtree(dest)
        os.replace(entry, dest)
    return True


_PLACE: dict[str, Callable[[Path, Path, Collection[str]], bool]] = {
    "keep": _keep,
    "swap": _swap,
    "merge": _merge,
}


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
