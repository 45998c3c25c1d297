r"""The Scharfetter–Gummel axis step on lines with walls by LAPACK, through the symmetrised matrix.

The compiled kernels (:mod:`gridflow.flows.kernels`, numba) cost about 0.6 s of start-up per
process, which is most of a small run.  This module does the same MPRK22 axis step (and its first
stage, implicit Euler) with numpy and two LAPACK calls per stage for all lines at once; grids
below :data:`gridflow.core.backend.COMPILED_CELLS` cells use it.

The stage matrices ``A = I - tau L diag(w)`` (w = 1 in the first stage; in the second
w = 1 + rho/y1 and tau halved) are tridiagonal M-matrices of a *reversible* chain: with the jump
rates :math:`\alpha_i = \tau\,up_i\,w_i` (i -> i+1) and :math:`\beta_i = \tau\,down_i\,w_{i+1}`
(i+1 -> i), the diagonal :math:`D = \mathrm{diag}(d)` with :math:`(d_{i+1}/d_i)^2 = \alpha_i/\beta_i`
makes

.. math:: S = D^{-1} A D, \quad S_{ii} = 1 + \alpha_i + \beta_{i-1}, \quad
          S_{i,i+1} = S_{i+1,i} = -\sqrt{\alpha_i \beta_i}

symmetric positive definite (eigenvalues >= 1).  ``A y = rho`` becomes ``S z = f``, ``f = rho/d``,
``y = d z``, factored by ``dpttrf`` (LDL^T without pivoting: the elimination of the compiled
kernels, whose pivots are similarity invariant) and solved by ``dpttrs``.  With off-diagonals <= 0
both substitutions add terms of one sign only, so ``z`` is exact to round-off in every cell
relative to its own value.  ``log d`` telescopes: ``log d_i = sum_{k<i} (log up_k - log down_k)/2``
in the first stage (computed once per set of rates, :class:`SymmetrisedRates`) and that minus
``(log w_i)/2`` in the second, so the second stage needs no logarithms: its right-hand side is
``f sqrt(w)`` and ``w = 1 + f/z``.  The state stays the log density: per line
``f = exp(l - log d - c)``, ``c`` the line's maximum of ``l - log d``, and the new
``l' = l + log(z'/f')`` from the ratio of the last stage.  ``f`` is formed as a running product
of the neighbour ratios ``e^{l_{i+1} - l_i} d_i/d_{i+1}``, so that every coupling of the matrix the
solve effectively inverts is exact to round-off, whatever the size of ``l`` or ``log d`` (their
rounding would otherwise enter the column sums, i.e. the mass).

A line is taken only where this is exact: finite ``l``, interior rates positive and finite, ``f``
within e^-:data:`SPAN` of the line's maximum, neighbours within e^:data:`MAX_JUMP`, ratios ``y/rho`` within the compiled kernels' bounds
(:data:`TINY`, :data:`HAZARD`) and ``z`` a normal number.  The others are reported and redone by
the compiled kernels (ratio or log path: far tails at e^-800, empty cells).  Positivity, the mass
(unit column sums of ``A``) and the discrete equilibrium (``A pi = pi``) hold to round-off as there.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

#: Largest span (in e-folds) of a line's scaled right-hand side ``log f``: e^-600 / (largest
#: diagonal entry) stays far above the smallest normal double (e^-708), so no ``z`` is subnormal.
SPAN = 600.0
#: Bounds of the ratio y/rho, as in :mod:`gridflow.flows.kernels.scalar` (tests check they agree):
#: below TINY its logarithm would lose precision, above HAZARD the second stage could overflow.
TINY = 1e-280
HAZARD = 1e200
#: Largest log-density difference between neighbours taken (as the compiled ratio path's MAX_JUMP).
MAX_JUMP = 200.0


_LAPACK: tuple | None = None


def _lapack():
    """``(dpttrf, dpttrs)`` of scipy's LAPACK.

    Importing ``scipy.linalg`` costs 0.15-0.2 s (its package imports scipy's array-API layer), a
    third of a small run; the two routines live in its compiled extension ``_flapack``, which needs
    only numpy.  So, unless scipy.linalg is loaded already, the extension is loaded from its file
    directly (and left out of ``sys.modules``: a later ``import scipy.linalg`` loads it as usual).
    Anything unexpected (another layout, a loader error) falls back to the plain import.
    """
    global _LAPACK
    if _LAPACK is None:
        _LAPACK = _flapack_direct() if "scipy.linalg" not in sys.modules else None
        if _LAPACK is None:
            from scipy.linalg.lapack import dpttrf, dpttrs

            _LAPACK = (dpttrf, dpttrs)
    return _LAPACK


def _flapack_direct() -> tuple | None:
    try:
        import importlib.machinery
        import importlib.util
        from pathlib import Path

        import scipy

        name = "scipy.linalg._flapack"
        folder = Path(scipy.__file__).parent / "linalg"
        suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
        path = next(p for p in folder.glob("_flapack.*") if p.name.endswith(suffixes))
        loader = importlib.machinery.ExtensionFileLoader(name, str(path))
        module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(name, path, loader=loader))
        loader.exec_module(module)
        sys.modules.pop(name, None)
        return module.dpttrf, module.dpttrs
    except Exception:                     # noqa: BLE001 - any failure: the plain import instead
        sys.modules.pop("scipy.linalg._flapack", None)
        return None


#: smallest solution value taken: a normal double with room below (no precision lost)
_SMALLEST = 1e-300


@dataclass(frozen=True)
class SymmetrisedRates:
    """What the symmetrised step needs of fixed rates, computed once per set of rates.

    ``lines``: ``(m, n)`` lines with walls, one per row.  ``ok`` marks the lines whose interior
    rates are positive and finite; on them ``log_d`` is the half log ratio summed along the line
    (``log d`` of the first stage), ``inverse_ratio`` the neighbour ratio ``d_i / d_{i+1} =
    sqrt(down_i / up_i)`` of each edge, ``geo`` the geometric mean ``sqrt(up down)`` of each edge (0 on
    the last, unused one) and ``outflow`` the total rate out of each cell, ``up_i + down_{i-1}``.
    """

    ok: np.ndarray
    log_d: np.ndarray
    inverse_ratio: np.ndarray
    geo: np.ndarray
    outflow: np.ndarray

    @classmethod
    def from_rates(cls, up: np.ndarray, down: np.ndarray) -> SymmetrisedRates:
        u, d = up[:, :-1], down[:, :-1]
        with np.errstate(invalid="ignore"):
            ok = np.all((u > 0) & (d > 0) & (u < np.inf) & (d < np.inf), axis=1)
        u, d = np.where(ok[:, None], u, 1.0), np.where(ok[:, None], d, 1.0)
        log_d = np.zeros(up.shape)
        np.cumsum(0.5 * (np.log(u) - np.log(d)), axis=1, out=log_d[:, 1:])
        geo = np.zeros(up.shape)
        geo[:, :-1] = np.sqrt(u * d)
        outflow = np.zeros(up.shape)
        outflow[:, :-1] = u
        outflow[:, 1:] += d
        return cls(ok=ok, log_d=log_d, inverse_ratio=np.sqrt(d / u), geo=geo, outflow=outflow)


def _solve(diag: np.ndarray, off: np.ndarray, f: np.ndarray) -> np.ndarray | None:
    """z of ``S z = f`` for the (m, n) lines, S from its diagonal and the off-diagonal ``off[:, i]``
    between cells i and i+1 (``off[:, -1]`` is set to 0: the lines are independent blocks); None
    if LAPACK finds S not positive definite."""
    dpttrf, dpttrs = _lapack()
    off[:, -1] = 0.0
    d, e, info = dpttrf(diag.ravel(), off.ravel()[:-1], overwrite_d=1, overwrite_e=1)
    if info != 0:
        return None
    z, info = dpttrs(d, e, f.reshape(-1, 1), overwrite_b=1)
    return z.reshape(f.shape) if info == 0 else None


def _check(z: np.ndarray, f: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """The ratios y/rho = z/f; lines with a ratio outside (TINY, HAZARD] or a z below
    :data:`_SMALLEST` (or NaN, which fails every comparison) are cleared in ``ok`` (ratios set to 1)."""
    x = z / f
    ok &= (x.min(axis=1) > TINY) & (x.max(axis=1) <= HAZARD) & (z.min(axis=1) >= _SMALLEST)
    x[~ok] = 1.0
    return x


def symmetrised_walls(l: np.ndarray, rates: SymmetrisedRates, tau: float, two_stage: bool
                      ) -> tuple[np.ndarray, np.ndarray]:
    """MPRK22 (``two_stage``) or implicit Euler axis step of the ``(m, n)`` log density ``l``, one
    line with walls per row, with the fixed rates behind ``rates``.  Returns ``(new l, taken)``:
    rows not ``taken`` are garbage and must be redone by the compiled kernels.
    """
    l = np.asarray(l, dtype=float)
    m, n = l.shape
    if n == 1:
        return l.copy(), np.ones(m, dtype=bool)
    with np.errstate(invalid="ignore"):                      # -inf - (-inf) on an empty line: NaN
        s = l - rates.log_d
        first = s[:, 0] - s.max(axis=1)
        jump = np.diff(l, axis=1)
        ok = (rates.ok & (s.min(axis=1) >= s.max(axis=1) - SPAN)  # also False on NaN, -inf, +inf
              & (np.abs(jump).max(axis=1) <= MAX_JUMP))
    first[~ok] = 0.0
    jump[~ok] = 0.0
    # f = rho/d scaled per line to a largest value of about 1, as a running product of the neighbour
    # ratios (f_{i+1}/f_i = e^{l_{i+1} - l_i} d_i/d_{i+1}): each ratio, hence each coupling of the
    # matrix the solve effectively inverts, exact to round-off however large |log d| or |l| is
    # (exp(l - log d) would carry their rounding, eps |log d|, into the column sums: the mass)
    f = np.empty_like(l)
    f[:, 0] = np.exp(first)
    np.multiply(np.exp(jump), rates.inverse_ratio, out=f[:, 1:])
    np.cumprod(f, axis=1, out=f)
    z = _solve(1.0 + tau * rates.outflow, -tau * rates.geo, f.copy())
    if z is None:
        return l.copy(), np.zeros(m, dtype=bool)
    x = _check(z, f, ok)                                     # y1 / rho
    if two_stage:
        w = 1.0 + 1.0 / x                                    # 1 + rho / y1
        root = np.sqrt(w)
        f = f * root                                         # rho / d2, d2 = d / sqrt(w)
        edge = np.empty_like(w)
        np.multiply(root[:, :-1], root[:, 1:], out=edge[:, :-1])
        edge[:, -1] = 0.0
        half = 0.5 * tau
        z = _solve(1.0 + half * w * rates.outflow, (-half) * rates.geo * edge, f.copy())
        if z is None:
            return l.copy(), np.zeros(m, dtype=bool)
        x = _check(z, f, ok)
    return l + np.log(x), ok
