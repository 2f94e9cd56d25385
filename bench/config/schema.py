"""The config schema: one dataclass per config group, registered in Hydra's ConfigStore.

``conf/config.yaml`` opens its defaults list with ``base_config`` (``Config``) and each group's
files open theirs with ``/base_<group>@_here_`` (Hydra's structured config schema pattern), so
Hydra itself refuses an unknown key or a value of the wrong type when it composes. The fields are
exactly the keys of the YAML files: the resolved config (hence ``bench.run_key`` and a split's
fingerprint) is what it was without a schema. Numbers are ``int | float``, so a value keeps the
type it was given.

Range checks are ``validate()`` methods. ``check_field(name, value)`` raises the message
``validate()`` gives for ``value``: ``bench.config.errors`` uses it for a value OmegaConf refused,
so ``seed=abc`` and ``seed=-1`` read alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from bench.errors import ConfigError

Number = int | float


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class Group:
    """A config group's schema: ``check`` holds its range checks, on plain values."""

    def validate(self) -> None:
        """One-line ConfigError for the first value out of range."""
        self.check(dataclasses.asdict(self))  # type: ignore[call-overload]

    @classmethod
    def check(cls, values: Mapping[str, Any]) -> None:
        """Check plain ``values`` (keys not given: the defaults). No checks by default."""

    @classmethod
    def check_field(cls, name: str, value: Any) -> None:
        """Raise ``check``'s error for ``value`` at ``name`` (the group's other values at their
        defaults, its subgroups left out); returns when ``check`` has nothing to say."""
        cls.check({**defaults(cls), name: value})


def defaults(schema: type) -> dict[str, Any]:
    """The plain default values of a schema's fields (no MISSING, no nested schema)."""
    out = {}
    for f in dataclasses.fields(schema):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        if value is not MISSING and not dataclasses.is_dataclass(value):
            out[f.name] = value
    return out


# ----------------------------------------------------------------------------------- dataset
# Loaders read different keys (bench/data/datasets.py load_dataset): one schema per shape of
# the harness's dataset files. A user's dataset file with no `defaults` composes untyped, as
# before (the primary config types `dataset` as Any), and its loader checks its keys.


@dataclass
class DatasetConfig(Group):
    """Every dataset: its id, loader, relevance threshold (null: every interaction is
    relevant) and manifest id (null: none)."""

    name: str = MISSING
    loader: str = MISSING
    relevance_threshold: Number | None = None
    manifest: str | None = None


@dataclass
class SyntheticDatasetConfig(DatasetConfig):
    """``loader: synthetic``: generator parameters (checked by bench/data/synthetic.py)."""

    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class FolderDatasetConfig(DatasetConfig):
    """A dataset read from a folder under the data root (or ``recbole://<example>``)."""

    path: str = MISSING


@dataclass
class FilesDatasetConfig(FolderDatasetConfig):
    """A folder dataset with named files: ``files.<role>`` (interactions, items, users)."""

    files: dict[str, str | None] = field(default_factory=dict)


@dataclass
class TableDatasetConfig(FilesDatasetConfig):
    """``loader: table``: a CSV/Parquet table, ``columns`` mapping contract names to its own."""

    columns: dict[str, str | None] = field(default_factory=dict)
    separator: str = ","
    timestamp_format: str = "seconds"


@dataclass
class Amazon2023DatasetConfig(FolderDatasetConfig):
    """``loader: amazon2023``: one category of Amazon Reviews 2023."""

    category: str = MISSING


@dataclass
class MindDatasetConfig(FolderDatasetConfig):
    """``loader: mind``: the MIND parts to read (train, dev)."""

    parts: list[str] = field(default_factory=lambda: ["train", "dev"])


# ------------------------------------------------------------------------------------- split


@dataclass
class SplitSchema(Group):
    """``conf/split/*.yaml``: checked by ``bench.splits.SplitConfig`` (every knob that moves
    numbers)."""

    name: str = MISSING
    protocol: str = MISSING
    valid_fraction: Number = 0.1
    test_fraction: Number = 0.1
    relevance_threshold: Number | None = None
    k_core: int = 0
    seed: int = 0
    exclude_seen: bool = True
    test_history: str = "train+valid"
    train_positive_only: bool = False

    @classmethod
    def check(cls, values: Mapping[str, Any]) -> None:
        from bench.splits import SplitConfig

        SplitConfig.from_mapping(values)


@dataclass
class ColdItemsSplitSchema(SplitSchema):
    """``protocol: cold-items``: also the share of items held out of train and valid."""

    cold_item_fraction: Number = 0.1


# ------------------------------------------------------------------------------------- model


@dataclass
class ModelConfig(Group):
    """``conf/model/<id>.yaml``: a registered model name and its parameters (an open mapping
    here: each model's own Config dataclass validates them, bench/models/base.py)."""

    name: str = MISSING
    params: dict[str, Any] = field(default_factory=dict)


# -------------------------------------------------------------------------------------- eval


@dataclass
class EvalConfig(Group):
    """``conf/eval/*.yaml``: cut-offs, exclusions and the evaluation protocol (checked by
    ``bench.protocol.EvalProtocol``)."""

    ks: list[int] = field(default_factory=lambda: [5, 10, 20])
    exclude_seen: bool = MISSING  # logged, never defaulted: the split file sets it
    users: str = "warm"
    fit_data: str = "train"
    candidates: str = "full"
    n_negatives: int = 100
    negatives: str = "uniform"
    batch_budget_mb: Number = 256
    early_stopping_metric: str = "ndcg_at_10"

    @classmethod
    def check(cls, values: Mapping[str, Any]) -> None:
        from bench.protocol import EvalProtocol

        ks = values.get("ks")
        if not isinstance(ks, list | tuple) or not ks or not all(_is_int(k) and k >= 1 for k in ks):
            raise ConfigError(
                f"eval.ks must be a non-empty list of positive integers, got {ks!r} "
                f"(e.g. eval.ks=[10,20])"
            )
        budget = values.get("batch_budget_mb", 256)
        if not isinstance(budget, int | float) or isinstance(budget, bool) or not budget > 0:
            raise ConfigError(
                f"eval.batch_budget_mb must be a number > 0 (MB), got {budget!r} "
                f"(e.g. eval.batch_budget_mb=256)"
            )
        exclude_seen = values.get("exclude_seen")
        if not isinstance(exclude_seen, bool):
            raise ConfigError(
                f"eval.exclude_seen must be true or false (it is logged, never defaulted), "
                f"got {exclude_seen!r}"
            )
        EvalProtocol.from_mapping(values)

    @classmethod
    def check_field(cls, name: str, value: Any) -> None:
        # exclude_seen has no default of its own: any bool stands in for it
        cls.check({**defaults(cls), "exclude_seen": True, name: value})


# ----------------------------------------------------------------------------------- metrics


@dataclass
class FairnessConfig:
    """Groups with fewer evaluated users are left out of the logged gap."""

    min_group_size: int = 5


@dataclass
class MetricsConfig(Group):
    """``conf/metrics/*.yaml``: user attributes for fairness, item embeddings for ild_emb."""

    user_attributes: list[str] = field(default_factory=lambda: ["gender", "age", "occupation"])
    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    # null | {encoder, template}, checked by the runner (bench.runner.embedding_spec). Not a
    # typed Optional dataclass: OmegaConf 2.3 cannot merge an override into a typed null node
    item_embeddings: Any = None


# ----------------------------------------------------------------------------------- latency


@dataclass
class LatencySchema(Group):
    """``conf/latency/*.yaml``: checked by ``bench.latency.LatencyConfig``."""

    mode: str = "default"
    n_requests: int = 200
    warmup: int = 20
    batch_size: int = 256
    sweep_batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 64, 256])
    seed: int = 0
    fresh_process: bool = False
    remote_requests: int | str = "auto"

    @classmethod
    def check(cls, values: Mapping[str, Any]) -> None:
        from bench.latency import LatencyConfig

        LatencyConfig.from_mapping(values)


# ---------------------------------------------------------------------------------- tracking


@dataclass
class TrackingConfig(Group):
    """``conf/tracking/*.yaml``: the MLflow store (null uri: sqlite beside the command)."""

    uri: str | None = None
    experiment: str = "bench"
    force: bool = False
    allow_network_fs: bool = False
    enabled: bool = True

    @classmethod
    def check(cls, values: Mapping[str, Any]) -> None:
        for key in ("force", "enabled", "allow_network_fs"):
            value = values.get(key, False)
            if not isinstance(value, bool):
                raise ConfigError(
                    f"tracking.{key} must be true or false, got {value!r} "
                    f"(e.g. tracking.{key}=true)"
                )


# ------------------------------------------------------------------------------------ tuning


@dataclass
class TuningSchema(Group):
    """``conf/tuning/*.yaml``: ``bench tune``'s budget, objective and sampler (checked by
    ``bench.tuning.TuningConfig``, which also needs ``eval.ks``)."""

    models: list[str] | None = None
    trials: int | None = 20
    time_budget_s: Number | None = None
    metric: str = "valid/ndcg_at_10"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    sampler: str = "tpe"
    n_startup_trials: int = 10
    seed: int = 0
    search_dir: str | None = None
    storage: str | None = None

    @classmethod
    def check(cls, values: Mapping[str, Any], ks: list[int] | None = None) -> None:
        from bench.tuning import TuningConfig

        TuningConfig.from_mapping(values, list(ks or [5, 10, 20]))


# ------------------------------------------------------------------------------ primary config


@dataclass
class PathsConfig:
    """Where data and caches go; ``root`` is the directory the command was started in."""

    root: str = MISSING
    splits: str = MISSING
    cache: str = MISSING


@dataclass
class ReportConfig:
    """What a sweep prints and writes when it ends."""

    leaderboard_metric: str = "ndcg_at_10"
    leaderboard_on_end: bool = True
    out: str | None = None
    spec: str | None = None


#: groups of the primary config's defaults list that are not keys of the config: their files
#: are ``# @package _global_`` and set keys of other groups
GLOBAL_GROUPS = ("dataset_model", "experiment")


@dataclass
class Config(Group):
    """``conf/config.yaml``: the groups and the top-level keys."""

    # Any: a user's dataset file names its own loader's keys (see above)
    dataset: Any = MISSING
    split: SplitSchema = field(default_factory=SplitSchema)
    model: ModelConfig = field(default_factory=ModelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    latency: LatencySchema = field(default_factory=LatencySchema)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    tuning: TuningSchema = field(default_factory=TuningSchema)
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | auto
    progress: bool | str = "auto"
    paths: PathsConfig = field(default_factory=PathsConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    @classmethod
    def check(cls, values: Mapping[str, Any]) -> None:
        """The top-level values, the groups of ``CHECKED`` that are given, then the checks
        across groups (a refit on train+valid needs valid masked at test time)."""
        from bench.protocol import EvalProtocol

        seed = values.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r} (e.g. seed=0)")
        for key, schema in CHECKED.items():
            if isinstance(values.get(key), Mapping):
                schema.check(values[key])
        EvalProtocol.for_run(values)


#: the groups ``Config.check`` checks, with their schemas (``bench run`` does not read
#: ``tuning``: ``bench tune`` checks it, with ``eval.ks``)
CHECKED: dict[str, type[Group]] = {
    "eval": EvalConfig,
    "latency": LatencySchema,
    "split": SplitSchema,
    "tracking": TrackingConfig,
}

#: ConfigStore entries (name, schema), outside any config group so that no group lists them as
#: an option (``bench run --help``, did-you-mean): the group files extend theirs with
#: ``- /base_<x>@_here_`` (Hydra's "extending a config from another group")
SCHEMAS: tuple[tuple[str, type], ...] = (
    ("base_config", Config),
    ("base_synthetic_dataset", SyntheticDatasetConfig),
    ("base_folder_dataset", FolderDatasetConfig),
    ("base_files_dataset", FilesDatasetConfig),
    ("base_table_dataset", TableDatasetConfig),
    ("base_amazon2023_dataset", Amazon2023DatasetConfig),
    ("base_mind_dataset", MindDatasetConfig),
    ("base_split", SplitSchema),
    ("base_cold_items_split", ColdItemsSplitSchema),
    ("base_model", ModelConfig),
    ("base_eval", EvalConfig),
    ("base_metrics", MetricsConfig),
    ("base_latency", LatencySchema),
    ("base_tracking", TrackingConfig),
    ("base_tuning", TuningSchema),
)


def register() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for name, node in SCHEMAS:
        cs.store(name=name, node=node)
