"""The minimal-kinetic-energy velocity of the prescribed tempering path (docs/conventions.md; docs/numerics.md).

Exact references: along the geometric path between two Gaussians every pi_lambda is Gaussian,
N(m(l), C(l)), and the gradient field of least kinetic energy is affine,
v(x) = m' + S (x - m) with S symmetric solving S C + C S = C' (so the covariance moves as
C' = S C + C S), kinetic energy |m'|^2 + tr(S C S); in 1D, v = m' + (s'/s)(x - m) and
KE = m'^2 + s'^2.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.linalg import solve_continuous_lyapunov

from gridflow.core.distributions import gaussian_log_density, normalise
from gridflow.core.grid import Grid
from gridflow.flows.path import PathVelocity, path_velocity, unit_velocity
from gridflow.core.tempering import TemperedPath

# --------------------------------------------------------------------------- helpers


def gaussian_path(grid: Grid, m0, c0, m1, c1) -> TemperedPath:
    m0, c0, m1, c1 = (np.atleast_1d(np.asarray(a, dtype=float)) for a in (m0, c0, m1, c1))
    d = grid.dim
    lr = gaussian_log_density(grid.points, m0, c0.reshape(d, d)).reshape(grid.shape)
    lt = gaussian_log_density(grid.points, m1, c1.reshape(d, d)).reshape(grid.shape)
    return TemperedPath(grid, normalise(lr, grid), normalise(lt, grid))


def gaussian_exact(lam, m0, c0, m1, c1):
    """(m, C, m', S, KE) of the geometric path between N(m0, C0) and N(m1, C1) at lambda."""
    m0, m1 = np.atleast_1d(np.asarray(m0, float)), np.atleast_1d(np.asarray(m1, float))
    d = m0.size
    c0, c1 = np.asarray(c0, float).reshape(d, d), np.asarray(c1, float).reshape(d, d)
    p0, p1 = np.linalg.inv(c0), np.linalg.inv(c1)
    prec = (1 - lam) * p0 + lam * p1
    dprec = p1 - p0
    cov = np.linalg.inv(prec)
    mean = cov @ ((1 - lam) * p0 @ m0 + lam * p1 @ m1)
    dmean = cov @ (p1 @ m1 - p0 @ m0 - dprec @ mean)
    dcov = -cov @ dprec @ cov
    s = solve_continuous_lyapunov(cov, dcov)  # C S + S C = C'
    return mean, cov, dmean, s, float(dmean @ dmean + np.trace(s @ cov @ s))


def teleport_path(m: float, h: float, margin: float = 30.0) -> TemperedPath:
    """rho_0 ∝ e^-|x|, rho_1 ∝ e^(-2 min(|x|, |x - m|)) on [-margin, m + margin] (docs/numerics.md)."""
    lo, hi = -margin, m + margin
    grid = Grid((lo,), (hi,), (int(round((hi - lo) / h)),))
    x = grid.axes[0]
    return TemperedPath(grid, normalise(-np.abs(x), grid),
                        normalise(-2.0 * np.minimum(np.abs(x), np.abs(x - m)), grid))


def d_rho(log_rho: np.ndarray, tilt: np.ndarray) -> np.ndarray:
    """d rho / d lambda = rho (T - E_rho T), straight from the definition."""
    with np.errstate(under="ignore"):
        w = np.exp(log_rho - log_rho.max())
        rho = np.exp(log_rho)
    w /= w.sum()
    return rho * (tilt - np.sum(w * tilt))


def divergence(grid: Grid, fluxes) -> np.ndarray:
    """Discrete divergence of face fluxes (zero flux through reflecting walls)."""
    out = np.zeros(grid.shape)
    for k, flux in enumerate(fluxes):
        h = grid.spacing[k]
        if grid.periodic:
            out += (flux - np.roll(flux, 1, axis=k)) / h
        else:
            pad = list(flux.shape)
            pad[k] = 1
            zero = np.zeros(pad)
            out += (np.concatenate([flux, zero], axis=k) - np.concatenate([zero, flux], axis=k)) / h
    return out


def no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


def order(e_coarse: float, e_fine: float, ratio: float = 2.0) -> float:
    return float(np.log(abs(e_coarse) / abs(e_fine)) / np.log(ratio))


# --------------------------------------------------------------------------- 1. Gaussian path, 1D

G1 = dict(m0=0.0, c0=1.0, m1=2.0, c1=0.36)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.8, 1.0])
def test_gaussian_1d_velocity_and_energy_second_order(lam):
    errors, vel_errors = [], []
    for h in (0.02, 0.01):
        grid = Grid((-12.0,), (12.0,), (int(round(24 / h)),))
        path = gaussian_path(grid, **G1)
        mean, cov, dmean, s, ke = gaussian_exact(lam, **G1)
        pv = no_warnings(path_velocity, path, lam, 1.0)
        assert pv.method == "cumulative"
        assert pv.face_velocity[0].shape == (grid.cells[0] - 1,)
        assert pv.velocity.shape == (1, *grid.shape)
        errors.append((pv.kinetic_energy - ke) / ke)

        # velocity in the bulk, at the faces and at the cell centres
        log_rho = path.log_density(lam)
        faces = grid.edges[0][1:-1]
        bulk_f = 0.5 * (log_rho[:-1] + log_rho[1:]) > log_rho.max() + np.log(1e-8)
        exact_f = dmean[0] + s[0, 0] * (faces - mean[0])
        exact_c = dmean[0] + s[0, 0] * (grid.axes[0] - mean[0])
        bulk_c = log_rho > log_rho.max() + np.log(1e-8)
        scale = np.abs(exact_f[bulk_f]).max()
        face_err = np.abs(pv.face_velocity[0] - exact_f)[bulk_f].max()
        cell_err = np.abs(pv.velocity[0] - exact_c)[bulk_c].max()
        assert face_err <= 5 * h**2 * scale and cell_err <= 5 * h**2 * scale  # measured constant 1.3-3.7
        vel_errors.append(face_err)
    assert abs(errors[1]) <= 1e-4  # measured 1.2e-5 .. 3.5e-5 at h = 0.01
    assert 1.8 <= order(errors[0], errors[1]) <= 2.3, errors
    assert 1.8 <= order(vel_errors[0], vel_errors[1]) <= 2.3, vel_errors


def test_speed_scaling_and_zero_speed():
    grid = Grid((-12.0,), (12.0,), (1200,))
    path = gaussian_path(grid, **G1)
    unit = path_velocity(path, 0.4, 1.0)
    fast = path_velocity(path, 0.4, 2.5)
    np.testing.assert_allclose(fast.face_velocity[0], 2.5 * unit.face_velocity[0], rtol=1e-15)
    np.testing.assert_allclose(fast.velocity, 2.5 * unit.velocity, rtol=1e-15)
    np.testing.assert_allclose(fast.face_flux[0], 2.5 * unit.face_flux[0], rtol=1e-15)
    assert fast.kinetic_energy == pytest.approx(6.25 * unit.kinetic_energy, rel=1e-14)
    still = path_velocity(path, 0.4, 0.0)
    assert still.kinetic_energy == 0.0 and not np.any(still.velocity)
    # a constant shift of log rho changes nothing
    shifted = unit_velocity(grid, path.log_density(0.4) + 3.0, path.tilt)
    np.testing.assert_allclose(shifted.face_velocity[0], unit.face_velocity[0], rtol=1e-12, atol=1e-12)
    assert shifted.kinetic_energy == pytest.approx(unit.kinetic_energy, rel=1e-12)


def test_tails_down_to_e_minus_3000_are_accurate():
    """log rho reaches -3248 on the box: the velocity stays the affine one (to the O(h^2 x^2)
    discretisation error), and the sparse solve (row-scaled) reproduces the closed form."""
    grid = Grid((-64.0,), (64.0,), (25600,))
    path = gaussian_path(grid, 0.0, 1.0, 2.0, 0.36)
    lam = 0.3
    log_rho = path.log_density(lam)
    assert log_rho.min() < -3000
    mean, _, dmean, s, ke = gaussian_exact(lam, 0.0, 1.0, 2.0, 0.36)
    closed = no_warnings(path_velocity, path, lam, 1.0)
    sparse = no_warnings(path_velocity, path, lam, 1.0, method="sparse")
    faces = grid.edges[0][1:-1]
    exact = dmean[0] + s[0, 0] * (faces - mean[0])
    inner = np.abs(faces) < 60.0  # away from the walls, where the box bends v to 0
    v = closed.face_velocity[0]
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(closed.velocity))
    rel = np.abs(v - exact)[inner] / np.abs(exact[inner])
    assert rel.max() < 0.02  # O((h d log rho/dx)^2) in the far tail; ~1e-3 in the bulk
    tail = inner & (0.5 * (log_rho[:-1] + log_rho[1:]) < -1000)
    assert tail.sum() > 1000 and rel[tail[inner]].max() < 0.02
    np.testing.assert_allclose(sparse.face_velocity[0], v, rtol=1e-10)
    assert sparse.kinetic_energy == pytest.approx(closed.kinetic_energy, rel=1e-12)
    assert closed.kinetic_energy == pytest.approx(ke, rel=1e-5)


# --------------------------------------------------------------------------- 2. Gaussian path, 2D

CASES_2D = {
    "diagonal": ([0.0, 0.0], [[1.0, 0.0], [0.0, 0.49]], [1.5, -1.0], [[0.36, 0.0], [0.0, 1.44]]),
    "correlated": ([0.0, 0.0], [[1.0, 0.5], [0.5, 0.8]], [1.5, -1.0], [[0.5, -0.3], [-0.3, 1.2]]),
}


@pytest.mark.parametrize("case", sorted(CASES_2D))
def test_gaussian_2d_energy_second_order(case):
    m0, c0, m1, c1 = CASES_2D[case]
    lam = 0.4
    mean, cov, dmean, s, ke = gaussian_exact(lam, m0, c0, m1, c1)
    if case == "diagonal":  # per-axis sum of m'^2 + s'^2
        sd = np.sqrt(np.diag(cov))
        assert ke == pytest.approx(float(np.sum(dmean**2 + (np.diag(s) * sd) ** 2)), rel=1e-12)
    errors, vel_errors = [], []
    for h in (0.1, 0.05):
        grid = Grid((-7.0, -8.0), (8.0, 6.0), (int(round(15 / h)), int(round(14 / h))))
        path = gaussian_path(grid, m0, c0, m1, c1)
        pv = no_warnings(path_velocity, path, lam, 1.0)
        assert pv.method == "sparse"
        assert pv.face_velocity[0].shape == (grid.cells[0] - 1, grid.cells[1])
        assert pv.face_velocity[1].shape == (grid.cells[0], grid.cells[1] - 1)
        errors.append((pv.kinetic_energy - ke) / ke)
        log_rho = path.log_density(lam).ravel()
        bulk = log_rho > log_rho.max() + np.log(1e-8)
        exact = dmean + (grid.points - mean) @ s.T
        vel_errors.append(np.abs(pv.velocity.reshape(2, -1).T - exact)[bulk].max())
    assert abs(errors[1]) <= 2e-3
    assert 1.7 <= order(*errors) <= 2.4, errors
    assert vel_errors[1] < 0.05 and 1.7 <= order(*vel_errors) <= 2.4, vel_errors


def test_2d_product_density_reproduces_the_1d_closed_form():
    """A path that only moves along x (y marginal fixed) is the 1D problem in every row, tails
    of 1e-50 included: the 2D sparse solve must give the 1D velocities, and v_y = 0."""
    gx = Grid((-12.0,), (12.0,), (480,))
    g2 = Grid((-12.0, -3.0), (12.0, 3.0), (480, 12))
    lr = gaussian_log_density(g2.points, [0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]).reshape(g2.shape)
    lt = gaussian_log_density(g2.points, [2.0, 0.0], [[0.36, 0.0], [0.0, 1.0]]).reshape(g2.shape)
    p2 = TemperedPath(g2, normalise(lr, g2), normalise(lt, g2))
    p1 = gaussian_path(gx, 0.0, 1.0, 2.0, 0.36)
    v2 = no_warnings(path_velocity, p2, 0.6, 1.0)
    v1 = no_warnings(path_velocity, p1, 0.6, 1.0)
    assert p2.log_density(0.6).min() < np.log(1e-50)
    np.testing.assert_allclose(v2.face_velocity[0], np.repeat(v1.face_velocity[0][:, None], 12, axis=1),
                               rtol=1e-9, atol=1e-12)
    assert np.abs(v2.face_velocity[1]).max() < 1e-9
    assert v2.kinetic_energy == pytest.approx(v1.kinetic_energy, rel=1e-10)


def test_periodic_1d_matches_closed_form_with_zero_circulation():
    """On a circle J = J_cumulative + c with c fixed by sum_f v_f h = 0 (v is a periodic gradient)."""
    grid = Grid((0.0,), (2 * np.pi,), (400,), "periodic")
    x = grid.axes[0]
    path = TemperedPath(grid, normalise(2.0 * np.cos(x), grid), normalise(4.0 * np.cos(x - 2.0) + np.sin(2 * x), grid))
    lam = 0.6
    pv = no_warnings(path_velocity, path, lam, 1.0)
    assert pv.method == "sparse" and pv.face_velocity[0].shape == (400,)
    log_rho = path.log_density(lam)
    h = grid.spacing[0]
    cumulative = -np.cumsum(d_rho(log_rho, path.tilt)) * h  # face i between cells i and i+1 (mod n)
    rho_face = np.exp(0.5 * (log_rho + np.roll(log_rho, -1)))
    c = -np.sum(cumulative / rho_face) / np.sum(1.0 / rho_face)
    v = (cumulative + c) / rho_face
    np.testing.assert_allclose(pv.face_velocity[0], v, rtol=1e-9, atol=1e-11 * np.abs(v).max())
    assert pv.kinetic_energy == pytest.approx(float(np.sum(rho_face * v * v) * h), rel=1e-10)
    np.testing.assert_allclose(pv.velocity[0], 0.5 * (v + np.roll(v, 1)), rtol=1e-9, atol=1e-11)


# --------------------------------------------------------------------------- 3. teleportation of mass

TELEPORT_M = (1.0, 5.0, 15.0, 50.0)
TELEPORT_LAMBDA = (0.5, 0.9, 1.0)


@pytest.fixture(scope="module")
def teleport_table() -> dict[float, list[float]]:
    table = {}
    for m in TELEPORT_M:
        path = teleport_path(m, 0.01)
        row = []
        for lam in TELEPORT_LAMBDA:
            pv = no_warnings(path_velocity, path, lam, 1.0)
            assert np.all(np.isfinite(pv.velocity)) and np.all(np.isfinite(pv.face_velocity[0]))
            row.append(pv.kinetic_energy)
        table[m] = row
    return table


def test_teleportation_energy_finite_and_exploding_like_e_to_the_m(teleport_table):
    for m, row in teleport_table.items():
        assert all(np.isfinite(k) and k > 0.0 for k in row), (m, row)
    # densities span far beyond 1e-25 for m = 50
    assert teleport_path(50.0, 0.01).log_density(1.0).min() < np.log(1e-25)
    at_one = np.array([teleport_table[m][-1] for m in TELEPORT_M])
    assert np.all(np.diff(at_one) > 0)
    slope = np.log(teleport_table[15.0][-1] / teleport_table[5.0][-1]) / 10.0  # measured ~1.24
    assert 0.5 <= slope <= 2.0, slope
    slope_far = np.log(teleport_table[50.0][-1] / teleport_table[15.0][-1]) / 35.0  # measured ~1.07
    assert 0.5 <= slope_far <= 2.0, slope_far
    # the energy grows along the path for the separated cases
    for m in (15.0, 50.0):
        assert teleport_table[m][0] < teleport_table[m][1] < teleport_table[m][2]


def test_teleportation_energy_at_half_converges_second_order():
    values = [no_warnings(path_velocity, teleport_path(5.0, h, margin=20.0), 0.5, 1.0).kinetic_energy
              for h in (0.01, 0.005, 0.0025)]
    d1, d2 = values[1] - values[0], values[2] - values[1]
    assert 1.8 <= order(d1, d2) <= 2.3, values
    assert abs(d2) / values[2] < 1e-5  # Richardson error estimate ~ d2/3: ~1e-6 relative


def test_teleportation_valley_velocity_and_flux_in_log_space():
    """At lambda = 1 with m = 50 the valley density is ~1e-22 and the velocity there ~1e21:
    v and J must be consistent (J = rho_f v) and the flux through the valley O(1)."""
    path = teleport_path(50.0, 0.01)
    pv = no_warnings(path_velocity, path, 1.0, 1.0)
    log_rho = path.log_density(1.0)
    lf = 0.5 * (log_rho[:-1] + log_rho[1:])
    v, flux = pv.face_velocity[0], pv.face_flux[0]
    faces = path.grid.edges[0][1:-1]
    valley = np.argmin(np.where(np.abs(faces - 25.0) < 5.0, lf, np.inf))
    assert abs(faces[valley] - 25.0) < 0.02 and lf[valley] < np.log(1e-21)
    # the flux through the valley is the rate at which the mode at m gains mass (~ m / 4)
    gain = float(np.sum(d_rho(log_rho, path.tilt)[valley + 1:]) * path.grid.spacing[0])
    assert 0.5 * 12.5 < gain < 2 * 12.5
    assert flux[valley] == pytest.approx(gain, rel=1e-10)
    assert v[valley] == pytest.approx(gain / np.exp(lf[valley]), rel=1e-10)  # ~1.3e23
    big = np.abs(flux) > 1e-300
    np.testing.assert_allclose(flux[big], np.exp(lf[big]) * v[big], rtol=1e-12)


def test_sparse_solve_handles_moderate_valleys_and_warns_for_deep_ones():
    path = teleport_path(20.0, 0.02, margin=20.0)
    closed = no_warnings(path_velocity, path, 1.0, 1.0)
    sparse = no_warnings(path_velocity, path, 1.0, 1.0, method="sparse")
    np.testing.assert_allclose(sparse.face_velocity[0], closed.face_velocity[0], rtol=1e-9)
    assert sparse.kinetic_energy == pytest.approx(closed.kinetic_energy, rel=1e-11)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        path_velocity(teleport_path(50.0, 0.02, margin=20.0), 1.0, 1.0, method="sparse")


def test_velocity_beyond_double_range_is_inf_with_a_warning():
    path = teleport_path(800.0, 0.05, margin=20.0)  # valley density ~e^-800
    with pytest.warns(RuntimeWarning, match="double-precision range"):
        pv = path_velocity(path, 1.0, 1.0)
    assert pv.kinetic_energy == np.inf
    assert not np.any(np.isnan(pv.velocity)) and not np.any(np.isnan(pv.face_velocity[0]))
    assert np.isfinite(no_warnings(path_velocity, path, 0.5, 1.0).kinetic_energy)


# --------------------------------------------------------------------------- 4. conservation


def _check_conservation(path: TemperedPath, lam: float, method: str = "auto") -> float:
    pv = no_warnings(path_velocity, path, lam, 1.0, method=method)
    log_rho = path.log_density(lam)
    dr = d_rho(log_rho, path.tilt)
    residual = divergence(path.grid, pv.face_flux) + dr
    # round-off: relative to the largest rate, and locally relative to the fluxes that meet in the cell
    local_scale = np.abs(dr) + sum(_adjacent_flux(path.grid, k, np.abs(f)) for k, f in enumerate(pv.face_flux))
    assert np.abs(residual).max() <= 1e-12 * np.abs(dr).max()
    assert np.all(np.abs(residual) <= 1e-10 * local_scale + 1e-300)
    return float(np.abs(residual).max() / np.abs(dr).max())


def _adjacent_flux(grid: Grid, axis: int, flux: np.ndarray) -> np.ndarray:
    """|J| on the faces of each cell along ``axis``, divided by h (the scale of its divergence)."""
    h = grid.spacing[axis]
    if grid.periodic:
        return (flux + np.roll(flux, 1, axis=axis)) / h
    pad = list(flux.shape)
    pad[axis] = 1
    zero = np.zeros(pad)
    return (np.concatenate([flux, zero], axis=axis) + np.concatenate([zero, flux], axis=axis)) / h


@pytest.mark.parametrize("lam", [0.5, 0.9, 1.0])
def test_conservation_1d(lam):
    _check_conservation(teleport_path(15.0, 0.01), lam)
    _check_conservation(teleport_path(50.0, 0.01), lam)
    grid = Grid((-12.0,), (12.0,), (1200,))
    _check_conservation(gaussian_path(grid, **G1), lam)
    _check_conservation(gaussian_path(grid, **G1), lam, method="sparse")


def test_conservation_2d_reflecting_and_periodic():
    m0, c0, m1, c1 = CASES_2D["correlated"]
    grid = Grid((-7.0, -8.0), (8.0, 6.0), (150, 140))
    path = gaussian_path(grid, m0, c0, m1, c1)
    assert path.log_density(0.4).min() < np.log(1e-25)
    _check_conservation(path, 0.4)

    grid = Grid((0.0, 0.0), (2 * np.pi, 2 * np.pi), (64, 80), "periodic")
    x, y = grid.coordinates
    path = TemperedPath(grid, normalise(2.0 * np.cos(x) + np.sin(y), grid),
                        normalise(5.0 * np.cos(x - 1.0) * np.cos(y), grid))
    pv = path_velocity(path, 0.7, 1.0)
    assert pv.face_velocity[0].shape == (64, 80) and pv.face_velocity[1].shape == (64, 80)
    _check_conservation(path, 0.7)


# --------------------------------------------------------------------------- input checks


def test_bad_input_is_rejected():
    grid = Grid((-1.0,), (1.0,), (10,))
    finite = np.zeros(10)
    bad = finite.copy()
    bad[3] = -np.inf
    with pytest.raises(ValueError, match="finite"):
        unit_velocity(grid, bad, finite)
    with pytest.raises(ValueError, match="finite"):
        unit_velocity(grid, finite, np.where(np.arange(10) == 2, np.nan, 0.0))
    with pytest.raises(ValueError, match="method"):
        unit_velocity(grid, finite, finite, method="magic")
    with pytest.raises(ValueError, match="cumulative"):
        unit_velocity(Grid((-1.0, -1.0), (1.0, 1.0), (4, 4)), np.zeros((4, 4)), np.zeros((4, 4)),
                      method="cumulative")
    with pytest.raises(ValueError, match="shape"):
        unit_velocity(grid, np.zeros(9), np.zeros(9))
    flat = unit_velocity(grid, finite, finite)  # no tilt: nothing moves
    assert isinstance(flat, PathVelocity) and flat.kinetic_energy == 0.0 and not np.any(flat.velocity)
