"""FAB-40 (40-mode 2D Gaussian mixture, Fokker–Planck flow towards N(0, I)) against its closed form."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

from gridflow.io.case import load_case
from gridflow.errors import PecletWarning
from gridflow.core.grid import Grid
from gridflow.core.problem import Problem
from gridflow.reproduce import fab40

ROOT = Path(__file__).resolve().parents[2]
FP_CASE = ROOT / "cases" / "papers" / "chemseddine-fab40-fp.toml"
PATH_CASE = ROOT / "cases" / "papers" / "chemseddine-fab40-path.toml"


def test_the_shipped_cases_hold_the_seeded_means_and_are_regenerated_exactly(tmp_path):
    mu = fab40.means()
    assert mu.shape == (40, 2) and np.all(np.abs(mu) <= 40.0)
    assert np.array_equal(mu, np.random.default_rng(0).uniform(-40.0, 40.0, size=(40, 2)))
    for path in (FP_CASE, PATH_CASE):
        case = tomllib.loads(path.read_text())
        table = case["initial"] if "fp" in path.name else case["target"]
        written = np.array([c["mean"] for c in table["components"]])
        assert np.array_equal(written, mu)     # repr round-trips floats exactly
        assert all(c["cov"] == [[fab40.VARIANCE, 0.0], [0.0, fab40.VARIANCE]] for c in table["components"])
    written = fab40.write_cases(tmp_path)
    assert [p.read_text() for p in written] == [FP_CASE.read_text(), PATH_CASE.read_text()]


def test_closed_form_starts_at_the_mixture_and_has_the_ou_moments():
    """At t = 0 the closed form is gridflow's initial density (same normalised point values); at t its
    mean is e^-t mean(mu) and its per-axis variance e^-2t (1.72466 + var(mu)) + 1 - e^-2t (the midpoint
    rule integrates these Gaussians to ~1e-15, far from the box edge)."""
    case = load_case(FP_CASE, overrides=["grid.cells=[256, 256]", "flow.flux=\"log-mean\"",
                                       "flow.values=\"auto\""])
    problem = Problem.from_case(case)
    grid = problem.grid
    rho0 = np.exp(problem.log_initial)
    assert fab40.l1_error(grid, rho0, 0.0) < 1e-12
    mu = fab40.means()
    x, y = grid.coordinates
    for t in (0.5, 3.0):
        rho = fab40.exact_density(grid, t, normalise=False)
        w = rho * grid.cell_volume
        assert w.sum() == pytest.approx(1.0, abs=1e-9)
        mean = np.array([np.sum(w * x), np.sum(w * y)])
        np.testing.assert_allclose(mean, np.exp(-t) * mu.mean(axis=0), rtol=0, atol=1e-8)
        var_x = np.sum(w * (x - mean[0]) ** 2)
        expect = np.exp(-2 * t) * (fab40.VARIANCE + mu[:, 0].var()) - np.expm1(-2 * t)
        assert var_x == pytest.approx(expect, rel=1e-8)


def test_peclet_warning_for_the_512_setting_of_the_issue_and_not_for_the_shipped_case():
    """Issue 14, acceptance 3: 512^2 cells with the default flux warn: with the target N(0, I),
    Pe = h |x| at the outermost edge next to mass; mass lives beyond the farthest mixture mean (so
    Pe > h max|mu_k|) and inside the box (Pe <= h (50 - h), h = 100/512).  The shipped case (log-quadratic
    flux, cell averages) does not warn: checked on 256^2 cells (Pe > 2 h max|mu_k| there), since the mixture takes ~20 s to
    evaluate on the shipped grid and the warning depends on the flux only once Pe > 2."""
    case = load_case(FP_CASE, overrides=["grid.cells=[512, 512]", "flow.flux=\"scharfetter-gummel\"",
                                       "flow.values=\"auto\""])
    with pytest.warns(PecletWarning, match=r"reaches 9\.\d+ .*flow\.flux = \"log-mean\""):
        problem = Problem.from_case(case)
    h = 100.0 / 512
    farthest = max(abs(v) for c in case["initial"]["components"] for v in c["mean"])
    assert h * farthest < problem.max_cell_peclet <= h * (50.0 - h)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PecletWarning)
        shipped = Problem.from_case(load_case(FP_CASE, overrides=["grid.cells=[256, 256]"]))
    assert not shipped.warnings and shipped.flux == "log-quadratic" and shipped.max_cell_peclet > 2 * h * farthest
    flow = tomllib.loads(FP_CASE.read_text())["flow"]
    assert (flow["flux"], flow["values"]) == ("log-quadratic", "cell-averages")


def _run_coarse(tmp_path: Path, flux: str, values: str = "auto") -> dict[float, float]:
    """The shipped case at 256^2 up to t = 0.1 through `gridflow run` with ``flux`` and ``values``; L1 to
    the closed form per frame (its exact cell averages for a cell-average state, else its centre values)."""
    from gridflow.cli import main
    from gridflow.io.trajectory import open_trajectory

    out = tmp_path / f"{flux}-{values}.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PecletWarning)
        status = main(["run", str(FP_CASE), "-o", str(out), "-q", "--set", "grid.cells=[256, 256]",
                       "--set", f"flow.flux=\"{flux}\"", "--set", f"flow.values=\"{values}\"", "--set", "time.end=0.1",
                       "--set", "time.save_times=[0.0, 0.05, 0.1]", "--set", "time.tolerance=1e-5"])
    assert status == 0
    tr = open_trajectory(out)
    averages = values == "cell-averages"
    return {float(t): fab40.l1_error(tr.grid, tr.density[k], float(t), cell_averages=averages)
            for k, t in enumerate(tr.time)}


def test_coarse_fab40_run_against_the_closed_form(tmp_path):
    """256^2 (h = 0.39), t = 0.1.  Measured with benchmarks/fab40_study.py: log-mean L1 3.11e-2 at 256^2
    and 7.86e-3 at 512^2 (observed order 1.99, so the coarse error is asymptotic, C h^2 with C ~ 0.2),
    unchanged to 2e-4 between time tolerances 1e-5 and 1e-8.  The bound 0.035 leaves ~12 % for that and
    for platform differences.  Scharfetter–Gummel is first order at this Peclet number (up to 19) and
    measured 0.198: at least 5x worse."""
    lm = _run_coarse(tmp_path, "log-mean")
    assert lm[0.0] < 1e-12
    assert 0.027 <= lm[0.1] <= 0.035
    assert lm[0.05] < lm[0.1]
    sg = _run_coarse(tmp_path, "scharfetter-gummel")
    assert sg[0.1] >= 5 * lm[0.1]


def test_coarse_fab40_run_with_cell_averages(tmp_path):
    """The shipped setting (log-quadratic flux, cell averages) at 256^2 to t = 0.1 against the closed
    form's exact cell averages: measured 3.8e-4 (t = 0.05) and 6.9e-4 (t = 0.1), 45x below the log-mean
    flux on the same grid (3.1e-2, test above); at 512^2 9.8e-5 at t = 0.1 (order 2.8).  Asserted: within
    the issue's 1e-3 already at 256^2, and at least 20x below log-mean's lower bound above."""
    ca = _run_coarse(tmp_path, "log-quadratic", "cell-averages")
    # t = 0: C of the centre values (exact per Gaussian) against the mixture's exact averages, O(h^4):
    # 2.07e-6 at 512^2 and 3.53e-6 at 448^2 (ratio 1.70 = (512/448)^4), so 3.3e-5 at 256^2
    assert ca[0.0] <= 5e-5
    assert ca[0.05] < ca[0.1] <= 1e-3
    assert 20 * ca[0.1] <= 0.027


def test_fab40_path_flow_ends_at_the_mixture():
    """The path case (geometric path from N(0, 100 I)) at 128^2: lambda reaches 1 at t = 1 and the
    density is then the 40-mode target (point values normalised on the grid, as the closed form)."""
    from gridflow.io.runner import solve

    case = load_case(PATH_CASE, overrides=["grid.cells=[128, 128]", "time.save_times=[0.0, 1.0]"])
    frames = solve(case)
    grid = Grid(case["grid"]["lower"], case["grid"]["upper"], case["grid"]["cells"])
    assert frames[-1].lam == pytest.approx(1.0, abs=1e-12)
    assert fab40.l1_error(grid, frames[-1].density, 0.0) < 1e-10


@pytest.mark.slow
@pytest.mark.timeout(1800)   # ~7.5 min on 2 idle cores (docs/fab40.md); the suite's default is 300 s
def test_shipped_fab40_case_reaches_the_closed_form(tmp_path):
    """The shipped case as `gridflow run` runs it (issue 14, acceptance 1 asks L1 <= 1e-3 at t = 0.5, 1, 3,
    7): asserts the errors measured by benchmarks/fab40_study.py for the shipped setting (docs/fab40.md)."""
    from gridflow.cli import main
    from gridflow.io.trajectory import open_trajectory

    out = tmp_path / "fab40.h5"
    assert main(["run", str(FP_CASE), "-o", str(out), "-q"]) == 0
    tr = open_trajectory(out)
    l1 = {float(t): fab40.l1_error(tr.grid, tr.density[k], float(t), cell_averages=True)
          for k, t in enumerate(tr.time)}
    for t, bound in fab40.SHIPPED_L1_BOUNDS.items():
        assert l1[t] <= bound, (t, l1[t])
