"""Tempering schedules: values and the exact exponentially weighted integral of the FR step."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from gridflow.core.schedule import Adaptive, Untempered, schedule_from_table

TABLES = [
    None,
    {"kind": "constant", "value": 0.3},
    {"kind": "linear", "duration": 2.0},
    {"kind": "exponential", "rate": 0.7},
    {"kind": "exponential", "rate": 1.5},        # rate == reaction below: the degenerate closed form
    {"kind": "table", "times": [0.0, 0.5, 1.2, 3.0], "values": [0.0, 0.6, 0.4, 1.0]},
]


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("t,dt", [(0.0, 0.1), (0.3, 1.0), (1.0, 0.25), (0.4, 7.0), (5.0, 1e-6)])
@pytest.mark.parametrize("b", [0.2, 1.5])
def test_fr_weight_matches_quadrature(table, t, dt, b):
    sched = schedule_from_table(table)
    points = [p - t for p in sched.breakpoints if 0 < p - t < dt] or None
    exact, _ = quad(lambda s: b * np.exp(-b * (dt - s)) * sched.value(t + s), 0.0, dt, points=points,
                    epsabs=1e-15, epsrel=1e-13, limit=200)
    assert sched.fr_weight(t, dt, b) == pytest.approx(exact, rel=1e-11, abs=1e-16)


def test_values():
    assert Untempered().value(3.0) == 1.0
    lin = schedule_from_table({"kind": "linear", "duration": 4.0})
    assert [lin.value(t) for t in (0.0, 1.0, 4.0, 9.0)] == [0.0, 0.25, 1.0, 1.0]
    assert lin.breakpoints == (0.0, 4.0) and lin.is_fixed_after(4.0) and not lin.is_fixed_after(3.9)
    ex = schedule_from_table({"kind": "exponential", "rate": 0.5})
    assert ex.value(2.0) == pytest.approx(1 - np.exp(-1.0), rel=1e-15)
    tab = schedule_from_table({"kind": "table", "times": [1.0, 2.0], "values": [0.2, 0.8]})
    assert [tab.value(t) for t in (0.0, 1.5, 5.0)] == pytest.approx([0.2, 0.5, 0.8])


def test_adaptive_rates():
    for rule, expected in (("ess", 4.0 ** -0.5), ("constant-rate", 1 / (0.75 * 4.0)), ("gradient-flow", 0.75 * 4.0)):
        s = Adaptive(rule=rule)
        assert s.rate(0.25, var=4.0) == pytest.approx(expected)
        assert s.rate(1.0, var=4.0) == 0.0
    assert Adaptive(rule="ess", scale=2.0, correction=True).rate(0.0, var=4.0, mean_gap=0.5) == pytest.approx(1.5)


@pytest.mark.parametrize("table", TABLES[1:])
def test_derivative_matches_finite_differences(table):
    sched = schedule_from_table(table)
    for t in (0.05, 0.3, 0.9, 1.7, 2.6, 4.0):
        if any(abs(t - b) < 2e-6 for b in sched.breakpoints):
            continue
        fd = (sched.value(t + 1e-6) - sched.value(t - 1e-6)) / 2e-6
        assert sched.derivative(t) == pytest.approx(fd, rel=1e-6, abs=1e-8)
    lin = schedule_from_table({"kind": "linear", "duration": 2.0})
    assert lin.derivative(2.0) == 0.5 and lin.derivative(0.0) == 0.5 and lin.derivative(2.5) == 0.0


# --------------------------------------------------------------------------- expression schedules

def _fr_case(schedule: dict, flow: str = "fisher-rao") -> dict:
    from gridflow.io.case import parse_case

    return parse_case({"name": "expr", "grid": {"lower": [-8.0], "upper": [12.0], "cells": [500]},
                       "initial": {"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]},
                       "target": {"kind": "mixture", "weights": [0.5, 0.5],
                                  "components": [{"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]},
                                                 {"kind": "gaussian", "mean": [4.0], "cov": [[1.0]]}]},
                       "tempering": {"schedule": schedule}, "flow": {"kind": flow},
                       "time": {"end": 3.0, "save_times": [0.0, 0.5, 1.5, 3.0], "tolerance": 1e-8}})


def test_expression_schedule_matches_the_closed_form_exponential():
    from gridflow.io.runner import solve

    for flow in ("fisher-rao", "wfr"):
        a = solve(_fr_case({"kind": "expression", "lambda": "1 - exp(-0.5*t)"}, flow))
        b = solve(_fr_case({"kind": "exponential", "rate": 0.5}, flow))
        for fa, fb in zip(a, b):
            assert fa.lam == pytest.approx(fb.lam, abs=1e-15)
            # same steps, FR weights equal to ~1e-16 (quadrature vs closed form)
            assert np.abs(fa.density - fb.density).sum() * 0.04 <= 1e-12


def test_fisher_rao_with_the_hyperbolic_schedule_is_exact():
    """lambda = 1 - 1/(2 + t/0.3) (Crucinio & Pathiraja): rho_t ∝ rho_0^(1-J) pi^J, J = ∫ e^{-(t-s)} lambda(s) ds."""
    from scipy.integrate import quad

    from gridflow.core.problem import Problem
    from gridflow.io.runner import solve

    case = _fr_case({"kind": "expression", "lambda": "1 - 1/(2 + t/0.3)"})
    problem = Problem.from_case(case)
    for frame in solve(case):
        t = frame.time
        j = quad(lambda s: np.exp(-(t - s)) * (1 - 1 / (2 + s / 0.3)), 0.0, t, epsabs=1e-15)[0]
        log_exact = (1 - j) * problem.log_initial + j * problem.path.log_target
        exact = np.exp(log_exact - log_exact.max())
        exact /= exact.sum() * problem.grid.cell_volume
        assert np.abs(frame.density - exact).sum() * problem.grid.cell_volume <= 1e-12
        assert frame.lam == pytest.approx(1 - 1 / (2 + t / 0.3), abs=1e-15)


def test_expression_schedules_are_validated():
    from gridflow.errors import CaseError, ExpressionError

    with pytest.raises(ExpressionError, match="tempering.schedule.lambda"):
        _fr_case({"kind": "expression", "lambda": "1 - exp(-x)"})
    with pytest.raises(CaseError, match=r"outside \[0, 1\]"):
        _fr_case({"kind": "expression", "lambda": "t/2"})          # exceeds 1 after t = 2
    with pytest.raises(CaseError, match=r"outside \[0, 1\]"):
        _fr_case({"kind": "expression", "lambda": "log(t)"})       # -inf at t = 0
