"""Compiled one-pass sum of the generalised KL terms (numba, cached on disk, on all cores).

Used by :func:`gridflow.analysis.diagnostics.kl_divergence` when the arrays are large; the formula and
its safeguards are documented there.  The cells are summed in fixed chunks of :data:`CHUNK` (in
parallel) whose partial sums are then added in order, so the result does not depend on the number
of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

#: Cells per partial sum.
CHUNK = 8192


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


@njit(cache=True, parallel=True)
def kl_sum(log_rho, log_pi):
    """sum over cells of rho phi(log(rho/pi)), phi(r) = r - 1 + e^{-r} (pi where rho = 0)."""
    lr = log_rho.ravel()
    lp = log_pi.ravel()
    n = lr.shape[0]
    chunks = (n + CHUNK - 1) // CHUNK
    parts = np.zeros(chunks)
    for c in prange(chunks):
        s = 0.0
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            s += _kl_term(lr[i], lp[i])
        parts[c] = s
    total = 0.0
    for c in range(chunks):
        total += parts[c]
    return total
