"""One test per RecBole 1.2.1 workaround in baselines/recbole/compat.py."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from baselines.recbole import compat
from baselines.recbole.adapter import BPR, RecBoleModel
from bench.errors import ConfigError
from bench.models.base import FitContext
from bench.testing import tiny_split

ROOT = Path(__file__).resolve().parents[2]


def fit_bpr(tmp_path: Path, **params) -> BPR:
    model = BPR.from_params({"epochs": 1, **params})
    model.fit(tiny_split().model_data, FitContext(seed=0, workdir=tmp_path))
    return model


def test_numpy_aliases_and_no_quick_start_in_a_fresh_interpreter() -> None:
    """Fresh process: the aliases are missing before, RecBole imports after, ray never loads."""
    code = (
        "import sys, numpy as np\n"
        "names = ('float_', 'float', 'complex_', 'unicode_')\n"
        "missing = [a for a in names if a not in np.__dict__]\n"
        "from baselines.recbole import compat\n"
        "added = compat.patch_numpy()\n"
        "compat.import_recbole()\n"
        "from recbole.config import Config\n"
        "from recbole.evaluator import metrics\n"
        "print(sorted(missing) == sorted(added), np.float_ is np.float64, np.unicode_ is np.str_)\n"
        "print('recbole.quick_start' in sys.modules, 'ray' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True", "False", "False"]


def test_patch_numpy_is_idempotent() -> None:
    compat.patch_numpy()
    assert compat.patch_numpy() == []
    assert np.complex_ is np.complex128 and np.float is np.float64


def test_fit_and_evaluate_never_torch_load_or_save(tmp_path: Path, monkeypatch) -> None:
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load/torch.save must not be called")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch, "save", refuse)
    split = tiny_split()
    values = iter([0.2, 0.1, 0.3])
    model = BPR.from_params({"epochs": 3})
    ctx = FitContext(seed=0, workdir=tmp_path, validate=lambda m: {"ndcg_at_10": next(values)})
    model.fit(split.model_data, ctx)
    assert model.best_epoch == 2
    with compat.recbole_session():
        result = model.trainer.evaluate(_valid_loader(model, split, tmp_path),
                                        **compat.NO_BEST_MODEL_LOAD)  # fmt: skip
    assert "ndcg@10" in result
    assert not list((tmp_path / "recbole" / "saved").glob("*"))


def _valid_loader(model, split, tmp_path: Path):
    with compat.seeded(0, 1):
        return model.build(split.model_data, FitContext(seed=0, workdir=tmp_path / "b"))[3]


def test_pandas_3_is_refused_with_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        compat.check_pandas("3.0.0")
    assert "\n" not in str(err.value) and "pandas>=2,<3" in str(err.value)
    compat.check_pandas("2.3.3")
    compat.check_pandas()  # the installed one


def test_copy_on_write_is_off_inside_and_restored(tmp_path: Path) -> None:
    with pd.option_context("mode.copy_on_write", True):
        with compat.recbole_session():
            assert pd.get_option("mode.copy_on_write") is False
        assert pd.get_option("mode.copy_on_write") is True
        model = fit_bpr(tmp_path)  # RecBole's in-place fillna path runs under the session
        assert model.n_parameters() > 0
        assert pd.get_option("mode.copy_on_write") is True


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_recbole_logging_is_silenced_and_others_pass(tmp_path: Path, capsys) -> None:
    root = logging.getLogger()
    handler, level = _Collect(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with compat.recbole_session():
            logging.getLogger().info("harness message")
            logging.getLogger().warning("from recbole? no")
        fit_bpr(tmp_path)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    recbole_dir = str(compat._FromRecBole().root)
    assert not [r for r in handler.records if r.pathname.startswith(recbole_dir)]
    assert [r.getMessage() for r in handler.records] == ["harness message", "from recbole? no"]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert root.filters == [] and handler.filters == []


def test_sys_argv_does_not_reach_recbole(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["bench", "--epochs=50", "--embedding_size=3"])
    model = fit_bpr(tmp_path, embedding_size=4)
    assert model.epochs_trained == 1
    assert model.model.embedding_size == 4
    assert sys.argv == ["bench", "--epochs=50", "--embedding_size=3"]


def test_no_files_in_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    fit_bpr(tmp_path / "work")
    assert list(cwd.iterdir()) == []  # no log_tensorboard/, log/, saved/


def test_scipy_dok_update_for_graph_models(tmp_path: Path) -> None:
    import scipy.sparse as sp

    compat.patch_scipy()
    m = sp.dok_matrix((3, 3), dtype=np.float32)
    m._update({(0, 1): 1.0, (2, 2): 2.0})
    assert m.toarray()[0, 1] == 1.0 and m.nnz == 2
    model = RecBoleModel.from_params({"model": "LightGCN", "epochs": 1, "embedding_size": 8})
    model.fit(tiny_split().model_data, FitContext(seed=0, workdir=tmp_path))
    assert model.n_parameters() > 0


def test_seeding_restores_global_state_and_threads() -> None:
    import torch

    threads = torch.get_num_threads()
    random.seed(5)
    np.random.seed(5)
    want = random.random(), np.random.random_sample()
    random.seed(5)
    np.random.seed(5)
    with compat.seeded(123, 1):
        assert torch.get_num_threads() == 1
        a = np.random.random_sample()
    with compat.seeded(123, 1):
        assert np.random.random_sample() == a  # RecBole's init_seed took effect inside
    assert (random.random(), np.random.random_sample()) == want
    assert torch.get_num_threads() == threads


def test_cuda_visible_devices_is_restored_after_recbole(monkeypatch):
    import os

    from baselines.recbole.compat import recbole_session

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with recbole_session():
        from recbole.config import Config  # noqa: F401

        os.environ["CUDA_VISIBLE_DEVICES"] = "0"  # what RecBole's Config does
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with recbole_session():
        os.environ["CUDA_VISIBLE_DEVICES"] = "0"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
