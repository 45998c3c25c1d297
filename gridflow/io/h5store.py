"""netCDF4-compatible, crash-safe HDF5 storage shared by the grid and particle trajectory files.

:mod:`gridflow.io.trajectory` (grid trajectories) and :mod:`gridflow.io.particle_file` (particle
ensembles) lay out their own datasets; this module holds what they share: creating netCDF
variables and dimensions by hand with h5py (:func:`create_variable`, :func:`create_dimension`),
appending one frame (:func:`append_frame`), leaving SWMR mode for a metadata change
(:func:`reopen_writable`), the writer's life cycle with its ``status`` attribute
(:class:`StatusFile`), and opening a file for reading with specific error messages
(:func:`open_readonly`).

Design decisions:

* **netCDF compatibility** is made by hand with h5py, as netCDF-C/h5netcdf do it: every axis
  has exactly one HDF5 dimension scale.  A coordinate variable (e.g. ``time``) is the scale
  named after itself; a pure dimension (no coordinate variable) is an empty ``float32`` scale
  whose ``NAME`` is ``"This is a netCDF dimension but not a netCDF variable."`` followed by
  the length in ten characters.  Each scale carries ``_Netcdf4Dimid`` (the dimension's id);
  every variable carries ``_Netcdf4Coordinates`` (the ids of its dimensions).  Link and
  attribute creation order are tracked (netCDF-C requires it).  String attributes are UTF-8.
* Every dataset is chunked, gzipped (level 4), with shuffle and fletcher32 checksums.
  Every dataset with a ``time`` axis holds **one frame per chunk**, so a chunk is written
  exactly once and never rewritten.  (An earlier layout packed 1024 frames of each scalar
  series into a chunk that was rewritten at every frame; a SIGKILL can interrupt a multi-page
  ``write`` between pages, and about one kill in a hundred and fifty left such a chunk torn,
  failing its checksum.  A chunk that is never rewritten cannot be torn once its frame is
  complete.)  Growing datasets have an HDF5 fill value of NaN and grow by ``resize``.
* **Crash safety.**  A plain HDF5 file killed while writing can be corrupt (in our tests about
  one kill in fifteen left chunks that failed their checksum), so a writer works in SWMR
  mode (file format of HDF5 1.10, ``libver=("v110", "v110")``): metadata is written and
  flushed at creation, then SWMR writing starts.  Each frame writes every per-frame dataset,
  flushes, writes ``time`` and flushes again (:func:`append_frame`), so ``len(time)`` counts
  complete frames; the readers also trim every series to the shortest one and drop a trailing
  ``time`` that is NaN or unreadable.  SWMR forbids new objects and attributes, but allows
  overwriting an existing attribute of the same type: the final ``status`` (and e.g. a running
  step count) is written that way, in place, without leaving SWMR mode, so a kill at any
  moment leaves a readable file whose ``status`` is ``running`` or the final one, and a SWMR
  reader may stay open to the end.  Only a truly new dataset or attribute after the first
  frame reopens the file in ordinary read-write mode for a few milliseconds
  (:func:`reopen_writable`); writers avoid it by declaring everything up front.  A file left by
  a killed SWMR writer still has its "open for writing" flags set; :func:`open_readonly` then
  opens it with ``swmr=True``.
* The file is created under a temporary name (``.NAME.PID.tmp`` beside it) and renamed to its
  final name as soon as it is in SWMR mode, before its first frame; from then on it is never
  replaced, so a reader that opened it sees every frame.  (A rebuild before the first frame,
  for an undeclared extra dataset or attribute, renames again.)  A resumed run continues the
  file in place (:func:`open_for_append`: the flags a killed writer left are cleared as
  ``h5clear -s`` does, :func:`clear_writer_flags`; HDF5's own file locking is off since
  :class:`OutputLock` serialises writers and a SWMR reader's lock must not block the writer), so a
  reader that holds the file sees the new frames.  Only a file that cannot be opened so (cut
  short by a full disk, older layout) is rebuilt: its frames are written into a new file before
  the rename, so the path never holds fewer frames.
  Temporary files of killed writers are removed by the next writer (:func:`remove_stale_temporaries`).
* **Output safety.**  Only a regular file or a new path is written (:func:`check_output_path`:
  devices, FIFOs, sockets, directories and write-protected files are refused), and one writer
  at a time holds an exclusive ``flock`` on the side file ``PATH.lock`` (:class:`OutputLock`;
  the kernel drops it when the holder dies).  The user's existing file is only ever replaced
  by a rename, never written into.
* **I/O errors.**  A write that fails mid-run (disk full, file-size limit) leaves HDF5 unable
  to close the file (it crashes trying to flush again), so the writer points the file's
  descriptor at the null device and then closes it (:meth:`StatusFile._abandon`): the file on
  disk keeps its complete frames with ``status = running``; it may be shorter than its
  superblock says, and :func:`open_readonly` reads such a SWMR-flagged file with ``swmr=True``.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import math
import os
import stat
import time as _time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import h5py
import numpy as np

from gridflow.errors import TrajectoryFileError

__all__ = [
    "FILTERS", "LIBVER", "STATUSES", "AttrValue", "FileKind", "StatusFile", "append_frame", "attr_value",
    "create_dimension", "create_variable", "decode_attr", "fail", "first_line", "has_hdf5_signature",
    "left_by_swmr_writer",
    "load_xarray", "open_readonly", "read_attrs", "read_file", "remove_stale_temporaries", "reopen_writable",
    "OutputLock", "check_output_path", "clear_writer_flags", "open_for_append", "lock_path", "temporary_path", "trim_frames", "utc_now",
]

STATUSES = ("running", "complete", "failed", "interrupted")
"""Values of the root ``status`` attribute (``running`` while written, or if the writer was killed)."""

LIBVER = ("v110", "v110")
"""HDF5 file format bounds of every file: that of HDF5 1.10, which SWMR needs."""

FILTERS: dict[str, Any] = {"compression": "gzip", "compression_opts": 4, "shuffle": True, "fletcher32": True}
"""Filters of every variable: gzip level 4, shuffle, fletcher32 checksums."""

REOPEN_TIMEOUT = 10.0
"""Seconds :func:`reopen_writable` keeps retrying while another program holds the file."""

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_NOT_A_VARIABLE = "This is a netCDF dimension but not a netCDF variable."

AttrValue = str | int | float
"""A root attribute value as the writers store it."""

T = TypeVar("T")


# -- attributes -----------------------------------------------------------------------------


def utc_now() -> str:
    """The current UTC time as ``YYYY-MM-DDThh:mm:ssZ`` (the ``created`` attribute)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def attr_value(key: str, value: Any) -> AttrValue:
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


def decode_attr(value: Any) -> Any:
    """An HDF5 attribute value as plain Python (str for strings, scalars for 1-element arrays)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return decode_attr(value.reshape(()).item())
        return [decode_attr(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_attrs(f: h5py.File) -> dict[str, Any]:
    """The root attributes of ``f`` as plain Python values (see :func:`decode_attr`)."""
    return {str(k): decode_attr(v) for k, v in f.attrs.items()}


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (h5py's run on), or its type name if it has none."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# -- netCDF4 variables and dimensions -------------------------------------------------------


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
        ds = f.create_dataset(name, data=data, chunks=chunks or data.shape, track_order=True, **FILTERS)
    else:
        ds = f.create_dataset(name, shape=shape, maxshape=maxshape, chunks=chunks, dtype=np.float64,
                              fillvalue=np.nan, track_order=True, **FILTERS)
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


# -- writing --------------------------------------------------------------------------------


def check_output_path(path: Path, *, noun: str) -> None:
    """Refuse an output ``path`` that gridflow must not write: anything but a regular file or a new
    path (a device, FIFO, socket or directory), a write-protected file, a path with a NUL byte, or
    one whose directory is missing.  Raises :class:`TrajectoryFileError` saying what and how to fix;
    ``noun`` (e.g. ``"trajectory file"``) names the file in it.  Writes nothing."""
    head = f"Cannot write the {noun} {path}"
    if "\x00" in str(path):
        raise TrajectoryFileError(f"{head}: the path contains a NUL byte; give an ordinary file name (-o OUT.h5).")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise TrajectoryFileError(f"{head}: it cannot be examined ({exc.strerror or exc}); "
                                  "choose another output path (-o OUT.h5).") from exc
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise TrajectoryFileError(f"{head}: that path is a directory; give a file name such as out.h5 inside it.")
        if not stat.S_ISREG(st.st_mode):
            what = ("a character device" if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode)
                    else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket"
                    if stat.S_ISSOCK(st.st_mode) else "not a regular file")
            raise TrajectoryFileError(
                f"{head}: it is {what}, and gridflow writes only to a regular file or a new path (it would "
                "replace the special file). Choose another output path (-o OUT.h5).")
        if not (st.st_mode & 0o222) or not os.access(path, os.W_OK):
            raise TrajectoryFileError(
                f"{head}: the existing file is write-protected, and gridflow does not replace it. Make it "
                f"writable (chmod u+w {path}) if it may be overwritten, or choose another output path (-o OUT.h5).")
    parent = path.parent
    if not parent.is_dir():
        problem = "does not exist" if not parent.exists() else "is not a directory"
        raise TrajectoryFileError(f"{head}: the directory {parent} {problem}; create the directory or choose "
                                  "another output path (-o OUT.h5).")


def lock_path(path: Path) -> Path:
    """The side file whose ``flock`` marks ``path`` as being written: ``PATH.lock``."""
    return path.with_name(f"{path.name}.lock")


class OutputLock:
    """An exclusive, non-blocking ``flock`` on ``PATH.lock`` held while ``path`` is written.

    The lock file holds the writer's process id (named in the error a second writer gets).  The
    kernel drops the lock when its holder dies, so a killed writer never blocks the next one; a
    released lock file is deleted (after checking, under the lock, that it is still the file at
    ``PATH.lock``).
    """

    def __init__(self, path: Path, *, noun: str) -> None:
        """Take the lock on ``path``; :class:`TrajectoryFileError` if another process holds it or
        the lock file cannot be created."""
        self.path = lock_path(path)
        self._fd: int | None = None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise TrajectoryFileError(
                    f"Cannot write the {noun} {path}: the lock file {self.path} cannot be created "
                    f"({exc.strerror or exc}). Check that the directory {path.parent} is writable, or choose "
                    "another output path (-o OUT.h5).") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_small(fd)
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                    raise TrajectoryFileError(f"Cannot lock {self.path} ({exc.strerror or exc}); choose "
                                              "another output path (-o OUT.h5).") from exc
                who = f"process {holder}" if holder.isdigit() else "another process"
                raise TrajectoryFileError(
                    f"Cannot write the {noun} {path}: {who} is writing it (it holds the lock {self.path}). "
                    "Wait for that run to finish or stop it, or choose another output path (-o OUT.h5).") from exc
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the previous holder deleted it between our open and flock: retry
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        """Delete the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None


def _read_small(fd: int) -> str:
    try:
        return os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""


def temporary_path(path: Path) -> Path:
    """The name under which this process creates ``path``: ``.NAME.PID.tmp`` beside it."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_stale_temporaries(path: Path) -> None:
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


def append_frame(f: h5py.File, k: int, t: float, values: Mapping[str, Any],
                 handles: dict[str, h5py.Dataset] | None = None) -> None:
    """Write frame ``k`` at time ``t``: each ``values[name]`` into dataset ``name`` (grown to
    ``k + 1`` along its first axis), flush, then ``time[k] = t`` and flush again, so that
    ``len(time)`` counts complete frames.  h5py's ``OSError``/``RuntimeError`` propagates.

    ``handles`` caches the open datasets across frames: a dataset handle closed right after a
    failed write would write again from its destructor, where the error cannot be caught."""
    handles = {} if handles is None else handles
    for name, value in values.items():
        ds = handles.get(name) or handles.setdefault(name, f[name])
        ds.resize(k + 1, axis=0)
        ds[k] = value
    f.flush()
    ds = handles.get("time") or handles.setdefault("time", f["time"])
    ds.resize((k + 1,))
    ds[k] = t
    f.flush()


def _lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, the checksum of HDF5 metadata (superblock v2/v3)."""
    m = 0xFFFFFFFF

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & m

    n = len(data)
    a = b = c = (0xDEADBEEF + n + initval) & m
    k = 0
    while n > 12:
        a = (a + int.from_bytes(data[k:k + 4], "little")) & m
        b = (b + int.from_bytes(data[k + 4:k + 8], "little")) & m
        c = (c + int.from_bytes(data[k + 8:k + 12], "little")) & m
        a = (a - c) & m; a ^= rot(c, 4); c = (c + b) & m        # noqa: E702 - lookup3's mix, as published
        b = (b - a) & m; b ^= rot(a, 6); a = (a + c) & m        # noqa: E702
        c = (c - b) & m; c ^= rot(b, 8); b = (b + a) & m        # noqa: E702
        a = (a - c) & m; a ^= rot(c, 16); c = (c + b) & m       # noqa: E702
        b = (b - a) & m; b ^= rot(a, 19); a = (a + c) & m       # noqa: E702
        c = (c - b) & m; c ^= rot(b, 4); b = (b + a) & m        # noqa: E702
        n -= 12
        k += 12
    if n == 0:
        return c
    tail = data[k:k + n] + bytes(12 - n)
    a = (a + int.from_bytes(tail[0:4], "little")) & m
    b = (b + int.from_bytes(tail[4:8], "little")) & m
    c = (c + int.from_bytes(tail[8:12], "little")) & m
    c ^= b; c = (c - rot(b, 14)) & m                            # noqa: E702 - lookup3's final
    a ^= c; a = (a - rot(c, 11)) & m                            # noqa: E702
    b ^= a; b = (b - rot(a, 25)) & m                            # noqa: E702
    c ^= b; c = (c - rot(b, 16)) & m                            # noqa: E702
    a ^= c; a = (a - rot(c, 4)) & m                             # noqa: E702
    b ^= a; b = (b - rot(a, 14)) & m                            # noqa: E702
    c ^= b; c = (c - rot(b, 24)) & m                            # noqa: E702
    return c


def clear_writer_flags(path: Path) -> bool:
    """Clear the "open for (SWMR) writing" flags a killed writer left in ``path``'s superblock
    (what ``h5clear -s`` does), so that the file can be opened for writing again.

    Only a version 3 superblock with 8-byte addresses whose checksum verifies, in a file at least
    as long as its superblock's end-of-file address (nothing was lost by a failed flush), is
    changed: the 48-byte superblock is rewritten with the flags byte cleared and its checksum
    updated, in one ``pwrite`` (one disk sector).  True if the flags are
    clear afterwards.  The caller must hold the output lock (no writer is alive)."""
    try:
        offset = _signature_offset(path)
        if offset is None:
            return False
        with open(path, "r+b") as fh:
            fh.seek(offset)
            block = fh.read(48)
            if len(block) < 48 or block[8] != 3 or block[9] != 8:
                return False
            if block[11] == 0:
                return True
            if _lookup3(block[:44]) != int.from_bytes(block[44:48], "little"):
                return False
            eof = int.from_bytes(block[28:36], "little")
            if os.fstat(fh.fileno()).st_size < offset + eof:
                return False
            head = block[:11] + b"\x00" + block[12:44]
            os.pwrite(fh.fileno(), head + _lookup3(head).to_bytes(4, "little"), offset)
            os.fsync(fh.fileno())
            return os.pread(fh.fileno(), 1, offset + 11) == b"\x00"
    except OSError:
        return False


def open_for_append(path: Path) -> h5py.File | None:
    """Open the existing file ``path`` for writing in place (read-write, outside SWMR mode, HDF5
    file locking off: the caller holds the :class:`OutputLock`, and a SWMR reader's lock must not
    stop the writer).  The flags of a killed writer are cleared first (:func:`clear_writer_flags`).
    ``None`` if the file cannot be opened so (then it has not been changed, except for those flags)."""
    if left_by_swmr_writer(path) and not clear_writer_flags(path):
        return None
    try:
        return h5py.File(path, "r+", libver=LIBVER, locking=False)
    except (OSError, RuntimeError, ValueError, TypeError):
        return None


def trim_frames(f: h5py.File, names: Iterable[str], frames: int) -> None:
    """Shrink the datasets ``names`` (those present) to ``frames`` along the first axis: drops
    the part of a frame whose ``time`` was never written."""
    for name in names:
        if name in f and f[name].shape[0] != frames:
            f[name].resize(frames, axis=0)


def reopen_writable(path: Path, *, error: Callable[[OSError], Exception],
                    timeout: float = REOPEN_TIMEOUT) -> h5py.File:
    """Open the (closed) file ``path`` in ordinary read-write mode, outside SWMR, for a
    metadata change; retry for ``timeout`` seconds while it is locked, then raise
    ``error(exc)``."""
    deadline = _time.monotonic() + timeout
    while True:
        try:
            return h5py.File(path, "r+", libver=LIBVER)
        except OSError as exc:  # e.g. locked for a moment by a plain reader
            if _time.monotonic() > deadline:
                raise error(exc) from exc
            _time.sleep(0.05)


class StatusFile:
    """Base of a frame-by-frame writer: a file in SWMR mode whose ``status`` records the end.

    It creates the file (:meth:`_create_file`: temporary name, metadata, SWMR mode, rename),
    appends frames (:meth:`_append`), leaves SWMR mode for metadata changes
    (:meth:`_metadata_mode`) and closes with a ``status``.  Used as a context manager, the
    status becomes ``complete``, ``interrupted`` (KeyboardInterrupt) or ``failed``.

    A subclass sets :attr:`_KIND` (``"trajectory"``, ``"particle"``: the word in messages),
    calls ``StatusFile.__init__`` and then :meth:`_create_file`, and implements
    :meth:`_write_metadata`, :meth:`_frame_datasets` and the three ``_*_error`` methods.
    """

    _KIND: ClassVar[str]

    def __init__(self, path: str | os.PathLike) -> None:
        self._path = Path(path)
        self._file: h5py.File | None = None
        self._frames = 0
        self._last_time = -math.inf
        self._lock: OutputLock | None = None
        self._handles: dict[str, h5py.Dataset] = {}

    # -- hooks --------------------------------------------------------------------------------

    def _write_metadata(self) -> None:
        """Write the root attributes and create every dataset of the empty file ``self._file``."""
        raise NotImplementedError

    def _before_rename(self) -> None:
        """Called in SWMR mode, before the new file takes its final name (default: nothing)."""

    def _frame_datasets(self) -> Iterable[str]:
        """Names of the per-frame datasets other than ``time`` (trimmed on :meth:`close`)."""
        raise NotImplementedError

    def _create_error(self, exc: OSError) -> Exception:
        """The error raised when the file cannot be created."""
        raise NotImplementedError

    def _reopen_error(self, exc: OSError) -> Exception:
        """The error raised when the file cannot be reopened for a metadata change."""
        raise NotImplementedError

    def _write_error(self, k: int, t: float, exc: OSError) -> Exception:
        """The error raised when frame ``k`` (time ``t``) cannot be written."""
        raise NotImplementedError

    # -- mechanics ----------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def frames_written(self) -> int:
        """Number of complete frames in the file."""
        return self._frames

    def _require_open(self) -> h5py.File:
        if self._file is None:
            raise ValueError(f"the {self._KIND} writer for {self._path} is closed")
        return self._file

    def _create_file(self) -> None:
        """Write a fresh file with all metadata, in SWMR mode, at the final path.

        It is created under a temporary name and renamed once in SWMR mode (after
        :meth:`_before_rename`), so that the final name never holds a file that a killed writer
        could leave unreadable.
        """
        first = self._lock is None
        if first:
            check_output_path(self._path, noun=f"{self._KIND} file")
            self._lock = OutputLock(self._path, noun=f"{self._KIND} file")
        try:
            remove_stale_temporaries(self._path)
            tmp = temporary_path(self._path)
            try:
                self._file = h5py.File(tmp, "w", libver=LIBVER, track_order=True)
            except OSError as exc:
                raise self._create_error(exc) from exc
        except BaseException:
            if first:
                self._release_lock()
            raise
        try:
            self._write_metadata()
            self._file.flush()
            self._file.swmr_mode = True
            self._before_rename()
            os.replace(tmp, self._path)
        except BaseException as exc:
            self._handles.clear()
            self._file.close()
            self._file = None
            tmp.unlink(missing_ok=True)
            if first:
                self._release_lock()
            if isinstance(exc, OSError):
                raise self._create_error(exc) from exc
            raise

    def _abandon(self) -> None:
        """Close the file after a failed write without writing anything more to it.

        HDF5 cannot close a file whose flush failed (it crashes, and any further flush fails
        again), so the file's descriptor is first pointed at the null device: the close then
        succeeds, and the file on disk keeps what it held before the failed frame (complete
        frames, ``status = running``, readable as a file left by a killed writer).
        """
        f, self._file = self._file, None
        try:
            if f is not None:
                try:
                    fd = f.id.get_vfd_handle()
                    null = os.open(os.devnull, os.O_RDWR)
                    try:
                        os.dup2(null, fd)
                    finally:
                        os.close(null)
                except (OSError, RuntimeError, ValueError, TypeError):
                    pass
                self._handles.clear()
                try:
                    f.close()
                except (OSError, RuntimeError, ValueError):
                    pass
        finally:
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _modify_in_place(self, values: Mapping[str, AttrValue]) -> bool:
        """Overwrite existing root attributes of the same type in SWMR mode, without leaving it
        (a small in-place write that a kill cannot tear; flushed).  False, nothing changed, if
        any of them is new or of another type (then :meth:`_metadata_mode` is needed)."""
        f = self._require_open()
        for key, value in values.items():
            if key not in f.attrs:
                return False
            old = f.attrs.get_id(key)
            kind = old.get_type().get_class()
            want = (h5py.h5t.STRING if isinstance(value, str) else h5py.h5t.INTEGER if isinstance(value, int)
                    else h5py.h5t.FLOAT)
            if kind != want or old.shape != ():
                return False
        for key, value in values.items():
            f.attrs.modify(key, value)
        f.flush()
        return True

    @contextmanager
    def _metadata_mode(self) -> Iterator[h5py.File]:
        """Leave SWMR mode (which forbids new objects and attributes) for a metadata change."""
        self._handles.clear()
        self._require_open().close()
        self._file = None
        self._file = reopen_writable(self._path, error=self._reopen_error)
        yield self._file
        self._file.flush()

    def _enter_swmr(self) -> None:
        self._file.swmr_mode = True

    def _next_time(self, time: float) -> float:
        """``time`` as a float, checked to be finite and after the last frame's."""
        t = float(time)
        if not math.isfinite(t) or t <= self._last_time:
            raise ValueError(f"frame times must be finite and increasing, got {t!r} after {self._last_time!r}")
        return t

    def _append(self, t: float, values: Mapping[str, Any]) -> None:
        """Append one frame (see :func:`append_frame`).  A failed write (h5py raises ``OSError``
        or ``RuntimeError``: disk full, file-size limit, ...) abandons the file
        (:meth:`_abandon`) and raises :meth:`_write_error`."""
        k = self._frames
        try:
            append_frame(self._require_open(), k, t, values, self._handles)
        except (OSError, RuntimeError) as exc:
            self._abandon()
            raise self._write_error(k, t, exc) from exc
        self._frames = k + 1
        self._last_time = t

    def close(self, status: str = "complete") -> None:
        """Record ``status`` in the root attributes and close the file (idempotent)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        if self._file is None:
            self._release_lock()
            return
        try:
            trim_frames(self._file, self._frame_datasets(), self._frames)
            self._file.flush()
            # in SWMR mode, in place: the file never leaves SWMR mode at the end of a run, so a
            # kill leaves frames and a truthful status, and a SWMR reader may stay open
            if not self._modify_in_place({"status": status}):
                with self._metadata_mode() as f:
                    f.attrs["status"] = status
        finally:
            self._handles.clear()
            try:
                if self._file is not None:
                    self._file.close()
                    self._file = None
            finally:
                self._release_lock()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close("complete")
            return
        try:
            self.close("interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed")
        except Exception:  # never hide the original exception
            pass


# -- reading --------------------------------------------------------------------------------


def fail(path: Path, problem: str, fix: str) -> TrajectoryFileError:
    """The error for a file that cannot be read: ``"PATH: PROBLEM. FIX"``."""
    return TrajectoryFileError(f"{path}: {problem}. {fix}")


def _signature_offset(path: Path) -> int | None:
    """Offset of the HDF5 signature (0, 512, 1024, ...: user blocks are allowed), or None."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        offset = 0
        while offset + 8 <= size:
            fh.seek(offset)
            if fh.read(8) == HDF5_SIGNATURE:
                return offset
            offset = 512 if offset == 0 else 2 * offset
    return None


def has_hdf5_signature(path: Path) -> bool:
    """True if the HDF5 signature is at offset 0, 512, 1024, ... (user blocks are allowed)."""
    return _signature_offset(path) is not None


def left_by_swmr_writer(path: Path) -> bool:
    """True if the superblock (version 3) still says "open for SWMR writing": the file's writer
    is running, was killed, or abandoned it after a failed write.  Such a file may be shorter
    than its superblock's end-of-file (the last flush did not reach the disk); its frames
    written before are read with ``swmr=True``."""
    try:
        offset = _signature_offset(path)
        if offset is None:
            return False
        with open(path, "rb") as fh:
            fh.seek(offset + 8)
            head = fh.read(4)
    except OSError:
        return False
    return len(head) == 4 and head[0] >= 3 and bool(head[3] & 0x04)


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
