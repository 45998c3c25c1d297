"""Distances and tests between particles and a grid density (``gridflow compare``; docs/validation.md)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import ndtri

from gridflow.analysis import distances, hypothesis_tests, metrics, mmd, replicates
from gridflow.errors import InputError
from gridflow.core.grid import Grid
from gridflow.analysis.distances import wasserstein_1d
from gridflow.analysis.metrics import compare
from gridflow.particles.grid_sampling import sample_grid_density
from tests.reference import gaussian_cell_averages


def uniform_01(cells: int = 10) -> tuple[Grid, np.ndarray]:
    grid = Grid((0.0,), (1.0,), (cells,))
    return grid, np.ones(cells)


def bimodal_1d() -> tuple[Grid, np.ndarray]:
    grid = Grid((-6.0,), (9.0,), (300,))
    x = grid.axes[0]
    rho = 0.6 * np.exp(-0.5 * x ** 2) + 0.4 * np.exp(-(x - 3.5) ** 2 / 0.5)
    return grid, rho / (rho.sum() * grid.cell_volume)


def bimodal_2d() -> tuple[Grid, np.ndarray]:
    grid = Grid((-5.0, -4.0), (5.0, 6.0), (50, 40))
    X, Y = grid.coordinates
    rho = np.exp(-0.5 * (X ** 2 + 2 * (Y - 1) ** 2 + X * (Y - 1))) + 0.5 * np.exp(-((X - 2.5) ** 2 + (Y - 3) ** 2) / 0.6)
    return grid, rho / (rho.sum() * grid.cell_volume)


def gaussian_1d(cells: int = 1600) -> tuple[Grid, np.ndarray]:
    grid = Grid((-8.0,), (8.0,), (cells,))
    return grid, gaussian_cell_averages(grid, [0.0], [[1.0]])


# ------------------------------------------------------------------------------------------------
# exact 1D Wasserstein distances
# ------------------------------------------------------------------------------------------------

def test_w1_w2_by_hand_against_the_uniform_law():
    grid, rho = uniform_01()
    r = compare(grid, rho, np.array([0.25, 0.75]))
    assert r["distances"]["w1"] == pytest.approx(0.125, abs=1e-14)          # 2 * 2 * (1/4)^2 / 2
    assert r["distances"]["w2"] == pytest.approx(math.sqrt(1 / 48), abs=1e-14)
    r = compare(grid, rho, np.zeros(2))
    assert r["distances"]["w1"] == pytest.approx(0.5, abs=1e-14)
    assert r["distances"]["w2"] == pytest.approx(math.sqrt(1 / 3), abs=1e-14)
    r = compare(grid, rho, np.array([0.0, 1.0]), np.array([3.0, 1.0]))     # F^-1 = 0 on (0, 3/4], 1 after
    assert r["distances"]["w1"] == pytest.approx(0.75 ** 2 / 2 + 0.25 ** 2 / 2, abs=1e-14)
    assert r["distances"]["w2"] == pytest.approx(math.sqrt(0.75 ** 3 / 3 + 0.25 ** 3 / 3), abs=1e-14)


def test_w1_by_hand_against_a_two_cell_density():
    # density 0.75 on [0, 1], 0.25 on [1, 2]; samples {0.5, 1.5}: W1 = 1/3 (integrated piece by piece)
    grid = Grid((0.0,), (2.0,), (2,))
    w1, w2 = wasserstein_1d(np.array([0.5, 1.5]), grid.edges[0], np.array([0.75, 0.25]))
    assert w1 == pytest.approx(1 / 3, abs=1e-14)
    r = compare(grid, np.array([0.75, 0.25]), np.array([0.5, 1.5]))
    assert r["distances"]["w1"] == pytest.approx(1 / 3, abs=1e-14)
    assert r["distances"]["w2"] == pytest.approx(w2, abs=0)


def test_w1_w2_exact_against_quadrature_with_empty_cells_and_weights():
    rng = np.random.default_rng(4)
    grid = Grid((-1.0,), (2.0,), (12,))
    masses = rng.random(12)
    masses[[3, 4, 9]] = 0.0
    masses /= masses.sum()
    x = rng.normal(0.5, 1.0, 7)
    w = rng.random(7)
    w1, w2 = wasserstein_1d(x, grid.edges[0], masses, w)
    C = np.concatenate([[0.0], np.cumsum(masses)])
    order = np.argsort(x)
    W = np.concatenate([[0.0], np.cumsum(w[order])]) / w.sum()

    def diff(u):
        k = min(np.searchsorted(C, u, side="right") - 1, 11)
        g = grid.edges[0][k] + grid.spacing[0] * (u - C[k]) / (C[k + 1] - C[k])
        return g - x[order][min(np.searchsorted(W, u), 7) - 1]

    points = np.union1d(C, W)
    ref1 = sum(integrate.quad(lambda u: abs(diff(u)), a, b, epsabs=1e-13)[0] for a, b in zip(points[:-1], points[1:]) if b > a)
    ref2 = sum(integrate.quad(lambda u: diff(u) ** 2, a, b, epsabs=1e-13)[0] for a, b in zip(points[:-1], points[1:]) if b > a)
    assert w1 == pytest.approx(ref1, rel=1e-10)
    assert w2 == pytest.approx(math.sqrt(ref2), rel=1e-10)


def test_too_wide_gaussian_ensemble_is_measured_and_rejected():
    """N = 20000 points of N(0, 1.1^2), stratified (one uniform per quantile stratum, so the
    ensemble's own spread error is O(1/N) rather than O(1/sqrt N)), against a fine N(0, 1) grid:
    W2 = |sigma1 - sigma2| = 0.1 and W1 = 0.1 sqrt(2/pi) exactly for the Gaussians."""
    grid, rho = gaussian_1d()
    n = 20000
    u = (np.arange(n) + np.random.default_rng(1).random(n)) / n
    x = 1.1 * ndtri(u)
    r = compare(grid, rho, x)
    assert r["distances"]["w2"] == pytest.approx(0.1, rel=0.05)
    assert r["distances"]["w1"] == pytest.approx(0.1 * math.sqrt(2 / math.pi), rel=0.05)
    assert r["p_value"] < 1e-3
    assert r["p_values"]["cvm"] < 1e-3 and r["p_values"]["g_test"] < 1e-3
    assert r["distances"]["cov_error"] == pytest.approx(0.21, rel=0.05)


def test_w1_noise_floor_matches_the_mean_over_seeds():
    grid, rho = bimodal_1d()
    runs = [compare(grid, rho, sample_grid_density(grid, rho, 1000, rng=seed)) for seed in range(100)]
    mean_w1 = np.mean([r["distances"]["w1"] for r in runs])
    assert mean_w1 == pytest.approx(runs[0]["noise_floor"]["w1"], rel=0.10)


# ------------------------------------------------------------------------------------------------
# calibration of p-values and null means
# ------------------------------------------------------------------------------------------------

def _assert_null_mean(values, floor):
    values = np.asarray(values)
    assert abs(values.mean() - floor) < 3.5 * values.std() / math.sqrt(values.size)


def test_calibration_1d():
    grid, rho = bimodal_1d()
    runs = [compare(grid, rho, sample_grid_density(grid, rho, 200, rng=seed), rng=seed) for seed in range(200)]
    for key in ("ks", "cvm", "g_test"):
        assert stats.kstest([r["p_values"][key] for r in runs], "uniform").pvalue > 0.01, key
    assert stats.kstest([r["p_value"] for r in runs], "uniform").pvalue > 0.01
    for key in ("ks", "cvm", "mmd", "tv_histogram"):
        _assert_null_mean([r["distances"][key] for r in runs], runs[0]["noise_floor"][key])


def test_calibration_2d():
    grid, rho = bimodal_2d()
    runs = [compare(grid, rho, sample_grid_density(grid, rho, 200, rng=seed), rng=seed) for seed in range(200)]
    assert "G-test" in runs[0]["p_value_method"]
    assert stats.kstest([r["p_value"] for r in runs], "uniform").pvalue > 0.01
    for key in ("mmd", "tv_histogram"):
        _assert_null_mean([r["distances"][key] for r in runs], runs[0]["noise_floor"][key])
    for key in ("mean_error", "cov_error"):              # root-mean-square floors
        rms = math.sqrt(np.mean([r["distances"][key] ** 2 for r in runs]))
        assert rms == pytest.approx(runs[0]["noise_floor"][key], rel=0.15)


def test_cvm_asymptotic_distribution_matches_its_critical_values():
    for t, p in [(0.3473, 0.10), (0.4614, 0.05), (0.7435, 0.01), (1.1679, 0.001)]:
        assert hypothesis_tests._cvm_asymptotic_sf(t) == pytest.approx(p, rel=2e-3)
    assert hypothesis_tests._cvm_asymptotic_sf(0.0) == 1.0


# ------------------------------------------------------------------------------------------------
# weighted ensembles
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [1, 2])
def test_equal_weights_are_the_unweighted_ensemble(dim):
    grid, rho = bimodal_1d() if dim == 1 else bimodal_2d()
    x = sample_grid_density(grid, rho, 300, rng=2)
    a = compare(grid, rho, x)
    b = compare(grid, rho, x, np.full(300, 0.37))
    assert a == b
    assert b["n"] == 300 and not b["weighted"]


def test_integer_weights_are_duplicated_particles():
    grid, rho = bimodal_1d()
    x = sample_grid_density(grid, rho, 300, rng=7)[:, 0]
    w = np.where(np.arange(300) % 3 == 0, 2.0, 1.0)
    a = compare(grid, rho, x, w)
    b = compare(grid, rho, np.repeat(x, w.astype(int)))
    assert a["weighted"] and a["n"] == pytest.approx(400 ** 2 / (100 * 4 + 200))
    for key in ("w1", "w2", "ks", "tv_histogram", "mean_error"):
        assert a["distances"][key] == pytest.approx(b["distances"][key], rel=1e-12, abs=1e-15), key
    assert a["distances"]["cvm"] / a["n"] == pytest.approx(b["distances"]["cvm"] / b["n"], rel=1e-12)


def test_zero_weights_drop_particles():
    grid, rho = bimodal_1d()
    x = sample_grid_density(grid, rho, 100, rng=1)[:, 0]
    far = np.concatenate([x, [100.0, -50.0]])
    r = compare(grid, rho, far, np.concatenate([np.ones(100), [0.0, 0.0]]))
    assert r == {**compare(grid, rho, x), "n_particles": 102}


def test_importance_weights_reach_the_noise_floor():
    """Draws from q = N(0, 1.5^2) weighted by p/q (p the piecewise-constant grid density)."""
    grid, rho = gaussian_1d()
    q = np.random.default_rng(3).normal(0.0, 1.5, 2000)
    cells = np.clip(((q - grid.lower[0]) / grid.spacing[0]).astype(int), 0, grid.shape[0] - 1)
    w = rho[cells] / stats.norm.pdf(q, 0.0, 1.5)
    r = compare(grid, rho, q, w)
    assert r["weighted"] and 1000 < r["n"] < 2000
    assert r["distances"]["w1"] < 3 * r["noise_floor"]["w1"]
    assert r["p_value"] > 1e-3 and "effective sample size" in r["p_value_method"]
    unweighted = compare(grid, rho, q)
    assert unweighted["distances"]["w1"] > 10 * unweighted["noise_floor"]["w1"]


# ------------------------------------------------------------------------------------------------
# MMD with exact grid integrals
# ------------------------------------------------------------------------------------------------

def _gauss_legendre_points(grid: Grid, masses: np.ndarray, order: int):
    nodes, weights = np.polynomial.legendre.leggauss(order)
    per_axis = [(e[:-1, None] + (nodes[None, :] + 1) / 2 * np.diff(e)[:, None], weights / 2) for e in grid.edges]
    if grid.dim == 1:
        (p, w), = per_axis
        return p.ravel()[:, None], (masses[:, None] * w[None, :]).ravel()
    (px, wx), (py, wy) = per_axis
    X = np.broadcast_to(px[:, None, :, None], (grid.shape[0], grid.shape[1], order, order))
    Y = np.broadcast_to(py[None, :, None, :], X.shape)
    W = masses[:, :, None, None] * wx[None, None, :, None] * wy[None, None, None, :]
    return np.stack([X.ravel(), Y.ravel()], axis=1), W.ravel()


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("s", [0.3, 1.7])
def test_mmd_grid_integrals_are_exact(dim, s):
    rng = np.random.default_rng(dim)
    grid = Grid((-1.0,), (2.0,), (9,)) if dim == 1 else Grid((-1.0, -2.0), (2.0, 1.0), (5, 4))
    masses = rng.random(grid.shape)
    masses.flat[2] = 0.0
    masses /= masses.sum()
    points, weights = _gauss_legendre_points(grid, masses, 24 if dim == 1 else 10)
    kernel = lambda a, b: np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * s * s))  # noqa: E731
    edges = list(grid.edges)
    assert mmd._grid_grid_term(edges, masses, s) == pytest.approx(weights @ kernel(points, points) @ weights, rel=1e-12)
    x = rng.normal(size=(4, dim))
    w = np.full(4, 0.25)
    assert mmd._cross_term(x, w, edges, masses, s) == pytest.approx(w @ kernel(x, points) @ weights, rel=1e-12)


def test_mmd_detects_a_shift_and_reports_its_bandwidth():
    grid, rho = bimodal_1d()
    x = sample_grid_density(grid, rho, 2000, rng=1)
    exact = compare(grid, rho, x)
    shifted = compare(grid, rho, x + 0.3)
    assert abs(exact["distances"]["mmd"]) < 2e-3 < shifted["distances"]["mmd"]
    var = float(np.sum(rho * grid.cell_volume * grid.axes[0] ** 2) - np.sum(rho * grid.cell_volume * grid.axes[0]) ** 2
                + grid.spacing[0] ** 2 / 12)
    assert exact["mmd_bandwidth"] == pytest.approx(math.sqrt(var * 2 * stats.chi2.ppf(0.5, 1)), rel=1e-10)
    assert compare(grid, rho, x, bandwidth=0.5)["mmd_bandwidth"] == 0.5


def test_mmd_subset_for_many_particles_is_reproducible():
    grid, rho = bimodal_1d()
    x = sample_grid_density(grid, rho, 6000, rng=1)
    a, b, c = (compare(grid, rho, x, rng=seed) for seed in (5, 5, 6))
    assert a["mmd_particles"] == mmd.MMD_MAX_PARTICLES
    assert a["distances"]["mmd"] == b["distances"]["mmd"] != c["distances"]["mmd"]
    assert abs(a["distances"]["mmd"]) < 1e-3


def test_mmd_merging_of_big_grids_changes_little(monkeypatch):
    grid = Grid((-10.0,), (20.0,), (10000,))
    rho = gaussian_cell_averages(grid, [1.0], [[2.0]])
    x = sample_grid_density(grid, rho, 500, rng=2)
    merged = compare(grid, rho, x)["distances"]["mmd"]
    monkeypatch.setitem(mmd.MMD_MAX_CELLS, 1, 10 ** 6)
    exact = compare(grid, rho, x)["distances"]["mmd"]
    assert merged != exact and abs(merged - exact) < 1e-6


# ------------------------------------------------------------------------------------------------
# 2D: sliced W2
# ------------------------------------------------------------------------------------------------

def test_sliced_lattice_cdf_is_the_exact_projected_cdf():
    grid = Grid((-3.0, -3.0), (3.0, 3.0), (12, 10))
    X, Y = grid.coordinates
    masses = np.exp(-0.5 * (X ** 2 + Y ** 2 + X * Y))
    masses /= masses.sum()
    ref = distances.SlicedReference(grid, masses, directions=4, exact=True)
    r = 300                                                  # sub-cell points per axis (CDF error ~ 1/r^2)
    sub = (np.arange(r) + 0.5) / r - 0.5
    hx, hy = grid.spacing
    for unit, (t, P) in zip(ref.units, ref.lattices):
        proj = ((X[..., None, None] + sub[:, None] * hx) * unit[0] + (Y[..., None, None] + sub[None, :] * hy) * unit[1])
        order = np.argsort(proj.ravel())
        cum = np.concatenate([[0.0], np.cumsum(np.repeat(masses.ravel(), r * r)[order]) / (r * r)])
        assert np.max(np.abs(cum[np.searchsorted(proj.ravel()[order], t, side="right")] - P)) < 1e-5


def test_sliced_deposited_cdf_is_close_to_the_exact_one():
    """The default lattice CDF (masses deposited linearly on the lattice, convolved with the cell
    trapezoid) moves mass by less than Delta = h/12: its CDF differs from the exact one by less than
    the projected density times Delta, and sliced W2 by far less than the null spread."""
    grid = Grid((-3.0, -3.0), (3.0, 3.0), (12, 10))
    X, Y = grid.coordinates
    masses = np.exp(-0.5 * (X ** 2 + Y ** 2 + X * Y))
    masses /= masses.sum()
    exact = distances.SlicedReference(grid, masses, directions=16, exact=True)
    fast = distances.SlicedReference(grid, masses, directions=16)
    for (t, P), (t2, Q) in zip(exact.lattices, fast.lattices):
        bound = np.max(np.diff(P) / np.diff(t)) * (t2[1] - t2[0])
        assert np.max(np.abs(P - np.interp(t, t2, Q))) < bound
    x = np.random.default_rng(2).normal(size=(3000, 2)) * 0.8
    a, b = (math.sqrt(ref.w2_squared(x, None).mean()) for ref in (exact, fast))
    assert b == pytest.approx(a, rel=2e-3)


def test_sliced_w2_of_a_shifted_ensemble():
    grid, rho = bimodal_2d()
    x = sample_grid_density(grid, rho, 20000, rng=4)
    shift = np.array([0.3, -0.4])                            # projected shifts |v.u|: mean square |v|^2 / 2
    exact = compare(grid, rho, x)
    moved = compare(grid, rho, x + shift)
    assert exact["distances"]["sliced_w2"] < 0.03
    assert moved["distances"]["sliced_w2"] == pytest.approx(0.5 / math.sqrt(2), rel=0.05)
    assert moved["distances"]["mean_error"] == pytest.approx(0.5, abs=0.02)
    assert moved["p_value"] < 1e-3 and exact["p_value"] > 1e-3


def test_sliced_w2_lattice_resolution_is_converged():
    grid, rho = bimodal_2d()
    masses = rho / rho.sum()
    x = sample_grid_density(grid, rho, 2000, rng=1)
    values = [math.sqrt(distances.SlicedReference(grid, masses, refine=k).w2_squared(x, None).mean()) for k in (1, 8)]
    assert values[0] == pytest.approx(values[1], rel=1e-3)


def test_bootstrap_p_value_in_2d():
    grid, rho = bimodal_2d()
    x = sample_grid_density(grid, rho, 300, rng=9)
    moved = compare(grid, rho, x + np.array([0.4, 0.0]), bootstrap=19, rng=1)
    assert moved["p_value"] == pytest.approx(1 / 20) and "bootstrap" in moved["p_value_method"]
    assert moved["p_values"]["bootstrap_sliced_w2"] == moved["p_value"]
    exact = compare(grid, rho, x, bootstrap=19, rng=1)
    assert exact["noise_floor"]["sliced_w2"] == pytest.approx(exact["distances"]["sliced_w2"], rel=0.5)
    assert round(exact["p_value"] * 20) == pytest.approx(exact["p_value"] * 20)
    one = compare(*bimodal_1d(), sample_grid_density(*bimodal_1d(), 200, rng=3), bootstrap=9)
    assert "bootstrap_w2" in one["p_values"] and one["p_value"] == one["p_values"]["ks"]


# ------------------------------------------------------------------------------------------------
# histogram, moments, regions, output
# ------------------------------------------------------------------------------------------------

def test_tv_histogram_and_moments_by_hand():
    grid, rho = uniform_01(4)
    r = compare(grid, rho, np.array([0.1, 0.2]))
    assert r["distances"]["tv_histogram"] == pytest.approx(0.75)
    r = compare(grid, rho, np.array([0.25, 0.75]))
    assert r["distances"]["mean_error"] == pytest.approx(0.0, abs=1e-15)
    assert r["distances"]["cov_error"] == pytest.approx(0.125 - 1 / 12)   # sample variance (ddof 1) vs 1/12
    assert r["distances"]["mean_z"] == pytest.approx(0.0, abs=1e-12)


def test_particles_where_the_density_is_zero_are_impossible():
    grid, rho = bimodal_1d()
    x = sample_grid_density(grid, rho, 500, rng=1)[:, 0]
    outside = compare(grid, rho, np.concatenate([x, [9.5]]))
    assert outside["p_value"] == 0.0 and "density is zero" in outside["p_value_method"]
    assert outside["distances"]["tv_histogram"] >= 1 / 501
    empty = rho.copy()
    empty[:20] = 0.0                                         # x < -5 has no mass
    r = compare(grid, empty, np.concatenate([x, [-5.5]]))
    assert r["p_value"] == 0.0 and r["p_values"]["g_test"] == 0.0


def test_mode_masses():
    grid, rho = bimodal_1d()
    x = sample_grid_density(grid, rho, 4000, rng=2)
    h = grid.spacing[0]
    regions = [([-6.0], [1.5 + 0.5 * h]), (1.5 + 0.5 * h, 9.0)]   # split in the middle of a cell
    r = compare(grid, rho, x, regions=regions)
    modes = r["mode_masses"]
    m = rho * h
    k = int(round((1.5 - grid.lower[0]) / h))                       # the split cell is cell k
    assert modes[0]["grid_mass"] == pytest.approx(m[:k].sum() + 0.5 * m[k], rel=1e-12)
    assert modes[0]["grid_mass"] + modes[1]["grid_mass"] == pytest.approx(1.0)
    assert modes[0]["particle_mass"] == pytest.approx(np.mean(x[:, 0] <= 1.5 + 0.5 * h))
    assert abs(modes[0]["z"]) < 4
    assert modes[0]["standard_error"] == pytest.approx(math.sqrt(modes[0]["grid_mass"] * modes[1]["grid_mass"] / 4000))
    grid2, rho2 = bimodal_2d()
    y = sample_grid_density(grid2, rho2, 2000, rng=1)
    (box,) = compare(grid2, rho2, y, regions=[((-5.0, -4.0), (5.0, 6.0))])["mode_masses"]
    assert box["grid_mass"] == pytest.approx(1.0) and box["particle_mass"] == pytest.approx(1.0) and box["z"] is None


@pytest.mark.parametrize("dim", [1, 2])
def test_result_is_json_with_the_contract_keys(dim):
    grid, rho = bimodal_1d() if dim == 1 else bimodal_2d()
    x = sample_grid_density(grid, rho, 100, rng=1)
    w = np.random.default_rng(0).random(100)
    for r in (compare(grid, rho, x), compare(grid, rho, x, w, bootstrap=3, regions=[(grid.lower, grid.upper)])):
        text = json.dumps(r, allow_nan=False)
        back = json.loads(text)
        assert {"n", "n_particles", "distances", "p_value", "p_values", "noise_floor", "description",
                "mmd_bandwidth"} <= set(back)
        wanted = {"w1", "w2", "ks", "cvm"} if dim == 1 else {"sliced_w2"}
        wanted |= {"mmd", "tv_histogram", "mean_error", "cov_error", "mean_z"}
        assert wanted <= set(back["distances"]) and set(back["distances"]) <= set(back["description"])
        assert 0.0 <= back["p_value"] <= 1.0
        assert all(isinstance(v, float) for v in back["distances"].values())


def test_bad_inputs_are_input_errors():
    grid, rho = bimodal_2d()
    with pytest.raises(InputError, match="1 coordinates"):
        compare(grid, rho, np.zeros((10, 1)))
    x = sample_grid_density(grid, rho, 10, rng=1)
    with pytest.raises(InputError, match="bootstrap"):
        compare(grid, rho, x, bootstrap=-1)
    with pytest.raises(InputError, match="region"):
        compare(grid, rho, x, regions=[(0.0, 1.0, 2.0)])
    with pytest.raises(InputError, match="positive weight"):
        compare(grid, rho, x, np.eye(10)[0])
    with pytest.raises(InputError, match="bandwidth"):
        compare(grid, rho, x, bandwidth=0.0)


# ------------------------------------------------------------------------------------------------
# replicates: several independent ensembles, calibrated whatever the within-ensemble correlation
# ------------------------------------------------------------------------------------------------

def _duplicated(grid, rho, n_distinct: int, copies: int, rng, shift: float = 0.0) -> np.ndarray:
    """An ensemble of n_distinct exact draws of the grid law, each copied ``copies`` times (as after
    resampling): every particle has the law rho, but the particles are positively correlated."""
    x = sample_grid_density(grid, rho, n_distinct, rng=rng) + shift
    return np.repeat(x, copies, axis=0)


def test_replicate_test_is_calibrated_where_the_single_ensemble_test_is_not():
    """50 repetitions of 10 ensembles of 1000 particles (200 exact draws of a Gaussian grid law, each 5 times):
    the single-ensemble KS p-value is < 0.05 in most repetitions (its statistic is sqrt(5) too large: about
    85% expected; we require >= 30 of 50), the replicate (Hotelling) p-value in at most 8 of 50
    (P(Binomial(50, 0.05) >= 9) = 7.6e-4) and its 50 p-values are not rejected as uniform (KS, 1e-3).
    A 0.3-sd shift of the same kind of ensembles is rejected (p < 1e-3; 5 bins, F(4, 6))."""
    grid, rho = gaussian_1d(1200)
    rng = np.random.default_rng(2024)
    single, replicate = [], []
    for _ in range(50):
        ensembles = [_duplicated(grid, rho, 200, 5, rng) for _ in range(10)]
        single.append(compare(grid, rho, ensembles[0])["p_value"])
        replicate.append(replicates.compare_replicates(grid, rho, ensembles)["p_value"])
    single, replicate = np.asarray(single), np.asarray(replicate)
    assert np.sum(single < 0.05) >= 30
    assert np.sum(replicate < 0.05) <= 8
    assert stats.kstest(replicate, "uniform").pvalue > 1e-3
    shifted = [_duplicated(grid, rho, 200, 5, rng, shift=0.3) for _ in range(10)]
    r = replicates.compare_replicates(grid, rho, shifted)
    assert r["p_value"] < 1e-3 and r["df"] == [4, 6] and len(r["bins"][0]["edges"]) == 4


def test_replicate_test_2d_bins_and_weighted_ensembles():
    """2D: bins cut each marginal into equal masses (the grid masses between the edges are 1/k exactly);
    weighted ensembles (exact importance weights) of the right law are not rejected at 1e-3."""
    grid, rho = bimodal_2d()
    masses = rho * grid.cell_volume
    edges = replicates._equal_mass_bins(grid, masses / masses.sum(), 4)
    for axis, inner in edges:
        marginal = masses.sum(axis=1 - axis)
        cdf = np.concatenate([[0.0], np.cumsum(marginal)])
        np.testing.assert_allclose(np.interp(inner, grid.edges[axis], cdf), [0.25, 0.5, 0.75], atol=1e-12)
    rng = np.random.default_rng(5)
    ens = []
    for _ in range(12):
        x = sample_grid_density(grid, np.ones(grid.shape), 3000, rng=rng)       # uniform proposal on the box
        ens.append((x, _cell_values(grid, rho, x)))                             # weights = rho(x) / uniform
    r = replicates.compare_replicates(grid, rho, ens)
    assert r["p_value"] > 1e-3 and r["df"] == [4, 8] and all(n < 3000 for n in r["n"])


def _cell_values(grid, rho, x):
    idx = tuple(np.clip(((x[:, k] - grid.lower[k]) / grid.spacing[k]).astype(int), 0, grid.cells[k] - 1)
                for k in range(grid.dim))
    return rho[idx]


def test_ess_argument_states_the_effective_size():
    """compare(..., ess=400) of a 5x duplicated ensemble of 400 exact draws uses n = 400: the KS p-value is
    that of the 400 distinct points (the same KS statistic), and the mean_error floor is sqrt(var / 400)."""
    grid, rho = gaussian_1d(1200)
    rng = np.random.default_rng(3)
    x = sample_grid_density(grid, rho, 400, rng=rng)
    dup = np.repeat(x, 5, axis=0)
    a = compare(grid, rho, dup, ess=400)
    b = compare(grid, rho, x)
    assert a["n"] == 400 and a["ess_stated"] == 400 and a["n_particles"] == 2000
    assert a["distances"]["ks"] == pytest.approx(b["distances"]["ks"], rel=1e-10)   # cumulative-weight rounding
    assert a["p_value"] == pytest.approx(b["p_value"], rel=1e-8)
    assert a["noise_floor"]["mean_error"] == pytest.approx(b["noise_floor"]["mean_error"], rel=1e-12)
    with pytest.raises(InputError, match="ess"):
        compare(grid, rho, dup, ess=0.5)
    with pytest.raises(InputError, match="at least 3"):
        replicates.compare_replicates(grid, rho, [dup, dup])


def test_api_compare_of_replicates_reports_mode_masses(tmp_path):
    """gridflow.compare(path, [ens, ...], time=...) on a bimodal FR trajectory: mode masses of the mixture's
    components (grid masses sum to 1); for 5x duplicated ensembles the between-replicate spread of the mode
    mass is about sqrt(5) = 2.24 times the binomial one (20 replicates: the sd ratio lies in [1.4, 3.2] with
    probability > 0.999), for iid ensembles about 1 ([0.6, 1.45]); one ensemble gets mode_masses too."""
    import gridflow
    from gridflow.io.case import parse_case

    case = parse_case({"name": "m", "grid": {"lower": [-8.0], "upper": [12.0], "cells": [800]},
                       "target": {"kind": "mixture", "weights": [0.3, 0.7],
                                  "components": [{"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]},
                                                 {"kind": "gaussian", "mean": [4.0], "cov": [[1.0]]}]},
                       "initial": {"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]},
                       "flow": {"kind": "fisher-rao"}, "time": {"end": 1.0},
                       "output": {"path": str(tmp_path / "m.h5")}})
    path = gridflow.run(case)
    tr = gridflow.open_trajectory(path)
    grid, rho = tr.grid, tr.density[-1]
    rng = np.random.default_rng(8)
    dup = [np.repeat(sample_grid_density(grid, rho, 1000, rng=rng), 5, axis=0) for _ in range(20)]
    iid = [sample_grid_density(grid, rho, 5000, rng=rng) for _ in range(20)]
    r_dup = gridflow.compare(path, dup, time=1.0)
    r_iid = gridflow.compare(path, iid, time=1.0)
    for r in (r_dup, r_iid):
        assert r["replicates"] == 20 and len(r["mode_masses"]) == 2 and r["time"] == 1.0
        assert sum(m["grid_mass"] for m in r["mode_masses"]) == pytest.approx(1.0, abs=1e-12)
    assert 1.4 <= r_dup["mode_masses"][0]["spread_ratio"] <= 3.2
    assert 0.6 <= r_iid["mode_masses"][0]["spread_ratio"] <= 1.45
    one = gridflow.compare(path, iid[0], time=1.0)
    assert len(one["mode_masses"]) == 2 and abs(one["mode_masses"][0]["z"]) < 4.5


def test_metrics_choice_computes_only_the_named_distances():
    grid, rho = bimodal_2d()
    x = sample_grid_density(grid, rho, 3000, rng=5)
    full = compare(grid, rho, x)
    some = compare(grid, rho, x, metrics="sliced_w2,mean_error")
    assert set(some["distances"]) == {"sliced_w2", "mean_error"} == set(some["description"])
    for name, value in some["distances"].items():
        assert value == full["distances"][name]
    assert some["p_value"] == full["p_value"] and some["p_values"] == full["p_values"]   # tests whatever the choice
    assert set(compare(grid, rho, x, metrics="default")["distances"]) == set(metrics.DEFAULT_METRICS[2])
    assert "mmd" not in metrics.DEFAULT_METRICS[2] and set(full["distances"]) == set(metrics.METRICS[2])
    boot = compare(grid, rho, x, metrics=["mean_z"], bootstrap=19)        # the bootstrap statistic is computed anyway
    assert set(boot["distances"]) == {"mean_z"} and 0.05 <= boot["p_value"] <= 1.0
    for bad in ("w1", "sliced_w2,nope", ""):
        with pytest.raises(InputError, match="metric"):
            compare(grid, rho, x, metrics=bad)
