"""Every config composes: each model, dataset, split and experiment file (tracking disabled)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from bench.errors import ConfigError
from bench.models import registry

CONF = Path(__file__).resolve().parents[2] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_cfg(overrides: list[str]) -> dict:
    """The job config as ``bench run`` resolves it, plus the sweeper params under ``_sweep``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config", overrides=["tracking=disabled", *overrides], return_hydra_config=True
        )
    params = cfg.hydra.sweeper.get("params")
    sweep = OmegaConf.to_container(params, resolve=False) if params is not None else {}
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.paths.root = "/tmp"  # ${hydra:runtime.cwd} outside a Hydra run
    out = OmegaConf.to_container(cfg, resolve=True)
    out["_sweep"] = sweep
    return out


@pytest.mark.parametrize("model", options("model"))
def test_every_model_config_composes_and_validates(model):
    cfg = compose_cfg([f"model={model}"])
    assert cfg["model"]["name"] in registry.names(), f"conf/model/{model}.yaml names no model"
    params = cfg["model"].get("params") or {}
    if cfg["model"]["name"] == "llm-rerank":  # params.llm is required: no model is bundled
        with pytest.raises(ConfigError, match=r"backend=hf needs params\.llm="):
            registry.build("llm-rerank", params)
        params = {**params, "backend": "openai", "llm": "served-model"}
    registry.build(cfg["model"]["name"], params)


@pytest.mark.parametrize("dataset", options("dataset"))
@pytest.mark.parametrize("split", options("split"))
def test_every_dataset_and_split_composes(dataset, split):
    from bench.splits import SplitConfig

    cfg = compose_cfg([f"dataset={dataset}", f"split={split}"])
    assert cfg["dataset"]["name"]
    SplitConfig.from_mapping(cfg["split"])
    assert isinstance(cfg["eval"]["exclude_seen"], bool)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_opens_with_its_command(experiment):
    text = (CONF / "experiment" / f"{experiment}.yaml").read_text()
    assert text.startswith("# @package _global_")
    second = text.splitlines()[1]
    assert ("bench run" in second or "bench tune" in second) and f"experiment={experiment}" in text
    cfg = compose_cfg([f"experiment={experiment}"])
    sweep = cfg["_sweep"]
    models = str(sweep.get("model", cfg["model"]["name"])).split(",")
    for model in cfg["tuning"].get("models") or models:  # bench tune experiments list theirs
        c = compose_cfg([f"experiment={experiment}", f"model={model}"])
        registry.build(c["model"]["name"], c["model"].get("params") or {})


@pytest.mark.parametrize("pair", options("dataset_model"))
def test_every_dataset_model_file_applies_to_its_pair(pair):
    """conf/dataset_model/<dataset>_<model>.yaml is picked up for that pair and only that one."""
    dataset, model = next(
        (d, pair[len(d) + 1 :]) for d in options("dataset") if pair.startswith(d + "_")
    )
    text = (CONF / "dataset_model" / f"{pair}.yaml").read_text()
    assert text.startswith("# @package _global_")
    cfg = compose_cfg([f"dataset={dataset}", f"model={model}"])
    registry.build(cfg["model"]["name"], cfg["model"].get("params") or {})
    other = next(d for d in options("dataset") if d != dataset)
    assert cfg["model"] != compose_cfg([f"dataset={other}", f"model={model}"])["model"]


def test_ml100k_llm_embed_uses_the_validation_chosen_prior():
    p = compose_cfg(["dataset=ml-100k", "model=llm-embed"])["model"]["params"]
    assert (p["template"], p["prior_query"], p["prior_weight"]) == (
        "{title}",
        "a popular movie",
        2.0,
    )
    p = compose_cfg(["dataset=synthetic", "model=llm-embed"])["model"]["params"]
    assert p["prior_weight"] == 0.0 and p["prior_query"] == ""


def test_no_option_is_named_like_a_yaml_boolean():
    bad = {"on", "off", "yes", "no", "On", "Off", "Yes", "No"}
    for path in CONF.rglob("*.yaml"):
        for line in path.read_text().splitlines():
            s = line.split("#")[0].strip()
            if ":" in s:
                key, _, value = s.partition(":")
                assert key.strip() not in bad and value.strip() not in bad, f"{path}: {line}"


@pytest.mark.parametrize("model", [m for m in options("model") if m != "recbole"])
def test_every_model_has_a_valid_search_space(model):
    """bench tune refuses a model without conf/search/<model>.yaml; each space must pass the
    same checks bench tune runs before its first trial (recbole, which runs any RecBole model
    by name, has none: a space belongs to one model)."""
    from bench.tuning_space import load_space

    cfg = compose_cfg([f"model={model}"])
    params = cfg["model"].get("params") or {}
    if cfg["model"]["name"] == "llm-rerank":
        params = {**params, "backend": "openai", "llm": "served-model"}
    space = load_space(model, cfg["model"]["name"], params)
    assert space.source


def test_tuning_group_composes_and_is_not_part_of_the_run_key():
    from bench import tracking

    cfg = compose_cfg(["tuning.trials=5"])
    assert cfg["tuning"]["trials"] == 5 and cfg["tuning"]["metric"] == "valid/ndcg_at_10"
    other = compose_cfg(["tuning.trials=7"])
    assert tracking.run_key(cfg, "sha") == tracking.run_key(other, "sha")


def group_files() -> list[str]:
    """Every option file of a group with a schema (``defaults: [/base_<...>@_here_, _self_]``)."""
    return sorted(str(p.relative_to(CONF)) for p in CONF.glob("*/*.yaml")
                  if "base_" in p.read_text())


@pytest.mark.parametrize("rel", group_files())
def test_a_schema_has_exactly_the_keys_of_the_files_that_extend_it(rel):
    """Composing adds no key to a file and drops none: the resolved config, hence run keys and
    split fingerprints, is what the YAML says (the schema only types it)."""
    import dataclasses

    import yaml
    from hydra.core.config_store import ConfigStore

    import bench.config  # noqa: F401 - registers the schemas

    raw = yaml.safe_load((CONF / rel).read_text())
    (base,) = [d for d in raw.pop("defaults") if d != "_self_"]
    node = ConfigStore.instance().load(f"{base.strip('/').split('@')[0]}.yaml").node
    schema = OmegaConf.get_type(node)
    assert sorted(f.name for f in dataclasses.fields(schema)) == sorted(raw), schema.__name__


def test_the_primary_schema_has_the_keys_of_config_yaml_and_its_groups():
    import dataclasses

    import yaml

    from bench.config import Config

    raw = yaml.safe_load((CONF / "config.yaml").read_text())
    groups = [next(iter(d)) for d in raw.pop("defaults") if isinstance(d, dict)]
    groups = [g.split()[-1] for g in groups if not g.endswith(("dataset_model", "experiment"))]
    fields = [f.name for f in dataclasses.fields(Config)]
    assert fields == groups + [k for k in raw if k != "hydra"]


def test_the_split_schema_and_the_runtime_split_config_agree():
    """``SplitSchema`` (what Hydra composes) and ``bench.splits.SplitConfig`` (what makes the
    split) declare the same options with the same defaults, ``cold_item_fraction`` only for
    the cold-items protocol: a default changed in one place only would change a split's
    fingerprint without a config file saying so."""
    import dataclasses

    from bench.config.schema import ColdItemsSplitSchema, SplitSchema
    from bench.splits import SplitConfig

    def defaults(cls, skip=()):
        return {f.name: f.default for f in dataclasses.fields(cls) if f.name not in skip}

    runtime = defaults(SplitConfig, skip=("protocol",))
    plain = defaults(SplitSchema, skip=("name", "protocol"))
    assert plain == {k: v for k, v in runtime.items() if k != "cold_item_fraction"}
    assert defaults(ColdItemsSplitSchema, skip=("name", "protocol")) == runtime
