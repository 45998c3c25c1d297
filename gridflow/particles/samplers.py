r"""Reference particle samplers that run the problem of a case (docs/validation.md).

A sampler runs the *same problem* as the grid solver — the case's target pi, initial density
mu_0, tempering reference pi_0, schedule lambda(t), weights a (``flow.diffusion``) and
b (``flow.reaction``) and box — with N particles, so that its ensembles can be compared with
the grid density (:func:`gridflow.analysis.metrics.compare`, :mod:`gridflow.analysis.validation`).

Notation: pi_lambda ∝ pi_0^{1-lambda} pi^lambda, T = log pi - log pi_0,
J(t) = ∫_0^t b e^{-b(t-s)} lambda(s) ds (J' = b (lambda - J)), E(t) = 1 - e^{-bt}.
Under the Fisher–Rao flow, exactly (docs/numerics.md, "Fisher–Rao: exact in log space"),

    log rho_t = (1 - E(t)) log mu_0 + E(t) log pi_0 + J(t) T + const.

===============  ======  =====================================================================  ===============
name             flow    update                                                                 time error
===============  ======  =====================================================================  ===============
``ula``          W       X += a h grad log pi_lambda(t)(X) + sqrt(2 a h) xi  (Euler–Maruyama)    weak order 1
``fr-is``        FR      X ~ mu_0 fixed; log w = E(t)(log pi_0 - log mu_0)(X) + J(t) T(X)        none (exact)
``fr-smc``       FR      incremental weights of the same law, systematic resampling when        none (exact)
                         ESS < N/2, then random-walk Metropolis moves invariant for rho_t
``bd``           FR      birth–death with a kernel density estimate (Lu, Lu & Nolen 2019)       weak order 1, O(sigma^2)
``bdl``          WFR     one ``ula`` step (a) then one ``bd`` step (b) (Lie splitting)          weak order 1, O(sigma^2)
``smc-wfr``      WFR     ULA move, then the exact FR step applied to the weights with the       weak order 1
                         density of the ULA proposal mixture; resampling when ESS < N/2
===============  ======  =====================================================================  ===============

The particles live in the case's box like the grid density: with ``boundary = "reflecting"``
a particle that leaves it is mirrored back in (the reflected diffusion, zero flux at the
walls), with ``"periodic"`` it is wrapped; Metropolis proposals outside a reflecting box are
rejected.  Initial positions are exact draws of mu_0 restricted to the box: Gaussian and
all-Gaussian mixtures are drawn in the continuum, other kinds from the grid's piecewise-constant
initial density (whose cell value is then also the log mu_0 used in weights).  log pi and log
pi_0 are evaluated in the continuum (Gaussians and mixtures in closed form, ``expression``
formulas exactly with central-difference gradients, ``file`` densities by multilinear
interpolation of the cell-centre values).

Adaptive schedules (the case's `tempering.schedule`) are advanced with the particles by explicit Euler steps,
d lambda/dt from Var(T) under pi_lambda (computed exactly on the grid, ``variance = "path"``)
or under the weighted ensemble (``variance = "density"``); this adds an O(h) error to every
sampler.  Resampling is systematic and happens only when ESS = 1/sum w_i^2 < N/2 (``threshold``).

Samplers are vectorised over particles; only time steps are a Python loop.  A step of ``step``
means: each interval between frame times is cut into ``ceil(interval / step)`` equal steps.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gridflow.errors import InputError
from gridflow.particles.base import ALIASES, SAMPLERS, ParticleFrame, ParticleSampler
from gridflow.particles.densities import LogDensity, log_density_function
from gridflow.particles.ensemble import effective_sample_size, systematic_resample
from gridflow.particles.kde import kde_bandwidth, kde_log_density
from gridflow.particles.model import ParticleModel, reflect
from gridflow.particles.user import Target, UserSampler, load_user_sampler
# the sampler families, in the order of the table above: defining their classes fills SAMPLERS and ALIASES
from gridflow.particles.langevin import TemperedULA                                   # noqa: I001
from gridflow.particles.fisher_rao import FisherRaoImportance, TemperingSMC
from gridflow.particles.birth_death import BirthDeath, BirthDeathLangevin
from gridflow.particles.smc_wfr import SMCWFR

__all__ = [
    "LogDensity", "log_density_function", "ParticleModel", "ParticleFrame", "ParticleSampler",
    "TemperedULA", "FisherRaoImportance", "TemperingSMC", "BirthDeath", "BirthDeathLangevin", "SMCWFR",
    "SAMPLERS", "make_sampler", "run_sampler", "systematic_resample", "effective_sample_size",
    "kde_log_density", "kde_bandwidth", "reflect", "Target", "UserSampler", "load_user_sampler",
]


#: user sampler files already imported in this process ("FILE.py:NAME" -> (function, label))
_USER_CACHE: dict[str, tuple[Any, str]] = {}


def make_sampler(name: Any, model: ParticleModel, *, step: float, **options: Any) -> ParticleSampler:
    """The sampler ``name`` (a key of :data:`SAMPLERS` or an alias) for ``model``; ``options`` are
    the sampler's own keyword arguments (``threshold``, ``moves``, ``scale``, ``bandwidth``, ``kde``).

    ``name`` may also be a user sampler: a function ``fn(x, log_w, t, dt, rng, target)`` or a string
    ``"FILE.py:NAME"`` (:class:`UserSampler`; ``options`` then reach it as ``target.options``)."""
    if callable(name) and not isinstance(name, str):
        return UserSampler(model, step=step, fn=name, **options)
    if isinstance(name, str) and (":" in name or name.endswith(".py")) and name not in SAMPLERS \
            and name not in ALIASES:
        fn, label = _USER_CACHE.get(name) or load_user_sampler(name)
        _USER_CACHE[name] = (fn, label)
        return UserSampler(model, step=step, fn=fn, label=label, **options)
    key = ALIASES.get(name, name)
    if key not in SAMPLERS:
        raise InputError(f"Unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)} "
                         f"(aliases: {', '.join(f'{a}={b}' for a, b in ALIASES.items())}).")
    cls = SAMPLERS[key]
    try:
        return cls(model, step=step, **options)
    except TypeError as exc:
        raise InputError(f"Bad option for the sampler {key!r}: {exc}. See the docstring of "
                         f"{cls.__module__}.{cls.__name__} for its options.") from None


def run_sampler(case: Mapping, *, sampler: str, particles: int, step: float, times: Sequence[float] | None = None,
                seed: int | None = None, output: str | os.PathLike | None = None,
                options: Mapping[str, Any] | None = None) -> list[ParticleFrame]:
    """Run ``sampler`` on the problem of a resolved ``case`` and return its frames.

    ``times`` default to the case's save times.  With ``output`` the frames are also written as a
    particle trajectory file (:mod:`gridflow.io.particle_file`) whose attributes record the case, the
    sampler, its options, the number of particles and the seed.
    """
    from gridflow.time.solver import save_times

    model = ParticleModel.from_case(case)
    smp = make_sampler(sampler, model, step=step, **dict(options or {}))
    times = save_times(case["time"]) if times is None else times
    frames = list(smp.run(particles=particles, times=times, rng=seed))
    if output is not None:
        from gridflow.io.case import dumps_case
        from gridflow.io.particle_file import write_particles

        attrs = {**{k: v for k, v in smp.options().items()}, "flow": model.flow, "particles": int(particles),
                 "seed": -1 if seed is None else int(seed), "case": dumps_case(case)}
        write_particles(Path(output), frames, attrs=attrs)
    return frames
