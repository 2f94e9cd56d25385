"""llm-rerank: fixes for a fresh-user audit. Listwise rankings written with spaces, '>' or
dashes; an item template naming no column; a warning when most replies do not parse; empty
replies kept out of the replay cache; the latency pass timing the LLM, not the cache;
n_parameters equal on a first run and a re-run; numeric parameters checked at build time."""

from __future__ import annotations

import json
import math
import os
import sqlite3
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from baselines.llm.common import count_safetensors_params  # noqa: E402
from baselines.llm.prompts import parse_listwise  # noqa: E402
from baselines.llm.rerank import LLMRerank, RerankConfig  # noqa: E402
from baselines.llm.testing import StubLLMServer, tiny_causal_lm  # noqa: E402
from bench.errors import ConfigError  # noqa: E402
from bench.latency import LatencyConfig, measure  # noqa: E402
from bench.models import registry  # noqa: E402
from bench.models.base import FitContext, ModelData  # noqa: E402
from bench.ranking import tie_ranks  # noqa: E402
from bench.testing import tiny_split  # noqa: E402
from tests.models.test_llm_rerank import FIRST, N, cfg  # noqa: E402  (registers FIRST)
from tests.models.test_llm_rerank import openai_cfg as shared_openai_cfg  # noqa: E402


@pytest.fixture(scope="module")
def split():
    return tiny_split(n_users=10, n_items=30, n_events=300, seed=1)


@pytest.fixture
def stub():
    with StubLLMServer() as server:
        yield server


def ctx_for(data: ModelData, root: Path) -> FitContext:
    return FitContext(
        seed=0, workdir=root / "work", cache_dir=root / "cache", tie_rank=tie_ranks(data.item_ids)
    )


def openai_cfg(stub: StubLLMServer, **kw) -> RerankConfig:
    # the shared helper, with a longer timeout and one retry (these tests send many requests)
    return shared_openai_cfg(stub, **{"timeout_s": 2.0, "max_retries": 1, **kw})


def fitted(config: RerankConfig, split, root: Path) -> LLMRerank:
    model = LLMRerank(config)
    model.fit(split.model_data, ctx_for(split.model_data, root))
    return model


def run(config: RerankConfig, split, root: Path) -> tuple[LLMRerank, np.ndarray]:
    model = fitted(config, split, root)
    md = split.model_data
    return model, model.score(np.arange(md.n_users), md.test_history)


def stored_replies(root: Path) -> int:
    with sqlite3.connect(root / "cache" / "llm-rerank" / "replay.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM replay").fetchone()[0]


def prompt_lines(model: LLMRerank) -> int:
    return len(model.report().artifacts["prompts.jsonl"].read_text().splitlines())


# ------------------------------------------------------------------ 1. listwise parser
@pytest.mark.parametrize(
    ("reply", "n", "order", "entries", "ooc", "dup"),
    [
        # the audit's cases: every number of the ranking is read
        (" ".join(str(k) for k in range(20, 0, -1)), 20, list(range(20, 0, -1)), 20, 0, 0),
        ("20 19 18 ... 1", 20, [20, 19, 18, 1], 4, 0, 0),
        ("3 > 1 > 2", 3, [3, 1, 2], 3, 0, 0),
        ("3-1-2", 3, [3, 1, 2], 3, 0, 0),
        ("0, -1, 2", 3, [2], 3, 2, 0),  # 0 and -1 are out of range, -1 is never 1
        # other separators and list styles
        ("3, 1, 2", 3, [3, 1, 2], 3, 0, 0),
        ("3,1,2", 3, [3, 1, 2], 3, 0, 0),
        ("3\n1\n2", 3, [3, 1, 2], 3, 0, 0),
        ("3 1 2", 3, [3, 1, 2], 3, 0, 0),
        ("3 -> 1 -> 2", 3, [3, 1, 2], 3, 0, 0),
        ("3 → 1 → 2", 3, [3, 1, 2], 3, 0, 0),
        ("3 | 1 | 2", 3, [3, 1, 2], 3, 0, 0),
        ("3 - 1 - 2", 3, [3, 1, 2], 3, 0, 0),
        ("[3] [1] [2]", 3, [3, 1, 2], 3, 0, 0),
        ("[3] > [1] > [2]", 3, [3, 1, 2], 3, 0, 0),
        ("[3], [1], [2]", 3, [3, 1, 2], 3, 0, 0),
        ("(3) (1) (2)", 3, [3, 1, 2], 3, 0, 0),
        ("1. 3\n2. 1\n3. 2", 3, [3, 1, 2], 3, 0, 0),  # list markers are not candidates
        ("1) 3\n2) 1\n3) 2", 3, [3, 1, 2], 3, 0, 0),
        ("1. [3]\n2. [1]", 3, [3, 1], 2, 0, 0),
        ("3.\n1.\n2.", 3, [3, 1, 2], 3, 0, 0),
        ("3. 1. 2.", 3, [3, 1, 2], 3, 0, 0),  # a ranking of such numbers is not a marker
        ("3) 1) 2)", 3, [3, 1, 2], 3, 0, 0),
        ("- 3\n- 1\n- 2", 3, [3, 1, 2], 3, 0, 0),  # bullets are not minus signs
        ("3, 1, 2.", 3, [3, 1, 2], 3, 0, 0),
        ("20, 19, ..., 1", 20, [20, 19, 1], 3, 0, 0),  # an elided entry is no entry
        # prose around a ranking
        ("Sure! Here is the ranking: 3, 1, 2", 3, [3, 1, 2], 3, 0, 0),
        ("Ranking: 3 > 1 > 2", 3, [3, 1, 2], 3, 0, 0),
        ("Candidate 3, candidate 1", 3, [3, 1], 2, 0, 0),
        ("I recommend [3] first, then [1] and [2]", 3, [3, 1, 2], 3, 0, 0),
        # out of range, negative, duplicates
        ("3 > 25 > 1", 3, [3, 1], 3, 1, 0),
        ("[-1], [2]", 3, [2], 2, 1, 0),
        ("3 -1 2", 3, [3, 2], 3, 1, 0),  # after a space, '-' is a minus sign
        ("0 1 2", 3, [1, 2], 3, 1, 0),
        ("3 1 3 > 1", 3, [3, 1], 4, 0, 2),
        ("3,1,2,3,1", 3, [3, 1, 2], 5, 0, 2),
        ("25, 30, 1, 1, 2, Toy Story", 20, [1, 2], 6, 3, 1),
        # digits inside titles and words are not candidates
        ("3. Heat (1995)\n1. Toy Story (1995)", 20, [], 2, 2, 0),
        ("Se7en, R2-D2", 20, [], 2, 2, 0),
        ("3.5, 2", 3, [2], 2, 1, 0),
        ("1234567", 20, [], 1, 1, 0),
        ("", 3, [], 0, 0, 0),
        ("   \n ", 3, [], 0, 0, 0),
    ],
)
def test_parse_listwise_formats(reply, n, order, entries, ooc, dup):
    p = parse_listwise(reply, n)
    got = ([k + 1 for k in p.order], p.n_entries, p.n_out_of_candidates, p.n_duplicates)
    assert got == (order, entries, ooc, dup)
    assert p.failed == (not order)


@pytest.mark.timeout(300)
def test_parse_listwise_is_linear_on_long_replies():
    """Replies built to make a backtracking pattern explode (tens of thousands of repeats):
    a quadratic or exponential parse would not finish in days; the timeout only catches that
    hang, it is not a speed bound."""
    for reply in ("1 " * 20000 + "x", "1 - " * 20000, "[1] " * 20000 + "("):
        p = parse_listwise(reply, 20)
        assert (p.order, p.n_entries, p.n_duplicates) == ([0], 20000, 19999)
    p = parse_listwise(" " * 50000 + "1x", 20)
    assert p.failed and p.n_entries == 1


def test_spaced_ranking_reranks_every_candidate(split, stub, tmp_path):
    """End to end: a reply "5 4 3 2 1" reorders all five candidates (was: only the first)."""
    n_users = split.model_data.n_users
    stub.state.replies = [" ".join(str(k) for k in range(N, 0, -1))] * n_users
    m, s = run(openai_cfg(stub), split, tmp_path)
    u = next(u for u, c in m.rankings.first.items() if len(c) == N)
    finite = np.flatnonzero(~np.isnan(s[u]))
    order = finite[np.argsort(-s[u, finite], kind="stable")]
    assert order.tolist() == m.rankings.first[u][::-1].tolist()
    met = m.report().metrics
    assert met["llm_parse_failure_rate"] == 0.0 and met["llm_out_of_candidates_rate"] == 0.0


# ------------------------------------------------------------------ 2. item template columns
def test_item_template_typo_is_a_config_error_at_fit(split, stub, tmp_path):
    model = LLMRerank(openai_cfg(stub, item_template="{titel} ({year})"))
    with pytest.raises(ConfigError) as err:
        model.fit(split.model_data, ctx_for(split.model_data, tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("llm-rerank: template field {titel}")
    assert "fix model.params.item_template" in msg
    assert "did you mean 'title'?" in msg
    assert "available columns: " in msg and all(c in msg for c in ("title", "year", "genres"))
    assert "item_idx" not in msg.split("available columns: ")[1].split(";")[0]
    assert stub.state.requests == []  # nothing was sent


def test_item_template_on_items_without_side_information(split, stub, tmp_path):
    md = split.model_data
    bare = replace(md, items=md.items.select("item_idx"))
    model = LLMRerank(openai_cfg(stub))
    with pytest.raises(ConfigError, match=r"field \{title\} .*available columns: none"):
        model.fit(bare, ctx_for(bare, tmp_path))


def test_item_template_with_existing_columns_renders_them(split, stub, tmp_path):
    m = fitted(openai_cfg(stub, item_template="{title} / {genres}"), split, tmp_path)
    assert all(t.startswith("Movie ") and " / " in t for t in m.texts)


# ------------------------------------------------------------------ 3. parse failures
def test_mostly_unparsable_replies_warn_once(split, stub, tmp_path, capsys):
    n_users = split.model_data.n_users
    stub.state.replies = ["I cannot help with that."] * n_users
    m, _ = run(openai_cfg(stub), split, tmp_path)
    capsys.readouterr()
    met = m.report().metrics
    assert met["llm_parse_failure_rate"] == 1.0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "warning: llm-rerank: 100% of the LLM's replies" in err[0]
    assert "fall back to the first stage" in err[0]
    m.report()  # once per fit
    assert capsys.readouterr().err == ""


def test_few_unparsable_replies_do_not_warn(split, stub, tmp_path, capsys):
    n_users = split.model_data.n_users
    stub.state.replies = ["garbage"] * (n_users // 2)  # the rest: real rankings
    m, _ = run(openai_cfg(stub), split, tmp_path)
    capsys.readouterr()
    assert 0 < m.report().metrics["llm_parse_failure_rate"] <= 0.5
    assert "warning" not in capsys.readouterr().err


def test_empty_replies_are_not_cached(split, stub, tmp_path):
    md = split.model_data
    stub.state.replies = ["", "   "] + ["garbage"] * md.n_users
    m1, _ = run(openai_cfg(stub), split, tmp_path)
    n_ranked = len(m1.rankings.first)
    assert stored_replies(tmp_path) == n_ranked - 2  # the two empty replies are not stored
    stub.state.requests.clear()
    m2, _ = run(openai_cfg(stub), split, tmp_path)
    assert len(stub.state.requests) == 2  # only those two are asked again
    assert m2.report().metrics["llm_backend_calls"] == 2


class _FakeBackend:
    """Answers every chat with ``reply``; counts calls."""

    def __init__(self, reply) -> None:
        self.reply, self.calls = reply, 0

    def chat(self, messages, **kw):
        self.calls += 1
        return self.reply


@pytest.mark.parametrize(
    ("reply", "stored"),
    [
        (SimpleNamespace(text="", prompt_tokens=3, completion_tokens=0, empty=True), False),
        (SimpleNamespace(text="", prompt_tokens=3, completion_tokens=0), False),  # no field
        (SimpleNamespace(text=None, prompt_tokens=3, completion_tokens=0), False),
        (SimpleNamespace(text="2, 1", prompt_tokens=3, completion_tokens=4), True),
        (SimpleNamespace(text="2, 1", prompt_tokens=3, completion_tokens=4, empty=False), True),
    ],
)
def test_reply_empty_flag_keeps_it_out_of_the_cache(split, stub, tmp_path, reply, stored):
    m = fitted(openai_cfg(stub), split, tmp_path)
    m._backend = _FakeBackend(reply)
    u = next(iter(sorted(m._cands)))
    m.score(np.array([u]), split.model_data.test_history)
    assert m._backend.calls == 1 and stored_replies(tmp_path) == int(stored)


# ------------------------------------------------------------------ 4. latency pass
def _runner_path(model: LLMRerank, users: np.ndarray, hist, hook: bool) -> dict[str, float]:
    """What bench.runner does after fit: score every user, then time single-user requests
    with bench.latency.measure (``hook``: calling start_latency_pass() first)."""
    model.score(users, hist)
    if hook:
        model.start_latency_pass()
    lcfg = LatencyConfig(n_requests=4, warmup=1, batch_size=2)
    return measure(lambda b: model.score(b, hist), users, lcfg)


def test_latency_pass_after_the_hook_times_the_llm_not_the_replay_cache(
    split, stub, tmp_path, capsys
):
    hist = split.model_data.test_history
    first, _ = run(openai_cfg(stub), split, tmp_path)  # fills the replay cache
    users = np.array(sorted(first.rankings.first))
    n_stored = stored_replies(tmp_path)
    stub.state.delay_s = 0.05  # the LLM now takes 50 ms per request
    m = fitted(openai_cfg(stub), split, tmp_path)  # a re-run
    stub.state.requests.clear()
    out = _runner_path(m, users, hist, hook=True)
    assert out["latency_p50_ms"] >= 45, out  # was ~0.5 ms: a cache lookup
    n_timed = m.latency_stats.requests
    assert n_timed > 0 and len(stub.state.requests) == n_timed  # all live, none replayed
    assert m.latency_stats.cache_hits == 0 and stored_replies(tmp_path) == n_stored
    met = m.report().metrics  # the evaluation's figures: replayed, once per user
    assert met["llm_cache_hit_rate"] == 1.0 and met["llm_backend_calls"] == 0
    assert m.stats.requests == len(users) and prompt_lines(m) == len(users)
    assert m.report().stage_latency_ms["llm"] >= 45  # the breakdown of the timed requests
    assert "warning" not in capsys.readouterr().err


def test_latency_pass_without_the_hook_is_replayed_and_says_so(split, stub, tmp_path, capsys):
    hist = split.model_data.test_history
    first, _ = run(openai_cfg(stub), split, tmp_path)
    users = np.array(sorted(first.rankings.first))
    m = fitted(openai_cfg(stub), split, tmp_path)
    stub.state.requests.clear()
    _runner_path(m, users, hist, hook=False)
    assert stub.state.requests == []  # a re-run still makes no backend call
    capsys.readouterr()
    m.report()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "answered from the replay cache" in err[0], err
    assert "latency_* time the cache, not the LLM" in err[0] and "use_cache=false" in err[0]
    m.report()
    assert capsys.readouterr().err == ""  # once per fit


def test_timed_requests_stay_out_of_metrics_log_probes_and_cache(split, stub, tmp_path):
    md = split.model_data
    users = np.arange(md.n_users)
    m, s1 = run(openai_cfg(stub, permutations=1), split, tmp_path)
    before = (m.report().metrics, prompt_lines(m), stored_replies(tmp_path))
    rankings = {u: c.copy() for u, c in m.rankings.first.items()}
    m.start_latency_pass()
    stub.state.requests.clear()
    again = m.score(users[:3], md.test_history)
    live = sum(u in rankings for u in range(3))  # users with candidates
    assert len(stub.state.requests) == live  # one call each: no permutation probe
    np.testing.assert_array_equal(again, s1[:3])
    assert (m.report().metrics, prompt_lines(m), stored_replies(tmp_path)) == before
    assert m.rankings.first.keys() == rankings.keys()


def test_timed_requests_write_nothing_to_an_empty_cache(split, stub, tmp_path):
    md = split.model_data
    m = fitted(openai_cfg(stub), split, tmp_path)
    m.start_latency_pass()
    m.score(np.arange(md.n_users), md.test_history)  # never ranked, but timed
    assert len(stub.state.requests) == len(m._cands) == m.latency_stats.live
    assert stored_replies(tmp_path) == 0 and m.rankings.first == {} and prompt_lines(m) == 0
    assert m.stats.requests == 0
    m.fit(md, ctx_for(md, tmp_path))  # a new fit ends the latency pass
    m.score(np.arange(md.n_users), md.test_history)
    assert stored_replies(tmp_path) == len(m._cands) == len(m.rankings.first)


def test_rescoring_without_the_hook_is_replayed_outside_the_metrics(split, stub, tmp_path):
    md = split.model_data
    m, s1 = run(openai_cfg(stub), split, tmp_path)
    before = (m.report().metrics, prompt_lines(m))
    stub.state.requests.clear()
    np.testing.assert_array_equal(m.score(np.arange(3), md.test_history), s1[:3])
    assert stub.state.requests == [] and (m.report().metrics, prompt_lines(m)) == before
    assert m.latency_stats.cache_hits == m.latency_stats.requests > 0


# ------------------------------------------------------------------ 5. n_parameters
def test_n_parameters_counts_the_first_stage_on_a_rerun_too(split, stub, tmp_path):
    conf = openai_cfg(stub, first_stage="pop")
    first = fitted(conf, split, tmp_path)
    pop = registry.build("pop", {})
    pop.fit(split.model_data, ctx_for(split.model_data, tmp_path))
    assert first.n_parameters() == pop.n_parameters() > 0  # a served LLM counts 0
    again = fitted(conf, split, tmp_path)  # candidates loaded from the frozen file
    assert again.candidates_path == first.candidates_path
    assert again.n_parameters() == first.n_parameters()
    meta = first.candidates_path.with_suffix(".json")
    assert json.loads(meta.read_text())["n_parameters"] == pop.n_parameters()
    meta.unlink()  # a file frozen before the count was stored: counted (and stored) again
    legacy = fitted(conf, split, tmp_path)
    assert legacy.n_parameters() == first.n_parameters() and meta.exists()


def test_n_parameters_hf_is_llm_plus_first_stage(split, tmp_path):
    llm = tiny_causal_lm(tmp_path / "tiny", seed=0, hidden=16, layers=1)
    conf = cfg(backend="hf", llm=str(llm), first_stage="pop")
    counts = [fitted(conf, split, tmp_path).n_parameters() for _ in range(2)]
    want = count_safetensors_params(llm) + split.model_data.n_items
    assert counts == [want, want]


# ------------------------------------------------------------------ 6. build-time checks
OPENAI = {"backend": "openai", "llm": "m", "first_stage": FIRST}


@pytest.mark.parametrize(
    ("param", "value", "want"),
    [
        ("max_new_tokens", 0, "an integer >= 1"),
        ("max_new_tokens", -5, "an integer >= 1"),
        ("temperature", -1.0, "a number >= 0"),
        ("temperature", math.nan, "a number >= 0"),
        ("temperature", math.inf, "a number >= 0"),
        ("n_candidates", 0, "an integer >= 1"),
        ("batch_size", 0, "an integer >= 1"),
        ("max_history", -1, "an integer >= 0"),
        ("few_shot", -1, "an integer >= 0"),
        ("permutations", -2, "an integer >= 0"),
        ("timeout_s", 0.0, "a number > 0"),
        ("max_retries", -1, "an integer >= 0"),
        ("backoff_s", -0.5, "a number >= 0"),
        ("backoff_max_s", -1.0, "a number >= 0"),
    ],
)
def test_numeric_params_are_checked_at_build_time(param, value, want):
    with pytest.raises(ConfigError) as err:
        registry.build("llm-rerank", {**OPENAI, param: value})
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"llm-rerank: {param}=")
    assert want in msg and f"model.params.{param}=" in msg


def test_numeric_params_reject_wrong_types_when_built_directly():
    with pytest.raises(ConfigError, match=r"max_new_tokens=1\.5 is invalid"):
        LLMRerank(RerankConfig(**{**OPENAI, "max_new_tokens": 1.5}))
    with pytest.raises(ConfigError, match=r"n_candidates=True is invalid"):
        LLMRerank(RerankConfig(**{**OPENAI, "n_candidates": True}))


def test_numeric_edges_are_accepted():
    ok = {"max_new_tokens": 1, "temperature": 0, "max_history": 0, "max_retries": 0}
    model = registry.build("llm-rerank", {**OPENAI, **ok, "backoff_s": 0.0})
    assert model.config.max_new_tokens == 1 and model.config.temperature == 0.0


def test_listwise_runs_carry_the_parser_version_in_their_provenance(stub):
    from baselines.llm.prompts import PARSER_VERSION

    listwise = LLMRerank(openai_cfg(stub)).report().provenance
    assert listwise == {"listwise_parser": str(PARSER_VERSION)}  # a served model: no hash
    assert LLMRerank(openai_cfg(stub, mode="pointwise")).report().provenance == {}
