r"""Compiled kernels of the Fokker–Planck axis step in log space (numba, cached on disk).

One axis step advances :math:`\partial_t\rho = L_k\rho` (the Scharfetter–Gummel generator along
one axis, see :mod:`gridflow.flows.fokker_planck`) by a time ``tau`` with MPRK22 (second order; its
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
def _assemble(eu, ed, periodic, a, b, c, n):
    """Rows of I - tau L on one line from the edge terms: ``eu[i]`` is the (column-weighted)
    jump term i -> i+1, ``ed[i]`` the term i+1 -> i.  a sub, b diagonal, c super-diagonal.

    On a periodic line ``a[0]`` is the corner A[0, n-1] and ``c[n-1]`` the corner A[n-1, 0].
    """
    for i in range(n):
        im = i - 1 if i > 0 else n - 1
        dg = 1.0
        if periodic or i < n - 1:
            dg += eu[i]
            c[i] = -ed[i]
        else:
            c[i] = 0.0
        if periodic or i > 0:
            dg += ed[im]
            a[i] = -eu[im]
        else:
            a[i] = 0.0
        b[i] = dg


@njit(cache=True, inline="always")
def _phi(z):
    """phi(z) = (e^z - 1)/z = Lambda(1, e^z), the logarithmic mean relative to its first argument;
    phi(-inf) = 0, phi(NaN) = 1 (two empty cells), capped at phi(700)."""
    if z == _NEG_INF:
        return 0.0
    if not z == z:
        return 1.0
    if abs(z) < 1e-6:
        return 1.0 + z * (0.5 + z / 6.0)
    zc = min(z, 700.0)
    return math.expm1(zc) / zc


@njit(cache=True, inline="always")
def _log_mean_rates(dl, dp, kappa):
    """Jump rates (up, down) of the log-mean flux across one edge.

    With g = l - p and Lambda the logarithmic mean, the flux lo -> hi is
    kappa Lambda(rho_lo, rho_hi) (g_lo - g_hi) = kappa [(rho_lo - rho_hi) + Lambda dp], since
    Lambda (l_lo - l_hi) = rho_lo - rho_hi: a linear diffusion plus a drift dp = p_hi - p_lo whose
    mobility Lambda is taken from the upwind cell, Lambda = phi(dl) rho_lo (dp > 0) or
    phi(-dl) rho_hi (dp < 0), dl = l_hi - l_lo.  As jump rates: up = kappa (1 + phi(dl) dp^+),
    down = kappa (1 + phi(-dl) dp^-).  Only the mobility ratio phi is frozen within a stage, so
    the diffusion stays fully implicit (steps not limited by h^2); at rho = pi the flux vanishes
    exactly.
    """
    if dp > 0.0:
        return kappa * (1.0 + _phi(dl) * dp), kappa
    if dp < 0.0:
        return kappa, kappa * (1.0 - _phi(-dl) * dp)
    return kappa, kappa


@njit(cache=True, inline="always")
def _log_quadratic_rates(lm, l0, l1, l2, dp, kappa):
    """Jump rates (up, down) across the edge (lo, hi) with the log-quadratic mobility.

    ``l0``, ``l1`` are log rho at lo and hi, ``lm`` and ``l2`` their outer neighbours.  The
    mobility m is rho at the edge from the quadratic through the four values,
    m = exp((l0 + l1)/2 - c h^2/8), c h^2 = ((l2 - l1) - (l0 - lm))/2: exact for a Gaussian, so
    the flux kappa m (g_lo - g_hi) is second order with a far smaller constant than the log mean
    in the tails, where d log rho/dx is large.  Written as the log-mean split: diffusion
    r (rho_lo - rho_hi), r = m/Lambda, plus the drift m dp carried by the upwind cell (m/rho_lo =
    exp(dl/2 - e), m/rho_hi = exp(-dl/2 - e)), with r and the ratios frozen within a stage.
    g constant gives zero flux (exact equilibrium).  Falls back to the log mean where log rho is
    not resolved (|dl| >= 30, |c h^2/8| >= 5, empty cells).
    """
    dl = l1 - l0
    e = 0.0625 * ((l2 - l1) - (l0 - lm))
    if not (abs(dl) < 30.0 and abs(e) < 5.0):
        # neighbours e^30 apart or a kink: log rho is not resolved there, and a quadratic fit
        # means nothing; the log mean is robust (each edge's flux vanishes at equilibrium
        # whichever mobility it uses, so mixing them keeps the exact discrete equilibrium)
        return _log_mean_rates(dl, dp, kappa)
    z = 0.5 * dl
    az = abs(z)
    if az < 1e-6:
        shape = 1.0
    else:
        shape = 2.0 * az * math.exp(-az) / -math.expm1(-2.0 * az)     # z / sinh z
    r = kappa * math.exp(-e) * shape
    if dp > 0.0:
        return r + kappa * math.exp(min(z - e, 700.0)) * dp, r
    if dp < 0.0:
        return r, r - kappa * math.exp(min(-z - e, 700.0)) * dp
    return r, r


@njit(cache=True)
def _log_mean_line(l, p, kappa, periodic, up, down, n, mode):
    """Rates of the density-dependent flux on one line (last edge: wrap, or none at a wall):
    ``mode`` 1 the log mean, 2 the log-quadratic mobility (outer neighbours mirrored at walls)."""
    for i in range(n):
        if i == n - 1 and not periodic:
            up[i] = 0.0
            down[i] = 0.0
        else:
            ip = i + 1 if i < n - 1 else 0
            if mode == 2:
                if periodic:
                    im = i - 1 if i > 0 else n - 1
                    ipp = ip + 1 if ip < n - 1 else 0
                else:
                    im = i - 1 if i > 0 else 0
                    ipp = ip + 1 if ip < n - 1 else n - 1
                up[i], down[i] = _log_quadratic_rates(l[im], l[i], l[ip], l[ipp], p[ip] - p[i], kappa)
            else:
                up[i], down[i] = _log_mean_rates(l[ip] - l[i], p[ip] - p[i], kappa)


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


@njit(cache=True, inline="always")
def _stage_edges(up, down, up1, down1, w0, tau, two_stage_weights, eu, ed, n):
    """Edge terms of a stage: tau (up, down) for the first; for the second
    tau/2 (up w0_i + up1, down w0_{i+1} + down1), w0 = rho / y1 (rates ``up1``/``down1`` at y1)."""
    for i in range(n):
        if two_stage_weights:
            ip = i + 1 if i < n - 1 else 0
            eu[i] = 0.5 * tau * (up[i] * w0[i] + up1[i])
            ed[i] = 0.5 * tau * (down[i] * w0[ip] + down1[i])
        else:
            eu[i] = tau * up[i]
            ed[i] = tau * down[i]


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


@njit(cache=True, inline="always")
def _rates(l, up, down, p, kappa, periodic, log_mean, ru, rd, n):
    """Jump rates of a line into ``ru``/``rd``: the fixed ``up``/``down`` (Scharfetter–Gummel), or
    those of the density-dependent flux at the log density ``l`` (``log_mean`` 1 or 2)."""
    if log_mean:
        _log_mean_line(l, p, kappa, periodic, ru, rd, n, log_mean)
    else:
        ru[:] = up
        rd[:] = down


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


# ------------------------------------------------------------------ blocked fast path, walls


#: Lines per block of the blocked kernel (its work arrays stay in cache).
BLOCK = 32


@njit(cache=True, inline="always")
def _block_log_mean(L, P, kappa, w, UP, DOWN, mode):
    n = L.shape[0]
    for i in range(n - 1):
        if mode == 2:
            im = i - 1 if i > 0 else 0
            ipp = i + 2 if i + 2 < n else n - 1
            for j in range(w):
                UP[i, j], DOWN[i, j] = _log_quadratic_rates(L[im, j], L[i, j], L[i + 1, j], L[ipp, j],
                                                            P[i + 1, j] - P[i, j], kappa)
        else:
            for j in range(w):
                UP[i, j], DOWN[i, j] = _log_mean_rates(L[i + 1, j] - L[i, j], P[i + 1, j] - P[i, j], kappa)
    for j in range(w):
        UP[n - 1, j] = 0.0
        DOWN[n - 1, j] = 0.0


@njit(cache=True, inline="always")
def _block_sweep(EU, ED, r, ri, x, cp, w):
    """Solve e^{-l} A e^{l} x = 1 for the wall lines of a block, A from the edge terms."""
    n = EU.shape[0]
    for j in range(w):
        inv = 1.0 / (1.0 + EU[0, j])
        cp[0, j] = -ED[0, j] * r[0, j] * inv
        x[0, j] = inv
    for i in range(1, n):
        for j in range(w):
            a = -EU[i - 1, j] * ri[i - 1, j]
            inv = 1.0 / (1.0 + EU[i, j] + ED[i - 1, j] - a * cp[i - 1, j])
            cp[i, j] = -ED[i, j] * r[i, j] * inv
            x[i, j] = (1.0 - a * x[i - 1, j]) * inv
    for i in range(n - 2, -1, -1):
        for j in range(w):
            x[i, j] -= cp[i, j] * x[i + 1, j]


@njit(cache=True)
def _block_walls(L, UP, DOWN, P, kappa, log_mean, w, tau, two_stage, OUT, bad, r, ri, EU, ED, x, cp, U1, D1):
    """The ratio path on the first ``w`` columns of the ``(n, width)`` block ``L`` (one line per
    column, walls), all lines at once so the inner loops run across lines.

    ``bad[j]`` is set for a line that needs the log path (its ``OUT`` column is then garbage).
    With ``log_mean`` the rates ``UP``/``DOWN`` are computed here from ``L`` and ``P``.
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
    for j in range(w):
        r[n - 1, j] = 1.0
    if log_mean:
        _block_log_mean(L, P, kappa, w, UP, DOWN, log_mean)
    for i in range(n):
        for j in range(w):
            EU[i, j] = tau * UP[i, j]
            ED[i, j] = tau * DOWN[i, j]
    _block_sweep(EU, ED, r, ri, x, cp, w)
    if two_stage:
        for i in range(n):
            for j in range(w):
                xv = x[i, j]
                if not (xv > TINY and xv <= HAZARD):
                    bad[j] = True
                    xv = 1.0
                x[i, j] = 1.0 / xv                     # w0 = rho / y1
                OUT[i, j] = L[i, j] - math.log(x[i, j])  # log y1
        if log_mean:
            _block_log_mean(OUT, P, kappa, w, U1, D1, log_mean)
        for i in range(n):
            ip = i + 1 if i < n - 1 else i
            for j in range(w):
                u1 = U1[i, j] if log_mean else UP[i, j]
                d1 = D1[i, j] if log_mean else DOWN[i, j]
                EU[i, j] = 0.5 * tau * (UP[i, j] * x[i, j] + u1)
                ED[i, j] = 0.5 * tau * (DOWN[i, j] * x[ip, j] + d1)
        _block_sweep(EU, ED, r, ri, x, cp, w)
    for i in range(n):
        for j in range(w):
            xv = x[i, j]
            if not (xv > TINY and xv <= HAZARD):
                bad[j] = True
                xv = 1.0
            OUT[i, j] = L[i, j] + math.log(xv)


@njit(cache=True)
def _blocked_walls(l, up, down, p, kappa, log_mean, tau, two_stage, columns, out, bad):
    """Ratio path of every line with walls, in blocks of BLOCK lines.

    ``columns`` True: lines are the columns of the ``(n, m)`` arrays; else their rows.
    """
    n, m = (l.shape[0], l.shape[1]) if columns else (l.shape[1], l.shape[0])
    width = min(BLOCK, m)   # a 1D grid (one line) gets (n, 1) work arrays
    work = np.empty((13, n, width))   # the block's work arrays, one allocation
    L, P, UP, DOWN, OUT, r, ri = work[0], work[1], work[2], work[3], work[4], work[5], work[6]
    EU, ED, x, cp, U1, D1 = work[7], work[8], work[9], work[10], work[11], work[12]
    badb = np.empty(width, dtype=np.bool_)
    for k0 in range(0, m, width):
        w = min(width, m - k0)
        if columns:
            for i in range(n):
                for j in range(w):
                    L[i, j] = l[i, k0 + j]
                    if log_mean:
                        P[i, j] = p[i, k0 + j]
                    else:
                        UP[i, j] = up[i, k0 + j]
                        DOWN[i, j] = down[i, k0 + j]
        else:
            for j in range(w):
                for i in range(n):
                    L[i, j] = l[k0 + j, i]
                    if log_mean:
                        P[i, j] = p[k0 + j, i]
                    else:
                        UP[i, j] = up[k0 + j, i]
                        DOWN[i, j] = down[k0 + j, i]
        _block_walls(L, UP, DOWN, P, kappa, log_mean, w, tau, two_stage, OUT, badb, r, ri, EU, ED, x, cp, U1, D1)
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


# ------------------------------------------------------------------ entry points


def _operands(l, up, down, log_target, mean):
    """(up, down, p, mode): mode 0 the fixed rates; with ``log_target`` the density-dependent flux,
    mode ``mean`` (1 log mean, 2 log-quadratic; rates unused)."""
    if log_target is None:
        return up, down, l, 0
    if mean not in (1, 2):
        raise ValueError(f"mean must be 1 (log mean) or 2 (log-quadratic), got {mean!r}")
    return l, l, np.ascontiguousarray(log_target, dtype=float), int(mean)


def step_rows(l, up, down, tau, periodic, two_stage, log_only=False, log_target=None, kappa=0.0, mean=1):
    """Axis step along the last axis of the ``(m, n)`` log density ``l``.

    Scharfetter–Gummel: the fixed rates ``up``/``down``; with ``log_target`` (the log of the
    target on the same lines) the log-mean flux ``kappa Lambda(rho_i, rho_j) (g_i - g_j)``,
    g = l - log_target, whose rates depend on the density (re-evaluated at the first stage);
    ``mean`` 2 takes the log-quadratic mobility instead of the log mean.
    ``two_stage`` False gives implicit Euler (first order) instead of MPRK22; ``log_only`` forces
    the log path (for testing).  Returns ``(new_l, number of lines done by the log path)``.
    """
    up, down, p, log_mean = _operands(l, up, down, log_target, mean)
    out = np.empty_like(l)
    todo = np.ones(l.shape[0], dtype=np.bool_)
    if not (periodic or log_only):
        _blocked_walls(l, up, down, p, float(kappa), log_mean, tau, two_stage, False, out, todo)
    slow = (_lines_one_by_one(l, up, down, p, float(kappa), log_mean, tau, periodic, two_stage, log_only, out, todo)
            if todo.any() else 0)
    return out, slow


def step_cols(l, up, down, tau, periodic, two_stage, log_only=False, log_target=None, kappa=0.0, mean=1):
    """:func:`step_rows` along the first axis of the ``(n, m)`` log density ``l`` (lines are columns).

    On lines with walls all columns go through the ratio path at once (no transposes); the
    columns that need it are redone, transposed, by the log path.
    """
    up_, down_, p, log_mean = _operands(l, up, down, log_target, mean)
    if not (periodic or log_only):
        out = np.empty_like(l)
        bad = np.zeros(l.shape[1], dtype=np.bool_)
        _blocked_walls(l, up_, down_, p, float(kappa), log_mean, tau, two_stage, True, out, bad)
        if not bad.any():
            return out, 0
    t = np.ascontiguousarray
    if periodic or log_only:
        lines, slow = step_rows(t(l.T), None if log_mean else t(up.T), None if log_mean else t(down.T), tau,
                                periodic, two_stage, log_only, t(p.T) if log_mean else None, kappa, mean)
        return t(lines.T), slow
    idx = np.flatnonzero(bad)                 # only these columns, by the log path
    lines, slow = step_rows(t(l.T[idx]), None if log_mean else t(up.T[idx]), None if log_mean else t(down.T[idx]),
                            tau, periodic, two_stage, True, t(p.T[idx]) if log_mean else None, kappa, mean)
    out[:, idx] = lines.T
    return out, slow
