"""Reference particle samplers (gridflow.particles.samplers): exact laws, properties, mode masses (docs/validation.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from gridflow.io.case import parse_case
from gridflow.errors import InputError
from gridflow.analysis.exact import gaussian_flow_moments, linear_schedule
from gridflow.core.grid import Grid
from gridflow.io.runner import solve
from gridflow.particles.samplers import (SAMPLERS, ParticleModel, effective_sample_size, kde_log_density,
                                         log_density_function, make_sampler, reflect, run_sampler, systematic_resample)
from gridflow.particles.birth_death import _birth_death  # noqa: I001  (after samplers: the registry's order)

Z = 4.0   # |z| bound of the moment checks: two-sided probability 6e-5 per check under the hypothesis


def gaussian(mean, cov) -> dict:
    return {"kind": "gaussian", "mean": list(mean), "cov": [list(r) for r in cov]}


def case_1d(flow, *, target=None, initial=None, schedule=None, reference=None, lower=-8.0, upper=8.0, cells=1600,
            end=1.0, diffusion=1.0, reaction=1.0, save_times=None, boundary="reflecting") -> dict:
    raw = {"name": "t", "grid": {"lower": [lower], "upper": [upper], "cells": [cells], "boundary": boundary},
           "target": target or gaussian([1.0], [[0.5]]), "initial": initial or gaussian([0.0], [[1.0]]),
           "flow": {"kind": flow, "diffusion": diffusion, "reaction": reaction},
           "time": {"end": end, **({"save_times": save_times} if save_times else {})}}
    if schedule or reference:
        raw["tempering"] = {"schedule": schedule or {"kind": "constant", "value": 1.0},
                            **({"reference": reference} if reference else {})}
    return parse_case(raw)


BIMODAL = {"kind": "mixture", "weights": [0.5, 0.5],
           "components": [gaussian([0.0], [[1.0]]), gaussian([4.0], [[1.0]])]}


def _z_mean_var(x: np.ndarray, mean: float, var: float) -> tuple[float, float]:
    n = x.size
    return (x.mean() - mean) / math.sqrt(var / n), (x.var(ddof=1) - var) / (var * math.sqrt(2.0 / (n - 1)))


# ------------------------------------------------------------------------------------------------
# tools
# ------------------------------------------------------------------------------------------------

def test_reflect_folds_the_line_onto_the_box():
    x = np.array([[0.5], [-0.25], [1.25], [2.5], [-3.75], [1.0], [0.0]])
    got = reflect(x, [0.0], [1.0])[:, 0]
    np.testing.assert_allclose(got, [0.5, 0.25, 0.75, 0.5, 0.25, 1.0, 0.0], atol=1e-15)
    wrapped = reflect(x, [0.0], [1.0], periodic=True)[:, 0]
    np.testing.assert_allclose(wrapped, [0.5, 0.75, 0.25, 0.5, 0.25, 0.0, 0.0], atol=1e-15)
    y = np.random.default_rng(0).normal(0.0, 10.0, (1000, 2))
    z = reflect(y, [-1.0, 2.0], [3.0, 4.0])
    assert np.all((z >= [-1.0, 2.0]) & (z <= [3.0, 4.0]))


def test_systematic_resampling_copies_each_particle_floor_or_ceil_of_n_w_times():
    rng = np.random.default_rng(1)
    for n in (7, 100, 1001):
        w = rng.gamma(0.3, size=n)
        w /= w.sum()
        for _ in range(20):
            counts = np.bincount(systematic_resample(w, rng), minlength=n)
            assert counts.sum() == n
            assert np.all(counts >= np.floor(n * w) - 1e-9) and np.all(counts <= np.ceil(n * w) + 1e-9)


def test_effective_sample_size():
    assert effective_sample_size(None, 10) == 10
    assert effective_sample_size(np.zeros(8)) == pytest.approx(8.0)
    assert effective_sample_size(np.log([1.0, 1.0, 0.0 + 1e-300, 1e-300])) == pytest.approx(2.0)


@pytest.mark.parametrize("dim", [1, 2])
def test_binned_kde_matches_the_exact_kernel_sum(dim):
    """Linear binning on bins of width delta <= sigma/4 and linear interpolation back each move a kernel
    value by at most delta^2 max|K''| / 8, i.e. relatively by (delta/sigma)^2 ((r/sigma)^2 + 1) / 8 for a
    kernel at distance r.  Bounds: mean |log error| < (1/4)^2 / 8 (r ~ 0), and everywhere
    < (1/4)^2 (3^2 + 1) / 4 (two such errors, points dominated by kernels up to 3 sigma away)."""
    rng = np.random.default_rng(2)
    x = np.clip(rng.normal(0.5, 1.0, (1500, dim)), -2.0, 3.0)
    w = rng.random(1500)
    lo, hi = [-2.0] * dim, [3.0] * dim
    for sigma in (0.3, 0.1):
        binned = kde_log_density(x, bandwidth=sigma, lower=lo, upper=hi, weights=w)
        exact = kde_log_density(x, bandwidth=sigma, lower=lo, upper=hi, weights=w, method="exact")
        err = np.abs(binned - exact)
        assert err.mean() < (1 / 4) ** 2 / 8 and err.max() < (1 / 4) ** 2 * 10 / 4
    # a KDE reflected at the walls is a density on the box
    grid = Grid(lo, hi, [200] * dim)
    dens = np.exp(kde_log_density(x, bandwidth=0.3, lower=lo, upper=hi, at=grid.points))
    assert dens.sum() * grid.cell_volume == pytest.approx(1.0, abs=2e-3)


def test_log_density_functions_agree_with_the_grid_and_their_gradients():
    grid = Grid([-3.0, -2.0], [3.0, 4.0], [30, 40])
    pts = np.random.default_rng(3).uniform([-2.5, -1.5], [2.5, 3.5], (50, 2))
    tables = {
        "gaussian": gaussian([0.3, 1.0], [[1.0, 0.4], [0.4, 0.8]]),
        "mixture": {"kind": "mixture", "weights": [0.3, 0.7],
                    "components": [gaussian([0.3, 1.0], [[1.0, 0.4], [0.4, 0.8]]), gaussian([-1.0, 2.0], [[0.5, 0.0], [0.0, 0.5]])]},
        "expression": {"kind": "expression", "log_density": "-0.5*x**2 - 0.25*(y - 1)**4 + 0.1*x*y"},
    }
    from gridflow.core.distributions import log_density

    for name, table in tables.items():
        f = log_density_function(table, grid)
        on_grid = log_density(table, grid).ravel()
        diff = f(grid.points) - on_grid
        np.testing.assert_allclose(diff, diff[0], atol=1e-11)                  # the same function up to a constant
        value, g = f.value_and_grad(pts)
        for k in range(2):                                                      # central differences of the values
            e = np.zeros(2)
            e[k] = 1e-5
            fd = (f(pts + e) - f(pts - e)) / 2e-5
            np.testing.assert_allclose(g[:, k], fd, rtol=1e-6, atol=1e-6)
    x, y = pts.T
    g = log_density_function(tables["expression"], grid).grad(pts)
    np.testing.assert_allclose(g[:, 0], -x + 0.1 * y, atol=1e-8)
    np.testing.assert_allclose(g[:, 1], -(y - 1) ** 3 + 0.1 * x, atol=1e-8)


def test_file_densities_are_interpolated_linearly(tmp_path):
    grid = Grid([-4.0], [4.0], [64])
    values = -0.5 * grid.axes[0] ** 2
    np.save(tmp_path / "log.npy", values)
    f = log_density_function({"kind": "file", "path": str(tmp_path / "log.npy")}, grid)
    x = np.array([[grid.axes[0][10]], [0.5 * (grid.axes[0][20] + grid.axes[0][21])]])
    v, g = f.value_and_grad(x)
    assert v[0] - v[1] == pytest.approx(values[10] - 0.5 * (values[20] + values[21]), abs=1e-12)
    assert g[1, 0] == pytest.approx((values[21] - values[20]) / grid.spacing[0], abs=1e-12)


def test_birth_death_step_has_the_fisher_rao_mean_field():
    """Two equal groups with rates +r and -r: after one step the expected share of the first is
    e^{-r h}/2 exactly; the Fisher–Rao flow gives 1/(1 + e^{2 r h}); they differ by (r h)^2/4 + O((rh)^3)
    (weak order 1).  N = 10^6: binomial standard error 5e-4."""
    n, rh = 1_000_000, 0.1
    x = np.repeat([[0.0], [1.0]], n // 2, axis=0)
    rate = np.where(x[:, 0] == 0.0, 1.0, -1.0)
    new = _birth_death(x, rate, rh, np.random.default_rng(4))
    assert new.shape == x.shape
    share = float(np.mean(new[:, 0] == 0.0))
    se = math.sqrt(0.25 / n)
    assert abs(share - 0.5 * math.exp(-rh)) < Z * se
    assert abs(share - 1.0 / (1.0 + math.exp(2 * rh))) < rh ** 2 / 4 + Z * se


# ------------------------------------------------------------------------------------------------
# exact laws
# ------------------------------------------------------------------------------------------------

def test_tempered_ula_has_the_law_of_the_euler_maruyama_recursion():
    """Gaussian target and reference: the ULA law is Gaussian with m' = m + a h (P_k m_k* - P_k m),
    v' = (1 - a h P_k)^2 v + 2 a h, P_k the precision of pi_{lambda(t_k)} (left point)."""
    a, h, end, duration = 0.7, 0.05, 1.5, 1.0
    case = case_1d("fokker-planck", target=gaussian([1.0], [[0.5]]), schedule={"kind": "linear", "duration": duration},
                   diffusion=a, end=end)
    (frame,) = make_sampler("ula", ParticleModel.from_case(case), step=h).run(particles=200_000, times=[end], rng=5)
    m, v = 0.0, 1.0
    for k in range(round(end / h)):
        lam = min(k * h / duration, 1.0)
        prec, shift = (1 - lam) / 1.0 + lam / 0.5, lam * 1.0 / 0.5
        m, v = m + a * h * (shift - prec * m), (1 - a * h * prec) ** 2 * v + 2 * a * h
    zm, zv = _z_mean_var(frame.positions[:, 0], m, v)
    assert abs(zm) < Z and abs(zv) < Z
    assert frame.steps == 30 and frame.lam == 1.0 and frame.log_weights is None


def test_ula_in_2d_has_the_law_of_the_euler_maruyama_recursion():
    mean, cov = np.array([1.0, -1.0]), np.array([[1.0, 0.6], [0.6, 0.5]])
    case = parse_case({"name": "t", "grid": {"lower": [-7.0, -7.0], "upper": [7.0, 7.0], "cells": [40, 40]},
                       "target": gaussian(mean, cov), "initial": gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]),
                       "flow": {"kind": "fokker-planck"}, "time": {"end": 1.0}})
    h, n = 0.05, 100_000
    (frame,) = make_sampler("ula", ParticleModel.from_case(case), step=h).run(particles=n, times=[1.0], rng=6)
    A = np.eye(2) - h * np.linalg.inv(cov)
    m, C = np.zeros(2), np.eye(2)
    for _ in range(20):
        m, C = mean + A @ (m - mean), A @ C @ A.T + 2 * h * np.eye(2)
    x = frame.positions
    z_mean = (x.mean(axis=0) - m) / np.sqrt(np.diag(C) / n)
    S = np.cov(x, rowvar=False)
    z_cov = [(S[i, j] - C[i, j]) / math.sqrt((C[i, i] * C[j, j] + C[i, j] ** 2) / n) for i, j in ((0, 0), (0, 1), (1, 1))]
    assert np.all(np.abs(z_mean) < Z) and np.all(np.abs(z_cov) < Z)


def _weighted_z(x, w, mean, var):
    """z-scores of the self-normalised weighted mean and variance (delta-method standard errors)."""
    w = w / w.sum()
    m = w @ x
    se_m = math.sqrt(np.sum(w ** 2 * (x - m) ** 2))
    v = w @ (x - m) ** 2
    se_v = math.sqrt(np.sum(w ** 2 * ((x - m) ** 2 - v) ** 2))
    return (m - mean) / se_m, (v - var) / se_v


TEMPERED_FR = dict(target=gaussian([2.0], [[0.5]]), reference=gaussian([0.5], [[2.0]]),
                   schedule={"kind": "linear", "duration": 2.0}, reaction=1.3)


def _fr_exact(times):
    return gaussian_flow_moments(times, mean0=[0.0], cov0=[[1.0]], target_mean=[2.0], target_cov=[[0.5]],
                                 reference_mean=[0.5], reference_cov=[[2.0]], schedule=linear_schedule(2.0),
                                 diffusion=0.0, reaction=1.3)


def test_fisher_rao_importance_weights_are_exact_with_a_separate_reference():
    case = case_1d("fisher-rao", end=3.0, **TEMPERED_FR)
    times = [0.0, 1.0, 3.0]
    means, covs = _fr_exact(times)
    frames = list(make_sampler("fr-is", ParticleModel.from_case(case), step=0.5).run(particles=200_000, times=times,
                                                                                       rng=7))
    for f, m, c in zip(frames, means, covs):
        zm, zv = _weighted_z(f.positions[:, 0], f.weights, m[0], c[0, 0])
        assert abs(zm) < Z and abs(zv) < Z, (f.time, zm, zv)
        assert f.steps == 0
    assert np.array_equal(frames[0].positions, frames[-1].positions)           # the particles never move
    assert frames[-1].ess < 0.9 * 200_000


def test_tempering_smc_matches_the_exact_fisher_rao_law():
    """10 replicates of 4000 particles; the replicate means of the weighted mean and variance are
    compared with the exact law by a t-test at two-sided level 1e-3."""
    case = case_1d("fisher-rao", end=3.0, **TEMPERED_FR)
    model = ParticleModel.from_case(case)
    (m,), (c,) = _fr_exact([3.0])
    est, resampled, accept = [], 0, []
    for r in range(10):
        smp = make_sampler("fr-smc", model, step=0.05)
        (f,) = smp.run(particles=4000, times=[3.0], rng=100 + r)
        w = f.weights
        mean = w @ f.positions[:, 0]
        est.append((mean, w @ (f.positions[:, 0] - mean) ** 2))
        resampled += f.resampled
        accept.append(smp.accepted / max(smp.proposed, 1))
    est = np.array(est)
    crit = stats.t.ppf(1 - 5e-4, len(est) - 1)
    for k, exact in enumerate((m[0], c[0, 0])):
        assert abs(est[:, k].mean() - exact) < crit * est[:, k].std(ddof=1) / math.sqrt(len(est)), k
    assert resampled >= 10 and 0.1 < np.mean(accept) < 0.9


# ------------------------------------------------------------------------------------------------
# birth-death samplers: mode masses against the grid (acceptance 5)
# ------------------------------------------------------------------------------------------------

def _mode_masses(name: str, replicates: int, *, n: int = 4000, step: float = 0.01, end: float = 5.0):
    case = case_1d("wfr", target=BIMODAL, lower=-8.0, upper=12.0, cells=2000, end=end)
    (grid_frame,) = solve(case)[-1:]
    g = ParticleModel.from_case(case).grid
    grid_mass = float(grid_frame.density[g.axes[0] < 2.0].sum() * g.spacing[0])   # 2 is a cell edge
    model = ParticleModel.from_case(case)
    masses, ess = [], []
    for r in range(replicates):
        (f,) = make_sampler(name, model, step=step).run(particles=n, times=[end], rng=1000 + r)
        w = f.weights if f.weights is not None else np.full(n, 1.0 / n)
        masses.append(float(w[f.positions[:, 0] < 2.0].sum()))
        ess.append(f.ess)
    return grid_mass, np.array(masses), np.array(ess)


def test_birth_death_langevin_mode_masses_match_the_grid():
    """½N(0,1) + ½N(4,1) from N(0,1), WFR, N = 4000, h = 0.01, t = 5: the mean left-mode mass over
    8 replicates lies in the 99% binomial interval p ± 2.576 sqrt(p(1-p)/(N R)) around the grid's."""
    p, masses, _ = _mode_masses("bdl", 8)
    assert abs(masses.mean() - p) < stats.norm.ppf(0.995) * math.sqrt(p * (1 - p) / (4000 * len(masses)))


def test_smc_wfr_mode_masses_match_the_grid():
    """The same for the weighted SMC-WFR sampler, with the binomial interval of the effective sample size."""
    p, masses, ess = _mode_masses("smc-wfr", 5)
    assert abs(masses.mean() - p) < stats.norm.ppf(0.995) * math.sqrt(p * (1 - p) / ess.sum())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bdl", "smc-wfr"])
def test_mode_masses_over_many_replicates(name):
    p, masses, ess = _mode_masses(name, 40)
    n_eff = 4000 * len(masses) if name == "bdl" else ess.sum()
    assert abs(masses.mean() - p) < stats.norm.ppf(0.995) * math.sqrt(p * (1 - p) / n_eff)


# ------------------------------------------------------------------------------------------------
# schedules, boundaries, reproducibility, errors
# ------------------------------------------------------------------------------------------------

def test_adaptive_schedule_is_followed_with_the_particles():
    """lambda(t) of an adaptive ('ess', path variance) schedule: explicit Euler with the step, so it
    matches the grid's lambda to O(h) (h = 0.005: within 0.01)."""
    case = case_1d("fisher-rao", target=BIMODAL, lower=-8.0, upper=12.0, cells=2000, end=1.0,
                   schedule={"kind": "adaptive", "rule": "ess"}, save_times=[0.5, 1.0])
    frames = solve(case)
    out = list(make_sampler("fr-is", ParticleModel.from_case(case), step=0.005).run(particles=1000, times=[0.5, 1.0],
                                                                                      rng=1))
    for f, g in zip(out, frames):
        assert abs(f.lam - g.lam) < 0.01 and 0.0 < f.lam < 1.0


def test_particles_stay_in_a_periodic_box_and_runs_are_reproducible():
    case = case_1d("wfr", target={"kind": "expression", "log_density": "2*cos(x)"},
                   initial={"kind": "expression", "log_density": "-abs(x - 1)"}, lower=-math.pi, upper=math.pi,
                   cells=256, boundary="periodic", end=0.5)
    model = ParticleModel.from_case(case)
    runs = [list(make_sampler(name, model, step=0.05).run(particles=500, times=[0.0, 0.5], rng=3))
            for name in ("bdl", "bdl", "smc-wfr")]
    for frames in runs:
        x = frames[-1].positions
        assert np.all((x >= -math.pi) & (x <= math.pi))
    assert np.array_equal(runs[0][-1].positions, runs[1][-1].positions)


def test_run_sampler_uses_the_case_save_times():
    case = case_1d("fokker-planck", end=0.2, save_times=[0.0, 0.1, 0.2])
    frames = run_sampler(case, sampler="ula", particles=50, step=0.03, seed=1)
    assert [f.time for f in frames] == [0.0, 0.1, 0.2]
    assert [f.steps for f in frames] == [0, 4, 4]          # ceil(0.1 / 0.03) equal steps per interval


def test_sampler_errors_are_input_errors():
    fp = ParticleModel.from_case(case_1d("fokker-planck"))
    with pytest.raises(InputError, match="flow"):
        make_sampler("bdl", fp, step=0.01)
    with pytest.raises(InputError, match="Unknown sampler"):
        make_sampler("hmc", fp, step=0.01)
    with pytest.raises(InputError, match="step"):
        make_sampler("ula", fp, step=0.0)
    with pytest.raises(InputError, match="option"):
        make_sampler("ula", fp, step=0.1, moves=3)
    with pytest.raises(InputError, match="particles"):
        list(make_sampler("ula", fp, step=0.1).run(particles=1, times=[1.0]))
    with pytest.raises(InputError, match="increasing"):
        list(make_sampler("ula", fp, step=0.1).run(particles=10, times=[1.0, 0.5]))
    assert set(SAMPLERS) == {"ula", "fr-is", "fr-smc", "bd", "bdl", "smc-wfr"}


# ------------------------------------------------------------------------------------------------
# user samplers (FILE.py:NAME or a function)
# ------------------------------------------------------------------------------------------------

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "docs" / "examples"


def test_user_ula_file_reproduces_the_builtin_ula_bit_for_bit():
    """docs/examples/ula.py:ula makes the same floating-point operations as the built-in ``ula`` with the
    same random stream, on a tempered case (so target.grad_log_density uses lambda(t))."""
    case = case_1d("fokker-planck", target=gaussian([0.5], [[0.05]]), schedule={"kind": "linear", "duration": 0.5},
                   lower=-6.0, upper=6.0)
    model = ParticleModel.from_case(case)
    times = [0.3, 1.0]
    builtin = list(make_sampler("ula", model, step=0.01).run(particles=500, times=times, rng=7))
    user = list(make_sampler(f"{EXAMPLES / 'ula.py'}:ula", model, step=0.01).run(particles=500, times=times, rng=7))
    for a, b in zip(builtin, user):
        np.testing.assert_array_equal(a.positions, b.positions)
        assert b.log_weights is None and b.ess == 500 and b.lam == a.lam


def test_target_offers_the_tempered_reference_and_target_densities():
    """target.log_density(x, t) = (1 - lambda(t)) log pi_0 + lambda(t) log pi, its gradient likewise, with
    lambda(t) = min(t / 0.5, 1) for the linear schedule over 0.5 (pi_0 = mu_0 = N(0,1), pi = N(0.5, 0.05))."""
    from gridflow.particles.samplers import Target

    case = case_1d("fokker-planck", target=gaussian([0.5], [[0.05]]), schedule={"kind": "linear", "duration": 0.5})
    target = Target(ParticleModel.from_case(case), {"k": 3})
    x = np.array([[-1.0], [0.25], [2.0]])
    lam = 0.4
    log0, log1 = -0.5 * x[:, 0] ** 2, -0.5 * (x[:, 0] - 0.5) ** 2 / 0.05
    val = target.log_density(x, 0.2)
    want = (1 - lam) * log0 + lam * log1
    np.testing.assert_allclose(val - val[0], want - want[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(target.grad_log_density(x, 0.2)[:, 0], (1 - lam) * -x[:, 0] + lam * -(x[:, 0] - 0.5) / 0.05,
                               rtol=1e-12)
    np.testing.assert_allclose(target.reference.grad_log_density(x, 0.7)[:, 0], -x[:, 0], rtol=1e-12)
    np.testing.assert_allclose(target.target.grad_log_density(x, 0.0)[:, 0], -(x[:, 0] - 0.5) / 0.05, rtol=1e-12)
    assert target.lam(0.2) == pytest.approx(0.4) and target.lam(3.0) == 1.0 and target.options == {"k": 3}
    assert target.diffusion == 1.0 and target.dim == 1
    np.testing.assert_allclose(target.confine(np.array([[9.0]])), [[7.0]])


def test_user_birth_death_example_runs_and_matches_the_fisher_rao_mean():
    """docs/examples/birth_death.py on FR from N(0,1) to N(0.5, 0.5) at t = 1: the ensemble mean matches the
    grid's within 4 x 3 iid standard errors (clones are correlated, spread up to ~3x iid; the O(h) and
    O(bandwidth^2) biases are ~1e-2, below that bound of 0.23)."""
    case = case_1d("fisher-rao", target=gaussian([0.5], [[0.5]]), end=1.0)
    (frame,) = run_sampler(case, sampler=f"{EXAMPLES / 'birth_death.py'}:birth_death", particles=2000, step=0.05,
                           times=[1.0], seed=3, options={"bandwidth": 0.2})
    from gridflow.core.problem import Problem

    grid_frame = solve(case)[-1]
    x = frame.positions[:, 0]
    grid = Problem.from_case(case).grid
    masses = grid_frame.density * grid.spacing[0]
    mean = float(np.sum(masses * grid.coordinates[0]) / masses.sum())
    assert frame.log_weights is None and x.size == 2000
    assert abs(x.mean() - mean) < 4 * 3 * math.sqrt(0.75 / 2000)


def _write(tmp_path, text, name="s.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_user_sampler_errors_name_the_file(tmp_path):
    case = case_1d("fokker-planck")
    model = ParticleModel.from_case(case)
    ok = "import numpy as np\ndef good(x, log_w, t, dt, rng, target):\n    return x, None\n"
    cases = [
        (f"{tmp_path / 'none.py'}:f", "none.py does not exist"),
        (f"{_write(tmp_path, ok)}", "FILE.py:NAME"),
        (f"{_write(tmp_path, ok)}:missing", r"s.py has no 'missing'; it defines good"),
        (f"{_write(tmp_path, 'x = 1 +', 'syn.py')}:f", r"syn.py could not be loaded: SyntaxError"),
        (str(_write(tmp_path, 'raise RuntimeError("boom")', 'bad.py')) + ":f", r"bad.py could not be loaded: RuntimeError: boom"),
        (f"{_write(tmp_path, 'f = 3', 'nf.py')}:f", r"'f' in the sampler file .*nf.py is a int"),
    ]
    for spec, match in cases:
        with pytest.raises(InputError, match=match):
            make_sampler(spec, model, step=0.1)
    bodies = [
        ("def f(x, log_w, t, dt, rng, target):\n    raise ValueError('bad step')\n", r"w.py:f raised ValueError: bad step at t = 0"),
        ("def f(x, log_w, t, dt, rng, target):\n    return x\n", r"w.py:f must return a pair"),
        ("def f(x, log_w, t, dt, rng, target):\n    return x[:-1], None\n", r"w.py:f returned positions of shape \(9, 1\)"),
        ("def f(x, log_w, t, dt, rng, target):\n    return x, log_w[:3]\n", r"w.py:f returned log weights of shape \(3,\)"),
        ("def f(x, log_w, t, dt, rng, target):\n    return x * float('nan'), None\n", r"w.py:f returned 10 non-finite"),
    ]
    for body, match in bodies:
        path = _write(tmp_path, body, "w.py")
        from gridflow.particles import samplers as s
        s._USER_CACHE.clear()
        smp = make_sampler(f"{path}:f", model, step=0.1)
        with pytest.raises(InputError, match=match):
            list(smp.run(particles=10, times=[0.5], rng=0))


def test_user_sampler_function_weights_are_kept():
    """A function sampler returning log weights gives a weighted frame (normalised, ESS from them)."""
    case = case_1d("fisher-rao")
    model = ParticleModel.from_case(case)

    def tilt(x, log_w, t, dt, rng, target):
        return x, log_w + dt * (target.target.log_density(x) - target.reference.log_density(x))

    (frame,) = make_sampler(tilt, model, step=0.1).run(particles=400, times=[1.0], rng=1)
    lw = (model.target(frame.positions) - model.reference(frame.positions))
    want = lw - np.log(np.sum(np.exp(lw - lw.max()))) - lw.max()
    np.testing.assert_allclose(frame.log_weights, want, atol=1e-10)
    assert frame.ess < 400


def test_registry_by_name_and_aliases():
    """Sampler classes register themselves by name (in the documented order) with their aliases; a second
    class with a taken name is refused, and register=False keeps a class out of the registry."""
    from gridflow.particles.base import ALIASES, ParticleSampler
    from gridflow.particles.user import UserSampler

    assert list(SAMPLERS) == ["ula", "fr-is", "fr-smc", "bd", "bdl", "smc-wfr"]
    assert ALIASES == {"tempered-ula": "ula", "is": "fr-is", "smc": "fr-smc", "birth-death": "bd",
                       "birth-death-langevin": "bdl"}
    assert UserSampler not in SAMPLERS.values()
    with pytest.raises(ValueError, match="'ula' is already registered"):
        type("Again", (ParticleSampler,), {"name": "ula"})

    class Private(ParticleSampler, register=False):
        name = "private-test"

    assert "private-test" not in SAMPLERS
    model = ParticleModel.from_case(case_1d("fisher-rao"))
    assert type(make_sampler("smc", model, step=0.1)).__name__ == "TemperingSMC"
