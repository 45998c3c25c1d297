"""Drive a problem through its save times and produce frames (knows nothing about files)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gridflow.diagnostics import frame_diagnostics
from gridflow.problem import Problem
from gridflow.stepper import State, Stepper


@dataclass
class Frame:
    """One saved state: time, log density, lambda, diagnostics and step counts since the last frame."""

    time: float
    log_rho: np.ndarray
    lam: float
    diagnostics: dict
    steps: int
    rejected: int

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


def simulate(problem: Problem, *, times: Sequence[float], tolerance: float = 1e-7,
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
                                 log_tempered=log_tempered)
        yield Frame(state.t, state.log_rho, state.lam, diag,
                    stepper.stats.accepted - accepted, stepper.stats.rejected - rejected)
        accepted, rejected = stepper.stats.accepted, stepper.stats.rejected
