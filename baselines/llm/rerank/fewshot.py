"""Few-shot examples of llm-rerank's prompts, made from train sequences only."""

from __future__ import annotations

import numpy as np

from baselines.llm.rerank.config import RerankConfig
from bench.models.base import FitContext, ModelData


def few_shots(data: ModelData, ctx: FitContext, cfg: RerankConfig, texts: list[str]) -> dict:
    """Worked examples from train sequences: the last item is the answer (no test data)."""
    shots: dict[str, list] = {"listwise": [], "pointwise": []}
    if cfg.few_shot == 0:
        return shots
    rng = ctx.rng(stream=11)
    seqs = data.train_history.sequences
    eligible = [u for u in range(len(seqs)) if len(seqs[u]) >= 2]
    pop = np.asarray(data.train_history.matrix.sum(axis=0)).ravel()
    by_pop = np.argsort(-pop, kind="stable")
    m = min(cfg.n_candidates, 5)
    for u in rng.choice(eligible, size=min(cfg.few_shot, len(eligible)), replace=False).tolist():
        seq = seqs[u]
        hist = seq[:-1][-cfg.max_history :] if cfg.max_history > 0 else seq[:0]
        target = int(seq[-1])
        distract = [int(i) for i in by_pop if i not in set(seq.tolist())][: m - 1]
        shown = np.array([target] + distract)[rng.permutation(len(distract) + 1)]
        pos = int(np.flatnonzero(shown == target)[0]) + 1
        answer = ", ".join([str(pos)] + [str(k + 1) for k in range(len(shown)) if k + 1 != pos])
        h_texts = [texts[i] for i in hist.tolist()]
        shots["listwise"].append((h_texts, [texts[i] for i in shown.tolist()], answer))
        shots["pointwise"].append((h_texts, texts[target]))
    return shots
