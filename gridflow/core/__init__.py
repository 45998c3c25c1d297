"""The problem being solved: grids, densities, tempering schedules, the resolved problem.

backend.py       numpy/LAPACK or compiled (numba) kernels: which a run takes, by grid size and work done
distributions.py log densities of the distribution tables at the cell centres
grid.py          uniform cell-centred finite-volume grids on boxes, 1D and 2D
logspace.py      log-space arithmetic of the hot path
problem.py       a problem: grid, initial density, tempering path, schedule and flow, built from a case
resolution.py    checks that densities and schedules are representable on the grid
schedule.py      tempering schedules lambda(t) (fixed kinds and adaptive rules)
tempering.py     the geometric tempering path pi_lambda and its log normaliser
"""
