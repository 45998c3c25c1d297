r"""Compiled kernels of the Fokker–Planck axis step in log space (numba, cached on disk).

One axis step advances :math:`\partial_t\rho = L_k\rho` (the Scharfetter–Gummel generator along
one axis, see :mod:`gridflow.flows.fokker_planck`) by a time ``tau`` with MPRK22 (second order; its
first stage is implicit Euler), taking and returning the *log* density ``l = log rho``.  The two
stages solve

.. math:: (I - \tau L)\,y_1 = \rho, \qquad
          (I - \tfrac{\tau}{2} L\,\mathrm{diag}(w))\,y = \rho,\quad w = \rho/y_1 + 1,

tridiagonal (cyclic on periodic lines) M-matrices with unit column sums.  Gaussian elimination
*without pivoting* has pivots >= 1 and, apart from the pivots, only adds terms of one sign, so
it is exact to round-off in every cell relative to that cell's value, however small:

* **fast path** — the similarity :math:`\rho = e^{l} v` turns the systems into ones for the ratio
  ``v = rho'/rho`` with right-hand side 1, whose coefficients contain the densities only through
  the neighbour ratios :math:`e^{l_{i+1} - l_i}` (O(1) for a resolved density).  Then
  ``l' = l + log v``.  Used when every ``l`` on the line is finite, neighbours differ by at most
  :data:`MAX_JUMP`, and the sweep never exceeds :data:`HAZARD` (no overflow possible).
* **log path** — otherwise (zero cells ``l = -inf``, unresolved jumps, a density that grows by
  more than e^460 in one step far from equilibrium), the same elimination carries the
  right-hand side and the solution as logarithms (each update is a ``logaddexp``), the
  coefficients stay linear: slower, never over- or underflows.

Either way: ``rho' > 0`` wherever it is reachable, the mass ``sum e^{l'}`` equals ``sum e^{l}`` to
round-off, and the discrete equilibrium is reproduced to round-off.

Layouts: :func:`step_rows` solves along the last axis of a C-contiguous ``(m, n)`` array (one
line per row; a 1D grid is one row); :func:`step_cols` along the first axis.  Edge arrays
``up``/``down`` (jump rates i -> i+1 and i+1 -> i) have the shape of the state; entry ``i`` along
the solve axis is the edge (i, i+1), the last one the wrap edge of a periodic line (unused on a
reflecting line).

Modules: :mod:`~gridflow.flows.kernels.scalar` (thresholds, log and log-sum of one sign),
:mod:`~gridflow.flows.kernels.rates` (flux rates and the rows of a stage's matrix),
:mod:`~gridflow.flows.kernels.tridiagonal` (the eliminations, ratio and log form),
:mod:`~gridflow.flows.kernels.lines` (one line at a time, either path),
:mod:`~gridflow.flows.kernels.blocked` (the ratio path of all lines with walls, in blocks);
this module holds the entry points.  Kernels are cached on disk (``cache=True``); since numba checks
a cache against its own file only, importing the package drops the caches that an edit of another
kernel module has made stale (:data:`COMPILED_IN`).
"""

from __future__ import annotations

import os

import numpy as np

from gridflow.flows.kernels import blocked, lines, rates, scalar, tridiagonal
from gridflow.flows.kernels.blocked import BLOCK, blocked_walls
from gridflow.flows.kernels.lines import _lines_one_by_one
from gridflow.flows.kernels.scalar import HAZARD, MAX_JUMP, TINY

__all__ = ["BLOCK", "HAZARD", "MAX_JUMP", "TINY", "drop_stale_caches", "step_cols", "step_rows"]

#: Kernel module -> the kernel modules whose functions and constants its kernels compile in (all it
#: imports, directly or not; tests/flows/test_fokker_planck.py checks the list against the imports).
COMPILED_IN = {rates: (scalar,), tridiagonal: (scalar,), lines: (scalar, rates, tridiagonal), blocked: (scalar, rates)}


def drop_stale_caches(module, sources) -> None:
    """Empty the disk cache of every kernel of ``module`` older than one of the modules in
    ``sources`` (the modules whose functions and constants its kernels compile in).

    numba keys a function's cache on its own source file only (numba issue #1833): after an edit
    of ``tridiagonal.py`` the cached ``lines._line`` would still run the old elimination.
    """
    newest = max(os.stat(m.__file__).st_mtime for m in sources)
    for kernel in vars(module).values():
        if getattr(getattr(kernel, "py_func", None), "__module__", None) != module.__name__:
            continue
        cache = getattr(kernel, "_cache", None)
        index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
        try:
            if index and os.stat(index).st_mtime < newest:
                cache.flush()
        except OSError:   # no cache written yet, or a read-only one: nothing to drop
            pass


for _module, _sources in COMPILED_IN.items():
    drop_stale_caches(_module, _sources)


def _operands(l, up, down, log_target, mean):
    """(up, down, p, mode): mode 0 the fixed rates; with ``log_target`` the density-dependent flux,
    mode ``mean`` (1 log mean, 2 log-quadratic; rates unused)."""
    if log_target is None:
        return up, down, l, 0
    if mean not in (1, 2):
        raise ValueError(f"mean must be 1 (log mean) or 2 (log-quadratic), got {mean!r}")
    return l, l, np.ascontiguousarray(log_target, dtype=float), int(mean)


def step_rows(l, up, down, tau, periodic, two_stage, log_only=False, log_target=None, kappa=0.0, mean=1):
    """Axis step along the last axis of the ``(m, n)`` log density ``l``.

    Scharfetter–Gummel: the fixed rates ``up``/``down``; with ``log_target`` (the log of the
    target on the same lines) the log-mean flux ``kappa Lambda(rho_i, rho_j) (g_i - g_j)``,
    g = l - log_target, whose rates depend on the density (re-evaluated at the first stage);
    ``mean`` 2 takes the log-quadratic mobility instead of the log mean.
    ``two_stage`` False gives implicit Euler (first order) instead of MPRK22; ``log_only`` forces
    the log path (for testing).  Returns ``(new_l, number of lines done by the log path)``.
    """
    up, down, p, log_mean = _operands(l, up, down, log_target, mean)
    out = np.empty_like(l)
    todo = np.ones(l.shape[0], dtype=np.bool_)
    if not (periodic or log_only):
        blocked_walls(l, up, down, p, float(kappa), log_mean, tau, two_stage, False, out, todo)
    slow = (_lines_one_by_one(l, up, down, p, float(kappa), log_mean, tau, periodic, two_stage, log_only, out, todo)
            if todo.any() else 0)
    return out, slow


def step_cols(l, up, down, tau, periodic, two_stage, log_only=False, log_target=None, kappa=0.0, mean=1):
    """:func:`step_rows` along the first axis of the ``(n, m)`` log density ``l`` (lines are columns).

    On lines with walls all columns go through the ratio path at once (no transposes); the
    columns that need it are redone, transposed, by the log path.
    """
    up_, down_, p, log_mean = _operands(l, up, down, log_target, mean)
    if not (periodic or log_only):
        out = np.empty_like(l)
        bad = np.zeros(l.shape[1], dtype=np.bool_)
        blocked_walls(l, up_, down_, p, float(kappa), log_mean, tau, two_stage, True, out, bad)
        if not bad.any():
            return out, 0
    t = np.ascontiguousarray
    if periodic or log_only:
        lines, slow = step_rows(t(l.T), None if log_mean else t(up.T), None if log_mean else t(down.T), tau,
                                periodic, two_stage, log_only, t(p.T) if log_mean else None, kappa, mean)
        return t(lines.T), slow
    idx = np.flatnonzero(bad)                 # only these columns, by the log path
    lines, slow = step_rows(t(l.T[idx]), None if log_mean else t(up.T[idx]), None if log_mean else t(down.T[idx]),
                            tau, periodic, two_stage, True, t(p.T[idx]) if log_mean else None, kappa, mean)
    out[:, idx] = lines.T
    return out, slow
