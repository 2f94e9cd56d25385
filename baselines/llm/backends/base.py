"""What every LLM backend returns, and how it fails.

A backend answers two kinds of request: ``chat(messages, max_new_tokens=, temperature=,
seed=) -> Reply`` for listwise ranking and ``loglik(prefix, continuations) ->
(list[LogLik], prompt tokens)`` for pointwise scoring; it has a ``kind`` ("hf", "openai")
and an ``identity`` (the replay cache's, ``baselines.llm.cache``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import BenchError


class LLMBackendError(BenchError, RuntimeError):
    """A backend call that still failed after the bounded retries; fails the run.

    A ``BenchError`` so ``bench run`` reports it as one line (``error: ...``) instead of a
    traceback, with exit code 1: it is a failure of the backend, not bad input (exit 2). The
    run it happens in still ends FAILED with the traceback in ``error.txt``.
    """

    exit_code = 1


@dataclass
class Reply:
    """A chat answer. ``empty``: the server returned no content (``null``, ``""`` or no text
    part); ``text`` is then ``""``. Such a reply is best not cached: it may be a server glitch."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    empty: bool = False


@dataclass
class LogLik:
    logprob: float
    n_tokens: int
