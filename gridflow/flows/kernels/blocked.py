"""The ratio path of the axis step on lines with walls, many lines at once.

Lines are gathered in blocks of :data:`BLOCK` (one line per column of a block, so the inner loops
run across lines and vectorise); a line whose ratio path fails (an empty cell, a jump over
:data:`~gridflow.flows.kernels.scalar.MAX_JUMP`, a value past ``HAZARD`` or below ``TINY``) is
marked and redone by :mod:`gridflow.flows.kernels.lines` in log space.
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads, njit, prange

from gridflow.flows.kernels.rates import _log_mean_rates, _log_quadratic_rates
from gridflow.flows.kernels.scalar import _NEG_INF, HAZARD, MAX_JUMP, TINY

#: Lines per block of the blocked kernel (its work arrays stay in cache).
BLOCK = 32

#: Blocks of lines from which the kernel runs on numba's threads (a parallel launch costs more than
#: it saves on fewer lines, and on a busy machine waiting for a thread can cost much more).
PARALLEL_BLOCKS = 4


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


@njit(cache=True, inline="always")
def _block_ratio(x, L, OUT, bad, n, w, invert, logs):
    """The new log density ``OUT = L + log x`` from the ratios ``x = y/rho`` of a block's sweep;
    a line with a ratio outside (TINY, HAZARD] is marked ``bad`` (that ratio taken as 1).  With
    ``invert`` (after the first stage) ``x`` is replaced by ``rho/y``, the second stage's weights;
    ``logs`` False skips ``OUT`` (the first stage of fixed rates needs only the weights)."""
    for i in range(n):
        for j in range(w):
            xv = x[i, j]
            if not (xv > TINY and xv <= HAZARD):
                bad[j] = True
                xv = 1.0
            if invert:
                x[i, j] = 1.0 / xv
                if logs:
                    OUT[i, j] = L[i, j] + math.log(xv)
            else:
                OUT[i, j] = L[i, j] + math.log(xv)


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
        _block_ratio(x, L, OUT, bad, n, w, True, log_mean > 0)   # w0 = rho / y1 in x (log y1 in OUT if needed)
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
    _block_ratio(x, L, OUT, bad, n, w, False, True)


@njit(cache=True, inline="always")
def _chunk_of_blocks(l, up, down, p, kappa, log_mean, tau, two_stage, columns, out, bad, work, badb, c, chunks):
    """Blocks c, c + chunks, c + 2 chunks, ... of the lines (see :func:`_blocked_walls`), with the
    ``(13, n, BLOCK)`` work arrays ``work`` and the block's flags ``badb``."""
    n, m = (l.shape[0], l.shape[1]) if columns else (l.shape[1], l.shape[0])
    width = work.shape[2]
    blocks = (m + width - 1) // width
    L, P, UP, DOWN, OUT, r, ri = work[0], work[1], work[2], work[3], work[4], work[5], work[6]
    EU, ED, x, cp, U1, D1 = work[7], work[8], work[9], work[10], work[11], work[12]
    for b in range(c, blocks, chunks):
        k0 = b * width
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


@njit(cache=True, parallel=True)
def _blocked_walls(l, up, down, p, kappa, log_mean, tau, two_stage, columns, out, bad, threads):
    """Ratio path of every line with walls, in blocks of BLOCK lines, on numba's threads.

    ``columns`` True: lines are the columns of the ``(n, m)`` arrays; else their rows.  The blocks
    are independent: ``chunks`` = min(``threads``, blocks) chunks take every ``chunks``-th block
    each, with work arrays of their own, so the result does not depend on the number of threads.
    """
    n, m = (l.shape[0], l.shape[1]) if columns else (l.shape[1], l.shape[0])
    width = min(BLOCK, m)   # a 1D grid (one line) gets (n, 1) work arrays
    chunks = max(1, min(threads, (m + width - 1) // width))
    work = np.empty((chunks, 13, n, width))   # each chunk's work arrays, one allocation
    badw = np.empty((chunks, width), dtype=np.bool_)
    for c in prange(chunks):
        _chunk_of_blocks(l, up, down, p, kappa, log_mean, tau, two_stage, columns, out, bad, work[c], badw[c], c, chunks)


@njit(cache=True)
def _blocked_walls_serial(l, up, down, p, kappa, log_mean, tau, two_stage, columns, out, bad):
    """:func:`_blocked_walls` on the calling thread (no thread pool: for a few lines, e.g. a 1D grid)."""
    n, m = (l.shape[0], l.shape[1]) if columns else (l.shape[1], l.shape[0])
    width = min(BLOCK, m)
    work = np.empty((13, n, width))
    badb = np.empty(width, dtype=np.bool_)
    _chunk_of_blocks(l, up, down, p, kappa, log_mean, tau, two_stage, columns, out, bad, work, badb, 0, 1)


def blocked_walls(l, up, down, p, kappa, log_mean, tau, two_stage, columns, out, bad) -> None:
    """The ratio path of every line with walls (``bad`` marks the lines it refuses): on numba's threads
    from :data:`PARALLEL_BLOCKS` blocks of lines, else on the calling thread (the same result)."""
    m = l.shape[1] if columns else l.shape[0]
    threads = get_num_threads()
    if threads > 1 and m >= PARALLEL_BLOCKS * BLOCK:
        _blocked_walls(l, up, down, p, kappa, log_mean, tau, two_stage, columns, out, bad, threads)
    else:
        _blocked_walls_serial(l, up, down, p, kappa, log_mean, tau, two_stage, columns, out, bad)
