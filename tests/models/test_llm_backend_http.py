"""OpenAIBackend over real HTTP: replay-cache identity of the endpoint, a per-attempt wall-clock
deadline, retries of truncated / non-HTTP / dropped replies, and odd-but-valid JSON shapes.

Every test talks to a real ``http.server`` on 127.0.0.1 (port 0) in a thread; urllib is not
mocked. Fast: the slow faults use sub-second timeouts.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from baselines.llm.backends import LLMBackendError, OpenAIBackend, Reply
from baselines.llm.http import normalise_base_url
from baselines.llm.testing import LocalHTTPServer
from bench.errors import ConfigError

OK_CHAT = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "1, 2"}}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3},
}


class FaultServer(LocalHTTPServer):
    """An OpenAI-compatible server whose replies follow ``script`` (one entry consumed per
    request, then ``default``). Entries: ``("json", obj)``, ``("trickle", every_s)`` (valid
    headers, then one body byte every ``every_s``), ``("trickle_headers", every_s)``,
    ``("truncated",)`` (Content-Length larger than the body, then close), ``("garbage",)`` (not
    HTTP at all), ``("close",)`` (close without answering), ``("status", code)``."""

    def __init__(self, script: list[tuple[Any, ...]] | None = None) -> None:
        self.script = list(script or [])
        self.default: tuple[Any, ...] = ("json", OK_CHAT)
        self.count = 0
        self.lock = threading.Lock()
        super().__init__(type("Handler", (_Handler,), {"server_state": self}), 0.02)

    def next(self) -> tuple[Any, ...]:
        with self.lock:
            self.count += 1
            return self.script.pop(0) if self.script else self.default


class _Handler(BaseHTTPRequestHandler):
    server_state: FaultServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        kind, *args = self.server_state.next()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            getattr(self, f"_{kind}")(*args)

    def _json(self, obj: Any) -> None:
        self._send(200, json.dumps(obj).encode())

    def _status(self, code: int) -> None:
        self._send(code, b'{"error": {"message": "fault"}}')

    def _send(self, code: int, payload: bytes, length: int | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload) if length is None else length))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _trickle(self, every: float) -> None:
        payload = json.dumps(OK_CHAT).encode() + b" " * 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.flush()
        for b in payload:
            self.wfile.write(bytes([b]))
            self.wfile.flush()
            time.sleep(every)

    def _trickle_headers(self, every: float) -> None:
        for b in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
            self.wfile.write(bytes([b]))
            self.wfile.flush()
            time.sleep(every)

    def _truncated(self) -> None:
        self._send(200, b'{"choices": [{"message": {"content": "1, 2', length=500)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _garbage(self) -> None:
        self.wfile.write(b"NOT HTTP AT ALL\r\n\r\n")
        self.wfile.flush()
        self.close_connection = True

    def _close(self) -> None:
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


def backend(url: str, **kw: Any) -> OpenAIBackend:
    opts: dict[str, Any] = {"timeout_s": 2.0, "max_retries": 2, "backoff_s": 0.01}
    opts.update(kw)
    return OpenAIBackend(url, "m", **opts)


def chat(b: OpenAIBackend) -> Reply:
    return b.chat([{"role": "user", "content": "hi"}], max_new_tokens=8, temperature=0, seed=0)


# --------------------------------------------------------------------------- identity
def test_identity_depends_on_the_endpoint():
    a = backend("http://127.0.0.1:8765/v1").identity
    dead = backend("http://127.0.0.1:8799/v1").identity
    proxied = backend("http://127.0.0.1:8765/proxy/v1").identity
    assert a != dead and a != proxied
    assert a["endpoint"] == "http://127.0.0.1:8765/v1" and a["model"] == "m"
    assert backend("http://127.0.0.1:8765/v1", revision="r1").identity != a


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8000",
        "http://localhost:8000/",
        "http://localhost:8000/v1",
        "http://localhost:8000/v1/",
        "HTTP://LocalHost:8000/v1",
    ],
)
def test_identity_of_one_endpoint_written_differently(url):
    ref = backend("http://localhost:8000/v1")
    b = backend(url)
    assert b.identity == ref.identity
    assert b.v1 == "http://localhost:8000/v1"


def test_normalise_keeps_port_and_path_and_refuses_queries():
    assert (
        normalise_base_url("https://API.Example.com/openai/") == "https://api.example.com/openai/v1"
    )
    assert normalise_base_url("http://[::1]:9000") == "http://[::1]:9000/v1"
    with pytest.raises(ConfigError, match="credentials"):
        backend("http://user:secret@127.0.0.1:8000/v1")
    with pytest.raises(ConfigError, match="query"):
        backend("http://127.0.0.1:8000/v1?api-version=1")


# --------------------------------------------------------------------------- deadline
@pytest.mark.timeout(120)  # a hang guard: without the deadline the trickle never ends
@pytest.mark.parametrize("fault", ["trickle", "trickle_headers"])
def test_trickling_server_hits_the_per_attempt_deadline(fault):
    with FaultServer() as srv:
        srv.default = (fault, 0.1)  # every read succeeds well within timeout_s
        b = backend(srv.base_url, timeout_s=0.5, max_retries=1, backoff_s=0.01)
        with pytest.raises(LLMBackendError, match="timeout") as err:
            chat(b)
    assert srv.count == 2 and b.n_requests == 2
    assert "failed after 2 attempt(s)" in str(err.value)
    assert "\n" not in str(err.value)


def test_slow_but_complete_reply_within_the_deadline_succeeds():
    with FaultServer([("trickle", 0.001)]) as srv:
        reply = chat(backend(srv.base_url, timeout_s=5.0))
    assert reply.text == "1, 2" and srv.count == 1


# --------------------------------------------------------------------------- transport faults
@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("truncated", "truncated response: IncompleteRead"),
        ("garbage", "invalid HTTP response: BadStatusLine"),
        ("close", "connection error"),
    ],
)
def test_transport_faults_are_retried_then_fail_in_one_line(fault, words):
    with FaultServer() as srv:
        srv.default = (fault,)
        with pytest.raises(LLMBackendError) as err:
            chat(backend(srv.base_url, max_retries=2))
    assert srv.count == 3  # max_retries + 1
    msg = str(err.value)
    assert "failed after 3 attempt(s)" in msg and words in msg and "\n" not in msg


@pytest.mark.parametrize("fault", [("truncated",), ("garbage",), ("close",), ("status", 503)])
def test_one_transport_fault_then_a_proper_answer_succeeds(fault):
    with FaultServer([fault]) as srv:
        reply = chat(backend(srv.base_url))
    assert srv.count == 2
    assert reply == Reply("1, 2", 7, 3)


def test_other_4xx_fails_at_once():
    with FaultServer() as srv:
        srv.default = ("status", 400)
        with pytest.raises(LLMBackendError, match="after 1 attempt.*HTTP 400"):
            chat(backend(srv.base_url))
    assert srv.count == 1


# --------------------------------------------------------------------------- reply shapes
def _reply_with(content: Any = "1, 2", usage: Any = None) -> dict[str, Any]:
    resp: dict[str, Any] = {"choices": [{"index": 0, "message": {"content": content}}]}
    if usage is not None:
        resp["usage"] = usage
    return resp


@pytest.mark.parametrize(
    ("resp", "expected"),
    [
        (_reply_with([{"type": "text", "text": "1, 2"}]), Reply("1, 2")),
        (
            _reply_with([{"type": "text", "text": "3, "}, {"type": "image_url"}, "4"]),
            Reply("3, 4"),
        ),
        (_reply_with(usage="n/a"), Reply("1, 2")),
        (_reply_with(usage=["x"]), Reply("1, 2")),
        (_reply_with(usage={"prompt_tokens": None, "completion_tokens": None}), Reply("1, 2")),
        (
            _reply_with(usage={"prompt_tokens": "many", "completion_tokens": 2.0}),
            Reply("1, 2", 0, 2),
        ),
        (_reply_with(None, usage={"prompt_tokens": 5}), Reply("", 5, 0, empty=True)),
        (_reply_with(""), Reply("", empty=True)),
        (_reply_with([]), Reply("", empty=True)),
    ],
)
def test_reply_shapes(resp, expected):
    with FaultServer([("json", resp)]) as srv:
        assert chat(backend(srv.base_url)) == expected


def test_default_reply_is_not_empty():
    assert Reply("x").empty is False


def test_non_text_content_is_a_backend_error():
    with (
        FaultServer([("json", _reply_with(42))]) as srv,
        pytest.raises(LLMBackendError, match="content is a int, not text"),
    ):
        chat(backend(srv.base_url))


@pytest.mark.parametrize("usage", ["n/a", None, {"prompt_tokens": None}])
def test_loglik_tolerates_odd_usage(usage):
    lp = {"tokens": list("ab"), "text_offset": [0, 1], "token_logprobs": [None, -0.5]}
    resp: dict[str, Any] = {"choices": [{"index": 0, "text": "ab", "logprobs": lp}]}
    if usage is not None:
        resp["usage"] = usage
    with FaultServer([("json", resp)]) as srv:
        scores, n_tokens = backend(srv.base_url).loglik("a", ["b"])
    assert n_tokens == 0
    assert scores[0].logprob == pytest.approx(-0.5) and scores[0].n_tokens == 1
