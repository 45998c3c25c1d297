"""Trajectory files: the layout, and the reader that makes a :class:`Trajectory` of a file.

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

:mod:`gridflow.io.trajectory_writer` writes these files (:class:`~gridflow.io.trajectory_writer.TrajectoryWriter`),
:mod:`gridflow.io.trajectory_damage` finds damaged frames.  :func:`open_trajectory` reads complete
files, files still being written and files left by a killed writer (opened with ``swmr=True``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gridflow.core.grid import Grid
from gridflow.errors import TrajectoryFileError
from gridflow.io.h5reader import FileKind, fail, load_xarray, read_file
from gridflow.io.h5store import read_attrs

__all__ = ["FILE_KIND", "FRAME_FIELDS", "KNOWN_DATASETS", "REQUIRED_DATASETS", "Trajectory", "open_trajectory",
           "time_series_names", "trajectory_attrs"]

FRAME_FIELDS = ("lambda", "mass", "kl", "kl_tempered", "fisher_information")
"""Scalar diagnostics stored once per frame, as ``(time)`` datasets."""

_REGENERATE = "run `gridflow run CASE.toml -o FILE` again to regenerate it"
FILE_KIND = FileKind(
    noun="trajectory file",
    missing_fix="Check the path, or create the file with `gridflow run CASE.toml -o FILE`",
    not_hdf5="is not an HDF5 file (no HDF5 signature), so it is not a gridflow trajectory",
    not_hdf5_fix="Pass a file written by `gridflow run`",
    unopenable_fix=f"The file is damaged or still being created; try again in a moment or {_REGENERATE}",
    regenerate=_REGENERATE)
REQUIRED_DATASETS = ("time", "x", "x_bnds", "density", "log_target", "log_reference", *FRAME_FIELDS, "mean",
                     "covariance")
"""Datasets every trajectory file holds."""
KNOWN_DATASETS = frozenset(REQUIRED_DATASETS) | {"y", "y_bnds", "nv", "dim", "dim2", "velocity", "kinetic_energy",
                                                 "log_density"}
"""Every dataset name of the layout: an ``extra`` diagnostic may take none of them."""


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


# -- reading --------------------------------------------------------------------------------


def time_series_names(f: h5py.File) -> list[str]:
    """Extra ``(time)`` datasets: any other dataset whose first axis is the ``time`` scale."""
    names = []
    for name, obj in f.items():
        if name in KNOWN_DATASETS or not isinstance(obj, h5py.Dataset) or obj.ndim != 1:
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
    missing = [name for name in REQUIRED_DATASETS if not isinstance(f.get(name), h5py.Dataset)]
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
    extras = time_series_names(f)
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
    attrs, _ = read_file(Path(path), FILE_KIND, lambda f, _path: read_attrs(f))
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
    tr, swmr = read_file(path, FILE_KIND, _read)
    if as_xarray:
        return _to_xarray(path, swmr, len(tr.time))
    return tr
