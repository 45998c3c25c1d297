"""Particle trajectory files: an ensemble over time, netCDF4-compatible HDF5 like the grid files.

Layout (``xarray.open_dataset(path, engine="h5netcdf")`` opens it with named dimensions)::

    dimensions   time (unlimited), particle = N, dim = d (1 or 2)
    time(time)                       saved times (coordinate variable, CF units "1")
    positions(time, particle, dim)   particle positions
    log_weights(time, particle)      optional: normalised log importance weights (logsumexp = 0)
    <series>(time)                   optional per-frame scalars, e.g. lambda, ess, resampled

``particle`` and ``dim`` are pure netCDF dimensions (no coordinate variable).  Root attributes:
``Conventions``, ``gridflow_version``, ``created``, ``status`` (``running`` while writing, then
``complete``, ``failed`` or ``interrupted``) and whatever the caller passes (``gridflow`` itself
writes ``case``, ``sampler``, ``step``, ``particles``, ``seed`` and the sampler's options).

The storage is that of the grid trajectories, from :mod:`gridflow.io.h5store` (which gives the
reasons): every dataset is gzipped with shuffle and fletcher32 checksums, every time series
holds one frame per chunk (``positions`` of very large ensembles is split along ``particle``
too, still one frame per chunk row), so a finished frame is never rewritten; the file is
created under a temporary name, put in SWMR mode and renamed; each frame writes its data,
flushes, then appends ``time`` and flushes again, so ``len(time)`` counts complete frames.  A
file left by a killed writer is readable with :func:`open_particles` (which falls back to
``swmr=True``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gridflow._version import __version__
from gridflow.errors import TrajectoryFileError
from gridflow.io.h5reader import FileKind, fail, load_xarray, read_file
from gridflow.io.h5store import AttrValue, attr_value, create_dimension, create_variable, first_line, read_attrs, utc_now
from gridflow.io.status_file import StatusFile

__all__ = ["ParticleWriter", "ParticleTrajectory", "open_particles", "write_particles"]

_RESERVED_ATTRS = frozenset({"status", "gridflow_version", "created", "Conventions"})
_CORE = ("time", "particle", "dim", "positions", "log_weights")
#: largest chunk of ``positions`` in values (8 MiB of float64)
_MAX_CHUNK_VALUES = 1 << 20
_LONG_NAMES = {
    "time": "time",
    "positions": "particle positions",
    "log_weights": "normalised log importance weights (logsumexp over particles = 0)",
    "lambda": "tempering parameter lambda(t) used by the sampler",
    "ess": "effective sample size 1 / sum w_i^2 of the normalised weights",
    "resampled": "number of resampling events since the previous frame",
}
_FILE_KIND = FileKind(
    noun="particle file",
    missing_fix="Check the path (particle files are written by gridflow.particles.samplers.run_sampler or "
                "`gridflow validate --particles-output`)",
    not_hdf5="is not an HDF5 file, so it is not a particle trajectory",
    not_hdf5_fix="Pass a particle file written by gridflow",
    unopenable_fix="The file is damaged, truncated or still being created; write it again",
    regenerate="write it again with gridflow.particles.samplers.run_sampler or `gridflow validate --particles-output`")


class ParticleWriter(StatusFile):
    """Writes a particle trajectory frame by frame.

    ``particles`` (N) and ``dim`` (1 or 2) fix the frame shape; ``weighted`` adds the
    ``log_weights`` dataset; ``series`` names further per-frame scalars (each a ``(time)``
    dataset, NaN when a frame omits it).  ``attrs`` are root attributes (str, int or float).
    Use as a context manager: on leaving it the status becomes ``complete``, ``interrupted``
    (KeyboardInterrupt) or ``failed``.
    """

    _KIND = "particle"

    def __init__(self, path: str | os.PathLike, *, particles: int, dim: int, weighted: bool = False,
                 series: Sequence[str] = (), attrs: Mapping[str, AttrValue] | None = None) -> None:
        if isinstance(particles, bool) or not isinstance(particles, (int, np.integer)) or particles < 1:
            raise ValueError(f"particles must be a positive integer, got {particles!r}")
        if dim not in (1, 2):
            raise ValueError(f"dim must be 1 or 2, got {dim!r}")
        series = tuple(series)
        for name in series:
            if not isinstance(name, str) or not name or "/" in name or name in _CORE:
                raise ValueError(f"series name {name!r} is empty, contains '/' or is reserved")
        if len(set(series)) != len(series):
            raise ValueError(f"series names must be distinct, got {series}")
        root = {k: attr_value(k, v) for k, v in (attrs or {}).items()}
        if clash := _RESERVED_ATTRS & root.keys():
            raise ValueError(f"attributes {sorted(clash)} are set by the writer itself")
        super().__init__(path)
        self._n, self._dim, self._weighted, self._series = int(particles), int(dim), bool(weighted), series
        self._root = root
        self._check_parent()
        self._create_file()

    # -- creation ---------------------------------------------------------------------------

    def _check_parent(self) -> None:
        parent = self._path.parent
        if not parent.is_dir():
            raise TrajectoryFileError(
                f"Cannot create the particle file {self._path}: the directory {parent} does not exist or is "
                "not a directory; create it or choose another output path.")
        if self._path.is_dir():
            raise TrajectoryFileError(f"Cannot create the particle file {self._path}: that path is a directory; "
                                      "give a file name such as particles.h5 instead.")

    def _error(self, verb: str, exc: OSError) -> TrajectoryFileError:
        return TrajectoryFileError(
            f"Cannot {verb} the particle file {self._path} ({first_line(exc)}). Check that its directory is writable, "
            "that the disk is not full and that no other program holds the file open.")

    def _create_error(self, exc: OSError) -> TrajectoryFileError:
        return self._error("create", exc)

    def _reopen_error(self, exc: OSError) -> TrajectoryFileError:
        return self._error("reopen", exc)

    def _write_error(self, k: int, t: float, exc: OSError) -> TrajectoryFileError:
        return self._error(f"write frame {k} (t = {t:g}) to", exc)

    def _frame_datasets(self) -> Iterable[str]:
        return ("positions", "log_weights", *self._series)

    def _write_metadata(self) -> None:
        f = self._file
        dimid = {"time": 0, "particle": 1, "dim": 2}
        f.attrs["Conventions"] = "CF-1.10"
        for key, value in self._root.items():
            f.attrs[key] = value
        f.attrs["gridflow_version"] = __version__
        f.attrs["created"] = utc_now()
        f.attrs["status"] = "running"
        create_variable(f, "time", ("time",), dimid, long_name=_LONG_NAMES["time"], shape=(0,), maxshape=(None,),
                        chunks=(1,), attrs={"units": "1", "axis": "T"}, scale=True)
        create_dimension(f, "particle", self._n, dimid)
        create_dimension(f, "dim", self._dim, dimid)
        rows = max(1, min(self._n, _MAX_CHUNK_VALUES // self._dim))
        create_variable(f, "positions", ("time", "particle", "dim"), dimid, long_name=_LONG_NAMES["positions"],
                        shape=(0, self._n, self._dim), maxshape=(None, self._n, self._dim),
                        chunks=(1, rows, self._dim), attrs={"units": "1"})
        if self._weighted:
            create_variable(f, "log_weights", ("time", "particle"), dimid, long_name=_LONG_NAMES["log_weights"],
                            shape=(0, self._n), maxshape=(None, self._n),
                            chunks=(1, min(self._n, _MAX_CHUNK_VALUES)), attrs={"units": "1"})
        for name in self._series:
            create_variable(f, name, ("time",), dimid, long_name=_LONG_NAMES.get(name, name.replace("_", " ")),
                            shape=(0,), maxshape=(None,), chunks=(1,))

    # -- writing ----------------------------------------------------------------------------

    def write_frame(self, *, time: float, positions: np.ndarray, log_weights: np.ndarray | None = None,
                    **series: float) -> None:
        """Append one frame (``positions`` of shape (N, d), or (N,) in 1D) and flush.

        ``log_weights`` (N,) is required for a weighted writer and stored normalised
        (logsumexp = 0); ``series`` gives values of the declared per-frame scalars.
        """
        self._require_open()
        t = self._next_time(time)
        x = np.asarray(positions, dtype=np.float64)
        if x.ndim == 1 and self._dim == 1:
            x = x[:, None]
        if x.shape != (self._n, self._dim):
            raise ValueError(f"positions must have shape {(self._n, self._dim)}, got {x.shape}")
        values: dict[str, Any] = {"positions": x}
        if self._weighted:
            if log_weights is None:
                raise ValueError("a weighted particle writer needs log_weights in every frame")
            lw = np.asarray(log_weights, dtype=np.float64).reshape(-1)
            if lw.shape != (self._n,) or np.any(np.isnan(lw)) or np.any(lw == np.inf) or not np.any(np.isfinite(lw)):
                raise ValueError(f"log_weights must be {self._n} values, not NaN or +inf, not all -inf")
            top = lw[np.isfinite(lw)].max()
            with np.errstate(under="ignore"):
                values["log_weights"] = lw - (top + math.log(np.sum(np.exp(lw - top))))
        elif log_weights is not None:
            raise ValueError("log_weights are written only by a weighted writer (weighted=True)")
        unknown = set(series) - set(self._series)
        if unknown:
            raise ValueError(f"undeclared series {sorted(unknown)}; declare them with series=(...) at creation")
        for name in self._series:
            values[name] = np.float64(series.get(name, np.nan))
        self._append(t, values)


# -- reading --------------------------------------------------------------------------------


@dataclass
class ParticleTrajectory:
    """A particle trajectory read into memory: ``positions`` (time, particle, dim), ``log_weights``
    (time, particle) or None, ``series`` (name -> (time,) array), root ``attrs``."""

    attrs: dict[str, Any]
    time: np.ndarray
    positions: np.ndarray
    log_weights: np.ndarray | None = None
    series: dict[str, np.ndarray] = field(default_factory=dict)
    path: str = ""

    @property
    def status(self) -> str:
        return str(self.attrs.get("status", "unknown"))

    @property
    def particles(self) -> int:
        return int(self.positions.shape[1])

    @property
    def dim(self) -> int:
        return int(self.positions.shape[2])

    @property
    def weighted(self) -> bool:
        return self.log_weights is not None

    def frame(self, time: float) -> int:
        """Index of the frame saved at ``time`` (match within 1e-9 relative)."""
        t = float(time)
        if len(self.time) and math.isfinite(t):
            diff = np.abs(self.time - t)
            i = int(np.argmin(diff))
            if diff[i] <= 1e-9 * max(abs(t), abs(float(self.time[i])), 1e-300):
                return i
        held = (f"t = {self.time[0]:.10g} .. {self.time[-1]:.10g} ({len(self.time)} frames)" if len(self.time)
                else "no frames")
        raise TrajectoryFileError(f"No particle frame at t = {t:g} in {self.path or 'the particle file'}: it holds "
                                  f"{held}. Ask for one of the saved times.")

    def ensemble(self, time: float) -> tuple[np.ndarray, np.ndarray | None]:
        """``(positions (N, d), normalised weights (N,) or None)`` at ``time``, ready for
        :func:`gridflow.analysis.metrics.compare`."""
        i = self.frame(time)
        if self.log_weights is None:
            return self.positions[i], None
        lw = self.log_weights[i]
        with np.errstate(under="ignore"):
            w = np.exp(lw - lw.max())
        return self.positions[i], w / w.sum()


def _read(f: h5py.File, path: Path) -> ParticleTrajectory:
    if not isinstance(f.get("positions"), h5py.Dataset) or not isinstance(f.get("time"), h5py.Dataset):
        have = ", ".join(sorted(f.keys())[:12]) or "nothing"
        raise fail(path, f"is an HDF5 file but not a particle trajectory: it lacks 'time' or 'positions' (it "
                   f"holds: {have})", "Pass a particle file (datasets time, positions(time, particle, dim))")
    try:
        names = [name for name, obj in f.items() if name not in _CORE and isinstance(obj, h5py.Dataset)
                 and obj.ndim == 1 and obj.maxshape[0] is None]
        pos = f["positions"]
        if pos.ndim != 3 or pos.shape[2] not in (1, 2):
            raise fail(path, f"dataset positions has shape {pos.shape}, expected (time, particle, 1 or 2)",
                       "Write the file again")
        lw = f.get("log_weights")
        n = min(ds.shape[0] for ds in (f["time"], pos, *(() if lw is None else (lw,)), *(f[k] for k in names)))
        if lw is not None and lw.shape[1:] != pos.shape[1:2]:
            raise fail(path, f"dataset log_weights has shape {lw.shape}, expected (time, {pos.shape[1]})",
                       "Write the file again")
        attrs = read_attrs(f)
        return ParticleTrajectory(
            attrs=attrs, time=np.asarray(f["time"][:n], dtype=np.float64),
            positions=np.asarray(pos[:n], dtype=np.float64),
            log_weights=None if lw is None else np.asarray(lw[:n], dtype=np.float64),
            series={k: np.asarray(f[k][:n], dtype=np.float64) for k in names}, path=str(path))
    except TrajectoryFileError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, RuntimeError, ... on damaged files
        raise fail(path, f"is damaged: reading it failed ({type(exc).__name__}: {exc})",
                   "Write the file again") from exc


def open_particles(path: str | os.PathLike, *, as_xarray: bool = False) -> ParticleTrajectory | Any:
    """Read a particle trajectory (complete, still being written, or left by a killed writer).

    With ``as_xarray`` the file is opened by xarray (``engine="h5netcdf"``), trimmed to the
    complete frames and loaded.  Problems raise :class:`~gridflow.errors.TrajectoryFileError`.
    """
    path = Path(path)
    tr, swmr = read_file(path, _FILE_KIND, _read)
    if not as_xarray:
        return tr
    return load_xarray(path, swmr=swmr, frames=len(tr.time),
                       fix="Open it with gridflow.io.particle_file.open_particles(path) instead")


#: frame attribute of a series whose name is not a valid attribute name
_ATTRIBUTES = {"lambda": "lam"}


def write_particles(path: str | os.PathLike, frames: Sequence, *, attrs: Mapping[str, AttrValue] | None = None,
                    series: Sequence[str] = ("lambda", "ess", "resampled")) -> Path:
    """Write a list of sampler frames (objects with ``time``, ``positions``, ``log_weights`` and
    the attributes named in ``series``, e.g. :class:`gridflow.particles.samplers.ParticleFrame`) to ``path``."""
    frames = list(frames)
    if not frames:
        raise ValueError("no frames to write")
    first = frames[0]
    n, d = np.asarray(first.positions).reshape(len(first.positions), -1).shape
    weighted = first.log_weights is not None
    with ParticleWriter(path, particles=n, dim=d, weighted=weighted, series=series, attrs=attrs) as w:
        for fr in frames:
            w.write_frame(time=fr.time, positions=fr.positions, log_weights=fr.log_weights,
                          **{k: float(getattr(fr, _ATTRIBUTES.get(k, k))) for k in series})
    return Path(path)
