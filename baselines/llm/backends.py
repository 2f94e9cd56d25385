"""LLM backends of llm-rerank (local transformers, OpenAI-compatible HTTP) and the replay cache.

A backend answers two kinds of request: ``chat`` (messages -> text) for listwise ranking and
``loglik`` (a prefix + continuations -> summed log-probabilities) for pointwise scoring.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import logging
import math
import os
import random
import re
import socket
import sqlite3
import threading
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
        self.identity = hf_identity(path, revision)

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
                cache = copy.deepcopy(_kv_cache(out))
                cache.batch_repeat_interleave(len(batch))
                # right padding: causal attention keeps pads from touching real tokens
                kv = {self._cache_arg(): cache}
                logits = self.model(x, use_cache=True, **kv).logits.float()
                lp = torch.log_softmax(logits, -1)
                for r, c in enumerate(batch):
                    results.append(_sum_logprob(first, lp[r], c))
        return results, int(p_ids.shape[1]) + sum(len(c) for c in conts)

    def _cache_arg(self) -> str:
        """The forward() keyword of the KV cache: ``cache`` (transformers >= 5.x, where
        ``past_key_values`` is deprecated), else ``past_key_values``."""
        import inspect

        params = inspect.signature(self.model.forward).parameters
        return "cache" if "cache" in params else "past_key_values"

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


def _kv_cache(out: Any) -> Any:
    """A forward pass's KV cache (``out.cache`` in transformers 5.x, else
    ``out.past_key_values``)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


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


class _AttemptFailed(Exception):
    """One failed HTTP attempt: a one-line ``message``, whether to retry, a ``Retry-After``."""

    def __init__(self, message: str, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.message, self.retryable, self.retry_after = message, retryable, retry_after


class _Deadline:
    """The wall-clock budget of ONE HTTP attempt (connect, headers and body together).

    Body reads set the socket timeout to the time left before each read; a watchdog timer also
    shuts the socket down when the budget is spent, so a server that trickles its status line
    or headers cannot hold the attempt either.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def left(self) -> float:
        return self.end - time.monotonic()

    def passed(self) -> bool:
        return self.expired or self.left() <= 0

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            expired = self.expired
        if expired:
            _shutdown(sock)
            raise TimeoutError("request deadline passed while connecting")

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sock = self._sock
        if sock is not None:
            _shutdown(sock)

    def settimeout(self) -> None:
        """Bound the next socket read by the time left; ``TimeoutError`` if none is left."""
        left = self.left()
        if self.expired or left <= 0:
            raise TimeoutError("request deadline passed")
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.settimeout(left)

    def opener(self) -> urllib.request.OpenerDirector:
        """urllib's default opener (proxies from the environment, redirects, https context)
        whose connections report their socket to this deadline."""
        return urllib.request.build_opener(_HTTPHandler(self), _HTTPSHandler(self))

    def read_body(self, resp: http.client.HTTPResponse) -> bytes:
        """The whole body in chunks, each read bounded by the time left."""
        chunks: list[bytes] = []
        while True:
            self.settimeout()
            chunk = resp.read1(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        if self.expired and resp.length is None:  # cut short? no Content-Length to tell
            raise TimeoutError("request deadline passed")
        if resp.length:  # EOF before Content-Length bytes (read1 does not raise it itself)
            raise http.client.IncompleteRead(data, resp.length)
        return data


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _DeadlineConnection:
    """Mixin for http.client connections: report the connected socket to the deadline."""

    def __init__(self, *args: Any, deadline: _Deadline, **kw: Any) -> None:
        super().__init__(*args, **kw)  # type: ignore[call-arg]
        self._deadline = deadline

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._deadline.attach(self.sock)  # type: ignore[attr-defined]


class _HTTPConnection(_DeadlineConnection, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineConnection, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPConnection, req, deadline=self._deadline)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPSConnection, req, context=self._context, deadline=self._deadline)


def _short(exc: BaseException, limit: int = 120) -> str:
    """``TypeName: message`` on one line, at most ``limit`` characters of message."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[:limit] + "..."
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def normalise_base_url(base_url: str) -> str:
    """The ``.../v1`` endpoint of ``base_url``: scheme and host lower-cased, port and path kept,
    trailing slashes dropped, ``/v1`` appended unless already there.

    ``http://LocalHost:8000/`` and ``http://localhost:8000/v1`` give the same endpoint. Call
    :func:`check_base_url` first (it refuses credentials, queries and non-http(s) URLs).
    """
    url = urllib.parse.urlsplit(base_url)
    host = url.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = url.port
    except ValueError:
        raise ConfigError(
            f"llm-rerank: base_url has an invalid port: {_redact_url(base_url)!r}"
        ) from None
    netloc = f"{host}:{port}" if port is not None else host
    path = url.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return urllib.parse.urlunsplit((url.scheme.lower(), netloc, path, "", ""))


def hf_identity(path: str | Path, revision: str = "") -> dict[str, Any]:
    """Replay-cache identity of a local model: the content sha256 of its folder and
    ``revision``."""
    return {"backend": "hf", "model_sha256": hash_model_dir(path), "rev": revision}


def openai_identity(base_url: str, model: str, revision: str = "") -> dict[str, Any]:
    """Replay-cache identity of a served model: the normalised endpoint, the model name and
    ``revision``. Another server (or a dead one) never replays this server's answers."""
    return {
        "backend": "openai",
        "endpoint": normalise_base_url(base_url),
        "model": model,
        "rev": revision,
    }


class OpenAIBackend:
    """Any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, TGI...) over stdlib urllib.

    The API key is read from the environment variable named by ``api_key_env`` at request time
    and only ever placed in the ``Authorization`` header; it is redacted from error messages.
    Each HTTP attempt is bounded by ``timeout_s`` of wall-clock time as a whole, so a call takes
    at most about ``(max_retries + 1) * timeout_s`` plus the backoff sleeps.
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
        self.timeout_s, self.max_retries = timeout_s, max(0, max_retries)
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.n_requests = 0  # HTTP attempts, retries included
        self._jitter = random.Random()
        self.identity = openai_identity(base_url, model, revision)

    # -- transport
    def _key(self) -> str:
        return os.environ.get(self.api_key_env, "")

    def _redact(self, text: str) -> str:
        key = self._key()
        return text.replace(key, "***") if key else text

    def _post_once(self, path: str, body: dict[str, Any]) -> Any:
        """One HTTP attempt within ``timeout_s``; every failure is an ``_AttemptFailed``."""
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self._key():
            headers["Authorization"] = f"Bearer {self._key()}"
        req = urllib.request.Request(self.v1 + path, data=data, headers=headers, method="POST")
        self.n_requests += 1
        with _Deadline(self.timeout_s) as deadline:
            try:
                with deadline.opener().open(req, timeout=self.timeout_s) as resp:
                    raw = deadline.read_body(resp)
            except urllib.error.HTTPError as exc:
                raise self._status_failure(exc, deadline) from None
            except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
                raise self._transport_failure(exc, deadline) from None
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            raise _AttemptFailed(f"invalid response (not JSON): {_short(exc, 80)}") from None

    def _status_failure(self, exc: urllib.error.HTTPError, deadline: _Deadline) -> _AttemptFailed:
        detail = ""
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            deadline.settimeout()
            detail = exc.read(300).decode("utf-8", "replace")
        exc.close()
        retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        return _AttemptFailed(
            f"HTTP {exc.code}: {' '.join(detail.split())}",
            retryable=exc.code in RETRY_STATUS,
            retry_after=retry_after,
        )

    def _transport_failure(self, exc: BaseException, deadline: _Deadline) -> _AttemptFailed:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if deadline.passed() or isinstance(reason, TimeoutError):
            return _AttemptFailed(f"timeout: no complete response within {self.timeout_s}s")
        if isinstance(exc, http.client.IncompleteRead):
            got, more = len(exc.partial), exc.expected
            return _AttemptFailed(
                f"truncated response: IncompleteRead ({got} bytes read, {more} more expected)"
            )
        if isinstance(exc, http.client.HTTPException) and not isinstance(exc, OSError):
            return _AttemptFailed(f"invalid HTTP response: {_short(exc)}")
        if isinstance(reason, OSError) and reason.errno is not None:  # [Errno 111] Conn...
            return _AttemptFailed(f"connection error: {' '.join(str(reason).split())[:160]}")
        if isinstance(reason, BaseException):  # e.g. RemoteDisconnected, SSL errors
            return _AttemptFailed(f"connection error: {_short(reason)}")
        return _AttemptFailed(f"connection error: {' '.join(str(reason).split())[:160]}")

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST with bounded retries (exponential backoff + jitter) on timeouts, transport errors
        (refused/reset connections, truncated or non-HTTP replies, invalid JSON), 408/409/425/
        429 and 5xx; other statuses fail at once. Raises ``LLMBackendError`` (one line)."""
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                return self._post_once(path, body)
            except _AttemptFailed as exc:
                last = exc.message
                if not exc.retryable:
                    break
                retry_after = exc.retry_after
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


def check_base_url(base_url: str) -> None:
    """Refuse credentials, a query or a fragment in the URL; warn about plain http to a
    non-loopback host."""
    try:
        url = urllib.parse.urlsplit(base_url or "")
    except ValueError:
        url = urllib.parse.urlsplit("")
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
    if url.query or url.fragment:
        raise ConfigError(
            "llm-rerank: base_url must be http(s)://host[:port][/path], without a query or "
            f"fragment, got {_redact_url(base_url)!r}"
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
