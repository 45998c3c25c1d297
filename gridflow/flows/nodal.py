r"""Cell averages and point values of a log density (the ``log-quadratic`` flux's state).

With ``flow.flux = "log-quadratic"`` the W step is a finite-volume scheme: it evolves *cell
averages*, d rho_i/dt = (F_{i-1/2} - F_{i+1/2})/h, while the Fisher–Rao step is exact for *point
values* at the cell centres.  The two differ by a relative (l'^2 + l'') h^2/24 (l = log rho),
which is a few per cent where a far target grows from the tail (l' ~ 50, h = 0.025), and Fisher–Rao
turns that error into the mass of the new mode.  So the stepper keeps the log cell averages ``l``
as its state and converts (docs/numerics.md, "cell averages and point values"):

* :func:`to_averages` ``C``: l = lhat + kappa(lhat), where along each axis
  kappa_i = log mean over the cell of exp(q_i(x) - q_i(x_i)), q_i the quadratic through the point
  values lhat at i-1, i, i+1 (one-sided at walls), so C is exact for Gaussians; in 2D the axis terms
  add, plus the cross term to second order, K_xy E[u] E[v] + K_xy^2 (E[u^2] E[v^2] - E[u]^2 E[v]^2)/2
  (the first two cumulants of K_xy u v under the axes' tilted cell measures; K_xy = h_x h_y l_xy,
  what is left out is O(K_xy^3), below 1e-9 at K_xy = 0.02);
* :func:`to_points` ``D = C^{-1}`` by Newton's method to round-off (2D: alternating-direction,
  linear convergence; without a Fisher-Rao part only above e^-50 of the largest density);
* :func:`log_quadratic_rates`: the jump rates of the log-quadratic flux from point values, for
  :class:`~gridflow.flows.fokker_planck.AxisRates` acting on the cell averages;
* :func:`transverse_targets` (2D): the target of each axis' flux, log pi averaged across the other
  axis with rho's weights.

The quadratic is not used where it means nothing: cells next to an empty one (kappa = 0 there, as
before this module); where the slope or curvature per cell exceeds :data:`MAX_SLOPE` (the density
changes by more than e^12 across the cell) they are clipped to it, which keeps C continuous.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from gridflow.core.grid import Grid
from gridflow.flows.kernels.rates import _log_mean_line

#: above this |l' h| or |l'' h^2| the quadratic fit is not trusted (kappa = 0 in that cell)
MAX_SLOPE = 12.0
#: Gauss–Legendre rule on [-1/2, 1/2] for the cell mean (exact to round-off for |slope| <= MAX_SLOPE)
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(20)
_NODES, _WEIGHTS = 0.5 * _NODES, 0.5 * _WEIGHTS
#: ... and shorter ones where |slope| + |curvature|/4 <= 2, 0.7, 0.2 (errors below 1e-16)
_TIERS = (2.0, 0.7, 0.2)
_RULES = [np.polynomial.legendre.leggauss(m) for m in (10, 7, 5)]
_NODES_10, _NODES_7, _NODES_5 = (0.5 * r[0] for r in _RULES)
_WEIGHTS_10, _WEIGHTS_7, _WEIGHTS_5 = (0.5 * r[1] for r in _RULES)


@njit(cache=True, parallel=True)
def _lines_shift(lines, periodic, kappa, mean_u, mean_u2, slope_free, curvature_free):
    """Per cell of every row of ``lines``: kappa (log cell mean of exp(q - q(x_i)), q the quadratic
    through the row's values at i-1, i, i+1, one-sided at walls, none at a periodic wrap) and the tilted cell measure's first
    two moments E[u], E[u^2] (u in cells); all 0 where the quadratic is not used.  ``slope_free`` and
    ``curvature_free`` are 1 where kappa depends on the slope / the curvature (0 where it is clipped):
    the derivatives dkappa/dB = E[u] slope_free and dkappa/dK = E[u^2] curvature_free / 2."""
    m, n = lines.shape
    for r in prange(m):                          # rows are independent: both cores
        row = lines[r]
        for i in range(n):
            kappa[r, i] = 0.0
            mean_u[r, i] = 0.0
            mean_u2[r, i] = 0.0
            slope_free[r, i] = 0.0
            curvature_free[r, i] = 0.0
            if n < 3 or (periodic and (i == 0 or i == n - 1)):
                # the wrap of a periodic line is often a kink (a density that is not periodic):
                # no quadratic across it
                continue
            elif i == 0 or i == n - 1:
                j, s = (0, 1) if i == 0 else (n - 1, -1)
                k = row[j] - 2.0 * row[j + s] + row[j + 2 * s]
                b = s * (row[j + s] - row[j] - 0.5 * k)
            else:
                lm, lp = row[i - 1], row[i + 1]
                k = lp - 2.0 * row[i] + lm
                b = 0.5 * (lp - lm)
            if not (abs(b) < math.inf and abs(k) < math.inf):
                continue
            # beyond MAX_SLOPE the quadrature is not exact, and kappa there means little (the density
            # changes by e^12 across the cell): the fit is clipped, so that C stays continuous and
            # Newton's method for D = C^{-1} converges (a switch to kappa = 0 made it cycle)
            slope_free[r, i] = 1.0 if abs(b) <= MAX_SLOPE else 0.0
            curvature_free[r, i] = 1.0 if abs(k) <= MAX_SLOPE else 0.0
            b = min(max(b, -MAX_SLOPE), MAX_SLOPE)
            k = min(max(k, -MAX_SLOPE), MAX_SLOPE)
            size = abs(b) + 0.25 * abs(k)
            if size <= _TIERS[2]:
                nodes, weights = _NODES_5, _WEIGHTS_5
            elif size <= _TIERS[1]:
                nodes, weights = _NODES_7, _WEIGHTS_7
            elif size <= _TIERS[0]:
                nodes, weights = _NODES_10, _WEIGHTS_10
            else:
                nodes, weights = _NODES, _WEIGHTS
            top = 0.5 * abs(b) + 0.125 * max(k, 0.0)
            t0 = 0.0
            t1 = 0.0
            t2 = 0.0
            for q in range(nodes.shape[0]):
                u = nodes[q]
                w = weights[q] * math.exp(b * u + 0.5 * k * u * u - top)
                t0 += w
                t1 += w * u
                t2 += w * u * u
            kappa[r, i] = math.log(t0) + top
            mean_u[r, i] = t1 / t0
            mean_u2[r, i] = t2 / t0


def _as_lines(values: np.ndarray, axis: int) -> np.ndarray:
    if axis == values.ndim - 1:
        return np.ascontiguousarray(values).reshape(-1, values.shape[-1])
    return np.ascontiguousarray(np.moveaxis(values, axis, -1)).reshape(-1, values.shape[axis])


def _from_lines(lines: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    if axis == len(shape) - 1:
        return lines.reshape(shape)
    moved = list(shape)
    moved.append(moved.pop(axis))
    return np.moveaxis(lines.reshape(moved), -1, axis)


def _axis_shift(lhat: np.ndarray, axis: int, periodic: bool) -> tuple[np.ndarray, ...]:
    """(kappa, E[u], E[u^2], dkappa/dB, 2 dkappa/dK) along one axis, arrays of the shape of ``lhat``."""
    lines = _as_lines(lhat, axis)
    out = [np.empty_like(lines) for _ in range(5)]
    _lines_shift(lines, periodic, *out)
    out[3] *= out[1]
    out[4] *= out[2]
    return tuple(_from_lines(o, lhat.shape, axis) for o in out)


@njit(cache=True, parallel=True)
def _cross_term(lhat, eu, eu2, ev, ev2, out):
    """The cross term K (E[u]E[v] + K Var(uv)/2) of :func:`_shifts` in the interior cells (0 at the
    walls and where it is not finite), K = (l_{i+1,j+1} + l_{i-1,j-1} - l_{i+1,j-1} - l_{i-1,j+1})/4."""
    n0, n1 = lhat.shape
    for i in prange(1, n0 - 1):
        for j in range(1, n1 - 1):
            kxy = lhat[i + 1, j + 1] + lhat[i - 1, j - 1]
            kxy -= lhat[i + 1, j - 1]
            kxy -= lhat[i - 1, j + 1]
            kxy *= 0.25
            first = eu[i, j] * ev[i, j]
            c = eu2[i, j] * ev2[i, j] - first * first
            c *= 0.5 * kxy
            c += first
            c *= kxy
            out[i, j] = c if abs(c) < math.inf else 0.0


def _shifts(lhat: np.ndarray, grid: Grid) -> tuple[list[np.ndarray], list[tuple[np.ndarray, ...]]]:
    """Per axis kappa_k (2D: the cross term shared equally between the axes) and the axis parts
    (:func:`_axis_shift`: kappa, E[u], E[u^2] and the derivatives of kappa).

    The cross term is log E[exp(K_xy u v)] under the product of the axes' tilted cell measures
    (u, v in cells, K_xy = h_x h_y d^2 lhat/dx dy by the centred difference), to second order in
    K_xy: its first two cumulants, K_xy E[u] E[v] + K_xy^2 Var(u v)/2 with
    Var(u v) = E[u^2] E[v^2] - E[u]^2 E[v]^2 (u, v independent).  None at the walls."""
    parts = [_axis_shift(lhat, k, grid.periodic) for k in range(grid.dim)]
    shifts = [p[0] for p in parts]
    if grid.dim == 2:
        (_, eu, eu2, *_), (_, ev, ev2, *_) = parts
        cross = np.zeros_like(lhat)
        _cross_term(lhat, eu, eu2, ev, ev2, cross)
        shifts = [s + 0.5 * cross for s in shifts]
    return shifts, parts


def transverse_targets(lhat: np.ndarray, log_pi: np.ndarray, grid: Grid, *, lhat_shifts: tuple | None = None,
                       pi_shifts: tuple | None = None) -> list[np.ndarray]:
    """2D: per axis k the target of the axis-k flux for the point values ``lhat``: log pi averaged
    across the other axis j, log pi + kappa_j(log pi) (+ half the cross term), with the change of
    its difference along k corrected from pi's to rho's weights across the cell,
    K_xy (E_rho[v] - E_pi[v]) per edge (K_xy = h_x h_y d^2 log pi/dx dy, E the tilted cell means
    across j, in cells).  The correction vanishes where lhat = log pi + const (exact equilibrium);
    none on periodic grids (it does not close around the wrap).  ``lhat_shifts`` and ``pi_shifts``,
    if given, are :func:`point_shifts` of ``lhat`` and ``log_pi`` (already known to the caller)."""
    shifts_pi, parts_pi = pi_shifts if pi_shifts is not None else _shifts(log_pi, grid)
    _, parts_rho = lhat_shifts if lhat_shifts is not None else _shifts(lhat, grid)
    targets = []
    for k in range(2):
        j = 1 - k
        target = log_pi + shifts_pi[j]
        if not grid.periodic:
            rolled = [np.roll(log_pi, (a, b), (0, 1)) for a, b in ((-1, -1), (1, 1), (-1, 1), (1, -1))]
            kxy = 0.25 * (rolled[0] + rolled[1] - rolled[2] - rolled[3])
            kxy[[0, -1], :] = 0.0
            kxy[:, [0, -1]] = 0.0
            gap = parts_rho[j][1] - parts_pi[j][1]
            step = 0.25 * (kxy + np.roll(kxy, -1, axis=k)) * (gap + np.roll(gap, -1, axis=k))
            last = [slice(None)] * 2
            last[k] = -1
            step[tuple(last)] = 0.0
            total = np.roll(np.cumsum(step, axis=k), 1, axis=k)
            first = [slice(None)] * 2
            first[k] = 0
            total[tuple(first)] = 0.0
            target = target + np.where(np.isfinite(total), total, 0.0)
        targets.append(target)
    return targets


def point_shifts(lhat: np.ndarray, grid: Grid) -> tuple[list[np.ndarray], list[tuple[np.ndarray, ...]]]:
    """Per axis the shift kappa_k of the point values ``lhat`` and the axis parts (kappa, E[u], E[u^2]
    and the derivatives), for reuse by :func:`transverse_targets` (``to_points(..., with_shifts=True)``
    returns them for its result)."""
    return _shifts(lhat, grid)


def cell_shift(lhat: np.ndarray, grid: Grid) -> list[np.ndarray]:
    """Per axis the shift kappa_k (log cell average minus log point value) of the point values
    ``lhat``; their sum is C(lhat) - lhat (see :func:`to_averages`)."""
    return _shifts(lhat, grid)[0]


def to_averages(lhat: np.ndarray, grid: Grid) -> np.ndarray:
    """C: log cell averages of the density whose log point values are ``lhat`` (exact for Gaussians)."""
    return lhat + sum(cell_shift(lhat, grid))


@njit(cache=True)
def _band(e1, e2, periodic, ab):
    """The banded matrix dC_k/dlhat of one row in LAPACK storage ab[2 + i - j, j]: C_i = lhat_i + kappa_i
    depends on lhat_{i-1,i,i+1} through B = (l_{i+1} - l_{i-1})/2 and K = l_{i+1} - 2 l_i + l_{i-1}, with
    dkappa/dB = e1 and dkappa/dK = e2/2 (E[u] and E[u^2]/2 where not clipped); the wall rows are
    one-sided (periodic lines have kappa = 0 in their first and last cell: identity rows)."""
    n = e1.size
    ab[:, :] = 0.0
    for i in range(n):
        ab[2, i] = 1.0 - e2[i]
        if i + 1 < n:
            ab[1, i + 1] = 0.5 * (e1[i] + e2[i])        # row i, column i + 1
            ab[3, i] = 0.5 * (e2[i + 1] - e1[i + 1])    # row i + 1, column i
    if not periodic and n >= 3:              # B = s (l_{j+s} - l_j) - s K/2, K = l_j - 2 l_{j+s} + l_{j+2s}
        ab[2, 0] = 1.0 - 1.5 * e1[0] + 0.5 * e2[0]
        ab[1, 1] = 2.0 * e1[0] - e2[0]
        ab[0, 2] = -0.5 * e1[0] + 0.5 * e2[0]
        ab[2, n - 1] = 1.0 + 1.5 * e1[n - 1] + 0.5 * e2[n - 1]
        ab[3, n - 2] = -2.0 * e1[n - 1] - e2[n - 1]
        ab[4, n - 3] = 0.5 * e1[n - 1] + 0.5 * e2[n - 1]


@njit(cache=True, parallel=True)
def _lines_newton(eu, eu2, x, periodic):
    """x <- (dC_k/dlhat)^{-1} x on every row (:func:`_band`)."""
    m, n = x.shape
    for r in prange(m):
        ab = np.empty((5, n))
        _band(eu[r], eu2[r], periodic, ab)
        _banded_solve(ab, x[r])


def _newton_step(resid: np.ndarray, parts: list, grid: Grid) -> np.ndarray:
    """Newton's correction (1D), or its alternating-direction approximation
    (I + J_y)^{-1} (I + J_x)^{-1} resid (2D, the cross term left out: linear convergence, ~0.2 per
    step where the slopes are steep, the product J_x J_y and the cross term limiting it alike)."""
    for k in range(grid.dim):
        lines = _as_lines(resid, k).copy()
        _lines_newton(_as_lines(parts[k][3], k), _as_lines(parts[k][4], k), lines, grid.periodic)
        resid = _from_lines(lines, resid.shape, k)
    return resid


@njit(cache=True)
def _banded_solve(ab, x):
    """Solve A x = rhs in place (``x`` holds rhs), A banded (2, 2) in LAPACK storage ab[2 + i - j, j],
    by elimination without pivoting (A = I + dkappa/dlhat is diagonally dominant)."""
    n = x.size
    for k in range(n):
        piv = ab[2, k]
        for i in range(k + 1, min(k + 3, n)):
            f = ab[2 + i - k, k] / piv
            if f != 0.0:
                for j in range(k + 1, min(k + 3, n)):
                    ab[2 + i - j, j] -= f * ab[2 + k - j, j]
                x[i] -= f * x[k]
    for k in range(n - 1, -1, -1):
        acc = x[k]
        for j in range(k + 1, min(k + 3, n)):
            acc -= ab[2 + k - j, j] * x[j]
        x[k] = acc / ab[2, k]


def to_points(log_avg: np.ndarray, grid: Grid, guess: np.ndarray | None = None, *, max_iter: int = 100,
              negligible_below: float | None = None, with_shifts: bool = False):
    """D = C^{-1}: the log point values whose log cell averages are ``log_avg``, to round-off.

    From ``guess`` (default log_avg - kappa(log_avg)): Newton steps (2D: alternating-direction
    Newton) until the residual C(lhat) - log_avg stops decreasing at round-off.  With
    ``negligible_below = g`` a cell whose density is below e^-g times the largest is held to round-off
    of the density e^-g times the largest instead of its own (its log residual may be e^(gap - g)
    times round-off): for the flux of a Fokker-Planck step, where such cells carry no weight; 2D
    iterations converge slowest in the far tails (steep slopes at the walls), so this halves them.
    With ``with_shifts`` the result is (lhat, :func:`point_shifts` of lhat), computed on the way."""
    finite = np.isfinite(log_avg)
    lhat = np.where(finite, guess, log_avg) if guess is not None else log_avg - sum(cell_shift(log_avg, grid))
    floor = 8e-16 * np.maximum(1.0, np.abs(np.where(finite, log_avg, 0.0)))
    if negligible_below is not None and finite.any():
        gap = np.where(finite, np.max(log_avg[finite]) - negligible_below - log_avg, 0.0)
        floor = floor * np.exp(np.clip(gap, 0.0, 700.0))
    prev = np.inf
    known = None                               # (shifts, parts) of the current lhat
    for _ in range(max_iter):
        known = shifts, parts = _shifts(lhat, grid)
        resid = np.where(finite, lhat + sum(shifts) - log_avg, 0.0)
        size = float(np.max(np.abs(resid) - floor, initial=0.0))
        if size <= 0.0 or (size >= prev and size < 1e-10):
            break
        prev = size
        lhat = lhat - _newton_step(resid, parts, grid)
        known = None
        if size < 1e-8 and grid.dim == 1:      # Newton: the next residual is ~size^2, round-off
            break
    if not with_shifts:
        return lhat
    return lhat, known if known is not None else _shifts(lhat, grid)


@njit(cache=True, parallel=True)
def _lines_rates(lines, target, kappa, periodic, weight, up, down):
    """Log-quadratic jump rates of every row (the kernels' own formula), times the column weights:
    up[i] *= weight[i], down[i] *= weight[i + 1]."""
    m, n = lines.shape
    for r in prange(m):
        _log_mean_line(lines[r], target[r], kappa, periodic, up[r], down[r], n, 2)
        for i in range(n):
            up[r, i] *= weight[r, i]
            down[r, i] *= weight[r, i + 1 if i < n - 1 else 0]


def log_quadratic_rates(lhat: np.ndarray, log_target: np.ndarray, axis: int, kappa: float, periodic: bool,
                        log_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Jump rates (up, down) along ``axis`` of the log-quadratic flux at the point values ``lhat``
    (``gridflow.flows.kernels``: exact edge flux for Gaussians, the log mean where log rho is not
    resolved), with column weights e^{log_weight}: the flux across (i, i+1) is
    up_i rho_i - down_i rho_{i+1} for rho = e^{lhat - log_weight}.  Entry i is the edge (i, i+1); at
    a wall the last entry is 0."""
    lines = _as_lines(lhat, axis)
    weight = np.ones_like(lines) if log_weight is None else np.exp(_as_lines(log_weight, axis))
    up, down = np.empty_like(lines), np.empty_like(lines)
    _lines_rates(lines, _as_lines(log_target, axis), float(kappa), periodic, weight, up, down)
    return tuple(_from_lines(o, lhat.shape, axis) for o in (up, down))


def _drop_stale() -> None:
    """The kernels here compile in the flux rates (:mod:`gridflow.flows.kernels.rates`): drop their
    disk caches when that module is newer (numba checks a cache against its own file only)."""
    import sys

    from gridflow.flows.kernels import drop_stale_caches, rates, scalar

    drop_stale_caches(sys.modules[__name__], (rates, scalar))


_drop_stale()
