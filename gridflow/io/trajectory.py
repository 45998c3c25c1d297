"""Trajectory files: netCDF4-compatible HDF5, written frame by frame, readable after a crash.

Layout (docs/file-format.md; names and dimensions are the contract)::

    dimensions  time (unlimited), x, y (2D only), nv = 2, dim = space dimension, dim2 = dim
    time(time)  x(x)  y(y)  x_bnds(x, nv)  y_bnds(y, nv)
    density(time, x[, y])  log_density(time, x[, y])  log_target(x[, y])  log_reference(x[, y])
    lambda, mass, kl, kl_tempered, fisher_information (time)
    mean(time, dim)  covariance(time, dim, dim2)
    velocity(time, dim, x[, y])                             -- path flow only
    kinetic_energy(time)                                    -- path flow; also the transport part of
                                                               fokker-planck and wfr (a^2 I(rho | pi_lambda))
    <extra>(time)                                           -- further per-frame diagnostics

The storage mechanics (netCDF dimension scales made by hand, one frame per chunk, SWMR
writing, temporary name and rename, reading a file left by a killed writer) are shared with
the particle files and described, with the reasons for them, in :mod:`gridflow.io.h5store`.

Design decisions:

* **covariance** has dimensions ``(time, dim, dim2)``.  netCDF allows a dimension to repeat
  within one variable, but xarray refuses most operations on such variables, so the column
  axis uses a second pure dimension ``dim2`` of the same length as ``dim``.
* **netCDF dimensions** (see :mod:`gridflow.io.h5store`): ``time``, ``x``, ``y`` are coordinate
  variables (scales named after themselves); ``nv``, ``dim``, ``dim2`` are pure dimensions.
  Their ``_Netcdf4Dimid`` are time, x[, y], nv, dim, dim2 in that order.
* **Metadata changes.**  SWMR forbids new objects and attributes: before the first frame the
  file is simply rebuilt (under a temporary name again, then renamed); after it, a new
  ``extra`` dataset or a new root attribute reopens the file in ordinary read-write mode for a
  few milliseconds.  Existing attributes (the final ``status``, ``total_steps``) are overwritten
  in place in SWMR mode.  A resumed run continues its file in place
  (:meth:`TrajectoryWriter._continue_in_place`).  A file left by a killed writer is opened by
  :func:`open_trajectory` with ``swmr=True``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gridflow._version import __version__
from gridflow.errors import OutputWriteError, TrajectoryFileError
from gridflow.core.grid import Grid
from gridflow.io.h5store import (LIBVER, STATUSES, AttrValue, FileKind, StatusFile, attr_value, create_dimension,
                              create_variable, decode_attr, fail, first_line, has_hdf5_signature, load_xarray,
                              OutputLock, check_output_path, open_for_append, read_attrs, read_file,
                              remove_stale_temporaries, trim_frames, utc_now)

__all__ = ["FRAME_FIELDS", "MASS_TOLERANCE", "Trajectory", "TrajectoryWriter", "damaged_frames", "open_trajectory"]

FRAME_FIELDS = ("lambda", "mass", "kl", "kl_tempered", "fisher_information")
"""Scalar diagnostics stored once per frame, as ``(time)`` datasets."""

MASS_TOLERANCE = 1e-6
"""How far from 1 a frame's mass may be before the frame counts as damaged (the solver keeps it
to round-off, ~1e-13)."""

RESERVED_ATTRS = frozenset({"status", "gridflow_version", "created"})

_SERIES_CHUNK = 1  # one frame per chunk: written once, never rewritten (see gridflow.io.h5store)
_REGENERATE = "run `gridflow run CASE.toml -o FILE` again to regenerate it"
_FILE_KIND = FileKind(
    noun="trajectory file",
    missing_fix="Check the path, or create the file with `gridflow run CASE.toml -o FILE`",
    not_hdf5="is not an HDF5 file (no HDF5 signature), so it is not a gridflow trajectory",
    not_hdf5_fix="Pass a file written by `gridflow run`",
    unopenable_fix=f"The file is damaged or still being created; try again in a moment or {_REGENERATE}",
    regenerate=_REGENERATE)
_REQUIRED = ("time", "x", "x_bnds", "density", "log_target", "log_reference", *FRAME_FIELDS, "mean", "covariance")
_KNOWN = frozenset(_REQUIRED) | {"y", "y_bnds", "nv", "dim", "dim2", "velocity", "kinetic_energy", "log_density"}

_LONG_NAMES = {
    "time": "time",
    "x": "cell centre, first coordinate",
    "y": "cell centre, second coordinate",
    "x_bnds": "cell edges, first coordinate",
    "y_bnds": "cell edges, second coordinate",
    "density": "cell-average density rho_t",
    "log_density": "log of the cell-average density rho_t (the solver's state, exact below 1e-308)",
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


def _as_float_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    return arr


def _check_extra_name(name: Any) -> None:
    """ValueError unless ``name`` can name an extra diagnostic (non-empty, no '/', not reserved)."""
    if not isinstance(name, str) or not name or "/" in name or name in _KNOWN:
        raise ValueError(f"extra diagnostic name {name!r} is empty, contains '/' or is reserved")


def _log_density(density: Any, log_density: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The frame's log density: ``log_density`` checked, or ``log(density)`` when it is ``None``."""
    if log_density is not None:
        arr = _as_float_array("log_density", log_density, shape)
        if np.isnan(arr).any() or np.isposinf(arr).any():
            raise ValueError("log_density must not be NaN or +inf")
        return arr
    with np.errstate(divide="ignore"):
        return np.log(_as_float_array("density", density, shape))


# Names that other modules imported from here before they moved to gridflow.io.h5store.
_LIBVER = LIBVER
_attr_value, _decode_attr, _utc_now = attr_value, decode_attr, utc_now
_has_hdf5_signature, _remove_stale_temporaries = has_hdf5_signature, remove_stale_temporaries


class TrajectoryWriter(StatusFile):
    """Writes a trajectory frame by frame (knows nothing about the solver).

    All metadata (coordinates, bounds, ``log_target``, ``log_reference``, root attributes with
    ``status = "running"``) is written and flushed when the writer is created; every
    :meth:`write_frame` appends one frame and flushes.  Use as a context manager: on leaving it
    the status becomes ``complete``, ``interrupted`` (KeyboardInterrupt) or ``failed``.

    ``frames`` (keyword arguments of :meth:`write_frame`, one mapping per frame) are the frames a
    resumed run keeps.  With ``in_place`` the existing file at the path, which holds them, is
    continued in place (:meth:`_continue_in_place`: never replaced, so a reader that holds it
    open sees the new frames).  Otherwise, or if it cannot be opened for writing (a file cut
    short by a full disk), they are written into a new file before it takes the final name, so
    no moment exists at which the path holds fewer frames.

    ``extra_names`` declares ``extra`` diagnostics up front.  A name first seen in a later frame
    needs a new dataset, which SWMR forbids: before the first frame the file is rebuilt and
    renamed again (a reader that opened it already would not see the new file), after it the
    file leaves SWMR mode for a moment.  Declared names need neither.

    The writer holds an exclusive lock on the path (``PATH.lock``, see
    :class:`gridflow.io.h5store.OutputLock`) from creation to :meth:`close`, and refuses an output
    path that is not a regular file or a new path, or that is write-protected.
    """

    _KIND = "trajectory"

    def __init__(self, path: str | os.PathLike, *, grid: Grid, log_target: np.ndarray,
                 log_reference: np.ndarray, attrs: Mapping[str, AttrValue], path_flow: bool = False,
                 kinetic_energy: bool = False, frames: Sequence[Mapping[str, Any]] = (),
                 extra_names: Sequence[str] = (), in_place: bool = False) -> None:
        super().__init__(path)
        self._grid = grid
        self._path_flow = bool(path_flow)
        self._kinetic = self._path_flow or bool(kinetic_energy)
        self._extra: list[str] = []
        log_target = _as_float_array("log_target", log_target, grid.shape)
        log_reference = _as_float_array("log_reference", log_reference, grid.shape)
        root = {k: attr_value(k, v) for k, v in attrs.items()}
        if clash := RESERVED_ATTRS & root.keys():
            raise ValueError(f"attributes {sorted(clash)} are set by the writer itself")
        self._log_target, self._log_reference = log_target, log_reference
        self._root = dict(root)
        self._created = utc_now()
        self._initial_frames = list(frames)
        for name in extra_names:
            _check_extra_name(name)
            if name not in self._extra:
                self._extra.append(name)
        for frame in self._initial_frames:
            self._extra.extend(name for name in frame.get("extra") or {} if name not in self._extra)
        self._check_parent()
        try:
            if not (in_place and self._initial_frames and self._path.exists() and self._continue_in_place()):
                self._create_file()
        except BaseException:
            self._release_lock()
            raise

    def _continue_in_place(self) -> bool:
        """Continue the existing file at the path, which holds the ``frames`` given at creation:
        take the lock, open it for writing in place (:func:`gridflow.io.h5store.open_for_append`),
        check that its first frames are at the given times, trim every per-frame dataset to them,
        create any dataset this run needs that the file lacks, write the root attributes
        (``status = running``) and enter SWMR mode.  The file is never replaced, so a reader that
        holds it open sees the new frames.  False (nothing changed, the lock held) if the file
        cannot be continued so (an older layout without ``log_density``, a file cut short by a full
        disk); the caller then rebuilds it (:meth:`_create_file`)."""
        check_output_path(self._path, noun="trajectory file")
        self._lock = OutputLock(self._path, noun="trajectory file")
        f = open_for_append(self._path)
        if f is None:
            return False
        n = len(self._initial_frames)
        times = np.array([float(frame["time"]) for frame in self._initial_frames])
        try:
            usable = (all(isinstance(f.get(name), h5py.Dataset) for name in (*_REQUIRED, "log_density"))
                      and ("y" in f) == (self._grid.dim == 2) and f["time"].shape[0] >= n
                      and np.array_equal(np.asarray(f["time"][:n], dtype=np.float64), times))
        except (OSError, RuntimeError, KeyError, ValueError):
            usable = False
        if not usable:
            f.close()
            return False
        self._file = f
        try:
            axes = ("x", "y")[: self._grid.dim]
            self._dimid = {name: i for i, name in enumerate(("time", *axes, "nv", "dim", "dim2"))}
            self._extra.extend(name for name in _time_series_names(f) if name not in self._extra)
            trim_frames(f, ("time", *self._frame_datasets()), n)
            self._frames = n
            if self._path_flow and "velocity" not in f:
                self._series("velocity", ("time", "dim", *axes), (self._grid.dim, *self._grid.shape), frames=n)
            if self._kinetic and "kinetic_energy" not in f:
                self._series("kinetic_energy", ("time",), (), frames=n)
            for name in self._extra:
                if name not in f:
                    self._extra_series(name)
            for key, value in self._root.items():
                f.attrs[key] = value
            f.attrs["gridflow_version"] = __version__
            f.attrs["status"] = "running"
            f.flush()
            f.swmr_mode = True
        except BaseException:
            self._handles.clear()
            self._file = None
            f.close()
            raise
        self._last_time = float(times[-1])
        self._initial_frames = []
        return True

    # -- creation ---------------------------------------------------------------------------

    def _before_rename(self) -> None:
        """Write the frames given at creation (a resumed run's) before the file takes its name."""
        initial, self._initial_frames = self._initial_frames, []
        for frame in initial:
            self.write_frame(**frame)

    def _recreate(self) -> None:
        """Rebuild the file before its first frame (new extras, new attributes): no unsafe window."""
        self._handles.clear()
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
        return TrajectoryFileError(
            f"Cannot create the trajectory file {self._path} ({first_line(exc)}). Check that its directory is "
            "writable, that the file is not open in another program (HDF5 locks open files), "
            "or choose another output path (-o OUT.h5).")

    def _reopen_error(self, exc: OSError) -> TrajectoryFileError:
        return TrajectoryFileError(
            f"Cannot reopen the trajectory file {self._path} to update it ({exc}). "
            "Close other programs that hold the file open and run again.")

    def _write_error(self, k: int, t: float, exc: Exception) -> OutputWriteError:
        """Frame ``k`` could not be written (the file is already abandoned): say why, how many
        complete frames the file holds (read back from it) and to run --resume."""
        text = str(exc)
        found = re.search(r"error message = '([^']*)'", text)
        reason = found.group(1) if found else first_line(exc)
        try:
            held = open_trajectory(self._path).time
            kept = (f"{len(held)} complete frames (t = {held[0]:g} .. {held[-1]:g})" if len(held)
                    else "no complete frames")
        except TrajectoryFileError:
            kept = f"{k} complete frames" if k else "no complete frames"
        return OutputWriteError(
            f"Cannot write frame {k} (t = {t:g}) to {self._path}: {reason}. The file holds {kept}; free disk "
            "space (or raise the file-size limit, `ulimit -f`) and run the same command with --resume to "
            "continue from the last frame.")

    def _frame_datasets(self) -> Iterable[str]:
        return ("density", "log_density", *FRAME_FIELDS, "mean", "covariance", "velocity", "kinetic_energy",
                *self._extra)

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
        self._series("log_density", ("time", *axes), g.shape)
        for name in FRAME_FIELDS:
            self._series(name, ("time",), (), attrs={"units": "1"} if name == "lambda" else None)
        self._series("mean", ("time", "dim"), (g.dim,))
        self._series("covariance", ("time", "dim", "dim2"), (g.dim, g.dim))
        if self._path_flow:
            self._series("velocity", ("time", "dim", *axes), (g.dim, *g.shape))
        if self._kinetic:
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

    def write_frame(self, *, time: float, density: np.ndarray, lambda_: float, mass: float, kl: float,
                    kl_tempered: float, fisher_information: float, mean: np.ndarray, covariance: np.ndarray,
                    velocity: np.ndarray | None = None, kinetic_energy: float | None = None,
                    extra: Mapping[str, float] | None = None, log_density: np.ndarray | None = None) -> None:
        """Append one frame to every time-dimension dataset, then flush the file.

        ``log_density`` is the log of ``density`` as the solver holds it (finite even where
        ``density`` underflows to 0); without it, ``log(density)`` is stored (-inf where it is 0).

        ``velocity`` (shape ``(dim, *grid.shape)``) is required for a path-flow writer and not
        allowed otherwise; ``kinetic_energy`` likewise for a writer created with ``path_flow`` or
        ``kinetic_energy``.  ``extra`` holds further scalar diagnostics;
        each name becomes a ``(time)`` dataset on first use (NaN in frames that lack it).
        """
        self._require_open()
        g = self._grid
        t = self._next_time(time)
        values: dict[str, np.ndarray] = {
            "density": _as_float_array("density", density, g.shape),
            "log_density": _log_density(density, log_density, g.shape),
            "lambda": np.float64(lambda_), "mass": np.float64(mass), "kl": np.float64(kl),
            "kl_tempered": np.float64(kl_tempered), "fisher_information": np.float64(fisher_information),
            "mean": _as_float_array("mean", mean, (g.dim,)),
            "covariance": _as_float_array("covariance", covariance, (g.dim, g.dim)),
        }
        if self._path_flow:
            if velocity is None or kinetic_energy is None:
                raise ValueError("a path-flow trajectory needs velocity and kinetic_energy in every frame")
            values["velocity"] = _as_float_array("velocity", velocity, (g.dim, *g.shape))
        elif velocity is not None:
            raise ValueError("velocity is written only when path_flow=True")
        if self._kinetic:
            if kinetic_energy is None:
                raise ValueError("this trajectory records kinetic_energy: give it in every frame")
            values["kinetic_energy"] = np.float64(kinetic_energy)
        elif kinetic_energy is not None:
            raise ValueError("kinetic_energy is written only when path_flow=True or kinetic_energy=True")
        extra = dict(extra or {})
        for name in extra:
            _check_extra_name(name)
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
        for name in self._extra:
            values[name] = extra_values.get(name, np.float64(np.nan))
        self._append(t, values)

    def set_attrs(self, **attrs: AttrValue) -> None:
        """Set root attributes (e.g. warnings found during the run); flushed at once.

        An existing attribute given a value of the same type is overwritten in SWMR mode, in
        place (cheap, and safe against a kill); a new one needs a rebuild (before the first
        frame) or a moment outside SWMR mode."""
        values = {k: attr_value(k, v) for k, v in attrs.items()}
        if clash := RESERVED_ATTRS & values.keys():
            raise ValueError(f"attributes {sorted(clash)} are managed by the writer (use close(status=...))")
        if not values:
            return
        self._root.update(values)
        if self._modify_in_place(values):
            return
        if self._frames == 0:
            self._recreate()
            return
        with self._metadata_mode() as f:
            for key, value in values.items():
                f.attrs[key] = value
            self._enter_swmr()


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
    log_density: np.ndarray | None = None
    """log of ``density`` as the solver held it (``None`` in files written before it was stored)."""

    @property
    def status(self) -> str:
        """``running`` (still being written, or its writer was killed), ``complete``, ``failed`` or ``interrupted``."""
        return str(self.attrs.get("status", "unknown"))

    @property
    def dim(self) -> int:
        return 1 if self.y is None else 2

    @property
    def case(self) -> dict[str, Any]:
        """The resolved case stored in the file (the ``case`` attribute, parsed); ``{}`` if absent or unreadable."""
        import tomllib

        try:
            return tomllib.loads(str(self.attrs.get("case", "")))
        except tomllib.TOMLDecodeError:
            return {}

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


def damaged_frames(tr: Trajectory) -> list[tuple[int, float, str]]:
    """Every damaged frame of ``tr`` as ``(index, time, problem)``: a time that is NaN, infinite
    or not after the previous frame's, a density that is not finite, negative, or of mass off 1
    by more than :data:`MASS_TOLERANCE`.  Empty for a sound trajectory."""
    found: list[tuple[int, float, str]] = []
    vol = tr.grid.cell_volume if len(tr.time) else 1.0
    last = -math.inf
    for k, t in enumerate(np.asarray(tr.time, dtype=float)):
        problems = []
        if not math.isfinite(t):
            problems.append(f"time is {float(t)}")
        elif t <= last:
            problems.append(f"time not after the previous frame's ({last:.10g})")
        if math.isfinite(t):
            last = max(last, t)
        rho = np.asarray(tr.density[k], dtype=float)
        if not np.all(np.isfinite(rho)):
            problems.append(f"density not finite in {int(np.count_nonzero(~np.isfinite(rho)))} cells")
        else:
            if np.any(rho < 0):
                problems.append(f"negative density (min {float(rho.min()):.3g})")
            mass = float(rho.sum() * vol)
            if not abs(mass - 1.0) <= MASS_TOLERANCE:
                problems.append(f"mass {mass:.12g}, not 1")
        if problems:
            found.append((k, float(t), "; ".join(problems)))
    return found


# -- reading --------------------------------------------------------------------------------


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


def _complete_frames(time: h5py.Dataset, n: int) -> int:
    """Of the first ``n`` frames, how many are complete: a writer whose last flush failed (disk
    full) can leave a last ``time`` entry that is unreadable or NaN (the fill value); such
    trailing frames are not counted."""
    while n > 0:
        try:
            values = np.asarray(time[:n], dtype=np.float64)
            break
        except (OSError, RuntimeError):
            n -= 1
    else:
        return 0
    while n > 0 and np.isnan(values[n - 1]):
        n -= 1
    return n


def _read(f: h5py.File, path: Path) -> Trajectory:
    missing = [name for name in _REQUIRED if not isinstance(f.get(name), h5py.Dataset)]
    if missing:
        have = ", ".join(sorted(f.keys())[:12]) or "nothing"
        raise fail(path, f"is an HDF5 file but not a gridflow trajectory: it lacks the dataset(s) "
                   f"{', '.join(missing)} (it holds: {have})",
                   "Pass a trajectory written by `gridflow run` (docs/file-format.md lists its layout)")
    two_d = "y" in f
    dim = 2 if two_d else 1
    series = ["density", *FRAME_FIELDS, "mean", "covariance"]
    path_flow = "velocity" in f and "kinetic_energy" in f
    kinetic = "kinetic_energy" in f
    series += ["velocity"] if path_flow else []
    series += ["kinetic_energy"] if kinetic else []
    has_log = isinstance(f.get("log_density"), h5py.Dataset)
    series += ["log_density"] if has_log else []
    extras = _time_series_names(f)
    try:
        n = min(f[name].shape[0] for name in ("time", *series, *extras))
        n = _complete_frames(f["time"], n)
        shape = tuple(f[a].shape[0] for a in ("x", "y")[:dim])
        checks = {"density": (n, *shape), "log_target": shape, "log_reference": shape, "mean": (n, dim),
                  "covariance": (n, dim, dim), "x_bnds": (shape[0], 2)}
        if two_d:
            checks["y_bnds"] = (shape[1], 2)
        if path_flow:
            checks["velocity"] = (n, dim, *shape)
        if has_log:
            checks["log_density"] = (n, *shape)
        for name, expect in checks.items():
            got = f[name].shape
            got = (min(got[0], n), *got[1:]) if name in series else got
            if got != expect:
                raise fail(path, f"is not a valid gridflow trajectory: dataset {name} has shape {got}, "
                           f"expected {expect}", "Regenerate it with `gridflow run`")

        def get(name: str, frames: bool = False) -> np.ndarray:
            ds = f[name]
            return np.asarray(ds[:n] if frames else ds[()], dtype=np.float64)

        attrs = read_attrs(f)
        return Trajectory(
            attrs=attrs, time=get("time", True), x=get("x"), y=get("y") if two_d else None,
            x_bnds=get("x_bnds"), y_bnds=get("y_bnds") if two_d else None,
            density=get("density", True), log_target=get("log_target"), log_reference=get("log_reference"),
            lambda_=get("lambda", True), mass=get("mass", True), kl=get("kl", True),
            kl_tempered=get("kl_tempered", True), fisher_information=get("fisher_information", True),
            mean=get("mean", True), covariance=get("covariance", True),
            velocity=get("velocity", True) if path_flow else None,
            kinetic_energy=get("kinetic_energy", True) if kinetic else None,
            extra={name: get(name, True) for name in extras}, path=str(path),
            log_density=get("log_density", True) if has_log else None)
    except TrajectoryFileError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, RuntimeError, ... on damaged files
        raise fail(path, f"is damaged: reading it failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                   "If a run is still writing it, try again in a moment; otherwise regenerate it with "
                   "`gridflow run`") from exc


def _to_xarray(path: Path, swmr: bool, frames: int):
    try:
        return load_xarray(path, swmr=swmr, frames=frames, fix="Open it with gridflow.open_trajectory(path) "
                           "instead, or regenerate it with `gridflow run`")
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("as_xarray=True needs xarray and h5netcdf (pip install xarray h5netcdf)") from exc


def trajectory_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The root attributes of a trajectory file (``status``, ``case``, ...) without reading its arrays."""
    attrs, _ = read_file(Path(path), _FILE_KIND, lambda f, _path: read_attrs(f))
    return attrs


def open_trajectory(path: str | os.PathLike, *, as_xarray: bool = False) -> Trajectory | Any:
    """Read a trajectory file into memory.

    Works on complete files, on files still being written and on files left by a killed writer
    (frames written so far; ``status`` stays ``running``).  With ``as_xarray`` the file is opened
    by ``xarray`` (``engine="h5netcdf"``), trimmed to the complete frames, loaded and returned as
    an ``xarray.Dataset``.  Any problem with the file (missing, not HDF5, truncated, damaged, not
    a gridflow trajectory) raises :class:`~gridflow.errors.TrajectoryFileError`.
    """
    path = Path(path)
    tr, swmr = read_file(path, _FILE_KIND, _read)
    if as_xarray:
        return _to_xarray(path, swmr, len(tr.time))
    return tr
