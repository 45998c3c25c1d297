"""Particle trajectory files (gridflow.io.particle_file): layout, netCDF compatibility, crash safety, errors."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from gridflow._version import __version__
from gridflow.io.case import parse_case
from gridflow.errors import InputError, TrajectoryFileError
from gridflow.analysis.metrics import compare
from gridflow.io.particle_file import ParticleWriter, open_particles, write_particles
from gridflow.io.runner import solve
from gridflow.particles.samplers import run_sampler

ROOT = Path(__file__).resolve().parents[2]


def _frames(n: int, dim: int, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [dict(time=0.5 * k, positions=rng.normal(size=(n, dim)), log_weights=rng.normal(size=n),
                 lam=min(1.0, 0.3 * k), ess=float(n - k)) for k in range(count)]


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_round_trip_and_netcdf_layout(tmp_path, dim, weighted):
    path = tmp_path / "p.h5"
    frames = _frames(7, dim, 3)
    with ParticleWriter(path, particles=7, dim=dim, weighted=weighted, series=("lambda", "ess"),
                        attrs={"sampler": "ula", "step": 0.01, "particles": 7}) as w:
        for fr in frames:
            w.write_frame(time=fr["time"], positions=fr["positions"], log_weights=fr["log_weights"] if weighted else None,
                          **{"lambda": fr["lam"], "ess": fr["ess"]})
        assert w.frames_written == 3
    tr = open_particles(path)
    assert tr.status == "complete" and tr.particles == 7 and tr.dim == dim and tr.weighted == weighted
    np.testing.assert_array_equal(tr.time, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(tr.positions, np.stack([fr["positions"] for fr in frames]))
    np.testing.assert_array_equal(tr.series["lambda"], [0.0, 0.3, 0.6])
    assert tr.attrs["sampler"] == "ula" and tr.attrs["step"] == 0.01 and tr.attrs["gridflow_version"] == __version__
    if weighted:
        lw = np.stack([fr["log_weights"] for fr in frames])
        np.testing.assert_allclose(tr.log_weights, lw - np.log(np.exp(lw).sum(axis=1, keepdims=True)), atol=1e-14)
        x, w = tr.ensemble(0.5)
        assert w.sum() == pytest.approx(1.0) and np.all(w > 0)
    else:
        assert tr.log_weights is None and tr.ensemble(1.0)[1] is None
    with h5py.File(path, "r") as f:
        pos = f["positions"]
        assert pos.chunks == (1, 7, dim) and pos.compression == "gzip" and pos.shuffle and pos.fletcher32
        assert [s.name.rsplit("/", 1)[-1] for s in pos.dims[0].values()] == ["time"]
        assert list(pos.attrs["_Netcdf4Coordinates"]) == [0, 1, 2]
        assert f["time"].attrs["units"] == "1" and f["time"].maxshape == (None,)
    xr = pytest.importorskip("xarray")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds["positions"].dims == ("time", "particle", "dim")
        assert dict(ds.sizes) == {"time": 3, "particle": 7, "dim": dim}
        np.testing.assert_array_equal(ds["time"].values, tr.time)
        assert ("log_weights" in ds) == weighted and ds["lambda"].dims == ("time",)
    assert open_particles(path, as_xarray=True)["positions"].shape == (3, 7, dim)


def test_failed_and_interrupted_status(tmp_path):
    for exc, status in ((RuntimeError, "failed"), (KeyboardInterrupt, "interrupted")):
        path = tmp_path / f"{status}.h5"
        with pytest.raises(exc):
            with ParticleWriter(path, particles=3, dim=1) as w:
                w.write_frame(time=0.0, positions=np.zeros(3))
                raise exc()
        tr = open_particles(path)
        assert tr.status == status and len(tr.time) == 1


def test_writer_rejects_bad_frames(tmp_path):
    w = ParticleWriter(tmp_path / "p.h5", particles=4, dim=2, weighted=True, series=("ess",))
    with pytest.raises(ValueError, match="shape"):
        w.write_frame(time=0.0, positions=np.zeros((4, 1)), log_weights=np.zeros(4))
    with pytest.raises(ValueError, match="log_weights"):
        w.write_frame(time=0.0, positions=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="undeclared"):
        w.write_frame(time=0.0, positions=np.zeros((4, 2)), log_weights=np.zeros(4), beta=1.0)
    w.write_frame(time=0.0, positions=np.zeros((4, 2)), log_weights=np.zeros(4))
    with pytest.raises(ValueError, match="increasing"):
        w.write_frame(time=0.0, positions=np.zeros((4, 2)), log_weights=np.zeros(4))
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write_frame(time=1.0, positions=np.zeros((4, 2)), log_weights=np.zeros(4))
    with pytest.raises(ValueError, match="reserved"):
        ParticleWriter(tmp_path / "q.h5", particles=4, dim=1, series=("positions",))
    with pytest.raises(TrajectoryFileError, match="does not exist"):
        ParticleWriter(tmp_path / "missing" / "q.h5", particles=4, dim=1)


def test_reader_errors_name_the_problem(tmp_path):
    with pytest.raises(TrajectoryFileError, match="no such particle file"):
        open_particles(tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(TrajectoryFileError, match="not an HDF5 file"):
        open_particles(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["samples"] = np.zeros((3, 1))
    with pytest.raises(TrajectoryFileError, match="not a particle trajectory"):
        open_particles(tmp_path / "other.h5")
    with ParticleWriter(tmp_path / "p.h5", particles=2, dim=1) as w:
        w.write_frame(time=1.0, positions=np.zeros(2))
    with pytest.raises(TrajectoryFileError, match="No particle frame at t = 2"):
        open_particles(tmp_path / "p.h5").frame(2.0)
    assert issubclass(TrajectoryFileError, InputError)


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from gridflow.io.particle_file import ParticleWriter
    w = ParticleWriter(sys.argv[1], particles=50, dim=2, weighted=True, series=("ess",))
    k = 0
    while True:
        w.write_frame(time=0.1 * k, positions=np.full((50, 2), float(k)), log_weights=np.zeros(50), ess=50.0)
        k += 1
        print(k, flush=True)
        time.sleep(0.01)
""")


def test_killed_writer_leaves_readable_frames(tmp_path):
    path = tmp_path / "killed.h5"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        written, deadline = 0, time.monotonic() + 30
        while written < 3:
            ready, _, _ = select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 0.0))
            assert ready, "the writer did not write 3 frames in time"
            line = proc.stdout.readline()
            assert line, proc.stderr.read().decode()
            written = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    tr = open_particles(path)
    n = len(tr.time)
    assert n >= 3 and tr.status == "running"
    np.testing.assert_allclose(tr.time, 0.1 * np.arange(n))
    np.testing.assert_array_equal(tr.positions[:, 0, 0], np.arange(n))
    np.testing.assert_allclose(tr.log_weights, -np.log(50.0))


def test_run_sampler_writes_a_trajectory_that_compares_with_the_grid(tmp_path):
    case = parse_case({"name": "t", "grid": {"lower": [-8.0], "upper": [8.0], "cells": [800]},
                       "target": {"kind": "gaussian", "mean": [1.0], "cov": [[0.5]]},
                       "initial": {"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]},
                       "flow": {"kind": "fisher-rao"}, "time": {"end": 1.0, "save_times": [0.0, 0.5, 1.0]}})
    out = tmp_path / "fr.h5"
    frames = run_sampler(case, sampler="fr-is", particles=3000, step=0.1, seed=4, output=out)
    tr = open_particles(out)
    assert tr.attrs["sampler"] == "fr-is" and tr.attrs["seed"] == 4 and 'name = "t"' in tr.attrs["case"]
    np.testing.assert_array_equal(tr.time, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(tr.series["ess"], [f.ess for f in frames])
    grid_frames = solve(case)
    x, w = tr.ensemble(1.0)
    r = compare(case_grid(case), grid_frames[-1].density, x, w)
    assert r["weighted"] and r["p_value"] > 1e-3
    path2 = write_particles(tmp_path / "again.h5", frames, attrs={"note": "copy"})
    np.testing.assert_array_equal(open_particles(path2).positions, tr.positions)


def case_grid(case):
    from gridflow.core.grid import Grid

    g = case["grid"]
    return Grid(g["lower"], g["upper"], g["cells"])
