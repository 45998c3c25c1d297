"""netCDF variables made with h5py's low-level API (gridflow.io.h5store.create_variable, set_attr)
are the objects h5py's high-level calls make: same dataset properties, filters, attributes (types,
shapes, order), dimension scales and stored chunk bytes (docs/file-format.md)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from gridflow.io import h5store
from gridflow.io.h5store import LIBVER, create_dimension, create_variable, set_attr


def _type(t) -> tuple:
    """An HDF5 datatype as comparable values (class, size, and what distinguishes strings and numbers)."""
    out = (t.get_class(), t.get_size())
    if t.get_class() == h5py.h5t.STRING:
        return out + (t.is_variable_str(), t.get_cset(), t.get_strpad())
    if t.get_class() in (h5py.h5t.INTEGER, h5py.h5t.FLOAT):
        return out + (t.get_order(), t.dtype.str)
    return out + (str(t.dtype),)


def _describe(path: Path) -> list:
    """Everything of a file that its layout fixes, in creation order ('created' aside)."""
    out = []
    with h5py.File(path, "r") as f:
        for obj in (f, *(f[name] for name in f)):
            entry: list = [obj.name]
            for name in obj.attrs:
                aid = obj.attrs.get_id(name)
                value = "refs" if name in ("DIMENSION_LIST", "REFERENCE_LIST") else repr(obj.attrs[name])
                entry.append((name, _type(aid.get_type()), aid.get_space().shape, value))
            if isinstance(obj, h5py.Dataset):
                p = obj.id.get_create_plist()
                fill = np.zeros((), dtype=obj.dtype)
                p.get_fill_value(fill)
                entry.append((obj.dtype.str, obj.shape, obj.maxshape, obj.chunks, p.get_layout(),
                              [p.get_filter(i)[:3] for i in range(p.get_nfilters())], p.fill_value_defined(),
                              repr(fill), p.get_attr_creation_order(), p.get_obj_track_times(), obj.is_scale))
                entry.append([[s.name for s in dim.values()] for dim in obj.dims])
                if obj.is_scale and "REFERENCE_LIST" in obj.attrs:
                    entry.append([(f[r[0]].name, int(r[1])) for r in obj.attrs["REFERENCE_LIST"]])
                if obj.chunks and obj.size:
                    entry.append([obj.id.read_direct_chunk(c.chunk_offset)[1]
                                  for c in (obj.id.get_chunk_info(i) for i in range(obj.id.get_num_chunks()))])
                    entry.append(obj[()].tobytes())
            out.append(entry)
    return out


def _write(path: Path, *, low_level: bool) -> None:
    """A small netCDF file with every kind of variable the writers make: coordinate variables
    (growable, fixed), a pure dimension, bounds, fixed and growable series created empty or with
    data, and root attributes of each type."""
    make = create_variable if low_level else h5store._create_variable_h5py
    rng = np.random.default_rng(3)
    dimid = {"time": 0, "x": 1, "nv": 2}
    with h5py.File(path, "w", libver=LIBVER, track_order=True) as f:
        for key, value in (("Conventions", "CF-1.10"), ("case", "name = \"é\"\n"), ("tolerance", 1e-7),
                           ("total_steps", 12), ("flag", np.int32(3)), ("status", "running")):
            if low_level:
                set_attr(f.id, key, value)
            else:
                f.attrs[key] = value
        make(f, "time", ("time",), dimid, long_name="time", data=np.arange(5.0), maxshape=(None,), chunks=(1,),
             attrs={"units": "1", "axis": "T"}, scale=True)
        make(f, "x", ("x",), dimid, long_name="cell centre", data=np.linspace(0, 1, 7), attrs={"units": "1"},
             scale=True)
        create_dimension(f, "nv", 2, dimid)
        make(f, "x_bnds", ("x", "nv"), dimid, long_name="edges", data=rng.random((7, 2)))
        make(f, "density", ("time", "x"), dimid, long_name="density", data=rng.random((5, 7)),
             maxshape=(None, 7), chunks=(1, 7), attrs={"cell_methods": "x: mean"})
        make(f, "kl", ("time",), dimid, long_name="kl", data=rng.random(5), maxshape=(None,), chunks=(1,))
        make(f, "empty", ("time", "x"), dimid, long_name="empty series", shape=(0, 7), maxshape=(None, 7),
             chunks=(1, 7))


def test_low_level_variables_are_those_of_h5py(tmp_path):
    _write(tmp_path / "low.h5", low_level=True)
    _write(tmp_path / "high.h5", low_level=False)
    low, high = _describe(tmp_path / "low.h5"), _describe(tmp_path / "high.h5")
    assert [e[0] for e in low] == [e[0] for e in high]
    for a, b in zip(low, high):
        assert a == b, a[0]
    # and HDF5 places everything alike: the two files are the same bytes
    assert (tmp_path / "low.h5").read_bytes() == (tmp_path / "high.h5").read_bytes()


@pytest.mark.parametrize("value", ["text", "é", 3, 2.5, np.int32(7), np.array([1, 2], dtype=np.int32),
                                   np.float32(1.5)])
def test_set_attr_replaces_like_h5py(tmp_path, value):
    with h5py.File(tmp_path / "a.h5", "w", track_order=True) as f:
        f.attrs["first"] = 0
        f.attrs["v"] = "old"
        f.attrs["last"] = 1
        set_attr(f.id, "v", value)
        f.attrs["w"] = value                                     # h5py's own way, for comparison
        assert list(f.attrs) == ["first", "last", "v", "w"]      # replaced: last in creation order
        v, w = f.attrs.get_id("v"), f.attrs.get_id("w")
        assert _type(v.get_type()) == _type(w.get_type()) and v.get_space().shape == w.get_space().shape
        assert np.array_equal(f.attrs["v"], f.attrs["w"]) and np.array_equal(f.attrs["v"], value)
