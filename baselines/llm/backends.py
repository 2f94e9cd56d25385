"""LLM backends of llm-rerank (local transformers, OpenAI-compatible HTTP) and the replay cache.

A backend answers two kinds of request: ``chat`` (messages -> text) for listwise ranking and
``loglik`` (a prefix + continuations -> summed log-probabilities) for pointwise scoring.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import random
import re
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baselines.llm.common import hash_model_dir, hf_progress_bars, sha256_json
from bench.errors import BenchError, ConfigError

log = logging.getLogger(__name__)

_SHA = re.compile(r"^[0-9a-f]{40}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class LLMBackendError(BenchError, RuntimeError):
    """A backend call that still failed after the bounded retries; fails the run.

    A ``BenchError`` so ``bench run`` reports it as one line (``error: ...``) instead of a
    traceback, with exit code 1: it is a failure of the backend, not bad input (exit 2). The
    run it happens in still ends FAILED with the traceback in ``error.txt``.
    """

    exit_code = 1


@dataclass
class Reply:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class LogLik:
    logprob: float
    n_tokens: int


# --------------------------------------------------------------------------- replay cache
class ReplayCache:
    """Successful LLM responses on disk (SQLite, JSON values; no pickle), keyed by sha256.

    Safe for several processes of one sweep on a local disk (WAL + busy timeout).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), timeout=60, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=60000")
        with contextlib.suppress(sqlite3.OperationalError):  # e.g. unsupported filesystem
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS replay (key TEXT PRIMARY KEY, value TEXT)")

    def get(self, key: str) -> Any | None:
        row = self._db.execute("SELECT value FROM replay WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO replay (key, value) VALUES (?, ?)", (key, json.dumps(value))
        )

    def close(self) -> None:
        self._db.close()


# --------------------------------------------------------------------------- transformers
class HFBackend:
    """A local causal LM through transformers (safetensors only, no remote code by default)."""

    kind = "hf"

    def __init__(
        self,
        path: str,
        *,
        trust_remote_code: bool = False,
        revision: str = "",
        batch_size: int = 8,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        check_remote_code(trust_remote_code, revision)
        hf_progress_bars()
        if not path or not Path(path).exists():
            raise ConfigError(
                f"llm-rerank: backend=hf needs params.llm=<local model folder>, got {path!r}"
            )
        kw: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code}
        if revision:
            kw["revision"] = revision
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, **kw)
            self.model = AutoModelForCausalLM.from_pretrained(
                path, use_safetensors=True, dtype=torch.float32, **kw
            )
        except ValueError as exc:
            if "trust_remote_code" in str(exc):
                raise ConfigError(
                    f"llm-rerank: the model at {path} needs its own code; review it, then set "
                    "params.trust_remote_code=true and params.revision=<commit sha>"
                ) from None
            raise
        self.model.eval()
        self.batch_size = max(1, batch_size)
        self.identity = {"backend": "hf", "model_sha256": hash_model_dir(path), "rev": revision}

    # -- helpers
    def render_chat(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        parts = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n\n".join(parts) + "\n\nAssistant:"

    def _ids(self, text: str, special: bool) -> list[int]:
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def _pad_id(self) -> int:
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return int(pad if pad is not None else 0)

    # -- requests
    def chat(
        self, messages: list[dict[str, str]], *, max_new_tokens: int, temperature: float, seed: int
    ) -> Reply:
        import torch

        prompt = self.render_chat(messages)
        # a chat template writes its own special tokens (BOS included)
        templated = bool(getattr(self.tokenizer, "chat_template", None))
        ids = torch.tensor([self._ids(prompt, not templated)])
        sample = temperature > 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            with torch.inference_mode():
                out = self.model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_new_tokens,
                    do_sample=sample,
                    temperature=temperature if sample else None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=self._pad_id(),
                )
        new = out[0, ids.shape[1] :]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return Reply(text=text, prompt_tokens=int(ids.shape[1]), completion_tokens=len(new))

    def loglik(self, prefix: str, continuations: list[str]) -> tuple[list[LogLik], int]:
        """Summed log p(continuation | prefix); the prefix runs ONCE (its KV cache is reused)."""
        import copy

        import torch

        p_ids = torch.tensor([self._ids(prefix, True)])
        conts = [self._ids(c, False) for c in continuations]
        results: list[LogLik] = []
        with torch.inference_mode():
            out = self.model(p_ids, use_cache=True)
            first = torch.log_softmax(out.logits[0, -1].float(), -1)
            for batch in _batches(conts, self.batch_size):
                width = max(len(c) for c in batch)
                x = torch.full((len(batch), width), self._pad_id(), dtype=torch.long)
                for r, c in enumerate(batch):
                    x[r, : len(c)] = torch.tensor(c, dtype=torch.long)
                cache = copy.deepcopy(out.past_key_values)
                cache.batch_repeat_interleave(len(batch))
                # right padding: causal attention keeps pads from touching real tokens
                logits = self.model(x, past_key_values=cache, use_cache=True).logits.float()
                lp = torch.log_softmax(logits, -1)
                for r, c in enumerate(batch):
                    results.append(_sum_logprob(first, lp[r], c))
        return results, int(p_ids.shape[1]) + sum(len(c) for c in conts)

    def loglik_separate(self, prefix: str, continuations: list[str]) -> list[LogLik]:
        """Reference path: every candidate scored with its own full forward pass."""
        import torch

        p = self._ids(prefix, True)
        res = []
        with torch.inference_mode():
            for c_text in continuations:
                c = self._ids(c_text, False)
                ids = torch.tensor([p + c])
                lp = torch.log_softmax(self.model(ids).logits[0].float(), -1)
                pos = torch.arange(len(p) - 1, len(p) + len(c) - 1)
                tok = torch.tensor(c, dtype=torch.long)
                res.append(LogLik(float(lp[pos, tok].sum()), len(c)))
        return res


def _sum_logprob(first, lp_row, cont: list[int]) -> LogLik:
    import torch

    if not cont:
        return LogLik(0.0, 0)
    tok = torch.tensor(cont, dtype=torch.long)
    total = first[tok[0]]
    if len(cont) > 1:
        total = total + lp_row[torch.arange(len(cont) - 1), tok[1:]].sum()
    return LogLik(float(total), len(cont))


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def check_remote_code(trust_remote_code: bool, revision: str) -> None:
    """``trust_remote_code`` needs a pinned 40-hex commit sha in ``revision``."""
    if trust_remote_code and not _SHA.match(revision or ""):
        raise ConfigError(
            "llm-rerank: trust_remote_code=true requires params.revision=<40-hex commit sha> "
            "pinning the reviewed code"
        )


# --------------------------------------------------------------------------- OpenAI-compatible
def _is_loopback(host: str) -> bool:
    if host in {"localhost"}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OpenAIBackend:
    """Any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, TGI...) over stdlib urllib.

    The API key is read from the environment variable named by ``api_key_env`` at request time
    and only ever placed in the ``Authorization`` header; it is redacted from error messages.
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
        root = base_url.rstrip("/")
        self.v1 = root if root.endswith("/v1") else root + "/v1"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s, self.max_retries = timeout_s, max(0, max_retries)
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.n_requests = 0  # HTTP attempts, retries included
        self._jitter = random.Random()
        self.identity = {"backend": "openai", "model": model, "rev": revision}

    # -- transport
    def _key(self) -> str:
        return os.environ.get(self.api_key_env, "")

    def _redact(self, text: str) -> str:
        key = self._key()
        return text.replace(key, "***") if key else text

    def _post_once(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self._key():
            headers["Authorization"] = f"Bearer {self._key()}"
        req = urllib.request.Request(self.v1 + path, data=data, headers=headers, method="POST")
        self.n_requests += 1
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
            return json.loads(resp.read().decode("utf-8"))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with bounded retries (exponential backoff + jitter) on timeouts, 429 and 5xx."""
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                return self._post_once(path, body)
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace")
                last = f"HTTP {exc.code}: {detail}"
                if exc.code not in RETRY_STATUS:
                    break
                retry_after = _retry_after(exc.headers.get("Retry-After"))
            except TimeoutError as exc:
                last = f"timeout after {self.timeout_s}s ({exc})"
            except urllib.error.URLError as exc:
                last = f"connection error: {exc.reason}"
            except (json.JSONDecodeError, UnicodeDecodeError, ConnectionError) as exc:
                last = f"invalid or truncated response: {type(exc).__name__}"
            if attempt < self.max_retries:
                time.sleep(self._delay(attempt, retry_after))
        raise LLMBackendError(
            self._redact(
                f"llm-rerank: POST {self.v1}{path} (model {self.model}) failed after "
                f"{attempt + 1} attempt(s): {last}"
            )
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        base = min(self.backoff_max_s, self.backoff_s * 2**attempt)
        delay = base * (0.5 + self._jitter.random())  # jitter: 0.5x .. 1.5x
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.backoff_max_s)

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
            text = resp["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise LLMBackendError(
                "llm-rerank: /chat/completions reply has no choices[0].message.content"
            ) from None
        usage = resp.get("usage") or {}
        return Reply(
            text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
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
        except (KeyError, TypeError, ValueError):
            raise LLMBackendError(
                "llm-rerank: the server's /v1/completions does not return echoed prompt "
                "logprobs (needed by mode=pointwise); use mode=listwise"
            ) from None
        usage = resp.get("usage") or {}
        return out, int(usage.get("prompt_tokens", 0))


def _echo_loglik(lp: dict[str, Any], start: int, end: int) -> LogLik:
    total, n = 0.0, 0
    for off, val in zip(lp["text_offset"], lp["token_logprobs"], strict=False):
        if start <= off < end and val is not None:
            total += float(val)
            n += 1
    return LogLik(total, n)


def check_base_url(base_url: str) -> None:
    """Refuse credentials in the URL; warn about plain http to a non-loopback host."""
    url = urllib.parse.urlsplit(base_url or "")
    if url.scheme not in {"http", "https"} or not url.hostname:
        raise ConfigError(
            "llm-rerank: base_url must be http(s)://host[:port][/v1], "
            f"got {_redact_url(base_url)!r}"
        )
    if url.username or url.password:
        raise ConfigError(
            "llm-rerank: base_url must not carry credentials; put the key in the "
            "environment variable named by params.api_key_env"
        )
    if url.scheme == "http" and not _is_loopback(url.hostname):
        msg = (
            f"llm-rerank: plain http:// to non-loopback host {url.hostname}: prompts and "
            "the API key travel unencrypted; use https:// or a loopback address"
        )
        warnings.warn(msg, stacklevel=3)
        log.warning(msg)


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _redact_url(url: str) -> str:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def cache_key(identity: dict[str, Any], **parts: Any) -> str:
    """Replay-cache key: backend + model identity + template/prompt hashes + decoding + seed."""
    return sha256_json({"identity": identity, **parts})
