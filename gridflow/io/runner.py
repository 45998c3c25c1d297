"""Run a resolved case: problem -> stepper -> frames -> trajectory file (the `gridflow run` verb)."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from contextlib import contextmanager
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gridflow import interrupts
from gridflow.errors import InputError, TrajectoryFileError
from gridflow.core.grid import Grid
from gridflow.core.problem import Problem
from gridflow.io.case_schema import DEFAULT_TOLERANCE
from gridflow.time.solver import Frame, save_times, simulate, simulate_path
from gridflow.time.stepper import State, scheme_description


def _frames(problem: Problem, time_table: Mapping, *, on_step=None, times=None,
            state: State | None = None) -> Iterator[Frame]:
    times = save_times(time_table) if times is None else times
    if problem.flow == "path":
        return simulate_path(problem, times=times)
    return simulate(problem, times=times, tolerance=float(time_table.get("tolerance", DEFAULT_TOLERANCE)),
                    max_step=time_table.get("max_step"), initial_step=time_table.get("initial_step"),
                    state=state, on_step=on_step)


def _flatten(table: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _case_differences(old_text: str, case: Mapping, *, path: Path | None = None) -> list[str]:
    """Dotted keys whose values differ between a stored case (TOML text) and ``case``;
    :class:`TrajectoryFileError` if the stored text is not TOML."""
    import tomllib

    from gridflow.io.case import dumps_case

    try:
        old = _flatten(tomllib.loads(old_text))
    except tomllib.TOMLDecodeError as exc:
        raise TrajectoryFileError(
            f"Cannot resume {path}: its 'case' attribute is not a readable case ({exc}), so it cannot be "
            "checked against this case. Run without --resume to compute the trajectory afresh.") from exc
    new = _flatten(tomllib.loads(dumps_case(case)))
    return sorted(k for k in old.keys() | new.keys() if k != "output.path" and old.get(k) != new.get(k))


def _check_same_case(path: Path, attrs: Mapping, case: Mapping) -> None:
    """:class:`InputError` naming the differing keys if the file at ``path`` was written by another case."""
    diff = _case_differences(str(attrs.get("case", "")), case, path=path)
    if diff:
        raise InputError(
            f"Cannot resume {path}: it was written by a different case (differing keys: {', '.join(diff)}). "
            "Resume with the same case file and --set options, or run without --resume to start afresh.")


def _damaged(path: Path, k: int, t: float, problem: str) -> TrajectoryFileError:
    return TrajectoryFileError(
        f"Cannot resume {path}: frame {k} (t = {t:.10g}) {problem}, so the file is damaged. Run without "
        "--resume to compute the trajectory afresh (this replaces the file).")


def _check_resumable(old, *, grid: Grid, times: np.ndarray) -> None:
    """Refuse (:class:`TrajectoryFileError` naming the frame) a file that --resume cannot trust: a
    grid other than ``grid``, times not strictly increasing or not among the save ``times`` (so
    never past the end), a frame whose density is not finite, negative, or of mass not 1, whose
    ``log_density`` is NaN, +inf or disagrees with ``density``, or whose lambda is outside [0, 1]."""
    from gridflow.io.trajectory_damage import MASS_TOLERANCE   # h5py: not needed by solve()

    path = Path(old.path)
    stored = [old.x_bnds] if old.y_bnds is None else [old.x_bnds, old.y_bnds]
    same = len(stored) == grid.dim and all(
        b.shape == grid.bounds(k).shape and np.allclose(b, grid.bounds(k), rtol=1e-12, atol=0)
        for k, b in enumerate(stored))
    if not same or str(old.attrs.get("boundary", grid.boundary)) != grid.boundary:
        raise TrajectoryFileError(
            f"Cannot resume {path}: its grid ({' x '.join(str(len(b)) for b in stored)} cells, "
            f"box {[float(b[0, 0]) for b in stored]} .. {[float(b[-1, 1]) for b in stored]}) is not the case's "
            f"({' x '.join(map(str, grid.cells))} cells, box {list(grid.lower)} .. {list(grid.upper)}). "
            "Resume with the case that wrote the file, or run without --resume to start afresh.")
    last = -np.inf
    vol = grid.cell_volume
    for k, t in enumerate(np.asarray(old.time, dtype=float)):
        if not np.isfinite(t) or t <= last:
            raise _damaged(path, k, t, f"has a time that is not finite or not after the previous frame's "
                           f"({last:.10g})")
        if not np.any(np.abs(times - t) <= 1e-9 * max(1.0, abs(t))):
            where = "after the end" if t > times[-1] else "not one of the case's save times"
            raise _damaged(path, k, t, f"has a time {where} (end = {times[-1]:.10g})")
        last = t
        rho = np.asarray(old.density[k])
        if not np.all(np.isfinite(rho)):
            raise _damaged(path, k, t, "has a density that is not finite (NaN or inf)")
        if np.any(rho < 0):
            raise _damaged(path, k, t, f"has a negative density (min {float(rho.min()):.3g})")
        mass = float(rho.sum() * vol)
        if not abs(mass - 1.0) <= MASS_TOLERANCE:
            raise _damaged(path, k, t, f"has mass {mass:.12g}, not 1")
        if old.log_density is not None:
            ld = np.asarray(old.log_density[k])
            if np.isnan(ld).any() or np.isposinf(ld).any():
                raise _damaged(path, k, t, "has a log_density that is NaN or +inf")
            with np.errstate(under="ignore"):
                if not np.allclose(np.exp(ld), rho, rtol=1e-9, atol=1e-300):
                    raise _damaged(path, k, t, "has a log_density that disagrees with its density")
        lam = float(old.lambda_[k])
        if not 0.0 <= lam <= 1.0:
            raise _damaged(path, k, t, f"has lambda = {lam:g}, outside [0, 1]")


def _resume_point(old, case: Mapping, *, grid: Grid | None = None,
                  times: np.ndarray | None = None) -> tuple[list[dict], State] | None:
    """Frames of the interrupted trajectory ``old`` and the state to continue from.

    ``None`` when the file holds no frames.  The frames are first checked
    (:func:`_check_resumable`, against ``grid`` and the save ``times`` of ``case`` unless given).
    The state is the last saved frame exactly: t,
    lambda and its ``log_density`` (in files written before ``log_density`` was stored, the log
    of ``density``, cells that underflowed to 0 restarting at log 2.2e-308).  :class:`InputError`
    if ``old`` was written by another case.
    """
    _check_same_case(Path(old.path), old.attrs, case)
    if not len(old.time):
        return None
    _check_resumable(old, grid=Problem.from_case(case).grid if grid is None else grid,
                     times=save_times(case["time"]) if times is None else np.asarray(times, dtype=float))
    frames = []
    for k in range(len(old.time)):
        frame = dict(time=float(old.time[k]), density=old.density[k], lambda_=float(old.lambda_[k]),
                     mass=float(old.mass[k]), kl=float(old.kl[k]), kl_tempered=float(old.kl_tempered[k]),
                     fisher_information=float(old.fisher_information[k]), mean=old.mean[k],
                     covariance=old.covariance[k],
                     extra={name: float(v[k]) for name, v in old.extra.items() if np.isfinite(v[k])})
        if old.log_density is not None:
            frame.update(log_density=old.log_density[k])
        if old.velocity is not None:
            frame.update(velocity=old.velocity[k])
        if old.kinetic_energy is not None:
            frame.update(kinetic_energy=float(old.kinetic_energy[k]))
        frames.append(frame)
    if old.log_density is not None:
        log_rho = np.array(old.log_density[-1], dtype=np.float64)
    else:  # a file written before log_density was stored
        log_rho = np.log(np.maximum(old.density[-1], np.finfo(float).tiny))
    state = State(float(old.time[-1]), log_rho, float(old.lambda_[-1]))
    return frames, state


def resume_verdict(old) -> tuple[bool, str]:
    """Whether ``gridflow run CASE --resume`` with the case stored in trajectory ``old`` would
    continue it, and why: ``(True, "continues from frame k (t = ...)")``, ``(True, ...)`` for a
    file with no frames (computed from the start) or a complete one (nothing to do), or
    ``(False, reason)`` with the reason --resume would give for refusing it."""
    from gridflow.io.case import parse_case
    from gridflow.errors import GridflowError

    if old.status == "complete":
        return True, "the run is complete: --resume leaves it as it is"
    path = Path(old.path)
    try:
        text = str(old.attrs.get("case", ""))
        case = parse_case(text, origin=f"the case stored in {path}")
    except GridflowError as exc:
        return False, str(exc).split("\n")[0]
    except Exception as exc:  # noqa: BLE001 - a stored case that cannot even be resolved
        return False, f"the stored case cannot be resolved ({type(exc).__name__}: {exc})"
    try:
        point = _resume_point(old, case)
    except GridflowError as exc:
        return False, str(exc).split("\n")[0]
    if point is None:
        return True, "no frames: --resume computes the trajectory from the start"
    return True, f"continues from frame {len(old.time) - 1} (t = {float(old.time[-1]):.10g})"


@contextmanager
def _sigterm_interrupts():
    """While the run writes its file, SIGTERM is handled like SIGINT (KeyboardInterrupt, remembered by
    :mod:`gridflow.interrupts` so that one swallowed in a callback still stops the run at the next
    step), so the file's status becomes ``interrupted``; the previous handler is restored after.
    Outside the main thread (where handlers cannot be set) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGINT) is not interrupts.handler:  # a library call, not gridflow's command
        interrupts.reset()                                          # line (whose main has reset it)
    previous = signal.signal(signal.SIGTERM, interrupts.handler)
    try:
        with interrupts.quiet_unraisable():
            yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def transport_kinetic_energy(problem: Problem, diagnostics: Mapping) -> float:
    """Kinetic energy of the transport velocity v = -a grad log(rho / pi_lambda) of the W part.

    ||v||^2_{L2(rho)} = a^2 I(rho | pi_lambda), with I the relative Fisher information of the
    frame's diagnostics (central differences of log(rho / pi_lambda), second order for smooth
    densities).  For the Fokker–Planck flow this is the kinetic energy of the flow itself
    (docs/numerics.md, Diagnostics); for WFR, of its transport part.
    """
    return problem.diffusion ** 2 * float(diagnostics["fisher_information"])


def solve(case: Mapping) -> list[Frame]:
    """Solve a resolved case in memory and return its frames (no file is written)."""
    return list(_frames(Problem.from_case(case), case["time"]))


def run(case: Mapping, *, output: str | os.PathLike | None = None, progress: bool = False,
        resume: bool = False, buffered: bool = False, summary: dict[str, Any] | None = None) -> Path:
    """Solve a resolved case and write its trajectory file; return the file's path.

    ``output`` overrides ``[output] path``.  With ``progress`` a progress bar (tqdm) is shown
    on stderr.  The file's ``status`` is ``complete`` on success, ``failed`` or
    ``interrupted`` otherwise (frames written so far stay readable).

    With ``resume``, an interrupted file at the output path (status other than ``complete``,
    written by the same case) is continued from its last frame: its frames are kept and the
    integration restarts from the saved log density, time and lambda, so the result agrees with
    an uninterrupted run to the run's tolerance.  A complete file is left untouched; a missing
    file or one without frames is computed from the start; a damaged one is refused
    (:class:`~gridflow.errors.TrajectoryFileError` naming the frame).

    With ``buffered`` the frames are kept in memory and the file is written in one go when the run
    ends (the writer's buffered mode: no flush per frame; for short runs such as a sweep's): until
    then the path holds no new file, and a resumed run's file is replaced, not continued in place.

    SIGTERM is handled like SIGINT while it runs (status ``interrupted``, KeyboardInterrupt).  A
    failed write (disk full, file-size limit, ...) raises :class:`~gridflow.errors.OutputWriteError`
    saying how many complete frames the file holds; the file can be resumed.

    With ``[output] error_estimate = true`` the case is also solved on a grid 3 times coarser
    per axis, in memory before the first frame (:class:`~gridflow.analysis.refinement.ErrorEstimator`),
    and each frame gets the Richardson estimate of its L1 error (``error_estimate``).

    ``summary`` (a dict), when given, receives what the file ends with, from the frames in memory
    once the file is written: ``final_time``, ``final_kl``, ``total_steps`` and, with error
    estimates, ``error_estimate`` (the largest over the saved times); it is left empty when the
    run wrote nothing (a complete file left as it was) -- the values a sweep's index records
    (:func:`gridflow.batch.worker.final_diagnostics` reads the same ones back from a file).
    """
    with _sigterm_interrupts():
        return _run(case, output=output, progress=progress, resume=resume, buffered=buffered, summary=summary)


def _run(case: Mapping, *, output: str | os.PathLike | None, progress: bool, resume: bool,
         buffered: bool = False, summary: dict[str, Any] | None = None) -> Path:
    """The body of :func:`run`."""
    from gridflow.io.case import dumps_case
    from gridflow.io.trajectory import open_trajectory, trajectory_attrs
    from gridflow.io.trajectory_writer import TrajectoryWriter

    path = Path(output if output is not None else case["output"]["path"])
    problem = Problem.from_case(case)
    t = case["time"]
    all_times = save_times(t)
    end = float(all_times[-1])
    old_frames: list[dict] = []
    state = None
    if resume and path.exists():
        attrs = trajectory_attrs(path)
        if attrs.get("status") == "complete":
            _check_same_case(path, attrs, case)
            return path
        # also checks that the same case wrote it and that its frames are sound
        point = _resume_point(open_trajectory(path), case, grid=problem.grid, times=all_times)
        if point is not None:
            old_frames, state = point
    times = all_times
    if state is not None:
        times = all_times[all_times > state.t * (1 + 1e-12) + 1e-300]
    attrs = {
        "case": dumps_case(case),
        "flow": problem.flow,
        "scheme": scheme_description(problem.flux),
        "boundary": problem.grid.boundary,
        "tolerance": float(t.get("tolerance", DEFAULT_TOLERANCE)),
    }
    if problem.max_cell_peclet is not None:
        attrs["max_cell_peclet"] = float(problem.max_cell_peclet)
    if problem.warnings:
        attrs["warnings"] = "; ".join(problem.warnings)
    if state is not None:
        attrs["resumed_at"] = float(state.t)
    estimator = None
    if case["output"].get("error_estimate", False):
        from gridflow.analysis.refinement import ErrorEstimator

        # the coarse solutions first, in memory (a resumed run recomputes them for its remaining frames)
        estimator = ErrorEstimator(case, times)
        attrs["error_estimate_method"] = estimator.method
    total_steps = sum(int(f["extra"].get("steps", 0)) for f in old_frames)
    attrs["total_steps"] = int(total_steps)  # kept up to date at every frame (in place)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=end, unit="t", unit_scale=False, desc=case.get("name", "gridflow"), delay=1.0,
                   bar_format="{l_bar}{bar}| t={n:.4g}/{total:.4g} [{elapsed}<{remaining}]")

    started = time.monotonic()

    def on_step(state) -> None:
        interrupts.check()  # a signal whose interrupt a C callback swallowed stops the run here
        if bar is not None and time.monotonic() - started >= 1.0:  # no bar for runs shorter than a second
            bar.n = state.t
            bar.refresh()

    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    path_flow = problem.flow == "path"
    transport = problem.flow in ("fokker-planck", "wfr")
    last: dict[str, float] | None = None      # the last new frame's time and KL, and the error estimates
    errors: list[float] = []                  # of the new frames (for ``summary``)
    with TrajectoryWriter(path, grid=problem.grid, log_target=problem.path.log_target,
                          log_reference=problem.path.log_reference, attrs=attrs, path_flow=path_flow,
                          kinetic_energy=transport, frames=old_frames, in_place=bool(old_frames) and not buffered,
                          extra_names=("steps", "rejected_steps", *(("error_estimate",) if estimator is not None else ())),
                          buffered=buffered) as writer:
        for frame in _frames(problem, t, on_step=on_step, times=times, state=state):
            d = frame.diagnostics
            total_steps += frame.steps
            extra = {"steps": float(frame.steps), "rejected_steps": float(frame.rejected)}
            if estimator is not None:
                extra["error_estimate"] = estimator.estimate(frame.time, frame.density)
                errors.append(float(extra["error_estimate"]))
            last = {"time": float(frame.time), "kl": float(d["kl"])}
            writer.write_frame(time=frame.time, density=frame.density, log_density=frame.log_rho,
                               lambda_=frame.lam, mass=d["mass"],
                               kl=d["kl"], kl_tempered=d["kl_tempered"],
                               fisher_information=d["fisher_information"], mean=d["mean"],
                               covariance=d["covariance"], velocity=frame.velocity,
                               kinetic_energy=transport_kinetic_energy(problem, d) if transport
                               else frame.kinetic_energy,
                               extra=extra)
            writer.set_attrs(total_steps=int(total_steps))
            if bar is not None and time.monotonic() - started >= 1.0:
                bar.n = frame.time
                bar.refresh()
    if bar is not None:
        bar.close()
    if summary is not None:
        _summarise(summary, old_frames, last, total_steps, errors if estimator is not None else None)
    return path


def _summarise(summary: dict[str, Any], old_frames: list[dict], last: dict[str, float] | None, total_steps: int,
               errors: list[float] | None) -> None:
    """Fill ``summary`` (see :func:`run`) from the last frame written (``last``, else the last
    kept frame of a resumed file), the step count and the error estimates of the new frames
    (``None`` without an estimator) and of the kept ones: the values the file holds."""
    if last is None and old_frames:
        last = {"time": float(old_frames[-1]["time"]), "kl": float(old_frames[-1]["kl"])}
    if last is None:
        return
    summary.update(final_time=last["time"], final_kl=last["kl"], total_steps=int(total_steps))
    if errors is None and not any("error_estimate" in f["extra"] for f in old_frames):
        return                                  # the file has no error_estimate series
    values = np.array([f["extra"].get("error_estimate", np.nan) for f in old_frames] + (errors or []), dtype=float)
    summary["error_estimate"] = float(np.nanmax(values)) if np.isfinite(values).any() else math.nan
