"""Writing trajectory files frame by frame (:class:`TrajectoryWriter`; knows nothing about the solver).

The layout is that of :mod:`gridflow.io.trajectory`; the storage mechanics (netCDF dimension
scales made by hand, one frame per chunk, SWMR writing, temporary name and rename) are shared
with the particle files and described, with the reasons for them, in :mod:`gridflow.io.h5store`.

**Metadata changes.**  SWMR forbids new objects and attributes: before the first frame the
file is simply rebuilt (under a temporary name again, then renamed); after it, a new
``extra`` dataset or a new root attribute reopens the file in ordinary read-write mode for a
few milliseconds.  Existing attributes (the final ``status``, ``total_steps``) are overwritten
in place in SWMR mode.  A resumed run continues its file in place
(:meth:`TrajectoryWriter._continue_in_place`).  A file left by a killed writer is opened by
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from gridflow._version import __version__
from gridflow.core.grid import Grid
from gridflow.errors import OutputWriteError, TrajectoryFileError
from gridflow.io.h5store import (AttrValue, attr_value, create_dimension, create_variable, first_line, set_attr,
                                 trim_frames, utc_now)
from gridflow.io.output_safety import OutputLock, check_output_path
from gridflow.io.status_file import StatusFile, open_for_append
from gridflow.io.trajectory import (FRAME_FIELDS, KNOWN_DATASETS, REQUIRED_DATASETS, open_trajectory,
                                    time_series_names)

__all__ = ["RESERVED_ATTRS", "TrajectoryWriter"]

RESERVED_ATTRS = frozenset({"status", "gridflow_version", "created"})

_SERIES_CHUNK = 1  # one frame per chunk: written once, never rewritten (see gridflow.io.h5store)

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
    if not isinstance(name, str) or not name or "/" in name or name in KNOWN_DATASETS:
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

    With ``buffered`` (for short runs, e.g. a sweep's) the frames are kept in memory and
    :meth:`close` writes the whole file in one go, under a temporary name renamed to the path
    (:meth:`StatusFile._write_buffered`): the same layout and attributes, no flush per frame.
    Until then the path is left as it was (a writer killed before closing leaves no new file,
    or a temporary one the next writer removes); ``in_place`` is then ignored.

    The writer holds an exclusive lock on the path (``PATH.lock``, see
    :class:`gridflow.io.h5store.OutputLock`) from creation to :meth:`close`, and refuses an output
    path that is not a regular file or a new path, or that is write-protected.
    """

    _KIND = "trajectory"

    def __init__(self, path: str | os.PathLike, *, grid: Grid, log_target: np.ndarray,
                 log_reference: np.ndarray, attrs: Mapping[str, AttrValue], path_flow: bool = False,
                 kinetic_energy: bool = False, frames: Sequence[Mapping[str, Any]] = (),
                 extra_names: Sequence[str] = (), in_place: bool = False, buffered: bool = False) -> None:
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
            if buffered:
                self._start_buffered()
                self._before_rename()        # the resumed run's frames, into the buffer
            elif not (in_place and self._initial_frames and self._path.exists() and self._continue_in_place()):
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
            usable = (all(isinstance(f.get(name), h5py.Dataset) for name in (*REQUIRED_DATASETS, "log_density"))
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
            self._extra.extend(name for name in time_series_names(f) if name not in self._extra)
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

        set_attr(f.id, "Conventions", "CF-1.10")
        for key, value in self._root.items():
            set_attr(f.id, key, value)
        set_attr(f.id, "boundary", g.boundary)     # replaced, so last in creation order (as ever)
        set_attr(f.id, "gridflow_version", __version__)
        set_attr(f.id, "created", self._created)
        set_attr(f.id, "status", "running")

        # dimension scales: coordinate variables first, then pure dimensions
        self._create("time", ("time",), data=self._prefill.get("time"), shape=(0,), maxshape=(None,),
                     chunks=(_SERIES_CHUNK,), attrs={"units": "1", "axis": "T"}, scale=True)
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
        """Create a growable dataset with the unlimited ``time`` axis first, one frame per chunk
        (holding the buffered frames of this series, if any: :meth:`StatusFile._write_buffered`)."""
        self._create(name, dims, data=self._prefill.get(name), shape=(frames, *frame_shape),
                     maxshape=(None, *frame_shape), chunks=(_SERIES_CHUNK, *frame_shape), attrs=attrs,
                     long_name=long_name)

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
        if self._buffer is None:
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
        self._extra.extend(new)
        if new and self._buffer is None:      # buffered: the datasets are made when the file is written
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
        if self._buffer is not None or self._modify_in_place(values):
            return
        if self._frames == 0:
            self._recreate()
            return
        with self._metadata_mode() as f:
            for key, value in values.items():
                f.attrs[key] = value
            self._enter_swmr()
