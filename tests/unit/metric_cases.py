"""Random tie-free cases shared by the differential metric tests (ranx, pytrec_eval, RecBole)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def random_case(seed: int, n_users: int = 300, n_items: int = 400, width: int = 100):
    rng = np.random.default_rng(seed)
    rec = np.full((n_users, width), -1, dtype=np.int64)
    rows, cols = [], []
    for u in range(n_users):
        length = int(rng.integers(1, width + 1)) if u % 3 == 0 else width
        rec[u, :length] = rng.permutation(n_items)[:length]
        n_rel = int(rng.integers(1, 40))
        rel = rng.choice(n_items, n_rel, replace=False)
        rows += [u] * n_rel
        cols += rel.tolist()
    truth = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_items))
    return rec, truth


def as_dicts(rec, truth, k):
    qrels = {f"q{u}": {f"d{i}": 1 for i in truth[u].indices} for u in range(truth.shape[0])}
    run = {}
    for u, row in enumerate(rec):
        items = [i for i in row[:k] if i >= 0]
        run[f"q{u}"] = {f"d{i}": float(len(items) - j) for j, i in enumerate(items)}
    return qrels, run
