"""Compiled one-pass sum of the generalised KL terms (numba, cached on disk, on all cores).

Used by :func:`gridflow.analysis.diagnostics.kl_divergence` when the arrays are large; the formula and
its safeguards are documented there.  The cells are summed in fixed chunks of :data:`CHUNK` (in
parallel on large grids) whose partial sums are then added in order, so the result does not depend on the number
of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads, njit, prange

#: Cells per partial sum.
CHUNK = 8192

#: Chunks from which the sum runs on numba's threads.
PARALLEL_CHUNKS = 4


@njit(cache=True, inline="always")
def _kl_term(a, b):
    """rho phi(log(rho/pi)) for log rho = a, log pi = b (pi where rho = 0); phi(r) = r - 1 + e^{-r}."""
    pi = math.exp(b) if b > -745.0 else 0.0
    if a == -np.inf:
        return pi
    rho = math.exp(a) if a > -745.0 else 0.0
    if rho == 0.0:
        return pi
    r = a - b
    if abs(r) < 1.0:
        term = rho * (r + math.expm1(-r))
    else:
        term = rho * r - rho + pi
    return term if term > 0.0 else 0.0


@njit(cache=True, inline="always")
def _chunk_sum(lr, lp, c):
    s = 0.0
    for i in range(c * CHUNK, min(lr.shape[0], (c + 1) * CHUNK)):
        s += _kl_term(lr[i], lp[i])
    return s


@njit(cache=True, parallel=True)
def _kl_sum_parallel(lr, lp):
    chunks = (lr.shape[0] + CHUNK - 1) // CHUNK
    parts = np.zeros(chunks)
    for c in prange(chunks):
        parts[c] = _chunk_sum(lr, lp, c)
    total = 0.0
    for c in range(chunks):
        total += parts[c]
    return total


@njit(cache=True)
def _kl_sum_serial(lr, lp):
    total = 0.0
    for c in range((lr.shape[0] + CHUNK - 1) // CHUNK):
        total += _chunk_sum(lr, lp, c)
    return total


def kl_sum(log_rho: np.ndarray, log_pi: np.ndarray) -> float:
    """sum over cells of rho phi(log(rho/pi)), phi(r) = r - 1 + e^{-r} (pi where rho = 0), for two
    C-contiguous float arrays of one shape; on numba's threads from :data:`PARALLEL_CHUNKS` chunks."""
    lr, lp = log_rho.ravel(), log_pi.ravel()
    if lr.shape[0] >= PARALLEL_CHUNKS * CHUNK and get_num_threads() > 1:
        return _kl_sum_parallel(lr, lp)
    return _kl_sum_serial(lr, lp)
