r"""Minimal-kinetic-energy velocity of the prescribed tempering path (the ``path`` flow).

The density follows the geometric path rho_t = pi_{lambda(t)} with
log pi_lambda = log pi_0 + lambda T - A(lambda), T = log pi - log pi_0, so

.. math::  \partial_t \rho = \lambda'(t)\, \rho\, (T - E_\rho T).

The velocity of least kinetic energy that carries the path is a gradient, v = grad phi,
with div(rho grad phi) = -d_t rho and zero flux through reflecting walls (docs/conventions.md; docs/numerics.md).
Everything is linear in lambda', so :func:`unit_velocity` computes the field u for
lambda' = 1 and :func:`path_velocity` scales it: v_t = lambda' u, ||v_t||^2 = lambda'^2 ∫ rho |u|^2.

Discretisation (finite volumes on the cell-centred grid)
-------------------------------------------------------
* Unknowns live on the faces between neighbouring cells: the normal velocity v_f and the
  flux J_f = rho_f v_f.  Discrete continuity holds cell by cell,
  ``sum over the faces of cell i of (outward J_f) * (face area) = -(d_t rho)_i * cell_volume``,
  with J = 0 on reflecting walls and wrap-around faces on periodic axes.
* Face density: the geometric mean rho_f = exp((log rho_i + log rho_j) / 2), i.e. log rho
  interpolated linearly to the face.  It is second-order accurate for smooth densities,
  positive, and is formed from log values only, so nothing under/overflows even when rho
  spans e^-2000.
* Velocity of least kinetic energy: v_f = (phi_j - phi_i) / h (a discrete gradient) where
  phi solves the weighted Laplace problem
  ``sum_f rho_f (phi_i - phi_j) / h_f^2 = (d_t rho)_i``.
* Kinetic energy: ``sum over faces of rho_f v_f^2 * cell_volume`` (the face's dual cell).
* Cell-centre velocity (the ``velocity`` dataset): per axis, the mean of the normal velocities
  on the two faces of the cell; a reflecting wall counts as a face with v = 0 (the exact
  minimal velocity does vanish on a zero-flux wall where rho > 0, so this is the midpoint
  value and stays second-order accurate).

One-dimensional reflecting grids (``method="cumulative"``, the default there)
    The 1D problem has the closed-form flux J_{i+1/2} = -sum_{j<=i} (d_t rho)_j h =
    +sum_{j>i} (d_t rho)_j h.  Each face is evaluated from its own tail (the left sum for faces
    whose cumulative mass is at most 1/2, i.e. left of the median of rho, the right sum beyond),
    so round-off of the O(1) bulk never lands on the tiny tails.  The sums are accumulated in
    log space: g = T - E T is split into its positive and negative parts and
    ``np.logaddexp.accumulate`` of log rho_j + log h + log|g_j| gives log of each partial
    sum; v = J / rho_f is then formed as exp(log sum - log rho_f), so v keeps full relative
    accuracy where rho ~ 1e-25 or 1e-800.  This is exactly the discrete solution of the
    weighted Laplace problem above (the 1D sparse solve reproduces it to round-off).

Two dimensions and periodic axes (``method="sparse"``)
    The sparse symmetric weighted Laplacian is assembled with face weights rho_f / h^2, its
    rows are scaled by 1 / max(rho_f over the faces of the cell) (so every equation is O(1/h^2)
    whatever the local density and the LU backward error is relative to the local density;
    measured on a Gaussian path: without the scaling the tail velocities are lost entirely once
    rho spans e^-500 and the factorisation is exactly singular once rho underflows; with it the
    1D sparse solve matches the closed form to ~1e-12 relative down to rho ~ e^-3000), the constant null space is removed by pinning phi = 0 in the cell of
    largest density (the right-hand side sums to zero up to round-off, which the dropped
    equation absorbs where rho is largest), and the system is solved by sparse LU (SuperLU).
    The LU solution is then improved by defect correction on the face velocities (the residual
    is evaluated from v, not from phi, whose values jump by ~e^depth across a density valley).
    The first solve's relative error is ~ eps * e^depth / h^2 for a valley of depth
    ``depth`` (in log rho) between two modes; the corrections bring it to round-off as long as
    that is below 1 (depth up to ~25 at h = 0.02: measured on the teleportation example, where
    the sparse and closed-form 1D velocities agree to 1e-13).  Deeper valleys are beyond a
    double-precision elliptic solve: a :class:`RuntimeWarning` says so (the 1D closed form has
    no such limit).

Face arrays: along axis k a reflecting grid has ``n_k - 1`` interior faces (face i lies
between cells i and i+1); a periodic axis has ``n_k`` faces, the last one being the
wrap-around face between cell n_k - 1 and cell 0.

Velocities that exceed the double range (a path that needs more than ~1e308 speed through an
empty valley on this grid) are returned as +-inf with a :class:`RuntimeWarning`; the kinetic
energy is then inf.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from gridflow.core.distributions import normalise
from gridflow.core.grid import Grid
from gridflow.core.tempering import TemperedPath

__all__ = ["PathVelocity", "unit_velocity", "path_velocity", "METHODS"]

#: Solution methods accepted by :func:`unit_velocity`.
METHODS = ("auto", "cumulative", "sparse")

_LOG_MAX = float(np.log(np.finfo(float).max))  # ~709.78: exp above this overflows


@dataclass(frozen=True)
class PathVelocity:
    """The minimal-kinetic-energy velocity of the path at one instant.

    ``face_velocity[k]`` and ``face_flux[k]`` hold the normal velocity and the flux
    rho_f v_f on the faces normal to axis k (``n_k - 1`` interior faces along axis k on
    reflecting axes, ``n_k`` with the wrap-around face last on periodic axes).
    ``velocity`` has shape ``(dim, *grid.shape)``: per axis, the mean of the two face values
    of each cell, with reflecting walls counting as faces with v = 0.
    ``kinetic_energy`` is ∫ rho |v|^2 = sum over faces of rho_f v_f^2 * cell_volume.
    ``method`` is ``"cumulative"`` (1D closed form) or ``"sparse"`` (elliptic solve).
    """

    face_velocity: tuple[np.ndarray, ...]
    velocity: np.ndarray
    kinetic_energy: float
    face_flux: tuple[np.ndarray, ...] = field(default=(), repr=False)
    method: str = "cumulative"

    def scaled(self, factor: float) -> PathVelocity:
        """The field for lambda' = ``factor`` (velocities and fluxes times factor, energy times factor^2)."""
        factor = float(factor)
        if factor == 0.0:  # avoid 0 * inf
            return PathVelocity(
                tuple(np.zeros_like(v) for v in self.face_velocity),
                np.zeros_like(self.velocity),
                0.0,
                tuple(np.zeros_like(j) for j in self.face_flux),
                self.method,
            )
        # a product beyond the double range is inf by design (as for the unit field itself)
        with np.errstate(over="ignore"):
            return PathVelocity(
                tuple(factor * v for v in self.face_velocity),
                factor * self.velocity,
                factor * factor * self.kinetic_energy,
                tuple(factor * j for j in self.face_flux),
                self.method,
            )


# --------------------------------------------------------------------------- helpers


def _safe_exp(x: np.ndarray) -> np.ndarray:
    """exp(x) with +inf (and no floating-point error) where it overflows; -inf -> 0."""
    x = np.asarray(x, dtype=float)
    out = np.full(x.shape, np.inf)
    ok = x < _LOG_MAX
    out[ok] = np.exp(x[ok])
    return out


def _exp_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """exp(a) - exp(b) for log values a, b (either may be -inf), without overflow or NaN.

    Computed as sign * exp(M + log(1 - exp(m - M))) with M = max(a, b), m = min(a, b); a
    magnitude beyond the double range becomes +-inf.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    big = np.maximum(a, b)
    small = np.minimum(a, b)
    live = big > -np.inf
    gap = np.full(big.shape, -np.inf)
    gap[live] = small[live] - big[live]
    factor = -np.expm1(gap)  # 1 - exp(m - M) in [0, 1]
    nonzero = live & (factor > 0.0)
    magnitude = np.zeros(big.shape)
    with np.errstate(under="ignore"):
        magnitude[nonzero] = _safe_exp(big[nonzero] + np.log(factor[nonzero]))
    return np.where(a >= b, magnitude, -magnitude)


def _signed_log_parts(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log of the positive and negative parts of g (-inf where a part is zero)."""
    pos = g > 0.0
    neg = g < 0.0
    absg = np.where(pos | neg, np.abs(g), 1.0)
    logabs = np.log(absg)
    return np.where(pos, logabs, -np.inf), np.where(neg, logabs, -np.inf)


def _tilt_deviation(log_rho: np.ndarray, tilt: np.ndarray) -> np.ndarray:
    """g = T - E_rho T with the grid expectation (weights exp(log_rho - max), normalised)."""
    with np.errstate(under="ignore"):
        w = np.exp(log_rho - np.max(log_rho))
    w = w / w.sum()
    return tilt - float(np.sum(w * tilt))


def _face_pairs(grid: Grid, axis: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) cell values of the faces normal to ``axis`` (wrap face last if periodic)."""
    n = grid.shape[axis]
    left = np.take(values, np.arange(n - 1), axis=axis)
    right = np.take(values, np.arange(1, n), axis=axis)
    if grid.periodic:
        left = np.concatenate([left, np.take(values, [n - 1], axis=axis)], axis=axis)
        right = np.concatenate([right, np.take(values, [0], axis=axis)], axis=axis)
    return left, right


def _cell_average(grid: Grid, axis: int, face_values: np.ndarray) -> np.ndarray:
    """Per cell, the mean of the values on its two faces normal to ``axis`` (walls count as 0)."""
    if grid.periodic:
        lower = np.roll(face_values, 1, axis=axis)  # face i-1/2 of cell i (wrap face for cell 0)
        upper = face_values
    else:
        pad_shape = list(face_values.shape)
        pad_shape[axis] = 1
        zero = np.zeros(pad_shape)
        lower = np.concatenate([zero, face_values], axis=axis)
        upper = np.concatenate([face_values, zero], axis=axis)
    both_inf = np.isinf(lower) & np.isinf(upper) & (np.sign(lower) != np.sign(upper))
    if both_inf.any():  # inf + (-inf): the mean is undefined; report 0 rather than NaN
        lower = np.where(both_inf, 0.0, lower)
        upper = np.where(both_inf, 0.0, upper)
    return 0.5 * lower + 0.5 * upper


def _energy(log_rho_face: np.ndarray, v: np.ndarray) -> float:
    """sum over faces of rho_f v_f^2, without overflow (inf when it exceeds the double range)."""
    if not np.all(np.isfinite(v)):
        return float("inf")
    with np.errstate(under="ignore"):
        t = np.abs(np.exp(0.5 * log_rho_face) * v)  # sqrt(rho_f) |v|: finite since |v| is
    top = float(t.max()) if t.size else 0.0
    if top == 0.0:
        return 0.0
    with np.errstate(under="ignore"):
        share = float(np.sum((t / top) ** 2))
    return share * top * top  # Python floats: overflow gives inf, not an error


def _warn_overflow(v: np.ndarray) -> None:
    if not np.all(np.isfinite(v)):
        warnings.warn(
            "path flow: the minimal velocity exceeds the double-precision range on some faces "
            "(the path moves mass through a region of essentially zero density); velocities there "
            "are reported as inf and the kinetic energy is inf",
            RuntimeWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------- 1D closed form


def _cumulative_1d(grid: Grid, log_rho: np.ndarray, g: np.ndarray) -> PathVelocity:
    h = grid.spacing[0]
    log_h = np.log(h)
    lpos, lneg = _signed_log_parts(g)
    a_pos = log_rho + log_h + lpos  # log of the positive part of (d_t rho)_j h
    a_neg = log_rho + log_h + lneg
    # left partial sums over j <= i, for faces i + 1/2, i = 0 .. n-2
    left_pos = np.logaddexp.accumulate(a_pos)[:-1]
    left_neg = np.logaddexp.accumulate(a_neg)[:-1]
    # right partial sums over j > i
    right_pos = np.logaddexp.accumulate(a_pos[::-1])[::-1][1:]
    right_neg = np.logaddexp.accumulate(a_neg[::-1])[::-1][1:]

    # which faces lie left of the median of rho: cumulative mass up to cell i at most 1/2
    log_mass = log_rho + log_h
    log_cum = np.logaddexp.accumulate(log_mass)
    log_total = log_cum[-1]
    use_left = log_cum[:-1] - log_total <= np.log(0.5)

    log_rho_face = 0.5 * (log_rho[:-1] + log_rho[1:])
    # J = -(left_pos - left_neg) on the left, +(right_pos - right_neg) on the right
    plus = np.where(use_left, left_neg, right_pos)
    minus = np.where(use_left, left_pos, right_neg)
    v = _exp_diff(plus - log_rho_face, minus - log_rho_face)  # v = J / rho_f, in log space
    # the partial sums are sums of (d_t rho)_j h, which is the flux J through the face itself
    flux = _exp_diff(plus, minus)
    _warn_overflow(v)
    ke = _energy(log_rho_face, v) * h
    velocity = _cell_average(grid, 0, v)[None, ...]
    return PathVelocity((v,), velocity, ke, (flux,), "cumulative")


# --------------------------------------------------------------------------- sparse solve


#: Relative size (energy norm) of the last defect correction above which the sparse solve is
#: reported as inaccurate.
RESIDUAL_WARNING = 1e-6


def _sparse(grid: Grid, log_rho: np.ndarray, g: np.ndarray, *, scale_rows: bool = True,
            refine: int = 10) -> PathVelocity:
    shape = grid.shape
    size = grid.size
    index = np.arange(size).reshape(shape)

    # faces, flattened axis after axis: cells (fi, fj), log rho_f, spacing
    parts = []
    for axis in range(grid.dim):
        il, ir = _face_pairs(grid, axis, index)
        ll, lr = _face_pairs(grid, axis, log_rho)
        parts.append((il.shape, il.ravel(), ir.ravel(), 0.5 * (ll + lr).ravel(), grid.spacing[axis]))
    fi = np.concatenate([q[1] for q in parts])
    fj = np.concatenate([q[2] for q in parts])
    flog = np.concatenate([q[3] for q in parts])
    fh = np.concatenate([np.full(q[1].size, q[4]) for q in parts])

    # row scale: log of the largest face density around each cell
    if scale_rows:
        row_log = np.full(size, -np.inf)
        np.maximum.at(row_log, fi, flog)
        np.maximum.at(row_log, fj, flog)
    else:
        row_log = np.zeros(size)
    rhs_exp = log_rho.ravel() - row_log
    if np.any(rhs_exp > _LOG_MAX):
        raise ValueError(
            "path flow: the density jumps by more than e^1400 between neighbouring cells; the grid "
            "does not resolve it - refine the grid"
        )

    # equation of cell i (scaled by exp(-row_log_i)): sum_f w_f (phi_i - phi_j) / h_f^2 = rho_i g_i
    with np.errstate(under="ignore"):
        wi = np.exp(flog - row_log[fi]) / fh  # row i's weight of face (i, j), per unit velocity
        wj = np.exp(flog - row_log[fj]) / fh
        rhs = g.ravel() * np.exp(rhs_exp)
    pin = int(np.argmax(log_rho.ravel()))  # phi = 0 in the cell of largest density
    rhs[pin] = 0.0

    r = np.concatenate([fi, fi, fj, fj])
    c = np.concatenate([fi, fj, fj, fi])
    d = np.concatenate([wi / fh, -wi / fh, wj / fh, -wj / fh])
    keep = r != pin
    r = np.concatenate([r[keep], [pin]])
    c = np.concatenate([c[keep], [pin]])
    d = np.concatenate([d[keep], [1.0]])
    lu = spla.splu(sp.csc_matrix((d, (r, c)), shape=(size, size)))

    def residual(v: np.ndarray) -> np.ndarray:
        # rhs - A phi written with the face velocities v = (phi_j - phi_i) / h (no phi needed)
        res = rhs + np.bincount(fi, wi * v, minlength=size) - np.bincount(fj, wj * v, minlength=size)
        res[pin] = 0.0
        return res

    with np.errstate(under="ignore"):
        energy_weight = np.exp(flog - flog.max())

    def relative_size(dv: np.ndarray, v: np.ndarray) -> float:
        # ||dv|| / ||v|| in the kinetic-energy norm sum_f rho_f v_f^2
        num = float(np.sum(energy_weight * dv * dv))
        den = float(np.sum(energy_weight * v * v))
        return float(np.sqrt(num / den)) if den > 0.0 else (0.0 if num == 0.0 else np.inf)

    phi = lu.solve(rhs)
    v = (phi[fj] - phi[fi]) / fh
    # Defect correction on the face velocities.  The residual is evaluated from v, never from
    # phi: across a deep density valley phi jumps by ~e^depth, so phi itself cannot carry the
    # O(1) variations elsewhere, and the first LU solve has a forward error ~ eps * cond with
    # cond ~ e^depth / h^2.  Each correction divides the error by ~1 / (eps * cond).
    change = np.inf
    for _ in range(refine):
        delta = lu.solve(residual(v))
        dv = (delta[fj] - delta[fi]) / fh
        new_change = relative_size(dv, v)
        if not np.isfinite(new_change) or new_change > 0.5 * change:
            break  # not converging (eps * cond >= 1): keep the current iterate
        v = v + dv
        change = new_change
        if change < 1e-14:
            break
    if change > RESIDUAL_WARNING:
        warnings.warn(
            f"path flow: the sparse solve for the velocity did not converge to double precision (last "
            f"correction {change:.1e} relative in the energy norm): the density has valleys too deep "
            f"for the elliptic solve; the velocity and kinetic energy carry errors of about that size "
            f"or larger",
            RuntimeWarning,
            stacklevel=3,
        )

    face_velocity, face_flux, components = [], [], []
    ke = 0.0
    start = 0
    for axis, (face_shape, il, _, lf, h) in enumerate(parts):
        stop = start + il.size
        va = v[start:stop].reshape(face_shape)
        lfa = lf.reshape(face_shape)
        start = stop
        with np.errstate(under="ignore"):
            face_flux.append(np.exp(lfa) * va)
        face_velocity.append(va)
        ke += _energy(lfa, va)
        components.append(_cell_average(grid, axis, va))
    ke *= grid.cell_volume
    return PathVelocity(tuple(face_velocity), np.stack(components), ke, tuple(face_flux), "sparse")


# --------------------------------------------------------------------------- public API


def unit_velocity(grid: Grid, log_rho: np.ndarray, tilt: np.ndarray, *, method: str = "auto") -> PathVelocity:
    """Minimal-kinetic-energy velocity for d_t log rho = T - E_rho T (lambda' = 1).

    ``log_rho`` is the log density at the cell centres (normalised on the grid; it is
    renormalised here by log-sum-exp, so a constant offset does not matter) and ``tilt`` is
    T = log pi - log pi_0.  Both must be finite.  Densities spanning e^-2000 are fine: rho is
    never exponentiated on its own where that would lose the tails.

    ``method``: ``"auto"`` (the 1D closed form on 1D reflecting grids, the sparse elliptic
    solve otherwise), ``"cumulative"`` (1D reflecting only) or ``"sparse"``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    log_rho = np.asarray(log_rho, dtype=float)
    tilt = np.asarray(tilt, dtype=float)
    if log_rho.shape != grid.shape or tilt.shape != grid.shape:
        raise ValueError(
            f"log_rho and tilt have shapes {log_rho.shape} and {tilt.shape}; the grid has {grid.shape}"
        )
    if not (np.all(np.isfinite(log_rho)) and np.all(np.isfinite(tilt))):
        raise ValueError(
            "path flow: the log density and the tilt log pi - log pi_0 must be finite on every cell "
            "(the tempering path needs pi_0 > 0 and pi > 0 on the whole box)"
        )
    log_rho = normalise(log_rho, grid)
    g = _tilt_deviation(log_rho, tilt)
    one_d_reflecting = grid.dim == 1 and not grid.periodic
    if method == "auto":
        method = "cumulative" if one_d_reflecting else "sparse"
    if method == "cumulative":
        if not one_d_reflecting:
            raise ValueError("the cumulative (closed-form) method needs a 1D grid with reflecting walls")
        return _cumulative_1d(grid, log_rho, g)
    return _sparse(grid, log_rho, g)


def path_velocity(path: TemperedPath, lam: float, dlam_dt: float, *, method: str = "auto") -> PathVelocity:
    """Velocity of least kinetic energy carrying rho_t = pi_lambda(t) at lambda(t) = ``lam``.

    v_t = lambda'(t) u_lambda with u from :func:`unit_velocity` of pi_lam; the kinetic energy
    is lambda'^2 ∫ pi_lam |u|^2.
    """
    unit = unit_velocity(path.grid, path.log_density(float(lam)), path.tilt, method=method)
    return unit.scaled(dlam_dt)
