"""Exact samples of a grid density, and sample files (``gridflow sample``; docs/validation.md).

A grid density is an array of cell averages, piecewise CONSTANT on the cells of a
:class:`~gridflow.core.grid.Grid`.  Exact iid samples of it are drawn by choosing a cell with
probability equal to its mass and then a uniform point inside the cell; in 1D this is
the same as inverting the piecewise-linear CDF.

Sample files hold an ensemble of ``N`` particles in ``d`` dimensions, optionally weighted:

* ``.npy``: an ``N x d`` array (a 1-D array of length ``N`` means ``d = 1``); no weights;
* ``.npz``: array ``samples`` (and optional ``weights``); metadata as JSON text in ``attrs``;
* ``.h5``/``.hdf5``: datasets ``samples`` (and optional ``weights``); metadata as root attributes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gridflow.errors import DensityError, InputError
from gridflow.core.grid import Grid
from gridflow.reproduce.common import jsonable

__all__ = ["GridDensitySampler", "sample_grid_density", "save_samples", "load_samples", "read_sample_attrs",
           "cell_masses", "check_samples", "frame_generator", "EnsembleSource", "is_particle_file", "common_times"]

_NPY = (".npy",)
_NPZ = (".npz",)
_HDF5 = (".h5", ".hdf5")
_FORMATS = "'.npy' (an N x d array), '.npz' (array 'samples', optional 'weights') or '.h5' (datasets 'samples', optional 'weights')"


# --------------------------------------------------------------------------------------------
# densities and sampling
# --------------------------------------------------------------------------------------------

def cell_masses(grid: Grid, density: np.ndarray) -> np.ndarray:
    """Cell probabilities ``density * cell_volume``, renormalised to sum to exactly 1.

    Raises :class:`~gridflow.errors.DensityError` for a wrong shape, non-finite or negative
    values, or a density with no mass.
    """
    rho = np.asarray(density, dtype=float)
    if rho.shape != grid.shape:
        raise DensityError(f"The density has shape {rho.shape} but the grid has {grid.shape} cells; pass the "
                           "density frame of the same trajectory (one value per cell).")
    if not np.all(np.isfinite(rho)):
        raise DensityError("The density contains NaN or infinite values; use a finite frame of the trajectory.")
    if np.any(rho < 0.0):
        raise DensityError("The density has negative cell values; a density must be non-negative everywhere.")
    total = rho.sum()
    if not total > 0.0:
        raise DensityError("The density has no mass (all cells are zero); pass a frame with positive mass.")
    return rho / total


class GridDensitySampler:
    """Exact sampler of a piecewise-constant grid density (precomputes the cumulative masses).

    ``sample(n, rng)`` returns ``n`` iid points, shape ``(n, dim)``.  A cell is chosen by
    inverting the cumulative cell masses (C order) with one uniform ``u``; in 1D the point
    is ``e_k + h (u - C_k) / p_k``, the exact inverse of the piecewise-linear CDF, and in 2D
    it is uniform in the chosen cell (two further uniforms).  Cells of zero mass are never
    chosen, and every point lies in the closed box.
    """

    def __init__(self, grid: Grid, density: np.ndarray):
        self.grid = grid
        masses = cell_masses(grid, density).ravel()
        cum = np.concatenate([[0.0], np.cumsum(masses)])
        self._cum = cum / cum[-1]

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
            raise InputError(f"The number of samples must be a non-negative integer, got {n!r}; pass e.g. -n 10000.")
        rng = np.random.default_rng(rng)
        cum = self._cum
        u = rng.random(int(n))
        k = np.clip(np.searchsorted(cum, u, side="right") - 1, 0, cum.size - 2)
        lo, hi = cum[k], cum[k + 1]             # lo <= u < hi, so the chosen cell has mass hi - lo > 0
        if self.grid.dim == 1:
            frac = np.clip((u - lo) / (hi - lo), 0.0, 1.0)
            edges = self.grid.edges[0]
            return (edges[k] + frac * (edges[k + 1] - edges[k]))[:, None]
        ix, iy = np.unravel_index(k, self.grid.shape)
        frac = rng.random((int(n), 2))
        ex, ey = self.grid.edges
        x = ex[ix] + frac[:, 0] * (ex[ix + 1] - ex[ix])
        y = ey[iy] + frac[:, 1] * (ey[iy + 1] - ey[iy])
        return np.stack([x, y], axis=1)


def frame_generator(seed: int | None, frame: int) -> np.random.Generator:
    """The random generator of frame ``frame`` for a user ``seed``: child ``frame`` of the seed's
    :class:`numpy.random.SeedSequence` (what ``SeedSequence(seed).spawn`` gives), so that the same
    seed gives reproducible but independent streams for different frames (with one generator per
    seed, inverse-CDF samples of two frames would be perfectly rank-correlated).  ``seed=None``:
    fresh entropy."""
    if isinstance(frame, (bool, np.bool_)) or int(frame) != frame or frame < 0:
        raise InputError(f"The frame index must be a non-negative integer, got {frame!r}.")
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(int(frame),)))


def sample_grid_density(grid: Grid, density: np.ndarray, n: int, *,
                        rng: np.random.Generator | int | None = None) -> np.ndarray:
    """``n`` exact iid samples, shape ``(n, dim)``, of the piecewise-constant ``density``.

    1D: inverse of the piecewise-linear CDF (vectorised ``searchsorted``); 2D: the cell is
    chosen by mass, then the point is uniform within the cell.  The density is normalised
    here (it need not sum to 1).  The same ``rng`` seed gives the same samples.
    """
    return GridDensitySampler(grid, density).sample(n, rng)


# --------------------------------------------------------------------------------------------
# validation shared by load_samples and gridflow.analysis.metrics.compare
# --------------------------------------------------------------------------------------------

def check_samples(samples, weights=None, *, dim: int | None = None,
                  source: str = "The samples") -> tuple[np.ndarray, np.ndarray | None]:
    """Validate an ensemble; return ``(samples (N, d) float, weights (N,) float or None)``.

    ``source`` starts the error messages (e.g. ``"Sample file 'x.npz'"``).  Raises
    :class:`~gridflow.errors.InputError` for: a non-numeric array, a shape that is not
    ``N x d`` (or ``N``), a dimension other than ``dim`` (or not 1/2), fewer than 2 samples,
    NaN/inf samples, and weights that are of the wrong length, non-finite, negative or all zero.
    """
    x = np.asarray(samples)
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise InputError(f"{source} are of type {x.dtype}, not real numbers; store the particle positions as a "
                         "floating-point N x d array.")
    if x.ndim == 1:
        if dim not in (None, 1):
            raise InputError(f"{source} are a 1-D array (one-dimensional particles) but the density is {dim}D; "
                             f"store an N x {dim} array with one row per particle.")
        x = x[:, None]
    elif x.ndim != 2:
        raise InputError(f"{source} have shape {x.shape}; store an N x d array (one row per particle, d = 1 or 2), "
                         "or a 1-D array of length N for one-dimensional particles.")
    n, d = x.shape
    want = dim if dim is not None else (d if d in (1, 2) else None)
    if d != want:
        hint = (f" (it looks transposed: save samples.T)" if want is not None and n == want and d != want else "")
        raise InputError(f"{source} have {d} coordinates per particle (shape {x.shape}) but "
                         f"{'the density is ' + str(want) + 'D' if want else 'gridflow works in 1 or 2 dimensions'}"
                         f"{hint}; store an N x {want or 'd'} array with one row per particle.")
    if n < 2:
        raise InputError(f"{source} hold {n} particle{'s' if n != 1 else ''}; at least 2 are needed to compare an "
                         "ensemble with a density. Save the whole ensemble.")
    x = x.astype(float, copy=False)
    bad = ~np.all(np.isfinite(x), axis=1)
    if bad.any():
        raise InputError(f"{source} contain NaN or infinite positions in {int(bad.sum())} of {n} particles "
                         f"(first at row {int(np.argmax(bad))}); remove those particles or fix the sampler that "
                         "produced them (a diverged particle is a sampler failure).")
    if weights is None:
        return x, None
    w = np.asarray(weights)
    if w.dtype == bool or not (np.issubdtype(w.dtype, np.integer) or np.issubdtype(w.dtype, np.floating)):
        raise InputError(f"The weights of {source.lower()} are of type {w.dtype}; store one real, non-negative "
                         "weight per particle.")
    if w.ndim == 2 and 1 in w.shape:
        w = w.ravel()
    if w.ndim != 1 or w.size != n:
        raise InputError(f"The weights of {source.lower()} have shape {w.shape} but there are {n} particles; store "
                         f"one weight per particle (an array of length {n}), or no weights for an unweighted ensemble.")
    w = w.astype(float, copy=False)
    if not np.all(np.isfinite(w)):
        raise InputError(f"The weights of {source.lower()} contain NaN or infinite values; store finite weights "
                         "(for log-weights, subtract their maximum before exponentiating).")
    if np.any(w < 0.0):
        raise InputError(f"The weights of {source.lower()} contain {int(np.sum(w < 0))} negative values; importance "
                         "weights must be non-negative.")
    if not w.sum() > 0.0:
        raise InputError(f"The weights of {source.lower()} are all zero, so the ensemble carries no mass; store "
                         "positive weights (or none for an unweighted ensemble).")
    return x, w


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------

def _h5_attr(value):
    """Strings, numbers and numeric lists as HDF5 attributes; anything else as JSON text."""
    value = jsonable(value) if isinstance(value, (np.generic, np.ndarray, Path)) else value
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return np.asarray(value)
    return json.dumps(jsonable(value))


def save_samples(path, samples, *, weights=None, attrs: Mapping | None = None) -> None:
    """Write an ensemble to ``.npz`` (arrays ``samples``, ``weights``), ``.h5`` (datasets) or ``.npy``.

    ``attrs`` (e.g. source file, time, seed) is metadata: JSON text in the ``attrs`` array of
    an ``.npz``, root attributes of an ``.h5`` (numbers, strings and numeric lists as they
    are, anything else as JSON text).  ``.npy`` holds only the unweighted array.  The file is written under a
    temporary name and then renamed, so a failed write never leaves a partial file.
    """
    path = Path(path)
    x, w = check_samples(samples, weights, source="The samples to save")
    suffix = path.suffix.lower()
    attrs = dict(attrs or {})
    if suffix in _NPY and (w is not None or attrs):
        raise InputError(f"'{path}': a .npy file holds only the sample array, not weights or metadata; save to "
                         "a .npz or .h5 file instead.")
    if suffix not in _NPY + _NPZ + _HDF5:
        raise InputError(f"Cannot save samples to '{path}': unknown file type '{path.suffix}'. Use {_FORMATS}.")
    try:
        meta = json.dumps(jsonable(attrs))
    except TypeError as exc:
        raise InputError(f"The sample metadata cannot be stored ({exc}); pass numbers, strings and lists.") from None
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix in _NPY:
            np.save(tmp, x)
        elif suffix in _NPZ:
            arrays = {"samples": x, "attrs": np.array(meta)}
            if w is not None:
                arrays["weights"] = w
            np.savez_compressed(tmp, **arrays)
        else:
            import h5py

            with h5py.File(tmp, "w") as f:
                f.create_dataset("samples", data=x, compression="gzip", shuffle=True, fletcher32=True)
                if w is not None:
                    f.create_dataset("weights", data=w, compression="gzip", shuffle=True, fletcher32=True)
                for key, value in attrs.items():
                    f.attrs[str(key)] = _h5_attr(value)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"Cannot write the sample file '{path}' ({exc.strerror or exc}); check that the "
                         "directory is writable and the disk is not full.") from None


def read_sample_attrs(path) -> dict:
    """The metadata stored by :func:`save_samples` (empty for ``.npy`` or files without any)."""
    path = Path(path)
    suffix = path.suffix.lower()
    _require_file(path)
    try:
        if suffix in _NPZ:
            with np.load(path, allow_pickle=False) as data:
                return json.loads(str(data["attrs"])) if "attrs" in data.files else {}
        if suffix in _HDF5:
            import h5py

            with h5py.File(path, "r") as f:
                out = {}
                for key, value in f.attrs.items():
                    value = value.decode() if isinstance(value, bytes) else value
                    out[key] = value.item() if isinstance(value, np.generic) else (
                        value.tolist() if isinstance(value, np.ndarray) else value)
                return out
    except Exception as exc:  # noqa: BLE001 - any failure to parse is a corrupt file
        raise _corrupt(path, exc) from None
    return {}


def _require_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"Sample file '{path}' does not exist; check the path (or create it with "
                         "'gridflow sample' or numpy.save).")
    if not path.is_file():
        raise InputError(f"Sample file '{path}' is not a regular file; pass the path of a {_FORMATS} file.")


def _corrupt(path: Path, exc: Exception) -> InputError:
    return InputError(f"Sample file '{path}' cannot be read as a {path.suffix} file ({type(exc).__name__}: {exc}); "
                      f"it is corrupt, truncated or of another type. Re-create it as {_FORMATS}.")


def load_samples(path, *, dim: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an ensemble: ``(samples (N, d) float, weights (N,) float or None)``.

    ``.npy`` (an ``N x d`` array, or 1-D of length ``N`` meaning ``d = 1``), ``.npz``
    (``samples``, optional ``weights``) or ``.h5``/``.hdf5`` (datasets ``samples``, optional
    ``weights``).  With ``dim`` the particles must have that many coordinates.  Every problem
    (missing, unreadable or corrupt file, no ``samples``, wrong dimension, NaN/inf positions,
    bad weights, fewer than 2 particles) is an :class:`~gridflow.errors.InputError` whose
    message names the problem and the fix.
    """
    path = Path(path)
    _require_file(path)
    suffix = path.suffix.lower()
    source = f"The samples in '{path}'"
    if suffix not in _NPY + _NPZ + _HDF5:
        raise InputError(f"Sample file '{path}' has unknown type '{path.suffix}'; use {_FORMATS}.")
    weights = None
    try:
        if suffix in _NPY:
            samples = np.load(path, allow_pickle=False)
            if not isinstance(samples, np.ndarray):
                raise ValueError("not a single .npy array")
        elif suffix in _NPZ:
            with np.load(path, allow_pickle=False) as data:
                if "samples" not in data.files:
                    raise _missing_samples(path, data.files)
                samples = data["samples"]
                weights = data["weights"] if "weights" in data.files else None
        else:
            import h5py

            with h5py.File(path, "r") as f:
                if not isinstance(f.get("samples"), h5py.Dataset):
                    raise _missing_samples(path, list(f.keys()))
                samples = f["samples"][()]
                if "weights" in f:
                    weights = f["weights"][()]
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy/zipfile/h5py raise many types for bad files
        raise _corrupt(path, exc) from None
    return check_samples(samples, weights, dim=dim, source=source)


def _missing_samples(path: Path, names) -> InputError:
    found = ", ".join(f"'{n}'" for n in names) or "nothing"
    return InputError(f"Sample file '{path}' has no 'samples' array (it holds {found}); store the particle "
                      "positions under the name 'samples' (N x d), with optional 'weights' (N).")


# --------------------------------------------------------------------------------------------
# ensembles for `gridflow compare`: sample files and particle trajectory files
# --------------------------------------------------------------------------------------------

class EnsembleSource:
    """One input of ``gridflow compare``: a sample file (one ensemble, optionally tagged with the
    ``time`` attribute ``gridflow sample`` writes) or a particle trajectory file (one ensemble per
    saved time, see :mod:`gridflow.io.particle_file`).

    ``times`` is the array of times the source holds, or None for an untagged sample file (valid
    at any time the user names).
    """

    def __init__(self, path: str | os.PathLike, *, dim: int):
        self.path = Path(path)
        self._particles = None
        self._fixed: tuple[np.ndarray, np.ndarray | None] | None = None
        self.times: np.ndarray | None = None
        if is_particle_file(self.path):
            from gridflow.io.particle_file import open_particles

            tr = open_particles(self.path)
            if tr.dim != dim:
                raise InputError(f"The particle file '{self.path}' holds {tr.dim}D particles but the density is "
                                 f"{dim}D; compare it with a trajectory of the same case.")
            if len(tr.time) == 0:
                raise InputError(f"The particle file '{self.path}' holds no complete frame; nothing to compare.")
            self._particles = tr
            self.times = np.asarray(tr.time, dtype=float)
        else:
            self._fixed = load_samples(self.path, dim=dim)
            t = read_sample_attrs(self.path).get("time")
            if isinstance(t, (int, float)) and not isinstance(t, bool) and np.isfinite(t):
                self.times = np.array([float(t)])

    @property
    def is_trajectory(self) -> bool:
        """True for a particle trajectory file (its times must match the grid's)."""
        return self._particles is not None

    def ensemble(self, time: float) -> tuple[np.ndarray, np.ndarray | None]:
        """``(positions (N, d), weights (N,) or None)`` at ``time`` (a sample file: its only ensemble)."""
        if self._particles is None:
            return self._fixed
        x, w = self._particles.ensemble(time)
        return check_samples(x, w, dim=x.shape[1], source=f"The particles of '{self.path}' at t = {time:g}")


def is_particle_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an HDF5 file with a ``positions`` dataset (a particle trajectory) rather
    than a sample file (``samples``)."""
    path = Path(path)
    if path.suffix.lower() not in _HDF5 or not path.is_file():
        return False
    import h5py

    try:
        with h5py.File(path, "r", swmr=False) as f:
            return "positions" in f and "samples" not in f
    except OSError:
        try:
            with h5py.File(path, "r", swmr=True) as f:
                return "positions" in f and "samples" not in f
        except OSError:
            return False


def common_times(grid_times: np.ndarray, sources: list[EnsembleSource], *, rtol: float = 1e-9) -> list[int]:
    """Indices into ``grid_times`` of the times every source holds (sources without times hold any)."""
    keep = []
    for i, t in enumerate(np.asarray(grid_times, dtype=float)):
        ok = True
        for s in sources:
            if s.times is None:
                continue
            diff = np.abs(s.times - t)
            if not np.any(diff <= rtol * np.maximum(np.maximum(abs(t), np.abs(s.times)), 1e-300)):
                ok = False
                break
        if ok:
            keep.append(i)
    return keep
