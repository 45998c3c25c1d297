"""The Scharfetter–Gummel generator and its MPRK22 / implicit Euler axis steps in log space."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import expm_multiply

from scipy.sparse.linalg import spsolve

from gridflow.flows.fokker_planck import (axis_rates, bernoulli, edge_differences, generator, implicit_euler_axis,
                                    log_axis_step, mprk22_axis)
from gridflow.flows.fokker_planck import _axis_matrix
from gridflow.core.grid import Grid

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


def _log(rho: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(rho)


@pytest.mark.parametrize("name", list(GRIDS))
def test_axis_steps_against_matrix_exponential(name):
    """MPRK22 has local error O(tau^3) against exp(tau L_k) for smooth data (rough data excites
    stiff modes, where the error is only bounded) and conserves mass to round-off."""
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
            log_y = log_axis_step(rates, np.log(rho), tau)
            assert np.all(np.isfinite(log_y))                                # positive in every cell
            y = np.exp(log_y)
            assert abs(y.sum() - rho.sum()) <= 1e-15
            errors.append(np.abs(y - exact).sum())
        assert 2.7 <= np.log2(errors[0] / errors[1]) <= 3.3


def _mprk_reference(matrix: sp.csr_matrix, rho: np.ndarray, tau: float, order: int) -> np.ndarray:
    """The two MPRK22 stages (or implicit Euler) by sparse direct solves on linear densities."""
    eye = sp.identity(rho.size, format="csc")
    y1 = spsolve((eye - tau * matrix).tocsc(), rho)
    if order == 1:
        return y1
    return spsolve((eye - 0.5 * tau * matrix @ sp.diags(rho / y1 + 1.0)).tocsc(), rho)


@pytest.mark.parametrize("name", list(GRIDS))
@pytest.mark.parametrize("tau", [1e-3, 0.3, 100.0])
@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("log_only", [False, True])
def test_axis_step_solves_the_stage_equations(name, tau, order, log_only):
    """Both kernel paths (ratio and log space) solve the stage equations of MPRK22 / implicit Euler
    to round-off, per cell relative to its value, on reflecting and periodic lines."""
    from gridflow.flows.fokker_planck import _as_lines, _from_lines
    from gridflow.flows.kernels import step_cols, step_rows

    grid = GRIDS[name]
    v = _potential(grid)
    log_rho = -v + 0.3 * np.random.default_rng(1).standard_normal(grid.shape)
    for axis in range(grid.dim):
        rates = axis_rates(edge_differences(v, grid, axis), grid, axis, 1.3)
        ref = _mprk_reference(_axis_matrix(rates, grid.shape), np.exp(log_rho).ravel(), tau, order)
        if grid.dim == 2 and axis == 0:   # column-wise kernel, no transposes
            got, slow = step_cols(log_rho, rates.up_lines, rates.down_lines, tau, grid.periodic, order == 2,
                                  log_only)
            lines = got.T
        else:
            lines, slow = step_rows(_as_lines(log_rho, axis), rates.up_lines, rates.down_lines, tau,
                                    grid.periodic, order == 2, log_only)
            got = _from_lines(lines, grid.shape, axis)
        if log_only:
            assert slow == lines.shape[0]
        np.testing.assert_allclose(got, np.log(ref.reshape(grid.shape)), rtol=0, atol=1e-11)


@pytest.mark.parametrize("name", list(GRIDS))
@pytest.mark.parametrize("tau", [1e-3, 1.0, 1e3])
def test_axis_steps_keep_densities_far_below_the_floating_point_range(name, tau):
    """The step is linear, so shifting log rho by -1500 (rho ~ e^-1500, far below 1e-308) must shift
    the result by exactly -1500: nothing underflows, relative accuracy is kept in every cell."""
    grid = GRIDS[name]
    v = _potential(grid)
    log_rho = -0.5 * v
    for axis in range(grid.dim):
        rates = axis_rates(edge_differences(v, grid, axis), grid, axis, 1.0)
        for order in (1, 2):
            near = log_axis_step(rates, log_rho, tau, order=order)
            far = log_axis_step(rates, log_rho - 1500.0, tau, order=order)
            np.testing.assert_allclose(far, near - 1500.0, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", list(GRIDS))
@pytest.mark.parametrize("tau", [1e-3, 1.0, 1e3])
def test_axis_steps_positive_and_conservative_at_any_step(name, tau):
    grid = GRIDS[name]
    v = 5.0 * _potential(grid)
    rho = np.zeros(grid.shape)
    rho[(3,) * grid.dim] = 1.0                                               # a point mass: the hardest case
    for axis in range(grid.dim):
        rates = axis_rates(edge_differences(v, grid, axis), grid, axis, 1.0)
        reached = np.any(rho > 0.0, axis=axis, keepdims=True) & np.ones(grid.shape, dtype=bool)
        for order in (1, 2):
            log_y = log_axis_step(rates, _log(rho), tau, order=order)
            assert not np.isnan(log_y).any()
            # strictly positive on the line of the mass (every cell reachable), empty elsewhere
            assert np.all(np.isfinite(log_y[reached])) and np.all(np.isneginf(log_y[~reached]))
            # exact in exact arithmetic; the solve's backward error bounds the drift
            bound = 50 * np.finfo(float).eps * (1.0 + tau * (rates.up + rates.down).max())
            assert abs(np.exp(log_y).sum() - 1.0) <= max(bound, 1e-14)


@pytest.mark.parametrize("name", list(GRIDS))
def test_discrete_equilibrium_is_exact(name):
    grid = GRIDS[name]
    v = _potential(grid)
    for axis in range(grid.dim):
        rates = axis_rates(edge_differences(v, grid, axis), grid, axis, 1.0)
        for order in (1, 2):
            np.testing.assert_allclose(log_axis_step(rates, -v, 10.0, order=order), -v, rtol=0, atol=1e-11)


def test_linear_density_wrappers_match_the_log_step():
    grid = GRIDS["1d"]
    v = _potential(grid)
    rates = axis_rates(edge_differences(v, grid, 0), grid, 0, 1.0)
    rho = np.exp(-v) / np.exp(-v).sum()
    np.testing.assert_array_equal(mprk22_axis(rates, rho, 0.1), np.exp(log_axis_step(rates, np.log(rho), 0.1)))
    np.testing.assert_array_equal(implicit_euler_axis(rates, rho, 0.1),
                                  np.exp(log_axis_step(rates, np.log(rho), 0.1, order=1)))


@pytest.mark.parametrize("order", [1, 2])
def test_column_kernel_redoes_only_the_columns_that_need_the_log_path(order):
    """A 2D step along the first axis with some columns holding empty cells (log 0) or jumps
    beyond the ratio path's range equals the all-log-path result; the other columns are done by
    the ratio path and also agree."""
    from gridflow.flows.kernels import MAX_JUMP, step_cols

    grid = GRIDS["2d"]
    v = _potential(grid)
    log_rho = -v + 0.3 * np.random.default_rng(2).standard_normal(grid.shape)
    log_rho[5:9, 3] = -np.inf                      # empty cells
    log_rho[20:, 7] -= 3.0 * MAX_JUMP              # a jump the ratio path refuses
    rates = axis_rates(edge_differences(v, grid, 0), grid, 0, 1.0)
    got, slow = step_cols(log_rho, rates.up_lines, rates.down_lines, 0.2, False, order == 2)
    ref, slow_ref = step_cols(log_rho, rates.up_lines, rates.down_lines, 0.2, False, order == 2, True)
    assert slow == 2 and slow_ref == grid.shape[1]
    assert np.all(np.isfinite(got))                # the empty cells are refilled
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-11)


@pytest.mark.parametrize("columns", [False, True], ids=["rows", "columns"])
@pytest.mark.parametrize("log_mean", [0, 1, 2], ids=["fixed-rates", "log-mean", "log-quadratic"])
def test_blocked_kernel_result_does_not_depend_on_how_blocks_are_shared_among_threads(columns, log_mean):
    """The blocks of lines are independent: the ratio path split over 1, 2, 3 or 7 chunks (numba's
    threads each take every k-th block) or on the calling thread gives bit-identical log densities and the same lines
    marked for the log path, on a grid with a partial last block and some refused lines."""
    from gridflow.flows.kernels import BLOCK, MAX_JUMP
    from gridflow.flows.kernels.blocked import _blocked_walls, _blocked_walls_serial

    n, m = 37, 3 * BLOCK + 5
    rng = np.random.default_rng(7)
    l = -0.5 * np.linspace(-3, 3, n)[:, None] ** 2 + 0.2 * rng.standard_normal((n, m))
    l[4:6, 3] = -np.inf                           # a column (or row) the ratio path refuses
    l[20:, 2 * BLOCK + 1] -= 3.0 * MAX_JUMP
    if not columns:
        l = np.ascontiguousarray(l.T)
    up = np.abs(rng.standard_normal(l.shape)) + 0.5
    down = np.abs(rng.standard_normal(l.shape)) + 0.5
    p = -0.3 * l if log_mean else l
    results = []
    for threads in (1, 2, 3, 7):
        out = np.full_like(l, np.nan)
        bad = np.zeros(m, dtype=np.bool_)
        _blocked_walls(l, up, down, p, 0.8, log_mean, 0.05, True, columns, out, bad, threads)
        results.append((out, bad))
    out = np.full_like(l, np.nan)
    bad = np.zeros(m, dtype=np.bool_)
    _blocked_walls_serial(l, up, down, p, 0.8, log_mean, 0.05, True, columns, out, bad)
    results.append((out, bad))
    out1, bad1 = results[0]
    assert set(np.flatnonzero(bad1)) == {3, 2 * BLOCK + 1}
    good = ~bad1
    assert np.all(np.isfinite(out1[:, good] if columns else out1[good]))
    for out, bad in results[1:]:
        np.testing.assert_array_equal(bad, bad1)
        np.testing.assert_array_equal(out[:, good] if columns else out[good], out1[:, good] if columns else out1[good])


def test_every_module_compiled_into_a_cached_kernel_invalidates_its_cache():
    """numba re-validates a kernel's disk cache against its own file only, so the package lists, per
    kernel module, every kernel module compiled into its kernels (imported, directly or not): an
    edit there drops the stale caches.  The list must be exactly the import closure."""
    import ast
    import importlib
    from pathlib import Path

    from gridflow.flows import kernels

    package = "gridflow.flows.kernels"
    modules = {p.stem: importlib.import_module(f"{package}.{p.stem}")
               for p in Path(kernels.__file__).parent.glob("*.py") if p.stem != "__init__"}
    imports = {name: {node.module.rpartition(".")[2]
                      for node in ast.walk(ast.parse(Path(m.__file__).read_text()))
                      if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(package + ".")}
               for name, m in modules.items()}
    for name, module in modules.items():
        closure, todo = set(), list(imports[name])
        while todo:
            dep = todo.pop()
            if dep not in closure:
                closure.add(dep)
                todo.extend(imports[dep])
        listed = {m.__name__.rpartition(".")[2] for m in kernels.COMPILED_IN.get(module, ())}
        assert listed == closure, name
