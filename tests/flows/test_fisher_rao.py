"""The Fisher–Rao flow on the grid against its closed form rho_t = pi_{J(t)} (docs/numerics.md, verification)."""

from __future__ import annotations

import numpy as np
import pytest

from gridflow.core.distributions import normalise
from gridflow.analysis.exact import fisher_rao_exponent
from gridflow.core.problem import Problem
from gridflow.core.schedule import schedule_from_table
from gridflow.time.solver import simulate
from tests.reference import gaussian, l1, make_case

SCHEDULES = [None, {"kind": "linear", "duration": 3.0}, {"kind": "exponential", "rate": 0.4},
             {"kind": "constant", "value": 0.6},
             {"kind": "table", "times": [0.0, 1.0, 2.5], "values": [0.0, 0.7, 1.0]}]


def mixture_target(dim):
    if dim == 1:
        return {"kind": "mixture", "weights": [0.2, 0.5, 0.3],
                "components": [gaussian([-4.0], [[0.5]]), gaussian([1.0], [[1.0]]), gaussian([7.0], [[0.3]])]}
    return {"kind": "mixture", "weights": [0.5, 0.5],
            "components": [gaussian([-3.0, 0.0], [[1.0, 0.4], [0.4, 0.8]]), gaussian([3.0, 2.0], [[0.5, 0.0], [0.0, 1.0]])]}


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_fisher_rao_closed_form_on_a_mixture(dim, schedule):
    if dim == 1:
        grid_kw = dict(lower=[-10.0], upper=[12.0], cells=[2200], initial=gaussian([0.0], [[2.0]]))
    else:
        grid_kw = dict(lower=[-8.0, -7.0], upper=[8.0, 8.0], cells=[160, 150],
                       initial=gaussian([0.0, 0.0], [[2.0, 0.0], [0.0, 2.0]]))
    times = [0.5, 1.7, 4.0]
    case = make_case(flow="fisher-rao", target=mixture_target(dim), schedule=schedule, end=4.0,
                     reaction=1.3, **grid_kw)
    problem = Problem.from_case(case)
    sched = schedule_from_table(schedule)
    J = fisher_rao_exponent(times, schedule=None if schedule is None else sched.value,
                            breakpoints=sched.breakpoints, reaction=1.3)
    for frame, j in zip(simulate(problem, times=times), J):
        exact = np.exp(normalise(problem.path.log_reference + j * problem.path.tilt, problem.grid))
        assert l1(frame.density, exact, problem.grid) <= 1e-6
