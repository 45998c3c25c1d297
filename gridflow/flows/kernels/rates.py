r"""From jump rates to the rows of one stage's matrix, on one line of the axis step.

The rates: fixed (Scharfetter–Gummel, given), or those of the density-dependent flux
:math:`\kappa\,m\,(g_{lo} - g_{hi})`, g = l - log pi, with the logarithmic-mean mobility (second
order at any Peclet number) or the log-quadratic one (second order, exact for a Gaussian); either
way only a mobility ratio is frozen within a stage, and the flux vanishes exactly at equilibrium.
The edge terms of a stage (tau times the rates, weighted by rho/y1 in the second MPRK22 stage)
give the rows of ``I - tau L`` (:func:`_assemble`), and :func:`_scale` the similarity
``e^{-l} A e^{l}`` of the ratio path.
"""

from __future__ import annotations

import math

from numba import njit

from gridflow.flows.kernels.scalar import _NEG_INF


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
def _rates(l, up, down, p, kappa, periodic, log_mean, ru, rd, n):
    """Jump rates of a line into ``ru``/``rd``: the fixed ``up``/``down`` (Scharfetter–Gummel), or
    those of the density-dependent flux at the log density ``l`` (``log_mean`` 1 or 2)."""
    if log_mean:
        _log_mean_line(l, p, kappa, periodic, ru, rd, n, log_mean)
    else:
        ru[:] = up
        rd[:] = down



# ------------------------------------------------------------------ coefficient assembly


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
def _scale(l, a, c, n, periodic):
    """Similarity e^{-l} A e^{l}: a_i *= e^{l_{i-1} - l_i}, c_i *= e^{l_{i+1} - l_i}."""
    for i in range(n):
        if periodic or i < n - 1:
            ip = i + 1 if i < n - 1 else 0
            c[i] *= math.exp(l[ip] - l[i])
        if periodic or i > 0:
            im = i - 1 if i > 0 else n - 1
            a[i] *= math.exp(l[im] - l[i])

