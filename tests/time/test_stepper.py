"""Structure of the time integration: mass, positivity, exact equilibrium, monotone KL
for a fixed target under each flow, also at large steps (acceptance 4 of the core)."""

from __future__ import annotations

import numpy as np
import pytest

from gridflow.analysis.diagnostics import kl_divergence, mass
from gridflow.core.problem import Problem
from gridflow.time.stepper import Stepper
from tests.reference import gaussian, make_case

FLOWS = ["fokker-planck", "fisher-rao", "wfr"]


def bimodal_case(dim: int, flow: str, **kw) -> dict:
    if dim == 1:
        return make_case(lower=[-10.0], upper=[14.0], cells=[480], flow=flow,
                         initial=gaussian([-3.0], [[0.3]]),
                         target={"kind": "mixture", "weights": [0.5, 0.5],
                                 "components": [gaussian([0.0], [[1.0]]), gaussian([6.0], [[0.5]])]}, **kw)
    return make_case(lower=[-8.0, -8.0], upper=[8.0, 8.0], cells=[64, 56], flow=flow,
                     initial=gaussian([-3.0, 1.0], [[0.3, 0.1], [0.1, 0.3]]),
                     target={"kind": "mixture", "weights": [0.3, 0.7],
                             "components": [gaussian([0.0, 0.0], [[1.0, 0.5], [0.5, 1.0]]),
                                            gaussian([4.0, 3.0], [[0.5, 0.0], [0.0, 1.0]])]}, **kw)


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("dt", [0.01, 0.5, 5.0])
def test_fixed_steps_positive_conservative_kl_monotone(dim, flow, dt):
    problem = Problem.from_case(bimodal_case(dim, flow))
    stepper = Stepper(problem)
    state = stepper.initial_state()
    log_pi = problem.path.log_target
    kl = kl_divergence(state.log_rho, log_pi, problem.grid)
    for _ in range(20):
        state = stepper.step(state, dt)
        assert np.all(np.isfinite(state.log_rho))          # positive in every cell (no -inf, no NaN)
        assert abs(mass(state.log_rho, problem.grid) - 1.0) <= 1e-12
        new = kl_divergence(state.log_rho, log_pi, problem.grid)
        assert new <= kl + 1e-13, (new, kl)
        kl = new


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("tolerance", [1e-7, 1e-2])
def test_adaptive_run_conserves_mass_and_decreases_kl(dim, flow, tolerance):
    problem = Problem.from_case(bimodal_case(dim, flow))
    stepper = Stepper(problem, tolerance=tolerance)
    kls = [kl_divergence(problem.log_initial, problem.path.log_target, problem.grid)]
    masses = []

    def record(state):   # called with every accepted state
        assert np.all(np.isfinite(state.log_rho))
        kls.append(kl_divergence(state.log_rho, problem.path.log_target, problem.grid))
        masses.append(mass(state.log_rho, problem.grid))

    state = stepper.advance(stepper.initial_state(), 20.0, on_step=record)
    assert state.t == 20.0
    assert np.all(np.diff(kls) <= 1e-13)
    assert max(abs(m - 1.0) for m in masses) <= 1e-12


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("flow", FLOWS)
def test_target_is_an_exact_fixed_point(dim, flow):
    case = bimodal_case(dim, flow)
    case["initial"] = case["target"]
    problem = Problem.from_case(case)
    stepper = Stepper(problem)
    state = stepper.advance(stepper.initial_state(), 3.0)
    np.testing.assert_allclose(np.exp(state.log_rho), np.exp(problem.path.log_target), rtol=1e-9, atol=1e-15)


def test_save_times_are_hit_exactly_and_breakpoints_respected():
    case = bimodal_case(1, "wfr", schedule={"kind": "linear", "duration": 0.7})
    problem = Problem.from_case(case)
    stepper = Stepper(problem, keep_history=True)
    state = stepper.initial_state()
    for t in (0.1, 0.35, 1.0 / 3.0 + 1.0):
        state = stepper.advance(state, t)
        assert state.t == t
    ends = np.cumsum([dt for _, dt, _ in stepper.stats.steps])
    starts = ends - [dt for _, dt, _ in stepper.stats.steps]
    assert not np.any((starts < 0.7 - 1e-12) & (ends > 0.7 + 1e-12))   # no step straddles the kink
    assert state.lam == 1.0


def test_global_time_error_tracks_the_tolerance():
    """The step-doubling controller delivers a global time error of the order of the tolerance."""
    case = bimodal_case(1, "wfr", schedule={"kind": "exponential", "rate": 1.0}, end=2.0)
    problem = Problem.from_case(case)
    start = Stepper(problem).initial_state()
    ref = Stepper(problem, tolerance=1e-10).advance(start, 2.0)
    for tol in (1e-5, 1e-7):
        st = Stepper(problem, tolerance=tol).advance(start, 2.0)
        err = np.abs(np.exp(st.log_rho) - np.exp(ref.log_rho)).sum() * problem.grid.cell_volume
        assert tol / 100 <= err <= 10 * tol, (tol, err)


def test_tempering_ramp_keeps_few_operators_and_the_kl_guard_reuses_its_kl(monkeypatch):
    # During a linear ramp every step brings three new lambdas: the operator cache stays bounded
    # (memory: each entry holds four arrays of the grid's size).  After the ramp the target is fixed:
    # the KL guard computes the KL of a candidate only until one passes, and the accepted one's KL is the
    # next step's starting KL, so only the first fixed state adds one (before: 2 per try + 1 per step).
    import gridflow.time.stepper as stepper_module
    from gridflow.time.stepper import RATES_CACHE_SIZE

    case = bimodal_case(2, "wfr", schedule={"kind": "linear", "duration": 0.5}, tolerance=1e-4)
    problem = Problem.from_case(case)
    stepper = Stepper(problem)
    sizes = []
    state = stepper.advance(stepper.initial_state(), 0.5, on_step=lambda s: sizes.append(len(stepper._rates_cache)))
    assert max(sizes) <= RATES_CACHE_SIZE
    calls = []
    real_kl = stepper_module.kl_divergence
    monkeypatch.setattr(stepper_module, "kl_divergence", lambda *a, **kw: calls.append(1) or real_kl(*a, **kw))
    accepted = stepper.stats.accepted
    tries = stepper.stats.accepted + stepper.stats.rejected
    final = stepper.advance(state, 1.0)
    tries = stepper.stats.accepted + stepper.stats.rejected - tries
    # at most two candidates per try (extrapolated, then the plain half steps) and one starting KL
    assert stepper.stats.accepted - accepted >= 2
    assert len(calls) <= 2 * tries + 1
    assert np.isfinite(final.log_rho).all()
