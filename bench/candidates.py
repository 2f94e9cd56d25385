"""Sampled candidate sets (``eval.candidates=sampled``), frozen per split and shared by every
model.

Each user with relevant items in a part (``test``, or ``valid`` for the validation metrics)
gets its relevant items plus ``n`` negatives: items it has no interaction with in that part's
history (train+valid for test, train for valid) and that are not relevant, drawn without
replacement ``uniform``-ly over the catalog or with probability proportional to train
popularity (distinct train users; items nobody has in train are never drawn). A user with
fewer eligible items than ``n`` gets all of them. The draw is seeded by the split (its sha256),
the part, ``n`` and the sampler, so it is the same for every model, seed and machine; it is
written once to ``<split folder>/candidates/<part>-sampled-<n>-<sampler>.parquet``
(``user_id``, ``item_id``) with a ``.sha256`` beside it, and later runs read and verify it.

Models never see other items: the runner turns every score outside the set into NaN before the
harness's ``topk``. Sampled metrics are not comparable to full ranking (Krichene & Rendle,
"On Sampled Metrics for Item Recommendation", KDD 2020).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from bench.errors import IntegrityError
from bench.files import write_atomically
from bench.hashing import sha256_file

SAMPLERS = ("uniform", "popularity")
#: users per vectorised draw
_BATCH = 4096


def _forbidden_keys(rows: sp.csr_matrix, n_items: int) -> np.ndarray:
    """Sorted ``row * n_items + item`` of every stored entry."""
    coo = rows.tocoo()
    return np.sort(coo.row.astype(np.int64) * n_items + coo.col.astype(np.int64))


def _draw_batch(
    rng: np.random.Generator,
    forbidden: sp.csr_matrix,
    n: int,
    weights: np.ndarray | None,
) -> list[np.ndarray]:
    """Per row of ``forbidden``: ``n`` distinct items outside the row (and of positive weight),
    in draw order, or every such item when there are fewer."""
    n_rows, n_items = forbidden.shape
    eligible = np.ones(n_items, bool) if weights is None else weights > 0
    taken = np.asarray(forbidden[:, eligible].sum(axis=1)).ravel().astype(np.int64)
    room = int(eligible.sum()) - taken
    out: list[np.ndarray] = [np.zeros(0, np.int64) for _ in range(n_rows)]
    for r in np.flatnonzero((room > 0) & (room <= n)).tolist():  # small catalogues: take all
        allowed = eligible.copy()
        allowed[forbidden[r].indices] = False
        out[r] = np.flatnonzero(allowed).astype(np.int64)
    todo = np.flatnonzero(room > n).astype(np.int64)
    keys = _forbidden_keys(forbidden, n_items)
    p = None if weights is None else weights / weights.sum()
    while len(todo):
        m = 2 * n + 8
        if p is None:
            draws = rng.integers(0, n_items, size=(len(todo), m))
        else:
            draws = rng.choice(n_items, size=(len(todo), m), p=p)
        flat = todo.repeat(m) * n_items + draws.ravel()  # row-major: rows in order
        if len(keys):
            pos = np.minimum(np.searchsorted(keys, flat), len(keys) - 1)
            flat = flat[keys[pos] != flat]
        _, first = np.unique(flat, return_index=True)
        flat = flat[np.sort(first)]  # first draw of each item, rows and draw order kept
        rows = flat // n_items
        start = np.searchsorted(rows, todo)
        have = np.array([len(out[r]) for r in todo.tolist()], dtype=np.int64)
        need = n - have
        rank = np.arange(len(flat)) - start[np.searchsorted(todo, rows)]
        flat = flat[rank < need[np.searchsorted(todo, rows)]]
        rows = flat // n_items
        bounds = np.searchsorted(rows, np.append(todo, n_rows))
        for j, r in enumerate(todo.tolist()):
            new = flat[bounds[j] : bounds[j + 1]] % n_items
            out[r] = np.concatenate([out[r], new]) if len(out[r]) else new
        short = np.array([len(out[r]) < n for r in todo.tolist()], dtype=bool)
        if short.any():  # draw again for rows still short, never repeating an item
            picked = np.concatenate([r * n_items + out[r] for r in todo.tolist()])
            keys = np.union1d(keys, picked)
        todo = todo[short]
    return out


def sample(
    positives: sp.csr_matrix,
    history: sp.csr_matrix,
    n: int,
    sampler: str,
    popularity: np.ndarray,
    seed: list[int],
) -> sp.csr_matrix:
    """Binary (n_users x n_items) CSR: for every user with positives, its positives plus ``n``
    sampled negatives (see the module docstring); other rows are empty."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    positives = sp.csr_matrix(positives)
    n_users, n_items = positives.shape
    users = np.flatnonzero(np.diff(positives.indptr) > 0)
    forbidden_all = (positives + sp.csr_matrix(history)).tocsr()
    weights = None if sampler == "uniform" else np.asarray(popularity, dtype=np.float64)
    rng = np.random.default_rng(seed)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for start in range(0, len(users), _BATCH):
        b = users[start : start + _BATCH]
        for u, neg in zip(b.tolist(), _draw_batch(rng, forbidden_all[b], n, weights), strict=True):
            items = np.union1d(positives[u].indices.astype(np.int64), neg)
            rows.append(np.full(len(items), u, dtype=np.int64))
            cols.append(items)
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    m = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n_users, n_items))
    m.sum_duplicates()
    m.sort_indices()
    return m


def seed_for(split_sha256: str, part: str, n: int, sampler: str) -> list[int]:
    """The draw's seed: the split's content, the part, ``n`` and the sampler."""
    return [int(split_sha256[:16] or "0", 16), ("test", "valid").index(part), n,
            SAMPLERS.index(sampler)]


def to_frame(m: sp.csr_matrix, user_ids: np.ndarray, item_ids: np.ndarray) -> pl.DataFrame:
    coo = m.tocoo()
    order = np.lexsort((coo.col, coo.row))
    return pl.DataFrame(
        {
            "user_id": np.asarray(user_ids)[coo.row[order]].astype(str),
            "item_id": np.asarray(item_ids)[coo.col[order]].astype(str),
        },
        schema={"user_id": pl.Utf8, "item_id": pl.Utf8},
    )


def from_frame(frame: pl.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray) -> sp.csr_matrix:
    """The CSR of a candidates frame (ids must be in the split's sorted id arrays)."""
    u = np.searchsorted(user_ids.astype(str), frame["user_id"].to_numpy().astype(str))
    i = np.searchsorted(item_ids.astype(str), frame["item_id"].to_numpy().astype(str))
    shape = (len(user_ids), len(item_ids))
    m = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=shape)
    m.sum_duplicates()
    m.sort_indices()
    return m


def frozen(
    split_dir: Path | None,
    split_sha256: str,
    part: str,
    n: int,
    sampler: str,
    make,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
) -> tuple[sp.csr_matrix, Path | None]:
    """The part's candidate sets: read and verified from the split folder, or ``make()``-d
    once and written there. Returns (CSR, the parquet path or None without a folder)."""
    if split_dir is None:
        return make(), None
    folder = Path(split_dir) / "candidates"
    path = folder / f"{part}-sampled-{n}-{sampler}.parquet"
    digest = path.with_suffix(".sha256")
    if path.exists() and digest.exists():
        want = digest.read_text().split()[0] if digest.stat().st_size else ""
        if sha256_file(path) != want:
            raise IntegrityError(
                f"{path}: the frozen candidate sets differ from their sha256 ({digest.name}); "
                "delete both files and the next run draws them again (the same draw)"
            )
        return from_frame(pl.read_parquet(path), user_ids, item_ids), path
    m = make()
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: to_frame(m, user_ids, item_ids).write_parquet(tmp))
    sha = sha256_file(path)
    write_atomically(digest, lambda tmp: tmp.write_text(f"{sha}  {path.name}\n"))
    return m, path


def restrict(scores: np.ndarray, allowed: sp.csr_matrix) -> np.ndarray:
    """``scores`` with every entry outside ``allowed`` (same shape, CSR) set to NaN."""
    out = np.full(scores.shape, np.nan, dtype=np.float64)
    coo = allowed.tocoo()
    out[coo.row, coo.col] = scores[coo.row, coo.col]
    return out
