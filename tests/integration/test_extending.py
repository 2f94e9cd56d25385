"""Extending as the README says: a new family package under baselines/ is found without
editing the harness, and a model from another package brings its own config folder."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from bench.models import registry

from .conftest import bench, runs

pytestmark = [pytest.mark.integration]

MODEL = textwrap.dedent('''
    from dataclasses import dataclass

    import numpy as np

    from bench.models.base import Recommender


    class TrainPop(Recommender):
        """Train popularity (a stand-in third-party model)."""

        name = "{name}"

        @dataclass(frozen=True)
        class Config:
            boost: float = 1.0

        def fit(self, data, ctx):
            self.pop = np.asarray(data.train_history.matrix.sum(axis=0)).ravel() * self.config.boost

        def score(self, users, history):
            return np.tile(self.pop, (len(users), 1)).astype(np.float64)
''')


def test_a_new_family_package_is_registered_without_editing_the_harness(tmp_path, monkeypatch):
    import baselines

    family = tmp_path / "genre"
    family.mkdir()
    (family / "__init__.py").write_text(
        'MODELS = {"genre-pop": "baselines.genre.model:TrainPop"}\n')
    (family / "model.py").write_text(MODEL.format(name="genre-pop"))
    monkeypatch.setattr(baselines, "__path__", [*baselines.__path__, str(tmp_path)])
    registry._builtin.cache_clear()
    try:
        assert "baselines.genre" in registry.model_packages()
        model = registry.build("genre-pop", {"boost": 2.0})
        assert type(model).__name__ == "TrainPop" and model.config.boost == 2.0
    finally:
        sys.modules.pop("baselines.genre", None)
        sys.modules.pop("baselines.genre.model", None)
        registry._builtin.cache_clear()


def _third_party_package(root: Path) -> None:
    """``mypkg`` with a model, its conf/model/mypop.yaml, and an installed distribution's
    metadata declaring both entry points (bench.models, bench.conf)."""
    pkg = root / "mypkg"
    (pkg / "conf" / "model").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text(MODEL.format(name="mypop"))
    (pkg / "conf" / "model" / "mypop.yaml").write_text("name: mypop\nparams:\n  boost: 3.0\n")
    info = root / "mypkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[bench.models]\nmypop = mypkg.model:TrainPop\n\n[bench.conf]\nmypkg = mypkg:conf\n")


def test_an_entry_point_model_brings_its_own_config_folder(tmp_path):
    site = tmp_path / "site"
    _third_party_package(site)
    work = tmp_path / "work"
    work.mkdir()
    repo = str(Path(__file__).resolve().parents[2])
    out = bench("run", "model=mypop", "dataset=synthetic", "dataset.params.n_users=200",
                "dataset.params.n_items=80", "dataset.params.n_interactions=3000",
                "latency=disabled", cwd=work, env={"PYTHONPATH": f"{repo}:{site}"})
    assert "ndcg_at_10 =" in out.stderr
    (run,) = runs(work)
    assert run.info.status == "FINISHED"
    # the package's own conf/model/mypop.yaml was composed: its params reached the run
    assert run.data.params["model.name"] == "mypop"
    assert run.data.params["model.params.boost"] == "3.0"
