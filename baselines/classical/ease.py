"""EASE^R (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019)."""

from __future__ import annotations

import contextlib
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
#: largest catalogue whose Cholesky inverse runs on several BLAS threads. Above it potrf/potri
#: run on one thread: the multithreaded potrf of the OpenBLAS bundled with scipy (0.3.30,
#: dpotrf_U_parallel -> dsyrk_thread_UT -> inner_thread -> dgemm_oncopy) segfaults from about
#: 22,700 items on 2 threads (22,634 passes, 22,711 crashes; OpenBLAS issues #1413, #2821);
#: one thread runs 26,744 items. 16,384 keeps a margin for other thread counts and blockings.
THREADED_LAPACK_MAX_N = 16_384
#: bytes of work memory besides the weights while fitting (Gram blocks, X^T, scoring batch)
FIT_OVERHEAD_BYTES = 512 * 2**20
DTYPES = {"float64": np.float64, "float32": np.float32}


def lapack_threads(n: int) -> contextlib.AbstractContextManager:
    """One BLAS thread for LAPACK on an ``n`` x ``n`` matrix above ``THREADED_LAPACK_MAX_N``
    (see there), no change below it."""
    if n <= THREADED_LAPACK_MAX_N:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def gram(x: sp.csr_matrix, l2: float, dtype: type = np.float64) -> np.ndarray:
    """X^T X + l2 I as a dense Fortran-ordered array of ``dtype``, built in float64 row blocks
    (counts are exact in float32 below 2^24 users)."""
    n = x.shape[1]
    g = np.empty((n, n), dtype=dtype, order="F")
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


def ease_weights(x: sp.csr_matrix, l2: float, dtype: type = np.float64) -> np.ndarray:
    """B = I - P diagMat(1 / diag(P)) with P = (X^T X + l2 I)^-1, i.e. B_ij = -P_ij / P_jj
    off the diagonal and B_jj = 0 (Steck 2019, eq. 8). C-ordered (n_items, n_items) of
    ``dtype`` (float64, or float32 for half the memory).

    The inverse is done in place by Cholesky (LAPACK potrf + potri): about one n_items^2
    buffer in all, instead of the two or three a plain ``inv`` needs. Above
    ``THREADED_LAPACK_MAX_N`` items it runs on one BLAS thread (see there).
    """
    g = gram(x, l2, dtype)
    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (g,))
    with lapack_threads(g.shape[0]):
        chol, info = potrf(g, lower=False, clean=False, overwrite_a=True)
        if info != 0:
            raise ValueError(f"ease: X^T X + l2 I is not positive definite (potrf info={info})")
        inv, info = potri(chol, lower=False, overwrite_c=True)
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


def weights_bytes(n_items: int, dtype: type = np.float64) -> int:
    """Bytes of the dense (n_items, n_items) weight matrix."""
    return n_items * n_items * np.dtype(dtype).itemsize


def check_memory(n_items: int, dtype: type, available: int | None = None) -> None:
    """ConfigError unless the weights plus ``FIT_OVERHEAD_BYTES`` fit in ``available`` bytes
    (default: psutil's available memory now)."""
    if available is None:
        import psutil

        available = int(psutil.virtual_memory().available)
    need = weights_bytes(n_items, dtype) + FIT_OVERHEAD_BYTES
    if need <= available:
        return
    name = np.dtype(dtype).name
    hint = (
        f"model.params.dtype=float32 halves the weights to "
        f"{weights_bytes(n_items, np.float32) / 1e9:.1f} GB, "
        if name == "float64"
        else ""
    )
    raise config_error(
        "ease",
        f"{n_items:,} items need about {need / 1e9:.1f} GB to fit (dense {n_items:,} x "
        f"{n_items:,} {name} weights {weights_bytes(n_items, dtype) / 1e9:.1f} GB + "
        f"{FIT_OVERHEAD_BYTES / 1e9:.1f} GB work) but {available / 1e9:.1f} GB is available; "
        f"{hint}free memory, or model.params.check_memory=false to try anyway",
    )


class EASE(Recommender):
    """EASE^R: a dense item-item weight matrix B with zero diagonal, fitted in closed form on
    the binary train matrix; score(u, .) = x_u @ B where x_u is u's binary ``history`` row
    (train + valid at test time). Users with no history score 0 everywhere.

    Memory: B is n_items^2 float64 (3,706 items: 110 MB; 26,744 items: 5.7 GB), or half that
    with ``dtype=float32``. Fitting builds the Gram matrix, inverts it and turns it into B in
    that one buffer, plus about 150 MB of block temporaries (a textbook ``numpy.linalg.inv``
    fit needs about three such buffers). Above ``max_items`` fit refuses with a ConfigError
    instead of running out of memory, and so it does (``check_memory``) when B plus
    ``FIT_OVERHEAD_BYTES`` exceeds the memory available (psutil) when fit starts.
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
        #: float64, or float32: half the memory, scores equal to about 1e-6 relative
        dtype: str = "float64"
        #: refuse to fit when the weights do not fit in the memory available (psutil)
        check_memory: bool = True

        def __post_init__(self) -> None:
            if not self.l2 > 0:
                raise config_error("ease", f"l2 must be > 0, got {self.l2}")
            if self.max_items < 1:
                raise config_error("ease", f"max_items must be >= 1, got {self.max_items}")
            if self.dtype not in DTYPES:
                raise config_error(
                    "ease", f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}"
                )

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
        dtype = DTYPES[self.config.dtype]
        if self.config.check_memory:
            check_memory(n, dtype)
        self.weights = ease_weights(train_matrix(data), self.config.l2, dtype)

    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        b = fitted(self.weights, self.name)
        check_items(history, b.shape[0], self.name)
        users = check_users(users, history, self.name)
        # sparse @ dense accumulates B's rows user by user: batch-independent, no BLAS blocking
        # (rows in B's dtype: a float32 B is never copied to float64)
        rows = binary_rows(history, users).astype(b.dtype, copy=False)
        return np.asarray(rows @ b, dtype=np.float64)

    def n_parameters(self) -> int:
        return 0 if self.weights is None else int(self.weights.size)
