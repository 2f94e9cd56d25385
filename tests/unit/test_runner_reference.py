"""reference_metrics: first stages get the whole suite, permutation probes accuracy only."""

from __future__ import annotations

import numpy as np

from bench.runner import reference_metrics


class _Model:
    def reference_rankings(self):
        users = np.array([0, 1])
        return {
            "first_stage": (users, np.array([[0, 1], [1, 0]])),
            "permutation/0": (users, np.array([[0, 1], [0, 1]])),
            "permutation/1": (users, np.array([[1, 0], [1, 0]])),
        }


def test_first_stage_full_suite_and_permutation_spread():
    calls = []

    def evaluate(users, rec, full):
        calls.append(full)
        # a stand-in score: the first item of user 0's list
        return {"ndcg_at_10": float(rec[0, 0]), "recall_at_10": 0.5, "coverage_at_10": 1.0}

    out = reference_metrics(_Model(), evaluate)
    assert calls == [True, False, False]
    assert out["first_stage/coverage_at_10"] == 1.0
    assert "permutation/0/coverage_at_10" not in out
    assert out["permutation/0/ndcg_at_10"] == 0.0 and out["permutation/1/ndcg_at_10"] == 1.0
    assert out["permutation/ndcg_at_10_range"] == 1.0
    np.testing.assert_allclose(out["permutation/ndcg_at_10_std"], np.std([0.0, 1.0], ddof=1))
    assert out["permutation/recall_at_10_std"] == 0.0
