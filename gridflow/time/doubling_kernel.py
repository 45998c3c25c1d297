"""The compiled pass of :func:`gridflow.time.doubling.compare` (numba, cached on disk, on all cores)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def compare_pass(a, b, out, chunk, log4):
    """``(sum |e^a - e^b|, positive)`` and ``out = a + log1p(-expm1(b - a)/3)`` for the flat log
    densities ``a`` (two half steps) and ``b`` (one full step); ``positive`` is False when
    ``b - a < log4`` fails in a cell that is not empty in both (``out`` is then not to be used).
    Partial sums over fixed chunks of ``chunk`` cells, added in order."""
    n = a.shape[0]
    chunks = (n + chunk - 1) // chunk
    parts = np.zeros(chunks)
    refused = np.zeros(chunks, dtype=np.bool_)
    for c in prange(chunks):
        s = 0.0
        bad = False
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            x = a[i]
            y = b[i]
            s += abs(math.exp(x) - math.exp(y))
            if x == -np.inf and y == -np.inf:
                out[i] = -np.inf
                continue
            d = y - x
            if not d < log4:           # also NaN
                bad = True
                out[i] = np.nan
                continue
            out[i] = x + math.log1p(-math.expm1(d) / 3.0)
        parts[c] = s
        refused[c] = bad
    total = 0.0
    positive = True
    for c in range(chunks):
        total += parts[c]
        if refused[c]:
            positive = False
    return total, positive
