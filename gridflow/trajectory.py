"""Trajectory files: netCDF4-compatible HDF5, written frame by frame, readable after a crash.

Layout (SPEC §2; names and dimensions are the contract)::

    dimensions  time (unlimited), x, y (2D only), nv = 2, dim = space dimension, dim2 = dim
    time(time)  x(x)  y(y)  x_bnds(x, nv)  y_bnds(y, nv)
    density(time, x[, y])  log_target(x[, y])  log_reference(x[, y])
    lambda, mass, kl, kl_tempered, fisher_information (time)
    mean(time, dim)  covariance(time, dim, dim2)
    velocity(time, dim, x[, y]) and kinetic_energy(time)   -- path flow only
    <extra>(time)                                           -- further per-frame diagnostics

Design decisions:

* **covariance** has dimensions ``(time, dim, dim2)``.  netCDF allows a dimension to repeat
  within one variable, but xarray refuses most operations on such variables, so the column
  axis uses a second pure dimension ``dim2`` of the same length as ``dim``.
* **netCDF compatibility** is made by hand with h5py, as netCDF-C/h5netcdf do it: every axis
  has exactly one HDF5 dimension scale.  ``time``, ``x``, ``y`` are coordinate variables
  (scales named after themselves); ``nv``, ``dim``, ``dim2`` are pure dimensions: empty
  ``float32`` scales whose ``NAME`` is ``"This is a netCDF dimension but not a netCDF
  variable."`` followed by the length in ten characters.  Each scale carries
  ``_Netcdf4Dimid`` (the dimension's id: time, x[, y], nv, dim, dim2 in that order); every
  variable carries ``_Netcdf4Coordinates`` (the ids of its dimensions).  Link and attribute
  creation order are tracked (netCDF-C requires it).  String attributes are UTF-8.
* Every dataset is chunked, gzipped (level 4), with shuffle and fletcher32 checksums.
  Every dataset with a ``time`` axis holds **one frame per chunk**, so a chunk is written
  exactly once and never rewritten.  (An earlier layout packed 1024 frames of each scalar
  series into a chunk that was rewritten at every frame; a SIGKILL can interrupt a multi-page
  ``write`` between pages, and about one kill in a hundred and fifty left such a chunk torn,
  failing its checksum.  A chunk that is never rewritten cannot be torn once its frame is
  complete.)  Growing datasets have an HDF5 fill value of NaN and grow by ``resize``.
* **Crash safety.**  A plain HDF5 file killed while writing can be corrupt (in our tests about
  one kill in fifteen left chunks that failed their checksum), so the writer works in SWMR
  mode (file format of HDF5 1.10, ``libver=("v110", "v110")``): metadata is written and
  flushed at creation, then SWMR writing starts.  Each frame writes every per-frame dataset,
  flushes, writes ``time`` and flushes again, so ``len(time)`` counts complete frames; the
  reader also trims every series to the shortest one.  SWMR forbids new objects and
  attributes: before the first frame the file is simply rebuilt (below); after it, a new
  ``extra`` dataset, :meth:`TrajectoryWriter.set_attrs` and the final ``status`` reopen the
  file in ordinary read-write mode for a few milliseconds (a kill inside that window leaves a
  file that needs ``h5clear -s``).  A file left by a killed SWMR writer still has its "open
  for writing" flags set; :func:`open_trajectory` then opens it with ``swmr=True``.
* The file is created under a temporary name (``.NAME.PID.tmp`` beside it) and renamed to its
  final name as soon as it is in SWMR mode (again if it is rebuilt before its first frame, to
  add ``extra`` datasets or attributes), not at the end of the run: a killed run must leave
  its frames readable at the path the user asked for, with a ``status`` other than
  ``complete``.  Temporary files of killed writers are removed by the next writer of the same
  path.
"""

from __future__ import annotations

import glob
import math
import os
import time as _time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gridflow._version import __version__
from gridflow.errors import TrajectoryFileError
from gridflow.grid import Grid

__all__ = ["FRAME_FIELDS", "Trajectory", "TrajectoryWriter", "open_trajectory"]

FRAME_FIELDS = ("lambda", "mass", "kl", "kl_tempered", "fisher_information")
"""Scalar diagnostics stored once per frame, as ``(time)`` datasets."""

STATUSES = ("running", "complete", "failed", "interrupted")
RESERVED_ATTRS = frozenset({"status", "gridflow_version", "created"})

_LIBVER = ("v110", "v110")
_FILTERS: dict[str, Any] = {"compression": "gzip", "compression_opts": 4, "shuffle": True, "fletcher32": True}
_SERIES_CHUNK = 1  # one frame per chunk: written once, never rewritten (see module docstring)
_NOT_A_VARIABLE = "This is a netCDF dimension but not a netCDF variable."
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_REQUIRED = ("time", "x", "x_bnds", "density", "log_target", "log_reference", *FRAME_FIELDS, "mean", "covariance")
_KNOWN = frozenset(_REQUIRED) | {"y", "y_bnds", "nv", "dim", "dim2", "velocity", "kinetic_energy"}

_LONG_NAMES = {
    "time": "time",
    "x": "cell centre, first coordinate",
    "y": "cell centre, second coordinate",
    "x_bnds": "cell edges, first coordinate",
    "y_bnds": "cell edges, second coordinate",
    "density": "cell-average density rho_t",
    "log_target": "log target density log pi, normalised on the grid",
    "log_reference": "log tempering reference density log pi_0, normalised on the grid",
    "lambda": "tempering parameter lambda(t)",
    "mass": "total mass of rho_t",
    "kl": "KL(rho_t || pi) on the grid",
    "kl_tempered": "KL(rho_t || pi_lambda(t)) on the grid",
    "fisher_information": "relative Fisher information I(rho_t || pi_lambda(t))",
    "mean": "mean of rho_t",
    "covariance": "covariance of rho_t",
    "velocity": "minimal-kinetic-energy velocity v_t of the tempered path at the cells",
    "kinetic_energy": "kinetic energy ||v_t||^2 in L2(rho_t)",
}

AttrValue = str | int | float


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _attr_value(key: str, value: Any) -> AttrValue:
    """Check one root attribute value; return it as a plain ``str``, ``int`` or ``float``."""
    if not isinstance(key, str) or not key or "/" in key:
        raise ValueError(f"attribute names must be non-empty strings without '/', got {key!r}")
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    raise TypeError(f"attribute {key!r} must be a str, int or float, got {type(value).__name__}")


def _decode_attr(value: Any) -> Any:
    """An HDF5 attribute value as plain Python (str for strings, scalars for 1-element arrays)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return _decode_attr(value.reshape(()).item())
        return [_decode_attr(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _as_float_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    return arr


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files of ``path`` left by writers that were killed while creating it."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2: -4]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)  # probe only: is that writer still alive?
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


# -- netCDF4 helpers (shared with gridflow.particles) ----------------------------------------


def create_dimension(f: h5py.File, name: str, size: int, dimid: Mapping[str, int]) -> h5py.Dataset:
    """Create a pure netCDF dimension ``name`` of length ``size`` (no coordinate variable).

    As netCDF-C does it: an empty ``float32`` dataset made a dimension scale whose ``NAME`` says
    it is not a variable, with the dimension id ``dimid[name]`` in ``_Netcdf4Dimid``.
    """
    ds = f.create_dataset(name, shape=(size,), dtype=">f4", track_order=True)
    ds.make_scale(f"{_NOT_A_VARIABLE}{size:10d}")
    ds.attrs["_Netcdf4Dimid"] = np.int32(dimid[name])
    return ds


def create_variable(f: h5py.File, name: str, dims: tuple[str, ...], dimid: Mapping[str, int], *,
                    long_name: str, data: np.ndarray | None = None, shape: tuple[int, ...] | None = None,
                    maxshape: tuple[int | None, ...] | None = None, chunks: tuple[int, ...] | None = None,
                    attrs: Mapping[str, Any] | None = None, scale: bool = False) -> h5py.Dataset:
    """Create one netCDF4 variable in ``f``: a float64 dataset (gzip + shuffle + fletcher32), its
    ``long_name`` and further CF ``attrs``, ``_Netcdf4Coordinates`` (ids from ``dimid``) and its
    dimension scales.  ``scale=True`` makes it the coordinate variable of dimension ``name``
    (``_Netcdf4Dimid``); otherwise the scales of ``dims`` (created before) are attached.  Without
    ``data`` the dataset is empty of shape ``shape`` (growable up to ``maxshape``, fill value NaN).
    """
    if data is not None:
        data = np.asarray(data, dtype=np.float64)
        ds = f.create_dataset(name, data=data, chunks=chunks or data.shape, track_order=True, **_FILTERS)
    else:
        ds = f.create_dataset(name, shape=shape, maxshape=maxshape, chunks=chunks, dtype=np.float64,
                              fillvalue=np.nan, track_order=True, **_FILTERS)
    if scale:
        ds.make_scale(name)
        ds.attrs["_Netcdf4Dimid"] = np.int32(dimid[name])
    ds.attrs["_Netcdf4Coordinates"] = np.array([dimid[d] for d in dims], dtype=np.int32)
    ds.attrs["long_name"] = long_name
    for key, value in (attrs or {}).items():
        ds.attrs[key] = value
    if not scale:
        for axis, dim in enumerate(dims):
            ds.dims[axis].attach_scale(f[dim])
    return ds


class TrajectoryWriter:
    """Writes a trajectory frame by frame (knows nothing about the solver).

    All metadata (coordinates, bounds, ``log_target``, ``log_reference``, root attributes with
    ``status = "running"``) is written and flushed when the writer is created; every
    :meth:`write_frame` appends one frame and flushes.  Use as a context manager: on leaving it
    the status becomes ``complete``, ``interrupted`` (KeyboardInterrupt) or ``failed``.

    ``frames`` (keyword arguments of :meth:`write_frame`, one mapping per frame) are written
    into the new file before it takes the final name: a resumed run copies the frames of the
    interrupted file this way, so no moment exists at which the path holds fewer frames.
    """

    def __init__(self, path: str | os.PathLike, *, grid: Grid, log_target: np.ndarray,
                 log_reference: np.ndarray, attrs: Mapping[str, AttrValue], path_flow: bool = False,
                 frames: Sequence[Mapping[str, Any]] = ()) -> None:
        self._path = Path(path)
        self._grid = grid
        self._path_flow = bool(path_flow)
        self._frames = 0
        self._last_time = -math.inf
        self._extra: list[str] = []
        self._file: h5py.File | None = None
        log_target = _as_float_array("log_target", log_target, grid.shape)
        log_reference = _as_float_array("log_reference", log_reference, grid.shape)
        root = {k: _attr_value(k, v) for k, v in attrs.items()}
        if clash := RESERVED_ATTRS & root.keys():
            raise ValueError(f"attributes {sorted(clash)} are set by the writer itself")
        self._log_target, self._log_reference = log_target, log_reference
        self._root = dict(root)
        self._created = _utc_now()
        self._initial_frames = list(frames)
        for frame in self._initial_frames:
            self._extra.extend(name for name in frame.get("extra") or {} if name not in self._extra)
        self._check_parent()
        self._create_file()

    # -- creation ---------------------------------------------------------------------------

    def _create_file(self) -> None:
        """Write a fresh file with all metadata (and no frames), in SWMR mode, at the final path.

        It is created under a temporary name and renamed once in SWMR mode, so that the final
        name never holds a file that a killed writer could leave unreadable.
        """
        _remove_stale_temporaries(self._path)
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        try:
            self._file = h5py.File(tmp, "w", libver=_LIBVER, track_order=True)
        except OSError as exc:
            raise self._create_error(exc) from exc
        try:
            self._write_metadata()
            self._file.flush()
            self._file.swmr_mode = True
            initial, self._initial_frames = self._initial_frames, []
            for frame in initial:
                self.write_frame(**frame)
            os.replace(tmp, self._path)
        except BaseException as exc:
            self._file.close()
            self._file = None
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise self._create_error(exc) from exc
            raise

    def _recreate(self) -> None:
        """Rebuild the file before its first frame (new extras, new attributes): no unsafe window."""
        self._require_open().close()
        self._file = None
        self._create_file()

    def _check_parent(self) -> None:
        parent = self._path.parent
        fix = "create the directory or choose another output path (-o OUT.h5)"
        if not parent.exists():
            raise TrajectoryFileError(
                f"Cannot create the trajectory file {self._path}: the directory {parent} does not exist; {fix}.")
        if not parent.is_dir():
            raise TrajectoryFileError(
                f"Cannot create the trajectory file {self._path}: {parent} is a file, not a directory; {fix}.")
        if self._path.is_dir():
            raise TrajectoryFileError(
                f"Cannot create the trajectory file {self._path}: that path is a directory; "
                "give a file name such as out.h5 instead.")

    def _create_error(self, exc: OSError) -> TrajectoryFileError:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return TrajectoryFileError(
            f"Cannot create the trajectory file {self._path} ({reason}). Check that its directory is "
            "writable, that the file is not open in another program (HDF5 locks open files), "
            "or choose another output path (-o OUT.h5).")

    def _write_metadata(self) -> None:
        f = self._file
        g = self._grid
        axes = ("x", "y")[: g.dim]
        names = ("time", *axes, "nv", "dim", "dim2")
        self._dimid = {name: i for i, name in enumerate(names)}

        f.attrs["Conventions"] = "CF-1.10"
        for key, value in self._root.items():
            f.attrs[key] = value
        f.attrs["boundary"] = g.boundary
        f.attrs["gridflow_version"] = __version__
        f.attrs["created"] = self._created
        f.attrs["status"] = "running"

        # dimension scales: coordinate variables first, then pure dimensions
        self._create("time", ("time",), shape=(0,), maxshape=(None,), chunks=(_SERIES_CHUNK,),
                     attrs={"units": "1", "axis": "T"}, scale=True)
        for k, name in enumerate(axes):
            self._create(name, (name,), data=g.axes[k], attrs={"units": "1", "bounds": f"{name}_bnds",
                                                                "axis": name.upper()}, scale=True)
        for name, size in (("nv", 2), ("dim", g.dim), ("dim2", g.dim)):
            create_dimension(f, name, size, self._dimid)

        for k, name in enumerate(axes):
            self._create(f"{name}_bnds", (name, "nv"), data=g.bounds(k), attrs={"units": "1"})
        self._create("log_target", axes, data=self._log_target)
        self._create("log_reference", axes, data=self._log_reference)
        cell_methods = " ".join(f"{a}:" for a in axes) + " mean"
        self._series("density", ("time", *axes), g.shape, attrs={"cell_methods": cell_methods})
        for name in FRAME_FIELDS:
            self._series(name, ("time",), (), attrs={"units": "1"} if name == "lambda" else None)
        self._series("mean", ("time", "dim"), (g.dim,))
        self._series("covariance", ("time", "dim", "dim2"), (g.dim, g.dim))
        if self._path_flow:
            self._series("velocity", ("time", "dim", *axes), (g.dim, *g.shape))
            self._series("kinetic_energy", ("time",), ())
        for name in self._extra:
            self._extra_series(name)

    def _extra_series(self, name: str) -> None:
        self._series(name, ("time",), (), long_name=name.replace("_", " "), frames=self._frames)

    def _create(self, name: str, dims: tuple[str, ...], *, data: np.ndarray | None = None,
                shape: tuple[int, ...] | None = None, maxshape: tuple[int | None, ...] | None = None,
                chunks: tuple[int, ...] | None = None, attrs: Mapping[str, Any] | None = None,
                scale: bool = False, long_name: str | None = None) -> h5py.Dataset:
        """Create one netCDF variable: dataset, CF attributes, dimension scales."""
        return create_variable(self._file, name, dims, self._dimid, data=data, shape=shape, maxshape=maxshape,
                               chunks=chunks, attrs=attrs, scale=scale, long_name=long_name or _LONG_NAMES[name])

    def _series(self, name: str, dims: tuple[str, ...], frame_shape: tuple[int, ...], *,
                attrs: Mapping[str, Any] | None = None, long_name: str | None = None, frames: int = 0) -> None:
        """Create a growable dataset with the unlimited ``time`` axis first, one frame per chunk."""
        self._create(name, dims, shape=(frames, *frame_shape), maxshape=(None, *frame_shape),
                     chunks=(_SERIES_CHUNK, *frame_shape), attrs=attrs, long_name=long_name)

    # -- writing ----------------------------------------------------------------------------

    @property
    def frames_written(self) -> int:
        """Number of complete frames in the file."""
        return self._frames

    @property
    def path(self) -> Path:
        return self._path

    def _require_open(self) -> h5py.File:
        if self._file is None:
            raise ValueError(f"the trajectory writer for {self._path} is closed")
        return self._file

    @contextmanager
    def _metadata_mode(self) -> Iterator[h5py.File]:
        """Leave SWMR mode (which forbids new objects and attributes) for a metadata change."""
        self._require_open().close()
        self._file = None
        deadline = _time.monotonic() + 10.0
        while True:
            try:
                self._file = h5py.File(self._path, "r+", libver=_LIBVER)
                break
            except OSError as exc:  # e.g. locked for a moment by a plain reader
                if _time.monotonic() > deadline:
                    raise TrajectoryFileError(
                        f"Cannot reopen the trajectory file {self._path} to update it ({exc}). "
                        "Close other programs that hold the file open and run again.") from exc
                _time.sleep(0.05)
        yield self._file
        self._file.flush()

    def _enter_swmr(self) -> None:
        self._file.swmr_mode = True

    def write_frame(self, *, time: float, density: np.ndarray, lambda_: float, mass: float, kl: float,
                    kl_tempered: float, fisher_information: float, mean: np.ndarray, covariance: np.ndarray,
                    velocity: np.ndarray | None = None, kinetic_energy: float | None = None,
                    extra: Mapping[str, float] | None = None) -> None:
        """Append one frame to every time-dimension dataset, then flush the file.

        ``velocity`` (shape ``(dim, *grid.shape)``) and ``kinetic_energy`` are required for a
        path-flow writer and not allowed otherwise.  ``extra`` holds further scalar diagnostics;
        each name becomes a ``(time)`` dataset on first use (NaN in frames that lack it).
        """
        f = self._require_open()
        g = self._grid
        t = float(time)
        if not math.isfinite(t) or t <= self._last_time:
            raise ValueError(f"frame times must be finite and increasing, got {t!r} after {self._last_time!r}")
        values: dict[str, np.ndarray] = {
            "density": _as_float_array("density", density, g.shape),
            "lambda": np.float64(lambda_), "mass": np.float64(mass), "kl": np.float64(kl),
            "kl_tempered": np.float64(kl_tempered), "fisher_information": np.float64(fisher_information),
            "mean": _as_float_array("mean", mean, (g.dim,)),
            "covariance": _as_float_array("covariance", covariance, (g.dim, g.dim)),
        }
        if self._path_flow:
            if velocity is None or kinetic_energy is None:
                raise ValueError("a path-flow trajectory needs velocity and kinetic_energy in every frame")
            values["velocity"] = _as_float_array("velocity", velocity, (g.dim, *g.shape))
            values["kinetic_energy"] = np.float64(kinetic_energy)
        elif velocity is not None or kinetic_energy is not None:
            raise ValueError("velocity and kinetic_energy are written only when path_flow=True")
        extra = dict(extra or {})
        for name in extra:
            if not isinstance(name, str) or not name or "/" in name or name in _KNOWN:
                raise ValueError(f"extra diagnostic name {name!r} is empty, contains '/' or is reserved")
        extra_values = {name: np.float64(v) for name, v in extra.items()}

        new = [name for name in extra_values if name not in self._extra]
        if new:
            self._extra.extend(new)
            if self._frames == 0:
                self._recreate()
            else:
                with self._metadata_mode():
                    for name in new:
                        self._extra_series(name)
                    self._enter_swmr()
            f = self._file
        for name in self._extra:
            values[name] = extra_values.get(name, np.float64(np.nan))

        k = self._frames
        try:
            for name, value in values.items():
                ds = f[name]
                ds.resize(k + 1, axis=0)
                ds[k] = value
            f.flush()
            ds = f["time"]
            ds.resize((k + 1,))
            ds[k] = t
            f.flush()
        except OSError as exc:
            raise TrajectoryFileError(
                f"Cannot write frame {k} (t = {t:g}) to {self._path} ({exc}). Check the free disk space "
                "and that the file is not being modified by another program.") from exc
        self._frames = k + 1
        self._last_time = t

    def set_attrs(self, **attrs: AttrValue) -> None:
        """Set root attributes (e.g. warnings found during the run); flushed at once."""
        values = {k: _attr_value(k, v) for k, v in attrs.items()}
        if clash := RESERVED_ATTRS & values.keys():
            raise ValueError(f"attributes {sorted(clash)} are managed by the writer (use close(status=...))")
        if not values:
            return
        self._root.update(values)
        if self._frames == 0:
            self._recreate()
            return
        with self._metadata_mode() as f:
            for key, value in values.items():
                f.attrs[key] = value
            self._enter_swmr()

    def close(self, status: str = "complete") -> None:
        """Record ``status`` in the root attributes and close the file (idempotent)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        if self._file is None:
            return
        try:
            f = self._file
            for name in ("density", *FRAME_FIELDS, "mean", "covariance", "velocity", "kinetic_energy",
                         *self._extra):
                if name in f and f[name].shape[0] != self._frames:  # drop a half-written frame
                    f[name].resize(self._frames, axis=0)
            with self._metadata_mode() as f:
                f.attrs["status"] = status
        finally:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close("complete")
            return
        try:
            self.close("interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed")
        except Exception:  # never hide the original exception
            pass


@dataclass
class Trajectory:
    """A trajectory file read into memory (arrays indexed ``(time, x[, y])``)."""

    attrs: dict[str, Any]
    time: np.ndarray
    x: np.ndarray
    y: np.ndarray | None
    x_bnds: np.ndarray
    y_bnds: np.ndarray | None
    density: np.ndarray
    log_target: np.ndarray
    log_reference: np.ndarray
    lambda_: np.ndarray
    mass: np.ndarray
    kl: np.ndarray
    kl_tempered: np.ndarray
    fisher_information: np.ndarray
    mean: np.ndarray
    covariance: np.ndarray
    velocity: np.ndarray | None = None
    kinetic_energy: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    path: str = ""

    @property
    def status(self) -> str:
        """``running`` (still being written, or its writer was killed), ``complete``, ``failed`` or ``interrupted``."""
        return str(self.attrs.get("status", "unknown"))

    @property
    def dim(self) -> int:
        return 1 if self.y is None else 2

    @property
    def grid(self) -> Grid:
        """The grid, rebuilt from the cell bounds (boundary from the ``boundary`` attribute)."""
        bnds = [self.x_bnds] if self.y_bnds is None else [self.x_bnds, self.y_bnds]
        return Grid(lower=tuple(float(b[0, 0]) for b in bnds), upper=tuple(float(b[-1, 1]) for b in bnds),
                    cells=tuple(len(b) for b in bnds),
                    boundary=str(self.attrs.get("boundary", "reflecting")))

    def frame(self, time: float) -> int:
        """Index of the saved frame at ``time`` (match within 1e-9 relative)."""
        t = float(time)
        n = len(self.time)
        if n and math.isfinite(t):
            diff = np.abs(self.time - t)
            i = int(np.argmin(diff))
            if diff[i] <= 1e-9 * max(abs(t), abs(float(self.time[i]))):
                return i
        where = f" in {self.path}" if self.path else ""
        if not n:
            held = "holds no frames"
        else:
            held = (f"holds {n} frames at t = {self.time[0]:.10g} .. {self.time[-1]:.10g}"
                    + (f" (nearest saved time {self.time[int(np.argmin(np.abs(self.time - t)))]:.10g})"
                       if math.isfinite(t) else ""))
        raise TrajectoryFileError(
            f"No saved frame at t = {t:g}{where}: the file {held}. Ask for one of the saved times "
            "(listed by `gridflow info`), or rerun with this time among the save times.")


# -- reading --------------------------------------------------------------------------------


def _fail(path: Path, problem: str, fix: str) -> TrajectoryFileError:
    return TrajectoryFileError(f"{path}: {problem}. {fix}")


def _has_hdf5_signature(path: Path) -> bool:
    """True if the HDF5 signature is at offset 0, 512, 1024, ... (user blocks are allowed)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        offset = 0
        while offset + 8 <= size:
            fh.seek(offset)
            if fh.read(8) == _HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else 2 * offset
    return False


def _open_h5(path: Path) -> tuple[h5py.File, bool]:
    """Open ``path`` read-only; returns the file and whether SWMR reading was needed."""
    regen = "run `gridflow run CASE.toml -o FILE` again to regenerate it"
    if not path.exists():
        raise _fail(path, "no such trajectory file",
                    "Check the path, or create the file with `gridflow run CASE.toml -o FILE`")
    if path.is_dir():
        raise _fail(path, "is a directory, not a trajectory file", "Give the path of the .h5 file")
    try:
        signed = _has_hdf5_signature(path)
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc})", "Check the file's permissions") from exc
    if not signed:
        raise _fail(path, "is not an HDF5 file (no HDF5 signature), so it is not a gridflow trajectory",
                    "Pass a file written by `gridflow run`")
    errors = []
    # A plain open first: it checks the file's length and so detects truncation.  Only a file
    # whose "open for writing" flags are set (a live or killed SWMR writer) is opened with
    # ``swmr=True``, which skips that check (a SWMR reader must tolerate a growing file).
    for swmr in (False, True):
        try:
            return h5py.File(path, "r", swmr=swmr), swmr
        except OSError as exc:
            errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            if "already open for write" not in errors[0]:
                break
    text = " / ".join(errors)
    if "truncated" in text:
        raise _fail(path, f"the HDF5 file is truncated ({errors[0]})",
                    f"It was cut short, e.g. by an interrupted copy or a full disk; copy it again or {regen}")
    if "already open for write" in text:
        raise _fail(path, "was left open for writing by a program that did not close it, outside SWMR mode, "
                    "so HDF5 refuses to open it", f"Clear the flag with `h5clear -s FILE` (HDF5 tools), or {regen}")
    raise _fail(path, f"cannot be opened as HDF5 ({errors[0]})",
                f"The file is damaged or still being created; try again in a moment or {regen}")


def _time_series_names(f: h5py.File) -> list[str]:
    """Extra ``(time)`` datasets: any other dataset whose first axis is the ``time`` scale."""
    names = []
    for name, obj in f.items():
        if name in _KNOWN or not isinstance(obj, h5py.Dataset) or obj.ndim != 1:
            continue
        try:
            if "time" in [s.name.rsplit("/", 1)[-1] for s in obj.dims[0].values()]:
                names.append(name)
        except (KeyError, RuntimeError, ValueError, OSError):
            continue
    return names


def _read(f: h5py.File, path: Path) -> Trajectory:
    missing = [name for name in _REQUIRED if not isinstance(f.get(name), h5py.Dataset)]
    if missing:
        have = ", ".join(sorted(f.keys())[:12]) or "nothing"
        raise _fail(path, f"is an HDF5 file but not a gridflow trajectory: it lacks the dataset(s) "
                    f"{', '.join(missing)} (it holds: {have})",
                    "Pass a trajectory written by `gridflow run` (SPEC §2 lists its layout)")
    two_d = "y" in f
    dim = 2 if two_d else 1
    series = ["density", *FRAME_FIELDS, "mean", "covariance"]
    path_flow = "velocity" in f and "kinetic_energy" in f
    if path_flow:
        series += ["velocity", "kinetic_energy"]
    extras = _time_series_names(f)
    try:
        n = min(f[name].shape[0] for name in ("time", *series, *extras))
        shape = tuple(f[a].shape[0] for a in ("x", "y")[:dim])
        checks = {"density": (n, *shape), "log_target": shape, "log_reference": shape, "mean": (n, dim),
                  "covariance": (n, dim, dim), "x_bnds": (shape[0], 2)}
        if two_d:
            checks["y_bnds"] = (shape[1], 2)
        if path_flow:
            checks["velocity"] = (n, dim, *shape)
        for name, expect in checks.items():
            got = f[name].shape
            got = (min(got[0], n), *got[1:]) if name in series else got
            if got != expect:
                raise _fail(path, f"is not a valid gridflow trajectory: dataset {name} has shape {got}, "
                            f"expected {expect}", "Regenerate it with `gridflow run`")

        def get(name: str, frames: bool = False) -> np.ndarray:
            ds = f[name]
            return np.asarray(ds[:n] if frames else ds[()], dtype=np.float64)

        attrs = {str(k): _decode_attr(v) for k, v in f.attrs.items()}
        return Trajectory(
            attrs=attrs, time=get("time", True), x=get("x"), y=get("y") if two_d else None,
            x_bnds=get("x_bnds"), y_bnds=get("y_bnds") if two_d else None,
            density=get("density", True), log_target=get("log_target"), log_reference=get("log_reference"),
            lambda_=get("lambda", True), mass=get("mass", True), kl=get("kl", True),
            kl_tempered=get("kl_tempered", True), fisher_information=get("fisher_information", True),
            mean=get("mean", True), covariance=get("covariance", True),
            velocity=get("velocity", True) if path_flow else None,
            kinetic_energy=get("kinetic_energy", True) if path_flow else None,
            extra={name: get(name, True) for name in extras}, path=str(path))
    except TrajectoryFileError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, RuntimeError, ... on damaged files
        raise _fail(path, f"is damaged: reading it failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                    "If a run is still writing it, try again in a moment; otherwise regenerate it with "
                    "`gridflow run`") from exc


def _to_xarray(path: Path, swmr: bool, frames: int):
    try:
        import xarray as xr
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("as_xarray=True needs xarray and h5netcdf (pip install xarray h5netcdf)") from exc
    try:
        with xr.open_dataset(path, engine="h5netcdf", driver_kwds={"swmr": swmr}) as ds:
            return ds.isel(time=slice(0, frames)).load()
    except Exception as exc:
        raise _fail(path, f"xarray could not open it ({type(exc).__name__}: {exc})",
                    "Open it with gridflow.open_trajectory(path) instead, or regenerate it with `gridflow run`") from exc


def open_trajectory(path: str | os.PathLike, *, as_xarray: bool = False) -> Trajectory | Any:
    """Read a trajectory file into memory.

    Works on complete files, on files still being written and on files left by a killed writer
    (frames written so far; ``status`` stays ``running``).  With ``as_xarray`` the file is opened
    by ``xarray`` (``engine="h5netcdf"``), trimmed to the complete frames, loaded and returned as
    an ``xarray.Dataset``.  Any problem with the file (missing, not HDF5, truncated, damaged, not
    a gridflow trajectory) raises :class:`~gridflow.errors.TrajectoryFileError`.
    """
    path = Path(path)
    f, swmr = _open_h5(path)
    try:
        tr = _read(f, path)
    finally:
        f.close()
    if as_xarray:
        return _to_xarray(path, swmr, len(tr.time))
    return tr
