"""The log-mean flux (``flow.flux = "log-mean"``): its MPRK22 step and its accuracy where drift dominates."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

import gridflow
from gridflow.io.case import parse_case
from gridflow.analysis.exact import gaussian_flow_moments
from gridflow.flows.fokker_planck import log_axis_step, log_mean_axis
from gridflow.core.grid import Grid

from tests.flows.test_fokker_planck import GRIDS   # reflecting and periodic, 1D and 2D


def _log_target(grid: Grid) -> np.ndarray:
    if grid.dim == 1:
        (x,) = grid.coordinates
        return -((x**2 - 4.0) ** 2) / 4.0 - 0.3 * x
    x, y = grid.coordinates
    return -(0.6 * x**2 + 0.5 * x * y + 0.5 * (y - 1.0) ** 2 + np.sin(2 * x))


def _generator(rho: np.ndarray, log_target: np.ndarray, grid: Grid, axis: int, diffusion: float,
               mean: int = 1) -> sp.csr_matrix:
    """The flux along ``axis`` as a sparse generator A(rho) (d rho/dt = A(rho) rho), built edge by
    edge from its definition, independently of the kernels: the flux lo -> hi, kappa m (g_lo - g_hi)
    with the mobility m = Lambda(rho_lo, rho_hi) (``mean`` 1) or m = exp((l_lo + l_hi)/2 - c h^2/8),
    c h^2 = ((l_hi+1 - l_hi) - (l_lo - l_lo-1))/2 (``mean`` 2; outer neighbours mirrored at walls,
    wrapped on periodic lines; the log mean where |l_hi - l_lo| >= 30 or |c h^2/8| >= 5), is kappa (m/Lambda)(rho_lo - rho_hi) + kappa m dp with
    dp = log pi_hi - log pi_lo; the drift part is carried by the upwind cell (rate kappa m dp / rho_lo
    out of lo when dp > 0, kappa m |dp| / rho_hi out of hi when dp < 0)."""
    kappa = diffusion / grid.spacing[axis] ** 2
    n = rho.size
    index = np.arange(n).reshape(grid.shape)
    nxt = np.roll(index, -1, axis=axis)
    lo, hi = index, nxt
    if not grid.periodic:                                  # no edge across the far wall
        keep = np.ones(grid.shape, dtype=bool)
        keep[(slice(None),) * axis + (-1,)] = False
        lo, hi = lo[keep], hi[keep]
    lo, hi = lo.ravel(), hi.ravel()
    r, p = rho.ravel(), log_target.ravel()
    a, b = r[lo], r[hi]
    lam = np.where(np.isclose(a, b, rtol=1e-13, atol=0), 0.5 * (a + b), (a - b) / (np.log(a) - np.log(b)))
    m = lam
    if mean == 2:
        l = np.log(rho)
        prev, after = np.roll(l, 1, axis=axis), np.roll(l, -2, axis=axis)
        if not grid.periodic:
            first = (slice(None),) * axis + (0,)
            prev[first] = l[first]                             # mirror at the lower wall
            last2 = (slice(None),) * axis + (slice(-2, None),)
            after[last2] = np.take(l, [-1], axis=axis)         # mirror at the upper wall
        ll = l.ravel()
        lm = prev.ravel()[lo]
        l2 = after.ravel()[lo]
        e = ((l2 - ll[hi]) - (ll[lo] - lm)) / 16.0
        resolved = (np.abs(ll[hi] - ll[lo]) < 30.0) & (np.abs(e) < 5.0)    # else the log mean
        m = np.where(resolved, np.exp(0.5 * (ll[lo] + ll[hi]) - np.where(resolved, e, 0.0)), lam)
    dp = p[hi] - p[lo]
    diff = m / lam
    rate_up = kappa * (diff + np.where(dp > 0, m * dp / a, 0.0))      # out of lo into hi, per unit rho_lo
    rate_down = kappa * (diff + np.where(dp < 0, -m * dp / b, 0.0))   # out of hi into lo, per unit rho_hi
    rows = np.concatenate([hi, lo, lo, hi])
    cols = np.concatenate([lo, lo, hi, hi])
    vals = np.concatenate([rate_up, -rate_up, rate_down, -rate_down])
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


def _mprk22_reference(rho, log_target, grid, axis, diffusion, tau, mean=1):
    """Nonlinear MPRK22: (I - tau A(rho)) y1 = rho, then
    (I - tau/2 [A(rho) diag(rho/y1) + A(y1)]) y = rho, by sparse direct solves."""
    eye = sp.identity(rho.size, format="csc")
    r = rho.ravel()
    a0 = _generator(rho, log_target, grid, axis, diffusion, mean)
    y1 = spsolve((eye - tau * a0).tocsc(), r)
    a1 = _generator(y1.reshape(grid.shape), log_target, grid, axis, diffusion, mean)
    y = spsolve((eye - 0.5 * tau * (a0 @ sp.diags(r / y1) + a1)).tocsc(), r)
    return y.reshape(grid.shape)


@pytest.mark.parametrize("name", list(GRIDS))
@pytest.mark.parametrize("tau", [1e-3, 0.3, 100.0])
@pytest.mark.parametrize("log_only", [False, True])
@pytest.mark.parametrize("mean", [1, 2])
def test_step_solves_the_nonlinear_mprk22_stages(name, tau, log_only, mean):
    """Both kernel paths solve the two MPRK22 stages of the log-mean (1) and log-quadratic (2) fluxes
    to round-off, per cell relative to its value (rates re-evaluated at the first stage)."""
    from gridflow.flows.fokker_planck import _as_lines, _from_lines
    from gridflow.flows.kernels import step_cols, step_rows

    grid = GRIDS[name]
    p = _log_target(grid)
    log_rho = 0.7 * p + 0.3 * np.random.default_rng(3).standard_normal(grid.shape)
    log_rho -= np.log(np.exp(log_rho).sum())
    for axis in range(grid.dim):
        op = log_mean_axis(p, grid, axis, 1.3, mean=mean)
        ref = np.log(_mprk22_reference(np.exp(log_rho), p, grid, axis, 1.3, tau, mean))
        if grid.dim == 2 and axis == 0:
            got, _ = step_cols(log_rho, None, None, tau, grid.periodic, True, log_only,
                               log_target=op.target_lines, kappa=op.kappa, mean=mean)
        else:
            lines, _ = step_rows(_as_lines(log_rho, axis), None, None, tau, grid.periodic, True, log_only,
                                 log_target=op.target_lines, kappa=op.kappa, mean=mean)
            got = _from_lines(lines, grid.shape, axis)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)
        np.testing.assert_allclose(got, log_axis_step(op, log_rho, tau), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", list(GRIDS))
@pytest.mark.parametrize("tau", [1e-3, 1.0, 1e3])
@pytest.mark.parametrize("mean", [1, 2])
def test_positive_conservative_and_homogeneous_at_any_step(name, tau, mean):
    """From a point mass (every other cell empty) the step fills its line with positive mass and
    keeps the total to round-off; the flux is homogeneous of degree one in rho, so shifting log rho
    by -1500 (rho far below 1e-308) shifts the result by exactly -1500."""
    grid = GRIDS[name]
    p = 5.0 * _log_target(grid)
    with np.errstate(divide="ignore"):
        log_rho = np.log(np.zeros(grid.shape))
    log_rho[(3,) * grid.dim] = 0.0
    for axis in range(grid.dim):
        op = log_mean_axis(p, grid, axis, 1.0, mean=mean)
        reached = np.any(np.isfinite(log_rho), axis=axis, keepdims=True) & np.ones(grid.shape, dtype=bool)
        for order in (1, 2):
            y = log_axis_step(op, log_rho, tau, order=order)
            assert not np.isnan(y).any()
            assert np.all(np.isfinite(y[reached])) and np.all(np.isneginf(y[~reached]))
            # exact in exact arithmetic; the solves' backward error bounds the drift (as for SG)
            jump = np.abs(np.diff(p, axis=axis)).max()
            bound = 50 * np.finfo(float).eps * (1.0 + tau * op.kappa * (1.0 + jump))
            assert abs(np.exp(y).sum() - 1.0) <= max(bound, 1e-14)
            far = log_axis_step(op, log_rho - 1500.0, tau, order=order)
            np.testing.assert_allclose(far[reached], y[reached] - 1500.0, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", list(GRIDS))
@pytest.mark.parametrize("mean", [1, 2])
def test_discrete_equilibrium_is_exact(name, mean):
    grid = GRIDS[name]
    p = _log_target(grid)
    for axis in range(grid.dim):
        op = log_mean_axis(p, grid, axis, 1.0, mean=mean)
        for order in (1, 2):
            np.testing.assert_allclose(log_axis_step(op, p, 10.0, order=order), p, rtol=0, atol=1e-11)
            # another normalisation: g = log rho - log pi is constant only up to rounding; every
            # cell, down to e^-200 below the peak, stays put to round-off relative to itself
            np.testing.assert_allclose(log_axis_step(op, p - 3.0, 10.0, order=order), p - 3.0, rtol=0, atol=1e-11)


def _far_gaussian_error(flux: str, cells: int) -> float:
    """Largest error of mean and variance against the exact Fokker-Planck (OU) moments, N(0,1) -> N(35, 0.5)
    on [-8, 42] up to t = 0.5: the drift is 70 at the start, a cell Peclet number up to 3.5 at 50 cells per unit."""
    case = parse_case({
        "name": "far", "grid": {"lower": [-8.0], "upper": [42.0], "cells": [cells]},
        "target": {"kind": "gaussian", "mean": [35.0], "cov": [[0.5]]},
        "initial": {"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]},
        "flow": {"kind": "fokker-planck", "diffusion": 1.0, "flux": flux},
        "time": {"end": 0.5, "save_every": 0.25, "tolerance": 1e-8}})
    frames = gridflow.solve(case)
    x = np.linspace(-8.0, 42.0, cells + 1)
    x = 0.5 * (x[1:] + x[:-1])
    mean, cov = gaussian_flow_moments([f.time for f in frames], mean0=[0.0], cov0=[[1.0]], target_mean=[35.0],
                                      target_cov=[[0.5]], diffusion=1.0, reaction=0.0)
    worst = 0.0
    for k, f in enumerate(frames):
        w = f.density / f.density.sum()
        m = (w * x).sum()
        worst = max(worst, abs(m - mean[k, 0]), abs((w * (x - m) ** 2).sum() - cov[k, 0, 0]))
    return worst


def test_second_order_where_the_drift_dominates():
    """The log-mean flux converges at second order (observed order within 0.2 of 2) where the cell
    Peclet number is large, and is far more accurate there than Scharfetter-Gummel, which degrades to
    upwinding (error ~ Pe h)."""
    coarse, fine = _far_gaussian_error("log-mean", 1000), _far_gaussian_error("log-mean", 2000)
    order = np.log2(coarse / fine)
    assert abs(order - 2.0) < 0.2, (coarse, fine)
    assert fine < 2e-3
    assert _far_gaussian_error("scharfetter-gummel", 2000) > 10 * fine


def test_log_quadratic_mobility_is_exact_for_gaussians():
    """For Gaussian rho and pi both the mobility (rho at the edge from a quadratic log rho) and the
    difference of g = log(rho/pi) (quadratic) are exact, so every edge flux is exact and the moments,
    which evolve by midpoint sums of the edge fluxes, follow the exact moment ODEs to far below the
    log-mean flux's O(h^2) error (9.6e-4 at these 2000 cells).  (Fokker-Planck alone: the plain
    log-quadratic scheme; the cell-average state is used only with a Fisher-Rao part.)"""
    assert _far_gaussian_error("log-quadratic", 2000) < 1e-5


def _small_case(flux: str) -> dict:
    return {"name": "lm", "grid": {"lower": [-6.0], "upper": [8.0], "cells": [140]},
            "target": {"kind": "gaussian", "mean": [3.0], "cov": [[0.5]]},
            "initial": {"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]},
            "flow": {"kind": "wfr", "flux": flux}, "time": {"end": 0.2, "save_every": 0.1}}


def test_a_run_records_its_flux_and_a_wrong_name_is_refused(tmp_path):
    import h5py

    from gridflow.errors import CaseError

    path = gridflow.run(parse_case(_small_case("log-mean")), output=tmp_path / "lm.h5", progress=False)
    with h5py.File(path, "r") as f:
        assert "log-mean" in f.attrs["scheme"] and "Scharfetter" not in f.attrs["scheme"]
    with pytest.raises(CaseError, match="flux"):
        parse_case(_small_case("upwind"))
