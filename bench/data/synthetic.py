"""A synthetic power-law dataset, deterministic from its seed (vectorised numpy + polars).

Item popularity follows a Zipf law ``p(rank r) ~ r^-zipf`` over a seeded permutation of the item
ids; user activity follows a Zipf law with ``user_zipf`` and every user gets at least
``min_per_user`` interactions. (user, item) pairs are unique. Ratings 1-5 depend on a latent item
quality plus noise; timestamps are uniform over ``span_days`` from ``start``. Items get a title,
a year and 1-3 MovieLens genres; users a gender, an age bucket (ML-1M codes) and an occupation.
Rows come ordered by user, then item index (not by time; splits sort by time themselves).
ML-20M scale (138,493 x 26,744 x 20M) takes well under a minute on 2 cores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from bench.data.contract import RawDataset
from bench.data.formats.movielens import ML100K_GENRES

GENRES = ML100K_GENRES[1:]
AGES = np.array([1, 18, 25, 35, 45, 50, 56])
AGE_P = np.array([0.04, 0.18, 0.35, 0.2, 0.09, 0.08, 0.06])
OCCUPATIONS = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
    "retired", "salesman", "scientist", "student", "technician", "writer",
)  # fmt: skip


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and shape of a synthetic dataset; equal configs give identical frames."""

    n_users: int = 1000
    n_items: int = 500
    n_interactions: int = 20000
    zipf: float = 1.0  # item popularity exponent
    user_zipf: float = 0.8  # user activity exponent
    min_per_user: int = 1
    seed: int = 0
    start: int = 946684800  # 2000-01-01T00:00:00Z
    span_days: int = 3650
    relevance_threshold: float | None = 4.0
    #: share of users who arrive late: all their interactions fall in the last 5 % of the
    #: span, so a temporal split makes them cold (no train history); 0 draws nothing extra
    late_user_fraction: float = 0.0

    def validate(self) -> SyntheticConfig:
        for k in ("n_users", "n_items", "n_interactions"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"synthetic {k} must be >= 1, got {getattr(self, k)}")
        if self.n_interactions > self.n_users * self.n_items:
            raise ValueError(
                f"synthetic n_interactions={self.n_interactions:,} exceeds n_users x n_items = "
                f"{self.n_users * self.n_items:,} distinct pairs; lower it or add users/items"
            )
        if self.min_per_user * self.n_users > self.n_interactions:
            raise ValueError(
                f"synthetic min_per_user={self.min_per_user} x n_users={self.n_users:,} exceeds "
                f"n_interactions={self.n_interactions:,}; lower min_per_user"
            )
        if not 0.0 <= self.late_user_fraction <= 1.0:
            raise ValueError(
                f"synthetic late_user_fraction must be in [0, 1], got {self.late_user_fraction}"
            )
        if self.zipf < 0 or self.user_zipf < 0 or self.span_days < 1:
            raise ValueError("synthetic zipf and user_zipf must be >= 0 and span_days >= 1")
        return self


def zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Probabilities ``~ rank^-exponent`` assigned to a random permutation of ``n`` slots."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -float(exponent)
    w = w[rng.permutation(n)]
    return w / w.sum()


class PowerLaw:
    """Continuous power law on ranks ``[1, n+1)`` (exponent ``a``), discretised: exact rank
    probabilities and an O(1) inverse-CDF sampler; ``perm[rank]`` is the item of a rank."""

    def __init__(self, n: int, a: float, rng: np.random.Generator) -> None:
        self.n, self.a = n, float(a)
        self.perm = rng.permutation(n).astype(np.int64)
        edges = self._cdf(np.arange(1, n + 2, dtype=np.float64))
        p_rank = np.diff(edges)
        self.p = np.empty(n)
        self.p[self.perm] = p_rank / p_rank.sum()  # per item index

    def _cdf(self, x: np.ndarray) -> np.ndarray:
        top = self.n + 1.0
        if abs(self.a - 1.0) < 1e-12:
            return np.log(x) / np.log(top)
        b = 1.0 - self.a
        return (x**b - 1.0) / (top**b - 1.0)

    def draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        u = rng.random(size)
        top = self.n + 1.0
        if abs(self.a - 1.0) < 1e-12:
            x = top**u
        else:
            b = 1.0 - self.a
            x = (1.0 + u * (top**b - 1.0)) ** (1.0 / b)
        rank = np.clip(np.floor(x).astype(np.int64) - 1, 0, self.n - 1)
        return self.perm[rank]

    def draws_for_distinct(self, target: np.ndarray) -> np.ndarray:
        """Draws needed to expect ``target`` distinct items (inf where out of reach)."""
        grid = np.geomspace(1.0, 64.0 * self.n, 256)
        chunks = [np.sum(-np.expm1(-g * self.p)) for g in grid]
        distinct = np.maximum.accumulate(np.asarray(chunks))
        m = np.interp(target, distinct, grid, right=np.inf)
        # beyond 3 draws per wanted item, Gumbel top-k per user is cheaper
        return np.where((target > 0.9 * self.n) | (m > 3 * target), np.inf, np.ceil(m))


def _user_counts(cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Interactions per user: the minimum plus a multinomial share, capped at n_items."""
    p = zipf_weights(cfg.n_users, cfg.user_zipf, rng)
    extra = cfg.n_interactions - cfg.min_per_user * cfg.n_users
    counts = cfg.min_per_user + rng.multinomial(extra, p)
    for _ in range(100):  # move overflow beyond n_items to users with room
        over = np.maximum(counts - cfg.n_items, 0)
        if not over.any():
            break
        counts -= over
        room = cfg.n_items - counts
        q = p * (room > 0)
        counts += np.minimum(rng.multinomial(int(over.sum()), q / q.sum()), room)
    deficit = cfg.n_interactions - int(counts.sum())
    if deficit:  # rare: fill deterministically, users in index order
        room = cfg.n_items - counts
        take = np.minimum(
            room, np.maximum(deficit - np.concatenate([[0], np.cumsum(room)[:-1]]), 0)
        )
        counts += take
    return counts


def _pairs(cfg: SyntheticConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unique (user, item) index pairs with the per-user counts and power-law item popularity.

    Each user draws about as many i.i.d. items as needed to expect its count of distinct ones
    (one vectorised draw and one sort for everybody), keeps a random subset of the right size,
    tops up the few short users in small rounds, and the densest users (or those still short)
    take their missing items by Gumbel top-k without replacement.
    """
    counts = _user_counts(cfg, rng)
    law = PowerLaw(cfg.n_items, cfg.zipf, rng)
    m = law.draws_for_distinct(counts * 1.01 + 2.0)
    sparse = np.isfinite(m)
    users = np.repeat(np.arange(cfg.n_users, dtype=np.int64), np.where(sparse, m, 0).astype(int))
    code = _unique(users * cfg.n_items + law.draw(len(users), rng))
    code = _trim(code, counts, cfg.n_items, rng)
    for _ in range(4):
        short = np.flatnonzero(sparse & (_per_user(code, cfg) < counts))
        if len(short) == 0:
            break
        need = counts[short] - _per_user(code, cfg)[short]
        extra = np.repeat(short, 3 * need + 4)
        fresh = extra * cfg.n_items + law.draw(len(extra), rng)
        code = _unique(np.concatenate([code, fresh]), kind="stable")
        code = _trim(code, counts, cfg.n_items, rng)
    code = _fill_gumbel(code, counts, law, cfg, rng)
    return code // cfg.n_items, code % cfg.n_items


def _unique(a: np.ndarray, kind: str = "quicksort") -> np.ndarray:
    """Sorted distinct values (sort-based; numpy 2's hash-based ``np.unique`` is slower here).

    ``kind="stable"`` (timsort) merges a long sorted prefix with a short tail in linear time.
    """
    s = np.sort(a, kind=kind)  # type: ignore[call-overload]
    keep = np.empty(len(s), dtype=bool)
    keep[:1] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def _per_user(code: np.ndarray, cfg: SyntheticConfig) -> np.ndarray:
    return np.bincount(code // cfg.n_items, minlength=cfg.n_users)


def _trim(
    code: np.ndarray, counts: np.ndarray, n_items: int, rng: np.random.Generator
) -> np.ndarray:
    """Keep a uniformly random ``counts[u]`` of each user's distinct items (sorted codes in/out)."""
    user = code // n_items
    have = np.bincount(user, minlength=len(counts))
    over = np.flatnonzero(have > counts)
    if len(over) == 0:
        return code
    rows = np.flatnonzero(np.isin(user, over))
    order = rows[np.argsort(user[rows] + rng.random(len(rows)) * 0.5, kind="stable")]
    start = np.concatenate([[0], np.cumsum(have[over])[:-1]])
    rank = np.arange(len(order)) - np.repeat(start, have[over])
    drop = order[rank >= np.repeat(counts[over], have[over])]
    keep = np.ones(len(code), dtype=bool)
    keep[drop] = False
    return code[keep]


def _fill_gumbel(
    code: np.ndarray,
    counts: np.ndarray,
    law: PowerLaw,
    cfg: SyntheticConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """Users still short (the densest ones) draw their missing items without replacement."""
    have = _per_user(code, cfg)
    short = np.flatnonzero(have < counts)
    if len(short) == 0:
        return code
    logp = np.log(law.p)
    bounds = np.searchsorted(code, np.stack([short, short + 1]) * cfg.n_items)
    new = []
    for u, lo, hi in zip(short, bounds[0], bounds[1], strict=True):
        keys = logp - np.log(-np.log(rng.random(cfg.n_items)))
        keys[code[lo:hi] % cfg.n_items] = -np.inf
        k = int(counts[u] - have[u])
        new.append(u * cfg.n_items + np.argpartition(-keys, k - 1)[:k])
    return _unique(np.concatenate([code, *new]), kind="stable")


def generate(cfg: SyntheticConfig | None = None, name: str = "synthetic") -> RawDataset:
    """The synthetic dataset of ``cfg`` (contract dtypes; ids ``u1..``/``i1..``)."""
    cfg = (cfg or SyntheticConfig()).validate()
    rng = np.random.default_rng(cfg.seed)
    users, items = _pairs(cfg, rng)
    quality = rng.normal(3.6, 0.6, cfg.n_items)
    ratings = np.clip(np.rint(quality[items] + rng.normal(0.0, 0.9, len(items))), 1, 5)
    ts = cfg.start + rng.integers(0, cfg.span_days * 86400, len(items), dtype=np.int64)
    if cfg.late_user_fraction > 0:  # a stream of its own: the other draws stay as they are
        late_rng = np.random.default_rng([cfg.seed, 1])
        late = late_rng.random(cfg.n_users) < cfg.late_user_fraction
        span = cfg.span_days * 86400
        shifted = cfg.start + int(0.95 * span) + late_rng.integers(0, span - int(0.95 * span),
                                                                     len(items))
        ts = np.where(late[users], shifted, ts)
    inter = pl.DataFrame({"u": users, "i": items, "timestamp": ts, "rating": ratings}).select(
        (pl.lit("u") + (pl.col("u") + 1).cast(pl.Utf8)).alias("user_id"),
        (pl.lit("i") + (pl.col("i") + 1).cast(pl.Utf8)).alias("item_id"),
        pl.col("timestamp").cast(pl.Int64),
        pl.col("rating").cast(pl.Float64),
    )
    return RawDataset(
        name=name,
        interactions=inter,
        items=_items(cfg, rng),
        users=_users(cfg, rng),
        source_files={},
        relevance_threshold_default=cfg.relevance_threshold,
    )


def _items(cfg: SyntheticConfig, rng: np.random.Generator) -> pl.DataFrame:
    n, g = cfg.n_items, len(GENRES)
    k = rng.integers(1, 4, n)  # 1-3 genres per item
    keys = rng.random((n, g)) * rng.dirichlet(np.ones(g))  # a few genres are more common
    ranks = np.argsort(np.argsort(-keys, axis=1), axis=1)
    item_idx, genre_idx = np.nonzero(ranks < k[:, None])
    genres = (
        pl.DataFrame({"idx": item_idx, "genre": np.array(GENRES)[genre_idx]})
        .group_by("idx", maintain_order=True)
        .agg(pl.col("genre").alias("genres"))
    )
    ids = pl.Series("idx", np.arange(n))
    base = pl.DataFrame({"idx": ids, "year": rng.integers(1950, 2021, n).astype(np.int64)})
    return base.join(genres, on="idx", how="left", maintain_order="left").select(
        (pl.lit("i") + (pl.col("idx") + 1).cast(pl.Utf8)).alias("item_id"),
        (pl.lit("Item ") + (pl.col("idx") + 1).cast(pl.Utf8)).alias("title"),
        pl.col("year").cast(pl.Int64),
        pl.col("genres").cast(pl.List(pl.Utf8)),
    )


def _users(cfg: SyntheticConfig, rng: np.random.Generator) -> pl.DataFrame:
    n = cfg.n_users
    return pl.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(1, n + 1)],
            "gender": np.where(rng.random(n) < 0.71, "M", "F"),
            "age": rng.choice(AGES, n, p=AGE_P).astype(np.int64),
            "occupation": np.array(OCCUPATIONS)[rng.integers(0, len(OCCUPATIONS), n)],
        },
        schema={"user_id": pl.Utf8, "gender": pl.Utf8, "age": pl.Int64, "occupation": pl.Utf8},
    )


def config_from(params: dict) -> SyntheticConfig:
    """A ``SyntheticConfig`` from a mapping; unknown keys are an error naming the valid ones."""
    known = set(asdict(SyntheticConfig()))
    unknown = sorted(set(params) - known)
    if unknown:
        from bench.errors import unknown as unknown_error

        raise unknown_error("synthetic parameter", unknown[0], known, where="dataset.params")
    return SyntheticConfig(**params)
