"""Generate the metric reference page from the catalog: ``python -m bench.metrics.docs``.

The committed ``docs/metrics.md`` is this module's output; a unit test checks it is current.
"""

from __future__ import annotations

import sys

from bench.metrics import api, engine
from bench.metrics.catalog import GROUPS, METRIC_DEFINITIONS_VERSION, specs

_INTRO = f"""# Metrics

Generated from `bench/metrics/catalog.py` by `python -m bench.metrics.docs > docs/metrics.md`;
do not edit by hand. Metric definitions version **{METRIC_DEFINITIONS_VERSION}** (run tag
`bench.metric_definitions`).

Keys are MLflow-safe: `<name>_at_<k>` (display `<name>@<k>`), group breakdowns
`<key>/<attribute>/<group>` and `<key>/<attribute>/gap` (max minus min over groups, lower is
better). Notation: for an evaluated user, `R` = test items, `L` = the ranked list after
exclusions, `h_i` = 1 if `L[i]` is in `R`; `pop(i)` = distinct train users of item i; `C` =
distinct train items; `H` = short head (most popular items, ties by item id, first reaching
80 % of train interactions, an interaction being a distinct (user, item) pair of train); `T` =
C minus H.

Per-user metrics are averaged over the evaluated users (users with test items) where they are
defined: accuracy metrics, `aclt`, `epc` and `serendipity` score an empty list 0; the means
over a list (`novelty`, `arp`, `aplt`, `tail_percentage`) are over its real items (a list
shorter than k is not padded) and leave out users whose list is empty; `ild` and `ild_emb`
leave out lists with fewer than 2 items that have genres (embeddings). Catalog-level metrics
(`coverage`, `gini`, `entropy`, `pop_reo`, `pop_rsp`, `long_tail_hit_share`) accumulate over
the evaluated users' lists and are never averaged per user.
"""

_GROUP_TITLES = {
    "accuracy": "Accuracy",
    "beyond-accuracy": "Beyond accuracy",
    "fairness": "Fairness",
    "efficiency": "Efficiency",
    "llm": "LLM recommenders",
    "data": "Counts",
}


def _policies() -> str:
    eng = (engine.__doc__ or "").strip().split("\n\n", 1)[1]
    ap = (
        (api.__doc__ or "")
        .strip()
        .split("\n\n", 1)[1]
        .replace("``MAX_GROUPS``", str(api.MAX_GROUPS))
    )
    return (
        "## Who is evaluated (engine)\n\n"
        + eng
        + "\n\n## `bench.evaluate` input policies\n\n"
        + ap
        + "\n\n## User-side fairness\n\nFor every attribute of `users` (MovieLens: gender, "
        "age bucket, occupation) and `activity` (tertiles of the evaluated users' numbers of "
        "distinct train items: cold <= t1 < warm <= t2 < hot, t1/t2 the 1/3 and 2/3 quantiles "
        "over the evaluated users, users tied at a boundary go to the lower group), the mean "
        "of `ndcg_at_k` and `recall_at_k` over each group's users is logged as "
        "`ndcg_at_k/<attribute>/<group>` plus the `gap`. Users with an unknown attribute "
        "(null, NaN, empty) are left out of that attribute. Group "
        "labels are sanitized to `[\\w.\\- ]` (other characters become `_`; 25.0 becomes "
        "`25`; ages, integer or whole floats, are bucketed as above).\n"
    )


def render() -> str:
    """The whole page as Markdown."""
    out = [_INTRO]
    for group in GROUPS:
        out.append(f"## {_GROUP_TITLES[group]}\n")
        out.append("| key | display | direction | per user | needs | definition |")
        out.append("|---|---|---|---|---|---|")
        notes = []
        for s in specs(group):
            key = s.template.replace("{k}", "k")
            disp = s.display_template.replace("{k}", "k")
            direction = "higher is better" if s.higher_is_better else "lower is better"
            out.append(
                f"| `{key}` | {disp} | {direction} | {'yes' if s.per_user else 'no'} | "
                f"{', '.join(s.needs)} | {s.definition.replace('|', chr(92) + '|')} |"
            )
            if s.differences:
                notes.append(f"- `{key}` ({s.citation}). Peers: {s.differences}")
        out.append("")
        if notes:
            out.append("Citations and how peers (RecBole, Elliot, LensKit, ...) differ:\n")
            out.extend(notes)
            out.append("")
    out.append(_policies())
    return "\n".join(out)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
