"""Particle samplers and exact sampling from a grid density.

grid_sampling.py exact iid samples of a grid density; sample files
densities.py     log densities of a case's distributions (and gradients) at arbitrary points
model.py         the problem of a case for particles (ParticleModel): tempering, Fisher–Rao law, the box
ensemble.py      weighted ensembles: normalised weights, effective sample size, systematic resampling
kde.py           Gaussian kernel density estimates in a box (binned or exact)
base.py          the sampler base class (time loop, lambda, frames) and the registry SAMPLERS by name
langevin.py      tempered unadjusted Langevin (ula)
fisher_rao.py    exact Fisher–Rao samplers: importance sampling (fr-is), tempering SMC (fr-smc)
birth_death.py   birth–death samplers with a KDE (bd) and with Langevin (bdl)
smc_wfr.py       weighted WFR sampler (smc-wfr)
user.py          the user's own sampler (a function or FILE.py:NAME) and the Target it gets
samplers.py      entry points: make_sampler (by name), run_sampler; the public sampler API
"""
