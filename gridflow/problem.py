"""A problem: grid, initial density, tempering path, schedule and flow, built from a case."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from gridflow.distributions import check_edge_mass, log_density, normalise
from gridflow.errors import DensityError
from gridflow.grid import Grid
from gridflow.schedule import Schedule, Untempered, schedule_from_table
from gridflow.tempering import TemperedPath

FLOWS = ("fokker-planck", "fisher-rao", "wfr", "path")


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

    @property
    def tempered(self) -> bool:
        return not isinstance(self.schedule, Untempered)

    @classmethod
    def from_case(cls, case: Mapping) -> "Problem":
        """Build the problem of a resolved case (see :func:`gridflow.case.load_case`)."""
        g = case["grid"]
        grid = Grid(g["lower"], g["upper"], g["cells"], g.get("boundary", "reflecting"))
        log_initial = normalise(log_density(case["initial"], grid, what="initial"), grid)
        log_target = normalise(log_density(case["target"], grid, what="target"), grid)
        tempering = case.get("tempering")
        reference = tempering.get("reference", "initial") if tempering else "initial"
        if reference == "initial":
            log_reference = log_initial
        else:
            log_reference = normalise(log_density(reference, grid, what="tempering.reference"), grid)
        for name, values in (("target", log_target), ("tempering reference", log_reference)):
            if not np.all(np.isfinite(values)):
                raise DensityError(
                    f"The {name} density is zero on some cells of the box (log density -inf). The "
                    f"{name} must be positive on every cell: the Fokker–Planck flux needs log pi, and "
                    f"the tempering path needs pi_0 > 0. Use a density with full support on the box."
                )
        flow = case["flow"]
        kind = flow["kind"]
        diffusion = float(flow.get("diffusion", 1.0)) if kind in ("fokker-planck", "wfr") else 0.0
        reaction = float(flow.get("reaction", 1.0)) if kind in ("fisher-rao", "wfr") else 0.0
        warns = [
            m for m in (
                check_edge_mass(log_initial, grid, what="initial"),
                check_edge_mass(log_target, grid, what="target"),
            ) if m
        ]
        return cls(
            grid=grid,
            log_initial=log_initial,
            path=TemperedPath(grid=grid, log_reference=log_reference, log_target=log_target),
            schedule=schedule_from_table(tempering["schedule"] if tempering else None),
            flow=kind,
            diffusion=diffusion,
            reaction=reaction,
            warnings=warns,
        )
