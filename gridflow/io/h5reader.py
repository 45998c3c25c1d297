"""Opening an HDF5 trajectory or particle file for reading, with specific error messages.

:func:`open_readonly` tells apart a missing path, a directory, a file that is not HDF5, a
truncated file and one left open for writing, in the words of a :class:`FileKind`; it opens a
file left by a (killed) SWMR writer with ``swmr=True``.  :func:`read_file` wraps a reader
function, :func:`load_xarray` opens a file with xarray.  Reasons: :mod:`gridflow.io.h5store`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import h5py

from gridflow.errors import TrajectoryFileError
from gridflow.io.h5store import first_line
from gridflow.io.superblock import has_hdf5_signature, left_by_swmr_writer

__all__ = ["FileKind", "fail", "load_xarray", "open_readonly", "read_file"]

T = TypeVar("T")


def fail(path: Path, problem: str, fix: str) -> TrajectoryFileError:
    """The error for a file that cannot be read: ``"PATH: PROBLEM. FIX"``."""
    return TrajectoryFileError(f"{path}: {problem}. {fix}")


@dataclass(frozen=True)
class FileKind:
    """How :func:`open_readonly` names a kind of file in its errors, and the fixes it suggests."""

    noun: str
    """E.g. ``"trajectory file"``: "no such {noun}", "is a directory, not a {noun}"."""
    missing_fix: str
    """The fix for a path that does not exist."""
    not_hdf5: str
    """The problem of a file without the HDF5 signature."""
    not_hdf5_fix: str
    """The fix for a file without the HDF5 signature."""
    unopenable_fix: str
    """The fix for a file that HDF5 cannot open (for a reason not told apart below)."""
    regenerate: str | None = None
    """How to make the file again (e.g. "run ... again to regenerate it").  Given, a truncated file
    and one left open for writing outside SWMR get their own messages (the latter with an
    ``h5clear`` hint); ``None``, they get the general one with :attr:`unopenable_fix`."""


def open_readonly(path: Path, kind: FileKind) -> tuple[h5py.File, bool]:
    """Open ``path`` read-only; returns the file and whether SWMR reading was needed.

    A missing path, a directory, an unreadable file, a file that is not HDF5 or that HDF5
    cannot open raises :class:`~gridflow.errors.TrajectoryFileError` in the words of ``kind``.
    """
    if not path.exists():
        raise fail(path, f"no such {kind.noun}", kind.missing_fix)
    if path.is_dir():
        raise fail(path, f"is a directory, not a {kind.noun}", "Give the path of the .h5 file")
    try:
        signed = has_hdf5_signature(path)
    except OSError as exc:
        raise fail(path, f"cannot be read ({exc.strerror or exc})", "Check the file's permissions") from exc
    if not signed:
        raise fail(path, kind.not_hdf5, kind.not_hdf5_fix)
    errors = []
    # A plain open first: it checks the file's length and so detects truncation.  Only a file
    # whose "open for writing" flags are set (a live or killed SWMR writer) is opened with
    # ``swmr=True``, which skips that check (a SWMR reader must tolerate a growing file); so is
    # a "truncated" file that a SWMR writer left (its last flush failed: disk full, ...).
    for swmr in (False, True):
        try:
            return h5py.File(path, "r", swmr=swmr), swmr
        except OSError as exc:
            errors.append(first_line(exc))
            if "already open for write" not in errors[0] and not (
                    "truncated" in errors[0] and left_by_swmr_writer(path)):
                break
    text = " / ".join(errors)
    regen = kind.regenerate
    if regen is not None and "truncated" in text:
        raise fail(path, f"the HDF5 file is truncated ({errors[0]})",
                   f"It was cut short, e.g. by an interrupted copy or a full disk; copy it again or {regen}")
    if regen is not None and "already open for write" in text:
        raise fail(path, "was left open for writing by a program that did not close it, outside SWMR mode, "
                   "so HDF5 refuses to open it", f"Clear the flag with `h5clear -s FILE` (HDF5 tools), or {regen}")
    raise fail(path, f"cannot be opened as HDF5 ({errors[0]})", kind.unopenable_fix)


def read_file(path: Path, kind: FileKind, read: Callable[[h5py.File, Path], T]) -> tuple[T, bool]:
    """``read(file, path)`` on ``path`` opened by :func:`open_readonly` (closed after); returns
    its result and whether SWMR reading was needed."""
    f, swmr = open_readonly(path, kind)
    try:
        return read(f, path), swmr
    finally:
        f.close()


def load_xarray(path: Path, *, swmr: bool, frames: int, fix: str) -> Any:
    """``path`` opened by xarray (``engine="h5netcdf"``, SWMR if the reader needed it), trimmed
    to its first ``frames`` (complete) frames and loaded.  Without xarray, ``ImportError``;
    any other failure raises :func:`fail` with ``fix``."""
    import xarray as xr

    try:
        with xr.open_dataset(path, engine="h5netcdf", driver_kwds={"swmr": swmr}) as ds:
            return ds.isel(time=slice(0, frames)).load()
    except Exception as exc:
        raise fail(path, f"xarray could not open it ({type(exc).__name__}: {exc})", fix) from exc
