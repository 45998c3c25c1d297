"""The Scharfetter–Gummel generator and its MPRK22 / implicit Euler axis steps."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import expm_multiply

from gridflow.fokker_planck import (axis_rates, bernoulli, edge_differences, generator, implicit_euler_axis,
                                    mprk22_axis)
from gridflow.fokker_planck import _axis_matrix
from gridflow.grid import Grid

GRIDS = {
    "1d": Grid((-6.0,), (7.0,), (130,)),
    "1d-periodic": Grid((-6.0,), (7.0,), (130,), "periodic"),
    "2d": Grid((-5.0, -4.0), (5.0, 6.0), (40, 50)),
    "2d-periodic": Grid((-5.0, -4.0), (5.0, 6.0), (40, 50), "periodic"),
}


def _potential(grid: Grid) -> np.ndarray:
    if grid.dim == 1:
        (x,) = grid.coordinates
        return (x**2 - 4.0) ** 2 / 4.0 + 0.3 * x   # asymmetric double well
    x, y = grid.coordinates
    return 0.6 * x**2 + 0.5 * x * y + 0.5 * (y - 1.0) ** 2 + np.sin(2 * x)


def test_bernoulli_values_and_identity():
    z = np.array([-800.0, -30.0, -1.0, -1e-12, 0.0, 1e-12, 1.0, 30.0, 800.0])
    b = bernoulli(z)
    assert np.all(np.isfinite(b)) and np.all(b >= 0.0)
    assert b[4] == 1.0
    np.testing.assert_allclose(b[6], 1.0 / (np.e - 1.0), rtol=1e-15)
    np.testing.assert_allclose(bernoulli(-z), b + z, rtol=1e-12, atol=1e-12 * abs(z).max())   # B(-z) = B(z) + z


@pytest.mark.parametrize("name", list(GRIDS))
def test_generator_is_a_reversible_markov_generator(name):
    grid = GRIDS[name]
    v = _potential(grid)
    L = generator(v, grid, diffusion=0.7)
    pi = np.exp(-(v - v.min())).ravel()
    off = L - sp.diags(L.diagonal())
    assert off.min() >= 0.0
    scale = abs(L.diagonal()).max()
    assert abs(np.asarray(L.sum(axis=0))).max() <= 1e-13 * scale            # zero column sums
    assert abs(L @ pi).max() <= 1e-13 * scale * pi.max()                     # L pi = 0
    flux = L.multiply(pi[None, :]).toarray()                                 # detailed balance
    np.testing.assert_allclose(flux, flux.T, atol=1e-13 * scale * pi.max())


@pytest.mark.parametrize("name", list(GRIDS))
def test_axis_steps_against_matrix_exponential(name):
    """MPRK22 is positive, exactly conservative and has local error O(tau^3) against exp(tau L_k)
    for smooth data (rough data excites stiff modes, where the error is only bounded)."""
    grid = GRIDS[name]
    v = _potential(grid)
    rho = np.exp(-v) * (1.0 + 0.5 * np.sin(sum(grid.coordinates)))   # smooth: no stiff transients
    rho /= rho.sum()
    for axis in range(grid.dim):
        rates = axis_rates(edge_differences(v, grid, axis), grid, axis, 1.0)
        matrix = _axis_matrix(rates, grid.shape)
        errors = []
        for tau in (1e-3, 5e-4):   # tau max|L_ii| < 3: the asymptotic regime
            exact = expm_multiply(tau * matrix, rho.ravel()).reshape(grid.shape)
            y = mprk22_axis(rates, rho, tau)
            assert y.min() >= 0.0
            assert abs(y.sum() - rho.sum()) <= 1e-15
            errors.append(np.abs(y - exact).sum())
        assert 2.7 <= np.log2(errors[0] / errors[1]) <= 3.3


@pytest.mark.parametrize("name", list(GRIDS))
@pytest.mark.parametrize("tau", [1e-3, 1.0, 1e3])
def test_axis_steps_positive_and_conservative_at_any_step(name, tau):
    grid = GRIDS[name]
    v = 5.0 * _potential(grid)
    rho = np.zeros(grid.shape)
    rho[(3,) * grid.dim] = 1.0                                               # a point mass: the hardest case
    for axis in range(grid.dim):
        rates = axis_rates(edge_differences(v, grid, axis), grid, axis, 1.0)
        for step in (implicit_euler_axis, mprk22_axis):
            y = step(rates, rho, tau)
            assert y.min() >= 0.0
            # exact in exact arithmetic; the solve's backward error bounds the drift
            bound = 50 * np.finfo(float).eps * (1.0 + tau * (rates.up + rates.down).max())
            assert abs(y.sum() - 1.0) <= max(bound, 1e-14)


@pytest.mark.parametrize("name", list(GRIDS))
def test_discrete_equilibrium_is_exact(name):
    grid = GRIDS[name]
    v = _potential(grid)
    pi = np.exp(-(v - v.min()))
    for axis in range(grid.dim):
        rates = axis_rates(edge_differences(v, grid, axis), grid, axis, 1.0)
        np.testing.assert_allclose(mprk22_axis(rates, pi, 10.0), pi, rtol=1e-10, atol=1e-14)
