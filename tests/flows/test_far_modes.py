"""Mass that must appear in a far mode: the engine keeps log densities far below 1e-308 exactly.

Initial N(0, 1) (or N(0, I)), target ½N(0, 1) + ½N(m, 1): the initial log density at the far mode is
-m²/2 (-800 at m = 40, -1800 at m = 60).  Under Fisher–Rao with reference pi_0 = rho_0 the exact
solution is rho_t = pi_{J(t)} ∝ rho_0^{1-J} pi^J on the grid itself (the closed form of
docs/numerics.md, "Fisher–Rao: exact in log space"; :func:`gridflow.analysis.exact.fisher_rao_exponent`),
so the grid solution must match it to round-off at every saved time, also while the far mode's mass
is e^-700 and when it reaches one half.
"""

from __future__ import annotations

import numpy as np
import pytest

from gridflow.core.distributions import normalise
from gridflow.analysis.exact import fisher_rao_exponent
from gridflow.core.problem import Problem
from gridflow.core.schedule import schedule_from_table
from gridflow.time.solver import simulate
from gridflow.time.doubling import extrapolate, local_error
from gridflow.time.stepper import Stepper
from tests.reference import gaussian, l1, make_case

SCHEDULES = {"untempered": None, "linear": {"kind": "linear", "duration": 5.0},
             "exponential": {"kind": "exponential", "rate": 0.5}}
TIMES = [float(t) for t in range(1, 16)]


def far_case(dim: int, m: float, flow: str, schedule=None, cells=None) -> dict:
    if dim == 1:
        target = {"kind": "mixture", "weights": [0.5, 0.5],
                  "components": [gaussian([0.0], [[1.0]]), gaussian([m], [[1.0]])]}
        return make_case(lower=[-10.0], upper=[m + 10.0], cells=cells or [int(50 * (m + 20))], flow=flow,
                         initial=gaussian([0.0], [[1.0]]), target=target, schedule=schedule, end=15.0,
                         save_every=1.0)
    eye = [[1.0, 0.0], [0.0, 1.0]]
    target = {"kind": "mixture", "weights": [0.5, 0.5],
              "components": [gaussian([0.0, 0.0], eye), gaussian([m, m], eye)]}
    return make_case(lower=[-8.0, -8.0], upper=[m + 8.0, m + 8.0], cells=cells or [184, 184], flow=flow,
                     initial=gaussian([0.0, 0.0], eye), target=target, schedule=schedule, end=15.0, save_every=1.0)


def far_mass(problem: Problem, log_rho: np.ndarray, m: float) -> float:
    mask = problem.grid.coordinates[0] > m / 2
    with np.errstate(under="ignore"):
        return float(np.exp(log_rho[mask]).sum() * problem.grid.cell_volume)


@pytest.mark.parametrize("dim,m,bound", [(1, 40.0, 1e-6), (1, 60.0, 1e-6), (2, 30.0, 1e-5)])
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_fisher_rao_to_a_far_mode_matches_the_closed_form(dim, m, bound, schedule):
    table = SCHEDULES[schedule]
    problem = Problem.from_case(far_case(dim, m, "fisher-rao", table))
    sched = schedule_from_table(table)
    J = fisher_rao_exponent(TIMES, schedule=None if table is None else sched.value, breakpoints=sched.breakpoints)
    worst = 0.0
    for frame, j in zip(simulate(problem, times=TIMES), J):
        exact = normalise(problem.path.log_reference + j * problem.path.tilt, problem.grid)
        assert np.all(np.isfinite(frame.log_rho))             # no cell lost to underflow
        worst = max(worst, l1(frame.density, np.exp(exact), problem.grid))
        # the far mode's mass, including while it is below the floating-point range
        np.testing.assert_allclose(frame.log_rho, exact, rtol=0, atol=1e-9 * max(1.0, np.abs(exact).max()))
    assert worst <= bound
    if schedule == "untempered":   # J(15) = 1 - e^-15: half the mass is in the far mode
        assert far_mass(problem, frame.log_rho, m) > 0.49


def test_wfr_puts_half_the_mass_into_a_far_mode_in_1d():
    """WFR to ½N(0,1)+½N(40,1): the far mode receives its half (the FR part creates it; the old
    linear-density engine left it at 0.07 by t = 12 because cells below 1e-308 were lost)."""
    problem = Problem.from_case(far_case(1, 40.0, "wfr", cells=[2000]))
    frames = list(simulate(problem, times=[6.0, 15.0]))
    assert all(np.all(np.isfinite(f.log_rho)) for f in frames)
    assert abs(far_mass(problem, frames[-1].log_rho, 40.0) - 0.5) <= 1e-3
    assert frames[-1].diagnostics["kl"] <= 1e-6


def test_far_mode_tail_is_exact_below_the_floating_point_range():
    """A fixed-step Fokker–Planck step of a density shifted by e^-1500 equals the unshifted step
    shifted back (the step is linear): every cell, including those below e^-2000."""
    problem = Problem.from_case(far_case(1, 60.0, "fokker-planck", cells=[1600]))
    stepper = Stepper(problem)
    base = stepper.initial_state()
    shifted = type(base)(base.t, base.log_rho - 1500.0, base.lam)
    a = stepper.step(base, 0.05).log_rho
    b = stepper.step(shifted, 0.05).log_rho
    assert np.all(np.isfinite(b)) and b.min() < -2000.0
    np.testing.assert_allclose(b, a - 1500.0, rtol=0, atol=1e-8)


def test_extrapolation_in_log_space():
    rng = np.random.default_rng(3)
    half = np.log(rng.uniform(0.5, 1.5, 50)) - 900.0           # all cells far below 1e-308
    full = half + rng.normal(0.0, 1e-3, 50)
    ex = extrapolate(half, full)
    exact = np.log((4 * np.exp(half + 900.0) - np.exp(full + 900.0)) / 3.0) - 900.0
    np.testing.assert_allclose(ex, exact, rtol=0, atol=1e-12)
    assert extrapolate(half, half + np.log(5.0)) is None        # would be negative: refused
    empty = np.full(3, -np.inf)
    np.testing.assert_array_equal(extrapolate(empty, empty), empty)
    assert extrapolate(empty, np.zeros(3)) is None
    assert local_error(half, full, 1.0) == 0.0                  # below the range, as an L1 norm should
    assert local_error(np.log([0.5, 0.5]), np.log([0.25, 0.75]), 2.0) == pytest.approx(1.0)


def test_the_kl_guard_judges_the_accepted_state(monkeypatch):
    """A candidate that raises the KL to a fixed target is never accepted, even when it comes
    from extrapolation (the old guard looked at the unextrapolated state only)."""
    import gridflow.time.stepper as stepper_module
    from gridflow.analysis.diagnostics import kl_divergence

    case = far_case(1, 6.0, "fokker-planck", cells=[300])
    problem = Problem.from_case(case)
    x = problem.grid.coordinates[0]
    bad = normalise(-2.0 * (x + 9.0) ** 2, problem.grid)      # a state far from the target: higher KL
    assert kl_divergence(bad, problem.path.log_target, problem.grid) > 10.0

    real_compare = stepper_module.compare
    monkeypatch.setattr(stepper_module, "compare", lambda *args, **kw: (real_compare(*args, **kw)[0], bad))
    stepper = Stepper(problem, tolerance=1e-6)
    kls = [kl_divergence(problem.log_initial, problem.path.log_target, problem.grid)]

    def record(state):
        kls.append(kl_divergence(state.log_rho, problem.path.log_target, problem.grid))

    stepper.advance(stepper.initial_state(), 2.0, on_step=record)
    assert len(kls) > 5 and np.all(np.diff(kls) <= 1e-13)
    assert stepper.stats.extrapolated == 0
