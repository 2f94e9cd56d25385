"""metrics.item_embeddings: checked before any data work; texts, NaN rows, cache."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from bench.errors import ConfigError
from bench.runner import embedding_spec, item_embeddings


def cfg(value):
    return {"metrics": {"item_embeddings": value}}


@pytest.mark.parametrize(
    "value, match",
    [
        ("yes", "must be null or"),
        ({"encoder": "", "template": "{title}", "model": "x"}, "must be null or"),
        ({"encoder": "", "template": "no field"}, "has no {column} field"),
        ({"encoder": "", "template": "{title!r}"}, "not allowed"),
        ({"encoder": "/nonexistent/enc", "template": "{title}"}, "'/nonexistent/enc' is not"),
    ],
)
def test_bad_settings_are_one_line_config_errors(value, match):
    with pytest.raises(ConfigError, match=match) as e:
        embedding_spec(cfg(value))
    assert "\n" not in str(e.value)


def test_null_is_off_and_empty_encoder_is_the_bundled_one():
    assert embedding_spec(cfg(None)) is None and embedding_spec({}) is None
    encoder, template = embedding_spec(cfg({"encoder": "", "template": "{title} {year}"}))
    assert "minilm" in encoder.lower() and template == "{title} {year}"


def test_items_without_text_get_nan_rows_and_embeddings_are_cached(tmp_path):
    """A real encoder pass (the bundled all-MiniLM-L6-v2), then the on-disk cache."""
    items = pl.DataFrame(
        {"item_idx": [0, 1, 3], "title": ["Toy Story", "Heat", None], "year": [1995, 1995, None]}
    )
    c = embedding_spec(cfg({"encoder": "", "template": "{title} ({year})"}))
    emb = item_embeddings(c, items, 4, tmp_path, progress=False)
    assert emb.shape == (4, 384)
    assert np.isnan(emb[2]).all() and np.isnan(emb[3]).all()  # no row / null fields: no text
    np.testing.assert_allclose(np.linalg.norm(emb[:2], axis=1), 1.0, atol=1e-6)
    assert 0.0 < float(emb[0] @ emb[1]) < 0.99  # two different titles
    assert list((tmp_path / "llm-embed").glob("*.safetensors"))
    again = item_embeddings(c, items, 4, tmp_path, progress=False)
    np.testing.assert_array_equal(again, emb)
    none = pl.DataFrame({"item_idx": [0], "title": [None], "year": [None]})
    assert item_embeddings(c, none, 1, tmp_path, progress=False) is None


class _ConstantEncoder:
    def default_path(self) -> str:
        return "/nowhere"

    def embed(self, texts, path, cache_dir, *, template, progress):
        return np.ones((len(texts), 2), dtype=np.float32) / np.sqrt(2)


def test_the_encoder_comes_from_the_registry_by_name(monkeypatch):
    """bench imports no encoder: the model packages register one ("hf" from the LLM family),
    and others can be added by name."""
    from bench import item_text

    monkeypatch.setattr(item_text, "_EXTRA", {})
    hf = item_text.encoder()
    assert type(hf).__name__ == "HFItemEncoder" and "minilm" in hf.default_path().lower()
    with pytest.raises(ConfigError, match="unknown item encoder 'hff'.*did you mean 'hf'"):
        item_text.encoder("hff")
    with pytest.raises(ConfigError, match="'hf' is already registered"):
        item_text.register_encoder("hf", _ConstantEncoder)
    item_text.register_encoder("constant", _ConstantEncoder)
    emb = item_text.encoder("constant").embed(["a", "b"], "", None, template="", progress=False)
    assert emb.shape == (2, 2)
