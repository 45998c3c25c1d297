"""A user sampler for ``gridflow validate CASE --sampler docs/examples/ula.py:ula``: the unadjusted
Langevin algorithm (Euler–Maruyama) for the tempered Fokker–Planck flow,

    X <- X + a dt grad log pi_lambda(t)(X) + sqrt(2 a dt) xi,   xi ~ N(0, I),

folded back into the case's box.  Weak order 1: the study finds a bias proportional to dt.
``ula_cold`` is the same with a wrong noise sqrt(1.9 a dt): its bias does not shrink with dt, and
the study flags it.  ``--option noise=1.9`` (``target.options``) sets the factor 2 of ``ula`` too.
"""

import numpy as np


def ula(x, log_w, t, dt, rng, target, noise=None):
    """One ULA step of every particle; the weights are left as they are (None: unweighted)."""
    if noise is None:
        noise = float(target.options.get("noise", 2.0))
    a = target.diffusion
    drift = target.grad_log_density(x, t)
    x = x + a * dt * drift + np.sqrt(noise * a * dt) * rng.standard_normal(x.shape)
    return target.confine(x), None


def ula_cold(x, log_w, t, dt, rng, target):
    """ULA with too little noise, sqrt(1.9 a dt) instead of sqrt(2 a dt) (a wrong sampler)."""
    return ula(x, log_w, t, dt, rng, target, noise=1.9)
