"""Tempering never speeds up the Fisher–Rao flow (docs/numerics.md, verification; Crucinio & Pathiraja):
with pi_0 = rho_0 the tempered run has rho_t = pi_{J(t)} with J(t) <= 1 - e^{-t}, and
KL(pi_J || pi) decreases in J, so its KL is never below the untempered run's."""

from __future__ import annotations

import numpy as np
import pytest

from gridflow.core.problem import Problem
from gridflow.time.solver import simulate
from tests.reference import gaussian, make_case

SCHEDULES = {
    "constant": {"kind": "constant", "value": 0.5},
    "linear": {"kind": "linear", "duration": 4.0},
    "exponential": {"kind": "exponential", "rate": 0.5},
    "table": {"kind": "table", "times": [0.0, 1.0, 3.0], "values": [0.0, 0.9, 1.0]},
    "adaptive-ess": {"kind": "adaptive", "rule": "ess"},
    "adaptive-gradient-flow": {"kind": "adaptive", "rule": "gradient-flow", "variance": "density"},
}


def _case(dim: int, schedule: dict | None) -> dict:
    if dim == 1:
        return make_case(lower=[-8.0], upper=[14.0], cells=[1100], flow="fisher-rao", end=8.0, save_every=0.25,
                         initial=gaussian([0.0], [[1.0]]), schedule=schedule,
                         target={"kind": "mixture", "weights": [0.5, 0.5],
                                 "components": [gaussian([0.0], [[1.0]]), gaussian([6.0], [[1.0]])]})
    return make_case(lower=[-7.0, -7.0], upper=[11.0, 11.0], cells=[90, 90], flow="fisher-rao", end=8.0,
                     save_every=0.25, initial=gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]), schedule=schedule,
                     target={"kind": "mixture", "weights": [0.5, 0.5],
                             "components": [gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]),
                                            gaussian([5.0, 4.0], [[1.0, 0.3], [0.3, 1.0]])]})


def _kl(case: dict) -> np.ndarray:
    problem = Problem.from_case(case)
    times = np.arange(0.0, 8.0 + 1e-9, 0.25)
    return np.array([f.diagnostics["kl"] for f in simulate(problem, times=times)])


@pytest.mark.parametrize("dim", [1, 2])
def test_tempering_never_speeds_up_fisher_rao(dim):
    plain = _kl(_case(dim, None))
    assert plain[-1] < 1e-3 * plain[0]              # the plain flow does converge
    for name, schedule in SCHEDULES.items():
        tempered = _kl(_case(dim, schedule))
        gap = tempered - plain
        assert np.all(gap >= -1e-12 * np.maximum(1.0, plain)), (name, gap.min())
        assert np.all(gap[1:] > 0.0), name           # and strictly slower after t = 0
