r"""Step doubling's comparison of two solutions, in log space: the local error and the extrapolation.

A step of dt (``full``) and two of dt/2 (``half``) of a second-order method differ by about
3/4 of the half steps' error; the stepper takes ``||rho_half - rho_full||_1 / 3`` as the local error
estimate (:func:`local_error`) and, when it is positive everywhere, the Richardson extrapolation
``(4 rho_half - rho_full) / 3`` (third order locally) as the new state (:func:`extrapolate`), formed so
that no cell underflows however small.

:func:`compare` returns both.  Where the run takes compiled kernels (:mod:`gridflow.core.backend`) it makes one
compiled pass over the cells on all cores (numba, cached on disk; partial sums over fixed chunks of
:data:`CHUNK` cells added in order, so the result does not depend on the number of threads); below,
numpy.  Both give the same values to round-off.
"""

from __future__ import annotations

import math

import numpy as np

from gridflow.core.backend import compiled

#: cells per partial sum of the compiled pass
CHUNK = 8192

#: the extrapolation (4 rho_half - rho_full)/3 is positive iff log(rho_full / rho_half) < log 4
LOG4 = math.log(4.0)


def local_error(log_a: np.ndarray, log_b: np.ndarray, volume: float, log_weight: np.ndarray | None = None) -> float:
    """L1 distance sum |e^a - e^b| * volume of two log densities (cells below 1e-308 count as 0).

    With ``log_weight`` (log w) each cell counts max(|e^a - e^b|, w |a - b|): the relative difference
    weighted by w as well (where a and b are both finite).  With w the target, a cell far below the
    target whose *relative* error a Fisher–Rao part will multiply up as it grows the cell towards the
    target counts as if it already held the target's mass (docs/numerics.md, "far Gaussian").
    """
    with np.errstate(under="ignore", invalid="ignore", over="ignore"):
        terms = np.abs(np.exp(log_a) - np.exp(log_b))
        if log_weight is not None:
            rel = np.abs(log_a - log_b)
            terms = np.maximum(terms, np.exp(log_weight) * np.where(rel < np.inf, rel, 0.0))   # NaN, inf: 0
        return float(terms.sum() * volume)


def extrapolate(log_half: np.ndarray, log_full: np.ndarray) -> np.ndarray | None:
    """Richardson extrapolation (4 rho_half - rho_full)/3 of a second-order step, in log space.

    Formed as log_half + log1p((1 - e^{log_full - log_half})/3), so no cell underflows; ``None``
    when it would not be positive in every cell (then the two half steps are taken as they are).
    Its mass is that of the two solutions (exactly, in exact arithmetic).
    """
    with np.errstate(invalid="ignore", over="ignore"):
        diff = log_full - log_half
        both_empty = np.isneginf(log_full) & np.isneginf(log_half)
        diff = np.where(both_empty, 0.0, diff)
        if not np.all(diff < LOG4):        # also rejects NaN
            return None
        return log_half + np.log1p(-np.expm1(diff) / 3.0)


def compare(log_half: np.ndarray, log_full: np.ndarray, volume: float,
            log_weight: np.ndarray | None = None, *, compiled_kernels: bool | None = None
            ) -> tuple[float, np.ndarray | None]:
    """``(local_error(log_half, log_full, volume, log_weight), extrapolate(log_half, log_full))`` in one
    pass; compiled where ``compiled_kernels`` (None: by the size, :mod:`gridflow.core.backend`)."""
    if not (compiled(log_half.size) if compiled_kernels is None else compiled_kernels):
        return local_error(log_half, log_full, volume, log_weight), extrapolate(log_half, log_full)
    from gridflow.time.doubling_kernel import compare_pass

    a = np.ascontiguousarray(log_half, dtype=float)
    b = np.ascontiguousarray(log_full, dtype=float)
    w = None if log_weight is None else np.ascontiguousarray(log_weight, dtype=float).ravel()
    out = np.empty_like(a)
    total, positive = compare_pass(a.ravel(), b.ravel(), w, out.ravel(), CHUNK, LOG4)
    return float(total * volume), (out if positive else None)
