"""Dataset files on disk: the data root, plain dataset names, paths confined to the root, files
that must exist, and the memoised sha256 of source files.

Every name from a config is checked before any I/O: ``..`` and absolute paths outside the root
are refused lexically, symlinks escaping the root after resolution (``confine``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from bench.data.text import short
from bench.errors import DataError
from bench.hashing import sha256_file as _sha256_file


def confine(root: Path | str, relative: str | Path, what: str = "file") -> Path:
    """``root / relative``, refused unless it stays under ``root`` (also through symlinks).

    ``..`` components and absolute paths outside the root are refused lexically, before any I/O;
    symlinks are then resolved and the target must still lie under the resolved root.
    """
    root = Path(root).absolute()
    rel = Path(str(relative))
    if str(relative).strip() == "" or ".." in rel.parts:
        raise DataError(
            f"{what} '{relative}' is not allowed: paths must stay under {root} (no '..'); "
            f"use a plain name or a path relative to {root}"
        )
    candidate = rel if rel.is_absolute() else root / rel
    if not _is_under(candidate, root):
        raise DataError(
            f"{what} '{relative}' is outside the data root {root}; move the files under it or "
            f"set data_root (env BENCH_DATA_ROOT)"
        )
    resolved = candidate.resolve()
    if not _is_under(resolved, root.resolve()):
        raise DataError(
            f"{what} '{relative}' resolves to {resolved}, outside the data root {root.resolve()} "
            f"(symlink escaping the root); copy the file under the data root instead"
        )
    return candidate


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def require_file(path: Path, loader: str, expected: Sequence[str] = ()) -> Path:
    """The file must exist and be non-empty; otherwise say what the folder holds."""
    if not path.is_file():
        folder = path.parent
        if not folder.is_dir():
            raise DataError(
                f"{path}: file not found and folder {folder} does not exist; put the dataset "
                f"files there (the {loader} loader reads {', '.join(expected) or path.name}) or "
                f"set data_root (env BENCH_DATA_ROOT) / path in the dataset config"
            )
        found = sorted(p.name for p in folder.iterdir())[:20]
        raise DataError(
            f"{path}: file not found; {folder} contains: {', '.join(found) or '(nothing)'}; "
            f"the {loader} loader reads {', '.join(expected) or path.name} (rename the file or set "
            f"files.<role> in the dataset config)"
        )
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes); re-download or re-export it")
    return path


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path | str, chunk: int = 1 << 22) -> str:
    """sha256 hex digest of a dataset source file, memoised on (path, size, mtime): dataset
    sources are large and read once per run; split files are always re-hashed
    (``bench.hashing``)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = _sha256_file(p, chunk)
    return _SHA_CACHE[key]


def source_digests(paths: Sequence[Path | None]) -> dict[str, str]:
    """``{absolute path: sha256}`` of a dataset's source files (``RawDataset.source_files``)."""
    return {str(Path(p).absolute()): sha256_file(p) for p in paths if p is not None}


def env_data_root() -> Path:
    """``$BENCH_DATA_ROOT`` or ``<cwd>/data``."""
    return Path(os.environ.get("BENCH_DATA_ROOT") or Path.cwd() / "data").absolute()


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def check_name(name: str, what: str = "dataset name") -> str:
    """A plain name (letters, digits, ``._+-``; no ``/``, no ``..``), checked before any I/O."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise DataError(
            f"{what} {short(name)} is not a plain name: use letters, digits, '.', '_', '+', '-' "
            f"(no '/', no '..'; datasets live under the data root)"
        )
    return name
