"""The metric catalog: key parsing, display forms, direction, name resolution, generated docs."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from bench.errors import ConfigError
from bench.metrics import catalog
from bench.metrics.catalog import (
    METRIC_DEFINITIONS_VERSION,
    display,
    higher_is_better,
    known_metric_names,
    parse_key,
    resolve_metric,
)
from bench.metrics.docs import render
from bench.metrics.engine import evaluate_arrays

ROOT = Path(__file__).resolve().parents[2]


def test_parse_key_with_group_suffix():
    spec, k, suffix = parse_key("ndcg_at_10/gender/F")
    assert (spec.name, k, suffix) == ("ndcg", 10, "gender/F")
    spec, k, suffix = parse_key("fit_seconds")
    assert (spec.name, k, suffix) == ("fit_seconds", None, "")
    spec, k, suffix = parse_key("first_stage/recall_at_20")
    assert (spec.name, k, suffix) == ("recall", 20, "")


def test_display_and_direction():
    assert display("ndcg_at_10") == "ndcg@10"
    assert display("ndcg_at_10/occupation/K-12 student") == "ndcg@10/occupation/K-12 student"
    assert display("first_stage/map_at_5") == "first_stage/map@5"
    assert display("latency_p95_ms") == "latency p95 (ms)"
    assert higher_is_better("ndcg_at_10")
    assert not higher_is_better("ndcg_at_10/gender/gap")
    assert not higher_is_better("gini_at_10")
    assert not higher_is_better("arp_at_10")
    assert not higher_is_better("latency_p50_ms")
    assert higher_is_better("throughput_users_per_s")


@pytest.mark.parametrize(
    "typed, key",
    [
        ("ndcg@10", "ndcg_at_10"),
        ("NDCG_at_10", "ndcg_at_10"),
        ("recall@20/gender/F", "recall_at_20/gender/F"),
        ("fit_seconds", "fit_seconds"),
        ("hit_rate@5", "hit_rate_at_5"),
    ],
)
def test_resolve_metric_accepts_both_forms(typed, key):
    assert resolve_metric(typed) == key


def test_resolve_metric_unknown_has_did_you_mean_and_list():
    with pytest.raises(ConfigError) as e:
        resolve_metric("ndgc@10")
    msg = str(e.value)
    assert "did you mean 'ndcg@k'" in msg and "recall@k" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="ndcg@10"):
        resolve_metric("ndcg")
    with pytest.raises(ConfigError):
        parse_key("bogus_at_3")


def test_contract_keys_are_in_the_catalog():
    for name in (
        "precision",
        "recall",
        "hit_rate",
        "ndcg",
        "mrr",
        "map",
        "coverage",
        "novelty",
        "ild",
        "gini",
        "arp",
        "aplt",
        "serendipity",
        "pop_reo",
        "pop_rsp",
        "fit_seconds",
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "throughput_users_per_s",
        "peak_memory_mb",
        "n_parameters",
        "n_users_evaluated",
        "n_users_skipped",
        "llm_prompt_tokens",
        "llm_completion_tokens",
        "llm_parse_failure_rate",
        "llm_out_of_candidates_rate",
        "llm_duplicate_rate",
        "llm_cache_hit_rate",
    ):
        assert name in catalog.CATALOG, name
    assert METRIC_DEFINITIONS_VERSION == "2"
    assert all(s.version == "2" and s.group in catalog.GROUPS for s in catalog.specs())
    assert len(known_metric_names()) == len(catalog.CATALOG)


def test_every_engine_key_parses_and_is_mlflow_safe():
    rng = np.random.default_rng(0)
    truth = sp.random(20, 30, density=0.2, random_state=1, format="csr")
    train = sp.random(20, 30, density=0.3, random_state=2, format="csr")
    rec = np.array([rng.permutation(30)[:12] for _ in range(20)])
    genres = [frozenset({"a", "b"} if i % 2 else {"c"}) for i in range(30)]
    attrs = {"occupation": np.array(["K-12 student", "x/y"] * 10, dtype=object)}
    res = evaluate_arrays(
        np.arange(20),
        rec,
        truth,
        (5, 10),
        train=train,
        seen=train,
        item_genres=genres,
        user_attrs=attrs,
        item_embeddings=rng.normal(size=(30, 8)),
    )
    import re

    # every cut-off metric of the list-based groups is computed from these inputs, and the
    # bounded ones stay in [0, 1] for every user (ild_emb, a cosine distance, in [0, 2])
    for spec in catalog.specs():
        if spec.group not in ("accuracy", "beyond-accuracy", "fairness") or not spec.has_k:
            continue
        for k in (5, 10):
            assert spec.key(k) in res.summary, spec.key(k)
            values = res.per_user.get(spec.key(k), np.array([res.summary[spec.key(k)]]))
            values = values[~np.isnan(values)]
            hi = 2.0 if spec.name == "ild_emb" else 1.0
            if spec.bounded or spec.name == "ild_emb":
                assert ((values >= 0) & (values <= hi + 1e-12)).all(), spec.key(k)

    for key in [*res.summary, *res.per_user]:
        parse_key(key)
        assert re.fullmatch(r"[/\w.\- ]+", key), key
    assert "ndcg_at_5/occupation/K-12 student" in res.summary
    assert "ndcg_at_5/occupation/x_y" in res.summary


def test_generated_docs_are_up_to_date():
    committed = (ROOT / "docs" / "metrics.md").read_text()
    assert committed == render(), "run: python -m bench.metrics.docs > docs/metrics.md"


def test_metrics_import_no_heavy_stacks():
    import subprocess
    import sys

    code = (
        "import sys, bench.metrics.engine, bench.metrics.api, bench.metrics.docs; "
        "heavy = [m for m in ('torch', 'mlflow', 'recbole', 'ranx', 'numba') if m in sys.modules]; "
        "sys.exit(1 if heavy else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
