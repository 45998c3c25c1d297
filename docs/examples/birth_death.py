"""A user sampler for ``gridflow validate CASE --sampler docs/examples/birth_death.py:birth_death``
on a Fisher–Rao case: birth–death with a Gaussian kernel density estimate (Lu, Lu & Nolen 2019).

Per step, with rho_K the KDE of the ensemble (bandwidth from Silverman's rule, or ``--option
bandwidth=0.3``) and the rates beta_i = b [log rho_K(X_i) - log pi_lambda(t)(X_i) - mean_j(...)],
particle i dies with probability 1 - exp(-beta_i dt) when beta_i > 0 and is duplicated with
probability 1 - exp(beta_i dt) when beta_i < 0; the population is brought back to N by removing or
duplicating uniformly chosen particles.  Errors O(dt) and O(bandwidth^2).  Particles are
unweighted and interacting (duplicates are correlated: use replicates).
"""

import numpy as np


def _kde_log(x, bandwidth):
    """log of the Gaussian KDE of the points x (n, d) at themselves, O(n^2) in chunks."""
    n, d = x.shape
    out = np.empty(n)
    norm = -0.5 * d * np.log(2 * np.pi) - np.sum(np.log(bandwidth)) - np.log(n)
    for start in range(0, n, 1024):
        z = (x[start:start + 1024, None, :] - x[None, :, :]) / bandwidth
        e = -0.5 * np.sum(z * z, axis=2)
        top = e.max(axis=1, keepdims=True)
        out[start:start + 1024] = norm + top[:, 0] + np.log(np.exp(e - top).sum(axis=1))
    return out


def birth_death(x, log_w, t, dt, rng, target):
    """One birth–death step; returns the new positions and None (unweighted)."""
    n, d = x.shape
    bw = target.options.get("bandwidth")
    bw = np.full(d, 0.9 * x.std(axis=0).mean() * n ** -0.2) if bw is None else np.full(d, float(bw))
    excess = _kde_log(x, bw) - target.log_density(x, t)
    rate = target.reaction * (excess - excess.mean())
    event = rng.random(n) < -np.expm1(-np.abs(rate) * dt)
    dies, born = event & (rate > 0), event & (rate < 0)
    new = np.concatenate([x[~dies], x[born]])
    if new.shape[0] > n:
        new = new[np.sort(rng.permutation(new.shape[0])[:n])]
    elif new.shape[0] < n:
        new = np.concatenate([new, new[rng.integers(0, new.shape[0], n - new.shape[0])]])
    return new, None
