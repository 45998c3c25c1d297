"""The axis step on one line at a time: both MPRK22 stages, by the ratio path or the log path.

:func:`_lines_one_by_one` serves periodic lines (ratio path first, log path where it fails) and
every line the blocked walls path (:mod:`gridflow.flows.kernels.blocked`) could not do.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from gridflow.flows.kernels.rates import _assemble, _rates, _scale, _stage_edges
from gridflow.flows.kernels.scalar import _NEG_INF, MAX_JUMP, TINY
from gridflow.flows.kernels.tridiagonal import _solve_log, _solve_ones


@njit(cache=True, inline="always")
def _fast_ok(l, n, periodic):
    last = n if periodic else n - 1
    for i in range(n):
        if not (l[i] > _NEG_INF and l[i] < np.inf):
            return False
    for i in range(last):
        j = i + 1 if i + 1 < n else 0
        if abs(l[j] - l[i]) > MAX_JUMP:
            return False
    return True



@njit(cache=True, inline="always")
def _stage_solve(eu, ed, l, a, b, c, u, cp, g, n, periodic, fast):
    """Assemble a stage from its edge terms and solve it: u = y/rho by the ratio path (``fast``;
    False when that path fails) or u = log y by the log path."""
    _assemble(eu, ed, periodic, a, b, c, n)
    if fast:
        _scale(l, a, c, n, periodic)
        return _solve_ones(a, b, c, u, cp, g, n, periodic)
    _solve_log(a, b, c, l, u, cp, g, n, periodic)
    return True



@njit(cache=True)
def _line(l, up, down, p, kappa, log_mean, tau, periodic, two_stage, fast, out, w):
    """One line by the ratio path (``fast``; returns False when the line needs the log path) or
    the log path.  ``w`` is a (13, n) work array; with ``log_mean`` the rates come from ``l``, ``p``."""
    n = l.shape[0]
    eu, ed, a, b, c, u, cp, g, u0, d0, u1, d1, w0 = (w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8], w[9],
                                                     w[10], w[11], w[12])
    _rates(l, up, down, p, kappa, periodic, log_mean, u0, d0, n)
    _stage_edges(u0, d0, u0, d0, u0, tau, False, eu, ed, n)
    if not _stage_solve(eu, ed, l, a, b, c, u, cp, g, n, periodic, fast):
        return False
    if two_stage:
        # w0 = rho / y1; y1 in log form in ``out`` (for the rates at y1)
        for i in range(n):
            if fast:
                if not u[i] > TINY:
                    return False
                w0[i] = 1.0 / u[i]
                out[i] = l[i] + math.log(u[i])
            else:
                w0[i] = math.exp(l[i] - u[i]) if l[i] > _NEG_INF else 0.0
                out[i] = u[i]
        _rates(out, up, down, p, kappa, periodic, log_mean, u1, d1, n)     # at y1
        _stage_edges(u0, d0, u1, d1, w0, tau, True, eu, ed, n)
        if not _stage_solve(eu, ed, l, a, b, c, u, cp, g, n, periodic, fast):
            return False
        if not fast and log_mean:
            # The second stage weighs production out of cell j by rho_j / y1_j, which is 0 for a
            # cell empty at the start: a cell that the first stage filled but whose only inflow
            # (at y1) comes from such a cell would be emptied again, for ever.  Such a line
            # keeps the first stage (implicit Euler: positive, conservative).
            for i in range(n):
                if u[i] == _NEG_INF and out[i] > _NEG_INF:
                    return True
    for i in range(n):
        if fast:
            if not u[i] > TINY:
                return False
            out[i] = l[i] + math.log(u[i])
        else:
            out[i] = u[i]
    return True


@njit(cache=True)
def _lines_one_by_one(l, up, down, p, kappa, log_mean, tau, periodic, two_stage, log_only, out, todo):
    """Lines (rows) marked in ``todo`` one at a time: the ratio path on periodic lines (unless
    ``log_only``), else the log path.  Returns the number done by the log path."""
    m, n = l.shape
    w = np.empty((13, n))
    slow = 0
    for k in range(m):
        if not todo[k]:
            continue
        if periodic and not log_only and _fast_ok(l[k], n, periodic) and _line(
                l[k], up[k], down[k], p[k], kappa, log_mean, tau, periodic, two_stage, True, out[k], w):
            continue
        slow += 1
        _line(l[k], up[k], down[k], p[k], kappa, log_mean, tau, periodic, two_stage, False, out[k], w)
    return slow

