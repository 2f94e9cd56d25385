"""llm-seq: windows, conformance, determinism, early stopping, gpt2 arch, text init."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from baselines.llm.seq import LLMSeq, SeqConfig, pca_project, windows  # noqa: E402
from baselines.llm.testing import tiny_encoder  # noqa: E402
from bench.errors import ConfigError  # noqa: E402
from bench.models import registry  # noqa: E402
from bench.models.base import FitContext, History  # noqa: E402
from bench.testing import (
    ModelConformance,  # noqa: E402
    tiny_split,  # noqa: E402
)

TINY = {"hidden_size": 16, "n_layers": 1, "n_heads": 2, "max_len": 8, "epochs": 2, "batch_size": 64}


class TestLLMSeqConformance(ModelConformance):
    registry_name = "llm-seq"
    stochastic = True
    batch_atol = 1e-4  # float32 transformer: batch composition changes BLAS blocking

    def make_model(self, **params):
        return LLMSeq.from_params({**TINY, "epochs": 1, **params})

    def make_split(self):
        return tiny_split(n_users=20, n_items=40, n_events=600, seed=4)

    def allowed_nan(self, model, users, history):
        empty = np.array([len(history.sequences[u]) == 0 for u in users], dtype=bool)
        return np.repeat(empty[:, None], history.n_items, axis=1)


@pytest.fixture(scope="module")
def split():
    return tiny_split(n_users=20, n_items=40, n_events=600, seed=4)


def fit(split, root: Path, seed: int = 0, validate=None, **kw) -> LLMSeq:
    m = LLMSeq(SeqConfig(**{**TINY, **kw}))
    m.fit(split.model_data, FitContext(seed=seed, cache_dir=root / "cache", validate=validate))
    return m


def test_windows_cover_every_target_once():
    x, y = windows([np.arange(7), np.arange(1), np.arange(3)], max_len=3)
    targets = sorted(int(t) for t in y[y > 0])
    assert targets == sorted([*range(2, 8), 2, 3])  # tokens are item + 1; firsts excluded
    assert x.shape == y.shape and x.shape[1] == 3
    np.testing.assert_array_equal(x[y > 0] > 0, True)


def test_conformance_shape_nan_determinism(split, tmp_path):
    md = split.model_data
    users = np.arange(md.n_users)
    m1, m2 = fit(split, tmp_path), fit(split, tmp_path)
    s1 = m1.score(users, md.test_history)
    assert s1.shape == (md.n_users, md.n_items)
    np.testing.assert_array_equal(s1, m2.score(users, md.test_history))
    has = np.array([len(s) > 0 for s in md.test_history.sequences])
    assert np.isfinite(s1[has]).all()
    empty = History(matrix=md.test_history.matrix, sequences=[np.zeros(0, np.int64)] * md.n_users)
    assert np.isnan(m1.score(users[:3], empty)).all()
    m3 = fit(split, tmp_path, seed=1)
    assert not np.array_equal(s1, m3.score(users, md.test_history))
    assert m1.n_parameters() > 0


def test_early_stopping_keeps_best_weights(split, tmp_path):
    md = split.model_data
    seen: list[np.ndarray] = []
    values = iter([0.5, 0.1, 0.1, 0.1, 0.1])

    def validate(model):
        seen.append(model.score(np.arange(md.n_users), md.train_history))
        return {"ndcg_at_10": next(values)}

    m = fit(split, tmp_path, validate=validate, epochs=5, patience=2)
    assert len(m.history_) == 3  # best at epoch 0, two epochs without improvement
    np.testing.assert_allclose(m.score(np.arange(md.n_users), md.train_history), seen[0])


def test_gpt2_architecture(split, tmp_path):
    m = fit(split, tmp_path, arch="gpt2", epochs=1)
    s = m.score(np.arange(3), split.model_data.test_history)
    assert s.shape == (3, split.model_data.n_items)


def test_text_init_uses_encoder_embeddings(split, tmp_path):
    enc = tiny_encoder(tmp_path / "enc", hidden=32)
    m = fit(split, tmp_path, init="text", encoder=str(enc), epochs=0)
    w = m.model.get_input_embeddings().weight.detach().numpy()[1:].astype(np.float64)
    from baselines.llm.encoder import embed_items
    from bench.item_text import render_item_texts

    texts = render_item_texts(split.model_data.items, split.model_data.n_items, m.config.template)
    emb, stats = embed_items(texts, enc, tmp_path / "cache", template=m.config.template)
    assert stats.cache_hit  # the same on-disk cache as llm-embed
    proj = pca_project(emb.astype(np.float64), 16)
    np.testing.assert_allclose(w / w.std(), proj / proj.std(), atol=1e-4)


def test_bad_params():
    with pytest.raises(ConfigError):
        LLMSeq(SeqConfig(arch="bert"))
    with pytest.raises(ConfigError):
        LLMSeq(SeqConfig(hidden_size=10, n_heads=3))


def test_build_checks_the_text_init_encoder_folder(tmp_path):
    """init=text: a bad encoder fails in registry.build (before the runner creates a run)."""
    (tmp_path / "empty").mkdir()
    for path, want in (
        (tmp_path / "nope", "does not exist"),
        (tmp_path / "empty", "missing config.json; tokenizer files"),
    ):
        with pytest.raises(ConfigError) as err:
            registry.build("llm-seq", {"init": "text", "encoder": str(path)})
        assert f"llm-seq: params.encoder={str(path)!r}" in str(err.value) and want in str(err.value)
    # init=random never reads the encoder, so it is not checked
    assert registry.build("llm-seq", {"encoder": str(tmp_path / "nope")}).config.init == "random"
    enc = tiny_encoder(tmp_path / "enc")
    assert registry.build("llm-seq", {"init": "text", "encoder": str(enc)}).config.init == "text"
    assert registry.build("llm-seq", {"init": "text"}).config.encoder == ""  # bundled encoder
