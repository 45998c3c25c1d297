"""Scalars of the axis-step kernels: the thresholds of the ratio (fast) path and the logarithm
and log-sum of two numbers that treat a zero density (``-inf``) exactly.

Every kernel module reads these names as numba globals (frozen into the compiled code).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Largest log-density difference between neighbours for the fast (ratio) path.
MAX_JUMP = 200.0
#: The fast path gives up (and the line is redone in log space) when a sweep value exceeds this.
HAZARD = 1e200
#: ... or when a ratio new/old falls below this (its logarithm would lose precision).
TINY = 1e-280

_NEG_INF = -np.inf


@njit(cache=True, inline="always")
def _log(x):
    return math.log(x) if x > 0.0 else _NEG_INF


@njit(cache=True, inline="always")
def _logaddexp(x, y):
    if x == _NEG_INF:
        return y
    if y == _NEG_INF:
        return x
    if x > y:
        return x + math.log1p(math.exp(y - x))
    return y + math.log1p(math.exp(x - y))
