"""Reproduction of Chemseddine, Wald, Duong & Steidl (ICLR 2025): teleportation of mass.

Exact references (no tuned numbers):
* the continuum minimal velocity of the 1D example rho_0 ∝ e^-|x|, rho_1 ∝ e^(-2 min(|x|, |x-m|))
  (``TeleportExample``, closed form per piece), itself checked against adaptive quadrature of the
  definition J(x) = -∫_{-inf}^x d_t rho;
* the Gaussian-mixture closed form of the Fokker–Planck flow towards N(0, I);
* the energy identity d/dt KL(rho_t | pi) = -||v_t||^2 of the Fokker–Planck flow;
* second-order convergence under grid refinement.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import quad

from gridflow.io.case import load_case
from gridflow.cli import main as cli_main
from gridflow.core.problem import Problem
from gridflow.reproduce import chemseddine as ch
from gridflow.reproduce.chemseddine import cases as ch_cases
from gridflow.reproduce.chemseddine import oracles as ch_oracles
from gridflow.reproduce.chemseddine import study as ch_study
from gridflow.io.runner import run, solve
from gridflow.io.trajectory import open_trajectory
from tests.reference import gaussian_cell_averages, l1


def strict(fn, *args, **kwargs):
    """Call with every warning an error (numpy errors already raise, see conftest)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------- case files


@pytest.mark.parametrize("name", sorted(ch_cases.CASE_FILES.values()))
def test_case_files_are_valid(name):
    path = ch_cases.cases_dir() / name
    case = load_case(path)
    assert case["name"] == path.stem
    assert case["flow"]["kind"] in ("path", "fokker-planck")


def test_case_file_runs_from_the_command_line(tmp_path):
    out = tmp_path / "teleport.h5"
    status = cli_main(["run", str(ch_cases.cases_dir() / ch_cases.CASE_FILES["teleport-path"]), "-o", str(out), "-q",
                       "--set", "grid.cells=[1500]", "--set", "time.save_times=[0.0, 0.5, 1.0]"])
    assert status == 0
    tr = open_trajectory(out)
    assert tr.status == "complete"
    assert tr.velocity.shape == (3, 1, 1500) and tr.kinetic_energy.shape == (3,)
    exact = [ch_oracles.TeleportExample(15, t).kinetic_energy() for t in (0.0, 0.5, 1.0)]
    np.testing.assert_allclose(tr.kinetic_energy, exact, rtol=5e-3)  # h = 0.05: measured 2e-3 at t = 1


# --------------------------------------------------------------------------- exact reference


@pytest.mark.parametrize("m,t", [(5.0, 0.7), (5.0, 1 / 3), (15.0, 0.2), (1.0, 1.0)])
def test_exact_flux_matches_quadrature_of_the_definition(m, t):
    ex = ch_oracles.TeleportExample(m, t)
    z = quad(lambda x: math.exp(-ex.f(np.array(x))), -80, m + 80, points=[0, m / 2, m], limit=400)[0]
    mean_g = quad(lambda x: math.exp(-ex.f(np.array(x))) * float(ex.g(np.array(x))), -80, m + 80,
                  points=[0, m / 2, m], limit=400)[0] / z
    assert ex.Z == pytest.approx(z, rel=1e-10)
    for x in (-2.0, 0.3 * m, 0.5 * m, 0.8 * m, m + 1.5):
        pts = [p for p in (0.0, m / 2, m) if -80 < p < x]
        j = -quad(lambda y: math.exp(-ex.f(np.array(y))) * (float(ex.g(np.array(y))) - mean_g) / z, -80, x,
                  points=pts or None, limit=400, epsabs=1e-14)[0]
        k = int(ex._piece_of(np.array([x]))[0])
        assert float(ex.flux(np.array([x]), k)[0]) == pytest.approx(j, rel=1e-7, abs=1e-13)


def test_exact_kinetic_energy_asymptote_and_quadrature():
    # large m: ||v_1||^2 = (m - 1/2)^2 e^m / 8 up to exponentially small terms
    assert ch_oracles.TeleportExample(50, 1.0).kinetic_energy() == pytest.approx(ch_oracles.teleport_asymptote(50), rel=1e-12)
    # the quadrature of ∫ J^2 / rho is converged
    ex = ch_oracles.TeleportExample(15, 0.9)
    assert ex.kinetic_energy() == pytest.approx(ex.kinetic_energy(panel=0.1, nodes=30), rel=1e-13)


@pytest.mark.parametrize("m", [1, 5, 15])
def test_grid_kinetic_energy_converges_at_second_order_to_the_exact_value(m):
    lams = [0.5, 0.9, 1.0]
    exact = np.array([ch_oracles.TeleportExample(m, t).kinetic_energy() for t in lams])
    values = []
    for h in (0.025, 0.0125):
        frames = strict(solve, ch_cases.teleport_path_case(m, h, lams))
        values.append(np.array([f.kinetic_energy for f in frames]))
    err = [np.abs(v / exact - 1) for v in values]
    ratio = err[0] / err[1]
    assert np.all((ratio > 3.6) & (ratio < 4.4)), ratio
    richardson = values[1] + (values[1] - values[0]) / 3
    np.testing.assert_allclose(richardson, exact, rtol=2e-6)


def test_m50_runs_without_overflow_nan_or_warning(tmp_path):
    """Densities down to 1e-22 in the valley (e^-80 at the walls); ||v_1||^2 ~ 1.6e24."""
    times = [0.0, 0.5, 0.9, 0.99, 1.0]
    case = ch_cases.teleport_path_case(50, 0.00625, times)
    out = strict(run, case, output=tmp_path / "m50.h5")
    tr = open_trajectory(out)
    assert tr.status == "complete"
    assert np.all(np.isfinite(tr.velocity)) and np.all(np.isfinite(tr.kinetic_energy))
    assert np.all(np.isfinite(tr.density)) and tr.density[-1].min() < 1e-21
    exact = np.array([ch_oracles.TeleportExample(50, t).kinetic_energy() for t in times])
    np.testing.assert_allclose(tr.kinetic_energy, exact, rtol=1e-4)  # measured 2.3e-5 at h = 0.00625
    assert tr.kinetic_energy[-1] > 1e24
    # the velocity in the empty valley (where rho_1 ~ 1e-22) is accurate, not only finite (the two cells
    # at the cusp x = 25 of v_1 average a kink: first order there)
    x = tr.x
    valley = (np.abs(x - 25.0) < 1.0) & (np.abs(x - 25.0) > 0.01)
    v_exact = ch_oracles.TeleportExample(50, 1.0).velocity(x[valley])
    assert v_exact.max() > 1e23
    np.testing.assert_allclose(tr.velocity[-1, 0, valley], v_exact, rtol=1e-4)


# --------------------------------------------------------------------------- Fokker–Planck (gradient flow)


def test_fokker_planck_action_is_bounded_by_kl():
    m = 5
    times = ch_study.fp_times(4.0, 81)
    case = ch_cases.teleport_fp_case(m, 0.05, times)
    r = strict(ch_study.fp_run, case)
    exact = ch_oracles.teleport_fp_exact(m)
    action = ch_study._simpson_sqrt_time(r["ke"], r["t"])
    drop = r["kl"][0] - r["kl"][-1]
    assert r["kl"][0] == pytest.approx(exact["kl"], rel=1e-4)
    assert action == pytest.approx(drop, rel=2e-4)  # energy identity (measured 8e-5 at h = 0.05)
    assert drop < exact["kl"]
    assert np.all(np.diff(r["kl"]) < 0) and np.all(np.diff(r["ke"]) < 0)  # KL and I decrease
    assert r["ke"][0] == pytest.approx(exact["fisher"], rel=3e-2)  # first order at the kinks of rho_1


def test_fokker_planck_kinetic_energy_of_a_gaussian_is_the_closed_form():
    # rho = N(mu, s^2), pi = N(0, 1): I(rho | pi) = E[(-(x - mu)/s^2 + x)^2] = mu^2 + (s - 1/s)^2, and
    # v = -a grad log(rho / pi) gives ||v||^2 = a^2 I; a = 2.  Tolerance: second order at h = 0.025,
    # h^2 = 6e-4 (measured 1e-12).
    mu, s = 0.7, 1.5
    case = load_case(ch_cases.cases_dir() / ch_cases.CASE_FILES["teleport-fp"],
                     overrides=["flow.diffusion=2.0", "grid.lower=[-12.0]", "grid.upper=[12.0]", "grid.cells=[960]",
                                f"initial.log_density=\"-(x - {mu})**2 / (2 * {s * s})\"",
                                "time.end=0.05", "time.save_times=[0.0, 0.05]"])
    frames = strict(solve, case)
    assert ch_cases.fp_kinetic_energy(frames[0], case) == pytest.approx(4 * (mu ** 2 + (s - 1 / s) ** 2), rel=6e-4)


def test_fokker_planck_kinetic_energy_scales_with_the_diffusion_weight():
    case = ch_cases.teleport_fp_case(5, 0.05, [0.0, 0.1])
    fast = load_case(ch_cases.cases_dir() / ch_cases.CASE_FILES["teleport-fp"],
                     overrides=["flow.diffusion=2.0", "grid.lower=[-15.0]", "grid.upper=[20.0]", "grid.cells=[700]",
                                "initial.log_density=\"-2*minimum(abs(x), abs(x - 5.0))\"",
                                "time.end=0.05", "time.save_times=[0.0, 0.05]"])
    slow, quick = strict(solve, case), strict(solve, fast)
    # v = -a grad log(rho / pi): ||v||^2 = a^2 I; the flow with a = 2 at t = 0.05 is the a = 1 flow at 0.1
    assert ch_cases.fp_kinetic_energy(quick[-1], fast) == pytest.approx(4 * ch_cases.fp_kinetic_energy(slow[-1], case), rel=1e-4)


def test_fokker_planck_mixture_closed_form_2d():
    """A Gaussian mixture under the FP flow towards N(0, I) stays a mixture with means e^-t mu_k and
    covariances e^-2t Sigma_k + (1 - e^-2t) I: the grid solution at h = 0.05 agrees to L1 <= 2e-3."""
    case = ch_cases.case_2d("fp-2d", 0.05, [0.0, 0.25, 0.5], tolerance=1e-6)
    assert case["grid"]["cells"] == [280, 280]
    problem = Problem.from_case(case)
    init = case["initial"]
    w = np.asarray(init["weights"]) / np.sum(init["weights"])
    errors = []
    for frame in strict(lambda: list(ch_cases.frames(case)[1])):
        e = math.exp(-frame.time)
        exact = sum(wk * gaussian_cell_averages(problem.grid, e * np.asarray(c["mean"]),
                                                e * e * np.asarray(c["cov"]) + (1 - e * e) * np.eye(2))
                    for wk, c in zip(w, init["components"]))
        errors.append(l1(frame.density, exact, problem.grid))
        # the module's own closed form (used in the report) is the same
        assert ch_oracles.closed_form_l1(case, frame, problem.grid) == pytest.approx(errors[-1], rel=1e-9)
    assert max(errors) <= ch_cases.CLOSED_FORM_L1_TOLERANCE, errors  # measured 5.1e-4, 7.3e-4, 6.7e-4


# --------------------------------------------------------------------------- mixtures and 2D path


def test_crossing_mixture_explodes_symmetric_does_not():
    a = 6
    ke = {}
    for kind, w in ch_cases.MIX_WEIGHTS.items():
        frames = strict(solve, ch_cases.mixture_path_case(a, w, 0.025, [0.5, 1.0]))
        ke[kind] = [f.kinetic_energy for f in frames]
    assert ke["symmetric"][-1] == pytest.approx(a * a, rel=1e-3)  # the modes move apart at speed a
    assert ke["crossing"][-1] > 1e5 * ke["symmetric"][-1]


def test_2d_linear_path_no_warning_and_growth():
    frames = strict(solve, ch_cases.case_2d("path-2d", 0.1, [0.5, 1.0]))
    ke = [f.kinetic_energy for f in frames]
    assert np.all(np.isfinite(ke)) and ke[1] > 1000 * ke[0]


# --------------------------------------------------------------------------- convergence bookkeeping


def test_refined_digits_follow_the_error_estimate():
    hs = [0.04, 0.02, 0.01, 0.005]
    values = [math.pi + 0.3 * h * h + 0.5 * h ** 3 for h in hs]
    r = ch_study.Refined(hs, values, 2.0, exact=math.pi)
    assert abs(r.estimate - math.pi) <= r.error
    # half a unit in the last printed digit covers the error, and the printed value is the truth rounded
    assert abs(float(r.text()) - math.pi) <= 0.5 * 10 ** (1 - r.digits)
    assert ch_study.significant_digits(1.5879780e24, 2e19) == 5  # half unit of the 5th digit: 5e19
    assert ch_study.significant_digits(1.5879780e24, 6e19) == 4
    assert ch_study.fmt(1.5879780e24, 5) == "1.5880e24" and ch_study.fmt(0.2306305, 5) == "0.23063"


# --------------------------------------------------------------------------- the whole reproduction


@pytest.mark.slow
def test_reproduce_writes_report_tables_and_figures(tmp_path):
    report = ch.reproduce(tmp_path)
    text = report.read_text()
    assert "Warnings: none." in text
    for name in ("fig1-path-densities", "fig2-kinetic-energy", "fig3-velocity-t1", "fig4-gradient-flow",
                 "fig5-mixtures", "fig6-2d", "fig7-2d-closed-form"):
        png = tmp_path / ch_cases.FIGURE_DIR / f"{name}.png"
        assert png.is_file() and f"({(ch_cases.FIGURE_DIR / png.name).as_posix()})" in text
    for table in ("results.json", "claims.json", "teleport_path_kinetic_energy.csv", "teleport_fp.csv", "mixtures.csv"):
        assert (tmp_path / table).is_file()
    import json

    res = json.loads((tmp_path / "results.json").read_text())
    for m in ch_cases.M_VALUES:
        for k in res["teleport_path"]["by_m"][str(m)]["ke"]:
            # every reported 1D kinetic energy agrees with the continuum value to its printed digits
            assert abs(k["exact"] - k["estimate"]) <= k["error_estimate"]
            assert abs(float(k["printed"]) - k["exact"]) <= 0.5 * 10 ** (math.floor(math.log10(k["exact"]))
                                                                        - k["digits"] + 1) * 1.0000001


@pytest.mark.slow
def test_committed_report_links_resolve():
    docs = Path(__file__).resolve().parents[2] / "docs"
    report = docs / "reproductions-chemseddine.md"
    if not report.exists():
        pytest.skip("docs/reproductions-chemseddine.md not present")
    import re

    for link in re.findall(r"\]\((figures/chemseddine/[^)]+\.png)\)", report.read_text()):
        assert (docs / link).is_file(), link
