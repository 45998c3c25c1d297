"""gridflow: exact grid solutions of the sampling flows, for checking particle samplers.

The Python API mirrors the command line::

    import gridflow
    case = gridflow.load_case("cases/quickstart.toml", overrides=["grid.cells=[4000]"])
    path = gridflow.run(case)                  # writes the trajectory file, returns its path
    tr = gridflow.open_trajectory(path)        # arrays: tr.time, tr.x, tr.density, tr.kl, ...
    frames = gridflow.solve(case)              # or: solve in memory, no file
    x = gridflow.sample(path, time=4.0, n=1000, seed=1)          # exact iid samples of rho_4
    result = gridflow.compare(path, particles, time=4.0)          # distances, noise floors, p-value

Lower layers are plain objects: :class:`~gridflow.grid.Grid`, :class:`~gridflow.problem.Problem`
(densities as log arrays), :class:`~gridflow.stepper.Stepper` (the time integrator) and
:func:`~gridflow.fokker_planck.generator` (the Scharfetter–Gummel matrix as ``scipy.sparse``).
"""

import sys as _sys


def _exit_if_command() -> None:
    """After Ctrl-C while this package is imported: if it is imported by the ``gridflow`` command
    (``python -m gridflow``, or the ``gridflow`` script) say so in one line and exit with status
    130, as :func:`gridflow.cli.main` does; otherwise (a library import) return, and the
    KeyboardInterrupt goes on."""
    argv = getattr(_sys, "orig_argv", [])
    script = str(_sys.argv[0]) if _sys.argv else ""
    if any(a == "-m" and b == "gridflow" for a, b in zip(argv, argv[1:])) or script.replace("\\", "/").rsplit("/", 1)[-1] in ("gridflow", "gridflow.exe"):
        try:
            print("gridflow: interrupted", file=_sys.stderr)
        finally:
            raise SystemExit(130)


try:
    from gridflow._version import __version__
    from gridflow.errors import (BoundaryMassWarning, CaseError, DensityError, ExpressionError, GridflowError,
                                 InputError, NumericalError, TrajectoryFileError)
except KeyboardInterrupt:
    _exit_if_command()
    raise

# The numerical layers (numpy, scipy) are imported on first use of these names, not by
# ``import gridflow``: the ``gridflow`` command imports this package before its ``main`` runs, and
# only inside ``main`` is Ctrl-C one line and exit status 130 (gridflow.cli.main).
_LAZY = {"Grid": "gridflow.grid", "Problem": "gridflow.problem", "run": "gridflow.runner",
         "solve": "gridflow.runner", "Frame": "gridflow.solver", "simulate": "gridflow.solver",
         "Stepper": "gridflow.stepper"}


def __getattr__(name: str):
    """Import the numerical layers on first use of one of their names (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gridflow' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def load_case(path, *, overrides=()):
    """Read, validate and resolve a case file (see :func:`gridflow.case.load_case`)."""
    from gridflow.case import load_case as _load

    return _load(path, overrides=overrides)


def open_trajectory(path, *, as_xarray=False):
    """Open a trajectory file (see :func:`gridflow.trajectory.open_trajectory`)."""
    from gridflow.trajectory import open_trajectory as _open

    return _open(path, as_xarray=as_xarray)


def validate(case, *, sampler, **kwargs) -> dict:
    """Validation study of a sampler (built-in name, function or "FILE.py:NAME"); see :func:`gridflow.validation.validate`."""
    from gridflow.validation import validate as _validate

    return _validate(case, sampler=sampler, **kwargs)


def _trajectory(trajectory):
    from gridflow.trajectory import Trajectory

    return trajectory if isinstance(trajectory, Trajectory) else open_trajectory(trajectory)


def sample(trajectory, *, time: float, n: int, seed=None):
    """Exact iid samples (n x dim) of the saved density at ``time`` (``gridflow sample``).

    ``trajectory`` is a path or an opened :class:`~gridflow.trajectory.Trajectory`.
    """
    from gridflow.sampling import sample_grid_density

    if int(n) < 1:
        raise InputError(f"n must be a positive number of samples, got {n}.")
    tr = _trajectory(trajectory)
    return sample_grid_density(tr.grid, tr.density[tr.frame(time)], int(n), rng=seed)


def compare(trajectory, samples, *, time: float, weights=None, bootstrap: int = 0, seed=0, ess=None) -> dict:
    """Compare a particle ensemble with the saved density at ``time`` (``gridflow compare``).

    Returns the dictionary ``gridflow compare --json`` prints: ``time``, ``n``, ``distances``,
    ``noise_floor``, ``p_value`` and more (see :func:`gridflow.metrics.compare`); ``mode_masses``
    when the case's target is a mixture.  ``ess`` states the ensemble's effective size.

    ``samples`` may also be a list of independent ensembles (arrays, or ``(positions, weights)``
    pairs; ``ess`` one number or one per ensemble): they are tested together with the
    between-replicate variation, calibrated whatever the correlation within an ensemble
    (:func:`gridflow.metrics.compare_replicates`).
    """
    from gridflow.metrics import _replicate_list, compare as _compare, compare_replicates, mixture_modes
    from gridflow.sampling import check_samples

    tr = _trajectory(trajectory)
    i = tr.frame(time)
    modes = mixture_modes(tr.case.get("target"), tr.grid)
    ensembles = _replicate_list(samples, tr.dim)
    if ensembles is not None:
        return {"time": float(tr.time[i]), **compare_replicates(tr.grid, tr.density[i], ensembles, ess=ess, modes=modes)}
    samples, weights = check_samples(samples, weights, dim=tr.dim)
    return {"time": float(tr.time[i]),
            **_compare(tr.grid, tr.density[i], samples, weights, rng=seed, bootstrap=bootstrap, ess=ess, modes=modes)}


__all__ = [
    "__version__", "Grid", "Problem", "Stepper", "Frame", "simulate", "solve", "run", "load_case",
    "open_trajectory", "sample", "compare", "validate", "GridflowError", "InputError", "CaseError", "ExpressionError", "DensityError",
    "TrajectoryFileError", "NumericalError", "BoundaryMassWarning",
]
