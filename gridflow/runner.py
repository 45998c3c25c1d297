"""Run a resolved case: problem -> stepper -> frames -> trajectory file (the `gridflow run` verb)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from gridflow.problem import Problem
from gridflow.solver import Frame, save_times, simulate, simulate_path
from gridflow.stepper import SCHEME


def _frames(problem: Problem, time_table: Mapping, *, on_step=None) -> Iterator[Frame]:
    times = save_times(time_table)
    if problem.flow == "path":
        return simulate_path(problem, times=times)
    return simulate(problem, times=times, tolerance=float(time_table.get("tolerance", 1e-7)),
                    max_step=time_table.get("max_step"), initial_step=time_table.get("initial_step"),
                    on_step=on_step)


def solve(case: Mapping) -> list[Frame]:
    """Solve a resolved case in memory and return its frames (no file is written)."""
    return list(_frames(Problem.from_case(case), case["time"]))


def run(case: Mapping, *, output: str | os.PathLike | None = None, progress: bool = False) -> Path:
    """Solve a resolved case and write its trajectory file; return the file's path.

    ``output`` overrides ``[output] path``.  With ``progress`` a progress bar (tqdm) is shown
    on stderr.  The file's ``status`` is ``complete`` on success, ``failed`` or
    ``interrupted`` otherwise (frames written so far stay readable).
    """
    from gridflow.case import dumps_case
    from gridflow.trajectory import TrajectoryWriter

    path = Path(output if output is not None else case["output"]["path"])
    problem = Problem.from_case(case)
    t = case["time"]
    end = float(save_times(t)[-1])
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

        bar = tqdm(total=end, unit="t", unit_scale=False, desc=case.get("name", "gridflow"),
                   bar_format="{l_bar}{bar}| t={n:.4g}/{total:.4g} [{elapsed}<{remaining}]")

    def on_step(state) -> None:
        if bar is not None:
            bar.n = state.t
            bar.refresh()

    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    path_flow = problem.flow == "path"
    with TrajectoryWriter(path, grid=problem.grid, log_target=problem.path.log_target,
                          log_reference=problem.path.log_reference, attrs=attrs, path_flow=path_flow) as writer:
        total_steps = 0
        for frame in _frames(problem, t, on_step=on_step):
            d = frame.diagnostics
            total_steps += frame.steps
            writer.write_frame(time=frame.time, density=frame.density, lambda_=frame.lam, mass=d["mass"],
                               kl=d["kl"], kl_tempered=d["kl_tempered"],
                               fisher_information=d["fisher_information"], mean=d["mean"],
                               covariance=d["covariance"], velocity=frame.velocity,
                               kinetic_energy=frame.kinetic_energy,
                               extra={"steps": float(frame.steps), "rejected_steps": float(frame.rejected)})
            if bar is not None:
                bar.n = frame.time
                bar.refresh()
        writer.set_attrs(total_steps=int(total_steps))
    if bar is not None:
        bar.close()
    return path
