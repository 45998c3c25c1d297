"""The Crucinio & Pathiraja reproduction (gridflow/reproduce/crucinio_pathiraja/, cases/papers/cp-*.toml).

Fast checks of its pieces (exact MMD^2, the expression schedule, the case files, the oracles) and the
property the paper proves, 'tempered FR KL >= plain FR KL at every saved time', over every configuration
the reproduction runs, on coarse grids.  The grid FR flow from rho_0 = pi_0 is pi_J(t) on any grid
(the FR step is exact in log space), so the property holds exactly on coarse grids too: the only
tolerance is round-off of the grid KL.  The full reproduction is behind ``-m slow``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, linalg

from gridflow.io.case import load_case
from gridflow.analysis.exact import gaussian_flow_moments, gaussian_kl, linear_schedule
from gridflow.core.grid import Grid
from gridflow.reproduce import crucinio_pathiraja as cp
from gridflow.reproduce.crucinio_pathiraja import cases as cp_cases
from gridflow.reproduce.crucinio_pathiraja import mmd as cp_mmd
from gridflow.reproduce.crucinio_pathiraja import oracles as cp_oracles
from gridflow.reproduce.crucinio_pathiraja import study as cp_study

CASES = Path(__file__).resolve().parents[2] / "cases" / "papers"
H_COARSE = 0.05          # 1D cell width of the property runs (400-520 cells)
H_COARSE_2D = 0.4        # 2D cell width (36^2-48^2 cells)


def _kl_run(case: str, overrides: list[str], end: float, every: float) -> dict:
    ov = overrides + [f"time.end={end!r}", f"time.save_every={every!r}", "time.tolerance=1e-6"]
    return cp_study.solve_job(cp_cases.Job(("test",), case, tuple(ov), mmd=False))


def _assert_never_faster(plain: dict, tempered: dict, what: str) -> None:
    g = cp_study.fr_gap(plain, tempered)
    assert g["times"] == len(plain["t"]) == len(tempered["t"]), what
    # >= up to round-off of the grid KL (its floor is ~1e-13 on these grids)
    assert g["holds"], (what, g)
    # and strictly larger wherever the plain KL is above the round-off floor (t > 0)
    pos = (plain["t"] > 0) & (plain["kl"] > 1e-10)
    assert np.all(tempered["kl"][pos] > plain["kl"][pos]), what


# ------------------------------------------------------------------------------- exact MMD^2

@pytest.mark.parametrize("h", [0.02, 0.3, 1.0])
def test_cell_pair_kernel_is_the_exact_double_integral(h):
    n = 6
    J = cp_mmd.cell_pair_kernel(n, h)
    for k in range(-(n - 1), n):
        val, err = integrate.dblquad(lambda b, a: math.exp(-(k * h + a - b) ** 2), 0.0, h, 0.0, h,
                                     epsabs=1e-15, epsrel=1e-13)
        assert abs(J[k + n - 1] - val / h**2) <= 1e-12 + err / h**2


def test_grid_mmd_fft_equals_dense_quadratic_form_and_gaussian_closed_form():
    grid = Grid([-10.0], [12.0], [1100])
    x = grid.axes[0]
    p = np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi) * grid.cell_volume
    q = np.exp(-0.5 * (x - 1.0) ** 2) / math.sqrt(2 * math.pi) * grid.cell_volume
    mmd = cp_mmd.GridMMD(grid)
    J = cp_mmd.cell_pair_kernel(1100, grid.spacing[0])
    K = linalg.toeplitz(J[1099:])
    d = p - q
    assert mmd.mmd2(p, q) == pytest.approx(float(d @ K @ d), rel=1e-12, abs=1e-16)
    # N(0,1) vs N(1,1), kernel exp(-(x-y)^2): 2/sqrt5 (1 - e^{-1/5}); the grid samples the densities at the
    # cell centres, an O(h^2) = O(4e-4) relative perturbation of each mass
    assert mmd.mmd2(p, q) == pytest.approx(2 / math.sqrt(5) * (1 - math.exp(-0.2)), rel=4e-4)


def test_grid_mmd_2d_product_densities_factorise():
    # rho = f(x) g(y), pi = p(x) g(y): MMD^2 = MMD^2_x(f, p) * E k_y, exactly in grid arithmetic
    grid = Grid([-6.0, -5.0], [9.0, 5.0], [60, 40])
    x, y = grid.axes
    f = np.exp(-0.5 * x**2)
    pp = np.exp(-0.5 * x**2) + np.exp(-0.5 * (x - 4) ** 2)
    g = np.exp(-0.5 * y**2)
    f, pp, g = f / f.sum(), pp / pp.sum(), g / g.sum()
    m2 = cp_mmd.GridMMD(grid).mmd2(np.outer(f, g), np.outer(pp, g))
    mx = cp_mmd.GridMMD(Grid([-6.0], [9.0], [60])).mmd2(f, pp)
    ky = float(g @ linalg.toeplitz(cp_mmd.cell_pair_kernel(40, grid.spacing[1])[39:]) @ g)
    assert m2 == pytest.approx(mx * ky, rel=1e-12)
    # E exp(-(V-V')^2) = 1/sqrt(1 + 2 Var(V-V')) = 1/sqrt5 for V, V' ~ N(0,1); a piecewise-constant density adds
    # the within-cell variance h^2/12 to each draw: 1/sqrt(5 + h^2/3), up to O(h^4)
    h = grid.spacing[1]
    assert ky == pytest.approx(1 / math.sqrt(5 + h * h / 3), rel=h**4)


def test_crossing_time_interpolation():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    y = 0.04 * np.exp(-t)                     # log-linear: interpolation is exact
    assert cp_mmd.first_below(t, y) == pytest.approx(math.log(4.0), rel=1e-14)
    assert cp_study.crossing_cubic(t, y) == pytest.approx(math.log(4.0), rel=1e-12)
    assert cp_mmd.first_below(t, np.full(4, 0.5)) == math.inf
    assert cp_mmd.first_below(t, np.full(4, 0.001)) == 0.0


def test_printed_digits_respect_refinement():
    # a coincidence of rounding near a rounding boundary does not count as agreement
    assert cp_study.fmt_kl(0.442740934, 0.44274054) == ("0.44274", 5)
    assert cp_study.fmt_kl(0.210110064, 0.210110064) == ("0.210110", 6)
    assert cp_study.fmt_kl(-2e-13, 3e-13)[1] == -1
    assert cp_study.fmt_time(12.717, 12.718) == "12.72"
    assert cp_study.fmt_time(math.inf, math.inf) == "> 60"


# ------------------------------------------------------------------------------- case files

def test_case_files_are_valid_and_consistent():
    files = sorted(p.name for p in CASES.glob("cp-*.toml"))
    assert files == ["cp-bimodal-2d.toml", "cp-bimodal-adaptive.toml", "cp-bimodal-hyperbolic.toml",
                     "cp-bimodal.toml", "cp-gaussian-narrow.toml", "cp-gaussian-wide.toml"]
    cases = {f: load_case(CASES / f) for f in files}
    base = cases["cp-bimodal.toml"]
    for other in ("cp-bimodal-hyperbolic.toml", "cp-bimodal-adaptive.toml"):
        c = cases[other]
        for key in ("grid", "target", "initial"):
            assert c[key] == base[key], (other, key)
    assert cases["cp-bimodal-hyperbolic.toml"]["flow"] == base["flow"]
    assert cases["cp-bimodal-hyperbolic.toml"]["time"] == base["time"]
    # the overrides the reproduction uses are valid and give the documented boxes and cell widths
    for m in cp_cases.M_VALUES:
        c = load_case(CASES / "cp-bimodal.toml", overrides=cp_cases.bimodal_1d_overrides(m, 0.02))
        assert c["grid"]["upper"] == [pytest.approx(m + 8.0)]
        assert (c["grid"]["upper"][0] - c["grid"]["lower"][0]) / c["grid"]["cells"][0] == pytest.approx(0.02)
        c2 = load_case(CASES / "cp-bimodal-2d.toml", overrides=cp_cases.bimodal_2d_overrides(m, 0.2))
        a = m / math.sqrt(2.0)
        assert c2["target"]["components"][1]["mean"] == [pytest.approx(a), pytest.approx(a)]
        assert c2["grid"]["upper"][0] >= a + 6.0
    # the 2D default is m = 4 and its override for m = 4 reproduces the file
    assert load_case(CASES / "cp-bimodal-2d.toml", overrides=cp_cases.bimodal_2d_overrides(4, 0.2))["grid"] == \
        cases["cp-bimodal-2d.toml"]["grid"]


def test_hyperbolic_schedule_is_the_exact_expression():
    from gridflow.core.schedule import schedule_from_table

    sched = load_case(CASES / "cp-bimodal-hyperbolic.toml")["tempering"]["schedule"]
    assert sched == {"kind": "expression", "lambda": "1 - 1/(2 + t/0.3)"}
    assert cp_cases.SCHEDULES_B["hyperbolic"] == '{ kind = "expression", lambda = "1 - 1/(2 + t/0.3)" }'
    # the 2D runs' override gives the same schedule
    c2 = load_case(CASES / "cp-bimodal-2d.toml", overrides=[f"tempering.schedule={cp_cases.SCHEDULES_B['hyperbolic']}"])
    assert c2["tempering"]["schedule"] == sched
    s = schedule_from_table(sched)
    t = np.concatenate([np.linspace(0.0, 60.0, 6001), [1e-12, 0.3, 0.6, 59.999, 100.0]])
    for ti in t:
        assert s.value(ti) == pytest.approx(1 - 1 / (2 + ti / 0.3), rel=0, abs=1e-15), ti
    np.testing.assert_allclose(s.values(t), cp_cases.hyperbolic(t), rtol=0, atol=1e-15)
    assert s.value(0.0) == 0.5


def test_fr_exponent_of_the_hyperbolic_schedule():
    # J' = lambda - J, J(0) = 0 (closed form with the exponential integral) against quadrature
    from gridflow.analysis.exact import fisher_rao_exponent

    t = np.array([0.0, 0.3, 1.0, 7.0, 60.0])
    ref = fisher_rao_exponent(t, schedule=lambda s: float(cp_cases.hyperbolic(s)))
    np.testing.assert_allclose(cp_oracles.fr_exponent("hyperbolic", t), ref, rtol=1e-11, atol=1e-14)


# ------------------------------------------------------------------------------- the paper's property

def test_tempered_fr_never_faster():
    """KL(tempered FR) >= KL(plain FR) at every saved time, in every configuration the reproduction runs."""
    fr = ["flow.kind=fisher-rao"]
    # (a) both Gaussian targets, linear schedule of duration 10 (narrow: densities spanning e^-2000)
    for file, cells in (("cp-gaussian-wide.toml", 740), ("cp-gaussian-narrow.toml", 620)):
        ov = fr + [f"grid.cells=[{cells}]"]
        plain = _kl_run(file, ov, 10.0, 0.25)
        tempered = _kl_run(file, ov + ['tempering.schedule={ kind = "linear", duration = 10.0 }'], 10.0, 0.25)
        _assert_never_faster(plain, tempered, file)
    # (b) bimodal, every m, the three schedules
    for m in cp_cases.M_VALUES:
        ov = fr + cp_cases.bimodal_1d_overrides(m, H_COARSE)
        plain = _kl_run("cp-bimodal.toml", ov, 60.0, 0.5)
        for sched, spec in cp_cases.SCHEDULES_B.items():
            if sched == "plain":
                continue
            file = "cp-bimodal-hyperbolic.toml" if sched == "hyperbolic" else "cp-bimodal.toml"
            extra = [] if sched == "hyperbolic" else [f"tempering.schedule={spec}"]
            _assert_never_faster(plain, _kl_run(file, ov + extra, 60.0, 0.5), f"m={m} {sched}")
    # (c) the adaptive rules, both variance choices (t <= 100; the plain KL reaches the round-off floor at t ~ 17)
    ov = fr + cp_cases.bimodal_1d_overrides(cp_cases.M_C, H_COARSE)
    plain = _kl_run("cp-bimodal.toml", ov, 100.0, 1.0)
    for rule in cp_cases.RULES:
        for var in cp_cases.VARIANCES:
            tempered = _kl_run("cp-bimodal-adaptive.toml", ov + [f"tempering.schedule.rule={rule}",
                                                                 f"tempering.schedule.variance={var}"], 100.0, 1.0)
            _assert_never_faster(plain, tempered, f"{rule} {var}")
    # (d) 2D, two separations, the three schedules
    for m in (2, 6):
        ov = fr + cp_cases.bimodal_2d_overrides(m, H_COARSE_2D)
        plain = _kl_run("cp-bimodal-2d.toml", ov, 60.0, 1.0)
        for sched, spec in cp_cases.SCHEDULES_B.items():
            if sched == "plain":
                continue
            extra = [f"tempering.schedule={spec}"]
            _assert_never_faster(plain, _kl_run("cp-bimodal-2d.toml", ov + extra, 60.0, 1.0), f"2D m={m} {sched}")


# ------------------------------------------------------------------------------- oracles

def test_fr_crossing_times_match_the_exact_fr_solution():
    from gridflow.core.problem import Problem

    ov = cp_cases.bimodal_1d_overrides(4.0, H_COARSE)
    case = load_case(CASES / "cp-bimodal.toml", overrides=ov)
    prob = Problem.from_case(case)
    exact = cp_oracles.fr_exact_times(prob.grid, prob.path.log_reference, prob.path.log_target)
    assert exact["monotone"]
    for sched, spec in cp_cases.SCHEDULES_B.items():
        file = "cp-bimodal-hyperbolic.toml" if sched == "hyperbolic" else "cp-bimodal.toml"
        extra = [f"tempering.schedule={spec}"] if sched not in ("plain", "hyperbolic") else []
        r = cp_study.solve_job(cp_cases.Job(("t",), file, tuple(ov + ["flow.kind=fisher-rao", "time.tolerance=1e-6"] + extra)))
        t_grid, t_exact = cp_mmd.first_below(r["t"], r["mmd2"]), exact[cp_mmd.THRESHOLD]["times"][sched]
        if math.isinf(t_exact):
            assert math.isinf(t_grid), sched
        else:
            # frames 0.1 apart, log-linear interpolation: error <= 0.1^2/8 |(log M)''| / |(log M)'|, below 5e-3 here
            assert t_grid == pytest.approx(t_exact, abs=5e-3), sched


@pytest.mark.parametrize("rule", cp_cases.RULES)
@pytest.mark.parametrize("variance", cp_cases.VARIANCES)
def test_adaptive_lambda_matches_the_ode_oracle(rule, variance):
    """lambda(t) of a rule driving the tempered FR flow: rho_t = pi_J, J' = lambda - J, lambda' = g(lambda, Var)."""
    tol = 1e-7
    ov = cp_cases.bimodal_1d_overrides(4.0, H_COARSE) + [
        "flow.kind=fisher-rao", "time.end=20.0", "time.save_every=0.1", f"time.tolerance={tol!r}",
        f"tempering.schedule.rule={rule}", f"tempering.schedule.variance={variance}"]
    r = cp_study.solve_job(cp_cases.Job(("t",), "cp-bimodal-adaptive.toml", tuple(ov), mmd=False))
    lam, _ = cp_oracles.adaptive_oracle(rule, variance, r["t"])
    # each accepted step has a local error <= tol (step doubling, lambda included) and the lambda ODE does
    # not amplify errors (g is non-increasing in lambda or lambda is capped), so the global error is
    # at most (accepted steps) x tol
    assert np.max(np.abs(r["lam"] - lam)) <= r["steps"] * tol


def test_narrow_gaussian_fr_kl_is_exact_on_a_coarse_grid():
    """pi = N(20, 0.1) from N(0,1): log-densities span 2000; FR is pi_J(t) on any grid, and the midpoint rule
    integrates these Gaussians spectrally, so even h = 0.05 gives the exact KL to 1e-9 relative."""
    t = np.array([1.0, 2.0, 5.0])
    for tempered in (False, True):
        ov = ["flow.kind=fisher-rao", "grid.cells=[620]", "time.tolerance=1e-6"]
        if tempered:
            ov.append('tempering.schedule={ kind = "linear", duration = 10.0 }')
        r = cp_study.solve_job(cp_cases.Job(("t",), "cp-gaussian-narrow.toml", tuple(ov + ["time.end=5.0", "time.save_every=1.0"]),
                                mmd=False))
        m, c = gaussian_flow_moments(t, mean0=[0.0], cov0=[[1.0]], target_mean=[20.0], target_cov=[[0.1]],
                                     schedule=linear_schedule(10.0) if tempered else None, diffusion=0.0,
                                     reaction=1.0)
        exact = gaussian_kl(m, c, [20.0], [[0.1]])
        np.testing.assert_allclose(r["kl"][[1, 2, 5]], exact, rtol=1e-9)


def test_particle_mmd_of_exact_draws_is_unbiased():
    # iid draws from pi: the U-statistic has mean 0; its kernel h is bounded by 4, so its standard deviation
    # is below 4 sqrt(2) / n; allow 5 of those
    rng = np.random.default_rng(7)
    n, m = 2000, 4.0
    x = rng.standard_normal(n) + m * (rng.random(n) < 0.5)
    val = cp_study.particle_mmd2(x, np.full(n, 1.0 / n), m)
    assert abs(val) <= 5 * 4 * math.sqrt(2) / n
    # and an ensemble that misses the far mode has MMD^2 = (1 - e^{-m^2/5}) / (2 sqrt 5) + O(1/n)
    y = rng.standard_normal(n)
    assert cp_study.particle_mmd2(y, np.full(n, 1.0 / n), 10.0) == pytest.approx(
        (1 - math.exp(-20.0)) / (2 * math.sqrt(5)), abs=5 * 4 * math.sqrt(2) / n)


# ------------------------------------------------------------------------------- the whole reproduction

@pytest.mark.slow
def test_full_reproduction(tmp_path):
    report = cp.reproduce(tmp_path)
    text = report.read_text()
    from gridflow.reproduce.claims import read_claims

    _, claims = read_claims(tmp_path / "claims.json")
    verdicts = {c.id: c.verdict for c in claims}
    assert verdicts == {"1": "confirmed", "2": "confirmed", "3": "confirmed", "4": "confirmed", "5": "confirmed",
                        "P": "refuted"}, {c.id: c.verdict_text for c in claims}
    assert all(f"**{c.verdict}**" in text for c in claims)
    for png in ("cp-a-kl-wide.png", "cp-a-kl-narrow.png", "cp-a-rates.png", "cp-b-times.png", "cp-b-mmd-curves.png",
                "cp-c-lambda.png", "cp-c-mmd.png", "cp-d-times-2d.png", "cp-particles.png"):
        assert (tmp_path / png).stat().st_size > 10_000
        assert f"]({png})" in text
