"""Unbiased MMD^2 between an ensemble and a grid law with exact cell integrals (docs/validation.md).

Gaussian kernel ``k(x, y) = exp(-|x-y|^2 / (2 s^2))``; ``E k(x_i, Y)`` from normal-CDF differences per
axis, ``E k(Y, Y')`` from the closed-form cell-pair integrals (:func:`cell_pair_kernel`) as a
Toeplitz quadratic form done by FFT.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import signal, special

from gridflow.analysis.distances import merge_cells
from gridflow.core.grid import Grid

__all__ = ["mmd2", "cell_pair_kernel", "MMD_MAX_PARTICLES", "MMD_MAX_CELLS"]

#: particles used by the MMD (a random subset beyond this)
MMD_MAX_PARTICLES = 5000
#: cells per axis beyond which the MMD merges cells (exact up to this)
MMD_MAX_CELLS = {1: 4096, 2: 256}

_SQRT_2PI = math.sqrt(2.0 * math.pi)
#: threads for the O(N^2) and O(N K) kernel sums (numpy/scipy ufuncs release the GIL)
_WORKERS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))


def _chunked_sum(fn: Callable[[int], float], n: int, chunk: int) -> float:
    """``sum(fn(i) for i in range(0, n, chunk))``, chunks run on a few threads, summed in order."""
    starts = range(0, n, chunk)
    if _WORKERS == 1 or len(starts) == 1:
        return float(sum(fn(i) for i in starts))
    with ThreadPoolExecutor(min(_WORKERS, len(starts))) as pool:
        return float(sum(pool.map(fn, starts)))


def _trim(edges: list[np.ndarray], masses: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Restrict to the bounding box of the cells with mass."""
    slices = []
    for axis in range(masses.ndim):
        other = tuple(i for i in range(masses.ndim) if i != axis)
        nz = np.flatnonzero(masses.sum(axis=other) > 0) if other else np.flatnonzero(masses > 0)
        slices.append(slice(nz[0], nz[-1] + 1))
    edges = [e[s.start:s.stop + 1] for e, s in zip(edges, slices)]
    return edges, masses[tuple(slices)]


def cell_pair_kernel(count: int, h: float, s: float) -> np.ndarray:
    """``J(k) = h^-2 ∫_0^h ∫_0^h exp(-(k h + a - b)^2 / (2 s^2)) da db`` for k = -(count-1)..count-1.

    Second difference of the second antiderivative ``F2(z) = s sqrt(pi/2) |z| + G(z)``,
    ``G(z) = -s sqrt(pi/2) |z| erfc(|z| / (s sqrt 2)) + s^2 exp(-z^2 / (2 s^2))``; the linear
    part contributes only at k = 0 (``2 h s sqrt(pi/2)``), so no large terms cancel.
    (``s = 1/sqrt(2)`` is the kernel ``exp(-(x - y)^2)``.)
    """
    k = np.arange(-(count - 1), count, dtype=float)
    c = s * math.sqrt(math.pi / 2)

    def G(z):
        z = np.abs(z)
        with np.errstate(under="ignore"):
            return -c * z * special.erfc(z / (s * math.sqrt(2))) + s * s * np.exp(-0.5 * (z / s) ** 2)

    d2 = G((k + 1) * h) - 2 * G(k * h) + G((k - 1) * h) + np.where(k == 0, 2 * h * c, 0.0)
    return d2 / (h * h)


def _grid_grid_term(edges: list[np.ndarray], masses: np.ndarray, s: float) -> float:
    """``E k(Y, Y')`` for Y, Y' iid from the grid law: ``sum m_c m_c' prod_a J_a(c_a - c'_a)``."""
    out = masses
    for axis, e in enumerate(edges):
        n = masses.shape[axis]
        J = cell_pair_kernel(n, e[1] - e[0], s)
        shape = [1] * masses.ndim
        shape[axis] = -1
        full = signal.fftconvolve(out, J.reshape(shape), mode="full", axes=axis)
        out = np.take(full, np.arange(n - 1, 2 * n - 1), axis=axis)
    return float(np.sum(masses * out))


def _cross_term(x: np.ndarray, w: np.ndarray, edges: list[np.ndarray], masses: np.ndarray, s: float) -> float:
    """``sum_i w_i E k(x_i, Y)`` with exact cell integrals (normal-CDF differences per axis)."""
    if masses.ndim == 1:
        h = edges[0][1] - edges[0][0]
        jumps = -np.diff(np.concatenate([[0.0], masses, [0.0]]))    # sum_c m_c [Phi_c+1 - Phi_c] = sum_j jumps_j Phi_j
        nz = np.flatnonzero(jumps)
        e, jumps = edges[0][nz] / s, jumps[nz] * (s * _SQRT_2PI / h)
        xs = x[:, 0] / s

        def part(i):
            xb = xs[i:i + chunk]
            return float(w[i:i + chunk] @ (special.ndtr(e[None, :] - xb[:, None]) @ jumps))

        chunk = max(1, 2 ** 19 // e.size)
        return _chunked_sum(part, x.shape[0], chunk)
    ex, ey = edges[0] / s, edges[1] / s
    cx, cy = s * _SQRT_2PI / (edges[0][1] - edges[0][0]), s * _SQRT_2PI / (edges[1][1] - edges[1][0])
    xs = x / s

    def part(i):
        xb = xs[i:i + chunk]
        ax = np.diff(special.ndtr(ex[None, :] - xb[:, :1]), axis=1) * cx
        ay = np.diff(special.ndtr(ey[None, :] - xb[:, 1:2]), axis=1) * cy
        return float(w[i:i + chunk] @ np.sum((ax @ masses) * ay, axis=1))

    chunk = max(1, 2 ** 18 // max(masses.shape))
    return _chunked_sum(part, x.shape[0], chunk)


def _particle_term(x: np.ndarray, w: np.ndarray, s: float) -> float:
    """``sum_{i != j} w_i w_j k(x_i, x_j) / (1 - sum w_i^2)`` (the unbiased U-statistic for
    equal weights)."""
    n = x.shape[0]
    xs = x / s

    def part(i):
        xb = xs[i:i + chunk]
        d2 = np.zeros((xb.shape[0], n))
        for a in range(x.shape[1]):
            d2 += (xb[:, a:a + 1] - xs[None, :, a]) ** 2
        return float(w[i:i + chunk] @ (np.exp(-0.5 * d2) @ w))

    chunk = max(1, 2 ** 19 // n)
    total = _chunked_sum(part, n, chunk)
    sw2 = float(np.sum(w * w))
    return (total - sw2) / (1.0 - sw2)


def mmd2(grid: Grid, masses: np.ndarray, x: np.ndarray, w: np.ndarray, s: float,
         rng: np.random.Generator) -> tuple[float, int]:
    """Unbiased MMD^2 (bandwidth ``s``) between the weighted particles ``(x, w)`` and the grid law of the cell
    ``masses``, and the number of particles used (a random subset of ``MMD_MAX_PARTICLES`` beyond it)."""
    if x.shape[0] > MMD_MAX_PARTICLES:
        pick = rng.choice(x.shape[0], MMD_MAX_PARTICLES, replace=False)
        x, w = x[pick], w[pick] / w[pick].sum()
    edges, merged, _ = merge_cells(grid, masses, MMD_MAX_CELLS[grid.dim])
    merged = np.where(merged > 1e-17 * merged.max(), merged, 0.0)    # below rounding: drop, then trim
    edges, merged = _trim(edges, merged)
    value = _particle_term(x, w, s) - 2.0 * _cross_term(x, w, edges, merged, s) + _grid_grid_term(edges, merged, s)
    return value, x.shape[0]
