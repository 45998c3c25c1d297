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


def test_compiled_kl_sum_equals_the_array_formula(monkeypatch):
    """Large grids use a compiled one-pass sum; it equals the array formula (to summation-order
    round-off) on densities with empty cells, e^-2000 tails and both branches of phi."""
    import gridflow.analysis.diagnostics as diagnostics

    grid = Grid((-5.0, -5.0), (5.0, 5.0), (80, 90))
    x, y = grid.coordinates
    log_pi = normalise(-(x - 4.0) ** 2 / 0.02 - 0.5 * y ** 2, grid)
    log_rho = normalise(-0.5 * (x ** 2 + y ** 2) + 0.5 * np.sin(3 * y), grid)
    log_rho[3:7, 10] = -np.inf
    assert log_rho.size >= diagnostics._COMPILED_KL_SIZE
    for a, b in [(log_rho, log_pi), (log_pi, log_rho), (log_rho, log_rho + 1e-3)]:
        compiled = kl_divergence(a, b, grid)
        monkeypatch.setattr(diagnostics, "_COMPILED_KL_SIZE", 10**9)
        array = kl_divergence(a, b, grid)
        monkeypatch.undo()
        assert compiled == pytest.approx(array, rel=1e-12, abs=1e-300)
