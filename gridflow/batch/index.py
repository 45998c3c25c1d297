"""The index of a sweep: ``index.csv`` (and ``index.nc``), one row per run.

Columns: ``run``, ``draw`` (with a ``[random]`` table), one column per swept value
(:func:`flatten_params`), then :data:`RESULT_COLUMNS` (docs/sweeps.md, The index).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gridflow.batch.plan import UNSET, SweepRun

__all__ = ["INDEX_NAME", "RESULT_COLUMNS", "TABLE_NAME", "flatten_params", "read_index", "typed_column",
           "write_index", "write_table"]

INDEX_NAME = "index.csv"
#: the same table as netCDF, written beside index.csv at the end of a sweep
TABLE_NAME = "index.nc"
#: index columns after the parameters
RESULT_COLUMNS = ("status", "wall_time", "final_time", "final_kl", "total_steps", "error_estimate", "path", "error",
                  "warnings")


def flatten_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Index columns of a run's parameters: numbers and strings as they are, lists by item
    (``key[0]``, ``key[1][0]``), tables by sub-key (``key.kind``); an unset key gives no column."""
    out: dict[str, Any] = {}

    def walk(name: str, v: Any) -> None:
        if v == UNSET:
            return
        if isinstance(v, Mapping):
            for k, sub in v.items():
                walk(f"{name}.{k}", sub)
        elif isinstance(v, (list, tuple)):
            for k, sub in enumerate(v):
                walk(f"{name}[{k}]", sub)
        else:
            out[name] = v

    for key, value in params.items():
        walk(key, value)
    return out


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def write_index(path: Path, runs: Sequence[SweepRun], *, table: bool = False) -> None:
    """Write ``index.csv`` (atomically: a temporary file renamed over it): one row per run.  With
    ``table``, also ``index.nc`` beside it (:func:`write_table`)."""
    rows = []
    columns: dict[str, None] = {"run": None}
    if any(r.draw is not None for r in runs):
        columns["draw"] = None
    for r in runs:
        if r._flat is None:
            r._flat = {"run": r.index, **({} if r.draw is None else {"draw": r.draw}),
                       **flatten_params(r.params), "path": os.path.relpath(r.path, path.parent)}
        columns.update(dict.fromkeys(r._flat))
    columns.update(dict.fromkeys(RESULT_COLUMNS))
    for r in runs:
        values = {"status": "pending", **r._flat, **r.result}
        values["path"] = r._flat["path"]
        rows.append([_cell(values.get(c)) for c in columns])
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(list(columns))
        w.writerows(rows)
    os.replace(tmp, path)
    if table:
        write_table(path.with_name(TABLE_NAME), list(columns), rows)


def typed_column(values: Sequence[str]) -> np.ndarray:
    """An index column as an array: integers, else floats (empty -> NaN), else strings."""
    if values and all(v.lstrip("-").isdigit() for v in values):
        return np.array([int(v) for v in values])
    try:
        return np.array([float(v) if v != "" else math.nan for v in values])
    except ValueError:
        return np.array(values, dtype=object)


def write_table(path: Path, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> bool:
    """Write the index as a netCDF4 table (``index.nc``, with h5py; atomically): the coordinate
    ``run`` and one variable per other column along it, typed by :func:`typed_column` (integers,
    floats with NaN for empty cells, UTF-8 strings).  Written without xarray, whose import alone
    costs a sweep about a second; xarray (h5netcdf engine) reads it (tests/batch/test_sweep.py)."""
    import h5py

    data = {c: typed_column([row[k] for row in rows]) for k, c in enumerate(columns)}
    tmp = path.with_name(f".{path.name}.tmp")
    with h5py.File(tmp, "w", track_order=True) as f:
        f.attrs["title"] = "gridflow sweep index"
        f.attrs["source"] = "gridflow sweep (docs/sweeps.md)"
        run = f.create_dataset("run", data=np.asarray(data["run"], dtype=np.int64), track_order=True)
        run.make_scale("run")
        run.attrs["_Netcdf4Dimid"] = np.int32(0)
        for name, values in data.items():
            if name == "run":
                continue
            if values.dtype == object:
                ds = f.create_dataset(name, data=[str(v) for v in values], dtype=h5py.string_dtype(),
                                      track_order=True)
            else:
                ds = f.create_dataset(name, data=values, track_order=True)
            ds.attrs["_Netcdf4Coordinates"] = np.array([0], dtype=np.int32)
            ds.dims[0].attach_scale(run)
    os.replace(tmp, path)
    return True


def read_index(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of an ``index.csv`` as dictionaries of strings (``[]`` if the file does not exist)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        return []

