"""llm-rerank's parameters: the frozen config, its validation (one-line errors before any
run exists), and what it builds: the backend and the backend's replay-cache identity."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from baselines.llm.backends import check_remote_code
from baselines.llm.cache import hf_identity, openai_identity
from baselines.llm.common import DEFAULT_ITEM_TEMPLATE, check_model_folder, thaw
from baselines.llm.http import check_base_url
from bench.errors import ConfigError, did_you_mean
from bench.item_text import check_template


@dataclass(frozen=True)
class RerankConfig:
    """Parameters of ``llm-rerank`` (``conf/model/llm-rerank.yaml``)."""

    first_stage: str = "pop"  # registry name of the candidate generator
    first_stage_params: Any = ()  # its params (a mapping in YAML)
    n_candidates: int = 20
    backend: str = "hf"  # hf | openai
    llm: str = ""  # hf: local model folder; openai: served model name
    base_url: str = "http://127.0.0.1:8000/v1"  # openai backend only
    api_key_env: str = "OPENAI_API_KEY"  # NAME of the env var holding the key (never the key)
    revision: str = ""  # pinned commit sha (required with trust_remote_code) or a model tag
    trust_remote_code: bool = False
    mode: str = "listwise"  # listwise | pointwise
    pointwise_norm: str = "mean"  # mean | sum of the candidate's token log-probabilities
    item_template: str = DEFAULT_ITEM_TEMPLATE
    max_field_chars: int = 300  # each item_template field cut to this many characters (0 = whole)
    max_history: int = 10  # most recent history items shown in the prompt
    few_shot: int = 0  # worked examples from train sequences placed before the task
    max_new_tokens: int = 96
    temperature: float = 0.0
    batch_size: int = 8  # candidates per forward pass (hf pointwise)
    permutations: int = 0  # position-bias probe: reruns with shuffled candidate order
    use_cache: bool = True  # replay cache under ctx.cache_dir/llm-rerank
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 20.0


_CHOICES = {
    "backend": ("hf", "openai"),
    "mode": ("listwise", "pointwise"),
    "pointwise_norm": ("mean", "sum"),
}


#: numeric parameters: (name, integer, lowest value, lowest excluded, what it is)
_NUMBERS = (
    ("n_candidates", True, 1, False, "candidates reranked per user"),
    ("max_history", True, 0, False, "history items in the prompt; 0: none"),
    ("max_field_chars", True, 0, False, "characters per item_template field; 0: whole"),
    ("few_shot", True, 0, False, "worked examples; 0: none"),
    ("max_new_tokens", True, 1, False, "tokens the LLM may generate per reply"),
    ("temperature", False, 0, False, "0: greedy decoding"),
    ("batch_size", True, 1, False, "candidates per forward pass"),
    ("permutations", True, 0, False, "position-bias reruns; 0: none"),
    ("timeout_s", False, 0, True, "seconds per HTTP attempt"),
    ("max_retries", True, 0, False, "retries after a failed request"),
    ("backoff_s", False, 0, False, "first retry delay in seconds"),
    ("backoff_max_s", False, 0, False, "longest retry delay in seconds"),
)


def _check_numbers(cfg: RerankConfig) -> None:
    """One line naming the parameter, its valid range and the default as an example."""
    defaults = RerankConfig()
    for name, integer, low, strict, what in _NUMBERS:
        value = getattr(cfg, name)
        kinds = int if integer else (int, float)
        ok = (
            isinstance(value, kinds)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (value > low if strict else value >= low)
        )
        if not ok:
            raise ConfigError(
                f"llm-rerank: {name}={value!r} is invalid: it must be "
                f"{'an integer' if integer else 'a number'} {'>' if strict else '>='} {low} "
                f"({what}); e.g. model.params.{name}={getattr(defaults, name)}"
            )


def validate(cfg: RerankConfig) -> None:
    """Every parameter checked, the first stage built (not fit): a typo fails at build."""
    for name, allowed in _CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise ConfigError(
                f"llm-rerank: {name}={getattr(cfg, name)!r} is not one of {', '.join(allowed)}"
            )
    _check_numbers(cfg)
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", cfg.api_key_env or ""):
        raise ConfigError(
            "llm-rerank: api_key_env must be the NAME of an environment variable holding the "
            "key (e.g. OPENAI_API_KEY), never the key itself"
        )
    check_remote_code(cfg.trust_remote_code, cfg.revision)
    if cfg.backend == "openai":
        check_base_url(cfg.base_url)
    check_template(cfg.item_template, "llm-rerank")
    _check_first_stage(cfg)
    if cfg.backend == "openai" and not cfg.llm:
        raise ConfigError(
            "llm-rerank: backend=openai needs params.llm=<served model name> "
            "(e.g. model.params.llm=Qwen/Qwen2.5-7B-Instruct)"
        )
    if cfg.backend == "hf":
        if not cfg.llm:
            raise ConfigError(
                "llm-rerank: backend=hf needs params.llm=<local model folder> (config.json, "
                "tokenizer files, *.safetensors weights), e.g. "
                "model.params.llm=/models/Qwen2.5-0.5B-Instruct; or use backend=openai"
            )
        check_model_folder(cfg.llm, "llm-rerank", "llm")


def _check_first_stage(cfg: RerankConfig) -> None:
    """``first_stage`` is a registered model and ``first_stage_params`` are its parameters:
    the first stage is built (not fit) now, so a typo fails before any run exists."""
    from bench.models import registry

    names = registry.names()
    if cfg.first_stage not in names:
        raise ConfigError(
            f"llm-rerank: first_stage={cfg.first_stage!r} is not a registered model"
            f"{did_you_mean(cfg.first_stage, names)}; available: {', '.join(names)}"
        )
    params = thaw(cfg.first_stage_params) or {}
    if not isinstance(params, dict):
        raise ConfigError(
            f"llm-rerank: first_stage_params must be a mapping of {cfg.first_stage}'s "
            f"parameters (e.g. {{k: 50}}), got {params!r}"
        )
    try:
        registry.build(cfg.first_stage, params)
    except ConfigError as exc:
        raise ConfigError(f"llm-rerank: first_stage {cfg.first_stage!r}: {exc}") from None


def identity(cfg: RerankConfig) -> dict[str, Any]:
    """Model identity for cache keys, without loading anything (no backend call); ``cfg`` is
    validated (backend=hf has a model folder)."""
    if cfg.backend == "hf":
        return hf_identity(cfg.llm, cfg.revision)
    return openai_identity(cfg.base_url, cfg.llm, cfg.revision)  # another server never replays


def make_backend(cfg: RerankConfig) -> Any:
    """The backend the config names (loads the local model for hf)."""
    from baselines.llm.backends import HFBackend, OpenAIBackend

    if cfg.backend == "hf":
        return HFBackend(
            cfg.llm,
            trust_remote_code=cfg.trust_remote_code,
            revision=cfg.revision,
            batch_size=cfg.batch_size,
        )
    return OpenAIBackend(
        cfg.base_url,
        cfg.llm,
        api_key_env=cfg.api_key_env,
        revision=cfg.revision,
        timeout_s=cfg.timeout_s,
        max_retries=cfg.max_retries,
        backoff_s=cfg.backoff_s,
        backoff_max_s=cfg.backoff_max_s,
    )
