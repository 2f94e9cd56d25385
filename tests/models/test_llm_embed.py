"""llm-embed: conformance, the on-disk embedding cache, templates, pooling, light registry."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import baselines.llm.encoder as encoder_mod  # noqa: E402
from baselines.llm.embed import EmbedConfig, LLMEmbed, user_profiles  # noqa: E402
from baselines.llm.testing import tiny_encoder  # noqa: E402
from bench.errors import ConfigError  # noqa: E402
from bench.item_text import render_item_texts  # noqa: E402
from bench.models import registry  # noqa: E402
from bench.models.base import FitContext, History  # noqa: E402
from bench.testing import (
    ModelConformance,  # noqa: E402
    tiny_split,  # noqa: E402
)


@functools.cache
def _shared_encoder() -> Path:
    return tiny_encoder(Path(tempfile.mkdtemp(prefix="llm-embed-enc-")) / "tiny")


class TestLLMEmbedPopConformance(ModelConformance):
    """The hybrid (llm-embed-pop): finite scores for every user."""

    registry_name = "llm-embed-pop"
    batch_atol = 1e-12  # one BLAS product per batch

    def make_model(self, **params):
        params = {"pop_weight": 1.0, **params}
        return LLMEmbed.from_params({"encoder": str(_shared_encoder()), **params})


class TestLLMEmbedPureContentConformance(TestLLMEmbedPopConformance):
    """The default llm-embed: pure content, NaN for users without history."""

    registry_name = "llm-embed"

    def make_model(self, **params):
        return super().make_model(pop_weight=0.0, **params)

    def allowed_nan(self, model, users, history):
        empty = np.array([len(history.sequences[u]) == 0 for u in users], dtype=bool)
        return np.repeat(empty[:, None], history.n_items, axis=1)


@pytest.fixture(scope="module")
def split():
    return tiny_split(n_users=20, n_items=40, n_events=600, seed=3)


@pytest.fixture(scope="module")
def enc_dir(tmp_path_factory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny")


def fit(split, enc: Path, root: Path, **kw) -> LLMEmbed:
    m = LLMEmbed(EmbedConfig(encoder=str(enc), **kw))
    m.fit(split.model_data, FitContext(seed=0, cache_dir=root / "cache", workdir=root / "w"))
    return m


def test_conformance_shape_nan_determinism(split, enc_dir, tmp_path):
    md = split.model_data
    users = np.arange(md.n_users)
    m1 = fit(split, enc_dir, tmp_path / "a", pop_weight=0.0)
    m2 = fit(split, enc_dir, tmp_path / "b", pop_weight=0.0)
    s1 = m1.score(users, md.test_history)
    assert s1.shape == (md.n_users, md.n_items) and s1.dtype == np.float64
    np.testing.assert_array_equal(s1, m2.score(users, md.test_history))
    has = np.array([len(s) > 0 for s in md.test_history.sequences])
    assert np.isfinite(s1[has]).all()
    # a user without history cannot be scored by content alone: NaN row
    empty = History(matrix=md.test_history.matrix, sequences=[np.zeros(0, np.int64)] * md.n_users)
    assert np.isnan(m1.score(users[:2], empty)).all()
    # with the popularity prior the same user gets the prior alone
    m3 = fit(split, enc_dir, tmp_path / "a", pop_weight=1.0)
    np.testing.assert_allclose(m3.score(users[:1], empty)[0], m3.prior)
    assert m1.n_parameters() > 0


def test_scores_are_cosines_of_recency_weighted_profiles(split, enc_dir, tmp_path):
    md = split.model_data
    m = fit(split, enc_dir, tmp_path, pop_weight=0.0, decay=0.5, max_history=3)
    emb = m.item_emb.astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    u = int(np.argmax([len(s) for s in md.test_history.sequences]))
    seq = md.test_history.sequences[u][-3:]
    v = 0.25 * emb[seq[0]] + 0.5 * emb[seq[1]] + emb[seq[2]]
    want = emb @ (v / np.linalg.norm(v))
    np.testing.assert_allclose(m.score(np.array([u]), md.test_history)[0], want, atol=1e-6)
    prof = user_profiles(m.item_emb, md.test_history.sequences, np.array([u]), 0.5, 3)
    np.testing.assert_allclose(np.linalg.norm(prof), 1.0)


def test_cache_hit_on_second_fit_and_invalidation(split, enc_dir, tmp_path, monkeypatch):
    m1 = fit(split, enc_dir, tmp_path)
    assert not m1.encode_stats.cache_hit and m1.encode_stats.path.suffix == ".safetensors"

    def boom(*a, **k):
        raise AssertionError("re-encoded although the cache should hit")

    with monkeypatch.context() as mp:
        mp.setattr(encoder_mod.TextEncoder, "encode", boom)
        m2 = fit(split, enc_dir, tmp_path)
    assert m2.encode_stats.cache_hit
    np.testing.assert_array_equal(m1.item_emb, m2.item_emb)
    m3 = fit(split, enc_dir, tmp_path, template="{title}")  # template change: new entry
    assert not m3.encode_stats.cache_hit
    assert m3.encode_stats.path != m1.encode_stats.path
    other = tiny_encoder(tmp_path / "enc2", seed=1)  # encoder change: new entry
    assert not fit(split, other, tmp_path).encode_stats.cache_hit
    assert not list((tmp_path / "cache").rglob("*.pkl"))


def test_text_prior_query(split, enc_dir, tmp_path):
    """prior_query: the encoded query, times prior_weight, joins the unit-norm profile; a user
    without history is ranked by the query alone (no NaN); no interaction statistic is used."""
    md = split.model_data
    users = np.arange(md.n_users)
    kw = {"prior_query": "a popular movie", "prior_weight": 2.0}
    m = fit(split, enc_dir, tmp_path, **kw)
    base = fit(split, enc_dir, tmp_path)
    emb = m.item_emb.astype(np.float64)
    q = m.query_emb
    assert q is not None and abs(np.linalg.norm(q) - 1.0) < 1e-5
    # the query is encoded by the same encoder and pooling as the items
    enc = encoder_mod.TextEncoder(enc_dir).encode(["a popular movie"])[0]
    np.testing.assert_allclose(q, enc, atol=1e-6)
    empty = History(matrix=md.test_history.matrix, sequences=[np.zeros(0, np.int64)] * md.n_users)
    np.testing.assert_allclose(m.score(users[:3], empty), np.tile(2.0 * emb @ q, (3, 1)))
    prof = user_profiles(m.item_emb, md.test_history.sequences, users, 0.9, 50)
    want = (np.nan_to_num(prof) + 2.0 * q) @ emb.T
    np.testing.assert_allclose(m.score(users, md.test_history), want, atol=1e-12)
    has = np.array([len(s) > 0 for s in md.test_history.sequences])
    got, pure = m.score(users, md.test_history)[has], base.score(users, md.test_history)[has]
    assert not np.allclose(got, pure)  # the prior changes the scores
    assert np.isfinite(m.score(users, md.test_history)).all()  # no NaN row, cold users too
    with pytest.raises(ConfigError, match="prior_query"):
        LLMEmbed(EmbedConfig(prior_weight=1.0))
    with pytest.raises(ConfigError, match="prior_weight"):
        LLMEmbed(EmbedConfig(prior_query="x", prior_weight=-1.0))
    # off by default: the class and conf/model/llm-embed.yaml add nothing
    assert LLMEmbed().config.prior_weight == 0.0


def test_template_field_that_is_not_a_column_fails_at_fit(split, enc_dir, tmp_path):
    with pytest.raises(ConfigError) as err:
        fit(split, enc_dir, tmp_path, template="{titel} ({year})")
    msg = str(err.value)
    assert msg.startswith("llm-embed: template field {titel} is not a column of the items table")
    assert "did you mean 'title'?" in msg and "fix model.params.template" in msg


def test_item_embeddings_metric_template_typo_fails_but_no_side_information_skips(
    split, enc_dir, tmp_path
):
    from bench.runner import item_embeddings

    md = split.model_data
    with pytest.raises(ConfigError, match=r"metrics.item_embeddings: template field \{titel\}"):
        item_embeddings((str(enc_dir), "{titel} {year}"), md.items, md.n_items, tmp_path, False)
    bare = md.items.select("item_idx")  # no side information at all: ild_emb is skipped
    assert item_embeddings((str(enc_dir), "{title}"), bare, md.n_items, tmp_path, False) is None


def test_template_rendering(split):
    items = split.model_data.items
    texts = render_item_texts(items, split.model_data.n_items + 1, "{title} ({year}). {nope}")
    assert texts[0] == "Movie 0 (1970)."  # absent column renders empty
    assert texts[-1] == "()."  # an index without side information renders empty fields
    g = render_item_texts(items, 2, "Genres: {genres}")
    assert g[0] == "Genres: Action" and g[1] == "Genres: Action, Comedy"
    for bad in ("{title.__class__}", "{title[0]}", "{title!r}", "{0}"):
        with pytest.raises(ConfigError):
            LLMEmbed(EmbedConfig(template=bad))


def test_registry_and_light_package_import():
    assert registry.get("llm-embed") is LLMEmbed and registry.get("llm-embed-pop") is LLMEmbed
    assert LLMEmbed().config.pop_weight == 0.0  # the default is pure content
    code = (
        "import sys, baselines.llm as m; "
        "assert set(m.MODELS) == {'llm-embed', 'llm-embed-pop', 'llm-rerank', 'llm-seq'}; "
        "bad = [x for x in ('torch', 'transformers') if x in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_default_encoder_matches_sentence_transformers(tmp_path):
    from sentence_transformers import SentenceTransformer

    from baselines.llm.common import default_encoder_path

    texts = ["Toy Story (1995). Genres: Animation, Comedy.", "Heat (1995). Genres: Action."]
    ours = encoder_mod.TextEncoder(default_encoder_path()).encode(texts)
    ref = SentenceTransformer(default_encoder_path(), device="cpu").encode(texts)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_build_checks_the_encoder_folder(tmp_path):
    """A bad encoder fails in registry.build (before the runner creates a run), one line."""
    enc = tiny_encoder(tmp_path / "enc")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for f in enc.iterdir():
        name = "pytorch_model.bin" if f.name == "model.safetensors" else f.name
        (pickled / name).write_bytes(f.read_bytes())  # never loaded
    (tmp_path / "empty").mkdir()
    cases = {
        str(tmp_path / "nope"): "does not exist",
        str(tmp_path / "empty"): "missing config.json; tokenizer files",
        str(pickled): "found only pytorch_model.bin: pickle weights are refused for safety",
    }
    for name in ("llm-embed", "llm-embed-pop"):
        for path, want in cases.items():
            with pytest.raises(ConfigError) as err:
                registry.build(name, {"encoder": path})
            assert f"llm-embed: params.encoder={path!r}" in str(err.value)
            assert want in str(err.value) and "\n" not in str(err.value)
        assert registry.build(name, {"encoder": str(enc)}).config.encoder == str(enc)
    assert registry.build("llm-embed", {}).config.encoder == ""  # the bundled encoder passes
