"""Exact MMD^2 (kernel exp(-(x - y)^2)) between piecewise-constant grid densities, and the first time a
curve falls below a threshold."""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

from gridflow.core.grid import Grid


THRESHOLD = 0.01


# ============================================================================ exact MMD^2 on grids

#: the paper's kernel exp(-(x - y)^2) is the Gaussian kernel of bandwidth 1/sqrt(2)
KERNEL_BANDWIDTH = 1.0 / math.sqrt(2.0)


def cell_pair_kernel(n: int, h: float) -> np.ndarray:
    r"""J(k) = h^-2 ∫_0^h ∫_0^h exp(-(k h + a - b)^2) da db for k = -(n-1) .. n-1, in closed form
    (:func:`gridflow.analysis.mmd.cell_pair_kernel` with bandwidth 1/sqrt(2))."""
    from gridflow.analysis.mmd import cell_pair_kernel as _kernel

    return _kernel(n, h, KERNEL_BANDWIDTH)


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
