"""EASE^R (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from baselines.classical._common import (
    binary_rows,
    check_items,
    check_users,
    config_error,
    fitted,
    train_matrix,
)
from bench.models.base import FitContext, History, ModelData, Recommender

#: dense float64 entries per Gram block while building X^T X
BLOCK_ENTRIES = 8_000_000


def gram(x: sp.csr_matrix, l2: float) -> np.ndarray:
    """X^T X + l2 I as a dense float64 Fortran-ordered array, built in row blocks."""
    n = x.shape[1]
    g = np.empty((n, n), dtype=np.float64, order="F")
    xt = sp.csr_matrix(x.T)
    step = max(1, BLOCK_ENTRIES // max(n, 1))
    for start in range(0, n, step):
        stop = min(start + step, n)
        # X^T X is symmetric: rows start:stop of it are columns start:stop of g (contiguous)
        g.T[start:stop] = (xt[start:stop] @ x).toarray()
    g[np.diag_indices(n)] += l2
    return g


def _symmetrize_lower(q: np.ndarray, step: int = 1024) -> None:
    """Copy the lower triangle of a C-ordered square ``q`` onto its upper one, in place."""
    n = q.shape[0]
    for start in range(0, n, step):
        stop = min(start + step, n)
        q[start:stop, stop:] = q[stop:, start:stop].T
        block = q[start:stop, start:stop]
        upper = np.triu_indices(stop - start, 1)
        block[upper] = block.T[upper]


def ease_weights(x: sp.csr_matrix, l2: float) -> np.ndarray:
    """B = I - P diagMat(1 / diag(P)) with P = (X^T X + l2 I)^-1, i.e. B_ij = -P_ij / P_jj
    off the diagonal and B_jj = 0 (Steck 2019, eq. 8). C-ordered float64 (n_items, n_items).

    The inverse is done in place by Cholesky (LAPACK potrf + potri): about one n_items^2
    float64 buffer in all, instead of the two or three a plain ``inv`` needs.
    """
    g = gram(x, l2)
    chol, info = lapack.dpotrf(g, lower=False, clean=False, overwrite_a=True)
    if info != 0:
        raise ValueError(f"ease: X^T X + l2 I is not positive definite (potrf info={info})")
    inv, info = lapack.dpotri(chol, lower=False, overwrite_c=True)
    if info != 0:
        raise ValueError(f"ease: inverting X^T X + l2 I failed (potri info={info})")
    # potri leaves P in the upper triangle of the Fortran array, i.e. the lower one of its
    # C-ordered transpose; P is symmetric, so the transpose is P itself once completed.
    p = inv.T
    _symmetrize_lower(p)
    diag = np.diag(p).copy()
    p /= -diag[None, :]
    np.fill_diagonal(p, 0.0)
    return p


class EASE(Recommender):
    """EASE^R: a dense item-item weight matrix B with zero diagonal, fitted in closed form on
    the binary train matrix; score(u, .) = x_u @ B where x_u is u's binary ``history`` row
    (train + valid at test time). Users with no history score 0 everywhere.

    Memory: B is n_items^2 float64 (3,706 items: 110 MB; 26,744 items: 5.7 GB). Fitting builds
    the Gram matrix, inverts it and turns it into B in that one buffer, plus about 150 MB of
    block temporaries (a textbook ``numpy.linalg.inv`` fit needs about three such buffers).
    Above ``max_items`` fit refuses with a ConfigError instead of running out of memory.
    """

    name = "ease"

    @dataclass(frozen=True)
    class Config:
        #: L2 weight lambda. 500 is Steck's ML-20M value and Cornac's default (RecBole
        #: defaults to 250); smaller catalogues often prefer smaller values: tune per dataset
        #: in conf/dataset_model/.
        l2: float = 500.0
        #: refuse catalogues larger than this (dense n_items^2 float64 weights)
        max_items: int = 40_000

        def __post_init__(self) -> None:
            if not self.l2 > 0:
                raise config_error("ease", f"l2 must be > 0, got {self.l2}")
            if self.max_items < 1:
                raise config_error("ease", f"max_items must be >= 1, got {self.max_items}")

    def __init__(self, config: Config | None = None) -> None:
        super().__init__(config)
        self.weights: np.ndarray | None = None

    def fit(self, data: ModelData, ctx: FitContext) -> None:
        n, limit = data.n_items, self.config.max_items
        if n > limit:
            gb = n * n * 8 / 1e9
            raise config_error(
                "ease",
                f"{n:,} items need a dense {n:,} x {n:,} float64 weight matrix ({gb:.1f} GB), "
                f"above max_items={limit:,}; raise model.params.max_items "
                "if the memory is there, or use itemknn",
            )
        self.weights = ease_weights(train_matrix(data), self.config.l2)

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        b = fitted(self.weights, self.name)
        check_items(history, b.shape[0], self.name)
        users = check_users(users, history, self.name)
        # sparse @ dense accumulates B's rows user by user: batch-independent, no BLAS blocking
        return np.asarray(binary_rows(history, users) @ b, dtype=np.float64)

    def n_parameters(self) -> int:
        return 0 if self.weights is None else int(self.weights.size)
