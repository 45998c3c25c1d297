"""Tridiagonal and cyclic (periodic) solves of the axis step, in ratio form and in log form.

The matrices are M-matrices with unit column sums (rows of ``I - tau L``, sub-diagonal ``a``,
diagonal ``b``, super-diagonal ``c``; on a periodic line ``a[0]`` is the corner A[0, n-1] and
``c[n-1]`` the corner A[n-1, 0]).  Each is factored once, in place, by Gaussian elimination
*without pivoting* (:func:`_thomas_factor`, :func:`_cyclic_factor`): the pivots stay >= 1 and
every update adds terms of one sign, so the factors are exact to round-off.  The same factors
then serve two substitutions:

* ratio form (``*_ones``) — right-hand side 1, solution in linear form; it gives up (returns
  False) as soon as a value exceeds :data:`~gridflow.flows.kernels.scalar.HAZARD`;
* log form (``*_log``) — right-hand side ``ld`` and solution ``lx`` as logarithms, each update a
  ``logaddexp`` of terms of one sign: exact to round-off relative to every cell's value, however
  small, and never over- or underflows.

A cyclic line of two cells is solved directly (Cramer's rule on its 2 x 2 matrix).
"""

from __future__ import annotations

import math

from numba import njit

from gridflow.flows.kernels.scalar import HAZARD, _log, _logaddexp


# ------------------------------------------------------------------ factorisations


@njit(cache=True, inline="always")
def _thomas_factor(a, b, c, cp, n):
    """LU factors of the tridiagonal matrix, in place: ``b[i]`` becomes the pivot of row i and
    ``cp[i]`` the super-diagonal of U divided by it; ``a[i]`` stays the multiplier's numerator."""
    cp[0] = c[0] / b[0]
    for i in range(1, n):
        m = b[i] - a[i] * cp[i - 1]
        b[i] = m
        cp[i] = c[i] / m


@njit(cache=True, inline="always")
def _cyclic_factor(a, b, c, cp, g, n):
    """LU factors of the cyclic matrix (n >= 3), in place, carrying the fill of the last column
    and of the last row: ``b[i]`` becomes the pivot of row i (``b[n-1]`` that of the last row),
    ``cp[i]``/``g[i]`` the super-diagonal/last-column entries of U divided by the pivot,
    ``c[i]`` the multiplier of row i into the last row and ``a[i+1]`` that into row i+1.
    ``g[n-2]`` is 0: that row's coupling to the last cell is in ``cp[n-2]``."""
    last = n - 1
    bl = b[last]
    h = c[last]
    m = b[0]
    gi = a[0]
    ci = c[0]
    for i in range(last):
        if i == last - 1:
            ci += gi
            gi = 0.0
        cp[i] = ci / m
        g[i] = gi / m
        e = h / m
        b[i] = m
        c[i] = e
        if i + 1 < last:
            h = (a[last] if i + 1 == last - 1 else 0.0) - e * ci
            bl -= e * gi
            f = a[i + 1] / m
            a[i + 1] = f
            m = b[i + 1] - f * ci
            gi = -f * gi
            ci = c[i + 1]
        else:
            bl -= e * ci
    b[last] = bl


@njit(cache=True, inline="always")
def _cyclic_two(a, b, c):
    """The 2 x 2 cyclic matrix [[b0, a01], [a10, b1]] (each off-diagonal entry the sum of the
    neighbour and the corner coupling): returns (a01, a10, determinant)."""
    a01 = c[0] + a[0]
    a10 = a[1] + c[1]
    return a01, a10, b[0] * b[1] - a01 * a10


# ------------------------------------------------------------------ ratio form, right-hand side 1


@njit(cache=True, inline="always")
def _thomas_ones(a, b, c, x, cp, n):
    """Solve the tridiagonal system with right-hand side 1; False if a value exceeds HAZARD."""
    _thomas_factor(a, b, c, cp, n)
    x[0] = 1.0 / b[0]
    for i in range(1, n):
        x[i] = (1.0 - a[i] * x[i - 1]) / b[i]
        if x[i] > HAZARD:
            return False
    for i in range(n - 2, -1, -1):
        x[i] -= cp[i] * x[i + 1]
        if x[i] > HAZARD:
            return False
    return True


@njit(cache=True, inline="always")
def _cyclic_ones(a, b, c, x, cp, g, n):
    """The cyclic system (corners a[0], c[n-1]) with right-hand side 1; False on HAZARD."""
    if n == 2:
        a01, a10, det = _cyclic_two(a, b, c)
        x[0] = (b[1] - a01) / det
        x[1] = (b[0] - a10) / det
        return x[0] <= HAZARD and x[1] <= HAZARD
    _cyclic_factor(a, b, c, cp, g, n)
    last = n - 1
    dl = 1.0
    di = 1.0
    for i in range(last):
        x[i] = di / b[i]
        if x[i] > HAZARD:
            return False
        dl -= c[i] * di
        if i + 1 < last:
            di = 1.0 - a[i + 1] * di
    x[last] = dl / b[last]
    xl = x[last]
    if xl > HAZARD:
        return False
    for i in range(last - 1, -1, -1):
        x[i] -= cp[i] * x[i + 1] + g[i] * xl
        if x[i] > HAZARD:
            return False
    return True


# ------------------------------------------------------------------ log form


@njit(cache=True, inline="always")
def _thomas_log(a, b, c, ld, lx, cp, n):
    """Tridiagonal solve with log right-hand side ``ld`` and log solution ``lx`` (no pivoting)."""
    _thomas_factor(a, b, c, cp, n)
    lx[0] = ld[0] - math.log(b[0])
    for i in range(1, n):
        lx[i] = _logaddexp(ld[i], _log(-a[i]) + lx[i - 1]) - math.log(b[i])
    for i in range(n - 2, -1, -1):
        lx[i] = _logaddexp(lx[i], _log(-cp[i]) + lx[i + 1])


@njit(cache=True, inline="always")
def _cyclic_log(a, b, c, ld, lx, cp, g, n):
    """:func:`_cyclic_ones` with a log right-hand side ``ld`` and log solution ``lx``."""
    if n == 2:
        a01, a10, det = _cyclic_two(a, b, c)
        ldet = math.log(det)
        lx[0] = _logaddexp(ld[0] + math.log(b[1]), _log(-a01) + ld[1]) - ldet
        lx[1] = _logaddexp(ld[1] + math.log(b[0]), _log(-a10) + ld[0]) - ldet
        return
    _cyclic_factor(a, b, c, cp, g, n)
    last = n - 1
    ldl = ld[last]
    ldi = ld[0]
    for i in range(last):
        lx[i] = ldi - math.log(b[i])
        ldl = _logaddexp(ldl, _log(-c[i]) + ldi)
        if i + 1 < last:
            ldi = _logaddexp(ld[i + 1], _log(-a[i + 1]) + ldi)
    lx[last] = ldl - math.log(b[last])
    lxl = lx[last]
    for i in range(last - 1, -1, -1):
        lx[i] = _logaddexp(_logaddexp(lx[i], _log(-cp[i]) + lx[i + 1]), _log(-g[i]) + lxl)


# ------------------------------------------------------------------ either boundary


@njit(cache=True, inline="always")
def _solve_ones(a, b, c, x, cp, g, n, periodic):
    if periodic:
        return _cyclic_ones(a, b, c, x, cp, g, n)
    return _thomas_ones(a, b, c, x, cp, n)


@njit(cache=True, inline="always")
def _solve_log(a, b, c, l, u, cp, g, n, periodic):
    if periodic:
        _cyclic_log(a, b, c, l, u, cp, g, n)
    else:
        _thomas_log(a, b, c, l, u, cp, n)
