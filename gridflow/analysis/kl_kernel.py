"""Compiled one-pass sum of the generalised KL terms (numba, cached on disk).

Used by :func:`gridflow.analysis.diagnostics.kl_divergence` when the arrays are large; the formula and
its safeguards are documented there.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def kl_sum(log_rho, log_pi):
    """sum over cells of rho phi(log(rho/pi)), phi(r) = r - 1 + e^{-r} (pi where rho = 0)."""
    total = 0.0
    lr = log_rho.ravel()
    lp = log_pi.ravel()
    for i in range(lr.shape[0]):
        a = lr[i]
        b = lp[i]
        pi = math.exp(b) if b > -745.0 else 0.0
        if a == -np.inf:
            total += pi
            continue
        rho = math.exp(a) if a > -745.0 else 0.0
        if rho == 0.0:
            total += pi
            continue
        r = a - b
        if abs(r) < 1.0:
            term = rho * (r + math.expm1(-r))
        else:
            term = rho * r - rho + pi
        if term > 0.0:
            total += term
    return total
