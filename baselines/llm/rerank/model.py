"""The ``llm-rerank`` model: frozen first-stage candidates -> prompt -> backend (replay cache
first) -> parsed order -> scores. See the package docstring for the two kinds of request."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from baselines.llm import prompts as P
from baselines.llm.cache import ReplayCache, cache_key
from baselines.llm.common import count_safetensors_params, hash_model_dir, sha256_json
from baselines.llm.http import redact_url
from baselines.llm.rerank.candidates import freeze_candidates
from baselines.llm.rerank.config import RerankConfig, identity, make_backend, validate
from baselines.llm.rerank.fewshot import few_shots
from baselines.llm.rerank.record import Rankings, Stats
from bench.console import say
from bench.item_text import render_item_texts
from bench.models.base import (
    FitContext,
    History,
    ModelData,
    ModelReport,
    Recommender,
    RemoteCalls,
)

#: a parse failure rate above this prints a warning after scoring (the run still finishes)
PARSE_FAILURE_WARN = 0.5


@dataclass(frozen=True)
class _Request:
    """One ranking being made. ``timed``: a request of the latency pass (a user ranked
    again, or any user after ``start_latency_pass``): counted in ``latency_stats``, never
    logged to ``prompts.jsonl``, no permutation probe. ``cache``: the replay cache it may
    read and write (None after ``start_latency_pass``, so the LLM itself is timed)."""

    timed: bool
    stats: Stats
    cache: ReplayCache | None


class LLMRerank(Recommender):
    """Rerank a first stage's top ``n_candidates`` with a causal LM (listwise or pointwise).

    State after ``fit``: the evaluation mode until ``start_latency_pass()``, then the latency
    pass until the next ``fit``. Whether a ranking is the evaluation's or a timed request is
    decided per user (``_request``) and handed down, never kept on the model."""

    Config = RerankConfig
    name = "llm-rerank"

    def __init__(self, config: RerankConfig | None = None) -> None:
        super().__init__(config)
        validate(self.config)
        self._backend: Any = None
        self._cache: ReplayCache | None = None
        self._cands: dict[int, np.ndarray] = {}  # frozen first-stage top-N, test history
        self._cands_by: dict[str, dict[int, np.ndarray]] = {}  # by History.name
        self.candidates_path: Path | None = None
        self._prompts_path: Path | None = None
        self._first_stage_params = 0
        self._progress = False
        self._begin(freeze_ms=0.0)

    def _begin(self, freeze_ms: float) -> None:
        """The state of one fit: fresh counts and rankings, the evaluation mode."""
        self.stats = Stats(freeze_ms=freeze_ms)  # the evaluation
        self.latency_stats = Stats(freeze_ms=freeze_ms)  # timed requests (the latency pass)
        self.rankings = Rankings()
        self._latency_pass = False  # start_latency_pass() was called: no replay cache
        self._said: set[str] = set()  # warnings already printed since fit
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
        self.identity = identity(cfg)
        self.template_hash = P.template_hash(cfg.item_template)
        self._perm_seed = int(ctx.rng(stream=7).integers(2**31))
        self._progress = bool(ctx.progress)
        t0 = time.perf_counter()
        self._data, self._ctx = data, ctx
        self._test_history = data.test_history.name
        frozen = freeze_candidates(data, ctx, cfg)
        self._cands, self.candidates_path = frozen.lists, frozen.path
        self._first_stage_params = frozen.first_stage_params
        self._cands_by = {self._test_history: self._cands}
        freeze_ms = (time.perf_counter() - t0) * 1e3
        self._shots = few_shots(data, ctx, cfg, self.texts)
        self._cache = (
            ReplayCache(Path(ctx.cache_dir) / "llm-rerank" / "replay.sqlite")
            if cfg.use_cache
            else None
        )
        Path(ctx.workdir).mkdir(parents=True, exist_ok=True)
        self._prompts_path = Path(ctx.workdir) / "prompts.jsonl"
        self._prompts_path.write_text("")
        self._begin(freeze_ms)

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

    def _request(self, key: tuple[str, int]) -> _Request:
        """The first ranking of a user is the evaluation; a user ranked again (the runner's
        latency pass) or any user after ``start_latency_pass()`` is a timed request."""
        timed = self._latency_pass or key in self._ranked
        cache = None if self._latency_pass else self._cache
        return _Request(timed, self.latency_stats if timed else self.stats, cache)

    def _score_user(self, out: np.ndarray, row: int, u: int, history: History) -> None:
        key = (history.name, u)
        req = self._request(key)
        t0 = time.perf_counter()
        cands = self._user_candidates(u, history)
        req.stats.cand_ms += (time.perf_counter() - t0) * 1e3
        req.stats.users += 1
        self._scored.add(key)
        if len(cands) == 0:
            return
        order = self._rank(req, u, cands, history, None)
        out[row, order] = len(order) - np.arange(len(order), dtype=np.float64)
        if req.timed:
            return
        self._ranked.add(key)
        if history.name != self._test_history:  # the validation pass: no reference rankings
            return
        self._sampled = history.candidates is not None
        self.rankings.first[u] = cands
        for i in range(self.config.permutations):
            self.rankings.perms.setdefault(i, {})[u] = self._rank(req, u, cands, history, i)

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
            frozen = freeze_candidates(self._data, self._ctx, self.config, history.name)
            self._cands_by[history.name] = frozen.lists
        return self._cands_by[history.name]

    def _history_texts(self, u: int, history: History) -> list[str]:
        seq = history.sequences[u] if u < len(history.sequences) else np.zeros(0, np.int64)
        seq = seq[-self.config.max_history :] if self.config.max_history > 0 else seq[:0]
        return [self.texts[i] for i in seq.tolist()]

    def _rank(
        self, req: _Request, u: int, cands: np.ndarray, history: History, perm: int | None
    ) -> np.ndarray:
        n = len(cands)
        shown = cands
        if perm is not None:
            shown = cands[np.random.default_rng([self._perm_seed, perm, u]).permutation(n)]
        hist = self._history_texts(u, history)
        if self.config.mode == "pointwise":
            return self._rank_pointwise(req, u, cands, hist, perm)
        return self._rank_listwise(req, u, cands, shown, hist, perm)

    # ------------------------------------------------------------------ listwise
    def _rank_listwise(self, req: _Request, u, cands, shown, hist, perm) -> np.ndarray:
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

        value, cached = self._cached_call(req, key, call)
        t0 = time.perf_counter()
        parsed = P.parse_listwise(value["text"], len(shown))
        picked = shown[parsed.order] if parsed.order else shown[:0]
        rest = cands[~np.isin(cands, picked)]  # missing candidates: first-stage order
        order = np.concatenate([picked, rest]).astype(np.int64)
        st = req.stats
        st.parse_ms += (time.perf_counter() - t0) * 1e3
        st.replies += 1
        st.parse_failures += int(parsed.failed)
        st.entries += parsed.n_entries
        st.out_of_candidates += parsed.n_out_of_candidates
        st.duplicates += parsed.n_duplicates
        self._log(
            req,
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
            },
        )
        return order

    # ------------------------------------------------------------------ pointwise
    def _rank_pointwise(self, req: _Request, u, cands, hist, perm) -> np.ndarray:
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

        value, cached = self._cached_call(req, key, call)
        t0 = time.perf_counter()
        lp = np.array([x[0] for x in value["logprobs"]], dtype=np.float64)
        if self.config.pointwise_norm == "mean":
            lp = lp / np.maximum([x[1] for x in value["logprobs"]], 1)
        order = cands[np.argsort(-lp, kind="stable")]  # ties: first-stage order
        req.stats.parse_ms += (time.perf_counter() - t0) * 1e3
        req.stats.replies += 1
        self._log(
            req,
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
            },
        )
        return order

    # ------------------------------------------------------------------ plumbing
    def _cached_call(self, req: _Request, key: str, call) -> tuple[dict[str, Any], bool]:
        """``call()`` -> (value, cacheable), answered from ``req.cache`` when it holds the
        key; counted in ``req.stats``."""
        st, cache = req.stats, req.cache
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

    def _log(self, req: _Request, record: dict[str, Any]) -> None:
        if req.timed:
            return
        with open(self._prompts_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    # ------------------------------------------------------------------ reporting
    def report(self) -> ModelReport:
        """The evaluation's ``llm_*`` metrics, ``prompts.jsonl``, the per-stage latency, the
        first stage's ranking (``first_stage/*``; not under sampled candidates, where the
        "first stage" is a shuffled set) and the position-bias probe (``permutation/*``), the
        provenance; family ``llm``. Called by the runner once the latency pass is done, so a
        high parse failure rate, or a latency pass answered from the replay cache, is also
        said here, once per fit."""
        self._warn_parse_failures()
        self._warn_replayed_latency()
        # the timed requests (the latency pass) when they called the backend, else the
        # evaluation (replayed or live)
        timing = self.latency_stats if self.latency_stats.live else self.stats
        return ModelReport(
            metrics=self.stats.metrics(self.config.mode),
            artifacts={"prompts.jsonl": self._prompts_path} if self._prompts_path else {},
            stage_latency_ms=timing.stage_latency_ms(len(self._cands)),
            reference_rankings={} if self._sampled else self.rankings.first_stage(),
            probes=self.rankings.permutation_probe(),
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
