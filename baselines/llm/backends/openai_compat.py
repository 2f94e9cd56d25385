"""The OpenAI-compatible backend (OpenAI, vLLM, llama.cpp, TGI...): chat completions for
listwise ranking, echoed prompt logprobs of ``/v1/completions`` for pointwise scoring, over
the stdlib transport of ``baselines.llm.http``.
"""

from __future__ import annotations

import math
import os
import random
import re
from typing import Any

from baselines.llm.backends.base import LLMBackendError, LogLik, Reply
from baselines.llm.cache import openai_identity
from baselines.llm.http import GaveUp, RetryPolicy, check_base_url, normalise_base_url, post_json
from bench.errors import ConfigError

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class OpenAIBackend:
    """Any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, TGI...) over stdlib urllib.

    The API key is read from the environment variable named by ``api_key_env`` at request time
    and only ever placed in the ``Authorization`` header; it is redacted from error messages.
    Each HTTP attempt is bounded by ``timeout_s`` of wall-clock time as a whole, so a call takes
    at most about ``(max_retries + 1) * timeout_s`` plus the backoff sleeps (``RetryPolicy``).
    """

    kind = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        revision: str = "",
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 20.0,
    ) -> None:
        if not _ENV_NAME.match(api_key_env or ""):
            raise ConfigError(
                "llm-rerank: api_key_env must be the NAME of an environment variable holding "
                "the key (e.g. OPENAI_API_KEY), never the key itself"
            )
        check_base_url(base_url)
        if not model:
            raise ConfigError("llm-rerank: backend=openai needs params.llm=<served model name>")
        self.v1 = normalise_base_url(base_url)
        self.model = model
        self.api_key_env = api_key_env
        self.policy = RetryPolicy(timeout_s, max(0, max_retries), backoff_s, backoff_max_s)
        self.n_requests = 0  # HTTP attempts, retries included
        self._jitter = random.Random()
        self.identity = openai_identity(base_url, model, revision)

    # -- transport
    def _key(self) -> str:
        return os.environ.get(self.api_key_env, "")

    def _redact(self, text: str) -> str:
        key = self._key()
        return text.replace(key, "***") if key else text

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST with bounded retries (``baselines.llm.http.post_json``); raises
        ``LLMBackendError`` (one line, the API key redacted)."""
        headers = {"Content-Type": "application/json"}
        if self._key():
            headers["Authorization"] = f"Bearer {self._key()}"

        def count() -> None:
            self.n_requests += 1

        try:
            return post_json(self.v1 + path, body, headers, self.policy, self._jitter, count)
        except GaveUp as exc:
            raise LLMBackendError(
                self._redact(
                    f"llm-rerank: POST {self.v1}{path} (model {self.model}) failed after "
                    f"{exc.attempts} attempt(s): {exc.last}"
                )
            ) from None

    # -- requests
    def chat(
        self, messages: list[dict[str, str]], *, max_new_tokens: int, temperature: float, seed: int
    ) -> Reply:
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "seed": seed,
        }
        resp = self.post("/chat/completions", body)
        try:
            content = resp["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise LLMBackendError(
                "llm-rerank: /chat/completions reply has no choices[0].message.content"
            ) from None
        text = _content_text(content)
        if text is None:
            raise LLMBackendError(
                "llm-rerank: /chat/completions reply's choices[0].message.content is a "
                f"{type(content).__name__}, not text"
            )
        return Reply(
            text,
            _usage_count(resp, "prompt_tokens"),
            _usage_count(resp, "completion_tokens"),
            empty=not text,
        )

    def loglik(self, prefix: str, continuations: list[str]) -> tuple[list[LogLik], int]:
        """``/v1/completions`` with ``echo`` + ``logprobs``: the continuation tokens' logprobs.

        Tokens are assigned to the continuation by ``text_offset >= len(prefix)``.
        """
        body = {
            "model": self.model,
            "prompt": [prefix + c for c in continuations],
            "max_tokens": 1,
            "temperature": 0,
            "echo": True,
            "logprobs": 1,
        }
        resp = self.post("/completions", body)
        try:
            choices = sorted(resp["choices"], key=lambda c: c.get("index", 0))
            out = [
                _echo_loglik(ch["logprobs"], len(prefix), len(prefix + c))
                for ch, c in zip(choices, continuations, strict=True)
            ]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise LLMBackendError(
                "llm-rerank: the server's /v1/completions does not return echoed prompt "
                "logprobs (needed by mode=pointwise); use mode=listwise"
            ) from None
        return out, _usage_count(resp, "prompt_tokens")


def _content_text(content: Any) -> str | None:
    """``message.content`` as text: a string as is, ``null`` as ``""``, a list of parts
    (``[{"type": "text", "text": ...}]``) as its text parts joined; None for anything else."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif (
                isinstance(part, dict)
                and isinstance(part.get("text"), str)
                and part.get("type", "text") in {"text", "output_text"}
            ):
                parts.append(part["text"])
        return "".join(parts)
    return None


def _usage_count(resp: Any, field: str) -> int:
    """``resp["usage"][field]`` as a non-negative int; 0 when usage is missing, not a mapping,
    or the field is null/non-numeric (token counts are informative, never worth a failure)."""
    usage = resp.get("usage") if isinstance(resp, dict) else None
    if not isinstance(usage, dict):
        return 0
    value = usage.get(field)
    if isinstance(value, bool):
        return 0
    if isinstance(value, str):
        value = value.strip()
        return int(value) if value.isdigit() else 0
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return int(value)
    return 0


def _echo_loglik(lp: dict[str, Any], start: int, end: int) -> LogLik:
    total, n = 0.0, 0
    for off, val in zip(lp["text_offset"], lp["token_logprobs"], strict=False):
        if start <= off < end and val is not None:
            total += float(val)
            n += 1
    return LogLik(total, n)
