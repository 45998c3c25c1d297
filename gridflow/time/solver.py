"""Drive a problem through its save times and produce frames (knows nothing about files)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gridflow.analysis.diagnostics import frame_diagnostics
from gridflow.core.problem import Problem
from gridflow.io.case_schema import DEFAULT_TOLERANCE
from gridflow.time.stepper import State, Stepper


@dataclass
class Frame:
    """One saved state: time, log density, lambda, diagnostics and step counts since the last frame."""

    time: float
    log_rho: np.ndarray
    lam: float
    diagnostics: dict
    steps: int
    rejected: int
    velocity: np.ndarray | None = None
    kinetic_energy: float | None = None

    @property
    def density(self) -> np.ndarray:
        with np.errstate(under="ignore"):
            return np.exp(self.log_rho)


def save_times(time_table: Mapping) -> np.ndarray:
    """Saved times of a resolved ``[time]`` table.

    ``save_every = d`` gives 0, d, 2d, ... (k d computed exactly, no accumulation) and ``end``;
    ``save_times`` gives the listed times, with ``end`` appended when missing.
    """
    end = float(time_table["end"])
    if "save_times" in time_table:
        times = [float(t) for t in time_table["save_times"]]
    else:
        every = float(time_table.get("save_every", end / 100.0))
        n = int(np.floor(end / every * (1 + 1e-12)))
        times = [k * every for k in range(n + 1)]
    if abs(end - times[-1]) <= 1e-12 * max(1.0, end):
        times[-1] = end
    elif times[-1] < end:
        times.append(end)
    return np.asarray(times)


def simulate(problem: Problem, *, times: Sequence[float], tolerance: float = DEFAULT_TOLERANCE,
             max_step: float | None = None, initial_step: float | None = None,
             state: State | None = None, on_step: Callable[[State], None] | None = None) -> Iterator[Frame]:
    """Yield a :class:`Frame` at each of ``times`` (increasing, >= the start time).

    ``state`` resumes from a given state instead of the initial density.
    """
    stepper = Stepper(problem, tolerance=tolerance, max_step=max_step, initial_step=initial_step)
    state = stepper.initial_state() if state is None else state
    accepted, rejected = 0, 0
    for t in times:
        state = stepper.advance(state, float(t), on_step=on_step)
        log_tempered = problem.path.log_density(state.lam)
        diag = frame_diagnostics(state.log_rho, problem.grid, log_target=problem.path.log_target,
                                 log_tempered=log_tempered, compiled_kernels=stepper.kernels.compiled)
        yield Frame(state.t, state.log_rho, state.lam, diag,
                    stepper.stats.accepted - accepted, stepper.stats.rejected - rejected)
        accepted, rejected = stepper.stats.accepted, stepper.stats.rejected


def path_lambda(problem: Problem, times: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """lambda(t) and d lambda/dt at ``times`` for the prescribed path of a ``path`` flow.

    Explicit schedules are evaluated directly.  An adaptive schedule is the scalar ODE
    d lambda/dt = g(lambda, Var_{pi_lambda} T) (on the path rho_t = pi_lambda, so both variance
    choices coincide and the correction term vanishes), solved with rtol 1e-10.
    """
    sched = problem.schedule
    times = np.asarray(times, dtype=float)
    if not sched.adaptive:
        return (np.array([sched.value(t) for t in times]), np.array([sched.derivative(t) for t in times]))
    from scipy.integrate import solve_ivp

    def rate(lam: float) -> float:
        lam = min(max(lam, 0.0), 1.0)
        _, var = problem.path.tilt_moments(problem.path.log_density(lam))
        return sched.rate(lam, var=var)

    def reached_one(t, y):
        return y[0] - 1.0

    reached_one.terminal = True
    sol = solve_ivp(lambda t, y: [rate(y[0])], (0.0, float(times.max())), [0.0], rtol=1e-10, atol=1e-12,
                    dense_output=True, events=reached_one)
    t_hit = sol.t_events[0][0] if len(sol.t_events[0]) else np.inf
    lam = np.array([1.0 if t >= t_hit else min(1.0, float(sol.sol(t)[0])) for t in times])
    return lam, np.array([rate(v) if v < 1.0 else 0.0 for v in lam])


def simulate_path(problem: Problem, *, times: Sequence[float]) -> Iterator[Frame]:
    """Frames of the prescribed path rho_t = pi_{lambda(t)} with its minimal-kinetic-energy velocity."""
    from gridflow.flows.path import path_velocity

    lams, rates = path_lambda(problem, times)
    for t, lam, rate in zip(times, lams, rates):
        log_rho = problem.path.log_density(float(lam))
        diag = frame_diagnostics(log_rho, problem.grid, log_target=problem.path.log_target, log_tempered=log_rho)
        pv = path_velocity(problem.path, float(lam), float(rate))
        yield Frame(float(t), log_rho, float(lam), diag, 0, 0, velocity=pv.velocity,
                    kinetic_energy=pv.kinetic_energy)
