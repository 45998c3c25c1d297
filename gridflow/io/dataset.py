"""xarray views of many runs and of in-memory runs.

:func:`open_dataset` loads the trajectories of a sweep (its ``index.csv``) as one Dataset with a
``run`` dimension and the swept parameters as coordinates.  :func:`solve_dataset` solves a case in
memory (no file) and returns the Dataset the trajectory file would hold; the target, initial
density and tempering reference may be given as Python callables ``log_density(x[, y])`` or as
arrays on the grid.  Both need ``xarray`` (``pip install xarray h5netcdf``).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gridflow.errors import CaseError, DensityError, InputError, TrajectoryFileError
from gridflow.io.case_schema import DEFAULT_TOLERANCE

__all__ = ["open_dataset", "solve_dataset", "frames_to_dataset", "trajectory_to_dataset", "grid_log_density"]

#: Index columns that describe the run, not the case (kept as coordinates too).
_RESULT_COORDS = ("status", "wall_time", "final_time", "final_kl", "total_steps", "path", "warnings")
#: Per-file attributes that differ between runs: kept per run as coordinates.
_RUN_ATTRS = ("case", "flow", "scheme", "created", "resumed_at")


def _xarray():
    try:
        import xarray as xr
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("gridflow.open_dataset and solve_dataset need xarray (pip install xarray h5netcdf)") from exc
    return xr


def _grid_key(ds) -> tuple:
    """What runs must share to be stacked: dimensions and cell bounds."""
    bounds = tuple(np.asarray(ds[f"{a}_bnds"].values).tobytes() for a in ("x", "y") if f"{a}_bnds" in ds)
    return tuple(sorted((k, v) for k, v in ds.sizes.items() if k != "time")), bounds


def open_dataset(index: str | os.PathLike, *, status: str | None = "complete"):
    """Load a sweep's trajectories as one ``xarray.Dataset`` with a ``run`` dimension.

    ``index`` is the sweep's ``index.csv`` (or its directory).  Only runs with the given
    ``status`` are loaded (``None``: every run whose file exists and holds frames, frames a run has
    not reached being NaN; ``status`` then comes from each file).  The coordinates along
    ``run`` are the run numbers, every index column (the swept parameters such as
    ``flow.kind`` or ``initial.mean[0]``, ``draw``, ``status``, ``wall_time``, ``final_kl``, ``path``)
    and the per-file attributes that differ between runs (``case``, ``flow``, ``scheme``, ...);
    attributes shared by all runs stay attributes.  Variables missing in some runs (e.g.
    ``kinetic_energy`` of a Fisher-Rao run) and frames at times another run lacks are NaN.

    Runs on different grids cannot share a ``run`` dimension: then a list of Datasets is returned,
    one per grid, in order of first appearance.  :class:`~gridflow.errors.TrajectoryFileError` if
    the index or a listed file is missing or unreadable, or no run qualifies.
    """
    from gridflow.batch.index import INDEX_NAME, read_index
    from gridflow.io.trajectory import open_trajectory

    xr = _xarray()
    path = Path(index)
    if path.is_dir():
        path = path / INDEX_NAME
    if not path.is_file():
        raise TrajectoryFileError(f"No sweep index at {path}: give the index.csv written by `gridflow sweep` "
                                  f"(or its directory).")
    rows = [r for r in read_index(path) if status is None or r.get("status") == status]
    if not rows:
        raise TrajectoryFileError(f"{path} lists no run with status {status!r}; run the sweep (again) first, or "
                                  f"pass status=None to load incomplete runs.")
    columns = [c for c in rows[0] if c not in ("run", "error")]
    loaded = []
    for row in rows:
        if status is None and not (path.parent / row["path"]).exists():
            continue  # a run not started yet
        tr = open_trajectory(path.parent / row["path"])
        row = {**row, "status": tr.status}  # the file knows best (e.g. interrupted after the last index write)
        ds = trajectory_to_dataset(tr)
        if status is None and ds.sizes.get("time", 0) == 0:
            continue
        loaded.append((row, ds))
    groups: dict[tuple, list] = {}
    for row, ds in loaded:
        groups.setdefault(_grid_key(ds), []).append((row, ds))
    result = [_stack(xr, members, columns) for members in groups.values()]
    return result[0] if len(result) == 1 else result


def trajectory_to_dataset(tr):
    """An opened :class:`~gridflow.io.trajectory.Trajectory` as an ``xarray.Dataset`` with the names,
    dimensions and root attributes of the file opened by xarray (``open_trajectory(path,
    as_xarray=True)``), without the per-variable attributes; built from the arrays already read,
    so about 20 times faster than xarray's h5netcdf reader on small files."""
    xr = _xarray()
    axes = ("x",) if tr.y is None else ("x", "y")
    data: dict[str, Any] = {"x_bnds": (("x", "nv"), tr.x_bnds)}
    if tr.y is not None:
        data["y_bnds"] = (("y", "nv"), tr.y_bnds)
    data.update({"log_target": (axes, tr.log_target), "log_reference": (axes, tr.log_reference),
                 "density": (("time", *axes), tr.density)})
    if tr.log_density is not None:
        data["log_density"] = (("time", *axes), tr.log_density)
    data.update({"lambda": ("time", tr.lambda_), "mass": ("time", tr.mass), "kl": ("time", tr.kl),
                 "kl_tempered": ("time", tr.kl_tempered), "fisher_information": ("time", tr.fisher_information),
                 "mean": (("time", "dim"), tr.mean), "covariance": (("time", "dim", "dim2"), tr.covariance)})
    if tr.velocity is not None:
        data["velocity"] = (("time", "dim", *axes), tr.velocity)
    if tr.kinetic_energy is not None:
        data["kinetic_energy"] = ("time", tr.kinetic_energy)
    for name, values in tr.extra.items():
        data[name] = ("time", values)
    coords = {"time": ("time", tr.time), "x": ("x", tr.x)}
    if tr.y is not None:
        coords["y"] = ("y", tr.y)
    return xr.Dataset(data, coords=coords, attrs=dict(tr.attrs))


def _stack(xr, members: list, columns: Sequence[str]):
    """One Dataset from runs on one grid: concatenated along ``run``, index columns as coordinates."""
    from gridflow.batch.index import typed_column

    datasets = []
    attrs = [dict(ds.attrs) for _, ds in members]
    differing = [k for k in dict.fromkeys(k for a in attrs for k in a)
                 if k in _RUN_ATTRS or any(a.get(k) != attrs[0].get(k) for a in attrs)]
    for row, ds in members:
        bounds = [name for name in ("x_bnds", "y_bnds") if name in ds]
        ds = ds.set_coords(bounds)
        ds.attrs = {k: v for k, v in ds.attrs.items() if k not in differing}
        datasets.append(ds)
    names = list(dict.fromkeys(name for ds in datasets for name in ds.data_vars))
    templates = {name: next(ds[name] for ds in datasets if name in ds.data_vars) for name in names}
    for k, ds in enumerate(datasets):  # variables some runs lack (kinetic_energy of Fisher-Rao): NaN
        missing = {name: (t.dims, np.full(tuple(ds.sizes.get(d, t.sizes[d]) for d in t.dims), np.nan))
                   for name, t in templates.items() if name not in ds.data_vars}
        if missing:
            datasets[k] = ds.assign(missing)
    out = xr.concat(datasets, dim="run", data_vars="all", coords="minimal", compat="equals",
                    join="outer", combine_attrs="drop_conflicts", fill_value=np.nan)
    out = out.assign_coords(run=("run", np.array([int(row["run"]) for row, _ in members])))
    coords = {}
    for c in columns:
        coords[c] = ("run", typed_column([row.get(c, "") or "" for row, _ in members]))
    for k in differing:
        if k in coords or k in out.variables:
            continue
        values = [a.get(k) for a in attrs]
        if all(isinstance(v, (int, float, np.number)) for v in values):
            coords[k] = ("run", np.array(values, dtype=float))
        else:
            coords[k] = ("run", np.array(["" if v is None else str(v) for v in values], dtype=object))
    return out.assign_coords(coords)


# --------------------------------------------------------------------------- in-memory solutions

DensityInput = Callable[..., Any] | np.ndarray | Mapping


def grid_log_density(density: DensityInput, grid, *, what: str = "density") -> np.ndarray:
    """Normalised log density on ``grid`` of a Python callable, an array or a distribution table.

    A callable is called once, vectorised: ``f(x)`` in 1D with the cell centres (shape
    ``(n,)``), ``f(x, y)`` in 2D with the centre coordinates as ``(nx, ny)`` arrays (``indexing="ij"``,
    the ``x`` and ``y`` of the ``expression`` kind); it returns the log density (any additive
    constant).  An array holds the log density at the cell centres, shape
    ``grid.shape``.  A table is a case-file distribution table.  The result is normalised on the
    grid; :class:`~gridflow.errors.DensityError` if it is NaN or +inf anywhere, zero everywhere or
    not representable on the grid, :class:`~gridflow.errors.InputError` for a wrong shape.
    """
    from gridflow.core.distributions import _checked, log_density, normalise
    from gridflow.core.resolution import check_representable

    if isinstance(density, Mapping):
        values = log_density(density, grid, what=what)
        check_representable(density, values, grid, what=what)
        return normalise(values, grid)
    if callable(density):
        source = f"Python function {getattr(density, '__name__', type(density).__name__)}"
        try:
            with np.errstate(all="ignore"):
                values = density(*grid.coordinates)
        except Exception as exc:
            raise DensityError(f"The {what} ({source}) raised {type(exc).__name__}: {exc}. It is called once "
                               f"with numpy arrays of the cell centres (x, or x and y broadcastable) and "
                               f"must return the log density at them.") from exc
        try:
            values = np.broadcast_to(np.asarray(values, dtype=float), grid.shape)
        except (ValueError, TypeError) as exc:
            raise InputError(f"The {what} ({source}) returned {np.shape(values)} values, which do not broadcast "
                             f"to the grid's {grid.shape} cells; return one log density per cell.") from exc
    else:
        source = "array"
        values = np.asarray(density, dtype=float)
        if values.shape != grid.shape:
            raise InputError(f"The {what} array has shape {values.shape}, but the grid has {grid.shape} cells; "
                             f"give the log density at the cell centres of this grid.")
    values = _checked(np.array(values, dtype=float), what, source, grid)
    log_mass = float(np.log(np.sum(np.exp(values - values.max()))) + values.max() + np.log(grid.cell_volume))
    if not math.isfinite(log_mass):
        raise DensityError(f"The {what} ({source}) has no finite integral on the box; subtract a constant.")
    return normalise(values, grid)


def _placeholder(case: Mapping) -> dict:
    """A Gaussian in the middle of the box standing in for a density given as a callable or array
    (so that the case validates; it is replaced before anything is computed)."""
    lower, upper = case["grid"]["lower"], case["grid"]["upper"]
    d = len(lower)
    mean = [0.5 * (lo + hi) for lo, hi in zip(lower, upper)]
    cov = [[((hi - lo) / 16.0) ** 2 if i == j else 0.0 for j, (lo, hi) in enumerate(zip(lower, upper))]
           for i in range(d)]
    return {"kind": "gaussian", "mean": mean, "cov": cov}


def _as_raw_case(case: Any) -> tuple[dict, Path | None]:
    """A raw case dict from a resolved or raw mapping, TOML text or a case file path."""
    import tomllib

    from gridflow.io.case import plain_tables

    if isinstance(case, Mapping):
        return plain_tables(case), None
    if isinstance(case, os.PathLike) or (isinstance(case, str) and "\n" not in case and case.endswith(".toml")):
        p = Path(case)
        try:
            return tomllib.loads(p.read_text(encoding="utf-8")), p.absolute().parent
        except FileNotFoundError:
            raise CaseError(f"Case file {str(p)!r} does not exist; check the path.") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise CaseError(f"Case file {str(p)!r} cannot be read as TOML ({exc}).") from None
    if isinstance(case, str):
        try:
            return tomllib.loads(case), None
        except tomllib.TOMLDecodeError as exc:
            raise CaseError(f"TOML syntax error: {exc}.") from None
    raise CaseError(f"a case must be a table, TOML text or a .toml path, not {type(case).__name__}.")


def build_problem(case: Any, *, target: DensityInput | None = None, initial: DensityInput | None = None,
                  reference: DensityInput | None = None, overrides: Sequence[str] = ()):
    """The resolved case and :class:`~gridflow.core.problem.Problem` of ``case`` with the target, initial
    density and tempering reference replaced by the given callables, arrays or tables.

    ``case`` may lack the ``target``/``initial`` tables that are given here; a ``reference``
    implies tempering (the case then needs a ``[tempering]`` schedule).
    """
    from dataclasses import replace

    from gridflow.io.case import parse_case
    from gridflow.core.distributions import check_edge_mass
    from gridflow.errors import BoundaryMassWarning
    from gridflow.core.problem import Problem
    from gridflow.core.tempering import TemperedPath

    raw, base_dir = _as_raw_case(case)
    given = {"target": target, "initial": initial}
    if isinstance(raw.get("grid"), Mapping) and "lower" in raw["grid"] and "upper" in raw["grid"]:
        for key, value in given.items():
            if value is not None:
                raw[key] = dict(value) if isinstance(value, Mapping) else _placeholder(raw)
        if reference is not None:
            if not isinstance(raw.get("tempering"), Mapping):
                raise CaseError("a tempering reference was given but the case has no [tempering] table; add "
                                "tempering = { schedule = { kind = \"linear\", duration = ... } }.")
            raw["tempering"]["reference"] = dict(reference) if isinstance(reference, Mapping) else _placeholder(raw)
    resolved = parse_case(raw, overrides=overrides, base_dir=base_dir)
    # tables went into the case and were validated with it; only callables and arrays remain
    target, initial, reference = (None if isinstance(v, Mapping) else v for v in (target, initial, reference))
    if all(v is None for v in (target, initial, reference)):
        return resolved, Problem.from_case(resolved)
    with warnings.catch_warnings():  # the placeholders' warnings are not the user's
        warnings.simplefilter("ignore", BoundaryMassWarning)
        problem = Problem.from_case(resolved)
    grid = problem.grid
    log_target = problem.path.log_target if target is None else grid_log_density(target, grid, what="target")
    log_initial = problem.log_initial if initial is None else grid_log_density(initial, grid, what="initial density")
    ref = resolved.get("tempering", {}).get("reference", "initial") if "tempering" in resolved else "initial"
    if reference is not None:
        log_reference = grid_log_density(reference, grid, what="tempering reference")
    elif ref == "initial":
        log_reference = log_initial
    else:
        log_reference = problem.path.log_reference
    for name, values in (("target", log_target), ("tempering reference", log_reference)):
        if not np.all(np.isfinite(values)):
            raise DensityError(f"The {name} is zero on some cells of the box (log density -inf); gridflow needs "
                               f"it positive on every cell, e.g. np.logaddexp(f, -1000) for a log density f.")
    warns = [m for m in (check_edge_mass(log_initial, grid, what="initial"),
                         check_edge_mass(log_target, grid, what="target")) if m]
    problem = replace(problem, log_initial=log_initial, warnings=warns,
                      path=TemperedPath(grid=grid, log_reference=log_reference, log_target=log_target))
    for key, value in (("target", target), ("initial", initial)):
        if value is not None and not isinstance(value, Mapping):
            resolved[key] = {"kind": "python", "source": "callable" if callable(value) else "array"}
    return resolved, problem


def frames_to_dataset(problem, frames, *, attrs: Mapping[str, Any] | None = None):
    """The ``xarray.Dataset`` a trajectory file of these frames would hold (same names, dims, attributes)."""
    from gridflow._version import __version__
    from gridflow.io.h5store import utc_now
    from gridflow.io.runner import transport_kinetic_energy

    xr = _xarray()
    frames = list(frames)
    g = problem.grid
    axes = ("x", "y")[: g.dim]
    transport = problem.flow in ("fokker-planck", "wfr")
    path_flow = problem.flow == "path"
    t = np.array([f.time for f in frames], dtype=float)

    def series(key: str) -> np.ndarray:
        return np.array([float(f.diagnostics[key]) for f in frames])

    data: dict[str, Any] = {
        "log_target": (axes, problem.path.log_target),
        "log_reference": (axes, problem.path.log_reference),
        "density": (("time", *axes), np.stack([f.density for f in frames])),
        "log_density": (("time", *axes), np.stack([f.log_rho for f in frames])),
        "lambda": ("time", np.array([f.lam for f in frames], dtype=float)),
        "mass": ("time", series("mass")), "kl": ("time", series("kl")),
        "kl_tempered": ("time", series("kl_tempered")),
        "fisher_information": ("time", series("fisher_information")),
        "mean": (("time", "dim"), np.stack([np.asarray(f.diagnostics["mean"], dtype=float) for f in frames])),
        "covariance": (("time", "dim", "dim2"),
                       np.stack([np.asarray(f.diagnostics["covariance"], dtype=float) for f in frames])),
    }
    if path_flow:
        data["velocity"] = (("time", "dim", *axes), np.stack([f.velocity for f in frames]))
    if path_flow or transport:
        data["kinetic_energy"] = ("time", np.array([
            transport_kinetic_energy(problem, f.diagnostics) if transport else f.kinetic_energy for f in frames],
            dtype=float))
    data["steps"] = ("time", np.array([float(f.steps) for f in frames]))
    data["rejected_steps"] = ("time", np.array([float(f.rejected) for f in frames]))
    coords: dict[str, Any] = {"time": ("time", t)}
    for k, name in enumerate(axes):
        coords[name] = (name, g.axes[k])
        data[f"{name}_bnds"] = ((name, "nv"), g.bounds(k))
    all_attrs = {"Conventions": "CF-1.10", **dict(attrs or {}), "boundary": g.boundary,
                 "gridflow_version": __version__, "created": utc_now(), "status": "complete"}
    return xr.Dataset(data, coords=coords, attrs=all_attrs)


def solve_dataset(case: Any, *, target: DensityInput | None = None, initial: DensityInput | None = None,
                  reference: DensityInput | None = None, overrides: Sequence[str] = ()):
    """Solve a case in memory (no file) and return its trajectory as an ``xarray.Dataset``.

    ``case`` is a case table (raw or resolved), TOML text or a ``.toml`` path; ``overrides`` are
    ``--set`` assignments.  ``target``, ``initial`` and ``reference`` (the tempering reference)
    replace the case's densities: Python callables ``log_density(x)`` / ``log_density(x, y)``
    (vectorised, see :func:`grid_log_density`), arrays of the log density at the cell centres, or
    distribution tables; the case may then omit those tables.  The Dataset has the variables,
    dimensions and attributes as ``gridflow.open_trajectory(path, as_xarray=True)`` of the file
    ``gridflow run`` writes; a density given as a callable or array appears in the ``case`` attribute as
    ``kind = "python"``.
    """
    from gridflow.io.case import dumps_case
    from gridflow.io.runner import _frames
    from gridflow.time.stepper import scheme_description

    resolved, problem = build_problem(case, target=target, initial=initial, reference=reference,
                                      overrides=overrides)
    frames = list(_frames(problem, resolved["time"]))
    attrs = {"case": dumps_case(resolved), "flow": problem.flow, "scheme": scheme_description(problem.flux),
             "tolerance": float(resolved["time"].get("tolerance", DEFAULT_TOLERANCE)),
             "total_steps": int(sum(f.steps for f in frames))}
    if problem.max_cell_peclet is not None:
        attrs["max_cell_peclet"] = float(problem.max_cell_peclet)
    if problem.warnings:
        attrs["warnings"] = "; ".join(problem.warnings)
    return frames_to_dataset(problem, frames, attrs=attrs)
