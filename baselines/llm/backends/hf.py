"""The local backend: a causal LM folder loaded through transformers (safetensors only, no
remote code unless pinned to a reviewed commit). torch and transformers load on first use.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from baselines.llm.backends.base import LogLik, Reply
from baselines.llm.cache import hf_identity
from baselines.llm.common import hf_progress_bars
from bench.errors import ConfigError

_SHA = re.compile(r"^[0-9a-f]{40}$")


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
