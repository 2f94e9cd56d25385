"""Fairness kernels: user-group breakdowns and item-side popularity-group parity.

User side (contract): for each attribute ``a`` and group ``g``, the mean of a per-user metric
over the group's evaluated users, logged as ``<key>/<a>/<g>``, and ``<key>/<a>/gap`` = max minus
min over groups. Users whose attribute is unknown (None, NaN, empty) are left out of that
attribute. ``activity`` groups users by tertiles of their train interactions.

Item side: PopREO and PopRSP over {H, T} (Zhu, Wang & Caverlee, SIGIR 2020; Elliot).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from bench.metrics.table import PerUser

_UNSAFE = re.compile(r"[^\w.\- ]")
ACTIVITY_GROUPS = ("cold", "warm", "hot")


def sanitize_label(value: object) -> str | None:
    """An MLflow-safe group label (``[\\w.\\- ]``), or None for an unknown value.

    Integral floats lose their ``.0`` (age 25.0 -> "25"); every other unsafe character
    (including ``/``) becomes ``_``. Labels that collide after sanitizing are one group.
    """
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        if float(value).is_integer():
            value = int(value)
    text = str(value).strip()
    if not text:
        return None
    return _UNSAFE.sub("_", text)


def group_codes(labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer group code per entry (-1 = unknown) and the sorted group names.

    The distinct values are numbered by one hash pass (``pandas.factorize``: None and NaN are
    unknown); each distinct value is sanitized once (no regex per user), then the numbers
    are remapped. Unhashable labels (lists, ...) are grouped by their text.
    """
    import pandas as pd

    values = np.asarray(labels, dtype=object)
    try:
        raw, distinct = pd.factorize(values, use_na_sentinel=True)
    except TypeError:  # unhashable labels
        values = np.array([v if _is_hashable(v) else str(v) for v in values], dtype=object)
        raw, distinct = pd.factorize(values, use_na_sentinel=True)
    clean = [sanitize_label(v) for v in distinct.tolist()]
    names = sorted({c for c in clean if c is not None})
    pos = {n: i for i, n in enumerate(names)}
    # one extra cell for pandas' -1 (None/NaN): unknown
    remap = np.array([pos[c] if c is not None else -1 for c in clean] + [-1], dtype=np.int64)
    return remap[raw], names


def _is_hashable(v: object) -> bool:
    return not isinstance(v, list | dict | set | np.ndarray)


def activity_codes(counts: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """cold/warm/hot by tertiles of train interaction counts of the evaluated users.

    Thresholds t1, t2 = the 1/3 and 2/3 quantiles (numpy ``linear`` method) of the counts;
    cold: count <= t1, warm: t1 < count <= t2, hot: count > t2. Users tied at a boundary all go
    to the lower group, so equal activity never lands in two groups (groups may be unequal or
    empty, e.g. when every user has the same count: all cold).
    """
    if len(counts) == 0:
        return np.zeros(0, dtype=np.int64), list(ACTIVITY_GROUPS)
    t1, t2 = np.quantile(counts.astype(np.float64), [1 / 3, 2 / 3])
    idx = (counts > t1).astype(np.int64) + (counts > t2).astype(np.int64)
    return idx, list(ACTIVITY_GROUPS)


#: groups with fewer evaluated users are left out of the gap (``metrics.fairness``)
MIN_GROUP_SIZE = 5


def breakdown(
    table: PerUser,
    keys: Sequence[str],
    attrs: Mapping[str, np.ndarray | tuple[np.ndarray, list[str]]],
    min_group_size: int = 1,
) -> dict[str, float]:
    """``<key>/<attr>/<group>``, ``<key>/<attr>/gap`` and ``n_users/<attr>/<group>`` for the
    rows ``keys`` of ``table`` and every attribute.

    ``attrs`` maps an attribute to labels per user, or to ready ``(codes, names)``. A group
    named ``gap`` would shadow the gap key; it is renamed ``gap_``. A group's value is the
    mean of the metric over its users (NaN values ignored; summed in user order); ``gap`` =
    max - min over the groups with a value and at least ``min_group_size`` users (a group of
    one user would otherwise set the gap); smaller groups keep their own keys.
    """
    out: dict[str, float] = {}
    if not attrs or not keys:
        return out
    from bench.metrics import _kernels

    rows = np.array([table.keys.index(k) for k in keys], dtype=np.int64)
    for attr, labels in attrs.items():
        codes, names = labels if isinstance(labels, tuple) else group_codes(labels)
        names = [n if n != "gap" else "gap_" for n in names]
        safe_attr = sanitize_label(attr) or "attr"
        codes = codes.astype(np.int64, copy=False)
        sums, counts = _kernels.group_sums(table.values, rows, codes, len(names))
        sizes = np.bincount(codes[codes >= 0], minlength=len(names))
        for g, size in enumerate(sizes.tolist()):
            if size:
                out[f"n_users/{safe_attr}/{names[g]}"] = float(size)
        for j, key in enumerate(keys):
            means = {
                names[g]: float(sums[j, g] / counts[j, g])
                for g in range(len(names))
                if counts[j, g] > 0
            }
            large = [float(sums[j, g] / counts[j, g]) for g in range(len(names))
                     if counts[j, g] > 0 and sizes[g] >= min_group_size]
            if large:
                means["gap"] = max(large) - min(large)
            for name, v in means.items():
                out[f"{key}/{safe_attr}/{name}"] = v
    return out


def std_over_mean(rates: list[float]) -> float:
    """Population std / mean of group rates (Elliot PopREO/PopRSP); NaN if undefined."""
    r = np.asarray(rates, dtype=np.float64)
    if len(r) < 2 or r.mean() == 0:
        return float("nan")
    return float(r.std() / r.mean())


def pop_reo(hits_in: dict[str, float], relevant_in: dict[str, float]) -> float:
    """PopREO = std/mean over g in {H, T} of hits in g / test items in g (Zhu et al. 2020).

    Groups without test items are left out (then fewer than 2 groups -> NaN, skipped).
    """
    rates = [hits_in[g] / relevant_in[g] for g in hits_in if relevant_in[g] > 0]
    return std_over_mean(rates)


def pop_rsp(rec_in: dict[str, float], candidates_in: dict[str, float]) -> float:
    """PopRSP = std/mean over g in {H, T} of recommended in g / unseen candidates in g."""
    rates = [rec_in[g] / candidates_in[g] for g in rec_in if candidates_in[g] > 0]
    return std_over_mean(rates)
