"""Error bars (docs/numerics.md, error estimates): the Richardson estimate from a grid 3 times coarser
(`run --error-estimate`, `refine`) against the true L1 error at the cell centres of Gaussian cases with
closed-form solutions, in 1D and 2D, for every flow; the CLI (run, info, plot, refine, compare) and --resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gridflow.analysis.exact import gaussian_density, gaussian_flow_moments
from gridflow.analysis.refinement import ErrorEstimator, refine, solve_densities
from gridflow.cli.entry import main
from gridflow.core.problem import Problem
from gridflow.core.schedule import schedule_from_table
from gridflow.io.case import dumps_case, parse_case
from gridflow.io.runner import run
from gridflow.io.trajectory import open_trajectory
from gridflow.io.trajectory_writer import TrajectoryWriter
from gridflow.time.solver import save_times
from tests.reference import gaussian, make_case

FLOWS = {"fokker-planck": (1.0, 0.0), "fisher-rao": (0.0, 1.0), "wfr": (1.0, 1.0)}
LINEAR = {"kind": "linear", "duration": 0.5}
#: below this the L1 error is round-off (and the truncation of the Gaussians' tails at the box)
ROUND_OFF = 1e-12

# 1D: N(0, 1) -> N(1, 2), box of more than 9 standard deviations; 2D: a correlated target
GAUSS_1D = dict(lower=[-12.0], upper=[14.0], m0=[0.0], c0=[[1.0]], mt=[1.0], ct=[[2.0]], end=1.0)
GAUSS_2D = dict(lower=[-9.0, -9.0], upper=[9.0, 9.0], m0=[0.0, 0.0], c0=[[1.0, 0.0], [0.0, 1.0]],
                mt=[1.0, -0.5], ct=[[1.5, 0.6], [0.6, 1.0]], end=0.5)


def _case(dim: int, cells: int, flow: str, schedule=None, tolerance: float = 1e-7) -> tuple[dict, dict]:
    g = GAUSS_1D if dim == 1 else GAUSS_2D
    case = make_case(lower=g["lower"], upper=g["upper"], cells=[cells] * dim, initial=gaussian(g["m0"], g["c0"]),
                     target=gaussian(g["mt"], g["ct"]), flow=flow, schedule=schedule, end=g["end"],
                     tolerance=tolerance, save_every=g["end"] / 4)
    return parse_case(case), g


def _true_errors(case: dict, g: dict, flow: str, schedule, densities) -> np.ndarray:
    """L1 distance sum |rho_h - rho(x_i)| h^d to the exact density at the cell centres."""
    times = save_times(case["time"])
    sched = schedule_from_table(schedule) if schedule else None
    a, b = FLOWS[flow]
    means, covs = gaussian_flow_moments(times, mean0=g["m0"], cov0=g["c0"], target_mean=g["mt"], target_cov=g["ct"],
                                        schedule=None if sched is None else sched.value,
                                        breakpoints=() if sched is None else sched.breakpoints,
                                        diffusion=a, reaction=b)
    grid = Problem.from_case(case).grid
    pts = grid.axes[0] if grid.dim == 1 else np.stack(grid.coordinates, axis=-1)
    return np.array([np.abs(rho - gaussian_density(pts, m, c)).sum() * grid.cell_volume
                     for rho, m, c in zip(densities, means, covs)])


def _check_factor_two(true: np.ndarray, est: np.ndarray) -> None:
    """Within a factor 2 where the true error is above round-off; at round-off both are."""
    for k, (e, x) in enumerate(zip(true, est)):
        if e > ROUND_OFF:
            assert 0.5 <= x / e <= 2.0, (k, e, x)
        else:
            assert x <= ROUND_OFF, (k, e, x)


@pytest.mark.parametrize("schedule", [None, LINEAR], ids=["untempered", "linear"])
@pytest.mark.parametrize("flow", list(FLOWS))
@pytest.mark.parametrize("dim,cells", [(1, 180), (2, 72)], ids=["1d", "2d"])
def test_estimate_within_factor_two_of_the_true_error(dim, cells, flow, schedule):
    case, g = _case(dim, cells, flow, schedule)
    times = save_times(case["time"])
    fine = solve_densities(case, times)
    estimator = ErrorEstimator(case)
    est = np.array([estimator.estimate(t, rho) for t, rho in zip(times, fine)])
    true = _true_errors(case, g, flow, schedule, fine)
    _check_factor_two(true, est)
    if flow == "fisher-rao":   # exact at the centres for Gaussians: the estimate must not invent an error
        assert true.max() <= ROUND_OFF and est.max() <= ROUND_OFF
    else:                      # the case is coarse enough that the error is far above round-off
        assert true[1:].min() > 1e-6


def test_time_error_is_part_of_the_estimate():
    """At a loose tolerance the time error is most of the error (measured: 63-73%); the estimate still
    lands within 10% of it (measured 0.3%), where the spatial Richardson term alone gives 0.21-0.40 of it."""
    case, g = _case(1, 540, "wfr", tolerance=1e-4)
    times = save_times(case["time"])
    fine = solve_densities(case, times)
    tight = solve_densities(case, times, tolerance=1e-9)
    true = _true_errors(case, g, "wfr", None, fine)
    time_error = np.array([np.abs(a - b).sum() for a, b in zip(fine, tight)]) * (26.0 / 540)
    assert np.all(time_error[1:] > 0.4 * true[1:])
    estimator = ErrorEstimator(case)
    est = np.array([estimator.estimate(t, rho) for t, rho in zip(times, fine)])
    assert np.all(np.abs(est[1:] / true[1:] - 1.0) <= 0.1), est / true


def test_refine_three_levels_measures_second_order():
    case, g = _case(1, 270, "fokker-planck", LINEAR)
    result = refine(case, levels=3)
    assert result.cells == [[270], [90], [30]]
    assert np.isnan(result.order[0])                     # t = 0: exact data, no order
    assert np.all(np.abs(result.order[1:] - 2.0) <= 0.2), result.order
    true = _true_errors(case, g, "fokker-planck", LINEAR, solve_densities(case, save_times(case["time"])))
    _check_factor_two(true, result.estimate)
    assert refine(case, levels=2).estimate[1:] == pytest.approx(result.estimate[1:], rel=0.1)


def _write_case(tmp_path, cells=90, **over) -> str:
    case, _ = _case(1, cells, "wfr")
    case["output"]["path"] = str(tmp_path / "out.h5")
    case["output"].update(over)
    path = tmp_path / f"case{cells}{''.join(over)}.toml"
    path.write_text(dumps_case(case))
    return str(path)


def test_run_info_plot_with_error_estimate(tmp_path, capsys):
    case = _write_case(tmp_path)
    out = tmp_path / "est.h5"
    assert main(["run", case, "--error-estimate", "-o", str(out), "-q"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".h5") == ["est.h5"]   # no second trajectory
    tr = open_trajectory(out)
    est = tr.extra["error_estimate"]
    assert est.dtype == np.float64 and est.shape == tr.time.shape and est[0] <= ROUND_OFF and np.all(est[1:] > 1e-6)
    assert "refinement ratio 3" in tr.attrs["error_estimate_method"]
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("error:")][0]
    assert f"{est.max():.3g}" in line and f"{est[-1]:.3g}" in line
    assert main(["plot", str(out), "-o", str(tmp_path / "fig.png")]) == 0
    # the same with the case key, and the same numbers as refine --json
    assert main(["run", _write_case(tmp_path, error_estimate=True), "-q"]) == 0
    np.testing.assert_allclose(open_trajectory(tmp_path / "out.h5").extra["error_estimate"], est, rtol=1e-12)
    capsys.readouterr()
    assert main(["refine", case, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(data["estimate"], est, rtol=1e-12, atol=1e-300)
    assert main(["refine", _write_case(tmp_path, cells=180), "--levels", "3"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert "order" in rows[1] and 1.8 <= float(rows[-1].split()[-2]) <= 2.2, rows
    # 10 cells on the coarsest level cannot hold N(0, 1): said about that grid, exit 2
    assert main(["refine", case, "--levels", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[10] cells that the error estimate solves on" in err, err


def test_cells_not_divisible_by_three_is_one_line_exit_2(tmp_path, capsys):
    case = _write_case(tmp_path, cells=100)
    for argv in (["run", case, "--error-estimate", "-q"], ["refine", case], ["refine", _write_case(tmp_path), "--levels", "4"],
                 ["refine", case, "--levels", "1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("gridflow: error:") and err.count("\n") == 1, err
    assert not (tmp_path / "out.h5").exists()
    assert main(["refine", _write_case(tmp_path, cells=100), "--levels", "2"]) == 2
    assert "divisible by 3" in capsys.readouterr().err


def test_resume_recomputes_the_estimate(tmp_path, monkeypatch):
    case, _ = _case(1, 90, "wfr")
    case["output"]["error_estimate"] = True
    whole = run(case, output=tmp_path / "whole.h5")
    path = tmp_path / "cut.h5"
    original = TrajectoryWriter.write_frame

    def write_frame(self, **kw):
        if self.frames_written == 2:
            raise KeyboardInterrupt
        original(self, **kw)

    with monkeypatch.context() as m:
        m.setattr(TrajectoryWriter, "write_frame", write_frame)
        with pytest.raises(KeyboardInterrupt):
            run(case, output=path)
    assert len(open_trajectory(path).time) == 2
    run(case, output=path, resume=True)
    ref, tr = open_trajectory(whole), open_trajectory(path)
    assert tr.status == "complete" and len(tr.time) == len(ref.time)
    np.testing.assert_allclose(tr.extra["error_estimate"], ref.extra["error_estimate"], rtol=1e-6)


def test_compare_notes_a_reference_error_near_the_noise_floor(tmp_path, capsys):
    """A coarse grid (error estimate ~1e-3) against 1e5 exact samples (TV floor ~1e-3): a note; a
    trajectory without the estimate: none."""
    case = _write_case(tmp_path, cells=45)
    out = tmp_path / "coarse.h5"
    assert main(["run", case, "--error-estimate", "-o", str(out), "-q"]) == 0
    assert main(["sample", str(out), "--time", "1", "-n", "100000", "-o", str(tmp_path / "s.npz")]) == 0
    capsys.readouterr()
    assert main(["compare", str(out), str(tmp_path / "s.npz"), "--time", "1", "--json"]) == 0
    notes = json.loads(capsys.readouterr().out).get("notes", [])
    assert any("estimated L1 error" in n for n in notes), notes
    plain = tmp_path / "plain.h5"
    assert main(["run", case, "-o", str(plain), "-q"]) == 0
    assert main(["compare", str(plain), str(tmp_path / "s.npz"), "--time", "1", "--json"]) == 0
    assert not any("estimated L1 error" in n for n in json.loads(capsys.readouterr().out).get("notes", []))
