"""The compiled pass of :func:`gridflow.time.doubling.compare` (numba, cached on disk; on numba's
threads from :data:`PARALLEL_CHUNKS` chunks of cells)."""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads, njit, prange

#: Chunks from which the pass runs on numba's threads.
PARALLEL_CHUNKS = 4


@njit(cache=True, inline="always")
def _chunk(a, b, w, weighted, out, c, chunk, log4):
    """Cells [c chunk, (c + 1) chunk): their error terms (see
    :func:`gridflow.time.doubling.local_error`) and whether the extrapolation failed."""
    s = 0.0
    bad = False
    for i in range(c * chunk, min(a.shape[0], (c + 1) * chunk)):
        x = a[i]
        y = b[i]
        term = abs(math.exp(x) - math.exp(y))
        if weighted:
            rel = abs(x - y)
            if rel < np.inf:                 # not where one is empty, nor NaN
                term = max(term, math.exp(w[i]) * rel)
        s += term
        if x == -np.inf and y == -np.inf:
            out[i] = -np.inf
            continue
        d = y - x
        if not d < log4:           # also NaN
            bad = True
            out[i] = np.nan
            continue
        out[i] = x + math.log1p(-math.expm1(d) / 3.0)
    return s, bad


@njit(cache=True, parallel=True)
def _pass_parallel(a, b, w, weighted, out, chunk, log4):
    chunks = (a.shape[0] + chunk - 1) // chunk
    parts = np.zeros(chunks)
    refused = np.zeros(chunks, dtype=np.bool_)
    for c in prange(chunks):
        parts[c], refused[c] = _chunk(a, b, w, weighted, out, c, chunk, log4)
    total = 0.0
    positive = True
    for c in range(chunks):
        total += parts[c]
        positive = positive and not refused[c]
    return total, positive


@njit(cache=True)
def _pass_serial(a, b, w, weighted, out, chunk, log4):
    total = 0.0
    positive = True
    for c in range((a.shape[0] + chunk - 1) // chunk):
        s, bad = _chunk(a, b, w, weighted, out, c, chunk, log4)
        total += s
        positive = positive and not bad
    return total, positive


def compare_pass(a: np.ndarray, b: np.ndarray, w: np.ndarray | None, out: np.ndarray, chunk: int,
                 log4: float) -> tuple[float, bool]:
    """``(sum of the error terms, positive)`` and ``out = a + log1p(-expm1(b - a)/3)`` for the flat log
    densities ``a`` (two half steps) and ``b`` (one full step), the terms |e^a - e^b|, or with the flat
    log weight ``w`` max(|e^a - e^b|, e^w |a - b|); ``positive`` is False when
    ``b - a < log4`` fails in a cell that is not empty in both (``out`` is then not to be used).
    Partial sums over fixed chunks of ``chunk`` cells, added in order (the same result on any
    number of threads)."""
    weighted = w is not None
    w = a if w is None else w
    if a.shape[0] >= PARALLEL_CHUNKS * chunk and get_num_threads() > 1:
        return _pass_parallel(a, b, w, weighted, out, chunk, log4)
    return _pass_serial(a, b, w, weighted, out, chunk, log4)
