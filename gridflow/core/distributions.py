"""Log densities of distribution tables evaluated at the cell centres of a grid.

Every density is handled as a *log* density so that values spanning e^-2000 stay
exact; normalisation on the grid uses log-sum-exp.  A grid log density ``q`` is
normalised when ``sum(exp(q)) * cell_volume == 1``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from gridflow.core.logspace import logsumexp

from gridflow.errors import BoundaryMassWarning, DensityError
from gridflow.core.grid import Grid

#: Mass in the outermost layer of cells above which the box is said to truncate a density.
EDGE_MASS_THRESHOLD = 1e-6


def log_normaliser(log_density: np.ndarray, grid: Grid) -> float:
    """log of the grid integral ``sum(exp(q)) * cell_volume`` of a log density ``q``."""
    return float(logsumexp(log_density) + np.log(grid.cell_volume))


def normalise(log_density: np.ndarray, grid: Grid) -> np.ndarray:
    """Shift a log density so that it integrates to one on the grid (midpoint rule)."""
    return log_density - log_normaliser(log_density, grid)


def gaussian_log_density(points: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Normalised log density of N(mean, cov) at ``points`` of shape ``(..., d)``."""
    mean = np.asarray(mean, dtype=float)
    cov = np.asarray(cov, dtype=float)
    chol = np.linalg.cholesky(cov)
    diff = np.asarray(points, dtype=float) - mean
    z = np.linalg.solve(chol, diff.reshape(-1, mean.size).T).T
    maha = np.sum(z * z, axis=1).reshape(diff.shape[:-1])
    logdet = 2.0 * np.sum(np.log(np.diag(chol)))
    return -0.5 * (maha + logdet + mean.size * np.log(2.0 * np.pi))


#: A box reaching this far from 0 is large: a log density that is -inf on all its cells has
#: overflowed there (a box that misses the density would give finite, very negative values).
LARGE_BOX = 1e8

def log_density(table: Mapping, grid: Grid, *, what: str = "density") -> np.ndarray:
    """Log density of a (resolved) distribution table at the cell centres.

    Gaussians and mixtures of normalised components are normalised analytically;
    ``expression`` and ``file`` densities are normalised on the grid.  ``what`` names the
    density in error messages (e.g. ``"target"``).  Raises :class:`DensityError` when the
    values are NaN or +inf anywhere.
    """
    kind = table["kind"]
    if kind == "gaussian":
        values = gaussian_log_density(grid.points, table["mean"], table["cov"]).reshape(grid.shape)
    elif kind == "mixture":
        weights = np.asarray(table["weights"], dtype=float)
        logw = np.log(weights / weights.sum())
        parts = [
            lw + log_density(c, grid, what=f"{what}.components[{k}]")
            for k, (lw, c) in enumerate(zip(logw, table["components"]))
        ]
        values = logsumexp(np.stack(parts), axis=0)
    elif kind == "expression":
        from gridflow.io.expression import parse_expression

        names = ("x",) if grid.dim == 1 else ("x", "y")
        expr = parse_expression(table["log_density"], variables=names)
        values = np.broadcast_to(expr.evaluate(**dict(zip(names, grid.coordinates))), grid.shape)
        values = _checked(np.array(values, dtype=float), what, table["log_density"], grid)
        values = normalise(values, grid)
    elif kind == "file":
        values = _checked(_read_log_density_file(table, grid, what), what, table["path"], grid)
        values = normalise(values, grid)
    else:  # validated earlier; defensive
        raise DensityError(f"{what}: unknown distribution kind {kind!r}.")
    return _checked(np.asarray(values, dtype=float), what, kind, grid)


def _checked(values: np.ndarray, what: str, source: str, grid: Grid) -> np.ndarray:
    bad = np.isnan(values) | (values == np.inf)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad)), values.shape)
        raise DensityError(
            f"The {what} log density ({source}) is NaN or +inf at {int(bad.sum())} cell(s), first at "
            f"cell index {tuple(int(i) for i in idx)}. A log density must be finite or -inf (zero density) "
            f"everywhere on the box: fix the formula or data, or shrink the box to where it is defined."
        )
    if not np.isfinite(values).any():
        reach = max(max(abs(v) for v in grid.lower), max(abs(v) for v in grid.upper))
        if reach >= LARGE_BOX:  # the values overflowed: the box is too large, not too small
            fix = (f"the box reaches |x| = {reach:.3g}, where the log density overflows to -inf: shrink the box "
                   f"to where the density lives")
        else:
            fix = "move or enlarge the box to cover where the density lives"
        name = what if what.endswith("density") else f"{what} density"
        raise DensityError(
            f"The {name} ({source}) is zero on every cell of the box {list(grid.lower)} .. {list(grid.upper)}, "
            f"so it cannot be normalised: {fix}."
        )
    return values


def _read_log_density_file(table: Mapping, grid: Grid, what: str) -> np.ndarray:
    path = Path(table["path"])
    key = table.get("key")
    try:
        if path.suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = list(z.keys())
                name = key or ("log_density" if "log_density" in names else names[0] if len(names) == 1 else None)
                if name is None or name not in names:
                    raise DensityError(
                        f"{what}: {path} holds arrays {names}; name the one with the log density with "
                        f"`key = \"...\"`."
                    )
                data = z[name]
        elif path.suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                name = key or "log_density"
                if name not in f:
                    raise DensityError(
                        f"{what}: {path} has no dataset {name!r} (it has {sorted(f.keys())}); name the "
                        f"dataset with `key = \"...\"`."
                    )
                data = f[name][()]
        else:
            raise DensityError(f"{what}: {path} is not a .npy, .npz or .h5 file.")
    except DensityError:
        raise
    except Exception as exc:  # unreadable, truncated, not the format its name says
        raise DensityError(f"{what}: cannot read the log density from {path}: {exc}. Check the file.") from None
    data = np.asarray(data, dtype=float)
    if data.shape != grid.shape:
        raise DensityError(
            f"{what}: {path} holds an array of shape {data.shape}, but the grid has {grid.shape} cells; "
            f"the file must hold the log density at the cell centres of this grid."
        )
    return data


def edge_mass(log_density_normalised: np.ndarray, grid: Grid) -> float:
    """Mass in the outermost layer of cells (0 on periodic grids, which have no edge)."""
    if grid.periodic:
        return 0.0
    mask = np.zeros(grid.shape, dtype=bool)
    for axis in range(grid.dim):
        index = [slice(None)] * grid.dim
        for end in (0, -1):
            index[axis] = end
            mask[tuple(index)] = True
    with np.errstate(under="ignore"):
        return float(np.exp(log_density_normalised[mask]).sum() * grid.cell_volume)


def check_edge_mass(log_density_normalised: np.ndarray, grid: Grid, *, what: str) -> str | None:
    """Warn (:class:`BoundaryMassWarning`) and return a message when the box truncates a density."""
    mass = edge_mass(log_density_normalised, grid)
    if mass <= EDGE_MASS_THRESHOLD:
        return None
    message = (
        f"the {what} density has mass {mass:.3g} in the outermost cells of the box: the box truncates "
        f"it; enlarge [grid] lower/upper for a faithful result"
    )
    warnings.warn(message, BoundaryMassWarning, stacklevel=2)
    return message
