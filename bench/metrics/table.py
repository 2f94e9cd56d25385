"""Per-user metric tables: the layout the compiled kernels write and the engine reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PerUser:
    """Per-user values of some metrics: ``values`` (len(keys), n), one C-contiguous row per
    key with a value per evaluated user (NaN where undefined)."""

    keys: list[str]
    values: np.ndarray

    @classmethod
    def allocate(cls, keys: list[str], n: int) -> PerUser:
        """Rows for a kernel to fill."""
        return cls(keys, np.empty((len(keys), n), dtype=np.float64))

    def rows(self) -> dict[str, np.ndarray]:
        return {key: self.values[j] for j, key in enumerate(self.keys)}
