"""reference_metrics: reference rankings get the whole suite, probes accuracy only; a model
reports them through ``report()`` and the runner knows no model family's names."""

from __future__ import annotations

import numpy as np
import pytest

from bench.models.base import ModelReport, Probe, Ranking, Recommender
from bench.runner import reference_metrics

USERS = np.array([0, 1])
REPORT = ModelReport(
    reference_rankings={"first_stage": Ranking(USERS, np.array([[0, 1], [1, 0]]))},
    probes={
        "permutation": Probe(
            (Ranking(USERS, np.array([[0, 1], [0, 1]])), Ranking(USERS, [[1, 0], [1, 0]]))
        )
    },
)


def evaluate_into(calls):
    def evaluate(users, rec, full):
        calls.append(full)
        # a stand-in score: the first item of user 0's list
        return {"ndcg_at_10": float(rec[0, 0]), "recall_at_10": 0.5, "coverage_at_10": 1.0}

    return evaluate


def test_first_stage_full_suite_and_permutation_spread():
    calls = []
    out = reference_metrics(REPORT, evaluate_into(calls))
    assert calls == [True, False, False]
    assert out["first_stage/coverage_at_10"] == 1.0
    assert "permutation/0/coverage_at_10" not in out
    assert out["permutation/0/ndcg_at_10"] == 0.0 and out["permutation/1/ndcg_at_10"] == 1.0
    assert out["permutation/ndcg_at_10_range"] == 1.0
    np.testing.assert_allclose(out["permutation/ndcg_at_10_std"], np.std([0.0, 1.0], ddof=1))
    assert out["permutation/recall_at_10_std"] == 0.0


def test_any_names_and_probe_keys_are_logged_as_reported():
    one = Ranking(USERS, [[0, 1], [1, 0]])
    report = ModelReport(
        reference_rankings={"retriever": one},
        probes={"prompt_variants": Probe((one,), metrics=("coverage_at_10", "absent_key"))},
    )
    out = reference_metrics(report, evaluate_into([]))
    assert out["retriever/ndcg_at_10"] == 0.0
    assert out["prompt_variants/0/coverage_at_10"] == 1.0
    assert out["prompt_variants/coverage_at_10_std"] == 0.0  # one ranking: no spread
    assert not any("absent_key" in k or k.startswith("permutation") for k in out)


def test_an_empty_report_logs_nothing():
    assert reference_metrics(ModelReport(), evaluate_into([])) == {}


def test_a_model_with_a_replaced_hook_fails_at_class_definition():
    with pytest.raises(TypeError, match="extra_metrics is no longer called.*report\\(\\)"):

        class Old(Recommender):  # noqa: F841 - never built
            def fit(self, data, ctx):
                pass

            def score(self, users, history):
                return np.zeros((len(users), 1))

            def extra_metrics(self):
                return {"x": 1.0}
