"""The numpy/LAPACK axis step of small grids (gridflow.flows.symmetrised) against the compiled kernels."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gridflow.core.backend as backend
from gridflow.core.grid import Grid
from gridflow.flows import symmetrised
from gridflow.flows.fokker_planck import axis_rates, bernoulli, edge_differences, log_axis_step
from gridflow.flows.kernels import step_rows
from gridflow.flows.kernels import scalar
from gridflow.flows.symmetrised import SymmetrisedRates, symmetrised_walls

EPS = np.finfo(float).eps


def _lines(seed: int, m: int = 40, n: int = 150, *, peclet: float = 1.0):
    """``m`` lines with walls: Gaussian targets of random centre and width (drift across a cell up to
    about ``peclet``), log densities of other Gaussians; SG rates with D = 1."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-6.0, 6.0, n)
    h = x[1] - x[0]
    width = rng.uniform(0.8, 2.0, size=(m, 1)) / np.sqrt(peclet)      # log pi spans at most ~300
    v = 0.5 * ((x - rng.normal(size=(m, 1))) / width) ** 2
    up, down = np.zeros((m, n)), np.zeros((m, n))
    up[:, :-1] = bernoulli(np.diff(v, axis=1)) / h**2
    down[:, :-1] = bernoulli(-np.diff(v, axis=1)) / h**2
    l = -0.5 * ((x - 2.0 * rng.normal(size=(m, 1))) / rng.uniform(0.5, 3.0, size=(m, 1))) ** 2
    return l, v, up, down


def _stiffness(up: np.ndarray, down: np.ndarray, tau: float) -> float:
    """1 + tau (largest rate out of a cell): the round-off of one solve, in units of eps per cell, is
    at most of the order of this times the line's length."""
    return 1.0 + tau * float((up + np.roll(down, 1, axis=1)).max())


def test_bounds_are_the_compiled_kernels():
    assert (symmetrised.TINY, symmetrised.HAZARD, symmetrised.MAX_JUMP) == (scalar.TINY, scalar.HAZARD, scalar.MAX_JUMP)


@pytest.mark.parametrize("two_stage", [True, False], ids=["mprk22", "implicit-euler"])
@pytest.mark.parametrize("tau", [1e-6, 1e-3, 0.1, 10.0, 1e3])
@pytest.mark.parametrize("peclet", [0.5, 8.0])
def test_equals_the_compiled_kernels(tau, two_stage, peclet):
    """Every line taken, and the new log density equal to the compiled kernels' to the round-off of
    the solve (n eps times the stiffness 1 + tau max rate, in every cell however small)."""
    l, _, up, down = _lines(int(tau * 1e6) % 97 + int(peclet), peclet=peclet)
    new, taken = symmetrised_walls(l, SymmetrisedRates.from_rates(up, down), tau, two_stage)
    ref, _ = step_rows(l, up, down, tau, False, two_stage)
    assert taken.all()
    bound = 4 * l.shape[1] * EPS * _stiffness(up, down, tau) * max(1.0, np.abs(ref).max())
    assert np.abs(new - ref).max() <= bound
    if tau <= 0.1:
        assert np.abs(new - ref).max() <= 64 * EPS * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("tau", [1e-3, 1.0, 100.0])
def test_mass_and_equilibrium_to_round_off(tau):
    """The mass of every line kept to round-off, and the discrete equilibrium pi a fixed point."""
    l, v, up, down = _lines(7)
    rates = SymmetrisedRates.from_rates(up, down)
    kappa = _stiffness(up, down, tau)
    new, taken = symmetrised_walls(l, rates, tau, True)
    assert taken.all()
    mass0, mass1 = np.exp(l).sum(axis=1), np.exp(new).sum(axis=1)
    assert np.abs(mass1 / mass0 - 1.0).max() <= 4 * l.shape[1] * EPS * kappa
    at_rest, taken = symmetrised_walls(-v, rates, tau, True)
    assert taken.all()
    assert np.abs(at_rest + v).max() <= 4 * l.shape[1] * EPS * kappa * max(1.0, np.abs(v).max())


def test_lines_it_cannot_take_are_reported_and_log_axis_step_redoes_them():
    """A line with an empty cell, one spanning e^-900 (below the double range) and one with a rate
    that underflowed to 0 are refused; the others are taken.  Through ``log_axis_step`` on a small 2D
    grid the refused lines come out as the compiled kernels make them (bit for bit) and the far tail
    keeps a finite log density."""
    l, v, up, down = _lines(3, m=6, n=80)
    l[1, 5] = -np.inf
    l[2] = -((np.linspace(-6, 6, 80) + 6.0) ** 2) * 8.0          # down to e^-1150
    up[3, 40] = 0.0
    new, taken = symmetrised_walls(l, SymmetrisedRates.from_rates(up, down), 0.01, True)
    np.testing.assert_array_equal(taken, [True, False, False, False, True, True])

    grid = Grid((-6.0, -3.0), (6.0, 3.0), (80, 30))
    assert not backend.compiled(grid.size)
    x, y = grid.coordinates
    pot = 0.5 * (x - 1.0) ** 2 + 0.5 * y**2
    rates = axis_rates(edge_differences(-(-pot), grid, 0), grid, 0, 1.0)
    log_rho = -8.0 * (x + 6.0) ** 2 - 0.5 * y**2                    # every x-line reaches e^-1150
    log_rho[:, 0] = 0.0                                              # ... but this flat one
    _, taken = symmetrised_walls(np.ascontiguousarray(log_rho.T), rates.symmetrised, 0.01, True)
    np.testing.assert_array_equal(taken, np.arange(30) == 0)       # every line but the flat one refused
    out = log_axis_step(rates, log_rho, 0.01)
    ref, _ = step_rows(np.ascontiguousarray(log_rho.T), np.ascontiguousarray(rates.up.T),
                       np.ascontiguousarray(rates.down.T), 0.01, False, True)
    np.testing.assert_array_equal(out[:, 1:], ref.T[:, 1:])          # refused: the compiled result, exactly
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[:, 0], ref.T[:, 0], rtol=0, atol=1e-12)


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          check=True).stdout


def test_a_small_fokker_planck_run_never_starts_numba():
    """1D grids (one of 100000 cells) and a 2D grid below COMPILED_CELLS, tempered Fokker-Planck, short
    runs: the run imports neither numba
    (its start-up is most of a small run) nor the scipy.linalg package (LAPACK's extension is loaded
    directly); with the log-mean flux it does import numba (no numpy implementation)."""
    out = _run("""
        import sys, gridflow
        from gridflow.io.case import parse_case
        base = {"name": "t", "target": {"kind": "gaussian", "mean": [1.0], "cov": [[0.5]]},
                "initial": {"kind": "gaussian", "mean": [-1.0], "cov": [[1.0]]},
                "grid": {"lower": [-6.0], "upper": [6.0], "cells": [400]},
                "flow": {"kind": "fokker-planck"},
                "tempering": {"schedule": {"kind": "linear", "duration": 0.5}},
                "time": {"end": 1.0, "save_times": [0.5, 1.0], "tolerance": 1e-5}}
        gridflow.solve(parse_case(base))
        two = dict(base, grid={"lower": [-5.0, -5.0], "upper": [5.0, 5.0], "cells": [120, 100]},
                   target={"kind": "gaussian", "mean": [1.0, 0.0], "cov": [[0.5, 0.2], [0.2, 1.0]]},
                   initial={"kind": "gaussian", "mean": [-1.0, 0.0], "cov": [[1.0, 0.0], [0.0, 1.0]]})
        gridflow.solve(parse_case(two))
        big = dict(base, grid={"lower": [-6.0], "upper": [6.0], "cells": [100000]},
                   time={"end": 0.01, "save_times": [0.005, 0.01], "tolerance": 1e-3})
        gridflow.solve(parse_case(big))                  # 1D: numpy at any size (frame diagnostics too)
        print("numba" in sys.modules, "scipy.linalg" in sys.modules)
        gridflow.solve(parse_case(dict(base, flow={"kind": "fokker-planck", "flux": "log-mean"})))
        print("numba" in sys.modules)
    """)
    assert out.split() == ["False", "False", "True"]


@pytest.mark.parametrize("flow", ["fokker-planck", "wfr"])
def test_a_whole_run_equals_the_compiled_one(monkeypatch, flow):
    """The same 2D tempered case with the numpy path and with the compiled kernels (threshold
    lowered): every saved density agrees to 1e-10 relative (both to round-off of the same scheme; the
    adaptive steps see the same errors), and the numpy run's mass is one to round-off."""
    import gridflow
    from gridflow.io.case import parse_case

    case = {"name": "t", "target": {"kind": "mixture", "weights": [0.5, 0.5], "components": [
                {"kind": "gaussian", "mean": [-2.0, 0.0], "cov": [[0.4, 0.0], [0.0, 0.6]]},
                {"kind": "gaussian", "mean": [2.0, 1.0], "cov": [[0.6, 0.2], [0.2, 0.5]]}]},
            "initial": {"kind": "gaussian", "mean": [0.0, -0.5], "cov": [[1.0, 0.0], [0.0, 1.0]]},
            "grid": {"lower": [-6.5, -5.5], "upper": [6.5, 5.5], "cells": [144, 120]},
            "flow": {"kind": flow},
            "tempering": {"schedule": {"kind": "linear", "duration": 0.5}},
            "time": {"end": 1.0, "save_times": [0.25, 0.5, 1.0], "tolerance": 1e-5}}
    case = parse_case(case)
    numpy_run = gridflow.solve(case)
    monkeypatch.setattr(backend, "COMPILED_CELLS", 1)
    compiled_run = gridflow.solve(case)
    for a, b in zip(numpy_run, compiled_run):
        np.testing.assert_allclose(a.density, b.density, rtol=1e-10, atol=1e-14)
        assert abs(a.density.sum() * 13.0 * 11.0 / a.density.size - 1.0) <= 1e-12


def test_a_run_switches_to_the_compiled_kernels_after_its_budget_and_stays_deterministic(monkeypatch):
    """With a small allowance of numpy work the run switches to the compiled kernels part way; the result
    agrees with an all-numpy and an all-compiled run to round-off, and the same case run again (numba
    now warm in this process) gives the same result bit for bit: the choice follows the case alone."""
    import gridflow
    from gridflow.io.case import parse_case
    from gridflow.time.stepper import Stepper

    case = parse_case({"name": "t", "grid": {"lower": [-6.0], "upper": [8.0], "cells": [700]},
                       "target": {"kind": "mixture", "weights": [0.5, 0.5], "components": [
                           {"kind": "gaussian", "mean": [0.0], "cov": [[0.5]]},
                           {"kind": "gaussian", "mean": [4.0], "cov": [[0.7]]}]},
                       "initial": {"kind": "gaussian", "mean": [1.0], "cov": [[1.0]]},
                       "flow": {"kind": "fokker-planck"},
                       "time": {"end": 2.0, "save_times": [0.5, 2.0], "tolerance": 1e-6}})
    switched = []
    original = Stepper._axis_step

    def spy(self, *args, **kwargs):
        switched.append(self.kernels.compiled)
        return original(self, *args, **kwargs)

    step = backend.KernelChoice(700, dim=1).extra_per_step
    monkeypatch.setattr(backend, "COMPILED_START_UP", 39.5 * step)     # numpy for 40 axis steps
    monkeypatch.setattr(Stepper, "_axis_step", spy)
    mixed = gridflow.solve(case)
    assert switched[:40] == [False] * 40 and switched[40:] and all(switched[40:])
    again = gridflow.solve(case)
    monkeypatch.setattr(backend, "COMPILED_START_UP", float("inf"))
    numpy_only = gridflow.solve(case)
    monkeypatch.setattr(backend, "COMPILED_START_UP", 0.0)
    switched.clear()
    compiled_only = gridflow.solve(case)
    assert switched and all(switched)
    for a, b, c, d in zip(mixed, again, numpy_only, compiled_only):
        np.testing.assert_array_equal(a.density, b.density)
        np.testing.assert_allclose(a.density, c.density, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(a.density, d.density, rtol=1e-10, atol=1e-14)


def test_lapack_loaded_directly_is_scipys_and_a_later_scipy_import_is_unharmed():
    """The directly loaded dpttrf/dpttrs are scipy.linalg.lapack's own; scipy.linalg imported after
    them works (its own _flapack module, a solve checks out); without the direct load the plain
    import gives the same routines."""
    out = _run("""
        import sys
        import numpy as np
        from gridflow.flows import symmetrised
        direct = symmetrised._flapack_direct()
        assert direct is not None and "scipy.linalg" not in sys.modules
        assert "scipy.linalg._flapack" not in sys.modules
        import scipy.linalg
        from scipy.linalg.lapack import dpttrf, dpttrs
        assert direct == (dpttrf, dpttrs)
        a = np.array([[4.0, 1.0], [1.0, 3.0]])
        assert np.allclose(a @ scipy.linalg.solve(a, np.ones(2)), 1.0)
        symmetrised._LAPACK = None
        assert symmetrised._lapack() == (dpttrf, dpttrs)        # scipy.linalg loaded: the plain import
        print("ok")
    """)
    assert out.split() == ["ok"]
