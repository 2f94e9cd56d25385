"""Where a report may be written: ``--out`` is refused when replacing it could lose data (the
working or home directory, the tracking store or its artifacts, a split folder, a folder
``bench report`` did not write), and the report is built aside and swapped into place only
when complete (``bench.files.write_folder_atomically``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from bench.files import write_folder_atomically
from bench.report.runs import ReportError
from bench.splits import is_split_folder, split_folder_holding
from bench.tracking import sqlite_path

#: ``provenance.json["generator"]``: marks a folder written by ``bench report`` (``--force``
#: replaces only such a folder, or an empty one)
GENERATOR = "bench report"


def _within(inner: Path, outer: Path) -> bool:
    """``inner`` is ``outer`` or lies inside it (both resolved)."""
    return inner == outer or outer in inner.parents


def protected_paths(uri: str, mlflow_client: Any = None) -> list[tuple[Path, str]]:
    """What an ``--out`` may never be or contain: the tracking store file, its artifact
    root(s), the working directory and the home directory, with their description."""
    out: list[tuple[Path, str]] = [(Path.cwd().resolve(), "the current working directory"),
                                   (Path.home().resolve(), "your home directory")]
    db = sqlite_path(uri)
    if db is not None:
        db = Path(db).resolve()
        art = db.parent / "mlartifacts"  # where bench.tracking puts a sqlite store's artifacts
        out += [(db, "the MLflow tracking store"), (art, "the MLflow artifact root")]
    for location in _artifact_locations(mlflow_client):
        out.append((location, "the MLflow artifact root"))
    return out


def _artifact_locations(mlflow_client: Any) -> list[Path]:
    """Local artifact roots of the store's experiments (``file:`` URIs or plain paths)."""
    if mlflow_client is None:
        return []
    try:
        from mlflow.entities import ViewType

        exps = mlflow_client.search_experiments(view_type=ViewType.ALL)
    except Exception:  # noqa: BLE001 - the cwd/home/store checks still apply
        return []
    roots = []
    for exp in exps:
        loc = str(getattr(exp, "artifact_location", "") or "")
        parts = urlsplit(loc)
        if parts.scheme == "file":
            roots.append(Path(unquote(parts.path)).resolve())
        elif not parts.scheme and loc:
            roots.append(Path(loc).resolve())
    return roots


def refuse_protected(out: Path, protected: list[tuple[Path, str]]) -> None:
    """Refuse an ``--out`` that is or holds a protected path or a split folder (before any
    store is opened, and again with the experiments' artifact roots)."""
    for path, what in protected:
        if _within(path, out):
            found = f"is {what}" if path == out else f"contains {what} {path}"
            raise ReportError(f"--out {out} {found}, which bench report never replaces; "
                              "choose a new --out, e.g. reports/out/NAME")
    split = split_folder_holding(out)
    if split is not None:
        found = "is a split folder" if split == out else f"is inside the split folder {split}"
        raise ReportError(f"--out {out} {found}, which bench report never writes to; choose "
                          "a new --out, e.g. reports/out/NAME")
    if out.is_dir():
        for root, dirs, _ in os.walk(out):
            depth = len(Path(root).relative_to(out).parts)
            for d in dirs:
                if is_split_folder(Path(root) / d):
                    raise ReportError(f"--out {out} contains the split folder {Path(root) / d}, "
                                      "which bench report never replaces; choose a new --out, "
                                      "e.g. reports/out/NAME")
            if depth >= 4:
                dirs.clear()


def report_folder_problem(out: Path) -> str | None:
    """Why ``out`` is not a folder that ``bench report`` wrote (``None`` if it is): it must
    hold a provenance.json written by bench report and only the files that lists."""
    prov_path = out / "provenance.json"
    if not prov_path.is_file():
        return "is not a report folder (no provenance.json written by bench report)"
    try:
        prov = json.loads(prov_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "is not a report folder (its provenance.json is not valid JSON)"
    if not isinstance(prov, dict):
        return "is not a report folder (its provenance.json was not written by bench report)"
    command = prov.get("command")
    ours = prov.get("generator") == GENERATOR or (  # reports made before the marker existed
        isinstance(command, list) and command[:2] == ["bench", "report"])
    if not ours:
        return "is not a report folder (its provenance.json was not written by bench report)"
    listed = {str(f) for f in prov.get("files") or []} | {"provenance.json", "README.md"}
    extra = sorted(p.name for p in out.iterdir() if p.name not in listed or p.is_dir())
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        return (f"holds {shown}, which bench report did not write (move "
                f"{'it' if len(extra) == 1 else 'them'} out first)")
    return None


def check_out(out: Path, force: bool, protected: list[tuple[Path, str]] | None = None) -> None:
    """Refuse an ``--out`` that would lose data: a file; the tracking store, its artifacts,
    the working or home directory or a split folder (or a folder holding one); a non-empty
    folder without ``--force``; with ``--force``, a non-empty folder bench report did not
    write."""
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file; give a folder")
    refuse_protected(out, protected or [])
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise ReportError(f"--out {out} exists and is not empty; choose another folder or add "
                          "--force to replace it")
    problem = report_folder_problem(out)
    if problem:
        raise ReportError(f"--out {out} {problem}; --force replaces only a folder written by "
                          "bench report; choose a new --out")


def write_out(out: Path, force: bool, write: Callable[[Path], object],
              protected: Callable[[], list[tuple[Path, str]]]) -> None:
    """``write(tmp)`` the report into a new folder next to ``out``, check ``out`` once more
    (it may have changed while the report was built) and swap the new folder into its place;
    a failed or refused build leaves ``out`` as it was."""

    def write_checked(tmp: Path) -> None:
        write(tmp)
        check_out(out, force, protected())  # unchanged while we built

    write_folder_atomically(out, write_checked, existing="swap")
