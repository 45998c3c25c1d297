"""Exact Fisher–Rao samplers: importance sampling (``fr-is``) and tempering SMC (``fr-smc``)."""

from __future__ import annotations

import math

import numpy as np

from gridflow.errors import InputError
from gridflow.particles.base import ParticleSampler

__all__ = ["FisherRaoImportance", "TemperingSMC"]


class FisherRaoImportance(ParticleSampler):
    r"""Exact Fisher–Rao importance sampling (Fisher–Rao flow, weight b = ``flow.reaction``).

    The particles are N draws X_i of mu_0 that never move; their log weights are the exact
    density ratio of the FR flow,

        log w_i(t) = E(t) (log pi_0 - log mu_0)(X_i) + J(t) T(X_i),   E = 1 - e^{-bt},

    (the first term vanishes when pi_0 = mu_0; untempered, log w = (1 - e^{-bt})(log pi - log mu_0)).
    No time discretisation for explicit schedules (J in closed form); ``step`` only matters for
    adaptive schedules.  Never resampled.  Particles are independent (self-normalised IS).
    """

    name = "fr-is"
    aliases = ("is",)
    flows = ("fisher-rao",)
    weighted = True
    interacting = False
    exact_in_time = True

    def _start(self, n, rng, lam0):
        state = super()._start(n, rng, lam0)
        m = self.model
        state.extra["tilt"] = m.tilt(state.x)
        state.extra["gap"] = None if m.reference_is_initial else m.reference(state.x) - m.initial(state.x)
        return state

    def _advance(self, state, t, dt, rng):
        if self.model.schedule.adaptive:      # lambda (and J) integrated step by step
            super()._advance(state, t, dt, rng)
            self._set_weights(state, t + dt)
        # explicit schedules: nothing to integrate, the weights are set exactly in _frame

    def _step(self, state, t, dt, rng, lam_new, fr_weight):
        pass

    def _set_weights(self, state, t):
        log_w = state.J * state.extra["tilt"]
        if state.extra["gap"] is not None:
            log_w = log_w - np.expm1(-self.b * t) * state.extra["gap"]
        state.log_w = log_w

    def _frame(self, state, steps):
        sched = self.model.schedule
        if not sched.adaptive:
            state.lam = sched.value(state.t)
            state.J = sched.fr_weight(0.0, state.t, self.b) if state.t > 0 else 0.0
            self._set_weights(state, state.t)
        return super()._frame(state, steps if sched.adaptive else 0)


class TemperingSMC(ParticleSampler):
    r"""Tempering SMC along the exact Fisher–Rao path (Fisher–Rao flow, weight b).

    The target at time t is rho_t ∝ mu_0^{e^{-bt}} pi_0^{1-e^{-bt}} exp(J(t) T) (= pi_{J(t)} when
    pi_0 = mu_0).  Per step t -> t + h: incremental weights
    log w += (e^{-bt} - e^{-b(t+h)}) (log pi_0 - log mu_0) + (J(t+h) - J(t)) T; when
    ESS < ``threshold`` N, systematic resampling followed by ``moves`` random-walk Metropolis
    steps that leave rho_{t+h} invariant (Gaussian proposal with covariance
    ``scale``^2 2.38^2/d times the ensemble covariance; proposals outside a reflecting box are
    rejected).  No time discretisation error (the weights are exact; the moves are exact MCMC);
    the error is Monte Carlo only (resampling makes the particles dependent: use replicates).
    """

    name = "fr-smc"
    aliases = ("smc",)
    flows = ("fisher-rao",)
    weighted = True
    exact_in_time = True

    def __init__(self, model, *, step, threshold=0.5, moves: int = 5, scale: float = 1.0):
        super().__init__(model, step=step, threshold=threshold)
        if isinstance(moves, bool) or not isinstance(moves, (int, np.integer)) or moves < 0:
            raise InputError(f"moves must be a non-negative integer, got {moves!r}.")
        if not (scale > 0 and math.isfinite(scale)):
            raise InputError(f"The proposal scale must be a positive number, got {scale!r}.")
        self.moves, self.scale = int(moves), float(scale)
        self.accepted = 0
        self.proposed = 0

    def options(self):
        return {**super().options(), "moves": self.moves, "scale": self.scale}

    def _step(self, state, t, dt, rng, lam_new, fr_weight):
        m = self.model
        d0, d1 = math.exp(-self.b * t), math.exp(-self.b * (t + dt))
        dJ = (math.exp(-self.b * dt) * state.J + fr_weight) - state.J
        inc = dJ * m.tilt(state.x)
        if not m.reference_is_initial:
            inc = inc + (d0 - d1) * (m.reference(state.x) - m.initial(state.x))
        state.log_w = state.log_w + inc
        if self._maybe_resample(state, rng) and self.moves:
            self._move(state, rng, d1, math.exp(-self.b * dt) * state.J + fr_weight)

    def _move(self, state, rng, decay, J):
        m = self.model
        x = state.x
        n, d = x.shape
        cov = np.atleast_2d(np.cov(x, rowvar=False))
        cov += 1e-12 * np.eye(d) * max(1.0, float(np.trace(cov)))
        chol = np.linalg.cholesky((self.scale * 2.38) ** 2 / d * cov)
        logp = m.fr_log_density(x, decay, J)
        for _ in range(self.moves):
            prop = x + rng.standard_normal((n, d)) @ chol.T
            if m.periodic:
                prop = m.confine(prop)
                ok = np.ones(n, dtype=bool)
            else:
                ok = m.inside(prop)
            logq = np.full(n, -np.inf)
            logq[ok] = m.fr_log_density(prop[ok], decay, J)
            with np.errstate(invalid="ignore"):
                accept = np.log(rng.random(n)) < logq - logp
            accept &= ok
            x = np.where(accept[:, None], prop, x)
            logp = np.where(accept, logq, logp)
            self.accepted += int(accept.sum())
            self.proposed += n
        state.x = x

