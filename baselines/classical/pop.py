"""Most-popular baseline: the same list for everyone, popularity = distinct train users."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from baselines.classical._common import (
    check_items,
    check_users,
    distinct_user_counts,
    fitted,
)
from bench.models.base import FitContext, History, ModelData, Recommender


class Pop(Recommender):
    """Score of item i = number of distinct users with i in ``data.train`` (the contract's
    ``pop(i)``, so the model agrees with the popularity metrics and the serendipity baseline).

    Every user gets the same scores; the harness masks each user's seen items and breaks ties
    by the sha256 of the item id (``bench.ranking.tie_ranks``). Items absent from train (only
    in valid/test or only in ``items.parquet``) score 0: they are still rankable, after every
    item seen in train. Valid interactions do not count (they are not train), and repeated
    events of one user count once.
    """

    name = "pop"

    @dataclass(frozen=True)
    class Config:
        """No hyper-parameters."""

    def __init__(self, config: Config | None = None) -> None:
        super().__init__(config)
        self.popularity: np.ndarray | None = None

    def fit(self, data: ModelData, ctx: FitContext) -> None:
        self.popularity = distinct_user_counts(data.train, data.n_items)

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        popularity = fitted(self.popularity, self.name)
        check_items(history, popularity.size, self.name)
        users = check_users(users, history, self.name)
        return np.tile(popularity, (len(users), 1))

    def n_parameters(self) -> int:
        return 0 if self.popularity is None else int(self.popularity.size)
