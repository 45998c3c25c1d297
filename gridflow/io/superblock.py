"""The HDF5 signature and the superblock's "open for writing" flags, read and cleared without HDF5.

A writer killed in SWMR mode leaves the flags set in the (version 3) superblock:
:func:`left_by_swmr_writer` tells a reader to open such a file with ``swmr=True``, and
:func:`clear_writer_flags` clears them (as ``h5clear -s`` does) so that a resumed run can
continue the file in place.  Reasons: :mod:`gridflow.io.h5store`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["HDF5_SIGNATURE", "clear_writer_flags", "has_hdf5_signature", "left_by_swmr_writer"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
"""The 8 bytes that start an HDF5 file (at offset 0, 512, 1024, ...)."""


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
