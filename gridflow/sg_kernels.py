r"""Compiled kernels of the Fokker–Planck axis step in log space (numba, cached on disk).

One axis step advances :math:`\partial_t\rho = L_k\rho` (the Scharfetter–Gummel generator along
one axis, see :mod:`gridflow.fokker_planck`) by a time ``tau`` with MPRK22 (second order; its
first stage is implicit Euler), taking and returning the *log* density ``l = log rho``.  The two
stages solve

.. math:: (I - \tau L)\,y_1 = \rho, \qquad
          (I - \tfrac{\tau}{2} L\,\mathrm{diag}(w))\,y = \rho,\quad w = \rho/y_1 + 1,

tridiagonal (cyclic on periodic lines) M-matrices with unit column sums.  Gaussian elimination
*without pivoting* has pivots >= 1 and, apart from the pivots, only adds terms of one sign, so
it is exact to round-off in every cell relative to that cell's value, however small:

* **fast path** — the similarity :math:`\rho = e^{l} v` turns the systems into ones for the ratio
  ``v = rho'/rho`` with right-hand side 1, whose coefficients contain the densities only through
  the neighbour ratios :math:`e^{l_{i+1} - l_i}` (O(1) for a resolved density).  Then
  ``l' = l + log v``.  Used when every ``l`` on the line is finite, neighbours differ by at most
  :data:`MAX_JUMP`, and the sweep never exceeds :data:`HAZARD` (no overflow possible).
* **log path** — otherwise (zero cells ``l = -inf``, unresolved jumps, a density that grows by
  more than e^460 in one step far from equilibrium), the same elimination carries the
  right-hand side and the solution as logarithms (each update is a ``logaddexp``), the
  coefficients stay linear: slower, never over- or underflows.

Either way: ``rho' > 0`` wherever it is reachable, the mass ``sum e^{l'}`` equals ``sum e^{l}`` to
round-off, and the discrete equilibrium is reproduced to round-off.

Layouts: :func:`step_rows` solves along the last axis of a C-contiguous ``(m, n)`` array (one
line per row; a 1D grid is one row); :func:`step_cols` along the first axis.  Edge arrays
``up``/``down`` (jump rates i -> i+1 and i+1 -> i) have the shape of the state; entry ``i`` along
the solve axis is the edge (i, i+1), the last one the wrap edge of a periodic line (unused on a
reflecting line).
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


# ------------------------------------------------------------------ coefficient assembly


@njit(cache=True, inline="always")
def _assemble(up, down, s, periodic, a, b, c, n):
    """Rows of I - L diag(s) on one line (``s`` = tau per column, or tau/2 w): a sub, b diag, c super.

    On a periodic line ``a[0]`` is the corner A[0, n-1] and ``c[n-1]`` the corner A[n-1, 0].
    """
    for i in range(n):
        im = i - 1 if i > 0 else n - 1
        ip = i + 1 if i < n - 1 else 0
        dg = 0.0
        if periodic or i < n - 1:
            dg += up[i]
            c[i] = -s[ip] * down[i]
        else:
            c[i] = 0.0
        if periodic or i > 0:
            dg += down[im]
            a[i] = -s[im] * up[im]
        else:
            a[i] = 0.0
        b[i] = 1.0 + s[i] * dg


@njit(cache=True, inline="always")
def _scale(l, a, c, n, periodic):
    """Similarity e^{-l} A e^{l}: a_i *= e^{l_{i-1} - l_i}, c_i *= e^{l_{i+1} - l_i}."""
    for i in range(n):
        if periodic or i < n - 1:
            ip = i + 1 if i < n - 1 else 0
            c[i] *= math.exp(l[ip] - l[i])
        if periodic or i > 0:
            im = i - 1 if i > 0 else n - 1
            a[i] *= math.exp(l[im] - l[i])


# ------------------------------------------------------------------ linear eliminations


@njit(cache=True, inline="always")
def _thomas_ones(a, b, c, x, cp, n):
    """Solve the tridiagonal system with right-hand side 1; False if a value exceeds HAZARD."""
    m = b[0]
    cp[0] = c[0] / m
    x[0] = 1.0 / m
    for i in range(1, n):
        m = b[i] - a[i] * cp[i - 1]
        cp[i] = c[i] / m
        x[i] = (1.0 - a[i] * x[i - 1]) / m
        if x[i] > HAZARD:
            return False
    for i in range(n - 2, -1, -1):
        x[i] -= cp[i] * x[i + 1]
        if x[i] > HAZARD:
            return False
    return True


@njit(cache=True, inline="always")
def _cyclic_ones(a, b, c, x, cp, g, n):
    """The cyclic system (corners a[0], c[n-1]) with right-hand side 1; False on HAZARD.

    Gaussian elimination without pivoting carrying the fill of the last column (``g``) and of
    the last row; every update adds terms of one sign (M-matrix), pivots stay >= 1.
    """
    if n == 2:
        a01 = c[0] + a[0]
        a10 = a[1] + c[1]
        det = b[0] * b[1] - a01 * a10
        x[0] = (b[1] - a01) / det
        x[1] = (b[0] - a10) / det
        return x[0] <= HAZARD and x[1] <= HAZARD
    last = n - 1
    bl = b[last]
    dl = 1.0
    h = c[last]
    m = b[0]
    gi = a[0]
    ci = c[0]
    di = 1.0
    for i in range(last):
        if i == last - 1:
            ci += gi
            gi = 0.0
        cp[i] = ci / m
        g[i] = gi / m
        x[i] = di / m
        if x[i] > HAZARD:
            return False
        e = h / m
        if i + 1 < last:
            h = (a[last] if i + 1 == last - 1 else 0.0) - e * ci
            bl -= e * gi
        else:
            bl -= e * ci
        dl -= e * di
        if i + 1 < last:
            f = a[i + 1] / m
            m = b[i + 1] - f * ci
            gi = -f * gi
            di = 1.0 - f * di
            ci = c[i + 1]
    x[last] = dl / bl
    xl = x[last]
    if xl > HAZARD:
        return False
    for i in range(last - 1, -1, -1):   # g[last - 1] = 0: its coupling to x[last] is in cp
        x[i] -= cp[i] * x[i + 1] + g[i] * xl
        if x[i] > HAZARD:
            return False
    return True


# ------------------------------------------------------------------ log-space eliminations


@njit(cache=True, inline="always")
def _thomas_log(a, b, c, ld, lx, cp, n):
    """Tridiagonal solve with log right-hand side ``ld`` and log solution ``lx`` (no pivoting)."""
    m = b[0]
    cp[0] = c[0] / m
    lx[0] = ld[0] - math.log(m)
    for i in range(1, n):
        m = b[i] - a[i] * cp[i - 1]
        cp[i] = c[i] / m
        lx[i] = _logaddexp(ld[i], _log(-a[i]) + lx[i - 1]) - math.log(m)
    for i in range(n - 2, -1, -1):
        lx[i] = _logaddexp(lx[i], _log(-cp[i]) + lx[i + 1])


@njit(cache=True, inline="always")
def _cyclic_log(a, b, c, ld, lx, cp, g, n):
    """:func:`_cyclic_ones` with a log right-hand side ``ld`` and log solution ``lx``."""
    if n == 2:
        a01 = c[0] + a[0]
        a10 = a[1] + c[1]
        ldet = math.log(b[0] * b[1] - a01 * a10)
        lx[0] = _logaddexp(ld[0] + math.log(b[1]), _log(-a01) + ld[1]) - ldet
        lx[1] = _logaddexp(ld[1] + math.log(b[0]), _log(-a10) + ld[0]) - ldet
        return
    last = n - 1
    bl = b[last]
    ldl = ld[last]
    h = c[last]
    m = b[0]
    gi = a[0]
    ci = c[0]
    ldi = ld[0]
    for i in range(last):
        if i == last - 1:
            ci += gi
            gi = 0.0
        cp[i] = ci / m
        g[i] = gi / m
        lx[i] = ldi - math.log(m)
        e = h / m
        if i + 1 < last:
            h = (a[last] if i + 1 == last - 1 else 0.0) - e * ci
            bl -= e * gi
        else:
            bl -= e * ci
        ldl = _logaddexp(ldl, _log(-e) + ldi)
        if i + 1 < last:
            f = a[i + 1] / m
            m = b[i + 1] - f * ci
            gi = -f * gi
            ldi = _logaddexp(ld[i + 1], _log(-f) + ldi)
            ci = c[i + 1]
    lx[last] = ldl - math.log(bl)
    lxl = lx[last]
    for i in range(last - 1, -1, -1):
        lx[i] = _logaddexp(_logaddexp(lx[i], _log(-cp[i]) + lx[i + 1]), _log(-g[i]) + lxl)


# ------------------------------------------------------------------ one line


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


@njit(cache=True)
def _line_fast(l, up, down, tau, periodic, two_stage, out, s, a, b, c, u, cp, g):
    """The ratio path; returns False (``out`` untouched) when the line needs the log path."""
    n = l.shape[0]
    for i in range(n):
        s[i] = tau
    _assemble(up, down, s, periodic, a, b, c, n)
    _scale(l, a, c, n, periodic)
    if not _solve_ones(a, b, c, u, cp, g, n, periodic):
        return False
    if two_stage:
        for i in range(n):
            s[i] = 0.5 * tau * (1.0 / u[i] + 1.0)
        _assemble(up, down, s, periodic, a, b, c, n)
        _scale(l, a, c, n, periodic)
        if not _solve_ones(a, b, c, u, cp, g, n, periodic):
            return False
    for i in range(n):
        out[i] = l[i] + math.log(u[i])
    return True


@njit(cache=True)
def _line_log(l, up, down, tau, periodic, two_stage, out, s, a, b, c, u, cp, g):
    """The log path: the same stages with log right-hand sides and solutions."""
    n = l.shape[0]
    for i in range(n):
        s[i] = tau
    _assemble(up, down, s, periodic, a, b, c, n)
    _solve_log(a, b, c, l, u, cp, g, n, periodic)
    if two_stage:
        for i in range(n):   # w = rho / y1 + 1 (1 where rho = 0)
            s[i] = 0.5 * tau * (1.0 + (math.exp(l[i] - u[i]) if l[i] > _NEG_INF else 0.0))
        _assemble(up, down, s, periodic, a, b, c, n)
        _solve_log(a, b, c, l, u, cp, g, n, periodic)
    for i in range(n):
        out[i] = u[i]


# ------------------------------------------------------------------ blocked fast path, walls


#: Lines per block of the blocked kernel (its work arrays stay in cache).
BLOCK = 32


@njit(cache=True)
def _block_walls(L, UP, DOWN, w, tau, two_stage, OUT, bad, r, ri, s, x, cp):
    """The ratio path on the first ``w`` columns of the ``(n, width)`` block ``L`` (one line per
    column, walls), all lines at once so the inner loops run across lines.

    ``bad[j]`` is set for a line that needs the log path (its ``OUT`` column is then garbage).
    """
    n = L.shape[0]
    for j in range(w):
        bad[j] = not (L[0, j] > _NEG_INF and L[0, j] < np.inf)
    for i in range(n - 1):
        for j in range(w):
            d = L[i + 1, j] - L[i, j]
            if not abs(d) <= MAX_JUMP:
                bad[j] = True
                d = 0.0
            e = math.exp(d)
            r[i, j] = e
            ri[i, j] = 1.0 / e
    for i in range(n):
        for j in range(w):
            s[i, j] = tau
    for stage in range(2 if two_stage else 1):
        if stage == 1:
            for i in range(n):
                for j in range(w):
                    xv = x[i, j]
                    s[i, j] = 0.5 * tau * (1.0 / xv + 1.0) if xv > 0.0 else tau
        for j in range(w):
            inv = 1.0 / (1.0 + s[0, j] * UP[0, j])
            cp[0, j] = -s[1, j] * DOWN[0, j] * r[0, j] * inv if n > 1 else 0.0
            x[0, j] = inv
        for i in range(1, n - 1):
            for j in range(w):
                a = -s[i - 1, j] * UP[i - 1, j] * ri[i - 1, j]
                inv = 1.0 / (1.0 + s[i, j] * (UP[i, j] + DOWN[i - 1, j]) - a * cp[i - 1, j])
                cp[i, j] = -s[i + 1, j] * DOWN[i, j] * r[i, j] * inv
                x[i, j] = (1.0 - a * x[i - 1, j]) * inv
        if n > 1:
            i = n - 1
            for j in range(w):
                a = -s[i - 1, j] * UP[i - 1, j] * ri[i - 1, j]
                x[i, j] = (1.0 - a * x[i - 1, j]) / (1.0 + s[i, j] * DOWN[i - 1, j] - a * cp[i - 1, j])
        for i in range(n - 2, -1, -1):
            for j in range(w):
                x[i, j] -= cp[i, j] * x[i + 1, j]
        for i in range(n):
            for j in range(w):
                if not (x[i, j] > TINY and x[i, j] <= HAZARD):
                    bad[j] = True
    for i in range(n):
        for j in range(w):
            xv = x[i, j]
            OUT[i, j] = L[i, j] + math.log(xv) if xv > 0.0 else 0.0


@njit(cache=True)
def _blocked_walls(l, up, down, tau, two_stage, columns, out, bad):
    """Ratio path of every line with walls, in blocks of BLOCK lines.

    ``columns`` True: lines are the columns of the ``(n, m)`` arrays; else their rows.
    """
    n, m = (l.shape[0], l.shape[1]) if columns else (l.shape[1], l.shape[0])
    width = min(BLOCK, m)   # a 1D grid (one line) gets (n, 1) work arrays
    L = np.empty((n, width))
    UP = np.empty((n, width))
    DOWN = np.empty((n, width))
    OUT = np.empty((n, width))
    r = np.empty((n, width))
    ri = np.empty((n, width))
    s = np.empty((n, width))
    x = np.empty((n, width))
    cp = np.empty((n, width))
    badb = np.empty(width, dtype=np.bool_)
    for k0 in range(0, m, width):
        w = min(width, m - k0)
        if columns:
            for i in range(n):
                for j in range(w):
                    L[i, j] = l[i, k0 + j]
                    UP[i, j] = up[i, k0 + j]
                    DOWN[i, j] = down[i, k0 + j]
        else:
            for j in range(w):
                for i in range(n):
                    L[i, j] = l[k0 + j, i]
                    UP[i, j] = up[k0 + j, i]
                    DOWN[i, j] = down[k0 + j, i]
        _block_walls(L, UP, DOWN, w, tau, two_stage, OUT, badb, r, ri, s, x, cp)
        for j in range(w):
            bad[k0 + j] = badb[j]
        if columns:
            for i in range(n):
                for j in range(w):
                    out[i, k0 + j] = OUT[i, j]
        else:
            for j in range(w):
                for i in range(n):
                    out[k0 + j, i] = OUT[i, j]


@njit(cache=True)
def _lines_one_by_one(l, up, down, tau, periodic, two_stage, log_only, out, todo):
    """Lines (rows) marked in ``todo`` one at a time: the ratio path on periodic lines (unless
    ``log_only``), else the log path."""
    m, n = l.shape
    s = np.empty(n)
    a = np.empty(n)
    b = np.empty(n)
    c = np.empty(n)
    u = np.empty(n)
    cp = np.empty(n)
    g = np.empty(n)
    slow = 0
    for k in range(m):
        if not todo[k]:
            continue
        lk = l[k]
        if periodic and not log_only and _fast_ok(lk, n, periodic) and _line_fast(
                lk, up[k], down[k], tau, periodic, two_stage, out[k], s, a, b, c, u, cp, g):
            continue
        slow += 1
        _line_log(lk, up[k], down[k], tau, periodic, two_stage, out[k], s, a, b, c, u, cp, g)
    return slow


def step_rows(l, up, down, tau, periodic, two_stage, log_only=False):
    """Axis step along the last axis of the ``(m, n)`` log density ``l``.

    ``two_stage`` False gives implicit Euler (first order) instead of MPRK22; ``log_only`` forces
    the log path (for testing).  Returns ``(new_l, number of lines done by the log path)``.
    """
    out = np.empty_like(l)
    todo = np.ones(l.shape[0], dtype=np.bool_)
    if not (periodic or log_only):
        _blocked_walls(l, up, down, tau, two_stage, False, out, todo)
    slow = _lines_one_by_one(l, up, down, tau, periodic, two_stage, log_only, out, todo) if todo.any() else 0
    return out, slow


@njit(cache=True)
def _redo_cols(l, up, down, tau, two_stage, out, bad):
    n = l.shape[0]
    s = np.empty(n)
    a = np.empty(n)
    b = np.empty(n)
    c = np.empty(n)
    u = np.empty(n)
    cp = np.empty(n)
    g = np.empty(n)
    lo = np.empty(n)
    slow = 0
    for j in range(l.shape[1]):
        if bad[j]:
            slow += 1
            _line_log(np.ascontiguousarray(l[:, j]), np.ascontiguousarray(up[:, j]),
                      np.ascontiguousarray(down[:, j]), tau, False, two_stage, lo, s, a, b, c, u, cp, g)
            out[:, j] = lo
    return slow


def step_cols(l, up, down, tau, periodic, two_stage, log_only=False):
    """:func:`step_rows` along the first axis of the ``(n, m)`` log density ``l`` (lines are columns).

    On lines with walls all columns go through the ratio path at once (no transposes); the
    columns that need it are redone by the log path.
    """
    if periodic or log_only:
        out, slow = step_rows(np.ascontiguousarray(l.T), np.ascontiguousarray(up.T),
                              np.ascontiguousarray(down.T), tau, periodic, two_stage, log_only)
        return np.ascontiguousarray(out.T), slow
    out = np.empty_like(l)
    bad = np.zeros(l.shape[1], dtype=np.bool_)
    _blocked_walls(l, up, down, tau, two_stage, True, out, bad)
    slow = _redo_cols(l, up, down, tau, two_stage, out, bad) if bad.any() else 0
    return out, slow
