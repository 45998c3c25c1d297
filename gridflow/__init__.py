"""gridflow: exact grid solutions of the sampling flows, for checking particle samplers.

The Python API mirrors the command line::

    import gridflow
    case = gridflow.load_case("cases/quickstart.toml", overrides=["grid.cells=[4000]"])
    path = gridflow.run(case)                  # writes the trajectory file, returns its path
    tr = gridflow.open_trajectory(path)        # arrays: tr.time, tr.x, tr.density, tr.kl, ...
    frames = gridflow.solve(case)              # or: solve in memory, no file
    ds = gridflow.solve_dataset(case, target=lambda x: -x**4 / 4)   # in memory, as an xarray Dataset
    index = gridflow.sweep("sweep.toml", workers=2)                  # many runs (docs/sweeps.md)
    data = gridflow.open_dataset(index)                              # all of them, a `run` dimension
    x = gridflow.sample(path, time=4.0, n=1000, seed=1)          # exact iid samples of rho_4
    result = gridflow.compare(path, particles, time=4.0)          # distances, noise floors, p-value

Lower layers are plain objects: :class:`~gridflow.core.grid.Grid`, :class:`~gridflow.core.problem.Problem`
(densities as log arrays), :class:`~gridflow.time.stepper.Stepper` (the time integrator) and
:func:`~gridflow.flows.fokker_planck.generator` (the Scharfetter–Gummel matrix as ``scipy.sparse``).
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


def _passive_openmp_waits() -> None:
    """Let the threads of numba's parallel kernels sleep, not spin, while they wait for work.

    The kernels (the axis steps, the nodal conversions, the KL and the step error) run on numba's
    threads: TBB where the ``tbb`` package is installed (a dependency on Linux and Windows x86-64),
    else OpenMP, whose default is to spin for a while after every parallel loop.  On a machine whose cores are busy with other
    work that spinning takes their time: on 2 busy cores a 256² Fokker-Planck solve took 2.5 s
    instead of 0.65 s; with passive waits it takes 0.65 s there and 0.37 s on idle cores (spinning:
    0.38 s).  A value the user set (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``) is kept; the setting
    takes effect only if no OpenMP runtime has been loaded into the process yet.
    """
    import os

    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "passive"


_passive_openmp_waits()

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
_LAZY = {"Grid": "gridflow.core.grid", "Problem": "gridflow.core.problem", "run": "gridflow.io.runner",
         "solve": "gridflow.io.runner", "Frame": "gridflow.time.solver", "simulate": "gridflow.time.solver",
         "Stepper": "gridflow.time.stepper"}


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
    """Read, validate and resolve a case file (see :func:`gridflow.io.case.load_case`)."""
    from gridflow.io.case import load_case as _load

    return _load(path, overrides=overrides)


def open_trajectory(path, *, as_xarray=False):
    """Open a trajectory file (see :func:`gridflow.io.trajectory.open_trajectory`)."""
    from gridflow.io.trajectory import open_trajectory as _open

    return _open(path, as_xarray=as_xarray)


def validate(case, *, sampler=None, ensembles=None, **kwargs) -> dict:
    """Validation study of a sampler (built-in name, function or "FILE.py:NAME"), or of the ensemble files
    matching ``ensembles`` (a pattern with {N}, {step}, {rep}); see :func:`gridflow.analysis.validation.validate`."""
    from gridflow.analysis.validation import validate as _validate

    return _validate(case, sampler=sampler, ensembles=ensembles, **kwargs)


def _trajectory(trajectory):
    """A :class:`~gridflow.io.trajectory.Trajectory` from a path, a Trajectory or an in-memory
    ``xarray.Dataset`` (from :func:`solve_dataset`, or one run of :func:`open_dataset`)."""
    import numpy as np

    from gridflow.io.trajectory import Trajectory

    if isinstance(trajectory, Trajectory):
        return trajectory
    if hasattr(trajectory, "data_vars"):  # an xarray Dataset
        ds = trajectory
        if "run" in ds.dims:
            raise InputError("this Dataset holds several runs: pick one first, e.g. ds.isel(run=0) or ds.sel(run=3).")

        def get(name):
            return None if name not in ds.variables else np.asarray(ds[name].values)

        return Trajectory(attrs=dict(ds.attrs), time=get("time"), x=get("x"), y=get("y"), x_bnds=get("x_bnds"),
                          y_bnds=get("y_bnds"), density=get("density"), log_target=get("log_target"),
                          log_reference=get("log_reference"), lambda_=get("lambda"), mass=get("mass"),
                          kl=get("kl"), kl_tempered=get("kl_tempered"),
                          fisher_information=get("fisher_information"), mean=get("mean"),
                          covariance=get("covariance"), log_density=get("log_density"))
    return open_trajectory(trajectory)


def sample(trajectory, *, time: float, n: int, seed=None):
    """Exact iid samples (n x dim) of the saved density at ``time`` (``gridflow sample``).

    ``trajectory`` is a path, an opened :class:`~gridflow.io.trajectory.Trajectory` or an in-memory
    ``xarray.Dataset`` of one run (:func:`solve_dataset`).  An integer ``seed`` gives each frame
    its own stream (:func:`gridflow.particles.grid_sampling.frame_generator`): samples of different frames are
    independent; a :class:`numpy.random.Generator` is used as it is.
    """

    import numpy as np

    from gridflow.particles.grid_sampling import frame_generator, sample_grid_density

    if int(n) < 1:
        raise InputError(f"n must be a positive number of samples, got {n}.")
    tr = _trajectory(trajectory)
    i = tr.frame(time)
    rng = seed if isinstance(seed, np.random.Generator) else frame_generator(seed, i)
    return sample_grid_density(tr.grid, tr.density[i], int(n), rng=rng)


def compare(trajectory, samples, *, time: float, weights=None, bootstrap: int = 0, seed=0, ess=None,
            metrics="default") -> dict:
    """Compare a particle ensemble with the saved density at ``time`` (``gridflow compare``).

    ``trajectory`` is a path, a :class:`~gridflow.io.trajectory.Trajectory` or an in-memory
    ``xarray.Dataset`` of one run (:func:`solve_dataset`).

    Returns the dictionary ``gridflow compare --json`` prints: ``time``, ``n``, ``distances``,
    ``noise_floor``, ``p_value`` and more (see :func:`gridflow.analysis.metrics.compare`); ``mode_masses``
    when the case's target is a mixture.  ``ess`` states the ensemble's effective size.  ``metrics``
    chooses the distances as ``--metrics`` does (default: all but the O(N^2) ``mmd``; ``"all"``).

    ``samples`` may also be a list of independent ensembles (arrays, or ``(positions, weights)``
    pairs; ``ess`` one number or one per ensemble): they are tested together with the
    between-replicate variation, calibrated whatever the correlation within an ensemble
    (:func:`gridflow.analysis.replicates.compare_replicates`).
    """
    from gridflow.analysis.metrics import compare as _compare
    from gridflow.analysis.replicates import compare_replicates, mixture_modes, replicate_list
    from gridflow.particles.grid_sampling import check_samples

    tr = _trajectory(trajectory)
    i = tr.frame(time)
    modes = mixture_modes(tr.case.get("target"), tr.grid)
    ensembles = replicate_list(samples, tr.dim)
    if ensembles is not None:
        return {"time": float(tr.time[i]), **compare_replicates(tr.grid, tr.density[i], ensembles, ess=ess, modes=modes)}
    samples, weights = check_samples(samples, weights, dim=tr.dim)
    return {"time": float(tr.time[i]),
            **_compare(tr.grid, tr.density[i], samples, weights, rng=seed, bootstrap=bootstrap, ess=ess, modes=modes,
                      metrics=metrics)}


def solve_dataset(case, *, target=None, initial=None, reference=None, overrides=()):
    """Solve in memory and return an ``xarray.Dataset``; densities may be Python callables
    ``log_density(x[, y])`` or arrays (see :func:`gridflow.io.dataset.solve_dataset`)."""
    from gridflow.io.dataset import solve_dataset as _solve

    return _solve(case, target=target, initial=initial, reference=reference, overrides=overrides)


def open_dataset(index, *, status="complete"):
    """A sweep's runs as one ``xarray.Dataset`` with a ``run`` dimension and the swept parameters as
    coordinates (see :func:`gridflow.io.dataset.open_dataset`)."""
    from gridflow.io.dataset import open_dataset as _open

    return _open(index, status=status)


def sweep(sweep_file, *, output=None, workers=None, scheduler=None, progress=False):
    """Run a sweep file (``gridflow sweep``) on local processes or, with ``scheduler``, a Dask cluster
    (see :func:`gridflow.batch.sweep.run_sweep`); return its index.csv path."""
    from gridflow.batch.sweep import run_sweep

    return run_sweep(sweep_file, output=output, workers=workers, scheduler=scheduler, progress=progress)


__all__ = [
    "__version__", "Grid", "Problem", "Stepper", "Frame", "simulate", "solve", "run", "load_case",
    "open_trajectory", "sample", "compare", "validate", "solve_dataset", "open_dataset", "sweep",
    "GridflowError", "InputError", "CaseError", "ExpressionError", "DensityError",
    "TrajectoryFileError", "NumericalError", "BoundaryMassWarning",
]
