"""netCDF4-compatible, crash-safe HDF5 storage shared by the grid and particle trajectory files.

:mod:`gridflow.io.trajectory` (grid trajectories) and :mod:`gridflow.io.particle_file` (particle
ensembles) lay out their own datasets; what they share is split by concept:

* this module: the layout, i.e. root attributes (:func:`attr_value`, :func:`read_attrs`),
  netCDF variables and dimensions made by hand with h5py (:func:`create_variable`,
  :func:`create_dimension`), appending one frame (:func:`append_frame`, :func:`trim_frames`);
* :mod:`gridflow.io.status_file`: the writer's life cycle with its ``status`` attribute
  (:class:`~gridflow.io.status_file.StatusFile`), SWMR mode, leaving it for a metadata change,
  continuing a file in place;
* :mod:`gridflow.io.output_safety`: which paths may be written, the output lock, temporary names;
* :mod:`gridflow.io.superblock`: the HDF5 signature and the superblock's writer flags;
* :mod:`gridflow.io.h5reader`: opening a file for reading, with specific error messages.

Design decisions:

* **netCDF compatibility** is made by hand with h5py, as netCDF-C/h5netcdf do it: every axis
  has exactly one HDF5 dimension scale.  A coordinate variable (e.g. ``time``) is the scale
  named after itself; a pure dimension (no coordinate variable) is an empty ``float32`` scale
  whose ``NAME`` is ``"This is a netCDF dimension but not a netCDF variable."`` followed by
  the length in ten characters.  Each scale carries ``_Netcdf4Dimid`` (the dimension's id);
  every variable carries ``_Netcdf4Coordinates`` (the ids of its dimensions).  Link and
  attribute creation order are tracked (netCDF-C requires it).  String attributes are UTF-8.
* The variables and their attributes are made with h5py's low-level API (``h5d``/``h5a``/``h5ds``,
  with the creation property lists and attribute types reused): the objects h5py's
  ``create_dataset`` and ``attrs[...] =`` make, at about half the cost, which mattered for the
  many short runs of a sweep (tests/io/test_h5store.py checks that the two are the same).
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
  (:func:`~gridflow.io.status_file.reopen_writable`); writers avoid it by declaring everything up front.  A file left by
  a killed SWMR writer still has its "open for writing" flags set; :func:`~gridflow.io.h5reader.open_readonly` then
  opens it with ``swmr=True``.
* The file is created under a temporary name (``.NAME.PID.tmp`` beside it) and renamed to its
  final name as soon as it is in SWMR mode, before its first frame; from then on it is never
  replaced, so a reader that opened it sees every frame.  (A rebuild before the first frame,
  for an undeclared extra dataset or attribute, renames again.)  A resumed run continues the
  file in place (:func:`~gridflow.io.status_file.open_for_append`: the flags a killed writer left are cleared as
  ``h5clear -s`` does, :func:`~gridflow.io.superblock.clear_writer_flags`; HDF5's own file locking is off since
  :class:`~gridflow.io.output_safety.OutputLock` serialises writers and a SWMR reader's lock must not block the writer), so a
  reader that holds the file sees the new frames.  Only a file that cannot be opened so (cut
  short by a full disk, older layout) is rebuilt: its frames are written into a new file before
  the rename, so the path never holds fewer frames.
  Temporary files of killed writers are removed by the next writer (:func:`~gridflow.io.output_safety.remove_stale_temporaries`).
* **Output safety.**  Only a regular file or a new path is written (:func:`~gridflow.io.output_safety.check_output_path`:
  devices, FIFOs, sockets, directories and write-protected files are refused), and one writer
  at a time holds an exclusive ``flock`` on the side file ``PATH.lock`` (:class:`~gridflow.io.output_safety.OutputLock`;
  the kernel drops it when the holder dies).  The user's existing file is only ever replaced
  by a rename, never written into.
* **I/O errors.**  A write that fails mid-run (disk full, file-size limit) leaves HDF5 unable
  to close the file (it crashes trying to flush again), so the writer points the file's
  descriptor at the null device and then closes it (:meth:`~gridflow.io.status_file.StatusFile._abandon`): the file on
  disk keeps its complete frames with ``status = running``; it may be shorter than its
  superblock says, and :func:`~gridflow.io.h5reader.open_readonly` reads such a SWMR-flagged file with ``swmr=True``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import h5py
import numpy as np

__all__ = ["FILTERS", "LIBVER", "AttrValue", "append_frame", "attr_value", "create_dimension", "create_variable",
           "decode_attr", "first_line", "read_attrs", "set_attr", "trim_frames", "utc_now"]

LIBVER = ("v110", "v110")
"""HDF5 file format bounds of every file: that of HDF5 1.10, which SWMR needs."""

FILTERS: dict[str, Any] = {"compression": "gzip", "compression_opts": 4, "shuffle": True, "fletcher32": True}
"""Filters of every variable: gzip level 4, shuffle, fletcher32 checksums."""

_NOT_A_VARIABLE = "This is a netCDF dimension but not a netCDF variable."

AttrValue = str | int | float
"""A root attribute value as the writers store it."""


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


# Low-level creation (h5py.h5d/h5a/h5ds with reused type and property objects): the same
# objects, properties and attributes as h5py's ``create_dataset`` and ``attrs[...] = ...`` make,
# at about half the cost -- a sweep writes ~20 variables per run, and h5py's per-call Python work
# was a large part of a short run's file (tests/io/test_h5store.py compares the two paths).
_F64 = h5py.h5t.py_create(np.dtype("<f8"), logical=True)
_SCALAR = h5py.h5s.create(h5py.h5s.SCALAR)
_STR_DTYPE = h5py.string_dtype()
_STR_FILE = h5py.h5t.py_create(_STR_DTYPE, logical=True)   # variable-length UTF-8, as h5py stores a str
_STR_MEM = h5py.h5t.py_create(_STR_DTYPE)
_DCPLS: dict[tuple, Any] = {}


def _dcpl(chunks: tuple[int, ...], fill: bool) -> Any:
    """The dataset creation property list of a variable (cached): ``chunks``, :data:`FILTERS` in
    h5py's order (shuffle, gzip, fletcher32), fill value NaN if ``fill``, no timestamps,
    attribute creation order tracked and indexed (h5py's ``track_order=True``)."""
    key = (chunks, fill)
    plist = _DCPLS.get(key)
    if plist is None:
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_chunk(chunks)
        if FILTERS.get("shuffle"):
            plist.set_shuffle()
        if FILTERS.get("compression") == "gzip":
            plist.set_deflate(int(FILTERS.get("compression_opts", 4)))
        if FILTERS.get("fletcher32"):
            plist.set_fletcher32()
        if fill:
            plist.set_fill_value(np.array(np.nan))
        plist.set_obj_track_times(False)
        plist.set_attr_creation_order(h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED)
        _DCPLS[key] = plist
    return plist


def set_attr(oid: Any, name: str, value: Any) -> None:
    """Set attribute ``name`` of the HDF5 object ``oid`` (a low-level id) as ``obj.attrs[name] =
    value`` does it in h5py (an existing one replaced): a ``str`` as a scalar variable-length UTF-8
    string, a Python ``int``/``float`` as a scalar int64/float64, a NumPy scalar or array as its
    own type and shape; anything else through h5py itself."""
    bname = name.encode("utf-8")
    if isinstance(value, str):
        data, ftype, mtype, space = np.array(value, dtype=_STR_DTYPE), _STR_FILE, _STR_MEM, _SCALAR
    elif isinstance(value, (int, float, np.number, np.ndarray)) and not isinstance(value, (bool, np.bool_)):
        data = np.asarray(value, order="C")
        if data.dtype.kind not in "iuf" or data.dtype.byteorder == ">":
            h5py.AttributeManager(h5py.Dataset(oid) if isinstance(oid, h5py.h5d.DatasetID) else h5py.Group(oid))[name] = value
            return
        ftype = mtype = h5py.h5t.py_create(data.dtype, logical=True)
        space = _SCALAR if data.ndim == 0 else h5py.h5s.create_simple(data.shape)
    else:
        h5py.AttributeManager(h5py.Dataset(oid) if isinstance(oid, h5py.h5d.DatasetID) else h5py.Group(oid))[name] = value
        return
    if h5py.h5a.exists(oid, bname):
        h5py.h5a.delete(oid, bname)
    attr = h5py.h5a.create(oid, bname, ftype, space)
    try:
        attr.write(data, mtype=mtype)
    except BaseException:
        attr.close()
        h5py.h5a.delete(oid, bname)
        raise
    attr.close()


def create_variable(f: h5py.File, name: str, dims: tuple[str, ...], dimid: Mapping[str, int], *,
                    long_name: str, data: np.ndarray | None = None, shape: tuple[int, ...] | None = None,
                    maxshape: tuple[int | None, ...] | None = None, chunks: tuple[int, ...] | None = None,
                    attrs: Mapping[str, Any] | None = None, scale: bool = False) -> h5py.Dataset:
    """Create one netCDF4 variable in ``f``: a float64 dataset (gzip + shuffle + fletcher32), its
    ``long_name`` and further CF ``attrs``, ``_Netcdf4Coordinates`` (ids from ``dimid``) and its
    dimension scales.  ``scale=True`` makes it the coordinate variable of dimension ``name``
    (``_Netcdf4Dimid``); otherwise the scales of ``dims`` (created before) are attached.  Without
    ``data`` the dataset is empty of shape ``shape`` (growable up to ``maxshape``, fill value NaN);
    with ``data`` and ``maxshape`` it holds ``data`` and is growable likewise.
    """
    if data is not None:
        data = np.ascontiguousarray(data, dtype=np.float64)
        shape, chunks, fill = data.shape, tuple(chunks or data.shape), maxshape is not None
    else:
        fill = True
    if chunks is None or 0 in chunks or not shape:   # h5py's chunk guess or its errors: its own path
        return _create_variable_h5py(f, name, dims, dimid, long_name=long_name, data=data, shape=shape,
                                     maxshape=maxshape, chunks=chunks, attrs=attrs, scale=scale)
    space = h5py.h5s.create_simple(tuple(shape), None if maxshape is None else
                                   tuple(h5py.h5s.UNLIMITED if m is None else m for m in maxshape))
    dsid = h5py.h5d.create(f.id, name.encode("utf-8"), _F64, space, dcpl=_dcpl(tuple(chunks), fill))
    if data is not None:
        dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, data)
    if scale:
        h5py.h5ds.set_scale(dsid, name.encode("utf-8"))
        set_attr(dsid, "_Netcdf4Dimid", np.int32(dimid[name]))
    set_attr(dsid, "_Netcdf4Coordinates", np.array([dimid[d] for d in dims], dtype=np.int32))
    set_attr(dsid, "long_name", long_name)
    for key, value in (attrs or {}).items():
        set_attr(dsid, key, value)
    if not scale:
        for axis, dim in enumerate(dims):
            # opened for the attachment and closed after it, as h5py's f[dim] is: a scale kept open
            # across attachments changes where HDF5 puts the objects (a larger file)
            h5py.h5ds.attach_scale(dsid, h5py.h5d.open(f.id, dim.encode("utf-8")), axis)
    return h5py.Dataset(dsid)


def _create_variable_h5py(f: h5py.File, name: str, dims: tuple[str, ...], dimid: Mapping[str, int], *,
                          long_name: str, data: np.ndarray | None = None, shape: tuple[int, ...] | None = None,
                          maxshape: tuple[int | None, ...] | None = None, chunks: tuple[int, ...] | None = None,
                          attrs: Mapping[str, Any] | None = None, scale: bool = False) -> h5py.Dataset:
    """:func:`create_variable` through h5py's high-level calls (unchunked or guessed chunks)."""
    if data is not None:
        growable = {} if maxshape is None else {"maxshape": maxshape, "fillvalue": np.nan}
        ds = f.create_dataset(name, data=data, chunks=chunks or data.shape, track_order=True, **growable, **FILTERS)
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


# -- frames ---------------------------------------------------------------------------------


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


def trim_frames(f: h5py.File, names: Iterable[str], frames: int) -> None:
    """Shrink the datasets ``names`` (those present) to ``frames`` along the first axis: drops
    the part of a frame whose ``time`` was never written."""
    for name in names:
        if name in f and f[name].shape[0] != frames:
            f[name].resize(frames, axis=0)
