"""RecBole model names and parameter defaults, read from RecBole's files without importing it.

RecBole ships one module per model under ``recbole/model/<kind>_recommender/<name>.py`` and yaml
defaults under ``recbole/properties/model/<Model>.yaml`` and ``recbole/properties/overall.yaml``.
Reading them as text keeps the registry and config validation free of torch/recbole imports.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from bench.errors import ConfigError, unknown

#: RecBole model families this adapter runs (context-aware and knowledge-aware models need
#: feature / knowledge-graph files the harness's splits do not carry)
SUPPORTED_KINDS = ("general", "sequential")

#: RecBole settings the adapter owns: changing them would let RecBole filter, re-split or
#: re-evaluate the split, write files outside the run's workdir, or reseed
PROTECTED = frozenset(
    {
        "model", "dataset", "data_path", "benchmark_filename", "load_col", "unload_col",
        "unused_col", "additional_feat_suffix", "eval_args", "checkpoint_dir", "seed",
        "reproducibility", "state", "show_progress", "use_gpu", "gpu_id", "device",
        "save_dataset", "dataset_save_path", "save_dataloaders", "dataloaders_save_path",
        "log_wandb", "wandb_project", "USER_ID_FIELD", "ITEM_ID_FIELD", "TIME_FIELD",
        "RATING_FIELD", "LABEL_FIELD", "ITEM_LIST_LENGTH_FIELD", "LIST_SUFFIX",
        "field_separator", "seq_separator", "rm_dup_inter", "val_interval",
        "filter_inter_by_user_or_item", "user_inter_num_interval", "item_inter_num_interval",
        "alias_of_user_id", "alias_of_item_id", "threshold", "repeatable", "metrics", "topk",
        "valid_metric", "valid_metric_bigger", "metric_decimal_place", "config_file",
        "worker", "shuffle", "nproc", "world_size", "offset", "ip", "port",
    }
)  # fmt: skip


@cache
def recbole_root() -> Path:
    """RecBole's package directory (found without importing it)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("RecBole is not installed: pip install recbole==1.2.1")
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def model_table() -> dict[str, str]:
    """RecBole model class name -> kind (``general``, ``sequential``, ``context_aware`` ...)."""
    table: dict[str, str] = {}
    for folder in sorted((recbole_root() / "model").glob("*_recommender")):
        kind = folder.name.removesuffix("_recommender")
        for file in sorted(folder.glob("*.py")):
            if file.name.startswith("__"):
                continue
            for name in re.findall(r"^class (\w+)\(", file.read_text(), flags=re.M):
                if name.lower() == file.stem:
                    table[name] = kind
    return table


def resolve_model(name: str, where: str) -> str:
    """Canonical RecBole class name for ``name`` (case-insensitive); one-line error otherwise."""
    table = model_table()
    by_lower = {n.lower(): n for n in table}
    canonical = by_lower.get(str(name).lower())
    supported = sorted(n for n, k in table.items() if k in SUPPORTED_KINDS)
    if canonical is None:
        raise unknown("RecBole model", str(name), supported, where=where)
    if table[canonical] not in SUPPORTED_KINDS:
        raise ConfigError(
            f"RecBole model '{canonical}' is {table[canonical].replace('_', '-')}; the adapter "
            f"({where}) runs general and sequential models only (they need no feature files)"
        )
    return canonical


def model_kind(model: str) -> str:
    """``general`` or ``sequential`` for a canonical RecBole model name."""
    return model_table()[model]


def _yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return dict(yaml.safe_load(path.read_text()) or {})


@cache
def _argument_names() -> frozenset[str]:
    tree = ast.parse((recbole_root() / "utils" / "argument_list.py").read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List):
            names.update(ast.literal_eval(node.value))
    return frozenset(names)


@cache
def defaults(model: str) -> dict[str, Any]:
    """RecBole's default settings for ``model``: overall, dataset sample, family and model yaml."""
    props = recbole_root() / "properties"
    out: dict[str, Any] = {}
    out.update(_yaml(props / "overall.yaml"))
    out.update(_yaml(props / "dataset" / "sample.yaml"))
    if model_kind(model) == "sequential":
        out.update(_yaml(props / "quick_start_config" / "sequential.yaml"))
    out.update(_yaml(props / "model" / f"{model}.yaml"))
    return out


def known_params(model: str) -> frozenset[str]:
    """Every RecBole setting a user may pass for ``model`` (its defaults + RecBole's lists)."""
    return frozenset(set(defaults(model)) | _argument_names())


def check_params(
    model: str, params: dict[str, Any], where: str, harness_fields: frozenset[str] = frozenset()
) -> None:
    """One-line ConfigError for a parameter RecBole does not know or the adapter owns."""
    known = known_params(model)
    candidates = sorted((known - PROTECTED) | harness_fields)
    for key in params:
        if key in PROTECTED:
            raise ConfigError(
                f"parameter '{key}' of model '{where}' is set by the harness (split, seed, "
                "evaluation and files come from the run), not by model.params"
            )
        if key not in known:
            close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise ConfigError(
                f"unknown parameter '{key}' for model '{where}' (RecBole {model}){hint}; see "
                f"recbole/properties/model/{model}.yaml and recbole/properties/overall.yaml"
            )
