"""`run` with --resume: an interrupted run continued from its file ends where an uninterrupted one does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gridflow.io.case import dumps_case, load_case
from gridflow.cli import main
from gridflow.errors import InputError
from gridflow.io.runner import run
from gridflow.io.trajectory import open_trajectory
from gridflow.io.trajectory_writer import TrajectoryWriter

ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "cases" / "quickstart.toml"
TOL = 1e-7


def _case(cells: int = 400, **extra_overrides: str):
    sets = [f"grid.cells=[{cells}]", f"time.tolerance={TOL}", *(f"{k}={v}" for k, v in extra_overrides.items())]
    return load_case(CASE, overrides=sets)


def _l1(a: np.ndarray, b: np.ndarray, h: float) -> float:
    return float(np.abs(a - b).sum() * h)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "ref.h5"
    run(_case(), output=path)
    return open_trajectory(path)


def _interrupted(path: Path, frames: int, monkeypatch) -> None:
    """Run the case and stop it with KeyboardInterrupt while it writes frame ``frames``."""
    _run_until(_case(), path, frames, monkeypatch, resume=False)
    assert open_trajectory(path).status == "interrupted"


@pytest.mark.parametrize("frames", [1, 37, 100])
def test_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch, uninterrupted, frames):
    path = tmp_path / "out.h5"
    _interrupted(path, frames, monkeypatch)
    before = open_trajectory(path)
    run(_case(), output=path, resume=True)
    tr = open_trajectory(path)
    ref = uninterrupted
    assert tr.status == "complete" and tr.attrs["resumed_at"] == pytest.approx(ref.time[frames - 1])
    np.testing.assert_array_equal(tr.time, ref.time)
    # frames written before the interruption are kept bit for bit
    np.testing.assert_array_equal(tr.density[:frames], before.density)
    np.testing.assert_array_equal(tr.extra["steps"][:frames], before.extra["steps"])
    # the continuation agrees with the uninterrupted run to the tolerance: both carry a global
    # time error of at most a few tol (tests/time/test_stepper.py bounds it by 10 tol)
    h = float(tr.x[1] - tr.x[0])
    worst = max(_l1(tr.density[k], ref.density[k], h) for k in range(len(tr.time)))
    assert worst <= 10 * TOL
    np.testing.assert_allclose(tr.lambda_, ref.lambda_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tr.kl, ref.kl, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(tr.mass, 1.0, atol=1e-12)
    assert tr.attrs["total_steps"] == int(np.nansum(tr.extra["steps"]))


def test_resume_of_a_complete_or_missing_file(tmp_path, uninterrupted, capsys):
    path = tmp_path / "out.h5"
    run(_case(), output=path, resume=True)  # nothing to resume: computed from the start
    tr = open_trajectory(path)
    assert tr.status == "complete" and "resumed_at" not in tr.attrs
    np.testing.assert_array_equal(tr.density, uninterrupted.density)  # deterministic
    stamp = path.stat().st_mtime_ns
    args = ["run", str(CASE), "-o", str(path), "--set", "grid.cells=[400]", "--set", f"time.tolerance={TOL}",
            "--resume", "-q"]
    assert main(args) == 0
    assert "already complete" in capsys.readouterr().err and path.stat().st_mtime_ns == stamp


def test_resume_with_a_different_case_is_refused(tmp_path, monkeypatch, capsys):
    path = tmp_path / "out.h5"
    _interrupted(path, 5, monkeypatch)
    with pytest.raises(InputError, match="differing keys: flow.reaction"):
        run(_case(**{"flow.reaction": "2.0"}), output=path, resume=True)
    assert main(["run", str(CASE), "-o", str(path), "--set", "grid.cells=[500]", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "different case" in err and "grid.cells" in err and "Traceback" not in err
    assert open_trajectory(path).status == "interrupted"  # left as it was
    assert len(open_trajectory(path).time) == 5


def test_resume_after_sigkill(tmp_path, uninterrupted):
    """Really kill a `gridflow run` process, then resume it from what it left on disk."""
    path = tmp_path / "killed.h5"
    case_file = tmp_path / "case.toml"
    case_file.write_text(dumps_case(_case()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "gridflow", "run", str(case_file), "-o", str(path), "-q"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not path.exists():  # the file takes its name once its metadata is on disk
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run did not create its file in time"
            time.sleep(0.01)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    # the killed file is read by the resume below; a reader that hung would trip pytest-timeout
    assert main(["run", str(case_file), "-o", str(path), "--resume", "-q"]) == 0
    tr = open_trajectory(path)
    assert tr.status == "complete"
    np.testing.assert_array_equal(tr.time, uninterrupted.time)
    h = float(tr.x[1] - tr.x[0])
    assert max(_l1(a, b, h) for a, b in zip(tr.density, uninterrupted.density)) <= 10 * TOL


def test_fokker_planck_kinetic_energy_is_exact_for_gaussians(tmp_path):
    """kinetic_energy = ||a grad log(rho/pi)||^2 = a^2 [s (1/sigma2 - 1/s)^2 + (m - mu)^2 / sigma2^2]
    for rho_t = N(m, s), pi = N(mu, sigma2); the moments come from the exact ODE (gridflow.analysis.exact)."""
    from gridflow.io.case import parse_case
    from gridflow.analysis.exact import gaussian_flow_moments

    a, mu, sigma2 = 2.0, 1.0, 0.5
    case = parse_case({"name": "ke", "grid": {"lower": [-7.0], "upper": [8.0], "cells": [1500]},
                       "initial": {"kind": "gaussian", "mean": [-1.0], "cov": [[1.5]]},
                       "target": {"kind": "gaussian", "mean": [mu], "cov": [[sigma2]]},
                       "flow": {"kind": "fokker-planck", "diffusion": a},
                       "time": {"end": 1.0, "save_times": [0.0, 0.1, 0.3, 1.0], "tolerance": 1e-9}})
    tr = open_trajectory(run(case, output=tmp_path / "ke.h5"))
    m, c = gaussian_flow_moments(tr.time, mean0=[-1.0], cov0=[[1.5]], target_mean=[mu], target_cov=[[sigma2]],
                                 diffusion=a, reaction=0.0)
    s = c[:, 0, 0]
    exact = a ** 2 * (s * (1 / sigma2 - 1 / s) ** 2 + (m[:, 0] - mu) ** 2 / sigma2 ** 2)
    # second-order central differences at h = 0.01 on Gaussians of variance >= 0.5: relative error ~ h^2
    np.testing.assert_allclose(tr.kinetic_energy, exact, rtol=1e-3)
    assert exact[0] > 10 * exact[-1]  # the test spans a real decay
    # the relative Fisher information is a separate diagnostic with its own closed form (exact / a^2)
    np.testing.assert_allclose(tr.fisher_information, exact / a ** 2, rtol=1e-3)


# -- far modes: the resumed state is the stored log density, exact below 1e-308 ----------------

FAR_TIMES = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0]


def _far_case():
    """Fisher–Rao from N(0, 1) to ½N(0, 1) + ½N(40, 1) on [-10, 50]: at t = 0 the far mode's log
    density is about -800, far below the smallest double (log 2.2e-308 = -708)."""
    from gridflow.io.case import parse_case

    target = {"kind": "mixture", "weights": [0.5, 0.5],
              "components": [{"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]},
                             {"kind": "gaussian", "mean": [40.0], "cov": [[1.0]]}]}
    return parse_case({"name": "far", "grid": {"lower": [-10.0], "upper": [50.0], "cells": [1500]},
                       "initial": {"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]}, "target": target,
                       "flow": {"kind": "fisher-rao"},
                       "time": {"end": 12.0, "save_times": FAR_TIMES, "tolerance": TOL}})


def _run_until(case, path: Path, frames: int, monkeypatch, *, resume: bool) -> None:
    """Run (or resume) ``case`` into ``path`` and stop it, as a kill would, once ``frames`` frames exist."""
    original = TrajectoryWriter.write_frame

    def write_frame(self, **kw):
        if self.frames_written == frames:
            raise KeyboardInterrupt
        original(self, **kw)

    with monkeypatch.context() as m:
        m.setattr(TrajectoryWriter, "write_frame", write_frame)
        with pytest.raises(KeyboardInterrupt):
            run(case, output=path, resume=resume)
    assert len(open_trajectory(path).time) == frames


def _far_mass(tr, k: int) -> float:
    h = float(tr.x[1] - tr.x[0])
    with np.errstate(under="ignore"):
        return float(np.exp(tr.log_density[k][tr.x > 20.0]).sum() * h)


def test_far_mode_run_interrupted_three_times_resumes_exactly(tmp_path, monkeypatch):
    case = _far_case()
    ref = open_trajectory(run(case, output=tmp_path / "ref.h5"))
    assert np.all(np.isfinite(ref.log_density))
    assert ref.log_density[0][np.argmin(np.abs(ref.x - 40.0))] < -790  # stored below the double range
    assert ref.density[0][np.argmin(np.abs(ref.x - 40.0))] == 0.0
    path = tmp_path / "out.h5"
    for k, frames in enumerate((1, 3, 5)):  # killed at t = 0, 0.5 and 2, each time resumed
        _run_until(case, path, frames, monkeypatch, resume=k > 0)
    run(case, output=path, resume=True)
    tr = open_trajectory(path)
    assert tr.status == "complete" and tr.attrs["resumed_at"] == pytest.approx(2.0)
    np.testing.assert_array_equal(tr.time, ref.time)
    h = float(tr.x[1] - tr.x[0])
    assert _l1(tr.density[-1], ref.density[-1], h) <= 10 * TOL
    # the far mode's mass: ½(1 - e^-12)-ish at t = 12, and the same after the three resumes
    assert _far_mass(ref, -1) > 0.49
    assert abs(_far_mass(tr, -1) - _far_mass(ref, -1)) <= 10 * TOL
    np.testing.assert_allclose(tr.log_density[0], ref.log_density[0], rtol=0, atol=1e-12)


def test_resume_of_a_file_without_log_density_uses_log_of_density(tmp_path, monkeypatch):
    """Older files have no log_density: resume falls back to log(density) (cells at 0 restart at
    log 2.2e-308), which on the far-mode case from t = 0 gives a visibly different far mode."""
    import h5py

    case = _far_case()
    ref = open_trajectory(run(case, output=tmp_path / "ref.h5"))
    path = tmp_path / "old.h5"
    _run_until(case, path, 1, monkeypatch, resume=False)
    with h5py.File(path, "r+") as f:  # make it an old-layout file
        del f["log_density"]
    assert open_trajectory(path).log_density is None
    run(case, output=path, resume=True)
    tr = open_trajectory(path)
    assert tr.status == "complete"
    # the floor raised the far mode's initial mass by up to e^90: its mass at t = 12 is off by far more
    # than the tolerance; this is what storing log_density prevents
    assert abs(_far_mass(tr, -1) - _far_mass(ref, -1)) > 1e3 * TOL


# -- --resume refuses a damaged file, naming the frame --------------------------------------------


def _damage_density(f, k: int, value: float) -> None:
    rho = f["density"][k]
    rho[len(rho) // 2] = value
    f["density"][k] = rho


DAMAGES = {
    "negative": (lambda f: _damage_density(f, 2, -1e-3), "frame 2 .*negative density"),
    "nan": (lambda f: _damage_density(f, 3, np.nan), "frame 3 .*not finite"),
    "mass": (lambda f: f["density"].__setitem__(1, 2 * f["density"][1]), "frame 1 .*mass 2"),
    "log_density": (lambda f: f["log_density"].__setitem__(4, f["log_density"][4] + 0.5),
                    "frame 4 .*log_density that disagrees"),
    "past_end": (lambda f: f["time"].__setitem__(4, 1e6), "frame 4 .*after the end"),
    "not_increasing": (lambda f: f["time"].__setitem__(3, f["time"][1]), "frame 3 .*not after the previous"),
    "not_a_save_time": (lambda f: f["time"].__setitem__(2, f["time"][2] + 1e-3), "frame 2 .*not one of the"),
    "lambda": (lambda f: f["lambda"].__setitem__(0, 1.5), "frame 0 .*lambda = 1.5"),
    "grid": (lambda f: f["x_bnds"].__setitem__(0, f["x_bnds"][0] - 1.0), "its grid .* is not the case's"),
    "case": (lambda f: f.attrs.__setitem__("case", "this is [not toml"), "'case' attribute is not a readable"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_resume_refuses_a_damaged_file(tmp_path, monkeypatch, capsys, damage):
    import h5py

    path = tmp_path / "out.h5"
    _interrupted(path, 5, monkeypatch)
    spoil, pattern = DAMAGES[damage]
    with h5py.File(path, "r+") as f:
        spoil(f)
    before = path.read_bytes()
    with pytest.raises(InputError, match=pattern):
        run(_case(), output=path, resume=True)
    args = ["run", str(CASE), "-o", str(path), "--set", "grid.cells=[400]", "--set", f"time.tolerance={TOL}",
            "--resume", "-q"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("gridflow: error: Cannot resume") and err.count("\n") == 1 and "--resume" in err
    assert path.read_bytes() == before  # the file is left exactly as it was


@pytest.mark.parametrize("buffered", [False, True])
def test_summary_is_what_the_file_ends_with(tmp_path, monkeypatch, buffered):
    """``run(..., summary=)`` (a sweep's index row) holds the final time, KL, step count and largest
    error estimate that the written file holds, also for a resumed run (kept frames included)."""
    from gridflow.batch.worker import final_diagnostics

    case = _case(cells=201, **{"time.end": "1.0", "output.error_estimate": "true"})
    path = tmp_path / "out.h5"
    _run_until(case, path, 3, monkeypatch, resume=False)
    assert open_trajectory(path).status == "interrupted"
    summary: dict = {}
    run(case, output=path, resume=True, buffered=buffered, summary=summary)
    tr = open_trajectory(path)
    assert tr.status == "complete" and len(tr.time) > 3
    assert summary == final_diagnostics(path)
    assert summary["final_time"] == tr.time[-1] == 1.0 and summary["total_steps"] == tr.attrs["total_steps"]
    assert summary["error_estimate"] == np.nanmax(tr.extra["error_estimate"]) > 0
    untouched: dict = {}
    run(case, output=path, resume=True, summary=untouched)      # complete: nothing written, nothing summarised
    assert untouched == {}
