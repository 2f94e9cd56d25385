"""``bench data list | info <id> | fetch <id> | verify <id>``: the datasets and their files."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bench.data import fetch
from bench.data.contract import DatasetWarning
from bench.data.datasets import (
    CONF_DATASET_DIR,
    DatasetSpec,
    dataset_names,
    load_dataset,
    load_manifest,
    resolve_directory,
    verify_pins,
)
from bench.data.paths import check_name
from bench.errors import DataError

DESCRIPTION = """Datasets: list, show one, fetch (download, verify, unpack), verify their files.

Files live under the data root: --data-root, else $BENCH_DATA_ROOT, else ./data.
A dataset is also fetched on first use by `bench run dataset=<id>`.
BENCH_DATA_MIRROR=<url> fetches https://<host>/<path> from <url>/<host>/<path> instead;
BENCH_OFFLINE=1 never downloads (a missing dataset is one line naming URL, folder, files)."""


def dataset_config(name: str, data_root: str | None) -> dict[str, Any]:
    """``conf/dataset/<id>.yaml`` (when it exists) over the manifest's ``load`` defaults."""
    manifest = load_manifest(name)
    path = CONF_DATASET_DIR / f"{name}.yaml"
    conf = yaml.safe_load(path.read_text()) if path.is_file() else {}
    cfg = {**dict(manifest.get("load") or {}), **dict(conf or {}), "name": name}
    if data_root:
        cfg["data_root"] = data_root
    return cfg


def _directory(name: str, cfg: Mapping[str, Any]) -> Path | None:
    if cfg.get("loader") == "synthetic":
        return None
    return resolve_directory(name, cfg)[0]


def status(name: str, data_root: str | None) -> str:
    """``present`` / ``missing`` / ``bundled`` / ``generated`` for the list."""
    manifest = load_manifest(name)
    cfg = dataset_config(name, data_root)
    if cfg.get("loader") == "synthetic":
        return "generated"
    if str(cfg.get("path", "")).startswith("recbole://"):
        return "bundled"
    spec = fetch.fetch_spec(manifest)
    directory = _directory(name, cfg)
    if spec is None or directory is None:
        return "?"
    absent = fetch.missing(spec, directory)
    if absent:
        return "missing"
    return "fetched" if (directory / fetch.LOCK_NAME).is_file() else "present (no lock)"


def cmd_list(a: argparse.Namespace) -> int:
    rows = []
    for name in dataset_names():
        m = load_manifest(name)
        rows.append((name, str(m.get("checksum", "?")), status(name, a.data_root), m.get("title")))
    width = [max(len(str(r[i])) for r in rows) for i in range(3)]
    print(f"{'id':<{width[0]}}  {'checksum':<{width[1]}}  {'status':<{width[2]}}  title")
    for r in rows:
        print(f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]:<{width[2]}}  {r[3]}")
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    m = load_manifest(a.id)
    cfg = dataset_config(a.id, a.data_root)
    spec = fetch.fetch_spec(m)
    directory = _directory(a.id, cfg)
    lines = [
        ("id", a.id),
        ("title", m.get("title")),
        ("loader", cfg.get("loader")),
        ("folder", directory if directory is not None else "(generated, no files)"),
        ("status", status(a.id, a.data_root)),
        ("urls", ", ".join(spec.urls) if spec else (m.get("source") or {}).get("origin")),
        ("files", ", ".join(spec.expect) if spec else ", ".join(m.get("sha256") or {})),
        ("checksum", m.get("checksum")),
        ("expected", ", ".join(f"{k} {v}" for k, v in (m.get("expected") or {}).items())),
        ("recorded", _recorded_counts(directory)),
        ("licence", " ".join(str(m.get("licence", "")).split())),
        ("citation", " ".join(str(m.get("citation", "")).split())),
        ("manifest", m.get("_path")),
    ]
    for key, value in lines:
        print(f"{key + ':':<10} {value if value not in (None, '') else '-'}")
    return 0


def _recorded_counts(directory: Path | None) -> str:
    """Counts the lock file recorded at first loads (one entry per loader configuration)."""
    lock = fetch.read_lock(directory) if directory is not None and directory.is_dir() else None
    counts = list(((lock or {}).get("counts") or {}).values())
    return "; ".join(", ".join(f"{k} {v:,}" for k, v in c.items()) for c in counts)


def _fetchable(name: str, data_root: str | None) -> tuple[fetch.FetchSpec, Path]:
    m = load_manifest(name)
    spec = fetch.fetch_spec(m)
    directory = _directory(name, dataset_config(name, data_root))
    if spec is None or directory is None:
        raise DataError(
            f"dataset '{name}' has nothing to fetch (checksum rule {m.get('checksum')!r}: "
            f"{(m.get('source') or {}).get('location', 'see its manifest')}); "
            f"`bench data info {name}` says where its data comes from"
        )
    return spec, directory


def cmd_fetch(a: argparse.Namespace) -> int:
    spec, directory = _fetchable(a.id, a.data_root)
    if not fetch.ensure(spec, directory, mirror=a.mirror):
        print(f"dataset '{a.id}' is already in {directory}")
    fetch.verify_lock(directory, a.id)
    print(f"ok: {a.id} in {directory} ({', '.join(spec.expect)})")
    return 0


def cmd_verify(a: argparse.Namespace) -> int:
    m = load_manifest(a.id)
    cfg = dataset_config(a.id, a.data_root)
    directory = _directory(a.id, cfg)
    spec = fetch.fetch_spec(m)
    if directory is not None:
        absent = fetch.missing(spec, directory) if spec is not None else []
        if spec is not None and absent:
            raise DataError(
                f"dataset '{a.id}': {', '.join(absent)} missing in {directory}; run "
                f"`bench data fetch {a.id}`, or {fetch.manual_hint(spec, directory)}"
            )
        lock = fetch.verify_lock(directory, a.id) if directory.is_dir() else None
        verify_pins(DatasetSpec(a.id, directory, resolve_directory(a.id, cfg)[1], cfg, m))
        pins = [f for f, v in (m.get("sha256") or {}).items() if v]
        said = [f"{len(lock['files'])} file(s) match {directory / fetch.LOCK_NAME}"] if lock else []
        said += [f"{len(pins)} file(s) match the manifest's sha256 pins"] if pins else []
        none = "nothing recorded to check (files put there by hand, no pins)"
        print(f"checksums ok: {'; '.join(said) or none}")
    else:
        print(f"dataset '{a.id}' is generated: no files to check")
    if a.counts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DatasetWarning)
            ds = load_dataset(cfg)
        check_counts_strict(a.id, ds.counts(), m.get("expected") or {})
    return 0


def check_counts_strict(name: str, got: Mapping[str, int], expected: Mapping[str, Any]) -> None:
    """Every pinned count must match (``bench data verify --counts``); unpinned ones are shown."""
    for key in ("interactions", "users", "items"):
        want = expected.get(key)
        if want is not None and int(want) != got[key]:
            raise DataError(
                f"dataset '{name}': {got[key]:,} {key} loaded, its manifest expects "
                f"{int(want):,}; the files are not the complete release: delete the folder and "
                f"run `bench data fetch {name}`"
            )
        note = "" if want is not None else " (not pinned)"
        print(f"{key}: {got[key]:,}{note}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench data",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="{list,info,fetch,verify}")
    sub.required = True

    def add(name: str, help_: str, with_id: bool = True) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_, description=help_)
        if with_id:
            s.add_argument("id", help="dataset id (`bench data list` shows them)")
        s.add_argument("--data-root", help="data root (default: $BENCH_DATA_ROOT, else ./data)")
        return s

    add("list", "the datasets, their checksum rule and whether their files are here", False)
    add("info", "source URLs, folder, files, checksum rule, licence, citation, expected counts")
    f = add("fetch", "download, verify and unpack a dataset (resumes an interrupted download)")
    f.add_argument("--mirror", help="base URL of a mirror (default: $BENCH_DATA_MIRROR)")
    v = add("verify", "check a dataset's files against its lock file and manifest pins")
    v.add_argument("--counts", action="store_true", help="also load it and check the counts")
    return p


COMMANDS = {"list": cmd_list, "info": cmd_info, "fetch": cmd_fetch, "verify": cmd_verify}


def data_main(argv: list[str]) -> int:
    a = parser().parse_args(argv)
    if getattr(a, "id", None) is not None:
        check_name(a.id)
    return COMMANDS[a.command](a)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(data_main(sys.argv[1:]))
