"""Datasets by name: manifests (``datasets/<id>/manifest.yaml``), data root, checksums, loaders.

``load_dataset(cfg)`` takes a ``conf/dataset/*.yaml`` mapping, resolves its files under the data
root (``data_root`` key, else ``$BENCH_DATA_ROOT``, else ``<cwd>/data``) with every name confined
to that root before any I/O, verifies the sha256 pins of the dataset's manifest before parsing,
dispatches on ``loader`` through ``LOADERS`` and warns when the counts differ from the manifest's.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.data import fetch
from bench.data.contract import DatasetWarning, RawDataset
from bench.data.formats.movielens import (
    load_movielens_1m,
    load_movielens_100k_raw,
    load_movielens_csv,
)
from bench.data.formats.recbole import load_recbole_atomic
from bench.data.formats.table import load_table
from bench.data.paths import check_name, confine, env_data_root, sha256_file
from bench.errors import ConfigError, DataError, unknown

REPO_ROOT = Path(__file__).resolve().parents[2]  # parent of the `bench` package
MANIFEST_DIR = REPO_ROOT / "datasets"
CONF_DATASET_DIR = REPO_ROOT / "conf" / "dataset"
RECBOLE_SCHEME = "recbole://"


@dataclass(frozen=True)
class DatasetSpec:
    """A resolved dataset config: what a registered loader receives."""

    name: str
    directory: Path  # the dataset folder (confined under root)
    root: Path  # the data root, or the RecBole example folder for recbole://
    cfg: Mapping[str, Any]
    manifest: Mapping[str, Any] = field(default_factory=dict)

    def file(self, role: str, default: str | None) -> Path | None:
        """``files.<role>`` (or the default) confined under the data root; None if unset."""
        name = dict(self.cfg.get("files") or {}).get(role, default)
        if name is None:
            return None
        path = confine(self.directory, name, what=f"files.{role}")
        return confine(self.root, path, what=f"files.{role}")

    @property
    def threshold(self) -> float | None:
        if "relevance_threshold" in self.cfg:
            value = self.cfg["relevance_threshold"]
        else:
            value = self.manifest.get("relevance_threshold")
        return None if value is None else float(value)


# --------------------------------------------------------------------------------------------
# loaders registry: name -> function(DatasetSpec) -> RawDataset


def _recbole_atomic(spec: DatasetSpec) -> RawDataset:
    return load_recbole_atomic(
        spec.directory,
        str(spec.cfg.get("atomic_name") or spec.directory.name),
        name=spec.name,
        fields=spec.cfg.get("fields"),
        seq_separator=str(spec.cfg.get("seq_separator", " ")),
        relevance_threshold=spec.threshold,
    )


def _movielens(fn: Callable[..., RawDataset]) -> Callable[[DatasetSpec], RawDataset]:
    def load(spec: DatasetSpec) -> RawDataset:
        files = {k: v for k, v in dict(spec.cfg.get("files") or {}).items()}
        for name in files.values():
            if name is not None:
                confine(spec.root, confine(spec.directory, name), what="file")
        return fn(spec.directory, name=spec.name, files=files, relevance_threshold=spec.threshold)

    return load


def _table(spec: DatasetSpec) -> RawDataset:
    columns = spec.cfg.get("columns")
    if not columns:
        raise ConfigError(
            f"dataset '{spec.name}': the table loader needs columns: {{user_id: ..., item_id: ..., "
            f"timestamp: ..., rating: ...}} mapping contract names to the file's columns"
        )
    interactions = spec.file("interactions", None)
    if interactions is None:
        raise ConfigError(
            f"dataset '{spec.name}': the table loader needs files.interactions (a CSV or Parquet "
            f"file relative to {spec.directory})"
        )
    return load_table(
        interactions,
        name=spec.name,
        columns=dict(columns),
        items=spec.file("items", None),
        users=spec.file("users", None),
        item_columns=spec.cfg.get("item_columns"),
        user_columns=spec.cfg.get("user_columns"),
        separator=str(spec.cfg.get("separator", ",")),
        header=bool(spec.cfg.get("header", True)),
        names=spec.cfg.get("names"),
        timestamp_format=str(spec.cfg.get("timestamp_format", "seconds")),
        list_separator=str(spec.cfg.get("list_separator", "|")),
        relevance_threshold=spec.threshold,
    )


def _synthetic(spec: DatasetSpec) -> RawDataset:
    from bench.data.synthetic import config_from, generate

    params = dict(spec.cfg.get("params") or {})
    if "relevance_threshold" in spec.cfg:
        params["relevance_threshold"] = spec.threshold
    try:
        return generate(config_from(params), name=spec.name)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"dataset '{spec.name}': {e}") from None


def _amazon2023(spec: DatasetSpec) -> RawDataset:
    from bench.data.formats import amazon2023

    category = spec.cfg.get("category")
    if not category:
        raise ConfigError(
            f"dataset '{spec.name}': the amazon2023 loader needs category: <Category> (the file "
            f"stem of <Category>.jsonl.gz, e.g. All_Beauty)"
        )
    files = dict(spec.cfg.get("files") or {})
    for fname in files.values():
        if fname is not None:
            confine(spec.root, confine(spec.directory, fname), what="file")
    return amazon2023.load(
        spec.directory,
        name=spec.name,
        category=check_name(str(category), what="category"),
        files=files,
        relevance_threshold=spec.threshold,
    )


def _mind(spec: DatasetSpec) -> RawDataset:
    from bench.data.formats import mind

    parts = spec.cfg.get("parts") or ("train", "dev")
    parts = [check_name(str(p), what="MIND part") for p in parts]
    return mind.load(
        spec.directory, name=spec.name, parts=parts, relevance_threshold=spec.threshold
    )


LOADERS: dict[str, Callable[[DatasetSpec], RawDataset]] = {
    "recbole_atomic": _recbole_atomic,
    "movielens_100k_raw": _movielens(load_movielens_100k_raw),
    "movielens_1m": _movielens(load_movielens_1m),
    "movielens_csv": _movielens(load_movielens_csv),
    "table": _table,
    "amazon2023": _amazon2023,
    "mind": _mind,
    "synthetic": _synthetic,
}
NO_FILES = {"synthetic"}


# --------------------------------------------------------------------------------------------
# manifests


def _manifest_dir(manifest_dir: Path | str | None) -> Path:
    return Path(manifest_dir) if manifest_dir is not None else MANIFEST_DIR


def dataset_names(manifest_dir: Path | str | None = None) -> list[str]:
    """Ids of the datasets with a ``<manifest_dir>/<id>/manifest.yaml`` (default: repo's)."""
    d = _manifest_dir(manifest_dir)
    return sorted(p.parent.name for p in d.glob("*/manifest.yaml")) if d.is_dir() else []


def load_manifest(name: str, manifest_dir: Path | str | None = None) -> dict[str, Any]:
    """The parsed manifest of ``name``; unknown names list the known ones (did-you-mean)."""
    check_name(name)
    path = _manifest_dir(manifest_dir) / name / "manifest.yaml"
    if not path.is_file():
        raise unknown("dataset", name, dataset_names(manifest_dir))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    data["_path"] = str(path)
    return data


# --------------------------------------------------------------------------------------------
# resolving paths


def data_root(cfg: Mapping[str, Any] | None = None) -> Path:
    """``cfg['data_root']``, else ``$BENCH_DATA_ROOT``, else ``<cwd>/data`` (absolute)."""
    value = (cfg or {}).get("data_root")
    return Path(value).expanduser().absolute() if value else env_data_root()


def recbole_examples() -> Path:
    """``<site-packages>/recbole/dataset_example`` without importing recbole."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "path recbole://... needs the recbole package (its wheel ships the example datasets); "
            "install recbole==1.2.1 or point path at a copy under the data root"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "dataset_example"


def resolve_directory(name: str, cfg: Mapping[str, Any]) -> tuple[Path, Path]:
    """(dataset folder, root it is confined to) from ``path`` (default: the dataset name)."""
    path = str(cfg.get("path") or name)
    if path.startswith(RECBOLE_SCHEME):
        sub = check_name(path[len(RECBOLE_SCHEME) :], what="recbole example name")
        root = recbole_examples()
        return confine(root, sub, what="path"), root
    root = data_root(cfg)
    return confine(root, path, what="path"), root


# --------------------------------------------------------------------------------------------
# checksums and counts


def verify_pins(spec: DatasetSpec) -> None:
    """Refuse a file whose sha256 differs from its manifest pin (before parsing it)."""
    pins = dict(spec.manifest.get("sha256") or {})
    where = spec.manifest.get("_path", "the manifest")
    for fname, pin in pins.items():
        path = confine(spec.root, confine(spec.directory, fname, what="manifest file"))
        if pin is None or not path.is_file():
            continue
        got = sha256_file(path)
        if got != str(pin).lower():
            raise DataError(
                f"{path}: sha256 {got} differs from the pin {pin} in {where}; the file is "
                f"corrupt or a different release: re-download it (or, if the new file is "
                f"intended, update the pin in the same commit)"
            )


def ensure_fetched(spec: DatasetSpec) -> None:
    """Fetch a dataset whose manifest says how (``fetch:``) when its files are missing, then
    verify the files against the lock file written by the fetch (if any)."""
    fs = fetch.fetch_spec(spec.manifest)
    if fs is None or str(spec.cfg.get("path") or "").startswith(RECBOLE_SCHEME):
        return
    fetch.ensure(fs, spec.directory)
    fetch.verify_lock(spec.directory, spec.name)


def warn_unpinned(spec: DatasetSpec, ds: RawDataset) -> None:
    """Warn for every file read that neither the manifest nor a fetch's lock file pins."""
    if not spec.manifest:
        return
    pins = dict(spec.manifest.get("sha256") or {})
    lock = fetch.read_lock(spec.directory) if spec.directory.is_dir() else None
    pins.update((lock or {}).get("files") or {})
    where = spec.manifest.get("_path", "the manifest")
    base = spec.directory.absolute()
    for path, digest in ds.source_files.items():
        rel = Path(path).relative_to(base).as_posix() if base in Path(path).parents else path
        if pins.get(rel) is None:
            warnings.warn(
                f"{path} is not pinned in {where}; its sha256 is {digest}: pin it with "
                f"sha256: {{{rel}: {digest}}} after checking the download",
                DatasetWarning,
                stacklevel=3,
            )


def check_counts(ds: RawDataset, expected: Mapping[str, Any] | None, where: str = "") -> None:
    """Warn (never fail) when interactions/users/items differ from the manifest's numbers."""
    if not expected:
        return
    got = ds.counts()
    for key in ("interactions", "users", "items"):
        want = expected.get(key)
        if want is not None and int(want) != got[key]:
            warnings.warn(
                f"dataset '{ds.name}': {got[key]:,} {key} loaded, the manifest {where} expects "
                f"{int(want):,}; check that the files are the complete, unfiltered release",
                DatasetWarning,
                stacklevel=3,
            )


# --------------------------------------------------------------------------------------------
# the entry point


def load_dataset(cfg: Mapping[str, Any]) -> RawDataset:
    """Load the dataset a ``conf/dataset/*.yaml`` mapping describes.

    Keys: ``name`` (required), ``loader`` (one of ``LOADERS``; default from the manifest's
    ``load``), ``path`` (folder under the data root, or ``recbole://<example>``), ``files``
    (role -> file name), ``columns``/``item_columns``/``user_columns``/``separator``/``header``/
    ``names``/``timestamp_format`` (table loader), ``fields`` (recbole_atomic mapping),
    ``params`` (synthetic), ``relevance_threshold``, ``manifest`` (id; null = none),
    ``manifest_dir``, ``data_root``.
    """
    if not isinstance(cfg, Mapping) or not cfg.get("name"):
        raise ConfigError("dataset config needs a name (e.g. dataset=ml-100k)")
    name = check_name(str(cfg["name"]))
    manifest = _manifest_for(name, cfg)
    merged = {**dict(manifest.get("load") or {}), **dict(cfg)}
    loader = merged.get("loader")
    if loader not in LOADERS:
        raise unknown("dataset loader", str(loader), LOADERS, where=f"dataset '{name}'")
    if loader in NO_FILES:
        spec = DatasetSpec(name, Path("."), Path("."), merged, manifest)
        return _finish(spec, LOADERS[loader](spec), manifest)
    directory, root = resolve_directory(name, merged)
    spec = DatasetSpec(name, directory, root, merged, manifest)
    ensure_fetched(spec)
    verify_pins(spec)
    ds = LOADERS[loader](spec)
    warn_unpinned(spec, ds)
    return _finish(spec, ds, manifest)


def _manifest_for(name: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    if "manifest" in cfg and cfg["manifest"] is None:
        return {}
    return load_manifest(str(cfg.get("manifest") or name), cfg.get("manifest_dir"))


def _finish(spec: DatasetSpec, ds: RawDataset, manifest: Mapping[str, Any]) -> RawDataset:
    expected = dict(manifest.get("expected") or {})
    check_counts(ds, expected, str(manifest.get("_path", "")))
    has_folder = spec.cfg.get("loader") not in NO_FILES  # a generated dataset has none
    if has_folder and any(expected.get(k) is None for k in COUNTS) and spec.directory.is_dir():
        check_lock_counts(spec, ds)
    return ds


COUNTS = ("interactions", "users", "items")
#: config keys that do not change what a loader reads
_NOT_LOAD_KEYS = ("name", "manifest", "manifest_dir", "data_root", "relevance_threshold")


def check_lock_counts(spec: DatasetSpec, ds: RawDataset) -> None:
    """Counts the manifest cannot pin (a source that publishes rounded figures only) are
    recorded in the fetch's lock file at the first load, per loader configuration, and every
    later load of that configuration is checked against them (a warning names both, like a
    manifest mismatch). No lock (files put in place by hand): nothing to record into."""
    import hashlib
    import json

    lock = fetch.read_lock(spec.directory)
    if lock is None:
        return
    options = {k: v for k, v in sorted(spec.cfg.items()) if k not in _NOT_LOAD_KEYS}
    key = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()
    got = {k: int(v) for k, v in ds.counts().items() if k in COUNTS}
    recorded = dict(lock.get("counts") or {})
    if key not in recorded:
        fetch.update_lock(spec.directory, counts={**recorded, key: got})
        return
    path = spec.directory / fetch.LOCK_NAME
    for name in COUNTS:
        want = recorded[key].get(name)
        if want is not None and int(want) != got[name]:
            warnings.warn(
                f"dataset '{ds.name}': {got[name]:,} {name} loaded, {path} recorded "
                f"{int(want):,} at the first load of these files with this configuration; the "
                "loader's result changed (a new bench version?): compare before citing numbers",
                DatasetWarning,
                stacklevel=3,
            )
