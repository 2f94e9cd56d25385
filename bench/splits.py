"""Split protocols, materialization on disk, and sha256 verification on every reuse.

A split is made once per (dataset, split config, source files) and shared by every model. Its
folder holds ``train/valid/test/items/users.parquet`` and ``manifest.json`` (config, counts,
leakage audit, sha256 of every file). ``split_sha256`` = sha256 over the sorted file digests.

Processing order: load -> collapse duplicate (user, item) pairs to their last event -> iterative
k-core -> protocol cut -> keep only positives (rating >= relevance threshold) in valid/test.
Train keeps every interaction (implicit-feedback convention; ``train_positive_only`` changes it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bench.data.paths import sha256_file as source_digest  # memoised per process
from bench.errors import ConfigError, DataError, IntegrityError, disk_full, is_disk_full, unknown
from bench.files import write_folder_atomically
from bench.hashing import sha256_file

SPLIT_FILES = ("train", "valid", "test", "items", "users")
INTERACTION_SCHEMA = {
    "user_id": pl.Utf8,
    "item_id": pl.Utf8,
    "timestamp": pl.Int64,
    "rating": pl.Float64,
}
#: bump when the materialization code changes what a config produces
SPLIT_FORMAT_VERSION = "1"


_SPLIT_TYPES: dict[str, tuple[str, str]] = {
    # option: (kind, example)
    "valid_fraction": ("number", "0.1"),
    "test_fraction": ("number", "0.1"),
    "cold_item_fraction": ("number", "0.1"),
    "relevance_threshold": ("number or null", "4"),
    "k_core": ("integer", "5"),
    "seed": ("integer", "0"),
    "exclude_seen": ("bool", "true"),
    "train_positive_only": ("bool", "false"),
}


def _check_types(kw: Mapping[str, Any]) -> None:
    """A split option of the wrong type is a one-line ConfigError naming it (``float('abc')``
    would be a traceback deep in the split code)."""
    for name, (kind, example) in _SPLIT_TYPES.items():
        if name not in kw:
            continue
        v = kw[name]
        number = isinstance(v, int | float) and not isinstance(v, bool)
        ok = {
            "number": number,
            "number or null": number or v is None,
            "integer": isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            "bool": isinstance(v, bool),
        }[kind]
        if not ok:
            want = "an integer >= 0" if kind == "integer" else (
                "true or false" if kind == "bool" else f"a {kind}"
            )
            raise ConfigError(
                f"split.{name} must be {want}, got {v!r} (e.g. split.{name}={example})"
            )


@dataclass(frozen=True)
class SplitConfig:
    """Every knob that moves numbers. ``protocol`` is one of ``PROTOCOLS``."""

    protocol: str = "temporal-global"
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    relevance_threshold: float | None = None
    k_core: int = 0
    seed: int = 0
    exclude_seen: bool = True
    test_history: str = "train+valid"
    train_positive_only: bool = False
    cold_item_fraction: float = 0.1

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> SplitConfig:
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(cfg) - known - {"name"})
        if extra:
            raise unknown("split option", extra[0], known, where="conf/split")
        kw = {k: cfg[k] for k in known if k in cfg}
        _check_types(kw)
        sc = cls(**kw)
        if sc.protocol not in PROTOCOLS:
            raise unknown("split protocol", sc.protocol, PROTOCOLS, where="split.protocol")
        for name in ("valid_fraction", "test_fraction", "cold_item_fraction"):
            v = getattr(sc, name)
            if not 0.0 <= float(v) < 1.0:
                raise ConfigError(f"split.{name} must be in [0, 1), got {v!r}")
        if sc.valid_fraction + sc.test_fraction >= 1.0:
            raise ConfigError("split.valid_fraction + split.test_fraction must be below 1")
        if sc.test_history not in ("train+valid", "train"):
            raise ConfigError(
                f"split.test_history must be 'train+valid' or 'train', got {sc.test_history!r}"
            )
        return sc

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Split:
    """A materialized, verified split (string-id frames per the contract)."""

    path: Path
    manifest: dict[str, Any]
    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame

    @property
    def sha256(self) -> str:
        return str(self.manifest["split_sha256"])

    @property
    def config(self) -> SplitConfig:
        return SplitConfig.from_mapping(self.manifest["config"]["split"])

    def indexed(self):  # -> bench.data.indexing.IndexedSplit
        from bench.data.indexing import index_split

        return index_split(
            self.train,
            self.valid,
            self.test,
            self.items,
            self.users,
            test_history_includes_valid=self.config.test_history == "train+valid",
            split_dir=self.path,
            split_sha256=self.sha256,
        )


# ---------------------------------------------------------------------------------------------
# preprocessing


def collapse_duplicates(log: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Keep the last event of each (user, item) pair (ties by rating, then row order)."""
    n = log.height
    out = (
        log.sort(["user_id", "item_id", "timestamp"], maintain_order=True)
        .unique(["user_id", "item_id"], keep="last", maintain_order=True)
        .sort(["user_id", "timestamp", "item_id"])
    )
    return out, n - out.height


def k_core(log: pl.DataFrame, k: int) -> pl.DataFrame:
    """Iteratively drop users and items with fewer than ``k`` interactions."""
    if k <= 1:
        return log
    before = log.height
    while True:
        n = log.height
        log = log.filter((pl.len().over("user_id") >= k) & (pl.len().over("item_id") >= k))
        if log.height == n:
            break
    if log.height == 0:
        raise DataError(
            f"0 interactions remain after k-core={k} filtering (was {before:,}); lower split.k_core"
        )
    return log


def positives(frame: pl.DataFrame, threshold: float | None) -> pl.DataFrame:
    """Rows that count as relevant: rating >= threshold (rows without a rating count)."""
    if threshold is None:
        return frame
    return frame.filter(pl.col("rating").is_null() | (pl.col("rating") >= threshold))


# ---------------------------------------------------------------------------------------------
# protocols: each returns (train, valid, test) before the positives filter


def _temporal_cuts(ts: np.ndarray, cfg: SplitConfig) -> tuple[int, int]:
    t_test = int(np.quantile(ts, 1.0 - cfg.test_fraction, method="higher"))
    t_valid = int(np.quantile(ts, 1.0 - cfg.test_fraction - cfg.valid_fraction, method="higher"))
    return t_valid, t_test


def temporal_global(log: pl.DataFrame, cfg: SplitConfig) -> tuple[pl.DataFrame, ...]:
    """One cut time for everyone (Ji et al., TOIS 2023): no training event after a test event.

    ``t_test`` is the (1 - test_fraction) quantile of timestamps, ``t_valid`` the
    (1 - test_fraction - valid_fraction) quantile; events at a cut time go to the later part.
    """
    t_valid, t_test = _temporal_cuts(log["timestamp"].to_numpy(), cfg)
    ts = pl.col("timestamp")
    return (
        log.filter(ts < t_valid),
        log.filter((ts >= t_valid) & (ts < t_test)),
        log.filter(ts >= t_test),
    )


def _per_user_position(log: pl.DataFrame) -> pl.DataFrame:
    return log.sort(["user_id", "timestamp", "item_id"]).with_columns(
        pos=pl.int_range(pl.len()).over("user_id"), n=pl.len().over("user_id")
    )


def loo_last(log: pl.DataFrame, cfg: SplitConfig) -> tuple[pl.DataFrame, ...]:
    """Per user: last event -> test, second-to-last -> valid (ties by item id).

    Users with fewer than 3 events stay entirely in train.
    """
    f = _per_user_position(log)
    big = pl.col("n") >= 3
    test = f.filter(big & (pl.col("pos") == pl.col("n") - 1))
    valid = f.filter(big & (pl.col("pos") == pl.col("n") - 2))
    train = f.filter(~big | (pl.col("pos") < pl.col("n") - 2))
    return tuple(x.drop("pos", "n") for x in (train, valid, test))


def user_ratio(log: pl.DataFrame, cfg: SplitConfig) -> tuple[pl.DataFrame, ...]:
    """Per user, in time order: the last ``round(n * test_fraction)`` events -> test, the
    ``round(n * valid_fraction)`` before them -> valid, the rest -> train (at least one each
    when n >= 3)."""
    f = _per_user_position(log)
    n = pl.col("n")
    n_test = pl.when(n >= 3).then((n * cfg.test_fraction).round().clip(1, None)).otherwise(0)
    n_valid = pl.when(n >= 3).then((n * cfg.valid_fraction).round().clip(1, None)).otherwise(0)
    f = f.with_columns(n_test=n_test.cast(pl.Int64), n_valid=n_valid.cast(pl.Int64))
    start_test = pl.col("n") - pl.col("n_test")
    start_valid = start_test - pl.col("n_valid")
    cols = ["pos", "n", "n_test", "n_valid"]
    return (
        f.filter(pl.col("pos") < start_valid).drop(cols),
        f.filter((pl.col("pos") >= start_valid) & (pl.col("pos") < start_test)).drop(cols),
        f.filter(pl.col("pos") >= start_test).drop(cols),
    )


def random_ratio(log: pl.DataFrame, cfg: SplitConfig) -> tuple[pl.DataFrame, ...]:
    """Each event independently to test/valid/train with the configured fractions (seeded).

    Leaks the future into training by construction: the audit reports how much.
    """
    f = log.sort(["user_id", "timestamp", "item_id"])
    u = np.random.default_rng(cfg.seed).random(f.height)
    part = np.where(
        u < cfg.test_fraction, 2, np.where(u < cfg.test_fraction + cfg.valid_fraction, 1, 0)
    )
    f = f.with_columns(part=pl.Series(part))
    return tuple(f.filter(pl.col("part") == p).drop("part") for p in (0, 1, 2))


def cold_items(log: pl.DataFrame, cfg: SplitConfig) -> tuple[pl.DataFrame, ...]:
    """Cold-start items: a seeded ``cold_item_fraction`` of items never appears in train/valid.

    Train/valid come from a global temporal cut of the other items' events; test holds the cold
    items' events of users that have train history, at or after the test cut time. Only
    content-aware models (llm-embed, llm-seq with text init) can rank them.
    """
    items = np.sort(log["item_id"].unique().to_numpy())
    rng = np.random.default_rng(cfg.seed)
    n_cold = max(1, int(round(len(items) * cfg.cold_item_fraction)))
    cold = set(rng.choice(items, size=n_cold, replace=False).tolist())
    is_cold = pl.col("item_id").is_in(list(cold))
    t_valid, t_test = _temporal_cuts(log["timestamp"].to_numpy(), cfg)
    ts = pl.col("timestamp")
    warm = log.filter(~is_cold)
    train = warm.filter(ts < t_valid)
    valid = warm.filter((ts >= t_valid) & (ts < t_test))
    test = log.filter(is_cold & (ts >= t_test) & pl.col("user_id").is_in(train["user_id"]))
    return train, valid, test


PROTOCOLS: dict[str, Callable[[pl.DataFrame, SplitConfig], tuple[pl.DataFrame, ...]]] = {
    "temporal-global": temporal_global,
    "loo-last": loo_last,
    "user-ratio": user_ratio,
    "random-ratio": random_ratio,
    "cold-items": cold_items,
}


# ---------------------------------------------------------------------------------------------
# audit


def leakage_audit(train: pl.DataFrame, valid: pl.DataFrame, test: pl.DataFrame) -> dict[str, float]:
    """Leakage facts logged with every run (Ji et al. 2023; pitfalls D4).

    - ``audit_leak_ratio``: share of test interactions earlier than the latest train timestamp.
    - ``audit_duplicate_pairs``: (user, item) pairs present in more than one part.
    - ``audit_cold_users_test`` / ``audit_cold_items_test``: test users / items absent from train.
    """
    out: dict[str, float] = {}
    max_train = train["timestamp"].max() if train.height else None
    out["audit_leak_ratio"] = (
        float(np.mean(test["timestamp"].to_numpy() < max_train))
        if test.height and max_train is not None
        else 0.0
    )
    pairs = [f.select("user_id", "item_id").unique() for f in (train, valid, test)]
    allp = pl.concat(pairs)
    out["audit_duplicate_pairs"] = float(allp.height - allp.unique().height)
    train_users = set(train["user_id"].unique().to_list())
    train_items = set(train["item_id"].unique().to_list())
    test_users = test["user_id"].unique().to_list()
    test_items = test["item_id"].unique().to_list()
    out["audit_cold_users_test"] = float(sum(u not in train_users for u in test_users))
    out["audit_cold_items_test"] = float(sum(i not in train_items for i in test_items))
    return out


# ---------------------------------------------------------------------------------------------
# materialization


def split_sha256(digests: Mapping[str, str]) -> str:
    """sha256 over the sorted file digests (contract)."""
    return hashlib.sha256("".join(sorted(digests.values())).encode()).hexdigest()


def config_fingerprint(
    dataset_cfg: Mapping[str, Any], split_cfg: SplitConfig, sources: Mapping[str, str]
) -> str:
    """Identity of what a split folder must contain: dataset config, split config, inputs."""
    ds = {k: v for k, v in dataset_cfg.items() if k not in ("data_root",)}
    payload = {
        "format": SPLIT_FORMAT_VERSION,
        "dataset": ds,
        "split": split_cfg.as_dict(),
        "sources": sorted(sources.values()),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _cast(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select([pl.col(c).cast(t) for c, t in INTERACTION_SCHEMA.items()]).sort(
        ["user_id", "timestamp", "item_id"]
    )


def build_split(raw: Any, cfg: SplitConfig) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    """Run the protocol on a loaded dataset; returns the five frames and the counts/audit."""
    log, n_dup = collapse_duplicates(raw.interactions)
    if log.height == 0:
        raise DataError(f"dataset '{raw.name}' has no interactions; check its files")
    log = k_core(log, cfg.k_core)
    train, valid, test = PROTOCOLS[cfg.protocol](log, cfg)
    thr = cfg.relevance_threshold
    if cfg.train_positive_only:
        train = positives(train, thr)
    valid, test = positives(valid, thr), positives(test, thr)
    if test.height == 0:
        raise DataError(
            f"split '{cfg.protocol}' of dataset '{raw.name}' has no positive test interactions "
            f"(relevance_threshold={thr}); lower split.relevance_threshold or raise test_fraction"
        )
    frames = {"train": _cast(train), "valid": _cast(valid), "test": _cast(test)}
    items_used = pl.concat([f.select("item_id") for f in frames.values()]).unique()
    items = raw.items if raw.items is not None and raw.items.height else items_used
    items = items.with_columns(pl.col("item_id").cast(pl.Utf8))
    missing = items_used.join(items.select("item_id"), on="item_id", how="anti")
    if missing.height:
        items = pl.concat([items, missing], how="diagonal_relaxed")
    frames["items"] = items.sort("item_id")
    users = raw.users if raw.users is not None and raw.users.height else None
    used_users = pl.concat([f.select("user_id") for f in list(frames.values())[:3]]).unique()
    if users is None:
        users = used_users
    frames["users"] = users.with_columns(pl.col("user_id").cast(pl.Utf8)).sort("user_id")
    counts = {
        "n_interactions_raw": raw.interactions.height,
        "n_duplicates_collapsed": n_dup,
        "n_interactions": log.height,
        **{f"n_{k}": frames[k].height for k in ("train", "valid", "test")},
        "n_users": used_users.height,
        "n_items": frames["items"].height,
    }
    return frames, {"counts": counts, "audit": leakage_audit(train, valid, test)}


def split_dir_for(root: Path, dataset_name: str, cfg: SplitConfig, fingerprint: str) -> Path:
    return root / dataset_name / f"{cfg.protocol}-{fingerprint[:12]}"


def materialize(
    dataset_cfg: Mapping[str, Any],
    split_cfg: SplitConfig,
    root: Path,
    *,
    loader: Callable[[Mapping[str, Any]], Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Split:
    """Load the split for (dataset, split config) from ``root``, making it once if absent.

    Re-use verifies the config fingerprint and every file's sha256; a mismatch is refused,
    never silently re-made. Creation writes to a temporary folder and renames it into place,
    so concurrent jobs never see a half-written split.
    """
    name = str(dataset_cfg.get("name"))
    existing = _find_existing(Path(root) / name, dataset_cfg, split_cfg)
    if existing is not None:
        return existing
    if loader is None:
        from bench.data.datasets import load_dataset

        loader = load_dataset
    raw = loader(dataset_cfg)
    sources = dict(raw.source_files)
    fp = config_fingerprint(dataset_cfg, split_cfg, sources)
    path = split_dir_for(Path(root), name, split_cfg, fp)
    if not path.exists():
        if progress:
            progress(f"materializing split {path}")
        frames, info = build_split(raw, split_cfg)
        _write_atomically(path, frames, dataset_cfg, split_cfg, fp, sources, info)
    return load_split(path, expected_fingerprint=fp)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _find_existing(
    folder: Path, dataset_cfg: Mapping[str, Any], split_cfg: SplitConfig
) -> Split | None:
    """The materialized split of this config, found without parsing the dataset: a manifest
    with the same config whose recorded source files still hash to the recorded digests.
    Anything else (sources moved or changed, another config) falls back to loading the
    dataset, which recomputes the fingerprint and applies every check."""
    want = _canonical(
        {
            "dataset": {k: v for k, v in dataset_cfg.items() if not k.startswith("_")},
            "split": split_cfg.as_dict(),
        }
    )
    for mpath in sorted(folder.glob(f"{split_cfg.protocol}-*/manifest.json")):
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        sources = manifest.get("sources") or {}
        if _canonical(manifest.get("config")) != want or not sources:
            continue
        if not all(Path(p).is_file() and source_digest(p) == d for p, d in sources.items()):
            continue
        fp = config_fingerprint(dataset_cfg, split_cfg, sources)
        if fp == manifest.get("config_fingerprint"):
            return load_split(mpath.parent, expected_fingerprint=fp)
    return None


def _write_atomically(
    path: Path,
    frames: Mapping[str, pl.DataFrame],
    dataset_cfg: Mapping[str, Any],
    split_cfg: SplitConfig,
    fp: str,
    sources: Mapping[str, str],
    info: Mapping[str, Any],
) -> None:
    """Write the split folder aside and rename it into place; a split another job made first
    is kept (the caller verifies it)."""

    def write(tmp: Path) -> None:
        digests = {}
        for name in SPLIT_FILES:
            f = tmp / f"{name}.parquet"
            frames[name].write_parquet(f, compression="zstd", statistics=False)
            digests[f.name] = sha256_file(f)
        manifest = _manifest(digests, dataset_cfg, split_cfg, fp, sources, info)
        (tmp / "manifest.json").write_text(
            json.dumps(manifest, indent=2, sort_keys=True, default=str)
        )

    try:
        write_folder_atomically(path, write)
    except Exception as e:
        if is_disk_full(e):
            raise disk_full(e, path.parent, f"materializing split {path.name}") from e
        raise


def _manifest(
    digests: Mapping[str, str],
    dataset_cfg: Mapping[str, Any],
    split_cfg: SplitConfig,
    fp: str,
    sources: Mapping[str, str],
    info: Mapping[str, Any],
) -> dict[str, Any]:
    from bench import __version__

    return {
        "split_sha256": split_sha256(digests),
        "files": dict(digests),
        "config_fingerprint": fp,
        "config": {
            "dataset": {k: v for k, v in dataset_cfg.items() if not k.startswith("_")},
            "split": split_cfg.as_dict(),
        },
        "sources": dict(sources),
        **info,
        "format_version": SPLIT_FORMAT_VERSION,
        "bench_version": __version__,
    }


def is_split_folder(path: Path) -> bool:
    """``path`` holds a split's ``manifest.json`` (or split files made by ``bench run``)."""
    if not path.is_dir():
        return False
    mpath = path / "manifest.json"
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return any((path / f"{n}.parquet").is_file() for n in SPLIT_FILES)
        return isinstance(manifest, dict) and ("split_sha256" in manifest or "files" in manifest)
    # a damaged split (manifest deleted) still holds its parquet files
    return all((path / f"{n}.parquet").is_file() for n in SPLIT_FILES[:3])


def split_folder_holding(path: Path) -> Path | None:
    """The split folder that ``path`` is or lies inside, if any."""
    path = Path(path).resolve()
    for p in (path, *path.parents):
        if is_split_folder(p):
            return p
    return None


def load_split(path: Path | str, expected_fingerprint: str | None = None) -> Split:
    """Read and verify a split folder (manifest digests; optionally the config fingerprint).

    ``expected_fingerprint`` is given by ``materialize`` (``bench run``): the folder is then the
    one ``bench run`` made for this config, and a missing manifest means it is damaged."""
    path = Path(path).resolve()
    mpath = path / "manifest.json"
    if not mpath.is_file():
        if expected_fingerprint or any((path / f"{n}.parquet").exists() for n in SPLIT_FILES):
            raise IntegrityError(
                f"{path}: incomplete or damaged split folder (no manifest.json); delete the "
                f"folder and 'bench run' re-creates it"
            )
        if not path.is_dir():
            raise DataError(
                f"{path}: no such split folder; give a folder made by 'bench run' "
                f"(data/splits/<dataset>/<protocol>-<hash>, the run's bench.split_dir tag)"
            )
        raise DataError(
            f"{path}: not a split folder (no manifest.json); give a folder made by 'bench run' "
            f"(data/splits/<dataset>/<protocol>-<hash>, the run's bench.split_dir tag)"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise IntegrityError(
            f"{mpath}: unreadable manifest ({e.msg}); delete the folder to re-make it"
        ) from e
    if expected_fingerprint and manifest.get("config_fingerprint") != expected_fingerprint:
        raise IntegrityError(
            f"{path} holds a split made from another config (fingerprint "
            f"{str(manifest.get('config_fingerprint'))[:12]}, expected "
            f"{expected_fingerprint[:12]}); move it away or set paths.splits elsewhere"
        )
    files = manifest.get("files", {})
    for name in SPLIT_FILES:
        f = path / f"{name}.parquet"
        if f.name not in files:
            raise IntegrityError(f"{mpath}: no digest for {f.name}; the manifest is incomplete")
        if not f.is_file():
            raise IntegrityError(f"{f}: missing split file listed in {mpath.name}")
        got = sha256_file(f)
        if got != files[f.name]:
            raise IntegrityError(
                f"{f}: sha256 {got[:12]} differs from manifest {files[f.name][:12]}; the "
                f"split was modified after materialization (restore it, or delete the folder "
                f"to re-make it)"
            )
    if split_sha256(files) != manifest.get("split_sha256"):
        raise IntegrityError(f"{mpath}: split_sha256 does not match the file digests")
    frames = {name: pl.read_parquet(path / f"{name}.parquet") for name in SPLIT_FILES}
    return Split(path=path, manifest=manifest, **frames)
