"""A problem: grid, initial density, tempering path, schedule and flow, built from a case."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from gridflow.core.distributions import check_edge_mass, log_density, normalise
from gridflow.core.resolution import check_peclet, check_representable
from gridflow.errors import DensityError
from gridflow.core.grid import Grid
from gridflow.core.schedule import Schedule, Untempered, schedule_from_table
from gridflow.core.tempering import TemperedPath


@dataclass
class Problem:
    """Everything the stepper needs, as plain arrays.

    ``log_initial`` and the path's log densities are normalised on the grid.  The
    effective weights are ``diffusion`` (0 unless the flow has a Wasserstein part) and
    ``reaction`` (0 unless it has a Fisher–Rao part).
    """

    grid: Grid
    log_initial: np.ndarray
    path: TemperedPath
    schedule: Schedule
    flow: str
    diffusion: float
    reaction: float
    warnings: list[str] = field(default_factory=list)
    #: the Wasserstein flux: "scharfetter-gummel" or "log-mean" (see gridflow.flows.fokker_planck)
    flux: str = "scharfetter-gummel"
    #: what the state's grid values are: "auto", "cell-averages" or "centre-values" (flow.values)
    values: str = "auto"
    #: largest cell Péclet number h|grad log pi_lambda| of the run (None without a transport part)
    max_cell_peclet: float | None = None

    @property
    def tempered(self) -> bool:
        return not isinstance(self.schedule, Untempered)

    @classmethod
    def from_case(cls, case: Mapping) -> "Problem":
        """Build the problem of a resolved case (see :func:`gridflow.io.case.load_case`)."""
        g = case["grid"]
        grid = Grid(g["lower"], g["upper"], g["cells"], g.get("boundary", "reflecting"))
        log_initial = _grid_log_density(case["initial"], grid, "initial density")
        log_target = _grid_log_density(case["target"], grid, "target")
        tempering = case.get("tempering")
        reference = tempering.get("reference", "initial") if tempering else "initial"
        if reference == "initial":
            log_reference = log_initial
            ref_name = "initial density (the tempering reference)" if tempering else "initial density"
        else:
            log_reference = _grid_log_density(reference, grid, "tempering reference")
            ref_name = "tempering reference"
        flow = case["flow"]
        kind = flow["kind"]
        for name, values in (("target", log_target), (ref_name, log_reference)):
            if not np.all(np.isfinite(values)):
                needed = ("the initial density, the tempering reference and the target"
                          if tempering and reference != "initial" else "the initial density and the target")
                users = {"fokker-planck": ["the Fokker–Planck flux"], "fisher-rao": ["the Fisher–Rao step"],
                         "wfr": ["the Fisher–Rao step", "the Fokker–Planck flux"], "path": []}[kind]
                users += ["the tempering path"] if tempering else []
                raise DensityError(
                    f"The {name} is zero on some cells of the box (log density -inf). gridflow needs {needed} "
                    f"positive on every cell ({_and(users)} use{'s' if len(users) == 1 else ''} their "
                    f"logarithms). Use a density with full support on the box, e.g. logaddexp(f, -1000) for a "
                    f"formula f.")
        diffusion = float(flow.get("diffusion", 1.0)) if kind in ("fokker-planck", "wfr") else 0.0
        reaction = float(flow.get("reaction", 1.0)) if kind in ("fisher-rao", "wfr") else 0.0
        warns = [
            m for m in (
                check_edge_mass(log_initial, grid, what="initial"),
                check_edge_mass(log_target, grid, what="target"),
            ) if m
        ]
        schedule = schedule_from_table(tempering["schedule"] if tempering else None)
        flux = flow.get("flux", "scharfetter-gummel")
        peclet, message = check_peclet(grid=grid, log_reference=log_reference, log_target=log_target,
                                       schedule=schedule, flow=kind, flux=flux,
                                       log_initial=log_initial)
        if message:
            warns.append(message)
        return cls(
            grid=grid,
            log_initial=log_initial,
            path=TemperedPath(grid=grid, log_reference=log_reference, log_target=log_target),
            schedule=schedule,
            flow=kind,
            diffusion=diffusion,
            reaction=reaction,
            warnings=warns,
            flux=flux,
            values=flow.get("values", "auto"),
            max_cell_peclet=peclet,
        )


def _and(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _grid_log_density(table: Mapping, grid: Grid, what: str) -> np.ndarray:
    """Normalised log density of a distribution table on ``grid``, refused if the grid cannot represent it."""
    values = log_density(table, grid, what=what)
    check_representable(table, values, grid, what=what)
    return normalise(values, grid)
