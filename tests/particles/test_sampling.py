"""Exact samples of grid densities and sample files (``gridflow sample``; docs/validation.md)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gridflow.analysis.diagnostics import moments
from gridflow.errors import DensityError, InputError
from gridflow.core.grid import Grid
from gridflow.particles.grid_sampling import load_samples, read_sample_attrs, sample_grid_density, save_samples
from tests.reference import gaussian_cell_averages


def bimodal_1d() -> tuple[Grid, np.ndarray]:
    """A coarse (60-cell) bimodal density with an empty stretch, so the piecewise-linear CDF matters."""
    grid = Grid((-4.0,), (8.0,), (60,))
    x = grid.axes[0]
    rho = np.exp(-0.5 * x ** 2) + 0.6 * np.exp(-2.0 * (x - 5.0) ** 2)
    rho[(x > 2.0) & (x < 3.0)] = 0.0
    return grid, rho / (rho.sum() * grid.cell_volume)


def density_2d() -> tuple[Grid, np.ndarray]:
    grid = Grid((-3.0, -2.0), (3.0, 4.0), (8, 6))
    X, Y = grid.coordinates
    rho = 0.2 + np.exp(-0.5 * (X ** 2 + (Y - 1.0) ** 2 + X * (Y - 1.0)))
    return grid, rho / (rho.sum() * grid.cell_volume)


# ------------------------------------------------------------------------------------------------
# sampling
# ------------------------------------------------------------------------------------------------

def test_1d_samples_follow_the_piecewise_linear_cdf():
    grid, rho = bimodal_1d()
    x = sample_grid_density(grid, rho, 20000, rng=11)
    assert x.shape == (20000, 1)
    masses = rho * grid.cell_volume
    cdf_values = np.concatenate([[0.0], np.cumsum(masses)])
    p = stats.kstest(x[:, 0], lambda t: np.interp(t, grid.edges[0], cdf_values)).pvalue
    assert p > 1e-3
    # exact moments of the piecewise-constant density (within-cell variance h^2/12 included)
    with np.errstate(divide="ignore"):
        mean, cov = moments(np.log(rho), grid)
    var = cov[0, 0]
    c = grid.axes[0] - mean[0]
    h = grid.spacing[0]
    mu4 = float(np.sum(masses * (c ** 4 + c ** 2 * h ** 2 / 2 + h ** 4 / 80)))
    n = x.shape[0]
    assert abs(x.mean() - mean[0]) < 4 * np.sqrt(var / n)
    assert abs(x.var(ddof=1) - var) < 4 * np.sqrt((mu4 - var ** 2) / n)


def test_1d_samples_avoid_empty_cells_and_stay_in_the_box():
    grid, rho = bimodal_1d()
    x = sample_grid_density(grid, rho, 50000, rng=3)[:, 0]
    assert np.all((x >= grid.lower[0]) & (x <= grid.upper[0]))
    cells = np.minimum(((x - grid.lower[0]) / grid.spacing[0]).astype(int), grid.shape[0] - 1)
    assert np.all(rho[cells] > 0)


def test_1d_within_cell_positions_are_uniform():
    grid = Grid((0.0,), (1.0,), (2,))
    x = sample_grid_density(grid, np.array([1.5, 0.5]), 5000, rng=5)[:, 0]
    left = x[x < 0.5]
    assert stats.kstest(left, "uniform", args=(0.0, 0.5)).pvalue > 1e-3
    assert abs(left.size / x.size - 0.75) < 4 * np.sqrt(0.75 * 0.25 / x.size)


def test_2d_cell_frequencies_match_the_masses():
    grid, rho = density_2d()
    n = 40000
    xy = sample_grid_density(grid, rho, n, rng=21)
    assert xy.shape == (n, 2)
    assert np.all((xy >= np.array(grid.lower)) & (xy <= np.array(grid.upper)))
    counts, _, _ = np.histogram2d(xy[:, 0], xy[:, 1], bins=grid.edges)
    expected = rho * grid.cell_volume * n
    assert expected.min() >= 5
    g = stats.power_divergence(counts.ravel(), expected.ravel(), lambda_="log-likelihood")
    assert g.pvalue > 1e-3
    # uniform within cells: fractional positions inside the cells are U(0,1)^2
    frac = ((xy - np.array(grid.lower)) / np.array(grid.spacing)) % 1.0
    assert stats.kstest(frac[:, 0], "uniform").pvalue > 1e-3
    assert stats.kstest(frac[:, 1], "uniform").pvalue > 1e-3


def test_2d_gaussian_moments():
    grid = Grid((-6.0, -6.0), (6.0, 6.0), (48, 48))
    cov = np.array([[1.0, 0.6], [0.6, 2.0]])
    rho = gaussian_cell_averages(grid, [0.5, -0.3], cov)
    xy = sample_grid_density(grid, rho, 20000, rng=8)
    with np.errstate(divide="ignore"):
        mean, grid_cov = moments(np.log(rho), grid)
    se = np.sqrt(np.diag(grid_cov) / xy.shape[0])
    assert np.all(np.abs(xy.mean(axis=0) - mean) < 4 * se)
    assert np.allclose(np.cov(xy.T), grid_cov, atol=0.06)


def test_reproducible_with_a_seed_and_independent_of_normalisation():
    grid, rho = density_2d()
    a = sample_grid_density(grid, rho, 100, rng=42)
    b = sample_grid_density(grid, 3.0 * rho, 100, rng=np.random.default_rng(42))
    c = sample_grid_density(grid, rho, 100, rng=43)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert sample_grid_density(grid, rho, 0, rng=1).shape == (0, 2)


@pytest.mark.parametrize("bad", ["shape", "nan", "negative", "zero"])
def test_bad_densities_are_density_errors(bad):
    grid, rho = bimodal_1d()
    rho = {"shape": rho[:-1], "nan": np.where(np.arange(rho.size) == 3, np.nan, rho),
           "negative": rho - 0.01, "zero": 0.0 * rho}[bad]
    with pytest.raises(DensityError):
        sample_grid_density(grid, rho, 10)


@pytest.mark.parametrize("n", [-1, 2.5, True])
def test_bad_sample_counts(n):
    grid, rho = bimodal_1d()
    with pytest.raises(InputError, match="non-negative integer"):
        sample_grid_density(grid, rho, n)


# ------------------------------------------------------------------------------------------------
# sample files
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_round_trip_with_weights_and_metadata(tmp_path, suffix):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    w = rng.random(50)
    attrs = {"source": "out/run.h5", "time": 1.5, "seed": np.int64(7), "cells": [64, 32], "note": None}
    path = tmp_path / "sub" / f"s{suffix}"
    save_samples(path, x, weights=w, attrs=attrs)
    y, v = load_samples(path, dim=2)
    assert np.array_equal(x, y) and np.array_equal(w, v)
    meta = read_sample_attrs(path)
    assert meta["source"] == "out/run.h5" and meta["time"] == 1.5 and meta["seed"] == 7
    assert meta["cells"] == [64, 32]
    assert not list(path.parent.glob(".*tmp*"))


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".npy"])
def test_round_trip_unweighted(tmp_path, suffix):
    x = np.linspace(0.0, 1.0, 30)[:, None]
    save_samples(tmp_path / f"s{suffix}", x)
    y, w = load_samples(tmp_path / f"s{suffix}")
    assert np.array_equal(x, y) and w is None


def test_a_1d_npy_array_is_one_dimensional(tmp_path):
    np.save(tmp_path / "s.npy", np.arange(10.0))
    x, w = load_samples(tmp_path / "s.npy", dim=1)
    assert x.shape == (10, 1) and w is None
    x, _ = load_samples(tmp_path / "s.npy")
    assert x.shape == (10, 1)


def test_npy_cannot_hold_weights(tmp_path):
    with pytest.raises(InputError, match=".npz or .h5"):
        save_samples(tmp_path / "s.npy", np.zeros((3, 1)), weights=np.ones(3))


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _write_h5(path, **arrays):
    import h5py

    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f[k] = v
    return path


LOAD_ERRORS = {
    "missing file": (lambda d: d / "nope.npz", {}, "does not exist"),
    "directory": (lambda d: d, {}, "not a regular file"),
    "unknown type": (lambda d: (d / "s.csv").write_text("1,2\n") and d / "s.csv", {}, "unknown type"),
    "corrupt npz": (lambda d: (d / "s.npz").write_bytes(b"PK\x03\x04garbage") and d / "s.npz", {}, "corrupt"),
    "corrupt h5": (lambda d: (d / "s.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 20) and d / "s.h5", {}, "corrupt"),
    "corrupt npy": (lambda d: (d / "s.npy").write_bytes(b"\x93NUMPY\x01\x00garbage") and d / "s.npy", {}, "corrupt"),
    "npz without samples": (lambda d: _write_npz(d / "s.npz", particles=np.zeros((5, 1))), {}, "no 'samples'.*'particles'"),
    "h5 without samples": (lambda d: _write_h5(d / "s.h5", x=np.zeros((5, 1))), {}, "no 'samples'"),
    "wrong dimension": (lambda d: _write_npz(d / "s.npz", samples=np.zeros((5, 1))), {"dim": 2}, "1 coordinates.*2D"),
    "1-D array for 2D": (lambda d: _write_npz(d / "s.npz", samples=np.zeros(5)), {"dim": 2}, "1-D array"),
    "transposed": (lambda d: _write_npz(d / "s.npz", samples=np.zeros((2, 50))), {"dim": 2}, "transposed"),
    "three dimensions": (lambda d: _write_npz(d / "s.npz", samples=np.zeros((5, 3))), {}, "1 or 2 dimensions"),
    "3-D array": (lambda d: _write_npz(d / "s.npz", samples=np.zeros((5, 2, 2))), {}, "shape"),
    "text samples": (lambda d: _write_npz(d / "s.npz", samples=np.array(["a", "b"])), {}, "not real numbers"),
    "nan samples": (lambda d: _write_npz(d / "s.npz", samples=np.array([[0.0], [np.nan], [1.0]])), {},
                    "NaN or infinite positions in 1 of 3.*row 1"),
    "inf samples": (lambda d: _write_h5(d / "s.h5", samples=np.array([[0.0, 1.0], [2.0, np.inf]])), {}, "infinite"),
    "negative weights": (lambda d: _write_npz(d / "s.npz", samples=np.zeros((3, 1)), weights=[1.0, -1.0, 2.0]), {},
                         "negative"),
    "nan weights": (lambda d: _write_h5(d / "s.h5", samples=np.zeros((3, 1)), weights=[1.0, np.nan, 2.0]), {},
                    "NaN or infinite values"),
    "zero weights": (lambda d: _write_npz(d / "s.npz", samples=np.zeros((3, 1)), weights=np.zeros(3)), {}, "all zero"),
    "wrong weight length": (lambda d: _write_npz(d / "s.npz", samples=np.zeros((3, 1)), weights=np.ones(4)), {},
                            "shape \\(4,\\) but there are 3"),
    "one sample": (lambda d: _write_npz(d / "s.npz", samples=np.zeros((1, 1))), {}, "at least 2"),
    "no samples": (lambda d: (np.save(d / "s.npy", np.zeros((0, 2))), d / "s.npy")[1], {}, "at least 2"),
}


@pytest.mark.parametrize("case", list(LOAD_ERRORS))
def test_load_errors_name_the_problem_and_the_fix(tmp_path, case):
    make, kwargs, pattern = LOAD_ERRORS[case]
    path = make(tmp_path)
    with pytest.raises(InputError, match=pattern) as err:
        load_samples(path, **kwargs)
    message = str(err.value)
    assert "\n" not in message and len(message) > 60          # one paragraph, with a fix
    assert err.value.exit_code == 2
