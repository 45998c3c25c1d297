"""Exact MMD^2 (kernel exp(-(x - y)^2)) between piecewise-constant grid densities, and the first time a
curve falls below a threshold."""

from __future__ import annotations

import math

import numpy as np
from scipy import signal, special

from gridflow.core.grid import Grid


THRESHOLD = 0.01


# ============================================================================ exact MMD^2 on grids

_SQRT_PI = math.sqrt(math.pi)


def cell_pair_kernel(n: int, h: float) -> np.ndarray:
    r"""J(k) = h^-2 ∫_0^h ∫_0^h exp(-(k h + a - b)^2) da db for k = -(n-1) .. n-1 (closed form).

    With g(z) = exp(-z^2), the double integral is the second difference G2(z+h) - 2 G2(z) + G2(z-h)
    of G2(z) = ∫_0^z ∫_0^s g = (sqrt(pi)/2) z erf(z) + (e^{-z^2} - 1)/2.  Writing z erf z = |z| - |z| erfc|z|,
    the linear part's second difference vanishes except at k = 0 (where it is sqrt(pi) h), so
    J is evaluated from Gt(z) = e^{-z^2}/2 - (sqrt(pi)/2) |z| erfc|z| without cancellation of large terms.
    """
    k = np.arange(-(n - 1), n, dtype=float)

    def gt(z):
        z = np.abs(z)
        with np.errstate(under="ignore"):
            return 0.5 * np.exp(-z * z) - 0.5 * _SQRT_PI * z * special.erfc(z)

    d2 = gt((k + 1) * h) - 2.0 * gt(k * h) + gt((k - 1) * h) + np.where(k == 0, _SQRT_PI * h, 0.0)
    return d2 / (h * h)


class GridMMD:
    """Exact MMD^2 with kernel exp(-|x - y|^2) between piecewise-constant densities on ``grid``.

    ``mmd2(p, q)`` takes cell masses (density x cell volume); in 2D the kernel is the product of
    the axis kernels, applied axis by axis (FFT convolutions with the Toeplitz cell-pair kernels).
    """

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.kernels = [cell_pair_kernel(n, h) for n, h in zip(grid.cells, grid.spacing)]

    def apply(self, d: np.ndarray) -> np.ndarray:
        """(J_x ⊗ J_y) d: the kernel matrix applied to the cell-mass array ``d``."""
        out = d
        for axis, kern in enumerate(self.kernels):
            n = d.shape[axis]
            shape = [1] * d.ndim
            shape[axis] = -1
            full = signal.fftconvolve(out, kern.reshape(shape), mode="full", axes=axis)
            out = np.take(full, np.arange(n - 1, 2 * n - 1), axis=axis)
        return out

    def mmd2(self, p: np.ndarray, q: np.ndarray) -> float:
        d = np.asarray(p, float) - np.asarray(q, float)
        return float(np.sum(d * self.apply(d)))


def masses(log_density: np.ndarray, grid: Grid) -> np.ndarray:
    with np.errstate(under="ignore"):
        return np.exp(log_density) * grid.cell_volume


def first_below(t: np.ndarray, y: np.ndarray, threshold: float = THRESHOLD) -> float:
    """First time y(t) < threshold, interpolating log y linearly between saved frames (inf: never)."""
    t, y = np.asarray(t, float), np.asarray(y, float)
    below = np.flatnonzero(y < threshold)
    if below.size == 0:
        return math.inf
    k = int(below[0])
    if k == 0:
        return float(t[0])
    y0, y1 = y[k - 1], y[k]
    if y1 > 0.0:
        s = math.log(y0 / threshold) / math.log(y0 / y1)
    else:
        s = (y0 - threshold) / (y0 - y1)
    return float(t[k - 1] + s * (t[k] - t[k - 1]))
