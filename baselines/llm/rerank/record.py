"""What llm-rerank records while it ranks: the counts of one kind of request (``Stats``: the
evaluation's, and the latency pass's timed requests), the ``llm_*`` metrics and per-stage
latency made of them, and the rankings behind the reference metrics (``Rankings``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from baselines.llm.common import PROMPT_TEMPLATE_VERSION
from bench.models.base import Probe, Ranking


@dataclass
class Stats:
    requests: int = 0  # logical LLM requests (listwise: one per ranking; pointwise: per user)
    cache_hits: int = 0
    live: int = 0
    live_tokens: int = 0
    live_seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    replies: int = 0
    parse_failures: int = 0
    entries: int = 0
    out_of_candidates: int = 0
    duplicates: int = 0
    users: int = 0
    cand_ms: float = 0.0
    llm_ms: float = 0.0
    parse_ms: float = 0.0
    freeze_ms: float = 0.0

    def metrics(self, mode: str) -> dict[str, float]:
        """The ``llm_*`` metrics of these counts (rates over requests, replies or entries);
        pointwise mode parses nothing, so its parse rates are 0."""
        req = max(self.requests, 1)
        out = {
            "llm_prompt_tokens": float(self.prompt_tokens),
            "llm_completion_tokens": float(self.completion_tokens),
            "llm_parse_failure_rate": self.parse_failures / max(self.replies, 1),
            "llm_out_of_candidates_rate": self.out_of_candidates / max(self.entries, 1),
            "llm_duplicate_rate": self.duplicates / max(self.entries, 1),
            "llm_cache_hit_rate": self.cache_hits / req,
            "llm_backend_calls": float(self.live),
            "llm_prompt_template_version": float(PROMPT_TEMPLATE_VERSION),
        }
        if self.live and self.live_seconds > 0:
            out["llm_tokens_per_s"] = self.live_tokens / self.live_seconds
        if mode == "pointwise":  # nothing is parsed in pointwise mode
            for k in ("llm_parse_failure_rate", "llm_out_of_candidates_rate", "llm_duplicate_rate"):
                out[k] = 0.0
        return out

    def stage_latency_ms(self, n_candidate_users: int) -> dict[str, float]:
        """Mean ms per user by stage; the candidates' freezing is spread over the
        ``n_candidate_users`` it froze lists for."""
        n = max(self.users, 1)
        return {
            "candidates": self.freeze_ms / max(n_candidate_users, 1) + self.cand_ms / n,
            "llm": self.llm_ms / n,
            "parse": self.parse_ms / n,
        }


@dataclass
class Rankings:
    """The evaluation's rankings of the test history: the first stage's candidate lists
    (``first``, user -> items) and each permutation probe's reranking (``perms``, i -> user
    -> items)."""

    first: dict[int, np.ndarray] = field(default_factory=dict)
    perms: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)

    def first_stage(self) -> dict[str, Ranking]:
        users = sorted(self.first)
        if not users:
            return {}
        lists = _pad([self.first[u] for u in users])
        return {"first_stage": Ranking(np.array(users, dtype=np.int64), lists)}

    def permutation_probe(self) -> dict[str, Probe]:
        if not self.first or not self.perms:
            return {}
        runs = []
        for _, ranks in sorted(self.perms.items()):
            users = sorted(ranks)
            runs.append(Ranking(np.array(users, dtype=np.int64), _pad([ranks[u] for u in users])))
        return {"permutation": Probe(tuple(runs))}


def _pad(rows: list[np.ndarray]) -> np.ndarray:
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out
