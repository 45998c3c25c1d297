"""Which implementation a step gets: numpy/LAPACK or numba's compiled kernels.

The compiled kernels (:mod:`gridflow.flows.kernels`, :mod:`gridflow.analysis.kl_kernel`,
:mod:`gridflow.time.doubling_kernel`) are two to four times faster per step than numpy, but the
first one called in a process costs about 0.6 s even with every kernel cached on disk (numba's
import and the loading of its compiler's target context).  A short run on a small grid takes less
than that start-up with numpy and LAPACK (:mod:`gridflow.flows.symmetrised`), a long one does not.
So a run (:class:`KernelChoice`) takes the compiled kernels from the start on grids of
:data:`COMPILED_CELLS` cells or more, and on smaller grids once it has done :data:`COMPILED_AFTER`
cell updates (cells times axis steps, about as much numpy work as numba's start-up saves); until
then, numpy.  Both give the same results to round-off (tests/flows/test_symmetrised.py).  The
choice follows from the case alone (the grid, and the steps the run has taken), never from the
clock or from what ran before in the process: the same case gives the same result in any process.
What has no numpy implementation (the log-mean and log-quadratic fluxes, cell averages, periodic
lines) is compiled at any size.  ``benchmarks/small_grids.py`` measures the crossover.
"""

from __future__ import annotations

#: grids of at least this many cells use the compiled kernels from the first step
COMPILED_CELLS = 65536
#: ... smaller ones once a run has done this many cell updates (cells x axis steps) with numpy
COMPILED_AFTER = 20_000_000


def compiled(cells: int) -> bool:
    """True when an array of ``cells`` cells, outside a run, uses the compiled kernels."""
    return cells >= COMPILED_CELLS


class KernelChoice:
    """The implementation of one run's steps: numpy until the run has done :data:`COMPILED_AFTER`
    cell updates, compiled after; compiled from the start on :data:`COMPILED_CELLS` cells or more,
    or when the run ``needs_compiled`` kernels anyway (a flux or state without a numpy
    implementation: numba's start-up is paid regardless)."""

    def __init__(self, cells: int, *, needs_compiled: bool = False) -> None:
        self.cells = int(cells)
        self.updates = 0
        self.needs_compiled = bool(needs_compiled)

    @property
    def compiled(self) -> bool:
        return self.needs_compiled or self.cells >= COMPILED_CELLS or self.updates >= COMPILED_AFTER

    def count(self, axis_steps: int = 1) -> None:
        """Record ``axis_steps`` axis steps over the whole grid."""
        self.updates += axis_steps * self.cells
