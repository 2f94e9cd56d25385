"""User-facing errors: one line, names the file/field/value and the fix, exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """An error caused by user input. The CLI prints ``error: <message>`` and exits with 2."""

    exit_code = 2


class ConfigError(BenchError):
    """A config value, override or name that does not exist or does not validate."""


class DataError(BenchError):
    """A data file that is missing, malformed, of the wrong type, or empty."""


class IntegrityError(BenchError):
    """A split file whose checksum differs from its manifest, or a split from another config."""


class TrackingError(BenchError):
    """The tracking store cannot be used as asked (unsafe location, wrong schema, ...)."""


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or an empty string."""
    close = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown(kind: str, name: str, options: Iterable[str], where: str = "") -> ConfigError:
    """The standard error for an unknown model/dataset/split/metric/parameter name."""
    opts = sorted(str(o) for o in options)
    loc = f" in {where}" if where else ""
    return ConfigError(
        f"unknown {kind} '{name}'{loc}{did_you_mean(name, opts)}; available: {', '.join(opts)}"
    )


class DiskFullError(BenchError):
    """A write failed because the filesystem (or a quota) is full: ``disk full: <path> ...``."""


_FULL_TEXT = ("no space left on device", "database or disk is full", "disk quota exceeded")


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` or anything in its cause/context chain is ENOSPC/EDQUOT (or SQLite's
    'database or disk is full', which MLflow and SQLAlchemy wrap in their own types)."""
    import errno

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(t in str(e).lower() for t in _FULL_TEXT):
            return True
        e = e.__cause__ or e.__context__
    return False


def disk_full(exc: BaseException, path: object, doing: str) -> DiskFullError:
    """The one-line error for a full disk while ``doing`` (e.g. 'writing the split'), naming
    the file the OS names, else ``path``."""
    e: BaseException | None = exc
    name = None
    while e is not None and name is None:
        name = getattr(e, "filename", None) if isinstance(e, OSError) else None
        e = e.__cause__ or e.__context__
    return DiskFullError(
        f"disk full: {name or path}: no space left while {doing}; free space (or point it "
        f"elsewhere) and run again"
    )
