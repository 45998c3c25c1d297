"""Output safety of the HDF5 writers: which paths may be written, one writer at a time, temporary names.

Only a regular file or a new path is written (:func:`check_output_path`: devices, FIFOs,
sockets, directories and write-protected files are refused), and one writer at a time holds an
exclusive ``flock`` on the side file ``PATH.lock`` (:class:`OutputLock`; the kernel drops it
when the holder dies).  A new file is created under a temporary name (:func:`temporary_path`)
and renamed; temporaries of killed writers are removed by the next writer
(:func:`remove_stale_temporaries`).  Reasons: :mod:`gridflow.io.h5store`.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import os
import stat
from pathlib import Path

from gridflow.errors import TrajectoryFileError

__all__ = ["OutputLock", "check_output_path", "lock_path", "remove_stale_temporaries", "temporary_path"]


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

    The lock file records the writer's process id (named in the error a second writer gets; an
    extended attribute, or the file's content, :func:`_write_holder`).  The
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
        _write_holder(fd)
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


_HOLDER_ATTR = "user.gridflow.pid"


def _write_holder(fd: int) -> None:
    """Record this process id in the lock file: as its extended attribute :data:`_HOLDER_ATTR`, which
    needs no data block (on ext4 a data block makes the lock file's deletion cost milliseconds,
    for every run), or as its content where extended attributes are not supported."""
    pid = str(os.getpid()).encode()
    try:
        os.setxattr(fd, _HOLDER_ATTR, pid)
        return
    except (OSError, AttributeError):  # no user xattrs on this file system (or not Linux)
        pass
    os.ftruncate(fd, 0)
    os.write(fd, pid)


def _read_small(fd: int) -> str:
    """The holder's process id recorded in a lock file (:func:`_write_holder`), as text."""
    try:
        return os.getxattr(fd, _HOLDER_ATTR).decode("ascii", "replace").strip()
    except (OSError, AttributeError):
        pass
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
