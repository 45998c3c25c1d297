r"""Scharfetter–Gummel finite volumes for the Fokker–Planck equation.

Discretises :math:`\partial_t\rho = a\,\nabla\cdot(\nabla\rho + \rho\nabla V)` on a uniform
cell-centred grid with the exponentially fitted two-point flux (docs/numerics.md, space)

.. math:: F_{i+1/2} = \frac{a}{h}\big[B(\Delta V)\rho_i - B(-\Delta V)\rho_{i+1}\big],
          \qquad B(z) = \frac{z}{e^z - 1},\ \Delta V = V_{i+1} - V_i,

across every cell face (zero flux through reflecting walls).  The result is the generator
``L`` of a reversible Markov chain — non-negative off-diagonals, zero column sums, detailed
balance with respect to :math:`\pi_i = e^{-V_i}` — hence mass conservation, positivity,
the exact discrete equilibrium and a monotone discrete KL.  Second order in L1 on uniform
grids.  Only differences of V enter, so V may span thousands (densities e^-2000).

In d dimensions ``L = sum_k L_k`` with one-dimensional generators ``L_k`` along each axis.
Time stepping of ``d rho/dt = L_k rho`` uses the modified Patankar–Runge–Kutta scheme
MPRK22 (Burchard, Deleersnijder & Meister 2003): second order, positive and exactly
mass-conserving at every step size, two tridiagonal solves per line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from gridflow.core.backend import compiled
from gridflow.core.grid import Grid
from gridflow.flows.symmetrised import SymmetrisedRates, symmetrised_walls

if TYPE_CHECKING:
    import scipy.sparse as sp


def bernoulli(z: np.ndarray) -> np.ndarray:
    """B(z) = z / (e^z - 1), with B(0) = 1, accurate for all real z (B(z) -> 0 as z -> +inf)."""
    z = np.asarray(z, dtype=float)
    small = np.abs(z) < 1e-8
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        out = z / np.expm1(z)
    out[small] = 1.0 - 0.5 * z[small]
    return out


@dataclass(frozen=True)
class AxisRates:
    """Jump rates of the one-dimensional generator along one axis.

    ``up[i]`` is the rate from cell i to cell i+1 along ``axis`` and ``down[i]`` the rate from
    i+1 back to i (arrays of the grid's shape).  The last entry along the axis is the wrap
    edge on a periodic grid and zero (no edge) on a reflecting one.
    """

    axis: int
    up: np.ndarray
    down: np.ndarray
    periodic: bool
    up_lines: np.ndarray = field(init=False, repr=False)
    down_lines: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # the rates arranged as the kernels read them: one row per line along ``axis`` (the
        # first axis of a 2D grid is solved column-wise in place, see :func:`log_axis_step`)
        columns = self.up.ndim == 2 and self.axis == 0
        for name in ("up", "down"):
            values = getattr(self, name)
            lines = np.ascontiguousarray(values) if columns else _as_lines(values, self.axis)
            object.__setattr__(self, f"{name}_lines", lines)

    @property
    def row_lines(self) -> tuple[np.ndarray, np.ndarray]:
        """``(up, down)`` with one line along ``axis`` per row (views of the kernels' layout)."""
        if self.up.ndim == 2 and self.axis == 0:
            return self.up_lines.T, self.down_lines.T
        return self.up_lines, self.down_lines

    @cached_property
    def symmetrised(self) -> SymmetrisedRates:
        """What :mod:`gridflow.flows.symmetrised` needs of these rates (computed on first use)."""
        return SymmetrisedRates.from_rates(*self.row_lines)


@dataclass(frozen=True)
class LogMeanAxis:
    r"""The log-mean flux along one axis (the discrete Wasserstein gradient flow of KL).

    Across the edge (i, i+1) the flux is
    :math:`F = \kappa\,\Lambda(\rho_i, \rho_{i+1})\,(g_i - g_{i+1})`, g = log(rho/pi),
    :math:`\Lambda(a, b) = (a - b)/(\log a - \log b)` the logarithmic mean and
    kappa = D / h_k^2.  Exact discrete equilibrium (rho = pi), mass conservation, and KL
    decreasing along the semi-discrete flow (its dissipation is sum Lambda (Delta g)^2).  Its
    consistency error is O(h^2 |d^2 log rho|, h^2 |d log rho|^2) where the density lives, not
    O((h |grad V|)^2) as for Scharfetter–Gummel, so it stays second-order accurate where the drift
    is large across a cell (far targets, strong confinement).  The rates depend on the density
    and are re-evaluated at the first MPRK22 stage.
    """

    axis: int
    log_target: np.ndarray
    kappa: float
    periodic: bool
    #: the mobility: 1 the logarithmic mean, 2 log-quadratic (rho at the edge from the quadratic
    #: through log rho at four cells; see gridflow.flows.kernels)
    mean: int = 1
    target_lines: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        columns = self.log_target.ndim == 2 and self.axis == 0
        lines = np.ascontiguousarray(self.log_target) if columns else _as_lines(self.log_target, self.axis)
        object.__setattr__(self, "target_lines", lines)


def log_mean_axis(log_target: np.ndarray, grid: Grid, axis: int, diffusion: float, *,
                  mean: int = 1) -> LogMeanAxis:
    """The log-mean (``mean`` 1) or log-quadratic (``mean`` 2) flux along ``axis`` towards
    ``log_target`` (any additive constant)."""
    return LogMeanAxis(axis=axis, log_target=np.asarray(log_target, dtype=float),
                       kappa=diffusion / grid.spacing[axis] ** 2, periodic=grid.periodic, mean=mean)


def edge_differences(values: np.ndarray, grid: Grid, axis: int) -> np.ndarray:
    """values[i+1] - values[i] along ``axis`` (wrapping on periodic grids, 0 at the far wall otherwise)."""
    nxt = np.roll(values, -1, axis=axis)
    diff = nxt - values
    if not grid.periodic:
        index = [slice(None)] * grid.dim
        index[axis] = -1
        diff[tuple(index)] = 0.0
    return diff


def axis_rates(delta_v: np.ndarray, grid: Grid, axis: int, diffusion: float) -> AxisRates:
    """Scharfetter–Gummel rates along ``axis`` from the edge increments ΔV of the potential."""
    c = diffusion / grid.spacing[axis] ** 2
    up = c * bernoulli(delta_v)
    down = c * bernoulli(-delta_v)
    if not grid.periodic:
        index = [slice(None)] * grid.dim
        index[axis] = -1
        up[tuple(index)] = 0.0
        down[tuple(index)] = 0.0
    return AxisRates(axis=axis, up=up, down=down, periodic=grid.periodic)


def _axis_matrix(rates: AxisRates, shape: tuple[int, ...]) -> sp.csr_matrix:
    """Sparse generator of the jumps along one axis, on C-ordered flattened cell values."""
    import scipy.sparse as sp

    n = int(np.prod(shape))
    index = np.arange(n).reshape(shape)
    nxt = np.roll(index, -1, axis=rates.axis).ravel()
    here = index.ravel()
    up, down = rates.up.ravel(), rates.down.ravel()
    keep = (up > 0) | (down > 0)
    i, j, u, d = here[keep], nxt[keep], up[keep], down[keep]
    rows = np.concatenate([j, i, i, j])
    cols = np.concatenate([i, j, i, j])
    vals = np.concatenate([u, d, -u, -d])
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


def generator(potential: np.ndarray, grid: Grid, *, diffusion: float = 1.0) -> sp.csr_matrix:
    """The Scharfetter–Gummel generator ``L`` of d rho/dt = a div(grad rho + rho grad V).

    ``potential`` holds V at the cell centres (shape ``grid.shape``); ``L`` acts on the
    C-order flattened cell values.  Columns sum to zero; ``L @ exp(-V) == 0`` to round-off.
    """
    mats = [
        _axis_matrix(axis_rates(edge_differences(potential, grid, k), grid, k, diffusion), grid.shape)
        for k in range(grid.dim)
    ]
    return sum(mats[1:], mats[0]).tocsr()


def _as_lines(values: np.ndarray, axis: int) -> np.ndarray:
    """``values`` as a C-contiguous ``(lines, cells along axis)`` array (a view when possible)."""
    if axis == values.ndim - 1:
        return np.ascontiguousarray(values).reshape(-1, values.shape[-1])
    return np.ascontiguousarray(np.moveaxis(values, axis, -1)).reshape(-1, values.shape[axis])


def _from_lines(lines: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    moved = list(shape)
    moved.append(moved.pop(axis))
    out = lines.reshape(moved)
    return out if axis == len(shape) - 1 else np.ascontiguousarray(np.moveaxis(out, -1, axis))


def log_axis_step(rates: AxisRates | LogMeanAxis, log_rho: np.ndarray, tau: float, *, order: int = 2,
                  compiled_kernels: bool | None = None) -> np.ndarray:
    """Advance d rho/dt = L_k rho by ``tau`` along one axis, on the log density.

    ``rates`` is a Scharfetter–Gummel generator (:class:`AxisRates`, linear) or the log-mean
    flux (:class:`LogMeanAxis`, rates depending on rho).  ``order`` 2 is MPRK22 (Burchard,
    Deleersnijder & Meister 2003: second order, positive and exactly mass-conserving at any
    ``tau``; for density-dependent rates the second stage averages the rates at rho and at the
    first stage); ``order`` 1 is implicit Euler.  Both are solved by elimination without
    pivoting on the log density (see :mod:`gridflow.flows.kernels`), so densities far below the
    floating-point range (e^-2000) keep their relative accuracy.  ``compiled_kernels`` False takes
    numpy and LAPACK for Scharfetter–Gummel rates with walls (:mod:`gridflow.flows.symmetrised`; lines
    it cannot take exactly still go to the compiled kernels); None decides by the size
    (:mod:`gridflow.core.backend`).
    """
    if compiled_kernels is None:
        compiled_kernels = compiled(log_rho.size)
    if isinstance(rates, AxisRates) and not rates.periodic and not compiled_kernels:
        return _symmetrised_step(rates, log_rho, tau, order)
    from gridflow.flows.kernels import step_cols, step_rows

    axis = rates.axis
    shape = log_rho.shape
    if isinstance(rates, LogMeanAxis):
        up = down = None
        target, kappa, mean = rates.target_lines, rates.kappa, rates.mean
    else:
        up, down, target, kappa, mean = rates.up_lines, rates.down_lines, None, 0.0, 1
    if log_rho.ndim == 2 and axis == 0:
        out, _ = step_cols(np.ascontiguousarray(log_rho), up, down, float(tau), rates.periodic, order == 2,
                           log_target=target, kappa=kappa, mean=mean)
        return out
    lines, _ = step_rows(_as_lines(log_rho, axis), up, down, float(tau), rates.periodic, order == 2,
                         log_target=target, kappa=kappa, mean=mean)
    return _from_lines(lines, shape, axis)


def _symmetrised_step(rates: AxisRates, log_rho: np.ndarray, tau: float, order: int) -> np.ndarray:
    """:func:`log_axis_step` of fixed rates with walls by numpy and LAPACK (:mod:`gridflow.flows.symmetrised`);
    the lines it does not take are redone by the compiled kernels."""
    columns = log_rho.ndim == 2 and rates.axis == 0
    lines = log_rho.T if columns else log_rho.reshape(-1, log_rho.shape[-1])
    out, taken = symmetrised_walls(lines, rates.symmetrised, float(tau), order == 2)
    if not taken.all():
        from gridflow.flows.kernels import step_rows

        redo = np.flatnonzero(~taken)
        up, down = (np.ascontiguousarray(a[redo]) for a in rates.row_lines)
        out[redo], _ = step_rows(np.ascontiguousarray(lines[redo]), up, down, float(tau), False, order == 2)
    return np.ascontiguousarray(out.T) if columns else out.reshape(log_rho.shape)


def implicit_euler_axis(rates: AxisRates, rho: np.ndarray, tau: float) -> np.ndarray:
    """(I - tau L_k)^{-1} rho for a linear density (first order, positive, mass-conserving)."""
    return _linear(rates, rho, tau, order=1)


def mprk22_axis(rates: AxisRates, rho: np.ndarray, tau: float) -> np.ndarray:
    """One MPRK22 step of d rho/dt = L_k rho for a linear density (see :func:`log_axis_step`)."""
    return _linear(rates, rho, tau, order=2)


def _linear(rates: AxisRates, rho: np.ndarray, tau: float, *, order: int) -> np.ndarray:
    with np.errstate(divide="ignore"):
        log_rho = np.log(np.asarray(rho, dtype=float))
    with np.errstate(under="ignore"):
        return np.exp(log_axis_step(rates, log_rho, tau, order=order))
