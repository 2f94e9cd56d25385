"""The hand-made HTTP transport of the OpenAI-compatible backend (stdlib only): JSON POSTs
whose every attempt is bounded by one wall-clock deadline (connect, headers and body
together), retried with exponential backoff and jitter; and the checks of a server's URL.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import logging
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.errors import ConfigError

log = logging.getLogger(__name__)

#: statuses worth another attempt (timeouts, conflicts, rate limits, server errors)
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def is_loopback(host: str) -> bool:
    if host in {"localhost"}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AttemptFailed(Exception):
    """One failed HTTP attempt: a one-line ``message``, whether to retry, a ``Retry-After``."""

    def __init__(self, message: str, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.message, self.retryable, self.retry_after = message, retryable, retry_after


class Deadline:
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

    def __enter__(self) -> Deadline:
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


class DeadlineConnection:
    """Mixin for http.client connections: report the connected socket to the deadline."""

    def __init__(self, *args: Any, deadline: Deadline, **kw: Any) -> None:
        super().__init__(*args, **kw)  # type: ignore[call-arg]
        self._deadline = deadline

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._deadline.attach(self.sock)  # type: ignore[attr-defined]


class _HTTPConnection(DeadlineConnection, http.client.HTTPConnection):
    pass


class _HTTPSConnection(DeadlineConnection, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPConnection, req, deadline=self._deadline)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPSConnection, req, context=self._context, deadline=self._deadline)


def short(exc: BaseException, limit: int = 120) -> str:
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
            f"llm-rerank: base_url has an invalid port: {redact_url(base_url)!r}"
        ) from None
    netloc = f"{host}:{port}" if port is not None else host
    path = url.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return urllib.parse.urlunsplit((url.scheme.lower(), netloc, path, "", ""))


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
            f"got {redact_url(base_url)!r}"
        )
    if url.username or url.password:
        raise ConfigError(
            "llm-rerank: base_url must not carry credentials; put the key in the "
            "environment variable named by params.api_key_env"
        )
    if url.query or url.fragment:
        raise ConfigError(
            "llm-rerank: base_url must be http(s)://host[:port][/path], without a query or "
            f"fragment, got {redact_url(base_url)!r}"
        )
    if url.scheme == "http" and not is_loopback(url.hostname):
        msg = (
            f"llm-rerank: plain http:// to non-loopback host {url.hostname}: prompts and "
            "the API key travel unencrypted; use https:// or a loopback address"
        )
        warnings.warn(msg, stacklevel=3)
        log.warning(msg)


def retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def redact_url(url: str) -> str:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a POST tries: each attempt gets ``timeout_s`` of wall-clock time as a whole;
    after a retryable failure up to ``max_retries`` more attempts follow, the n-th after
    ``backoff_s * 2**n`` seconds (times 0.5..1.5 jitter, at least the server's
    ``Retry-After``, at most ``backoff_max_s``). A POST so takes at most about
    ``(max_retries + 1) * timeout_s`` plus the sleeps."""

    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 20.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        base = min(self.backoff_max_s, self.backoff_s * 2**attempt)
        delay = base * (0.5 + rng.random())  # jitter: 0.5x .. 1.5x
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.backoff_max_s)


class GaveUp(Exception):
    """A POST that failed for good: the ``attempts`` made and the ``last`` one-line reason."""

    def __init__(self, attempts: int, last: str) -> None:
        super().__init__(last)
        self.attempts, self.last = attempts, last


def post_json(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    policy: RetryPolicy,
    rng: random.Random,
    on_attempt: Callable[[], None] | None = None,
) -> Any:
    """POST ``body`` as JSON and return the decoded JSON reply, with bounded retries on
    timeouts, transport errors (refused/reset connections, truncated or non-HTTP replies,
    invalid JSON), 408/409/425/429 and 5xx; other statuses fail at once. ``on_attempt`` is
    called before each attempt. Raises ``GaveUp``."""
    last = ""
    for attempt in range(policy.max_retries + 1):
        if on_attempt is not None:
            on_attempt()
        try:
            return post_once(url, body, headers, policy.timeout_s)
        except AttemptFailed as exc:
            last = exc.message
            if not exc.retryable:
                break
            wait_at_least = exc.retry_after
        if attempt < policy.max_retries:
            time.sleep(policy.delay(attempt, wait_at_least, rng))
    raise GaveUp(attempt + 1, last)


def post_once(url: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float) -> Any:
    """One HTTP attempt within ``timeout_s``; every failure is an ``AttemptFailed``."""
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with Deadline(timeout_s) as deadline:
        try:
            with deadline.opener().open(req, timeout=timeout_s) as resp:
                raw = deadline.read_body(resp)
        except urllib.error.HTTPError as exc:
            raise _status_failure(exc, deadline) from None
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            raise _transport_failure(exc, deadline, timeout_s) from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise AttemptFailed(f"invalid response (not JSON): {short(exc, 80)}") from None


def _status_failure(exc: urllib.error.HTTPError, deadline: Deadline) -> AttemptFailed:
    detail = ""
    with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
        deadline.settimeout()
        detail = exc.read(300).decode("utf-8", "replace")
    exc.close()
    wait = retry_after(exc.headers.get("Retry-After") if exc.headers else None)
    return AttemptFailed(
        f"HTTP {exc.code}: {' '.join(detail.split())}",
        retryable=exc.code in RETRY_STATUS,
        retry_after=wait,
    )


def _transport_failure(exc: BaseException, deadline: Deadline, timeout_s: float) -> AttemptFailed:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if deadline.passed() or isinstance(reason, TimeoutError):
        return AttemptFailed(f"timeout: no complete response within {timeout_s}s")
    if isinstance(exc, http.client.IncompleteRead):
        got, more = len(exc.partial), exc.expected
        return AttemptFailed(
            f"truncated response: IncompleteRead ({got} bytes read, {more} more expected)"
        )
    if isinstance(exc, http.client.HTTPException) and not isinstance(exc, OSError):
        return AttemptFailed(f"invalid HTTP response: {short(exc)}")
    if isinstance(reason, OSError) and reason.errno is not None:  # [Errno 111] Conn...
        return AttemptFailed(f"connection error: {' '.join(str(reason).split())[:160]}")
    if isinstance(reason, BaseException):  # e.g. RemoteDisconnected, SSL errors
        return AttemptFailed(f"connection error: {short(reason)}")
    return AttemptFailed(f"connection error: {' '.join(str(reason).split())[:160]}")
