"""Diagnostics: the (generalised) KL divergence on the grid."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridflow.analysis.diagnostics import kl_divergence
from gridflow.core.distributions import normalise
from gridflow.core.grid import Grid

GRID = Grid((-5.0,), (5.0,), (200,))
X = GRID.axes[0]


def test_kl_of_normalised_densities_is_the_usual_sum():
    log_pi = normalise(-0.5 * (X - 1.0) ** 2, GRID)
    log_rho = normalise(-0.5 * X ** 2 / 1.5, GRID)
    rho = np.exp(log_rho)
    usual = float(np.sum(rho * (log_rho - log_pi)) * GRID.cell_volume)
    assert abs(kl_divergence(log_rho, log_pi, GRID) - usual) <= 1e-14


@settings(max_examples=200, deadline=None)
@given(eps=st.floats(-1e-9, 1e-9), noise=st.floats(0.0, 1e-6), seed=st.integers(0, 2**31 - 1))
def test_kl_is_non_negative_despite_round_off_in_the_mass(eps, noise, seed):
    """rho = (1 + eps) pi (1 + noise * z): the usual sum can be -1e-9; the generalised KL never is."""
    log_pi = normalise(-0.5 * X ** 2 + np.sin(3 * X), GRID)
    z = np.random.default_rng(seed).standard_normal(X.shape)
    log_rho = log_pi + np.log1p(eps) + np.log1p(noise * z)
    kl = kl_divergence(log_rho, log_pi, GRID)
    assert kl >= 0.0
    # for rho close to pi, KL = sum rho (r - 1 + e^-r) vol = sum pi (r^2/2 + O(r^3)) vol, r = log(rho/pi);
    # r + expm1(-r) carries a round-off of a few eps |r| per cell
    r = log_rho - log_pi
    pi = np.exp(log_pi)
    second_order = float(np.sum(pi * r ** 2 / 2) * GRID.cell_volume)
    third_order = float(np.sum(pi * np.abs(r) ** 3) * GRID.cell_volume)
    roundoff = float(np.sum(pi * 4 * np.finfo(float).eps * np.abs(r)) * GRID.cell_volume)
    assert abs(kl - second_order) <= third_order + roundoff


def test_kl_with_densities_spanning_e_minus_2000_is_finite():
    log_pi = normalise(-(X - 4.0) ** 2 / 0.02, GRID)   # down to e^-4050 at the far wall
    log_rho = normalise(-0.5 * X ** 2, GRID)
    kl = kl_divergence(log_rho, log_pi, GRID)
    assert np.isfinite(kl) and kl > 100.0
    assert kl_divergence(log_pi, log_pi, GRID) == 0.0


@pytest.mark.parametrize("cells", [(256, 256), (300, 310)])
def test_compiled_kl_sum_equals_the_array_formula(monkeypatch, cells):
    """Large grids use a compiled one-pass sum (on numba's threads from 4 chunks of 8192 cells); it
    equals the array formula (to summation-order round-off) on densities with empty cells, e^-2000
    tails and both branches of phi."""
    import gridflow.core.backend as backend
    from gridflow.analysis.kl_kernel import CHUNK, PARALLEL_CHUNKS
    from gridflow.core.backend import compiled

    grid = Grid((-5.0, -5.0), (5.0, 5.0), cells)
    assert grid.size >= PARALLEL_CHUNKS * CHUNK                 # compiled grids: on numba's threads
    x, y = grid.coordinates
    log_pi = normalise(-(x - 4.0) ** 2 / 0.02 - 0.5 * y ** 2, grid)
    log_rho = normalise(-0.5 * (x ** 2 + y ** 2) + 0.5 * np.sin(3 * y), grid)
    log_rho[3:7, 10] = -np.inf
    assert compiled(log_rho.size)
    for a, b in [(log_rho, log_pi), (log_pi, log_rho), (log_rho, log_rho + 1e-3)]:
        compiled = kl_divergence(a, b, grid)
        monkeypatch.setattr(backend, "COMPILED_CELLS", 10**9)
        array = kl_divergence(a, b, grid)
        monkeypatch.undo()
        assert compiled == pytest.approx(array, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("dim", [1, 2])
def test_fisher_information_gradient_has_findiffs_stencils(periodic, dim):
    """The gradient of the Fisher information is findiff's second-order one (acc=2; one-sided at
    walls, wrapped on periodic axes) to round-off, without importing findiff at run time."""
    from findiff import Diff

    from gridflow.analysis.diagnostics import gradient

    grid = Grid((-3.0,) * dim, (4.0,) * dim, (37, 29)[:dim], boundary="periodic" if periodic else "reflecting")
    f = np.sin(sum(c * (k + 1) for k, c in enumerate(grid.coordinates))) + sum(c ** 3 for c in grid.coordinates)
    for axis in range(dim):
        ours = gradient(f, axis=axis, spacing=grid.spacing[axis], periodic=periodic)
        theirs = Diff(axis, grid.spacing[axis], acc=2, periodic=periodic)(f)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12 * np.abs(theirs).max())


def test_fisher_information_converges_at_second_order():
    """log rho = -x^2/2 + sin 2x (normalised), log pi = -x^2/4: grad log(rho/pi) = -x/2 + 2 cos 2x is
    not a polynomial, so the central difference errs by h^2 f'''/6 and the midpoint sum is spectrally
    accurate: the error against the quadrature value falls by 4 per halving of h."""
    from scipy.integrate import quad

    from gridflow.analysis.diagnostics import fisher_information

    def log_rho(x):
        return -0.5 * x ** 2 + np.sin(2 * x)

    z = quad(lambda x: np.exp(log_rho(x)), -12, 12, epsabs=1e-14, limit=200)[0]
    exact = quad(lambda x: np.exp(log_rho(x)) * (-0.5 * x + 2 * np.cos(2 * x)) ** 2, -12, 12, epsabs=1e-14,
                 limit=200)[0] / z
    errors = []
    for cells in (200, 400, 800):
        grid = Grid((-12.0,), (12.0,), (cells,))
        x = grid.axes[0]
        errors.append(abs(fisher_information(normalise(log_rho(x), grid), normalise(-0.25 * x ** 2, grid), grid)
                          - exact))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(orders - 2.0) < 0.1), (errors, orders)
