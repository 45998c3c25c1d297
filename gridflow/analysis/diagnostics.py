"""Diagnostics of a grid density, computed in log space (no inf/NaN for tiny densities).

The density is piecewise constant on the cells; its mean and covariance are those of
that piecewise-constant density (midpoint sums plus the within-cell variance h_k^2/12),
which is also what exact samples drawn from the grid have.
"""

from __future__ import annotations

import numpy as np

from gridflow.core.backend import compiled
from gridflow.core.grid import Grid

#: log densities below this are treated as zero density where a gradient is needed
_LOG_FLOOR = -745.0


def density_from_log(log_rho: np.ndarray) -> np.ndarray:
    """exp(log_rho), flushing underflow to zero silently."""
    with np.errstate(under="ignore"):
        return np.exp(log_rho)


def mass(log_rho: np.ndarray, grid: Grid) -> float:
    """Total mass sum(rho) * cell volume."""
    return float(density_from_log(log_rho).sum() * grid.cell_volume)


def kl_divergence(log_rho: np.ndarray, log_pi: np.ndarray, grid: Grid, *,
                  compiled_kernels: bool | None = None) -> float:
    """KL(rho || pi) = sum [rho log(rho/pi) - rho + pi] * vol on the grid (pi normalised).

    For a density of mass one this is the usual sum rho log(rho/pi) vol; the added
    ``- rho + pi`` (the generalised KL of positive measures) makes every cell's term
    non-negative, so round-off in the mass (~1e-13 after thousands of steps) cannot make the
    result negative.  Each term is rho * phi(r) with r = log(rho/pi) and
    phi(r) = r - 1 + e^{-r} >= 0, evaluated as r + expm1(-r) for |r| < 1 (no cancellation)
    and as rho r - rho + pi otherwise (pi may underflow; no overflow for any r).  A compiled one-pass
    sum where ``compiled_kernels`` (None: by the size, :mod:`gridflow.core.backend`).
    """
    if compiled_kernels is None:
        compiled_kernels = compiled(log_rho.size)
    if compiled_kernels and log_rho.shape == log_pi.shape:
        from gridflow.analysis.kl_kernel import kl_sum

        return float(kl_sum(np.ascontiguousarray(log_rho, dtype=float),
                            np.ascontiguousarray(log_pi, dtype=float)) * grid.cell_volume)
    rho = density_from_log(log_rho)
    pi = density_from_log(log_pi)
    with np.errstate(over="ignore", invalid="ignore"):
        r = log_rho - log_pi
        near = np.abs(r) < 1.0
        terms = np.where(near, rho * (r + np.expm1(-np.where(near, r, 0.0))), rho * r - rho + pi)
    terms = np.where(rho > 0.0, np.maximum(terms, 0.0), pi)
    return float(terms.sum() * grid.cell_volume)


def fisher_information(log_rho: np.ndarray, log_pi: np.ndarray, grid: Grid) -> float:
    """Relative Fisher information ∫ rho |grad log(rho/pi)|^2.

    The gradient of f = log(rho/pi) is the second-order finite difference: central
    (f_{i+1} - f_{i-1}) / 2h inside, one-sided (-3 f_0 + 4 f_1 - f_2) / 2h at reflecting walls,
    central with wrap-around on periodic axes (:func:`gradient`), so the value is second-order
    accurate where f is smooth.
    """
    f = np.maximum(log_rho, _LOG_FLOOR) - log_pi
    rho = density_from_log(log_rho)
    total = np.zeros(grid.shape)
    for axis in range(grid.dim):
        grad = gradient(f, axis=axis, spacing=grid.spacing[axis], periodic=grid.periodic)
        total += grad * grad
    return float(np.sum(rho * total) * grid.cell_volume)


def gradient(f: np.ndarray, *, axis: int, spacing: float, periodic: bool) -> np.ndarray:
    """Second-order finite-difference derivative of ``f`` along ``axis``: the stencils of
    findiff's ``Diff(axis, spacing, acc=2, periodic=...)`` (tests/analysis/test_diagnostics.py checks that they
    agree), written with numpy so that a run does not import findiff and sympy (~0.4 s).

    Central differences inside; second-order one-sided differences at the two ends of a
    non-periodic axis (``numpy.gradient`` with ``edge_order=2``; first order on an axis of two
    cells); central differences with wrap-around on a periodic axis.
    """
    if periodic:
        return (np.roll(f, -1, axis=axis) - np.roll(f, 1, axis=axis)) / (2.0 * spacing)
    return np.gradient(f, spacing, axis=axis, edge_order=2 if f.shape[axis] >= 3 else 1)


def moments(log_rho: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Mean (dim,) and covariance (dim, dim) of the piecewise-constant grid density."""
    rho = density_from_log(log_rho)
    w = rho / rho.sum()
    coords = [c for c in grid.coordinates]
    mean = np.array([np.sum(w * c) for c in coords])
    centred = [c - m for c, m in zip(coords, mean)]
    cov = np.array([[np.sum(w * a * b) for b in centred] for a in centred])
    cov += np.diag(np.asarray(grid.spacing) ** 2 / 12.0)
    return mean, cov


def frame_diagnostics(log_rho: np.ndarray, grid: Grid, *, log_target: np.ndarray,
                      log_tempered: np.ndarray, compiled_kernels: bool | None = None) -> dict:
    """All per-frame diagnostics of docs/file-format.md (``mass``, ``kl``, ``kl_tempered``,
    ``fisher_information`` w.r.t. the current tempered target, ``mean``, ``covariance``);
    ``compiled_kernels`` as in :func:`kl_divergence` (a run passes its own choice)."""
    mean, cov = moments(log_rho, grid)
    return {
        "mass": mass(log_rho, grid),
        "kl": kl_divergence(log_rho, log_target, grid, compiled_kernels=compiled_kernels),
        "kl_tempered": kl_divergence(log_rho, log_tempered, grid, compiled_kernels=compiled_kernels),
        "fisher_information": fisher_information(log_rho, log_tempered, grid),
        "mean": mean,
        "covariance": cov,
    }
