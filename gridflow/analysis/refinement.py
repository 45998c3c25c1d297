r"""Richardson error estimates of a trajectory from solutions on coarser grids (refinement ratio 3).

Grid values are point values at the cell centres (docs/conventions.md).  With the ratio 3 the
centres of a grid with ``cells/3`` cells per axis are every third centre of the case's grid
(fine indices 1, 4, 7, ...), so the two solutions are compared at common points without any
averaging or interpolation (which would add an O(h^2) error as large as the one estimated).

With rho_h = u + C h^p + T (spatial error of order p, time-integration error T) the estimate of
the error field of rho_h at the common points is::

    e = (rho_3h* + 3^p T - rho_h) / (3^p - 1),   T = rho_3h - rho_3h*,

where rho_3h is the coarse solution at the case's tolerance and rho_3h* at a tolerance 100 times
tighter (its time error is negligible).  T, the time error on the coarse grid, stands for that
of the case's grid (the time error does not depend on h to leading order).  The L1 estimate is
sum |e| * (coarse cell volume).  The spatial schemes are second order (docs/numerics.md), so
p = 2; :func:`refine` with three or more levels also measures the order.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gridflow.core.problem import Problem
from gridflow.errors import CaseError, InputError
from gridflow.io.case_schema import DEFAULT_TOLERANCE
from gridflow.time.solver import save_times, simulate, simulate_path

#: refinement ratio between consecutive levels (per axis)
RATIO = 3
#: formal order of the spatial schemes
ORDER = 2
#: the coarse reference solution uses the case's tolerance divided by this
TIGHTER = 100.0
#: fewest cells per axis on the coarsest level
MIN_COARSE_CELLS = 4
#: observed orders outside this range are not used for the estimate (the formal order is used)
ORDER_RANGE = (1.0, 4.0)


def method_description(case: Mapping, levels: int = 2) -> str:
    """The ``error_estimate_method`` attribute: what the stored estimate is."""
    coarse = [int(c) // RATIO for c in case["grid"]["cells"]]
    tol = float(case["time"].get("tolerance", DEFAULT_TOLERANCE))
    return (f"Richardson, refinement ratio {RATIO}, order {ORDER}: L1 norm of (rho_3h* + {RATIO ** ORDER} T - rho_h)"
            f"/{RATIO ** ORDER - 1} at the common cell centres times the coarse cell volume; rho_3h* on "
            f"{' x '.join(map(str, coarse))} cells at tolerance {tol / TIGHTER:.3g}, T = rho_3h - rho_3h* the time "
            f"error of the coarse solution at the case's tolerance {tol:.3g} (levels: {levels})")


def coarsened_case(case: Mapping, factor: int) -> dict:
    """A copy of the resolved ``case`` with ``cells / factor`` cells per axis (no output is written).

    :class:`CaseError` if the cells are not divisible by ``factor`` or the coarse grid would be
    too small (fewer than :data:`MIN_COARSE_CELLS` cells per axis)."""
    cells = [int(c) for c in case["grid"]["cells"]]
    if any(c % factor for c in cells) or any(c // factor < MIN_COARSE_CELLS for c in cells):
        ok = [max(factor * MIN_COARSE_CELLS, factor * round(c / factor)) for c in cells]
        raise CaseError(
            f"The error estimate solves on grids up to {factor} times coarser per axis (refinement ratio {RATIO}), "
            f"so grid.cells = {cells} must be divisible by {factor}, with at least {MIN_COARSE_CELLS} cells per "
            f"axis left on the coarsest grid. Use e.g. --set grid.cells={ok}.")
    out = copy.deepcopy(dict(case))
    out["grid"] = dict(out["grid"], cells=[c // factor for c in cells])
    return out


def common_points(factor: int, dim: int) -> tuple[slice, ...]:
    """Index of the fine-grid centres that are centres of the grid ``factor`` times coarser (odd factor)."""
    return (slice((factor - 1) // 2, None, factor),) * dim


def solve_densities(case: Mapping, times: Sequence[float], *, tolerance: float | None = None,
                    coarse: bool = False) -> list[np.ndarray]:
    """Densities of ``case`` at ``times``, in memory (nothing is written); ``tolerance`` overrides the case's.

    With ``coarse`` (a coarser level of an estimate) its warnings are not shown (they would name the
    wrong grid), and an :class:`InputError` (a density the grid cannot represent) says which grid."""
    with warnings.catch_warnings():
        if coarse:
            warnings.simplefilter("ignore")
        try:
            problem = Problem.from_case(case)
        except InputError as exc:
            if not coarse:
                raise
            raise type(exc)(f"On the grid of {case['grid']['cells']} cells that the error estimate solves on "
                            f"(refinement ratio {RATIO}): {exc} With the estimate, use more cells or fewer "
                            "levels.") from exc
    t = case["time"]
    if problem.flow == "path":
        frames = simulate_path(problem, times=times)
    else:
        tol = float(t.get("tolerance", DEFAULT_TOLERANCE)) if tolerance is None else float(tolerance)
        frames = simulate(problem, times=times, tolerance=tol, max_step=t.get("max_step"),
                          initial_step=t.get("initial_step"))
    return [frame.density for frame in frames]


def _cell_volume(case: Mapping) -> float:
    g = case["grid"]
    return float(np.prod([(u - l) / n for l, u, n in zip(g["lower"], g["upper"], g["cells"])]))


def shifted_coarse(coarse: np.ndarray, coarse_tight: np.ndarray, *, order: float = ORDER,
                   factor: int = RATIO) -> np.ndarray:
    """rho_3h* + 3^p T with T = ``coarse - coarse_tight``: what the error field compares ``fine`` with."""
    return coarse_tight + float(factor) ** order * (coarse - coarse_tight)


def estimate_l1(fine: np.ndarray, shifted: np.ndarray, *, volume: float, order: float = ORDER,
                factor: int = RATIO) -> float:
    """L1 estimate sum |e| * ``volume`` of the error of ``fine``, e = (``shifted`` - fine) / (factor^p - 1)
    at the common points, ``shifted`` from :func:`shifted_coarse` and ``volume`` the coarse cell volume."""
    at = fine[common_points(factor, fine.ndim)]
    return float(np.abs(shifted - at).sum() * volume / (float(factor) ** order - 1.0))


class ErrorEstimator:
    """The coarse solutions of a case (computed on creation, in memory) and the estimate of a frame's error.

    ``times`` are the save times whose frames will be estimated (all of the case's by default);
    :meth:`estimate` takes a frame's time and density on the case's grid.
    """

    def __init__(self, case: Mapping, times: Sequence[float] | None = None) -> None:
        all_times = save_times(case["time"])
        wanted = all_times if times is None else np.asarray(times, dtype=float)
        coarse_case = coarsened_case(case, RATIO)
        tol = float(case["time"].get("tolerance", DEFAULT_TOLERANCE))
        self.volume = _cell_volume(coarse_case)
        self.method = method_description(case)
        self._times = wanted
        self._shifted: list[np.ndarray] = []       # one coarse array per time (memory: 1/3^d of a frame)
        if wanted.size:
            coarse = solve_densities(coarse_case, wanted, coarse=True)
            tight = solve_densities(coarse_case, wanted, tolerance=tol / TIGHTER, coarse=True)
            self._shifted = [shifted_coarse(c, c_t) for c, c_t in zip(coarse, tight)]

    def estimate(self, time: float, density: np.ndarray) -> float:
        """Estimated L1 error of ``density`` (the case's grid) at the save time ``time``."""
        k = int(np.argmin(np.abs(self._times - time)))
        if not abs(self._times[k] - time) <= 1e-9 * max(1.0, abs(time)):
            raise ValueError(f"no coarse solution at t = {time!r}")
        return estimate_l1(np.asarray(density), self._shifted[k], volume=self.volume)


@dataclass
class Refinement:
    """Result of :func:`refine` for K levels, per saved time (arrays of length ``len(times)``).

    ``cells[k]`` are the cells of level k (0 = the case's grid).  ``differences[k]`` is the L1
    norm at the common points (times level k+1's cell volume) of rho_k - rho_{k+1}, level 0
    corrected by the coarse estimate of its time error (so it is spatial only).  ``order`` is
    the observed order log_3(differences[1] / differences[0]) (NaN with two levels or where a
    difference is at round-off); ``order_used`` the order used for ``estimate``: the observed one
    when it lies in :data:`ORDER_RANGE`, else :data:`ORDER`.  ``estimate`` is the Richardson
    estimate of the L1 error of level 0 (time error included).
    """

    times: np.ndarray
    cells: list[list[int]]
    differences: np.ndarray
    order: np.ndarray
    order_used: np.ndarray
    estimate: np.ndarray
    tolerance: float

    def as_dict(self) -> dict:
        def clean(a):
            return [None if not np.isfinite(v) else float(v) for v in np.ravel(a)]

        return {"levels": len(self.cells), "ratio": RATIO, "cells": self.cells, "tolerance": self.tolerance,
                "coarse_tolerance": self.tolerance / TIGHTER, "times": clean(self.times),
                "differences": [clean(d) for d in self.differences], "observed_order": clean(self.order),
                "order_used": clean(self.order_used), "estimate": clean(self.estimate)}


#: differences below this (L1) are round-off: no order is measured from them
ROUND_OFF = 1e-12


def refine(case: Mapping, levels: int = 2) -> Refinement:
    """Solve ``case`` on ``levels`` grids (the case's and ``levels - 1`` coarser, ratio 3 each) at
    its save times and estimate the error of the finest (see :class:`Refinement`).

    Level 0 uses the case's tolerance; the coarser levels a tolerance :data:`TIGHTER` times
    smaller, and level 1 also the case's, for the time-error estimate.  :class:`CaseError` if
    ``levels < 2`` or the cells are not divisible by 3^(levels - 1)."""
    if int(levels) != levels or levels < 2:
        raise CaseError(f"--levels must be an integer >= 2 (got {levels!r}): the estimate needs a coarser grid.")
    levels = int(levels)
    times = save_times(case["time"])
    tol = float(case["time"].get("tolerance", DEFAULT_TOLERANCE))
    cases = [dict(case)] + [coarsened_case(case, RATIO ** k) for k in range(1, levels)]
    fine = solve_densities(cases[0], times)
    coarse = solve_densities(cases[1], times, coarse=True)
    tight = [None] + [solve_densities(c, times, tolerance=tol / TIGHTER, coarse=True) for c in cases[1:]]
    volumes = [_cell_volume(c) for c in cases]
    dim = len(case["grid"]["cells"])
    sl = common_points(RATIO, dim)
    diffs = np.empty((levels - 1, times.size))
    est = np.empty(times.size)
    order = np.full(times.size, np.nan)
    used = np.full(times.size, float(ORDER))
    for i in range(times.size):
        spatial0 = fine[i][sl] - (coarse[i] - tight[1][i])
        diffs[0, i] = np.abs(spatial0 - tight[1][i]).sum() * volumes[1]
        for k in range(1, levels - 1):
            diffs[k, i] = np.abs(tight[k][i][sl] - tight[k + 1][i]).sum() * volumes[k + 1]
        if levels >= 3 and diffs[0, i] > ROUND_OFF and diffs[1, i] > ROUND_OFF:
            order[i] = np.log(diffs[1, i] / diffs[0, i]) / np.log(RATIO)
            if ORDER_RANGE[0] <= order[i] <= ORDER_RANGE[1]:
                used[i] = order[i]
        est[i] = estimate_l1(fine[i], shifted_coarse(coarse[i], tight[1][i], order=used[i]), volume=volumes[1],
                             order=used[i])
    return Refinement(times=times, cells=[list(c["grid"]["cells"]) for c in cases], differences=diffs,
                      order=order, order_used=used, estimate=est, tolerance=tol)
