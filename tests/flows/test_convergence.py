"""Acceptance: Gaussian exact solutions (docs/numerics.md, verification) for W, FR and WFR, untempered and
tempered (linear, exponential), in 1D and 2D: L1 error bounds and the measured spatial order."""

from __future__ import annotations

import numpy as np
import pytest

from gridflow.analysis.exact import gaussian_flow_moments
from gridflow.core.problem import Problem
from gridflow.core.schedule import schedule_from_table
from gridflow.time.solver import simulate
from tests.reference import gaussian, gaussian_cell_averages, l1, make_case

FLOWS = {"fokker-planck": (1.0, 0.0), "fisher-rao": (0.0, 1.0), "wfr": (1.0, 1.0)}
SCHEDULES = {
    "untempered": None,
    "linear": {"kind": "linear", "duration": 1.5},
    "exponential": {"kind": "exponential", "rate": 1.0},
}

# 1D: mu0 = pi0 = N(0, 1), pi = N(1, 2); box of +-8 standard deviations; t = 2
M0_1, C0_1, MT_1, CT_1, END_1 = [0.0], [[1.0]], [1.0], [[2.0]], 2.0
# 2D: correlated target
M0_2, C0_2 = [0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]
MT_2, CT_2 = [1.0, -0.5], [[1.5, 0.6], [0.6, 1.0]]
END_2 = 1.0


def _run(dim: int, h: float, flow: str, schedule: dict | None, tolerance: float):
    if dim == 1:
        lower, upper, m0, c0, mt, ct, end = [-11.5], [12.5], M0_1, C0_1, MT_1, CT_1, END_1
    else:
        lower, upper, m0, c0, mt, ct, end = [-6.5, -6.5], [7.5, 5.5], M0_2, C0_2, MT_2, CT_2, END_2
    cells = [int(round((u - l) / h)) for l, u in zip(lower, upper)]
    case = make_case(lower=lower, upper=upper, cells=cells, initial=gaussian(m0, c0), target=gaussian(mt, ct),
                     flow=flow, schedule=schedule, end=end, tolerance=tolerance)
    problem = Problem.from_case(case)
    frame = list(simulate(problem, times=[end], tolerance=tolerance))[-1]
    sched = schedule_from_table(schedule)
    a, b = FLOWS[flow]
    means, covs = gaussian_flow_moments([end], mean0=m0, cov0=c0, target_mean=mt, target_cov=ct,
                                        schedule=None if schedule is None else sched.value,
                                        breakpoints=sched.breakpoints, diffusion=a, reaction=b)
    exact = gaussian_cell_averages(problem.grid, means[-1], covs[-1])
    return l1(frame.density, exact, problem.grid)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("flow", list(FLOWS))
def test_gaussian_1d_error_and_order(flow, schedule):
    coarse = _run(1, 0.02, flow, SCHEDULES[schedule], 1e-7)
    fine = _run(1, 0.01, flow, SCHEDULES[schedule], 1e-7)
    order = np.log2(coarse / fine)
    assert fine <= 4e-5, (fine, coarse)
    assert 1.8 <= order <= 2.3, (order, coarse, fine)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("flow", list(FLOWS))
def test_gaussian_2d_error_and_order(flow, schedule):
    coarse = _run(2, 0.1, flow, SCHEDULES[schedule], 1e-6)
    fine = _run(2, 0.05, flow, SCHEDULES[schedule], 1e-6)
    order = np.log2(coarse / fine)
    assert fine <= 2e-3, (fine, coarse)
    assert 1.8 <= order <= 2.3, (order, coarse, fine)


@pytest.mark.parametrize("flow", ["fokker-planck", "wfr"])
def test_time_error_at_default_tolerance_is_far_below_spatial_error(flow):
    """At the default tolerance 1e-7 the global time error stays below the tolerance itself
    (measured 0.5-0.9 x tolerance) and below 5% of the spatial error at h = 0.01 (measured 1-2%)."""
    schedule = SCHEDULES["linear"]
    lower, upper = [-11.5], [12.5]
    case = make_case(lower=lower, upper=upper, cells=[2400], initial=gaussian(M0_1, C0_1),
                     target=gaussian(MT_1, CT_1), flow=flow, schedule=schedule, end=END_1)
    problem = Problem.from_case(case)
    default = list(simulate(problem, times=[END_1], tolerance=1e-7))[-1].density
    reference = list(simulate(problem, times=[END_1], tolerance=1e-11))[-1].density
    time_error = l1(default, reference, problem.grid)
    spatial_error = _run(1, 0.01, flow, schedule, 1e-11)
    assert time_error <= 1e-7, time_error
    assert time_error <= 0.05 * spatial_error, (time_error, spatial_error)
