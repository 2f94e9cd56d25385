"""Row labels and keys of model configurations (pure functions; the MLflow side is covered by
tests/integration/test_report_configs.py)."""

from __future__ import annotations

from bench import tracking
from bench.report.runs import Run, dedupe, distinguishing_params, label_rows


def run(rid: str, model: str, seed: int, key: str, start: int, **params: str) -> Run:
    tags = {"bench.model": model, "bench.seed": str(seed)}
    if key:
        tags["bench.config_key"] = key
    return Run(rid, rid, start, tags, {}, params={"seed": str(seed), **params})


def test_config_key_is_the_run_key_without_the_seed():
    cfg = {"model": {"name": "itemknn", "params": {"k": 50}}, "seed": 0, "tracking": {"x": 1}}
    same = tracking.config_key(cfg, "s")
    assert same == tracking.config_key({**cfg, "seed": 7, "tracking": {}}, "s")
    assert same != tracking.config_key({**cfg, "model": {"name": "itemknn", "params": {"k": 9}}},
                                       "s")
    assert same != tracking.config_key(cfg, "other split")
    assert tracking.run_key(cfg, "s") != tracking.run_key({**cfg, "seed": 7}, "s")


def test_labels_prefer_model_params_and_fall_back_to_the_key():
    runs = [
        run("a", "itemknn", 0, "k50" + "0" * 61, 1, **{"model.params.k": "50", "eval.x": "1"}),
        run("b", "itemknn", 0, "k100" + "0" * 60, 2, **{"model.params.k": "100", "eval.x": "2"}),
        run("c", "pop", 0, "p" * 64, 3),
        run("d", "ease", 0, "aaaaaaaa1" + "0" * 55, 4),
        run("e", "ease", 0, "bbbbbbbb1" + "0" * 55, 5),
        run("f", "bpr", 0, "", 6, **{"model.params.epochs": "5"}),  # made before the tag
        run("g", "bpr", 1, "e50" + "0" * 61, 7, **{"model.params.epochs": "50"}),
    ]
    labels = {r.run_id: r.row for r in label_rows(runs)}
    assert labels == {"a": "itemknn (k=50)", "b": "itemknn (k=100)", "c": "pop",
                      "d": "ease (config aaaaaaaa)", "e": "ease (config bbbbbbbb)",
                      "f": "bpr (epochs=5)", "g": "bpr (epochs=50)"}


def test_untagged_runs_keep_one_run_per_model_and_seed():
    kept, ignored, notes = dedupe([run("old", "pop", 0, "", 1), run("new", "pop", 0, "", 2),
                                   run("s1", "pop", 1, "", 3)])
    assert sorted(r.run_id for r in kept) == ["new", "s1"]
    assert [i["run_id"] for i in ignored] == ["old"]
    assert notes and "provenance.json" in notes[0] and "bench report" in notes[0]
    assert {r.row for r in label_rows(kept)} == {"pop"}


def test_labels_show_the_fewest_params_that_tell_configurations_apart():
    """Three llm-rerank configurations differing in five params: backend separates hf from
    the openai ones, mode the two openai ones; base_url, llm and permutations add nothing."""
    common = {"model.params.base_url": "http://127.0.0.1:8000/v1", "eval.ks": "[10]"}
    hf = {**common, "model.params.backend": "hf", "model.params.llm": "/m/tiny",
          "model.params.mode": "listwise", "model.params.permutations": "1"}
    oa = {**common, "model.params.backend": "openai", "model.params.llm": "stub",
          "model.params.base_url": "http://127.0.0.1:40147/v1"}
    runs = [
        run("h", "llm-rerank", 0, "h" * 64, 1, **hf),
        run("l", "llm-rerank", 0, "l" * 64, 2, **oa, **{"model.params.mode": "listwise",
                                                         "model.params.permutations": "1"}),
        run("p", "llm-rerank", 0, "p" * 64, 3, **oa, **{"model.params.mode": "pointwise",
                                                         "model.params.permutations": "2"}),
    ]
    labels = {r.run_id: r.row for r in label_rows(runs)}
    assert labels == {"h": "llm-rerank (backend=hf, mode=listwise)",
                      "l": "llm-rerank (backend=openai, mode=listwise)",
                      "p": "llm-rerank (backend=openai, mode=pointwise)"}
    # a single param that separates everything is enough; none separates -> nothing chosen
    assert distinguishing_params({"a": {"model.params.k": "1", "x": "1"},
                                  "b": {"model.params.k": "2", "x": "2"}}) == ["model.params.k"]
    assert distinguishing_params({"a": {"x": "1"}, "b": {"x": "1"}}) == []
