"""The problem of a case as seen by particles: log densities, tempering, the box (docs/validation.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np

from gridflow.core.problem import Problem
from gridflow.errors import InputError, NumericalError
from gridflow.particles.densities import LogDensity, _GridValues, _Mixture, log_density_function
from gridflow.particles.grid_sampling import GridDensitySampler

__all__ = ["ParticleModel", "reflect"]


def reflect(x: np.ndarray, lower: Sequence[float], upper: Sequence[float], *, periodic: bool = False) -> np.ndarray:
    """Fold positions (n, d) into the box: mirror images at the walls (reflecting) or wrap (periodic).

    Reflection is the exact fold of the real line onto [lower, upper] (any distance outside)."""
    lo = np.asarray(lower, dtype=float)
    width = np.asarray(upper, dtype=float) - lo
    if periodic:
        return lo + np.mod(x - lo, width)
    y = np.mod(x - lo, 2.0 * width)
    return lo + np.where(y > width, 2.0 * width - y, y)


@dataclass
class ParticleModel:
    """Everything a sampler needs from a case, as functions of position.

    Build with :meth:`from_case`.  ``target``, ``reference`` (pi_0) and ``initial`` (mu_0) are
    :class:`LogDensity` functions; ``problem`` is the grid problem (its box, schedule, weights
    and, for adaptive schedules with ``variance = "path"``, the exact path moments).
    """

    problem: Problem
    target: LogDensity
    reference: LogDensity
    initial: LogDensity
    reference_is_initial: bool
    case: Mapping | None = None
    _initial_sampler: Any = field(default=None, repr=False)

    @classmethod
    def from_case(cls, case: Mapping) -> "ParticleModel":
        """The particle version of a resolved case (see :func:`gridflow.io.case.load_case`)."""
        problem = Problem.from_case(case)
        grid = problem.grid
        target = log_density_function(case["target"], grid, what="target")
        tempering = case.get("tempering")
        ref_table = tempering.get("reference", "initial") if tempering else "initial"
        init_table = case["initial"]
        exact = init_table["kind"] == "gaussian" or (
            init_table["kind"] == "mixture" and _Mixture(init_table["weights"], [
                log_density_function(c, grid) for c in init_table["components"]]).gaussian)
        if exact:
            initial = log_density_function(init_table, grid, what="initial")
        else:   # sampled from the grid's piecewise-constant initial density: its log density is the cell value
            initial = _GridValues(problem.log_initial, grid, mode="cell")
        if ref_table == "initial":
            reference, is_initial = initial, True
        else:
            reference, is_initial = log_density_function(ref_table, grid, what="tempering.reference"), False
        model = cls(problem=problem, target=target, reference=reference, initial=initial,
                    reference_is_initial=is_initial, case=case)
        if not exact:
            model._initial_sampler = GridDensitySampler(grid, np.exp(problem.log_initial))
        return model

    # -- shortcuts --------------------------------------------------------------------------
    grid = property(attrgetter("problem.grid"), doc="The problem's grid (core.grid.Grid).")
    dim = property(attrgetter("problem.grid.dim"), doc="The dimension of the grid (int).")
    periodic = property(attrgetter("problem.grid.periodic"), doc="Whether the box is periodic (bool).")
    flow = property(attrgetter("problem.flow"), doc="The flow's kind (str).")
    diffusion = property(attrgetter("problem.diffusion"), doc="The diffusion coefficient (float).")
    reaction = property(attrgetter("problem.reaction"), doc="The reaction (Fisher-Rao) rate (float).")
    schedule = property(attrgetter("problem.schedule"), doc="The tempering schedule (core.schedule.Schedule).")

    def confine(self, x: np.ndarray) -> np.ndarray:
        """Positions folded into the box (reflecting or periodic, as the grid)."""
        g = self.grid
        return reflect(x, g.lower, g.upper, periodic=g.periodic)

    def inside(self, x: np.ndarray) -> np.ndarray:
        g = self.grid
        return np.all((x >= np.asarray(g.lower)) & (x <= np.asarray(g.upper)), axis=1)

    def sample_initial(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` exact draws of mu_0 restricted to the box, shape (n, d)."""
        if self._initial_sampler is not None:
            return self._initial_sampler.sample(n, rng)
        out = self.initial.sample(n, rng)
        for _ in range(100):                    # rejection of draws outside the box (the grid truncates)
            bad = ~self.inside(out)
            if not bad.any():
                return out
            out[bad] = self.initial.sample(int(bad.sum()), rng)
        raise InputError("The initial density puts almost no mass inside the box (100 rounds of redrawing the "
                         "particles outside it did not succeed); enlarge [grid] lower/upper to cover it.")

    def grad_log_tempered(self, x: np.ndarray, lam: float) -> np.ndarray:
        """grad log pi_lambda = (1 - lambda) grad log pi_0 + lambda grad log pi."""
        if lam >= 1.0:
            g = self.target.grad(x)
        elif lam <= 0.0:
            g = self.reference.grad(x)
        else:
            g = (1.0 - lam) * self.reference.grad(x) + lam * self.target.grad(x)
        if not np.all(np.isfinite(g)):
            bad = ~np.all(np.isfinite(g), axis=1)
            raise NumericalError(
                f"grad log pi_lambda (lambda = {lam:.4g}) is not finite at {int(bad.sum())} particles (first at "
                f"{x[np.argmax(bad)].tolist()}): the target or reference log density is not differentiable "
                "there; smooth the density or shrink the box.")
        return g

    def log_tempered(self, x: np.ndarray, lam: float) -> np.ndarray:
        """log pi_lambda up to a constant."""
        if lam >= 1.0:
            return self.target(x)
        if lam <= 0.0:
            return self.reference(x)
        return (1.0 - lam) * self.reference(x) + lam * self.target(x)

    def tilt(self, x: np.ndarray) -> np.ndarray:
        """T = log pi - log pi_0 (up to a constant)."""
        return self.target(x) - self.reference(x)

    def fr_log_density(self, x: np.ndarray, decay: float, J: float) -> np.ndarray:
        """log rho_t of the Fisher–Rao flow up to a constant: decay log mu_0 + (1 - decay) log pi_0 + J T,
        with decay = e^{-bt} (also fine for a tempered run with reference mu_0)."""
        if self.reference_is_initial:
            return self.initial(x) + J * self.tilt(x)
        return decay * self.initial(x) + (1.0 - decay) * self.reference(x) + J * self.tilt(x)

