"""Birth–death samplers with a kernel density estimate: ``bd`` (Fisher–Rao) and ``bdl`` (WFR, with Langevin)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gridflow.errors import InputError
from gridflow.particles.base import ParticleSampler
from gridflow.particles.kde import kde_bandwidth, kde_log_density

__all__ = ["BirthDeath", "BirthDeathLangevin"]


def _birth_death(x: np.ndarray, rate: np.ndarray, dt: float, rng: np.random.Generator) -> np.ndarray:
    """One birth–death step with centred per-particle rates ``rate`` (already multiplied by b):
    a particle with rate > 0 dies with probability 1 - e^{-rate dt}, one with rate < 0 is
    duplicated with probability 1 - e^{rate dt}; the population is then brought back to N by
    removing uniformly chosen particles (net births) or duplicating uniformly chosen ones (net
    deaths).  As the rates are centred, that correction is O(dt / sqrt N) and the mean-field
    limit is d rho = -rate rho dt, the Fisher–Rao step to first order."""
    n = x.shape[0]
    p = -np.expm1(-np.abs(rate) * dt)
    event = rng.random(n) < p
    dies = event & (rate > 0)
    born = event & (rate < 0)
    new = np.concatenate([x[~dies], x[born]])
    m = new.shape[0]
    if m > n:
        keep = np.sort(rng.permutation(m)[:n])
        new = new[keep]
    elif m < n:
        new = np.concatenate([new, new[rng.integers(0, m, n - m)]])
    return new


class BirthDeath(ParticleSampler):
    r"""Birth–death with a kernel density estimate (Fisher–Rao flow, weight b; Lu, Lu & Nolen 2019).

    Per step of length h, with rho_sigma = K_sigma * (1/N) sum_j delta_{X_j} the Gaussian KDE
    (bandwidth ``bandwidth``, default the rule of thumb :func:`kde_bandwidth`) and

        beta_i = b [log rho_sigma(X_i) - log pi_{lambda(t)}(X_i) - mean_j (same at X_j)],

    particle i dies with probability 1 - e^{-beta_i h} (beta_i > 0) or is duplicated with
    probability 1 - e^{beta_i h} (beta_i < 0); the population is kept at N by removing or
    duplicating uniformly chosen particles (vectorised net-balance variant of the sequential
    kill-and-clone algorithm; the same mean-field limit).  Errors: O(h) (weak order 1),
    O(sigma^2) from the kernel smoothing, and Monte Carlo; the support never grows (clones tie).
    """

    name = "bd"
    aliases = ("birth-death",)
    flows = ("fisher-rao",)

    def __init__(self, model, *, step, threshold=0.5, bandwidth: float | Sequence[float] | None = None,
                 kde: str = "binned"):
        super().__init__(model, step=step, threshold=threshold)
        if bandwidth is not None:
            bw = np.broadcast_to(np.asarray(bandwidth, dtype=float), (model.dim,))
            if not np.all((bw > 0) & np.isfinite(bw)):
                raise InputError(f"The KDE bandwidth must be positive, got {bandwidth!r}.")
        if kde not in ("binned", "exact"):
            raise InputError(f"kde must be 'binned' or 'exact', got {kde!r}.")
        self.bandwidth = bandwidth
        self.kde = kde

    def options(self):
        bw = "rule-of-thumb" if self.bandwidth is None else str(np.asarray(self.bandwidth).tolist())
        return {**super().options(), "bandwidth": bw, "kde": self.kde}

    def _kde(self, x, weights=None, at=None, bandwidth=None):
        g = self.model.grid
        bw = bandwidth if bandwidth is not None else (
            self.bandwidth if self.bandwidth is not None else kde_bandwidth(x, weights))
        return kde_log_density(x, bandwidth=bw, lower=g.lower, upper=g.upper, weights=weights, at=at,
                               boundary=g.boundary, method=self.kde)

    def _birth_death_step(self, state, lam, dt, rng):
        x = state.x
        excess = self._kde(x) - self.model.log_tempered(x, lam)
        rate = self.b * (excess - excess.mean())
        state.x = _birth_death(x, rate, dt, rng)

    def _step(self, state, t, dt, rng, lam_new, fr_weight):
        self._birth_death_step(state, state.lam, dt, rng)


class BirthDeathLangevin(BirthDeath):
    r"""Birth–death Langevin (WFR flow, weights a and b): per step of length h, one tempered ULA
    step (:class:`TemperedULA`, weight a) followed by one birth–death step (:class:`BirthDeath`,
    weight b), both with lambda(t_k).  Lie splitting of the WFR flow; weak order 1 plus the
    O(sigma^2) kernel bias; unweighted, interacting."""

    name = "bdl"
    aliases = ("birth-death-langevin",)
    flows = ("wfr",)

    def _step(self, state, t, dt, rng, lam_new, fr_weight):
        state.x = self._langevin(state.x, state.lam, dt, rng)
        self._birth_death_step(state, state.lam, dt, rng)

