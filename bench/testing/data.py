"""Small deterministic data for tests of models and metrics (no files, no network)."""

from __future__ import annotations

import numpy as np
import polars as pl

from bench.data.indexing import IndexedSplit, index_split

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


def tiny_frames(
    n_users: int = 60, n_items: int = 90, n_events: int = 3000, seed: int = 0
) -> dict[str, pl.DataFrame]:
    """A power-law interaction log split by global time: train 80 %, valid 10 %, test 10 %.

    Returns string-id frames in the split contract's schema (train/valid/test/items/users).
    Users ``u0..``, items ``i00..`` with titles, years and genres; users with gender/age/occupation.
    """
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    items = rng.choice(n_items, size=n_events, p=pop / pop.sum())
    users = rng.integers(0, n_users, size=n_events)
    ts = np.sort(rng.integers(1_000_000, 2_000_000, size=n_events))
    log = pl.DataFrame(
        {
            "user_id": [f"u{u:03d}" for u in users],
            "item_id": [f"i{i:03d}" for i in items],
            "timestamp": ts.astype(np.int64),
            "rating": rng.integers(1, 6, size=n_events).astype(np.float64),
        }
    ).unique(["user_id", "item_id"], keep="last", maintain_order=True)
    cut_v, cut_t = np.quantile(log["timestamp"].to_numpy(), [0.8, 0.9])
    train = log.filter(pl.col("timestamp") < cut_v)
    valid = log.filter((pl.col("timestamp") >= cut_v) & (pl.col("timestamp") < cut_t))
    test = log.filter(pl.col("timestamp") >= cut_t)
    item_frame = pl.DataFrame(
        {
            "item_id": [f"i{i:03d}" for i in range(n_items)],
            "title": [f"Movie {i}" for i in range(n_items)],
            "year": [1970 + i % 50 for i in range(n_items)],
            "genres": [sorted({GENRES[i % 6], GENRES[(i // 6) % 6]}) for i in range(n_items)],
        }
    )
    user_frame = pl.DataFrame(
        {
            "user_id": [f"u{u:03d}" for u in range(n_users)],
            "gender": ["F" if u % 3 == 0 else "M" for u in range(n_users)],
            "age": [[18, 25, 35, 45][u % 4] for u in range(n_users)],
            "occupation": [["student", "engineer", "artist"][u % 3] for u in range(n_users)],
        }
    )
    return {"train": train, "valid": valid, "test": test, "items": item_frame, "users": user_frame}


def tiny_split(**kwargs) -> IndexedSplit:
    """``tiny_frames`` indexed: ``.model_data`` for ``fit``, ``.test`` for evaluation."""
    f = tiny_frames(**kwargs)
    return index_split(f["train"], f["valid"], f["test"], f["items"], f["users"])
