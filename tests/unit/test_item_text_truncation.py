"""The item-template truncation rule (``max_field_chars``, docs/llm.md "Long fields")."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from baselines.llm.common import ELLIPSIS, render_item_texts, truncate_field
from bench.errors import ConfigError
from bench.models import registry

REPO = Path(__file__).resolve().parents[2]


def test_short_values_are_whole_and_whitespace_collapses():
    assert truncate_field("Lip balm", 10) == "Lip balm"
    assert truncate_field("0123456789", 10) == "0123456789"  # exactly N: whole
    assert truncate_field("a  b\n\tc", 10) == "a b c"
    assert truncate_field("a" * 500, 0) == "a" * 500  # 0: whole, untouched


def test_long_values_are_cut_at_a_word_boundary_with_an_ellipsis():
    text = "Soft and long lasting, with shea butter and vitamin E."
    assert truncate_field(text, 30) == "Soft and long lasting, with\u2026"
    assert truncate_field(text, 24) == "Soft and long lasting\u2026"  # ", " dropped before "…"
    assert truncate_field("Supercalifragilistic expialidocious", 12) == "Supercalifr\u2026"
    assert truncate_field("ab cdefghijkl", 8) == "ab cdef\u2026"  # the space is before the middle
    assert truncate_field("abc", 1) == ELLIPSIS


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(codec="utf-8"), max_size=300), st.integers(1, 120))
def test_truncated_values_are_short_prefixes(text, n):
    out = truncate_field(text, n)
    assert len(out) <= n
    flat = " ".join(text.split())
    if len(flat) <= n:
        assert out == flat
    else:
        assert out.endswith(ELLIPSIS) and flat.startswith(out[:-1])


def test_render_item_texts_cuts_each_field_not_the_whole_text():
    items = pl.DataFrame(
        {
            "item_id": ["P1", "P2"],
            "item_idx": [0, 1],
            "title": ["Comb", "Lip balm"],
            "description": ["Wide teeth for thick and curly hair, made of wood.", None],
            "categories": [["Beauty", "Hair", "Combs and brushes"], []],
            "price": [12.5, None],
        }
    )
    template = "{title}: {description} [{categories}] ${price}"
    whole = render_item_texts(items, 2, template, max_field_chars=0)
    assert whole[0] == (
        "Comb: Wide teeth for thick and curly hair, made of wood. "
        "[Beauty, Hair, Combs and brushes] $12.5"
    )
    cut = render_item_texts(items, 2, template, max_field_chars=20)
    assert cut == ["Comb: Wide teeth for\u2026 [Beauty, Hair\u2026] $12.5", "Lip balm: [] $"]


def test_300_changes_no_ml100k_text():
    from bench.data.datasets import load_dataset

    ds = load_dataset(yaml.safe_load((REPO / "conf/dataset/ml-100k.yaml").read_text()))
    items = ds.items.with_row_index("item_idx").with_columns(pl.col("item_idx").cast(pl.Int64))
    template = "{title} ({year}). Genres: {genres}."
    n = items.height
    assert render_item_texts(items, n, template, max_field_chars=300) == render_item_texts(
        items, n, template
    )


@pytest.mark.parametrize("model", ["llm-embed", "llm-embed-pop", "llm-rerank", "llm-seq"])
def test_every_llm_model_config_sets_the_rule(model):
    params = yaml.safe_load((REPO / "conf" / "model" / f"{model}.yaml").read_text())["params"]
    assert params["max_field_chars"] == 300


@pytest.mark.parametrize("model", ["llm-embed", "llm-rerank", "llm-seq"])
def test_invalid_max_field_chars_is_one_line(model):
    with pytest.raises(ConfigError, match=r"max_field_chars=-1 is invalid: it must be an integer "
                       r">= 0.*model\.params\.max_field_chars=300"):
        registry.build(model, {"max_field_chars": -1})
    with pytest.raises(ConfigError, match=r"parameter 'max_field_chars' must be int, got 2\.5"):
        registry.build(model, {"max_field_chars": 2.5})
    ok = {"backend": "openai", "llm": "served-model"} if model == "llm-rerank" else {}
    assert registry.build(model, {**ok, "max_field_chars": 0}).config.max_field_chars == 0
