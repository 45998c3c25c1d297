"""The flows' space discretisations: the generators (matrices) of each flow and their kernels.

fisher_rao.py    the Fisher-Rao (birth-death) flow, solved exactly in log space
fokker_planck.py the Scharfetter-Gummel finite-volume generator of the Fokker-Planck equation
kernels/         compiled (numba) kernels of the Fokker-Planck axis step in log space: scalar.py,
                 rates.py, tridiagonal.py, lines.py, blocked.py; the entry points in __init__.py
nodal.py         cell averages and point values of a log density (the log-quadratic flux's state)
path.py          the minimal-kinetic-energy velocity of the tempering path (the `path` flow)
symmetrised.py   the Fokker-Planck axis step of small grids by numpy and LAPACK (no numba start-up)
"""
