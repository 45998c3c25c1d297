"""Can the grid represent a density?  Checks made before a run starts.

A grid density is a set of cell values; it stands for the distribution only when the cells
resolve it and the box holds it.  :func:`check_representable` refuses (with a
:class:`~gridflow.errors.DensityError`, exit status 2) a density that

* is narrower than the cells: a Gaussian (also a mixture component) whose standard deviation
  along an axis, given the other coordinate, is below half a cell (:data:`MIN_STD_PER_CELL`; the
  midpoint rule then still integrates it to ~1 %); an ``expression`` whose grid mass changes by more
  than :data:`MAX_REFINED_MASS_CHANGE` when it is sampled at 4^d points per cell; a ``file``
  density whose mass lives on fewer than :data:`MIN_CELLS` cells (participation ratio);
* lies mostly outside the box: a Gaussian or mixture (normalised analytically) of which the box
  holds less than :data:`MIN_BOX_MASS` (the midpoint sum of the normalised density);
* has a normalising constant that is not a finite positive number.

Milder truncation (mass on the edge of the box) is a warning, see
:func:`gridflow.core.distributions.check_edge_mass`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from gridflow.core.logspace import logsumexp

from gridflow.errors import DensityError
from gridflow.core.grid import Grid

#: Smallest standard deviation of a Gaussian along an axis, in cell widths.
MIN_STD_PER_CELL = 0.5
#: Smallest fraction of an (analytically normalised) distribution's mass the box must hold.
MIN_BOX_MASS = 0.5
#: Largest relative change of an expression density's mass when it is sampled at 4^d points per
#: cell instead of the cell centre (the midpoint rule no longer integrates it).
MAX_REFINED_MASS_CHANGE = 0.02
#: Fewest cells (participation ratio 1 / sum p_i^2 of the cell masses p) a density read from a file
#: may live on.
MIN_CELLS = 1.5

_AXES = ("x", "y")


def _describe(table: Mapping) -> str:
    kind = table.get("kind", "?")
    if kind == "gaussian":
        return f"gaussian with mean {list(table['mean'])} and covariance {[list(r) for r in table['cov']]}"
    if kind == "expression":
        text = str(table.get("log_density", ""))
        return f"expression {text[:60]!r}" + ("..." if len(text) > 60 else "")
    if kind == "file":
        return f"file {table.get('path')}"
    return kind


def _check_gaussian_width(table: Mapping, grid: Grid, what: str) -> None:
    cov = np.asarray(table["cov"], dtype=float)
    precision = np.linalg.inv(cov)
    for k in range(grid.dim):
        std = 1.0 / np.sqrt(precision[k, k])          # along axis k, the other coordinate fixed
        h = grid.spacing[k]
        if not std >= MIN_STD_PER_CELL * h:
            need = (grid.upper[k] - grid.lower[k]) / (std / MIN_STD_PER_CELL)
            raise DensityError(
                f"The {what} ({_describe(table)}) has standard deviation {std:.3g} along {_AXES[k]}, but the "
                f"cells are {h:.3g} wide: the grid cannot represent it (it needs cells at most "
                f"{1 / MIN_STD_PER_CELL:g} standard deviations wide, i.e. at least {need:.3g} cells along "
                f"{_AXES[k]} on this box; several cells per standard deviation for accuracy). Refine "
                f"[grid] cells or widen the distribution.")


def _components(table: Mapping, what: str):
    """(table, name) of every Gaussian in a distribution table, recursively."""
    if table.get("kind") == "gaussian":
        yield table, what
    elif table.get("kind") == "mixture":
        for k, comp in enumerate(table["components"]):
            yield from _components(comp, f"{what}.components[{k}]")


def _analytic(table: Mapping) -> bool:
    kind = table.get("kind")
    if kind == "gaussian":
        return True
    return kind == "mixture" and all(_analytic(c) for c in table["components"])


def check_representable(table: Mapping, log_values: np.ndarray, grid: Grid, *, what: str) -> None:
    """Raise :class:`DensityError` if ``grid`` cannot represent the distribution ``table``.

    ``log_values`` are its log density at the cell centres as :func:`gridflow.core.distributions.log_density`
    returns them (normalised analytically for Gaussians and mixtures of them, unnormalised otherwise).
    """
    for comp, name in _components(table, what):
        _check_gaussian_width(comp, grid, name)
    log_mass = float(logsumexp(log_values)) + np.log(grid.cell_volume)
    if not np.isfinite(log_mass):
        raise DensityError(
            f"The {what} ({_describe(table)}) has no finite normalising constant on the box (log of its "
            f"integral is {log_mass}): its log density is too large somewhere. Subtract a constant from "
            f"the log density or check the formula.")
    if _analytic(table):
        box_mass = float(np.exp(log_mass))
        if box_mass < MIN_BOX_MASS:
            if _covers(table, grid):  # the box is large enough: the cells miss the mass
                fix = (f"The box covers it (mean ± 8 standard deviations), so the cells {list(grid.spacing)} "
                       f"are too coarse for the midpoint rule: refine [grid] cells.")
            else:
                fix = "Move or enlarge the box to cover the distribution (mean ± 8 standard deviations)."
            raise DensityError(
                f"The box {list(grid.lower)} .. {list(grid.upper)} holds only {box_mass:.3g} of the mass of "
                f"the {what} ({_describe(table)}) on its cells. {fix}")
    for comp, name in _leaves(table, what):
        if comp.get("kind") == "expression":
            _check_expression_resolved(comp, grid, name)
    if table.get("kind") == "file":
        with np.errstate(under="ignore"):
            p = np.exp(log_values - log_mass + np.log(grid.cell_volume))
        cells = 1.0 / float(np.sum(p * p))
        if cells < MIN_CELLS:
            raise DensityError(
                f"The mass of the {what} ({_describe(table)}) lives on about {cells:.2g} cells: the grid "
                f"cannot resolve a density this narrow. Refine [grid] cells (several cells across the "
                f"narrowest feature) or widen the density.")


def _covers(table: Mapping, grid: Grid) -> bool:
    """Whether the box holds mean ± 8 standard deviations of every Gaussian of ``table``."""
    for comp, _ in _components(table, ""):
        sd = np.sqrt(np.diag(np.asarray(comp["cov"], dtype=float)))
        mean = np.asarray(comp["mean"], dtype=float)
        if np.any(mean - 8 * sd < np.asarray(grid.lower)) or np.any(mean + 8 * sd > np.asarray(grid.upper)):
            return False
    return True


def _leaves(table: Mapping, what: str):
    """(table, name) of every non-mixture distribution in ``table``, recursively."""
    if table.get("kind") == "mixture":
        for k, comp in enumerate(table["components"]):
            yield from _leaves(comp, f"{what}.components[{k}]")
    else:
        yield table, what


def _check_expression_resolved(table: Mapping, grid: Grid, what: str) -> None:
    """The midpoint mass of an expression density must not change when each cell is sampled at 4^d points."""
    from gridflow.io.expression import parse_expression

    names = ("x", "y")[: grid.dim]
    expr = parse_expression(table["log_density"], variables=names)

    def log_mass(offsets: tuple[float, ...]) -> float:
        coords = [c + o * h for c, o, h in zip(grid.coordinates, offsets, grid.spacing)]
        with np.errstate(all="ignore"):
            values = np.broadcast_to(np.asarray(expr.evaluate(**dict(zip(names, coords))), float), grid.shape)
        values = np.where(np.isnan(values), -np.inf, values)
        return float(logsumexp(values))

    centre = log_mass((0.0,) * grid.dim)
    shifts = np.array(np.meshgrid(*[[-0.375, -0.125, 0.125, 0.375]] * grid.dim, indexing="ij")).reshape(grid.dim, -1).T
    refined = float(logsumexp([log_mass(tuple(o)) for o in shifts])) - np.log(len(shifts))
    with np.errstate(over="ignore"):
        change = abs(np.expm1(refined - centre)) if np.isfinite(refined) and np.isfinite(centre) else np.inf
    if not change <= MAX_REFINED_MASS_CHANGE:
        raise DensityError(
            f"The {what} ({_describe(table)}) is not resolved by the grid: its mass on the box changes by "
            f"{change:.3g} (relative) when each cell is sampled at {len(shifts)} points instead of its centre, "
            f"so the cells are wider than its narrowest feature. Refine [grid] cells or widen the density.")


# --------------------------------------------------------------------------- cell Péclet number

#: Largest cell Péclet number h|grad log pi_lambda| at which the Scharfetter–Gummel flux runs without a
#: warning.  Above it the flux tends to upwinding (numerical diffusion ~ Pe/2 times the physical one) and
#: its error constant grows with Pe wherever mass passes (docs/numerics.md, "Drift-dominated transients").
MAX_CELL_PECLET = 2.0

#: the suggested cell width is this fraction of h * MAX_CELL_PECLET / Pe (Pe is proportional to h only
#: to first order: the steepest edge moves, and the gradient there changes, by O(h) on a finer grid)
PECLET_MARGIN = 0.9

#: flows with a transport (Wasserstein) part, whose two-point flux the Péclet number concerns
TRANSPORT_FLOWS = ("fokker-planck", "wfr")


def lambda_range(schedule) -> tuple[float, ...]:
    """The values of lambda at which the largest |Delta log pi_lambda| of a schedule is attained.

    log pi_lambda = log pi_0 + lambda (log pi - log pi_0) is affine in lambda, so over an interval of
    lambda the largest edge difference is at an endpoint: (1,) untempered, (min, max) of the knots of a
    piecewise-linear schedule, (0, 1) otherwise (an upper bound for schedules that stop short of 1).
    """
    from gridflow.core.schedule import PiecewiseLinear, Untempered

    if isinstance(schedule, Untempered):
        return (1.0,)
    if isinstance(schedule, PiecewiseLinear):
        return (float(min(schedule.values)), float(max(schedule.values)))
    return (0.0, 1.0)


#: an edge counts for the Peclet number only where some density of the run (initial, reference,
#: target) puts at least this mass in one of its two cells: the far corners of a box, where no
#: density lives, do not decide the accuracy
PECLET_MASS = 1e-12


def axis_peclet(log_densities, grid: Grid, *, occupied: np.ndarray | None = None) -> tuple[float, ...]:
    """Per axis, the largest |log pi_i - log pi_j| over the edges (i, j) along it and the given log densities.

    That is the cell Péclet number h |d log pi / dx| of each edge (for a smooth pi, up to O(h^3));
    periodic grids include the edge that wraps around.  With ``occupied`` (a boolean per cell) only
    edges with an occupied cell on either side count.
    """
    out = []
    for axis in range(grid.dim):
        worst = 0.0
        for values in log_densities:
            d = np.abs(np.diff(values, axis=axis))
            if grid.periodic and values.shape[axis] > 1:
                wrap = np.abs(np.take(values, [0], axis=axis) - np.take(values, [-1], axis=axis))
                d = np.concatenate([d, wrap], axis=axis)
            if occupied is not None and d.size:
                occ = occupied | np.roll(occupied, -1, axis=axis)
                occ = occ if grid.periodic else np.delete(occ, -1, axis=axis)
                d = d[occ]
            if d.size:
                worst = max(worst, float(np.max(d)))
        out.append(worst)
    return tuple(out)


def check_peclet(*, grid: Grid, log_reference: np.ndarray, log_target: np.ndarray, schedule, flow: str,
                 flux: str, log_initial: np.ndarray | None = None) -> tuple[float | None, str | None]:
    """The largest cell Péclet number of a run and, if it calls for one, a one-line warning.

    The number is the largest |Delta log pi_lambda| across one cell edge, over the axes, the box and the
    lambda the schedule reaches (:func:`lambda_range`), counting the edges next to a cell where the
    initial density or some pi_lambda holds mass >= :data:`PECLET_MASS`; it is ``None`` for flows
    without a transport part.
    With the Scharfetter–Gummel flux and a number above :data:`MAX_CELL_PECLET` a
    :class:`~gridflow.errors.PecletWarning` is issued and its message returned: it names the cell width
    (and count) that brings the number under the threshold and the log-mean flux, which stays second order.
    """
    import warnings

    from gridflow.errors import PecletWarning

    if flow not in TRANSPORT_FLOWS:
        return None, None
    logs = [log_reference + lam * (log_target - log_reference) if lam != 1.0 else log_target
            for lam in lambda_range(schedule)]
    occupied = np.zeros(grid.shape, dtype=bool)
    for values in [*logs, *(() if log_initial is None else (log_initial,))]:
        occupied |= values - logsumexp(values) >= np.log(PECLET_MASS)   # cell mass >= PECLET_MASS
    per_axis = axis_peclet(logs, grid, occupied=occupied)
    peclet = max(per_axis)
    if flux != "scharfetter-gummel" or not peclet > MAX_CELL_PECLET:
        return peclet, None
    needs = []
    for k, pe in enumerate(per_axis):
        if pe > MAX_CELL_PECLET:
            # Pe is ~ proportional to h; the margin covers the O(h) change of the steepest edge's
            # position (and gradient) on the finer grid
            cells = int(np.ceil((grid.upper[k] - grid.lower[k]) / (PECLET_MARGIN * grid.spacing[k] * MAX_CELL_PECLET / pe)
                                - 1e-9))   # not one more for round-off
            h = (grid.upper[k] - grid.lower[k]) / cells
            needs.append(f"{h:.3g} along {_AXES[k]} ({cells} cells)")
    message = (
        f"the cell Peclet number h|grad log pi| reaches {peclet:.3g} (above {MAX_CELL_PECLET:g}): there the "
        f"Scharfetter-Gummel flux is close to first-order upwinding and the result can be far from the exact "
        f"flow; use cells of width at most {' and '.join(needs)}, or set flow.flux = \"log-mean\" (second "
        f"order at any Peclet number)")
    warnings.warn(message, PecletWarning, stacklevel=2)
    return peclet, message
