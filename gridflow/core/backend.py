"""Which implementation a step gets: numpy/LAPACK or numba's compiled kernels.

The compiled kernels (:mod:`gridflow.flows.kernels`, :mod:`gridflow.analysis.kl_kernel`,
:mod:`gridflow.time.doubling_kernel`) are two to four times faster per step than numpy, but the
first one called in a process costs about 0.8 s even with every kernel cached on disk (numba's
import, which imports scipy.linalg, and the loading of its compiler's target context).  A short run on a small grid takes less
than that start-up with numpy and LAPACK (:mod:`gridflow.flows.symmetrised`), a long one does not.
So a run (:class:`KernelChoice`) takes the compiled kernels from the start on 2D grids of
:data:`COMPILED_CELLS` cells or more, and otherwise once its numpy steps have cost, by an estimate
from their number and size, as much more than compiled ones as numba's start-up
(:data:`COMPILED_START_UP`); until then, numpy.  Both give the same results to round-off (tests/flows/test_symmetrised.py).  The
choice follows from the case alone (the grid, and the steps the run has taken), never from the
clock or from what ran before in the process: the same case gives the same result in any process.
What has no numpy implementation (the log-mean and log-quadratic fluxes, cell averages, periodic
lines) is compiled at any size.  ``benchmarks/small_grids.py`` measures the crossover.
"""

from __future__ import annotations

#: 2D grids of at least this many cells use the compiled kernels from the first step
COMPILED_CELLS = 65536
#: numba's start-up in seconds (import, which imports scipy.linalg, and its target context), the
#: time the numpy steps of a run may lose before the run takes the compiled kernels
COMPILED_START_UP = 0.8
#: what a numpy axis step costs more than a compiled one, in seconds: per step, and per cell of a 1D /
#: 2D grid (the compiled kernel runs many lines at once on both cores; a 1D grid is one line, where
#: LAPACK is nearly as fast; measured on the 2-core machine, benchmarks/small_grids.py)
NUMPY_EXTRA_PER_STEP = 1.0e-4
NUMPY_EXTRA_PER_CELL = {1: 1.2e-8, 2: 4.2e-8}


def compiled(cells: int) -> bool:
    """True when an array of ``cells`` cells, outside a run, uses the compiled kernels."""
    return cells >= COMPILED_CELLS


class KernelChoice:
    """The implementation of one run's steps: numpy while the time its steps have lost to the
    compiled kernels (as estimated from their sizes, :data:`NUMPY_EXTRA_PER_STEP` and
    :data:`NUMPY_EXTRA_PER_CELL`) is below :data:`COMPILED_START_UP`, compiled after; compiled from
    the start on 2D grids of :data:`COMPILED_CELLS` cells or more, or when the run
    ``needs_compiled`` kernels anyway (a flux or state without a numpy implementation: numba's
    start-up is paid regardless).  The estimate counts steps, never the clock."""

    def __init__(self, cells: int, *, dim: int = 2, needs_compiled: bool = False) -> None:
        self.cells = int(cells)
        self.extra_per_step = NUMPY_EXTRA_PER_STEP + NUMPY_EXTRA_PER_CELL[min(dim, 2)] * self.cells
        self.steps = 0
        self.needs_compiled = bool(needs_compiled) or (dim > 1 and self.cells >= COMPILED_CELLS)

    @property
    def compiled(self) -> bool:
        return self.needs_compiled or self.steps * self.extra_per_step >= COMPILED_START_UP

    def count(self, axis_steps: int = 1) -> None:
        """Record ``axis_steps`` axis steps over the whole grid."""
        self.steps += axis_steps
