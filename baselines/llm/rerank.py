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
re-scored user is answered from the replay cache, and ``extra_metrics`` says so in a warning.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from baselines.llm import prompts as P
from baselines.llm.backends import check_remote_code
from baselines.llm.cache import ReplayCache, cache_key, hf_identity, openai_identity
from baselines.llm.common import (
    DEFAULT_ITEM_TEMPLATE,
    PROMPT_TEMPLATE_VERSION,
    atomic_write_bytes,
    check_model_folder,
    count_safetensors_params,
    hash_model_dir,
    sha256_json,
    thaw,
)
from baselines.llm.http import check_base_url, redact_url
from bench.console import say
from bench.errors import ConfigError, IntegrityError, did_you_mean
from bench.hashing import sha256_file
from bench.item_text import check_template, render_item_texts
from bench.models.base import (
    FitContext,
    History,
    ModelData,
    ModelReport,
    Probe,
    Ranking,
    Recommender,
    RemoteCalls,
)
from bench.ranking import PAD

# bump if the frozen candidate file's meaning changes (2: ranked by the harness's topk, ties by
# the sha256 tie rank, not by item index)
CANDIDATES_FORMAT = 2


@dataclass(frozen=True)
class RerankConfig:
    """Parameters of ``llm-rerank`` (``conf/model/llm-rerank.yaml``)."""

    first_stage: str = "pop"  # registry name of the candidate generator
    first_stage_params: Any = ()  # its params (a mapping in YAML)
    n_candidates: int = 20
    backend: str = "hf"  # hf | openai
    llm: str = ""  # hf: local model folder; openai: served model name
    base_url: str = "http://127.0.0.1:8000/v1"  # openai backend only
    api_key_env: str = "OPENAI_API_KEY"  # NAME of the env var holding the key (never the key)
    revision: str = ""  # pinned commit sha (required with trust_remote_code) or a model tag
    trust_remote_code: bool = False
    mode: str = "listwise"  # listwise | pointwise
    pointwise_norm: str = "mean"  # mean | sum of the candidate's token log-probabilities
    item_template: str = DEFAULT_ITEM_TEMPLATE
    max_field_chars: int = 300  # each item_template field cut to this many characters (0 = whole)
    max_history: int = 10  # most recent history items shown in the prompt
    few_shot: int = 0  # worked examples from train sequences placed before the task
    max_new_tokens: int = 96
    temperature: float = 0.0
    batch_size: int = 8  # candidates per forward pass (hf pointwise)
    permutations: int = 0  # position-bias probe: reruns with shuffled candidate order
    use_cache: bool = True  # replay cache under ctx.cache_dir/llm-rerank
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 20.0


_CHOICES = {
    "backend": ("hf", "openai"),
    "mode": ("listwise", "pointwise"),
    "pointwise_norm": ("mean", "sum"),
}


@dataclass
class _Stats:
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


#: a parse failure rate above this prints a warning after scoring (the run still finishes)
PARSE_FAILURE_WARN = 0.5


@dataclass
class _Rankings:
    first: dict[int, np.ndarray] = field(default_factory=dict)
    perms: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)


class LLMRerank(Recommender):
    """Rerank a first stage's top ``n_candidates`` with a causal LM (listwise or pointwise)."""

    Config = RerankConfig
    name = "llm-rerank"

    def __init__(self, config: RerankConfig | None = None) -> None:
        super().__init__(config)
        _validate(self.config)
        self._backend: Any = None
        self._cache: ReplayCache | None = None
        self._cands: dict[int, np.ndarray] = {}  # frozen first-stage top-N, test history
        self._cands_by: dict[str, dict[int, np.ndarray]] = {}  # by History.name
        self.stats = _Stats()
        self.rankings = _Rankings()
        self.candidates_path: Path | None = None
        self._prompts_path: Path | None = None
        self._first_stage_params = 0
        self.latency_stats = _Stats()  # timed requests (the runner's latency pass)
        self._count = self.stats  # the _Stats of the ranking being made
        self._timed = False  # the ranking being made is a timed request (no log, no probe)
        self._latency_pass = False  # start_latency_pass() was called: no replay cache
        self._said: set[str] = set()  # warnings already printed since fit
        self._progress = False
        # (history name, user) ranked since fit: ranked again = a timed request; the progress
        # bar skips them
        self._scored: set[tuple[str, int]] = set()
        self._ranked: set[tuple[str, int]] = set()
        self._sampled = False  # the test ranking used sampled candidate sets

    # ------------------------------------------------------------------ fit
    def fit(self, data: ModelData, ctx: FitContext) -> None:
        cfg = self.config
        self.n_items = data.n_items
        self.texts = render_item_texts(
            data.items,
            data.n_items,
            cfg.item_template,
            strict=("llm-rerank", "model.params.item_template"),
            max_field_chars=cfg.max_field_chars,
        )
        self.seed = int(ctx.seed)
        self.identity = _identity(cfg)
        self.template_hash = P.template_hash(cfg.item_template)
        self._perm_seed = int(ctx.rng(stream=7).integers(2**31))
        self._progress = bool(ctx.progress)
        t0 = time.perf_counter()
        self._data, self._ctx = data, ctx
        self._test_history = data.test_history.name
        self._cands, self.candidates_path = freeze_candidates(data, ctx, cfg, self)
        self._cands_by = {self._test_history: self._cands}
        self.stats.freeze_ms = (time.perf_counter() - t0) * 1e3
        self._shots = _few_shots(data, ctx, cfg, self.texts)
        self._cache = (
            ReplayCache(Path(ctx.cache_dir) / "llm-rerank" / "replay.sqlite")
            if cfg.use_cache
            else None
        )
        Path(ctx.workdir).mkdir(parents=True, exist_ok=True)
        self._prompts_path = Path(ctx.workdir) / "prompts.jsonl"
        self._prompts_path.write_text("")
        self.stats = _Stats(freeze_ms=self.stats.freeze_ms)
        self.latency_stats = _Stats(freeze_ms=self.stats.freeze_ms)
        self._count = self.stats
        self._timed = self._latency_pass = False
        self._said = set()
        self.rankings = _Rankings()
        self._scored, self._ranked = set(), set()
        self._sampled = False

    def start_latency_pass(self) -> RemoteCalls | None:
        """Every later ``score`` call (until the next ``fit``) is a timed request that calls
        the backend: the runner's hook before it measures latency.

        A timed request neither reads nor writes the replay cache, writes nothing to
        ``prompts.jsonl``, runs no permutation probe, is not counted in the ``llm_*`` metrics
        and is what ``latency_ms/<stage>`` describes, so ``latency_*`` time the LLM rather than
        the cache (its cost: one backend call per user the latency pass scores). Without this
        call a user scored again is a timed request answered from the replay cache, and
        ``report`` warns that the latency figures time the cache.

        Returns, for the openai backend, the server, the requests made so far (live or
        replayed: the latency pass never replays) and the users they ranked; None for a
        local (hf) model.
        """
        self._latency_pass = True
        if self.config.backend != "openai":
            return None
        where = f"the OpenAI-compatible server {redact_url(self.config.base_url)}"
        return RemoteCalls(where, self.stats.requests, self.stats.users)

    # ------------------------------------------------------------------ score
    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        if self._prompts_path is None:
            raise RuntimeError("llm-rerank: score() called before fit()")
        users = np.asarray(users, dtype=np.int64)
        out = np.full((len(users), self.n_items), np.nan)
        bar = self._progress_bar(users, history)
        try:
            for row, u in enumerate(users.tolist()):
                self._score_user(out, row, u, history)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return out

    def _score_user(self, out: np.ndarray, row: int, u: int, history: History) -> None:
        # the first ranking of a user is the evaluation; a user ranked again (the runner's
        # latency pass) or any user after start_latency_pass() is a timed request: outside
        # the llm_* rates, prompts.jsonl and the permutation probe (see _cached_call)
        key = (history.name, u)
        self._timed = self._latency_pass or key in self._ranked
        st = self._count = self.latency_stats if self._timed else self.stats
        t0 = time.perf_counter()
        cands = self._user_candidates(u, history)
        st.cand_ms += (time.perf_counter() - t0) * 1e3
        st.users += 1
        self._scored.add(key)
        if len(cands) == 0:
            return
        order = self._rank(u, cands, history, None)
        out[row, order] = len(order) - np.arange(len(order), dtype=np.float64)
        if self._timed:
            return
        self._ranked.add(key)
        if history.name != self._test_history:  # the validation pass: no reference rankings
            return
        self._sampled = history.candidates is not None
        self.rankings.first[u] = cands
        for i in range(self.config.permutations):
            self.rankings.perms.setdefault(i, {})[u] = self._rank(u, cands, history, i)

    def _progress_bar(self, users: np.ndarray, history: History) -> Any:
        """A per-user bar over this call (``ctx.progress``: on a terminal unless the config's
        ``progress`` says otherwise), only when it ranks a user for the first time: the
        runner's latency pass re-scores users one by one, barless."""
        keys = [(history.name, u) for u in users.tolist()]
        if not self._progress or self._latency_pass or self._scored.issuperset(keys):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=len(users), desc="llm-rerank", unit="user")

    def _user_candidates(self, u: int, history: History) -> np.ndarray:
        """The first stage's frozen top-N for this history, or, under sampled candidates
        (``history.candidates``), the user's whole sampled set in a seeded random order."""
        if history.candidates is not None:
            cands = history.candidates[u].indices.astype(np.int64)
            cands = cands[np.random.default_rng([self._perm_seed, 1 << 20, u]).permutation(
                len(cands))]
        else:
            cands = self._frozen(history).get(u, np.zeros(0, dtype=np.int64))
        seen = history.matrix[u].indices if u < history.n_users else np.zeros(0, np.int32)
        return cands[~np.isin(cands, seen)] if len(seen) else cands

    def _frozen(self, history: History) -> dict[int, np.ndarray]:
        """The first stage's frozen top-N of every user for ``history`` (frozen on first use
        for a history other than the test one, e.g. the validation pass's train history)."""
        if history.name not in self._cands_by:
            self._cands_by[history.name], _ = freeze_candidates(
                self._data, self._ctx, self.config, None, history.name
            )
        return self._cands_by[history.name]

    def _history_texts(self, u: int, history: History) -> list[str]:
        seq = history.sequences[u] if u < len(history.sequences) else np.zeros(0, np.int64)
        seq = seq[-self.config.max_history :] if self.config.max_history > 0 else seq[:0]
        return [self.texts[i] for i in seq.tolist()]

    def _rank(self, u: int, cands: np.ndarray, history: History, perm: int | None) -> np.ndarray:
        n = len(cands)
        shown = cands
        if perm is not None:
            shown = cands[np.random.default_rng([self._perm_seed, perm, u]).permutation(n)]
        hist = self._history_texts(u, history)
        if self.config.mode == "pointwise":
            return self._rank_pointwise(u, cands, hist, perm)
        return self._rank_listwise(u, cands, shown, hist, perm)

    # ------------------------------------------------------------------ listwise
    def _rank_listwise(self, u, cands, shown, hist, perm) -> np.ndarray:
        cfg = self.config
        messages = P.listwise_messages(
            hist, [self.texts[c] for c in shown.tolist()], self._shots["listwise"]
        )
        key = cache_key(
            self.identity,
            kind="chat",
            template=self.template_hash,
            prompt=sha256_json(messages),
            seed=self.seed,
            decoding={"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature},
        )

        def call() -> tuple[dict[str, Any], bool]:
            r = self._get_backend().chat(
                messages,
                max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature,
                seed=self.seed,
            )
            value = {
                "text": r.text or "",
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
            }
            # an empty or null content may be a server glitch: asked again on the next run
            empty = bool(getattr(r, "empty", False)) or not value["text"].strip()
            return value, not empty

        value, cached = self._cached_call(key, call)
        t0 = time.perf_counter()
        parsed = P.parse_listwise(value["text"], len(shown))
        picked = shown[parsed.order] if parsed.order else shown[:0]
        rest = cands[~np.isin(cands, picked)]  # missing candidates: first-stage order
        order = np.concatenate([picked, rest]).astype(np.int64)
        st = self._count
        st.parse_ms += (time.perf_counter() - t0) * 1e3
        st.replies += 1
        st.parse_failures += int(parsed.failed)
        st.entries += parsed.n_entries
        st.out_of_candidates += parsed.n_out_of_candidates
        st.duplicates += parsed.n_duplicates
        self._log(
            {
                "user_idx": u,
                "permutation": perm,
                "mode": "listwise",
                "candidates": shown.tolist(),
                "prompt": messages,
                "response": value["text"],
                "cached": cached,
                "parsed": [int(k) + 1 for k in parsed.order],
                "ranking": order.tolist(),
            }
        )
        return order

    # ------------------------------------------------------------------ pointwise
    def _rank_pointwise(self, u, cands, hist, perm) -> np.ndarray:
        # candidates are always sent in first-stage order: one prompt has one candidate, so
        # order cannot bias it, and permutations replay the same cache entry.
        prefix = P.pointwise_prefix(hist, self._shots["pointwise"])
        conts = [P.pointwise_continuation(self.texts[c]) for c in cands.tolist()]
        key = cache_key(
            self.identity,
            kind="loglik",
            template=self.template_hash,
            prompt=sha256_json([prefix, conts]),
            seed=self.seed,
            decoding={},
        )

        def call() -> tuple[dict[str, Any], bool]:
            lls, n_tok = self._get_backend().loglik(prefix, conts)
            value = {
                "logprobs": [[x.logprob, x.n_tokens] for x in lls],
                "prompt_tokens": n_tok,
                "completion_tokens": 0,
            }
            return value, True

        value, cached = self._cached_call(key, call)
        t0 = time.perf_counter()
        lp = np.array([x[0] for x in value["logprobs"]], dtype=np.float64)
        if self.config.pointwise_norm == "mean":
            lp = lp / np.maximum([x[1] for x in value["logprobs"]], 1)
        order = cands[np.argsort(-lp, kind="stable")]  # ties: first-stage order
        self._count.parse_ms += (time.perf_counter() - t0) * 1e3
        self._count.replies += 1
        self._log(
            {
                "user_idx": u,
                "permutation": perm,
                "mode": "pointwise",
                "candidates": cands.tolist(),
                "prompt": prefix,
                "continuations": conts,
                "response": value["logprobs"],
                "cached": cached,
                "ranking": order.tolist(),
            }
        )
        return order

    # ------------------------------------------------------------------ plumbing
    def _cached_call(self, key: str, call) -> tuple[dict[str, Any], bool]:
        """``call()`` -> (value, cacheable); after ``start_latency_pass()`` the replay cache is
        skipped, so a timed request is a backend call."""
        st = self._count
        cache = None if self._latency_pass else self._cache
        st.requests += 1
        t0 = time.perf_counter()
        stored = cache.get(key) if cache is not None else None
        cached = stored is not None
        if stored is not None:
            value: dict[str, Any] = stored
            st.cache_hits += 1
        else:
            value, cacheable = call()  # LLMBackendError after bounded retries: the run fails
            dt = time.perf_counter() - t0
            st.live += 1
            st.live_seconds += dt
            st.live_tokens += int(value["prompt_tokens"]) + int(value["completion_tokens"])
            if cache is not None and cacheable:
                cache.put(key, value)  # successful, non-empty responses only
        st.prompt_tokens += int(value["prompt_tokens"])
        st.completion_tokens += int(value["completion_tokens"])
        st.llm_ms += (time.perf_counter() - t0) * 1e3
        return value, cached

    def _get_backend(self) -> Any:
        if self._backend is None:
            self._backend = make_backend(self.config)
        return self._backend

    def _log(self, record: dict[str, Any]) -> None:
        if self._timed:
            return
        with open(self._prompts_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    # ------------------------------------------------------------------ reporting
    def report(self) -> ModelReport:
        """The evaluation's ``llm_*`` metrics, ``prompts.jsonl``, the per-stage latency, the
        first stage's ranking (``first_stage/*``) and the position-bias probe
        (``permutation/*``), the provenance; family ``llm``. Called by the runner once the
        latency pass is done, so a high parse failure rate, or a latency pass answered from
        the replay cache, is also said here, once per fit."""
        return ModelReport(
            metrics=self._metrics(),
            artifacts={"prompts.jsonl": self._prompts_path} if self._prompts_path else {},
            stage_latency_ms=self._stage_latency_ms(),
            reference_rankings=self._first_stage_ranking(),
            probes=self._permutation_probe(),
            provenance=self._provenance(),
            family="llm",
        )

    def _provenance(self) -> dict[str, str]:
        """The local model folder's content sha256 (backend=hf; a served model is known only
        by its name and ``revision``, which are params) and, in listwise mode, the reply
        parser's version (runs parsed by an older parser are not reused)."""
        out = {}
        if self.config.mode == "listwise":
            out["listwise_parser"] = str(P.PARSER_VERSION)
        if self.config.backend == "hf" and self.config.llm:
            out["llm_sha256"] = hash_model_dir(self.config.llm)
        return out

    def n_parameters(self) -> int:
        """The whole pipeline's parameters: the LLM's (hf: from its safetensors headers; a
        served model's are unknown and count 0) plus the first stage's learned parameters,
        the same whether its candidates were computed now or loaded from the frozen file."""
        n = self._first_stage_params
        if self.config.backend == "hf" and self.config.llm and Path(self.config.llm).is_dir():
            n += count_safetensors_params(self.config.llm)
        return n

    def _metrics(self) -> dict[str, float]:
        """``llm_*`` metrics of the evaluation (one ranking per user; timed requests of the
        latency pass are not counted); warns of a parse failure rate above
        ``PARSE_FAILURE_WARN`` and of a latency pass answered from the replay cache."""
        self._warn_parse_failures()
        self._warn_replayed_latency()
        st = self.stats
        req = max(st.requests, 1)
        out = {
            "llm_prompt_tokens": float(st.prompt_tokens),
            "llm_completion_tokens": float(st.completion_tokens),
            "llm_parse_failure_rate": st.parse_failures / max(st.replies, 1),
            "llm_out_of_candidates_rate": st.out_of_candidates / max(st.entries, 1),
            "llm_duplicate_rate": st.duplicates / max(st.entries, 1),
            "llm_cache_hit_rate": st.cache_hits / req,
            "llm_backend_calls": float(st.live),
            "llm_prompt_template_version": float(PROMPT_TEMPLATE_VERSION),
        }
        if st.live and st.live_seconds > 0:
            out["llm_tokens_per_s"] = st.live_tokens / st.live_seconds
        if self.config.mode == "pointwise":  # nothing is parsed in pointwise mode
            for k in ("llm_parse_failure_rate", "llm_out_of_candidates_rate", "llm_duplicate_rate"):
                out[k] = 0.0
        return out

    def _warn_parse_failures(self) -> None:
        st = self.stats
        if self.config.mode != "listwise" or st.replies == 0:
            return
        rate = st.parse_failures / st.replies
        if rate > PARSE_FAILURE_WARN:
            self._say_once(
                "parse",
                f"{100 * rate:.0f}% of the LLM's replies ({st.parse_failures} of {st.replies}) "
                "could not be parsed into candidate numbers; those users keep the first stage's "
                "order, so the scores fall back to the first stage (llm_parse_failure_rate; the "
                "replies are in prompts.jsonl)",
            )

    def _warn_replayed_latency(self) -> None:
        st = self.latency_stats
        if st.cache_hits:
            self._say_once(
                "latency",
                f"{st.cache_hits} of the {st.requests} requests re-scored after the evaluation "
                "(the latency pass) were answered from the replay cache, so latency_* time the "
                "cache, not the LLM; model.params.use_cache=false times the LLM",
            )

    def _say_once(self, what: str, message: str) -> None:
        if what in self._said:
            return
        self._said.add(what)
        say(f"warning: llm-rerank: {message}")

    def _stage_latency_ms(self) -> dict[str, float]:
        """Mean ms per user by stage, over the timed requests (the latency pass) when they
        called the backend, else over the evaluation (replayed or live)."""
        st = self.latency_stats if self.latency_stats.live else self.stats
        n = max(st.users, 1)
        n_cand_users = max(len(self._cands), 1)
        return {
            "candidates": st.freeze_ms / n_cand_users + st.cand_ms / n,
            "llm": st.llm_ms / n,
            "parse": st.parse_ms / n,
        }

    def _first_stage_ranking(self) -> dict[str, Ranking]:
        """The first stage's lists of the evaluated users; none under sampled candidates,
        where the "first stage" is a shuffled candidate set."""
        users = sorted(self.rankings.first)
        if not users or self._sampled:
            return {}
        lists = _pad([self.rankings.first[u] for u in users])
        return {"first_stage": Ranking(np.array(users, dtype=np.int64), lists)}

    def _permutation_probe(self) -> dict[str, Probe]:
        """One reranking per shuffled candidate order (``permutations``), when users were
        ranked."""
        if not self.rankings.first or not self.rankings.perms:
            return {}
        runs = []
        for _, ranks in sorted(self.rankings.perms.items()):
            users = sorted(ranks)
            runs.append(Ranking(np.array(users, dtype=np.int64), _pad([ranks[u] for u in users])))
        return {"permutation": Probe(tuple(runs))}


# ---------------------------------------------------------------------- helpers
#: numeric parameters: (name, integer, lowest value, lowest excluded, what it is)
_NUMBERS = (
    ("n_candidates", True, 1, False, "candidates reranked per user"),
    ("max_history", True, 0, False, "history items in the prompt; 0: none"),
    ("max_field_chars", True, 0, False, "characters per item_template field; 0: whole"),
    ("few_shot", True, 0, False, "worked examples; 0: none"),
    ("max_new_tokens", True, 1, False, "tokens the LLM may generate per reply"),
    ("temperature", False, 0, False, "0: greedy decoding"),
    ("batch_size", True, 1, False, "candidates per forward pass"),
    ("permutations", True, 0, False, "position-bias reruns; 0: none"),
    ("timeout_s", False, 0, True, "seconds per HTTP attempt"),
    ("max_retries", True, 0, False, "retries after a failed request"),
    ("backoff_s", False, 0, False, "first retry delay in seconds"),
    ("backoff_max_s", False, 0, False, "longest retry delay in seconds"),
)


def _check_numbers(cfg: RerankConfig) -> None:
    """One line naming the parameter, its valid range and the default as an example."""
    defaults = RerankConfig()
    for name, integer, low, strict, what in _NUMBERS:
        value = getattr(cfg, name)
        kinds = int if integer else (int, float)
        ok = (
            isinstance(value, kinds)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (value > low if strict else value >= low)
        )
        if not ok:
            raise ConfigError(
                f"llm-rerank: {name}={value!r} is invalid: it must be "
                f"{'an integer' if integer else 'a number'} {'>' if strict else '>='} {low} "
                f"({what}); e.g. model.params.{name}={getattr(defaults, name)}"
            )


def _validate(cfg: RerankConfig) -> None:
    for name, allowed in _CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise ConfigError(
                f"llm-rerank: {name}={getattr(cfg, name)!r} is not one of {', '.join(allowed)}"
            )
    _check_numbers(cfg)
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", cfg.api_key_env or ""):
        raise ConfigError(
            "llm-rerank: api_key_env must be the NAME of an environment variable holding the "
            "key (e.g. OPENAI_API_KEY), never the key itself"
        )
    check_remote_code(cfg.trust_remote_code, cfg.revision)
    if cfg.backend == "openai":
        check_base_url(cfg.base_url)
    check_template(cfg.item_template, "llm-rerank")
    _check_first_stage(cfg)
    if cfg.backend == "openai" and not cfg.llm:
        raise ConfigError(
            "llm-rerank: backend=openai needs params.llm=<served model name> "
            "(e.g. model.params.llm=Qwen/Qwen2.5-7B-Instruct)"
        )
    if cfg.backend == "hf":
        if not cfg.llm:
            raise ConfigError(
                "llm-rerank: backend=hf needs params.llm=<local model folder> (config.json, "
                "tokenizer files, *.safetensors weights), e.g. "
                "model.params.llm=/models/Qwen2.5-0.5B-Instruct; or use backend=openai"
            )
        check_model_folder(cfg.llm, "llm-rerank", "llm")


def _check_first_stage(cfg: RerankConfig) -> None:
    """``first_stage`` is a registered model and ``first_stage_params`` are its parameters:
    the first stage is built (not fit) now, so a typo fails before any run exists."""
    from bench.models import registry

    names = registry.names()
    if cfg.first_stage not in names:
        raise ConfigError(
            f"llm-rerank: first_stage={cfg.first_stage!r} is not a registered model"
            f"{did_you_mean(cfg.first_stage, names)}; available: {', '.join(names)}"
        )
    params = thaw(cfg.first_stage_params) or {}
    if not isinstance(params, dict):
        raise ConfigError(
            f"llm-rerank: first_stage_params must be a mapping of {cfg.first_stage}'s "
            f"parameters (e.g. {{k: 50}}), got {params!r}"
        )
    try:
        registry.build(cfg.first_stage, params)
    except ConfigError as exc:
        raise ConfigError(f"llm-rerank: first_stage {cfg.first_stage!r}: {exc}") from None


def _identity(cfg: RerankConfig) -> dict[str, Any]:
    """Model identity for cache keys, without loading anything (no backend call); ``cfg`` is
    validated (backend=hf has a model folder)."""
    if cfg.backend == "hf":
        return hf_identity(cfg.llm, cfg.revision)
    return openai_identity(cfg.base_url, cfg.llm, cfg.revision)  # another server never replays


def make_backend(cfg: RerankConfig) -> Any:
    from baselines.llm.backends import HFBackend, OpenAIBackend

    if cfg.backend == "hf":
        return HFBackend(
            cfg.llm,
            trust_remote_code=cfg.trust_remote_code,
            revision=cfg.revision,
            batch_size=cfg.batch_size,
        )
    return OpenAIBackend(
        cfg.base_url,
        cfg.llm,
        api_key_env=cfg.api_key_env,
        revision=cfg.revision,
        timeout_s=cfg.timeout_s,
        max_retries=cfg.max_retries,
        backoff_s=cfg.backoff_s,
        backoff_max_s=cfg.backoff_max_s,
    )


def _pad(rows: list[np.ndarray]) -> np.ndarray:
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def split_fingerprint(data: ModelData) -> str:
    """``split_sha256`` if the split is materialized, else a hash of what the model sees."""
    if data.split_sha256:
        return data.split_sha256
    import hashlib

    h = hashlib.sha256(f"{data.n_users}:{data.n_items}".encode())
    for frame in (data.train, data.valid):
        for col in ("user_idx", "item_idx", "timestamp"):
            h.update(np.ascontiguousarray(frame[col].to_numpy(), dtype=np.int64).tobytes())
    return "unsaved-" + h.hexdigest()


def freeze_candidates(
    data: ModelData,
    ctx: FitContext,
    cfg: RerankConfig,
    owner: LLMRerank | None = None,
    history_name: str | None = None,
) -> tuple[dict[int, np.ndarray], Path]:
    """Load, or compute once and freeze, the first stage's top-N for the test history (or the
    history named ``history_name``: ``train`` for the validation pass).

    ``<cache_dir>/candidates/<key>.parquet`` (user_idx, rank, item_idx) + ``<key>.sha256``
    + ``<key>.json`` (the first stage's ``n_parameters``, so ``owner.n_parameters()`` is the
    same whether the candidates were computed or loaded); the key covers the split, the first
    stage and its params, N and the seed, so every reranker on a split shares one file. A file
    whose digest changed is refused.
    """
    params = thaw(cfg.first_stage_params) or {}
    hist = data.test_history
    if history_name not in (None, hist.name) and history_name == data.train_history.name:
        hist = data.train_history
    key = sha256_json(
        {
            "format": CANDIDATES_FORMAT,
            "split": split_fingerprint(data),
            "first_stage": cfg.first_stage,
            "params": params,
            "n": cfg.n_candidates,
            "seed": int(ctx.seed),
            "history": "test" if hist.name == data.test_history.name else hist.name,
        }
    )
    folder = Path(ctx.cache_dir) / "candidates"
    path, digest = folder / f"{key}.parquet", folder / f"{key}.sha256"
    meta = folder / f"{key}.json"
    if path.exists() and digest.exists():
        want = digest.read_text().split()[0]
        if sha256_file(path) != want:
            raise IntegrityError(
                f"frozen candidates {path} do not match their sha256 ({digest}); delete both "
                "files to regenerate them"
            )
        frame = pl.read_parquet(path)
        n_params = _read_first_stage_params(meta)
        if n_params is None:  # frozen before the count was stored: fit once to count
            model = _fit_first_stage(data, ctx, cfg, params)
            n_params = int(model.n_parameters())
            _write_first_stage_params(meta, cfg, n_params)
    else:
        model = _fit_first_stage(data, ctx, cfg, params)
        n_params = int(model.n_parameters())
        frame = _compute_candidates(data, ctx, cfg, model, hist)
        tmp = folder / f".{key}.{os.getpid()}.parquet"
        folder.mkdir(parents=True, exist_ok=True)
        _write_first_stage_params(meta, cfg, n_params)
        frame.write_parquet(tmp)
        sha = sha256_file(tmp)
        atomic_write_bytes(digest, f"{sha}  {path.name}\n".encode())
        tmp.replace(path)
    if owner is not None:
        owner._first_stage_params = n_params
    frame = frame.sort(["user_idx", "rank"])
    users = frame["user_idx"].to_numpy()
    items = frame["item_idx"].to_numpy().astype(np.int64)
    bounds = np.searchsorted(users, np.arange(data.n_users + 1))
    cands = {
        u: items[bounds[u] : bounds[u + 1]]
        for u in range(data.n_users)
        if bounds[u + 1] > bounds[u]
    }
    return cands, path


def _fit_first_stage(data: ModelData, ctx: FitContext, cfg: RerankConfig, params) -> Any:
    from bench.models.registry import build

    model = build(cfg.first_stage, params)
    model.fit(data, ctx)
    return model


def _read_first_stage_params(meta: Path) -> int | None:
    try:
        return int(json.loads(meta.read_text())["n_parameters"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_first_stage_params(meta: Path, cfg: RerankConfig, n: int) -> None:
    record = {"first_stage": cfg.first_stage, "n_parameters": n}
    atomic_write_bytes(meta, (json.dumps(record) + "\n").encode())


def _compute_candidates(
    data: ModelData, ctx: FitContext, cfg: RerankConfig, model: Any, hist: History
) -> pl.DataFrame:
    """Every user's top ``n_candidates`` of the fitted first stage on ``hist``, ranked by the
    harness (``ctx.rank``: seen items masked, ties by the sha256 tie rank), so the reranker
    sees exactly the lists the first stage is evaluated on."""
    users = np.arange(data.n_users, dtype=np.int64)
    rec = ctx.rank(model, users, hist, cfg.n_candidates)
    keep = rec != PAD
    ranks = np.broadcast_to(np.arange(1, rec.shape[1] + 1), rec.shape)
    return pl.DataFrame(
        {
            "user_idx": np.broadcast_to(users[:, None], rec.shape)[keep],
            "rank": ranks[keep],
            "item_idx": rec[keep],
        },
        schema={"user_idx": pl.Int64, "rank": pl.Int64, "item_idx": pl.Int64},
    )


def _few_shots(data: ModelData, ctx: FitContext, cfg: RerankConfig, texts: list[str]) -> dict:
    """Worked examples from train sequences: the last item is the answer (no test data)."""
    shots: dict[str, list] = {"listwise": [], "pointwise": []}
    if cfg.few_shot == 0:
        return shots
    rng = ctx.rng(stream=11)
    seqs = data.train_history.sequences
    eligible = [u for u in range(len(seqs)) if len(seqs[u]) >= 2]
    pop = np.asarray(data.train_history.matrix.sum(axis=0)).ravel()
    by_pop = np.argsort(-pop, kind="stable")
    m = min(cfg.n_candidates, 5)
    for u in rng.choice(eligible, size=min(cfg.few_shot, len(eligible)), replace=False).tolist():
        seq = seqs[u]
        hist = seq[:-1][-cfg.max_history :] if cfg.max_history > 0 else seq[:0]
        target = int(seq[-1])
        distract = [int(i) for i in by_pop if i not in set(seq.tolist())][: m - 1]
        shown = np.array([target] + distract)[rng.permutation(len(distract) + 1)]
        pos = int(np.flatnonzero(shown == target)[0]) + 1
        answer = ", ".join([str(pos)] + [str(k + 1) for k in range(len(shown)) if k + 1 != pos])
        h_texts = [texts[i] for i in hist.tolist()]
        shots["listwise"].append((h_texts, [texts[i] for i in shown.tolist()], answer))
        shots["pointwise"].append((h_texts, texts[target]))
    return shots
