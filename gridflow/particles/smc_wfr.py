"""Weighted WFR sampler (``smc-wfr``): ULA move, then the exact Fisher–Rao step on the weights."""

from __future__ import annotations

import math

import numpy as np

from gridflow.particles.base import ParticleSampler
from gridflow.particles.ensemble import normalised_weights
from gridflow.particles.kde import kde_log_density

__all__ = ["SMCWFR"]


class SMCWFR(ParticleSampler):
    r"""Weighted WFR sampler in the spirit of SMC-WFR (Crucinio & Pathiraja 2025) (WFR flow).

    Per step of length h from weighted particles (X_j, W_j): the ULA move
    X'_i = mu_i + sqrt(2 a h) xi_i, mu_i = X_i + a h grad log pi_{lambda(t)}(X_i) (folded into the
    box); then the exact Fisher–Rao step of length h applied to the weights,

        log W_i += (1 - e^{-bh}) [log pi_lambda(X'_i) - log q(X'_i)],   q = sum_j W_j N(mu_j, 2 a h I),

    where q — the law of the moved ensemble — is evaluated by the binned kernel sum of
    :func:`kde_log_density` (bandwidth sqrt(2 a h), reflected at the walls); lambda is taken at
    the end of the step.  Systematic resampling when ESS < ``threshold`` N.  Weak order 1 (Lie
    splitting and ULA); no free bandwidth.
    """

    name = "smc-wfr"
    flows = ("wfr",)
    weighted = True

    def _step(self, state, t, dt, rng, lam_new, fr_weight):
        m = self.model
        x = state.x
        means = x + (self.a * dt) * m.grad_log_tempered(x, state.lam)
        sd = math.sqrt(2.0 * self.a * dt)
        new = m.confine(means + sd * rng.standard_normal(x.shape))
        g = m.grid
        w = normalised_weights(state.log_w)
        # kernel centres folded into the box too (the images at the walls are handled by the KDE)
        log_q = kde_log_density(m.confine(means), bandwidth=sd, lower=g.lower, upper=g.upper, weights=w,
                                at=new, boundary=g.boundary)
        state.x = new
        state.log_w = state.log_w - np.max(state.log_w) - np.expm1(-self.b * dt) * (
            m.log_tempered(new, lam_new) - log_q)
        self._maybe_resample(state, rng)

