"""Random baseline: uniform scores that depend only on (seed, seed_offset, user, item)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from baselines.classical._common import check_items, check_users, config_error, fitted
from bench.models.base import FitContext, History, ModelData, Recommender

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer (Steele et al., OOPSLA 2014), in place on a uint64 array."""
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def uniform_hash(key: int, users: np.ndarray, n_items: int) -> np.ndarray:
    """Uniform [0, 1) float64 of shape (len(users), n_items), a pure function of
    (key, user, item): a counter-based generator (hash of the coordinates), so a user's row is
    the same whatever batch it is scored in, with no Python loop over users.
    """
    u = users.astype(np.uint64) + np.uint64(1)
    user_key = _mix64(np.uint64(key) + u * _GOLDEN)
    items = (np.arange(n_items, dtype=np.uint64) + np.uint64(1)) * _M1
    h = _mix64(user_key[:, None] ^ items[None, :])
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2.0**53)


class Random(Recommender):
    """Uniform random scores in [0, 1), deterministic given ``ctx.seed``, ``seed_offset``, the
    user and the item, and independent of batch composition.

    The key is ``SeedSequence([ctx.seed, seed_offset])``; each score is a SplitMix64 hash of
    (key, user, item), so a user keeps the same scores whoever else is in the batch and
    whatever order users are scored in. Stores no weights (``n_parameters() == 0``).
    """

    name = "random"

    @dataclass(frozen=True)
    class Config:
        #: added to the run seed, to draw several random baselines within one seed
        seed_offset: int = 0

        def __post_init__(self) -> None:
            if self.seed_offset < 0:
                raise config_error("random", f"seed_offset must be >= 0, got {self.seed_offset}")

    def __init__(self, config: Config | None = None) -> None:
        super().__init__(config)
        self.key: int | None = None
        self.n_items: int | None = None

    def fit(self, data: ModelData, ctx: FitContext) -> None:
        seq = np.random.SeedSequence([ctx.seed, self.config.seed_offset])
        self.key = int(seq.generate_state(1, dtype=np.uint64)[0])
        self.n_items = data.n_items

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        key = fitted(self.key, self.name)
        n_items = fitted(self.n_items, self.name)
        check_items(history, n_items, self.name)
        users = check_users(users, history, self.name)
        return uniform_hash(key, users, n_items)

    def n_parameters(self) -> int:
        return 0
