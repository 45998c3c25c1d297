"""Run a resolved case: problem -> stepper -> frames -> trajectory file (the `gridflow run` verb)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gridflow.errors import InputError
from gridflow.problem import Problem
from gridflow.solver import Frame, save_times, simulate
from gridflow.stepper import SCHEME


def _problem(case: Mapping) -> Problem:
    problem = Problem.from_case(case)
    if problem.flow == "path":
        raise InputError(
            "The `path` flow is not available in this version of gridflow yet; choose flow.kind = "
            "\"fokker-planck\", \"fisher-rao\" or \"wfr\"."
        )
    return problem


def solve(case: Mapping) -> list[Frame]:
    """Solve a resolved case in memory and return its frames (no file is written)."""
    t = case["time"]
    problem = _problem(case)
    return list(simulate(problem, times=save_times(t), tolerance=t.get("tolerance", 1e-7),
                         max_step=t.get("max_step"), initial_step=t.get("initial_step")))


def run(case: Mapping, *, output: str | os.PathLike | None = None, progress: bool = False) -> Path:
    """Solve a resolved case and write its trajectory file; return the file's path.

    ``output`` overrides ``[output] path``.  With ``progress`` a progress bar (tqdm) is shown
    on stderr.  The file's ``status`` is ``complete`` on success, ``failed`` or
    ``interrupted`` otherwise (frames written so far stay readable).
    """
    from gridflow.case import dumps_case
    from gridflow.trajectory import TrajectoryWriter

    path = Path(output if output is not None else case["output"]["path"])
    problem = _problem(case)
    t = case["time"]
    times = save_times(t)
    attrs = {
        "case": dumps_case(case),
        "flow": problem.flow,
        "scheme": SCHEME,
        "boundary": problem.grid.boundary,
        "tolerance": float(t.get("tolerance", 1e-7)),
    }
    if problem.warnings:
        attrs["warnings"] = "; ".join(problem.warnings)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=float(times[-1]), unit="t", unit_scale=False, desc=case.get("name", "gridflow"),
                   bar_format="{l_bar}{bar}| t={n:.4g}/{total:.4g} [{elapsed}<{remaining}]")

    def on_step(state) -> None:
        if bar is not None:
            bar.n = state.t
            bar.refresh()

    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    with TrajectoryWriter(path, grid=problem.grid, log_target=problem.path.log_target,
                          log_reference=problem.path.log_reference, attrs=attrs) as writer:
        total_steps = 0
        for frame in simulate(problem, times=times, tolerance=float(t.get("tolerance", 1e-7)),
                              max_step=t.get("max_step"), initial_step=t.get("initial_step"),
                              on_step=on_step):
            d = frame.diagnostics
            total_steps += frame.steps
            writer.write_frame(time=frame.time, density=frame.density, lambda_=frame.lam, mass=d["mass"],
                               kl=d["kl"], kl_tempered=d["kl_tempered"],
                               fisher_information=d["fisher_information"], mean=d["mean"],
                               covariance=d["covariance"],
                               extra={"steps": float(frame.steps), "rejected_steps": float(frame.rejected)})
        writer.set_attrs(total_steps=int(total_steps))
    if bar is not None:
        bar.close()
    return path
