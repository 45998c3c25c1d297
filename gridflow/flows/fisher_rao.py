r"""The Fisher–Rao (birth–death) flow, solved exactly in log space.

:math:`\partial_t\rho = -b\,\rho\,(\log(\rho/\pi_{\lambda(t)}) - \int\rho\log(\rho/\pi_{\lambda(t)}))`
is, cell by cell, the linear ODE :math:`\partial_t\log\rho = -b(\log\rho - \log\pi_{\lambda(t)}) + c(t)`.
With :math:`\log\pi_\lambda = \log\pi_0 + \lambda T - A(\lambda)` a step of length dt is exact:

.. math:: \log\rho(t+\Delta t) = e^{-b\Delta t}\log\rho(t) + (1 - e^{-b\Delta t})\log\pi_0
          + w\,T + \text{const},\qquad w = \int_0^{\Delta t} b e^{-b(\Delta t - s)}\lambda(t+s)\,ds,

the constant fixed by mass conservation (log-sum-exp).  There is no time error; cells with
zero density (log rho = -inf) stay empty, as in the flow.
"""

from __future__ import annotations

import numpy as np
from gridflow.core.logspace import logsumexp

from gridflow.core.schedule import Schedule
from gridflow.core.tempering import TemperedPath


def fisher_rao_step(log_rho: np.ndarray, *, path: TemperedPath, schedule: Schedule, t: float, dt: float,
                    reaction: float) -> np.ndarray:
    """Exact Fisher–Rao step of length ``dt`` from time ``t``; keeps the mass of ``log_rho``."""
    decay = float(np.exp(-reaction * dt))
    weight = schedule.fr_weight(t, dt, reaction)
    new = decay * log_rho + (1.0 - decay) * path.log_reference + weight * path.tilt
    return new + (logsumexp(log_rho) - logsumexp(new))
