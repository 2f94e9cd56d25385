"""The one catalog of every metric the harness logs: names, direction, definitions, citations.

A metric's identity is a ``MetricSpec``. Its MLflow-safe *key* is the template with ``k``
filled in (``ndcg_at_10``), optionally followed by a group breakdown (``ndcg_at_10/gender/F``);
its *display* form uses ``@`` (``ndcg@10/gender/F``). Reports, leaderboards and the generated
``docs/metrics.md`` read names, direction and definitions from here; nothing else duplicates
metric names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bench.errors import ConfigError, unknown

#: bump when the meaning of any metric changes (logged as the tag ``bench.metric_definitions``).
#: 2: a run's headline keys average over the population ``eval.users`` (default: warm users,
#: with fit data), not over every test user (``eval.users=all`` gives version 1's values), and
#: fairness gaps leave out groups under ``metrics.fairness.min_group_size`` users (default 5;
#: 1 gives version 1's gaps).
METRIC_DEFINITIONS_VERSION = "2"

GROUPS = ("accuracy", "beyond-accuracy", "fairness", "efficiency", "llm", "data")


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the catalog. ``template`` contains ``{k}`` for cut-off metrics."""

    template: str
    display_template: str
    group: str
    higher_is_better: bool
    per_user: bool
    needs: tuple[str, ...]
    definition: str
    citation: str
    differences: str
    bounded: bool = False  # value always in [0, 1]
    breakdown: str = ""  # "user-groups": also logged as <key>/<attribute>/<group|gap>
    version: str = METRIC_DEFINITIONS_VERSION

    @property
    def name(self) -> str:
        """The template without its cut-off, e.g. ``ndcg`` for ``ndcg_at_{k}``."""
        return self.template.replace("_at_{k}", "")

    @property
    def has_k(self) -> bool:
        return "{k}" in self.template

    def key(self, k: int | None = None) -> str:
        return self.template.format(k=k) if self.has_k else self.template

    def display(self, k: int | None = None) -> str:
        return self.display_template.format(k=k) if self.has_k else self.display_template


def _acc(name: str, definition: str, differences: str, citation: str) -> MetricSpec:
    return MetricSpec(
        f"{name}_at_{{k}}",
        f"{name}@{{k}}",
        "accuracy",
        True,
        True,
        ("test",),
        definition,
        citation,
        differences,
        bounded=True,
        breakdown=("user-groups" if name in ("ndcg", "recall") else ""),
    )


_TREC = "trec_eval 9.0 / pytrec_eval (Van Gysel & de Rijke, SIGIR 2018); ranx (Bassani, ECIR 2022)"

_SPECS: list[MetricSpec] = [
    # ---------------------------------------------------------------- accuracy
    _acc(
        "precision",
        "sum_{i<=k} h_i / k (a list shorter than k still divides by k)",
        "RecBole divides by k too; Elliot/LensKit divide by the list length when it is shorter "
        "than k (LensKit `Precision`), and LensKit returns NaN for an empty list where this "
        "harness scores 0.",
        _TREC,
    ),
    _acc(
        "recall",
        "sum_{i<=k} h_i / |R| (test set deduplicated, so always in [0, 1])",
        "Same as RecBole/Elliot; LensKit `Recall` divides by min(|R|, k) unless told otherwise.",
        _TREC,
    ),
    _acc(
        "hit_rate",
        "1 if any h_i = 1 for i <= k, else 0",
        "RecBole `Hit`, Elliot `HR`, ranx `hit_rate`; ranx `hits` is the count, not the rate.",
        "Deshpande & Karypis, ACM TOIS 2004; ranx",
    ),
    _acc(
        "ndcg",
        "sum_{i<=k} h_i / log2(i+1), divided by sum_{i<=min(|R|,k)} 1/log2(i+1) (binary gains)",
        "Same as RecBole and trec_eval `ndcg_cut`; Elliot's default nDCG uses graded gains "
        "2^rel-1 and nDCGRendle2020 binary ones; LensKit's ideal list has length min(|R|, n) "
        "like this one, but its discount is 1/max(log2(rank), 1) (ranks 1 and 2 both "
        "undiscounted) instead of 1/log2(rank+1).",
        "Jarvelin & Kekalainen, ACM TOIS 2002; " + _TREC,
    ),
    _acc(
        "mrr",
        "1 / (rank of the first hit) if it is <= k, else 0",
        "Same as RecBole `MRR`, trec_eval `recip_rank` on the top-k list and ranx `mrr@k`.",
        "Voorhees, TREC-8 QA track 1999; " + _TREC,
    ),
    _acc(
        "map",
        "sum_{i<=k} h_i * precision_at_i / |R| (trec_eval / ranx convention)",
        "RecBole divides by min(|R|, k) (and rounds to 4 decimals by default), so its MAP is "
        "larger whenever |R| > k; Elliot divides by k; trec_eval `map_cut` and ranx by |R|; "
        "LensKit's average precision is NaN for an empty list where this harness scores 0.",
        _TREC,
    ),
    # ---------------------------------------------------------------- beyond accuracy
    MetricSpec(
        "coverage_at_{k}",
        "coverage@{k}",
        "beyond-accuracy",
        True,
        False,
        ("train",),
        "|union of all evaluated users' top-k, within C| / |C|, C = distinct items of train "
        "(catalog level, not averaged per user)",
        "Ge, Delgado-Battenfeld & Jannach, RecSys 2010",
        "RecBole `ItemCoverage` divides by all items (including never-trained ones); Elliot "
        "`ItemCoverage` is a count; MS recommenders `catalog_coverage` matches this one.",
        bounded=True,
    ),
    MetricSpec(
        "novelty_at_{k}",
        "novelty@{k}",
        "beyond-accuracy",
        True,
        True,
        ("train",),
        "mean over the top-k of -log2((pop(i)+1) / (n_train_users+1)), pop(i) = distinct train "
        "users of i, n_train_users = users with a train interaction; users with an empty list "
        "are left out of the mean",
        "Zhou et al., PNAS 2010 (self-information novelty)",
        "Elliot's EFD/EPC are rank- and relevance-discounted (Vargas & Castells 2011); MS "
        "Recommenders' `novelty` uses -log2(count(i)/N) with count(i) the item's train "
        "interactions and N all train interactions (no smoothing, interactions not users).",
    ),
    MetricSpec(
        "ild_at_{k}",
        "ild@{k}",
        "beyond-accuracy",
        True,
        True,
        ("genres",),
        "mean over pairs i<j of the top-k of 1 - Jaccard(genres_i, genres_j); items without "
        "genres are left out of the pairs, and lists with fewer than 2 items with genres are "
        "skipped (not counted as 0)",
        "Ziegler et al., WWW 2005 (intra-list diversity); Smyth & McClave, ICCBR 2001",
        "RecBole has no ILD; Elliot's SRecall is subtopic recall; LensKit and MS recommenders "
        "use cosine distances of feature vectors.",
        bounded=True,
    ),
    MetricSpec(
        "ild_emb_at_{k}",
        "ild_emb@{k}",
        "beyond-accuracy",
        True,
        True,
        ("item embeddings",),
        "1 - mean over pairs i<j of the top-k of cos(e_i, e_j), e = item text embeddings "
        "(metrics.item_embeddings: the bundled all-MiniLM-L6-v2 by default); items without "
        "text are left out of the pairs, lists with fewer than 2 such items are skipped; in "
        "[0, 2]",
        "Ziegler et al., WWW 2005; cosine distance of item vectors as in LensKit and MS "
        "recommenders",
        "LensKit and MS recommenders use cosine over feature/embedding vectors (the same form); "
        "RecBole and Elliot have no embedding ILD. Values depend on the encoder and the text "
        "template, which are logged as params.",
    ),
    MetricSpec(
        "gini_at_{k}",
        "gini@{k}",
        "beyond-accuracy",
        False,
        False,
        ("train",),
        "sum_j (2j-n-1) c_j / (n sum_j c_j) over the top-k exposure counts c of the items of C, "
        "zeros included, c ascending, n = |C|, over the evaluated users' lists (catalog level)",
        "Fleder & Hosanagar 2009; as implemented in RecBole `GiniIndex`",
        "RecBole uses n = all items; Elliot multiplies by 1/(n-1) instead of 1/n; LensKit "
        "offers ListGini and rank-weighted ExposureGini.",
        bounded=True,
    ),
    MetricSpec(
        "arp_at_{k}",
        "arp@{k}",
        "beyond-accuracy",
        False,
        True,
        ("train",),
        "mean over the (possibly shorter) top-k of pop(i), pop = distinct train users; users "
        "with an empty list are left out of the mean",
        "Abdollahpouri et al., FLAIRS 2019 (ARP)",
        "Elliot ARP identical; RecBole `AveragePopularity` counts interactions (equal on "
        "deduplicated train) and divides by k; DaisyRec sums popularity of hits only.",
    ),
    MetricSpec(
        "aplt_at_{k}",
        "aplt@{k}",
        "beyond-accuracy",
        True,
        True,
        ("train",),
        "share of the (possibly shorter) top-k list that lies in the long tail T = C minus the "
        "short head H (H = most popular items, ties by item id, whose interactions first reach "
        "80 % of train interactions); users with an empty list are left out of the mean",
        "Abdollahpouri, Burke & Mobasher, FLAIRS 2019 (APLT)",
        "Elliot APLT identical; EvaLLMasRec `calACLT` is a fraction over all slots; RecBole "
        "`TailPercentage` uses the bottom 10 % of items (see tail_percentage).",
        bounded=True,
    ),
    MetricSpec(
        "aclt_at_{k}",
        "aclt@{k}",
        "beyond-accuracy",
        True,
        True,
        ("train",),
        "number of long-tail items (T as for aplt) in the top-k list, averaged over users",
        "Abdollahpouri, Burke & Mobasher, FLAIRS 2019 (ACLT); as implemented in Elliot",
        "Elliot ACLT identical (a count); aplt is the same as a share.",
    ),
    MetricSpec(
        "tail_percentage_at_{k}",
        "tail_percentage@{k}",
        "beyond-accuracy",
        True,
        True,
        ("train",),
        "share of the (possibly shorter) top-k list in RecBole's tail: the max(int(0.1 |C|), 1) "
        "items of C with the fewest train interactions (ties by item index); users with an "
        "empty list are left out of the mean",
        "RecBole `TailPercentage` (tail_ratio=0.1); Zhu et al. 2020",
        "RecBole divides by k (its lists are never short); here by the list length.",
        bounded=True,
    ),
    MetricSpec(
        "entropy_at_{k}",
        "entropy@{k}",
        "beyond-accuracy",
        True,
        False,
        ("train",),
        "-sum_i p_i log2 p_i, p_i = share of the evaluated users' top-k exposures going to item "
        "i of C (catalog level)",
        "Shannon 1948; MS recommenders `distributional_coverage`",
        "RecBole `ShannonEntropy` uses the natural log and divides by the number of distinct "
        "recommended items; Elliot's uses natural log without division.",
    ),
    MetricSpec(
        "epc_at_{k}",
        "epc@{k}",
        "beyond-accuracy",
        True,
        True,
        ("test", "train"),
        "sum_{i<=k} h_i disc(i) (1 - pop(L_i)/n_train_users) / sum_{i<=k, L_i an item} disc(i), "
        "disc(i) = 1/log2(i+1), binary relevance; 0 for an empty list",
        "Vargas & Castells, RecSys 2011 (expected popularity complement); as implemented in "
        "Elliot `EPC`",
        "Elliot EPC identical with binary relevance (Elliot can also use graded relevance); "
        "novelty is the relevance-free self-information variant; RecBole has none.",
        bounded=True,
    ),
    MetricSpec(
        "serendipity_at_{k}",
        "serendipity@{k}",
        "beyond-accuracy",
        True,
        True,
        ("train", "seen"),
        "hits in the top-k that are not in the popularity baseline's top-k for the same user "
        "(every known item by pop desc, ties by item index, the user's seen items excluded; "
        "known items: the dataset's in bench run, every item id of the inputs in "
        "bench.evaluate, so zero-popularity items, last, matter only to a user who has seen "
        "all but fewer than k items of C), divided by k",
        "Ge, Delgado-Battenfeld & Jannach, RecSys 2010; Murakami et al. 2008",
        "Elliot has no serendipity; RecBole none; some papers divide by the number of hits "
        "instead of k or use a primitive recommender other than popularity.",
        bounded=True,
    ),
    # ---------------------------------------------------------------- fairness
    MetricSpec(
        "pop_reo_at_{k}",
        "pop_reo@{k}",
        "fairness",
        False,
        False,
        ("train",),
        "std/mean over groups g in {H, T} of (hits in g at k) / (test items in g), summed over "
        "evaluated users (population std); lower = more equal opportunity",
        "Zhu, Wang & Caverlee, SIGIR 2020 (RSP/REO); as implemented in Elliot `PopREO`",
        "Elliot PopREO identical in intent (relevant unseen items as denominator).",
    ),
    MetricSpec(
        "pop_rsp_at_{k}",
        "pop_rsp@{k}",
        "fairness",
        False,
        False,
        ("train", "seen"),
        "std/mean over groups g in {H, T} of (recommended items in g at k) / (candidate items in "
        "g, i.e. items of g not seen by the user), summed over evaluated users (population "
        "std)",
        "Zhu, Wang & Caverlee, SIGIR 2020; as implemented in Elliot `PopRSP`",
        "Elliot PopRSP identical in intent.",
    ),
    MetricSpec(
        "long_tail_hit_share_at_{k}",
        "long_tail_hit_share@{k}",
        "fairness",
        True,
        False,
        ("train",),
        "hits at k on long-tail items T / all hits at k, over all evaluated users (catalog "
        "level; left out when there is no hit)",
        "this harness",
        "No direct peer equivalent.",
        bounded=True,
    ),
    # ---------------------------------------------------------------- efficiency
    *[
        MetricSpec(key, disp, "efficiency", hib, False, ("run",), d, "this harness", "")
        for key, disp, hib, d in [
            ("fit_seconds", "fit (s)", False, "wall-clock seconds of fit()"),
            (
                "latency_p50_ms",
                "latency p50 (ms)",
                False,
                "median milliseconds to recommend for one user per request, after warm-up",
            ),
            ("latency_p95_ms", "latency p95 (ms)", False, "95th percentile of the same"),
            ("latency_p99_ms", "latency p99 (ms)", False, "99th percentile of the same"),
            (
                "throughput_users_per_s",
                "throughput (users/s)",
                True,
                "users scored per second in batches",
            ),
            (
                "peak_memory_mb",
                "peak memory (MB)",
                False,
                "peak GPU memory on a GPU, process RSS on CPU",
            ),
            ("n_parameters", "parameters", False, "number of learned parameters"),
        ]
    ],
    # ---------------------------------------------------------------- llm
    *[
        MetricSpec(key, disp, "llm", hib, False, ("run",), d, "this harness", "")
        for key, disp, hib, d in [
            ("llm_prompt_tokens", "prompt tokens", False, "prompt tokens sent, in total"),
            (
                "llm_completion_tokens",
                "completion tokens",
                False,
                "completion tokens received, in total",
            ),
            (
                "llm_parse_failure_rate",
                "parse failure rate",
                False,
                "share of responses that could not be parsed into a list",
            ),
            (
                "llm_out_of_candidates_rate",
                "out-of-candidates rate",
                False,
                "share of returned items that are not among the candidates (hallucinated)",
            ),
            (
                "llm_duplicate_rate",
                "duplicate rate",
                False,
                "share of returned items that repeat an earlier item of the same list",
            ),
            (
                "llm_cache_hit_rate",
                "cache hit rate",
                True,
                "share of requests answered from the response cache",
            ),
        ]
    ],
    # ---------------------------------------------------------------- data / counts
    *[
        MetricSpec(key, key, "data", True, False, ("test",), d, "this harness", "")
        for key, d in [
            ("n_users_evaluated", "users with at least one test item (their metrics are averaged)"),
            (
                "n_users",
                "users of a group: n_users/<attribute>/<group> (fairness groups of the evaluated "
                "users) and n_users/segment/warm|cold (test users with and without fit data)",
            ),
            ("n_users_skipped", "users of the split without a test item (not evaluated)"),
            (
                "n_users_without_recommendations",
                "evaluated users without any recommendation (they score 0, never dropped)",
            ),
            (
                "n_users_without_test",
                "users with recommendations but no test item (bench.evaluate: ignored)",
            ),
            (
                "n_duplicates_dropped",
                "duplicate (user, item) rows dropped from the test set and the recommendations",
            ),
        ]
    ],
]

CATALOG: dict[str, MetricSpec] = {s.name: s for s in _SPECS}

_KEY = re.compile(r"^(?P<name>[a-z0-9_]+?)(?:_at_(?P<k>\d+))?(?:/(?P<suffix>.+))?$")


def _sanitize(name: str) -> str:
    return name.strip().replace("@", "_at_").lower()


def parse_key(key: str) -> tuple[MetricSpec, int | None, str]:
    """``"ndcg_at_10/gender/F" -> (spec of ndcg, 10, "gender/F")``.

    Accepts the display form too (``ndcg@10``). A leading prefix that is not a metric name
    (``first_stage/ndcg_at_10``) is skipped, so reference-ranking keys parse. Raises the
    standard unknown-metric error otherwise.
    """
    parts = _sanitize(key).split("/")
    original = key.split("/")
    for start in range(len(parts)):
        m = _KEY.match(parts[start])
        if not m or m["name"] not in CATALOG:
            continue
        spec = CATALOG[m["name"]]
        if spec.has_k != (m["k"] is not None):
            continue
        k = int(m["k"]) if m["k"] is not None else None
        return spec, k, "/".join(original[start + 1 :])
    raise unknown("metric", key, known_metric_names())


def display(key: str) -> str:
    """``ndcg_at_10/gender/F -> ndcg@10/gender/F``; efficiency keys get a readable label."""
    spec, k, suffix = parse_key(key)
    head = key.split("/")[: len(key.split("/")) - (len(suffix.split("/")) if suffix else 0)]
    prefix = "/".join(head[:-1])
    out = spec.display(k) + (f"/{suffix}" if suffix else "")
    return f"{prefix}/{out}" if prefix else out


#: how papers write each metric (tables of ``bench report``): nDCG@10, Recall@10, ...
#: the headline keys: the leaderboard's ranking metric first, then its default columns; the
#: MLflow UI's ``bench-leaderboard`` view shows these (``bench.tracking.leaderboard_view``)
HEADLINE = ("ndcg_at_10", "recall_at_10", "hit_rate_at_10", "mrr_at_10", "coverage_at_10",
            "novelty_at_10")

PAPER_NAMES = {
    "precision": "P", "recall": "Recall", "hit_rate": "HR", "ndcg": "nDCG", "mrr": "MRR",
    "map": "MAP", "coverage": "Cov.", "novelty": "Nov.", "ild": "ILD", "ild_emb": "ILD-emb",
    "gini": "Gini", "arp": "ARP", "aplt": "APLT", "aclt": "ACLT", "tail_percentage": "Tail%",
    "entropy": "Entropy", "epc": "EPC", "serendipity": "Seren.", "pop_reo": "PopREO",
    "pop_rsp": "PopRSP", "long_tail_hit_share": "LT hits", "latency_p50_ms": "p50 (ms)",
    "latency_p95_ms": "p95 (ms)", "latency_p99_ms": "p99 (ms)", "fit_seconds": "Fit (s)",
    "throughput_users_per_s": "Users/s", "peak_memory_mb": "Mem. (MB)",
    "n_parameters": "Params",
}  # fmt: skip


def paper_display(key: str) -> str:
    """The paper form of a key (``ndcg_at_10`` -> ``nDCG@10``); ``display`` where there is
    none (group breakdowns keep their suffix: ``nDCG@10/gender/gap``)."""
    spec, k, suffix = parse_key(key)
    parts = key.split("/")
    prefixed = len(parts) - (len(suffix.split("/")) if suffix else 0) > 1  # first_stage/...
    if spec.name not in PAPER_NAMES or prefixed:
        return display(key)
    head = PAPER_NAMES[spec.name] + (f"@{k}" if spec.has_k else "")
    return head + (f"/{suffix}" if suffix else "")


def higher_is_better(key: str) -> bool:
    """Direction of a key; a group ``gap`` is always lower-is-better."""
    spec, _, suffix = parse_key(key)
    if suffix.endswith("/gap") or suffix == "gap":
        return False
    return spec.higher_is_better


def known_metric_names() -> list[str]:
    """Every metric name users may type: ``ndcg@k`` style for cut-off metrics, keys otherwise."""
    return sorted(s.display_template.replace("{k}", "k") if s.has_k else s.name for s in _SPECS)


def resolve_metric(name: str) -> str:
    """The canonical key of what a user typed (``ndcg@10``, ``NDCG_at_10``, ``ndcg@10/gender/F``).

    Raises ``ConfigError`` (one line, did-you-mean, the list of metrics) for an unknown name or a
    cut-off metric given without ``@k``.
    """
    parts = _sanitize(name).split("/")
    m = _KEY.match(parts[0])
    spec = CATALOG.get(m["name"]) if m else None
    if spec is None or m is None:
        raise unknown("metric", name, known_metric_names())
    if spec.has_k != (m["k"] is not None):
        want = f"'{spec.name}@<k>', e.g. '{spec.name}@10'" if spec.has_k else f"'{spec.name}'"
        raise ConfigError(f"metric '{name}' is written {want}")
    k = int(m["k"]) if m["k"] is not None else None
    if k is not None and k < 1:
        raise unknown("metric", name, known_metric_names())
    suffix = "/".join(name.strip().split("/")[1:])
    return spec.key(k) + (f"/{suffix}" if suffix else "")


def specs(group: str | None = None) -> list[MetricSpec]:
    """The catalog in its documented order, optionally one group."""
    return [s for s in _SPECS if group is None or s.group == group]


def keys_for(names: list[str], ks: tuple[int, ...] | list[int]) -> list[str]:
    """Expanded keys (``ndcg`` x ks) for metric names of the catalog."""
    out: list[str] = []
    for n in names:
        spec = CATALOG[n]
        out.extend(spec.key(k) for k in ks) if spec.has_k else out.append(spec.key())
    return out
