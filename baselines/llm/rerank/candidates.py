"""The frozen first-stage candidates of llm-rerank: each user's top ``n_candidates`` of the
first stage, ranked by the harness (``FitContext.rank``), computed once per split, first
stage, N and seed and shared by every reranker through a checksummed file in the cache."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from baselines.llm.common import atomic_write_bytes, sha256_json, thaw
from baselines.llm.rerank.config import RerankConfig
from bench.errors import IntegrityError
from bench.files import write_atomically
from bench.hashing import sha256_file
from bench.models.base import FitContext, History, ModelData
from bench.ranking import PAD

# bump if the frozen candidate file's meaning changes (2: ranked by the harness's topk, ties by
# the sha256 tie rank, not by item index)
CANDIDATES_FORMAT = 2


@dataclass(frozen=True)
class Frozen:
    """One history's frozen candidates: user -> item indices (best first; users without
    candidates absent), the parquet file, and the first stage's ``n_parameters``."""

    lists: dict[int, np.ndarray]
    path: Path
    first_stage_params: int


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
    history_name: str | None = None,
) -> Frozen:
    """Load, or compute once and freeze, the first stage's top-N for the test history (or the
    history named ``history_name``: ``train`` for the validation pass).

    ``<cache_dir>/candidates/<key>.parquet`` (user_idx, rank, item_idx) + ``<key>.sha256``
    + ``<key>.json`` (the first stage's ``n_parameters``, so the reranker's ``n_parameters()``
    is the same whether the candidates were computed or loaded); the key covers the split, the first
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
        folder.mkdir(parents=True, exist_ok=True)
        _write_first_stage_params(meta, cfg, n_params)

        def write(tmp: Path) -> None:  # the digest is in place before the file appears
            frame.write_parquet(tmp)
            atomic_write_bytes(digest, f"{sha256_file(tmp)}  {path.name}\n".encode())

        write_atomically(path, write)
    frame = frame.sort(["user_idx", "rank"])
    users = frame["user_idx"].to_numpy()
    items = frame["item_idx"].to_numpy().astype(np.int64)
    bounds = np.searchsorted(users, np.arange(data.n_users + 1))
    cands = {
        u: items[bounds[u] : bounds[u + 1]]
        for u in range(data.n_users)
        if bounds[u + 1] > bounds[u]
    }
    return Frozen(cands, path, n_params)


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
