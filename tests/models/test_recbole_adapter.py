"""The RecBole adapter: conformance (BPR, SASRec), config errors, early stopping, sequences."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

from baselines.recbole import MODELS
from baselines.recbole.adapter import BPR, RecBoleModel, SASRec
from baselines.recbole.atomic import DATASET
from bench.data.indexing import index_split
from bench.errors import ConfigError
from bench.metrics.engine import evaluate_arrays
from bench.models import registry
from bench.models.base import FitContext, History, Recommender
from bench.ranking import topk
from bench.testing import ModelConformance, tiny_frames, tiny_split

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
ROOT = Path(__file__).resolve().parents[2]
#: tiny SASRec: one layer of width 8 over the last 5 items, one epoch (about a second)
TINY_SASREC = dict(epochs=1, hidden_size=8, inner_size=16, n_layers=1, n_heads=1,
                   MAX_ITEM_LIST_LENGTH=5)  # fmt: skip


def harness_validate(split, k: int = 10):
    """``ctx.validate`` as the runner builds it: topk on train history, harness metrics on valid."""
    md = split.model_data
    truth = split.matrix("valid")
    users = np.flatnonzero(np.diff(truth.indptr) > 0)

    def validate(model: Recommender) -> dict[str, float]:
        scores = model.score(users, md.train_history)
        rec, _ = topk(scores, k, md.train_history.matrix[users])
        return evaluate_arrays(users, rec, truth, ks=(k,)).summary

    return validate


def stub_validate(values: list[float], seen: list[np.ndarray], split):
    """A validate returning ``values`` in turn and recording the scores it was shown."""
    it = iter(values)
    users = np.arange(split.model_data.n_users)

    def validate(model: Recommender) -> dict[str, float]:
        seen.append(model.score(users, split.model_data.train_history))
        return {"ndcg_at_10": next(it)}

    return validate


def fit(model: Recommender, tmp_path: Path, seed: int = 0, split=None, **ctx: Any) -> Any:
    split = split or tiny_split()
    model.fit(split.model_data, FitContext(seed=seed, workdir=tmp_path, **ctx))
    return model


class TestBPRConformance(ModelConformance):
    registry_name = "bpr"
    stochastic = True
    # RecBole scores in float32 and BLAS blocking depends on the batch size: the same user's
    # scores may differ by a float32 ulp of the dot product's terms (about 2e-8 absolute),
    # a large *relative* difference for scores near 0, hence an absolute tolerance
    batch_rtol = 1e-6
    batch_atol = 1e-6

    def make_model(self, **params: Any) -> Recommender:
        return BPR.from_params({"epochs": 2, "embedding_size": 8, **params})

    def allowed_nan(self, model, users, history) -> np.ndarray:
        return ~model.scorable(users, history)


class TestSASRecConformance(ModelConformance):
    registry_name = "sasrec"
    stochastic = True
    # float32 transformer kernels: same reasoning as TestBPRConformance
    batch_rtol = 1e-6
    batch_atol = 1e-6

    def make_model(self, **params: Any) -> Recommender:
        return SASRec.from_params({**TINY_SASREC, **params})

    def allowed_nan(self, model, users, history) -> np.ndarray:
        return ~model.scorable(users, history)


# ------------------------------------------------------------------------ names and params
def test_registry_names_and_light_import() -> None:
    assert {
        "bpr",
        "lightgcn",
        "neumf",
        "multvae",
        "sasrec",
        "gru4rec",
        "bert4rec",
        "recbole",
    } <= set(MODELS)
    code = (
        "import sys, baselines.recbole as b; from bench.models import registry; "
        "registry.names(); registry.build('bpr', {}); "
        "print(int('torch' in sys.modules), int('recbole' in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "0"]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_conf_yaml_validates(name: str) -> None:
    conf = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    assert conf["name"] == name
    model = registry.build(name, conf["params"])
    assert isinstance(model, RecBoleModel)
    assert model.config.epochs >= 1


def test_generic_entry_reaches_any_model_case_insensitively() -> None:
    assert RecBoleModel.from_params({"model": "ngcf"}).config.model == "NGCF"
    assert RecBoleModel.from_params({"model": "Caser"}).kind == "sequential"


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"model": "LightGNC"}, "did you mean 'LightGCN'"),
        ({"model": "DeepFM"}, "context-aware"),
        ({}, "model.params.model"),
        ({"model": "BPR", "embeding_size": 8}, "did you mean 'embedding_size'"),
        ({"model": "BPR", "learning_rat": 0.1}, "did you mean 'learning_rate'"),
        ({"model": "BPR", "seed": 3}, "set by the harness"),
        ({"model": "BPR", "benchmark_filename": ["a"]}, "set by the harness"),
        ({"model": "BPR", "epochs": "many"}, "must be int"),
    ],
)
def test_config_errors_are_one_line(params: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        RecBoleModel.from_params(params, "recbole")
    msg = str(err.value)
    assert "\n" not in msg and needle in msg, msg


def test_named_model_refuses_another_recbole_model() -> None:
    with pytest.raises(ConfigError, match="always runs RecBole BPR"):
        BPR.from_params({"model": "NGCF"})
    assert BPR.from_params({"model": "bpr"}).config.model == "BPR"


def test_pass_through_reaches_recbole(tmp_path: Path) -> None:
    split = tiny_split()
    model = fit(BPR.from_params({"epochs": 1, "embedding_size": 4}), tmp_path, split=split)
    n_users = len(np.unique(split.model_data.train["user_idx"].to_numpy()))
    n_items = len(np.unique(split.model_data.train["item_idx"].to_numpy()))
    assert model.n_parameters() == (n_users + 1 + n_items + 1) * 4  # + RecBole's padding ids


# ------------------------------------------------------------------------------- the split
def test_atomic_files_are_the_split_unfiltered(tmp_path: Path) -> None:
    split = tiny_split()
    md = split.model_data
    model = fit(BPR.from_params({"epochs": 1}), tmp_path, split=split)
    folder = tmp_path / "recbole" / DATASET
    lines = (folder / f"{DATASET}.train.inter").read_text().splitlines()
    assert len(lines) - 1 == md.train.height == model.files.rows["train"]
    assert model.files.rows["valid"] + model.files.dropped["valid"] == md.valid.height
    got = sorted(tuple(map(int, line.split("\t")[:2])) for line in lines[1:])
    want = sorted(zip(md.train["user_idx"].to_list(), md.train["item_idx"].to_list(), strict=True))
    assert got == want
    # ids map back: the score column of a harness item is RecBole's embedding of that item
    users = np.arange(md.n_users)
    scores = model.score(users, md.test_history)
    import torch

    u_emb = model.model.user_embedding.weight.detach()
    i_emb = model.model.item_embedding.weight.detach()
    for u in (0, 7):
        for i in np.flatnonzero(model.scorable(users, md.test_history)[u])[:5]:
            want_score = float(u_emb[model._user_to_rb[u]] @ i_emb[model._item_to_rb[i]])
            assert scores[u, i] == pytest.approx(want_score, rel=1e-6)
    assert torch.is_tensor(u_emb)


def test_items_outside_train_are_nan(tmp_path: Path) -> None:
    """Catalog-only items and an item seen only in valid: RecBole never trained them -> NaN."""
    f = tiny_frames()
    extra = pl.DataFrame({"item_id": ["i900", "i901"], "title": ["a", "b"], "year": [2000, 2001],
                          "genres": [["Drama"], ["Comedy"]]})  # fmt: skip
    valid_only = f["valid"].head(1).with_columns(pl.lit("i950").alias("item_id"))
    split = index_split(f["train"], pl.concat([f["valid"], valid_only]), f["test"],
                        pl.concat([f["items"], extra]), f["users"])  # fmt: skip
    md = split.model_data
    model = fit(BPR.from_params({"epochs": 1}), tmp_path, split=split)
    assert model.files.dropped["valid"] == 1  # never handed to RecBole
    scores = model.score(np.arange(md.n_users), md.test_history)
    in_train = np.zeros(md.n_items, dtype=bool)
    in_train[md.train["item_idx"].to_numpy()] = True
    assert (~in_train).sum() >= 3
    assert np.isnan(scores[:, ~in_train]).all()
    assert np.isfinite(scores[:, in_train]).all()


# -------------------------------------------------------------------------- early stopping
def test_early_stopping_restores_best_epoch(tmp_path: Path) -> None:
    split = tiny_split()
    seen: list[np.ndarray] = []
    values = [0.1, 0.5, 0.2, 0.3, 0.1, 0.9, 0.9]
    model = BPR.from_params({"epochs": 7, "stopping_step": 2})
    fit(model, tmp_path, split=split, validate=stub_validate(values, seen, split))
    # RecBole's rule: stop once more than stopping_step validations in a row did not improve
    assert len(seen) == 5 and model.epochs_trained == 5
    assert model.best_epoch == 1
    final = model.score(np.arange(split.model_data.n_users), split.model_data.train_history)
    np.testing.assert_array_equal(final, seen[1])
    assert not np.array_equal(final, seen[-1])
    assert model.report().metrics == {"recbole_best_epoch": 1.0, "recbole_epochs_trained": 5.0}


def test_eval_step_and_no_validate(tmp_path: Path) -> None:
    split = tiny_split()
    seen: list[np.ndarray] = []
    model = BPR.from_params({"epochs": 4, "eval_step": 2})
    fit(model, tmp_path / "a", split=split, validate=stub_validate([0.1, 0.2], seen, split))
    assert len(seen) == 2 and model.best_epoch == 3
    plain = fit(BPR.from_params({"epochs": 3}), tmp_path / "b", split=split)
    assert plain.epochs_trained == 3 and plain.best_epoch == -1


def test_early_stopping_on_harness_metric(tmp_path: Path) -> None:
    split = tiny_split()
    model = BPR.from_params({"epochs": 4, "stopping_step": 10, "learning_rate": 0.01})
    fit(model, tmp_path, split=split, validate=harness_validate(split))
    ndcg = [r["ndcg_at_10"] for r in model.valid_history]
    assert len(ndcg) == 4
    assert model.best_epoch == max(i for i, v in enumerate(ndcg) if v == max(ndcg))
    assert harness_validate(split)(model)["ndcg_at_10"] == pytest.approx(max(ndcg), abs=1e-12)


def test_missing_early_stopping_metric_is_config_error(tmp_path: Path) -> None:
    split = tiny_split()
    with pytest.raises(ConfigError, match="early-stopping metric 'ndcg_at_10'"):
        fit(BPR.from_params({"epochs": 1}), tmp_path, split=split, validate=lambda m: {"x": 1.0})


def test_progress_bar_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    split = tiny_split()
    fit(BPR.from_params({"epochs": 2}), tmp_path / "q", split=split)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    fit(BPR.from_params({"epochs": 2}), tmp_path / "p", split=split, progress=True)
    assert "BPR epochs" in capsys.readouterr().err


# ------------------------------------------------------------------------------ sequences
def test_sequential_input_is_the_passed_history(tmp_path: Path) -> None:
    import torch
    from recbole.data.interaction import Interaction

    split = tiny_split()
    md = split.model_data
    model = fit(SASRec.from_params(TINY_SASREC), tmp_path, split=split)
    users = np.arange(md.n_users)
    h = md.test_history
    scores = model.score(users, h)
    u = int(np.argmax([len(s) for s in h.sequences]))
    last = model._item_to_rb[h.sequences[u]][-5:]  # known items, time order, last max_len
    inter = Interaction({
        "user_id": torch.tensor([model._user_to_rb[u]]),
        "item_id_list": torch.tensor(last[None, :]),
        "item_length": torch.tensor([len(last)]),
    })  # fmt: skip
    with torch.no_grad():
        want = model.model.full_sort_predict(inter).view(-1).numpy()
    np.testing.assert_allclose(scores[u, model._rb_items], want[1:], rtol=0, atol=1e-7)
    # valid interactions change the input at test time
    train_scores = model.score(users, md.train_history)
    changed = [v for v in users if len(h.sequences[v]) > len(md.train_history.sequences[v])]
    assert changed and not np.allclose(scores[changed], train_scores[changed])
    # only the last MAX_ITEM_LIST_LENGTH items matter; an empty history cannot be scored
    seqs = list(h.sequences)
    seqs[u] = np.concatenate([h.sequences[(u + 1) % md.n_users], h.sequences[u][-5:]])
    seqs[0] = np.zeros(0, dtype=np.int64)
    other = History(matrix=h.matrix, sequences=seqs)
    again = model.score(np.array([u, 0]), other)
    np.testing.assert_allclose(again[0], scores[u], rtol=0, atol=1e-7)
    assert np.isnan(again[1]).all()


@pytest.mark.parametrize("name", ["GRU4Rec", "BERT4Rec", "NeuMF", "MultiVAE", "LightGCN"])
def test_other_models_train_and_score(name: str, tmp_path: Path) -> None:
    split = tiny_split()
    small = {
        "GRU4Rec": dict(embedding_size=8, hidden_size=8, MAX_ITEM_LIST_LENGTH=5),
        "BERT4Rec": dict(hidden_size=8, inner_size=16, n_layers=1, n_heads=1,
                         MAX_ITEM_LIST_LENGTH=5),
        "NeuMF": dict(mf_embedding_size=8, mlp_embedding_size=8, mlp_hidden_size=[16, 8]),
        "MultiVAE": dict(latent_dimension=8, mlp_hidden_size=[16]),
        "LightGCN": dict(embedding_size=8, n_layers=1),
    }[name]  # fmt: skip
    model = RecBoleModel.from_params({"model": name, "epochs": 1, **small})
    fit(model, tmp_path, split=split, validate=harness_validate(split))
    md = split.model_data
    scores = model.score(np.arange(md.n_users), md.test_history)
    assert scores.shape == (md.n_users, md.n_items) and scores.dtype == np.float64
    ok = model.scorable(np.arange(md.n_users), md.test_history)
    assert np.isfinite(scores[ok]).all() and np.isnan(scores[~ok]).all()
    assert model.n_parameters() > 0


def test_score_before_fit_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        BPR.from_params({}).score(np.zeros(1, dtype=np.int64), tiny_split().model_data.test_history)
