"""The frame-by-frame writer's life cycle: a file in SWMR mode whose ``status`` records the end.

:class:`StatusFile` is the base of the grid and particle trajectory writers: it creates the file
(temporary name, metadata, SWMR mode, rename), appends frames, leaves SWMR mode for a metadata
change (:func:`reopen_writable`), and closes with a ``status`` from :data:`STATUSES`.
:func:`open_for_append` continues an existing file in place (a resumed run).  Reasons:
:mod:`gridflow.io.h5store`.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time as _time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Self

import h5py
import numpy as np

from gridflow.io.h5store import LIBVER, AttrValue, append_frame, trim_frames
from gridflow.io.output_safety import OutputLock, check_output_path, remove_stale_temporaries, temporary_path
from gridflow.io.superblock import clear_writer_flags, left_by_swmr_writer

__all__ = ["REOPEN_TIMEOUT", "STATUSES", "StatusFile", "open_for_append", "reopen_writable"]

STATUSES = ("running", "complete", "failed", "interrupted")
"""Values of the root ``status`` attribute (``running`` while written, or if the writer was killed)."""

REOPEN_TIMEOUT = 10.0
"""Seconds :func:`reopen_writable` keeps retrying while another program holds the file."""


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


@contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM only recorded while the block runs, and raised again when it ends (to the
    handlers in place before it).  For h5py work that must not be cut: a handler that raises
    (Ctrl-C, :func:`gridflow.io.runner._sigterm_interrupts`) could otherwise run inside one of
    h5py's weakref callbacks, where Python prints the exception and drops it.  Outside the main
    thread (where Python runs no handler) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)


def _stacked(frames: list[tuple[float, Mapping[str, Any]]]) -> dict[str, np.ndarray]:
    """Buffered frames ``(time, values)`` as one array per series (``time`` included), frame index
    first; NaN where a frame lacks a series.  Empty without frames."""
    if not frames:
        return {}
    out = {"time": np.array([t for t, _ in frames], dtype=np.float64)}
    shapes: dict[str, tuple[int, ...]] = {}
    for _, values in frames:
        for name, value in values.items():
            shapes.setdefault(name, np.shape(value))
    for name, shape in shapes.items():
        blank = np.full(shape, np.nan)
        out[name] = np.stack([np.asarray(values.get(name, blank), dtype=np.float64) for _, values in frames])
    return out


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
        self._buffer: list[tuple[float, dict[str, Any]]] | None = None   # buffered mode: frames in memory
        self._prefill: dict[str, np.ndarray] = {}   # buffered mode: each series' frames, for its creation

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
            self._take_lock()
        try:
            tmp = self._open_temporary()
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

    def _take_lock(self) -> None:
        """Check the output path and take its :class:`OutputLock`."""
        check_output_path(self._path, noun=f"{self._KIND} file")
        self._lock = OutputLock(self._path, noun=f"{self._KIND} file")

    def _open_temporary(self) -> Path:
        """Create the new file under a temporary name beside the path (stale ones of killed
        writers removed first) as ``self._file``; return that name."""
        remove_stale_temporaries(self._path)
        tmp = temporary_path(self._path)
        try:
            self._file = h5py.File(tmp, "w", libver=LIBVER, track_order=True)
        except OSError as exc:
            raise self._create_error(exc) from exc
        return tmp

    def _start_buffered(self) -> None:
        """Buffered mode: take the lock, keep frames in memory; :meth:`close` writes the whole file
        (:meth:`_write_buffered`).  Until then nothing is written at the path."""
        self._take_lock()
        self._buffer = []

    def _write_buffered(self, status: str) -> None:
        """Write the buffered frames and ``status`` into a new file in one go (temporary name, then
        renamed over the path): the same layout as a file written frame by frame, without its
        per-frame flushes.  Each series is created holding its frames (:attr:`_prefill`, which
        :meth:`_write_metadata` uses); a frame that lacks a series (an extra first seen later) holds NaN."""
        frames, self._buffer = self._buffer or [], None
        self._prefill = _stacked(frames)
        with signals_deferred():     # SIGINT/SIGTERM wait until the file is written (or its writing failed)
            self._write_file(status)

    def _write_file(self, status: str) -> None:
        """The body of :meth:`_write_buffered`."""
        tmp = self._open_temporary()
        try:
            f = self._file
            self._write_metadata()
            f.attrs.modify("status", status)
            f.close()
            self._file = None
            os.replace(tmp, self._path)
        except BaseException as exc:
            if self._file is not None:
                self._file.close()
                self._file = None
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise self._create_error(exc) from exc
            raise
        finally:
            self._prefill = {}

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
        if self._buffer is not None:
            self._buffer.append((t, dict(values)))
            self._frames, self._last_time = k + 1, t
            return
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
        if self._buffer is not None:
            try:
                self._write_buffered(status)
            finally:
                self._release_lock()
            return
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
