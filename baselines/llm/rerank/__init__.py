"""llm-rerank: a causal LM reranks the top-N candidates of any registered first-stage model.

Pipeline per user: frozen first-stage candidates -> prompt (history + JSON-quoted candidate
texts) -> backend (replay cache first) -> parse (candidate numbers only) -> scores. Scores are
NaN for non-candidates and ``n - position`` for candidates, so the harness's ``topk`` returns
exactly the reranked order.

Two kinds of ``score`` calls after ``fit``: the first ranking of a user is the *evaluation*
(replay cache, ``llm_*`` metrics, ``prompts.jsonl``, permutation probes); a user scored again
(the runner's latency pass re-scores evaluated users), or any user after
``start_latency_pass()``, is a *timed request*: outside the ``llm_*`` metrics, the log and the
probes. After ``start_latency_pass()`` a timed request always calls the backend (the replay
cache is neither read nor written), so ``latency_*`` figures time the LLM; without it a
re-scored user is answered from the replay cache, and ``report`` says so in a warning.

Modules, one concern each: ``config`` (parameters, their validation, the backend they
build), ``candidates`` (the frozen first-stage lists, ranked by the harness), ``fewshot``
(worked examples from train sequences), ``record`` (counts, ``llm_*`` metrics, reference
rankings), ``model`` (``LLMRerank``).
"""

from baselines.llm.rerank.candidates import CANDIDATES_FORMAT, freeze_candidates
from baselines.llm.rerank.config import RerankConfig, make_backend
from baselines.llm.rerank.model import PARSE_FAILURE_WARN, LLMRerank

__all__ = [
    "CANDIDATES_FORMAT",
    "PARSE_FAILURE_WARN",
    "LLMRerank",
    "RerankConfig",
    "freeze_candidates",
    "make_backend",
]
