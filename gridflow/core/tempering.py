"""The geometric tempering path pi_lambda ∝ pi_0^(1-lambda) pi^lambda on a grid.

With T = log pi - log pi_0, log pi_lambda = log pi_0 + lambda T - A(lambda), where the
log normaliser A is evaluated on the grid by log-sum-exp (so A'(lambda) = E_{pi_lambda} T
and A''(lambda) = Var_{pi_lambda} T hold for the grid measures exactly).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gridflow.core.distributions import normalise
from gridflow.core.grid import Grid


@dataclass(frozen=True)
class TemperedPath:
    """Log densities of the path between a reference ``pi_0`` and a target ``pi``.

    Both inputs are log densities at the cell centres, normalised on ``grid``; they must
    be finite everywhere (a tempering path needs pi_0 > 0 wherever pi > 0).
    """

    grid: Grid
    log_reference: np.ndarray
    log_target: np.ndarray
    tilt: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tilt", self.log_target - self.log_reference)

    def log_density(self, lam: float) -> np.ndarray:
        """Normalised log pi_lambda at the cell centres."""
        if lam == 1.0:
            return self.log_target
        if lam == 0.0:
            return self.log_reference
        return normalise(self.log_reference + lam * self.tilt, self.grid)

    def tilt_moments(self, log_density: np.ndarray) -> tuple[float, float]:
        """Mean and variance of T under the normalised grid density ``exp(log_density)``."""
        with np.errstate(under="ignore"):
            w = np.exp(log_density) * self.grid.cell_volume
        w = w / w.sum()
        mean = float(np.sum(w * self.tilt))
        var = float(np.sum(w * (self.tilt - mean) ** 2))
        return mean, var
