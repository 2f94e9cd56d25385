"""The harness's split as RecBole pre-split atomic files (``benchmark_filename``).

RecBole reads ``<ds>.train.inter``, ``<ds>.valid.inter`` and ``<ds>.test.inter`` as they are: no
filtering, no re-splitting, no augmentation (``Dataset.build`` slices the concatenation back
into the three files). Tokens are the harness's own indices written as decimal strings, so
RecBole's remapped id ``j`` maps back to harness index ``int(field2id_token[field][j])``.

RecBole's universe is the train part: users and items of ``train``. Rows of the other files whose
user or item does not occur in train are left out, so RecBole never creates an (untrained)
embedding for an item it only saw in valid; such items are NaN when scoring.

General models get ``user_id:token item_id:token timestamp:float`` rows. Sequential models get
the augmented form RecBole expects with benchmark files: ``item_id_list:token_seq`` (the last
``max_len`` items before the target, in time order) and ``item_id:token`` (the target), one row
per interaction but the first of each user.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from bench.models.base import ModelData

DATASET = "harness"
PARTS = ("train", "valid", "test")
GENERAL_HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"
SEQUENTIAL_HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token\ttimestamp:float\n"


@dataclass(frozen=True)
class AtomicFiles:
    """Where the files are and how many rows each part got (and dropped)."""

    data_path: Path  # RecBole's ``data_path``; files live in data_path / DATASET
    rows: dict[str, int]
    dropped: dict[str, int]


def write_atomic(
    data: ModelData,
    folder: Path,
    *,
    sequential: bool,
    max_len: int = 50,
    test: pl.DataFrame | None = None,
) -> AtomicFiles:
    """Write the three files under ``folder / DATASET``.

    ``test`` (indexed frame) is for evaluating with RecBole's own evaluator (the peer check);
    a model's ``fit`` never sees it, and its test file then repeats the valid rows (RecBole
    requires three parts; the adapter never evaluates with them).
    """
    out = folder / DATASET
    out.mkdir(parents=True, exist_ok=True)
    users = np.unique(data.train["user_idx"].to_numpy())
    items = np.unique(data.train["item_idx"].to_numpy())
    test_rows = data.valid if test is None else test
    frames = {"train": data.train, "valid": data.valid, "test": test_rows}
    rows, dropped = {}, {}
    for part in PARTS:
        frame = frames[part].sort(["user_idx", "timestamp", "item_idx"])
        keep = np.isin(frame["user_idx"].to_numpy(), users) & np.isin(
            frame["item_idx"].to_numpy(), items
        )
        dropped[part] = int((~keep).sum())
        frame = frame.filter(pl.Series(keep))
        path = out / f"{DATASET}.{part}.inter"
        if sequential:
            prior = None if part == "train" else _prior(data, part, test is not None)
            rows[part] = _write_sequential(path, frame, max_len, prior, items, part == "train")
        else:
            rows[part] = _write_general(path, frame)
    return AtomicFiles(data_path=folder, rows=rows, dropped=dropped)


def _write_general(path: Path, frame: pl.DataFrame) -> int:
    with path.open("w") as f:
        f.write(GENERAL_HEADER)
        for u, i, t in zip(
            frame["user_idx"].to_list(),
            frame["item_idx"].to_list(),
            frame["timestamp"].to_list(),
            strict=True,
        ):
            f.write(f"{u}\t{i}\t{t}\n")
    return frame.height


def _prior(data: ModelData, part: str, with_test: bool) -> dict[int, list[int]]:
    """Per user, the items before ``part`` in time order: train (and valid before test)."""
    before = [data.train] if part == "valid" or not with_test else [data.train, data.valid]
    frame = pl.concat(before).sort(["user_idx", "timestamp", "item_idx"])
    grouped = frame.group_by("user_idx", maintain_order=True).agg(pl.col("item_idx"))
    return dict(zip(grouped["user_idx"].to_list(), grouped["item_idx"].to_list(), strict=True))


def _write_sequential(
    path: Path,
    frame: pl.DataFrame,
    max_len: int,
    prior: dict[int, list[int]] | None,
    known: np.ndarray,
    grow: bool,
) -> int:
    """One row per target; the list is the user's known items before it (last ``max_len``).

    In train (``grow``) the list grows with each target (RecBole's augmentation); in valid/test
    every target of a user shares the same history, as in the harness (train for valid, train +
    valid for test).
    """
    known_set = set(known.tolist())
    grouped = frame.group_by("user_idx", maintain_order=True).agg(
        pl.col("item_idx"), pl.col("timestamp")
    )
    n = 0
    with path.open("w") as f:
        f.write(SEQUENTIAL_HEADER)
        for u, its, tss in grouped.iter_rows():
            seq = [i for i in (prior or {}).get(u, []) if i in known_set]
            for i, t in zip(its, tss, strict=True):
                if seq:
                    f.write(f"{u}\t{' '.join(map(str, seq[-max_len:]))}\t{i}\t{t}\n")
                    n += 1
                if grow:
                    seq.append(i)
    return n
