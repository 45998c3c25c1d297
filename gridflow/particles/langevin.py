"""Tempered unadjusted Langevin (``ula``) for the Fokker–Planck flow."""

from __future__ import annotations

from gridflow.particles.base import ParticleSampler

__all__ = ["TemperedULA"]


class TemperedULA(ParticleSampler):
    r"""Tempered unadjusted Langevin algorithm (Fokker–Planck flow, weight a = ``flow.diffusion``).

    Euler–Maruyama for dX = a grad log pi_lambda(t)(X) dt + sqrt(2a) dB:

        X_{k+1} = X_k + a h grad log pi_{lambda(t_k)}(X_k) + sqrt(2 a h) xi_k,   xi_k ~ N(0, I),

    then folded into the box (reflecting/periodic).  Weak order 1: expectations at fixed t have
    an error O(h) (for Gaussian targets the stationary variance is C / (1 - a h / (2C)) in 1D).
    Unweighted; particles are independent.
    """

    name = "ula"
    aliases = ("tempered-ula",)
    flows = ("fokker-planck",)
    interacting = False

    def _step(self, state, t, dt, rng, lam_new, fr_weight):
        state.x = self._langevin(state.x, state.lam, dt, rng)

