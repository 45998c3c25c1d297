"""gridflow: exact grid solutions of the sampling flows, for checking particle samplers.

The Python API mirrors the command line::

    import gridflow
    case = gridflow.load_case("cases/quickstart.toml", overrides=["grid.cells=[4000]"])
    path = gridflow.run(case)                  # writes the trajectory file, returns its path
    tr = gridflow.open_trajectory(path)        # arrays: tr.time, tr.x, tr.density, tr.kl, ...
    frames = gridflow.solve(case)              # or: solve in memory, no file

Lower layers are plain objects: :class:`~gridflow.grid.Grid`, :class:`~gridflow.problem.Problem`
(densities as log arrays), :class:`~gridflow.stepper.Stepper` (the time integrator) and
:func:`~gridflow.fokker_planck.generator` (the Scharfetter–Gummel matrix as ``scipy.sparse``).
"""

from gridflow._version import __version__
from gridflow.errors import (BoundaryMassWarning, CaseError, DensityError, ExpressionError, GridflowError,
                             InputError, NumericalError, TrajectoryFileError)
from gridflow.grid import Grid
from gridflow.problem import Problem
from gridflow.runner import run, solve
from gridflow.solver import Frame, simulate
from gridflow.stepper import Stepper


def load_case(path, *, overrides=()):
    """Read, validate and resolve a case file (see :func:`gridflow.case.load_case`)."""
    from gridflow.case import load_case as _load

    return _load(path, overrides=overrides)


def open_trajectory(path, *, as_xarray=False):
    """Open a trajectory file (see :func:`gridflow.trajectory.open_trajectory`)."""
    from gridflow.trajectory import open_trajectory as _open

    return _open(path, as_xarray=as_xarray)


__all__ = [
    "__version__", "Grid", "Problem", "Stepper", "Frame", "simulate", "solve", "run", "load_case",
    "open_trajectory", "GridflowError", "InputError", "CaseError", "ExpressionError", "DensityError",
    "TrajectoryFileError", "NumericalError", "BoundaryMassWarning",
]
