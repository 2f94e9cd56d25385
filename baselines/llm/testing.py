"""Offline fixtures for the LLM recommenders: a tiny random causal LM and a stub server.

Used by the tests and ``benchmarks/perf_llm.py``; nothing here downloads anything.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def byte_level_tokenizer():
    """A ``PreTrainedTokenizerFast`` over the 256 byte symbols (no merges): any text works."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def tiny_causal_lm(
    path: str | Path, *, seed: int = 0, hidden: int = 32, layers: int = 2, vocab_scale: float = 1.0
) -> Path:
    """Build, randomly initialise and ``save_pretrained`` a tiny Llama + tokenizer at ``path``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = byte_level_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
        with torch.no_grad():  # sharper random distributions: scores differ between items
            model.lm_head.weight.mul_(vocab_scale)
    path = Path(path)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def tiny_encoder(path: str | Path, *, seed: int = 0, hidden: int = 32) -> Path:
    """Build and ``save_pretrained`` a tiny random BERT encoder + byte-level tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    tok = byte_level_tokenizer()
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(cfg)
    path = Path(path)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


@dataclass
class StubState:
    """What the stub server does; tests mutate it. ``faults`` are consumed one per request:
    an int status (429, 500...), ``"timeout"`` (sleeps ``sleep_s``), ``"truncated"`` or
    ``"leak"`` (a 401 whose body echoes the request's Authorization header)."""

    faults: list[Any] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)  # forced chat replies, consumed in order
    obedient: bool = True  # follow an instruction line found *outside* quotes
    sleep_s: float = 1.0
    delay_s: float = 0.0  # every request waits this long before answering (slow server)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


_CAND = re.compile(r'^\[(\d+)\] (".*")$', re.M)


def stub_chat_reply(content: str, obedient: bool = True) -> str:
    """Deterministic ranking: candidates by descending sha-free key (length of text, then
    number). An 'obedient' stub obeys a line starting with "Ignore previous instructions"
    (only reachable if a title escaped its quotes) by answering that line's text."""
    if obedient:
        for line in content.splitlines():
            if line.lower().startswith("ignore previous instructions"):
                return line
    cands = [(int(n), json.loads(t)) for n, t in _CAND.findall(content)]
    ranked = sorted(cands, key=lambda c: (-len(c[1]), c[0]))
    return ", ".join(str(n) for n, _ in ranked)


def _stub_logprobs(text: str) -> dict[str, Any]:
    toks = list(text)
    offs = list(range(len(text)))
    lps = [None] + [-((ord(c) * 7 + i) % 13) / 5.0 for i, c in enumerate(toks[1:])]
    return {"tokens": toks, "text_offset": offs, "token_logprobs": lps}


class _Handler(BaseHTTPRequestHandler):
    state: StubState

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:  # noqa: N802
        st = self.state
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with st.lock:
            st.requests.append({"path": self.path, "body": body})
            st.headers.append(dict(self.headers))
            fault = st.faults.pop(0) if st.faults else None
            chat = self.path.endswith("chat/completions")
            forced = st.replies.pop(0) if st.replies and chat else None
        if st.delay_s:
            time.sleep(st.delay_s)
        if fault == "timeout":
            time.sleep(st.sleep_s)
            fault = 503
        if fault == "leak":
            echo = json.dumps({"error": f"bad key {self.headers.get('Authorization')}"})
            return self._send(401, echo.encode())
        if fault == "truncated":
            return self._send(200, b'{"choices": [{"message": {"content": "1, 2')
        if isinstance(fault, int):
            return self._send(fault, json.dumps({"error": {"message": "stub fault"}}).encode())
        if self.path.endswith("/chat/completions"):
            content = body["messages"][-1]["content"]
            text = forced if forced is not None else stub_chat_reply(content, st.obedient)
            resp = {
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": len(content) // 4, "completion_tokens": len(text)},
            }
        elif self.path.endswith("/completions"):
            prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
            resp = {
                "choices": [
                    {"index": i, "text": p, "logprobs": _stub_logprobs(p)}
                    for i, p in enumerate(prompts)
                ],
                "usage": {"prompt_tokens": sum(len(p) for p in prompts)},
            }
        else:
            return self._send(404, b'{"error": "not found"}')
        self._send(200, json.dumps(resp).encode())

    def _send(self, code: int, payload: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(payload)


class LocalHTTPServer:
    """A threaded HTTP server on 127.0.0.1 (random port) in a daemon thread, serving
    ``handler``; a context manager. ``base_url`` is its OpenAI-style ``/v1`` root."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], poll_interval: float = 0.05):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class StubLLMServer(LocalHTTPServer):
    """An OpenAI-compatible server on 127.0.0.1 (random port) in a daemon thread."""

    def __init__(self, state: StubState | None = None) -> None:
        self.state = state or StubState()
        super().__init__(type("Handler", (_Handler,), {"state": self.state}))
