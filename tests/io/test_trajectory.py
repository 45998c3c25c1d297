"""Trajectory files: layout (docs/file-format.md), netCDF compatibility, crash safety, error messages."""

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
from gridflow.errors import InputError, TrajectoryFileError
from gridflow.core.grid import Grid
from gridflow.io.trajectory import FRAME_FIELDS, Trajectory, open_trajectory
from gridflow.io.trajectory_writer import TrajectoryWriter

ATTRS = {"case": 'name = "demo"\n[grid]\ncells = [16]\n', "flow": "fokker-planck", "scheme": "sg/bdf2", "tolerance": 1e-7}
ROOT = Path(__file__).resolve().parents[2]


def _log_normalised(grid: Grid, rng: np.random.Generator) -> np.ndarray:
    log = rng.normal(size=grid.shape)
    return log - np.log(np.sum(np.exp(log)) * grid.cell_volume)


def _frames(grid: Grid, n: int, *, path_flow: bool = False, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        rho = rng.random(grid.shape) + 0.1
        rho /= rho.sum() * grid.cell_volume
        a = rng.normal(size=(grid.dim, grid.dim))
        frame = dict(time=0.25 * k, density=rho, lambda_=min(1.0, 0.3 * k), mass=1.0 + 1e-16 * k,
                     kl=rng.random(), kl_tempered=rng.random(), fisher_information=rng.random(),
                     mean=rng.normal(size=grid.dim), covariance=a @ a.T)
        if path_flow:
            frame.update(velocity=rng.normal(size=(grid.dim, *grid.shape)), kinetic_energy=rng.random())
        frames.append(frame)
    return frames


def _write(path: Path, grid: Grid, frames: list[dict], *, path_flow: bool = False, extra: bool = False) -> None:
    rng = np.random.default_rng(0)
    with TrajectoryWriter(path, grid=grid, log_target=_log_normalised(grid, rng),
                          log_reference=_log_normalised(grid, rng), attrs=ATTRS, path_flow=path_flow) as w:
        for k, frame in enumerate(frames):
            w.write_frame(**frame, extra={"steps": float(10 + k)} if extra else None)


GRIDS = {"1d": Grid((-3.0,), (4.0,), (16,)), "2d": Grid((-2.0, -1.0), (2.0, 3.0), (6, 5), "periodic")}


@pytest.fixture(params=sorted(GRIDS))
def grid(request) -> Grid:
    return GRIDS[request.param]


def test_round_trip_bit_for_bit(tmp_path, grid):
    path = tmp_path / "out.h5"
    frames = _frames(grid, 4)
    rng = np.random.default_rng(0)
    log_target, log_reference = _log_normalised(grid, rng), _log_normalised(grid, rng)
    with TrajectoryWriter(path, grid=grid, log_target=log_target, log_reference=log_reference, attrs=ATTRS) as w:
        assert open_trajectory(path).status == "running"
        assert len(open_trajectory(path).time) == 0
        for k, frame in enumerate(frames):
            w.write_frame(**frame, extra={"steps": float(k)})
            assert w.frames_written == k + 1
        w.set_attrs(warnings="mass on the edge")
    tr = open_trajectory(path)
    assert isinstance(tr, Trajectory)
    assert tr.status == "complete" and tr.dim == grid.dim
    assert tr.attrs["gridflow_version"] == __version__
    assert tr.attrs["created"].endswith("Z") and "T" in tr.attrs["created"]
    for key, value in ATTRS.items():
        assert tr.attrs[key] == value
    assert tr.attrs["warnings"] == "mass on the edge"
    assert tr.grid == grid
    np.testing.assert_array_equal(tr.x, grid.axes[0])
    if grid.dim == 2:
        np.testing.assert_array_equal(tr.y, grid.axes[1])
        assert tr.density.shape == (4, *grid.shape)  # indexed (time, x, y)
    else:
        assert tr.y is None
    np.testing.assert_array_equal(tr.log_target, log_target)
    np.testing.assert_array_equal(tr.log_reference, log_reference)
    np.testing.assert_array_equal(tr.time, [f["time"] for f in frames])
    np.testing.assert_array_equal(tr.density, np.stack([f["density"] for f in frames]))
    np.testing.assert_array_equal(tr.lambda_, [f["lambda_"] for f in frames])
    for name in FRAME_FIELDS[1:]:
        np.testing.assert_array_equal(getattr(tr, name), [f[name] for f in frames])
    np.testing.assert_array_equal(tr.mean, np.stack([f["mean"] for f in frames]))
    np.testing.assert_array_equal(tr.covariance, np.stack([f["covariance"] for f in frames]))
    np.testing.assert_array_equal(tr.extra["steps"], [0.0, 1.0, 2.0, 3.0])
    assert tr.velocity is None and tr.kinetic_energy is None
    assert tr.frame(0.5) == 2 and tr.frame(0.5 * (1 + 1e-12)) == 2
    with pytest.raises(TrajectoryFileError, match="0 .. 0.75"):
        tr.frame(0.3)


def test_netcdf_layout_with_xarray(tmp_path, grid):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    path = tmp_path / "out.h5"
    frames = _frames(grid, 3)
    _write(path, grid, frames, extra=True)
    axes = ("x", "y")[: grid.dim]
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        expected_dims = {"time": 3, "nv": 2, "dim": grid.dim, "dim2": grid.dim, **dict(zip(axes, grid.shape))}
        assert dict(ds.sizes) == expected_dims
        assert set(ds.coords) == {"time", *axes}
        assert ds.density.dims == ("time", *axes)
        assert ds.log_target.dims == axes and ds.log_reference.dims == axes
        assert ds["mean"].dims == ("time", "dim") and ds.covariance.dims == ("time", "dim", "dim2")
        assert ds.x_bnds.dims == ("x", "nv") and ds.steps.dims == ("time",)
        for name in FRAME_FIELDS:
            assert ds[name].dims == ("time",)
        np.testing.assert_array_equal(ds.density.values, np.stack([f["density"] for f in frames]))
        np.testing.assert_array_equal(ds.covariance.values, np.stack([f["covariance"] for f in frames]))
        np.testing.assert_array_equal(ds.time.values, [0.0, 0.25, 0.5])
        np.testing.assert_array_equal(ds.x_bnds.values, grid.bounds(0))
        for k, a in enumerate(axes):
            np.testing.assert_array_equal(ds[a].values, grid.axes[k])
            assert ds[a].attrs["bounds"] == f"{a}_bnds" and ds[a].attrs["units"] == "1"
        assert ds.time.attrs["units"] == "1"
        assert ds.density.attrs["cell_methods"] == ("x: mean" if grid.dim == 1 else "x: y: mean")
        for name in ds.variables:
            assert ds[name].attrs.get("long_name"), name
        assert ds.attrs["status"] == "complete" and ds.attrs["flow"] == ATTRS["flow"]
        enc = ds.density.encoding
        assert enc["zlib"] and enc["complevel"] == 4 and enc["shuffle"] and enc["fletcher32"]
        assert enc["chunksizes"] == (1, *grid.shape)
        assert ds.covariance.mean("dim2").dims == ("time", "dim")  # no duplicate dimension names
    via_api = open_trajectory(path, as_xarray=True)
    assert isinstance(via_api, xr.Dataset) and via_api.density.dims == ("time", *axes)
    with h5py.File(path, "r") as f:
        for name in ("density", "log_target", "x", "x_bnds", "time", "kl", "mean", "covariance", "steps"):
            ds = f[name]
            assert (ds.compression, ds.compression_opts, ds.shuffle, ds.fletcher32) == ("gzip", 4, True, True)
        # one frame per chunk for everything with a time axis: a chunk is written once, never rewritten
        assert f["density"].chunks == (1, *grid.shape) and f["kl"].chunks == (1,) and f["time"].chunks == (1,)
        assert f["covariance"].chunks == (1, grid.dim, grid.dim) and f["steps"].chunks == (1,)
        assert f["time"].maxshape == (None,)
        for name in ("density", "covariance", "x_bnds"):  # exactly one scale per axis
            assert all(len(d) == 1 for d in f[name].dims)
        assert f["nv"].attrs["NAME"].startswith(b"This is a netCDF dimension but not a netCDF variable.")


def test_path_flow(tmp_path, grid):
    path = tmp_path / "path.h5"
    frames = _frames(grid, 3, path_flow=True)
    _write(path, grid, frames, path_flow=True)
    tr = open_trajectory(path)
    np.testing.assert_array_equal(tr.velocity, np.stack([f["velocity"] for f in frames]))
    np.testing.assert_array_equal(tr.kinetic_energy, [f["kinetic_energy"] for f in frames])
    assert tr.velocity.shape == (3, grid.dim, *grid.shape)


def test_extras_appear_late_and_files_are_readable_while_written(tmp_path):
    grid = GRIDS["1d"]
    zeros = np.zeros(grid.shape)
    frames = _frames(grid, 4)
    path = tmp_path / "out.h5"
    path.write_text("an older file at the same path is replaced")
    stale = tmp_path / ".out.h5.999999999.tmp"  # left by a writer killed while creating the file
    stale.write_text("")
    with TrajectoryWriter(path, grid=grid, log_target=zeros, log_reference=zeros, attrs=ATTRS) as w:
        assert not stale.exists()
        w.set_attrs(note="before any frame")
        w.write_frame(**frames[0], extra={"steps": 1.0})
        w.write_frame(**frames[1])
        tr = open_trajectory(path)
        assert tr.status == "running" and len(tr.time) == 2 and tr.attrs["note"] == "before any frame"
        w.write_frame(**frames[2], extra={"steps": 3.0, "rejected_steps": 1.0})
        w.set_attrs(warnings="late")
        w.write_frame(**frames[3], extra={"rejected_steps": 0.0})
    tr = open_trajectory(path)
    assert tr.status == "complete" and tr.attrs["warnings"] == "late" and len(tr.time) == 4
    np.testing.assert_array_equal(tr.extra["steps"], [1.0, np.nan, 3.0, np.nan])
    np.testing.assert_array_equal(tr.extra["rejected_steps"], [np.nan, np.nan, 1.0, 0.0])
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5"]


def _layout(path: Path) -> dict:
    """Everything of a file but the creation time: root attributes, and per dataset its
    shape, maximum shape, type, chunks, filters, fill value, attributes and values."""
    out: dict = {}
    with h5py.File(path, "r") as f:
        out["/"] = {k: str(v) for k, v in f.attrs.items() if k != "created"}
        out["/libver"] = f.libver

        def visit(name, ds):
            if isinstance(ds, h5py.Dataset):
                out[name] = (ds.shape, ds.maxshape, ds.dtype, ds.chunks, ds.compression, ds.compression_opts,
                             ds.shuffle, ds.fletcher32, str(ds.fillvalue),
                             [(k, len(v) if k in ("DIMENSION_LIST", "REFERENCE_LIST") else str(v))
                              for k, v in ds.attrs.items()], np.asarray(ds[()]).tobytes())
        f.visititems(visit)
    return out


@pytest.mark.parametrize("path_flow", [False, True])
def test_buffered_writer_writes_the_same_file(tmp_path, grid, path_flow):
    """buffered=True (the sweep's runs): nothing at the path until close, then the very file the
    frame-by-frame writer makes (layout, attributes, values; late extras NaN before they appear)."""
    frames = _frames(grid, 3, path_flow=path_flow)
    extras = [{"steps": 1.0}, None, {"steps": 3.0, "rejected_steps": 1.0}]
    zeros = np.zeros(grid.shape)
    for buffered in (False, True):
        path = tmp_path / f"{buffered}.h5"
        with TrajectoryWriter(path, grid=grid, log_target=zeros, log_reference=zeros, attrs=ATTRS,
                              path_flow=path_flow, buffered=buffered, extra_names=("steps",)) as w:
            for frame, extra in zip(frames, extras):
                w.write_frame(**frame, extra=extra)
                w.set_attrs(total_steps=len(frame))
            assert path.exists() != buffered
    assert _layout(tmp_path / "True.h5") == _layout(tmp_path / "False.h5")
    tr = open_trajectory(tmp_path / "True.h5")
    np.testing.assert_array_equal(tr.extra["rejected_steps"], [np.nan, np.nan, 1.0])
    with pytest.raises(KeyboardInterrupt):     # interrupted: the frames so far, status interrupted
        with TrajectoryWriter(tmp_path / "i.h5", grid=grid, log_target=zeros, log_reference=zeros, attrs=ATTRS,
                              path_flow=path_flow, buffered=True) as w:
            w.write_frame(**frames[0])
            raise KeyboardInterrupt
    tr = open_trajectory(tmp_path / "i.h5")
    assert tr.status == "interrupted" and len(tr.time) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == [
        "False.h5", "True.h5", "i.h5"]


def test_writer_checks_its_input(tmp_path):
    grid = GRIDS["1d"]
    zeros = np.zeros(grid.shape)
    frame = _frames(grid, 2, path_flow=True)
    with pytest.raises(ValueError, match="status"):
        TrajectoryWriter(tmp_path / "a.h5", grid=grid, log_target=zeros, log_reference=zeros, attrs={"status": "x"})
    with TrajectoryWriter(tmp_path / "a.h5", grid=grid, log_target=zeros, log_reference=zeros, attrs={}) as w:
        with pytest.raises(ValueError, match="path_flow"):
            w.write_frame(**frame[0])
        bad = {k: v for k, v in frame[0].items() if k not in ("velocity", "kinetic_energy")}
        with pytest.raises(ValueError, match="shape"):
            w.write_frame(**{**bad, "density": np.zeros(3)})
        w.write_frame(**bad)
        with pytest.raises(ValueError, match="increasing"):
            w.write_frame(**bad)
    with TrajectoryWriter(tmp_path / "b.h5", grid=grid, log_target=zeros, log_reference=zeros, attrs={},
                          path_flow=True) as w:
        with pytest.raises(ValueError, match="velocity"):
            w.write_frame(**bad)


def test_exception_and_interrupt_set_status(tmp_path):
    grid = GRIDS["1d"]
    zeros = np.zeros(grid.shape)
    frames = _frames(grid, 2)
    for exc, status in ((RuntimeError, "failed"), (KeyboardInterrupt, "interrupted")):
        path = tmp_path / f"{status}.h5"
        with pytest.raises(exc):
            with TrajectoryWriter(path, grid=grid, log_target=zeros, log_reference=zeros, attrs=ATTRS) as w:
                w.write_frame(**frames[0])
                raise exc("boom")
        tr = open_trajectory(path)
        assert tr.status == status and len(tr.time) == 1
    w = TrajectoryWriter(tmp_path / "c.h5", grid=grid, log_target=zeros, log_reference=zeros, attrs={})
    w.close()
    w.close("failed")  # idempotent: the first status stays
    assert open_trajectory(tmp_path / "c.h5").status == "complete"


def test_unreadable_files(tmp_path):
    def fails(path, match):
        with pytest.raises(TrajectoryFileError, match=match) as info:
            open_trajectory(path)
        assert isinstance(info.value, InputError) and str(path) in str(info.value)

    fails(tmp_path / "missing.h5", "no such trajectory file")
    text = tmp_path / "notes.h5"
    text.write_text("this is not an HDF5 file\n" * 20)
    fails(text, "not an HDF5 file")
    good = tmp_path / "good.h5"
    _write(good, GRIDS["2d"], _frames(GRIDS["2d"], 5))
    data = good.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    fails(cut, "truncated")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["samples"] = np.zeros((10, 2))
    fails(foreign, "not a gridflow trajectory")
    fails(tmp_path, "directory")


def test_unwritable_paths(tmp_path):
    grid = GRIDS["1d"]
    zeros = np.zeros(grid.shape)
    afile = tmp_path / "afile"
    afile.write_text("x")
    for path in (tmp_path / "no" / "such" / "dir" / "out.h5", afile / "out.h5", tmp_path):
        with pytest.raises(TrajectoryFileError, match="Cannot create the trajectory file"):
            TrajectoryWriter(path, grid=grid, log_target=zeros, log_reference=zeros, attrs={})


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from gridflow.core.grid import Grid
    from gridflow.io.trajectory_writer import TrajectoryWriter
    grid = Grid((-1.0, -1.0), (1.0, 1.0), (24, 20))
    rho = np.full(grid.shape, 0.25)
    w = TrajectoryWriter(sys.argv[1], grid=grid, log_target=np.log(rho), log_reference=np.log(rho),
                         attrs={"flow": "fokker-planck"})
    k = 0
    while True:
        w.write_frame(time=0.1 * k, density=rho * (1 + 1e-3 * k), lambda_=1.0, mass=1.0, kl=1.0 / (k + 1),
                      kl_tempered=0.5, fisher_information=2.0, mean=np.zeros(2), covariance=np.eye(2),
                      extra={"steps": float(k)})
        k += 1
        print(k, flush=True)
        time.sleep(float(sys.argv[2]))
""")

# The killed file is read in a child process with a timeout: a reader that hangs on a damaged
# file must fail this test, not stall the whole suite.
READER = textwrap.dedent("""
    import sys, numpy as np
    from gridflow.io.trajectory import open_trajectory
    tr = open_trajectory(sys.argv[1])
    np.savez(sys.argv[2], time=tr.time, density=tr.density, kl=tr.kl, mean=tr.mean,
             covariance=tr.covariance, steps=tr.extra["steps"], status=tr.status)
""")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def run_killed_writer(path: Path, *, min_frames: int = 3, pause: float = 0.01, timeout: float = 30.0,
                      extra_wait: float = 0.0) -> dict[str, np.ndarray]:
    """Start a writer process, SIGKILL it once it reports ``min_frames`` frames, read what it left.

    Returns the arrays read back by :func:`open_trajectory` (in a child process, see ``READER``).
    """
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path), str(pause)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        written = 0
        while written < min_frames:
            ready, _, _ = select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 0.0))
            assert ready, "the writer did not write enough frames in time"
            line = proc.stdout.readline()
            assert line, f"the writer died: {proc.stderr.read().decode()}"
            written = int(line)
        time.sleep(extra_wait)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    out = path.with_suffix(".npz")
    done = subprocess.run([sys.executable, "-c", READER, str(path), str(out)], env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with np.load(out) as data:
        return {name: data[name] for name in data.files}


def test_killed_writer_leaves_readable_frames(tmp_path):
    tr = run_killed_writer(tmp_path / "killed.h5")
    n = len(tr["time"])
    assert n >= 3 and tr["status"] == "running"
    assert tr["density"].shape == (n, 24, 20) and tr["kl"].shape == (n,) and tr["steps"].shape == (n,)
    for array in tr.values():
        if array.dtype.kind == "f":
            assert np.all(np.isfinite(array))
    np.testing.assert_allclose(tr["time"], 0.1 * np.arange(n))
    np.testing.assert_array_equal(tr["steps"], np.arange(n))
    np.testing.assert_array_equal(tr["kl"], 1.0 / (np.arange(n) + 1))


if __name__ == "__main__":  # stress test: python tests/io/test_trajectory.py [N] (not part of the suite)
    import random
    import tempfile

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(count):
            p = Path(tmp) / f"k{i}.h5"
            t = run_killed_writer(p, pause=random.choice([0.0, 0.001, 0.01]), extra_wait=random.uniform(0, 0.5))
            ok = np.all(np.isfinite(t["density"])) and np.all(np.isfinite(t["kl"])) and t["status"] == "running"
            print(f"{i:3d}: {len(t['time']):5d} frames, status {t['status']}, finite {ok}")
            assert ok and len(t["time"]) >= 3
