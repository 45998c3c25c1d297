"""Goodness-of-fit tests of an ensemble against a grid law: histogram TV and G-test, KS and Cramér–von Mises (1D)."""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from gridflow.analysis.distances import cumulative_weights, merge_cells
from gridflow.core.grid import Grid

__all__ = ["histogram_tests", "one_dim_tests", "HIST_MAX_CELLS"]

#: cells per axis of the histogram of ``tv_histogram`` and the G-test
HIST_MAX_CELLS = {1: 512, 2: 64}


def _binomial_mad(n: int, p: np.ndarray) -> np.ndarray:
    """``E|X - n p|`` for ``X ~ Binomial(n, p)`` (de Moivre: ``2 nu (1-p) P(X = nu)``, ``nu = floor(np) + 1``)."""
    p = np.asarray(p, dtype=float)
    ok = (p > 0.0) & (p < 1.0)
    out = np.zeros_like(p)
    nu = np.floor(n * p[ok]) + 1
    out[ok] = 2.0 * nu * (1.0 - p[ok]) * stats.binom.pmf(nu, n, p[ok])
    return out


def _snake_order(shape: tuple[int, ...]) -> np.ndarray:
    """Cell order (flat indices) along rows, alternating direction, so consecutive cells touch."""
    if len(shape) == 1:
        return np.arange(shape[0])
    idx = np.arange(shape[0] * shape[1]).reshape(shape)
    idx[1::2] = idx[1::2, ::-1]
    return idx.ravel()


def _greedy_bins(p: np.ndarray, threshold: float) -> np.ndarray:
    """Bin starts: consecutive cells are merged until each bin has mass >= threshold (a short
    remainder joins the last bin)."""
    C = np.concatenate([[0.0], np.cumsum(p)])
    C /= C[-1]
    starts = [0]
    while True:
        j = int(np.searchsorted(C, C[starts[-1]] + threshold, side="left"))
        if j >= p.size or 1.0 - C[j] < threshold:
            break
        starts.append(j)
    return np.asarray(starts)


def histogram_tests(grid: Grid, masses: np.ndarray, x: np.ndarray, w: np.ndarray, n: float) -> dict:
    """Total variation between particle and grid masses on merged cells (with its exact binomial floor) and
    the G-test with Williams' correction on bins merged along the snake order; ``n`` is the (effective) size."""
    lower, upper, h = np.asarray(grid.lower), np.asarray(grid.upper), np.asarray(grid.spacing)
    inside = np.all((x >= lower) & (x <= upper), axis=1)
    fine = np.minimum(((x[inside] - lower) / h).astype(np.int64), np.asarray(grid.shape) - 1)
    impossible = float(w[~inside].sum() + w[inside][masses[tuple(fine.T)] == 0.0].sum())
    _, p, factors = merge_cells(grid, masses, HIST_MAX_CELLS[grid.dim])
    coarse = np.ravel_multi_index(tuple((fine // np.asarray(factors)).T), p.shape)
    q = np.bincount(coarse, weights=w[inside], minlength=p.size)
    outside = float(w[~inside].sum())
    shape = p.shape
    p = p.ravel()
    tv = 0.5 * (float(np.abs(q - p).sum()) + outside)
    n_int = max(1, int(round(n)))
    tv_floor = float(_binomial_mad(n_int, p).sum()) / (2 * n_int)
    # G-test on merged bins with expected counts >= max(5, n / (2 n^0.4))
    order = _snake_order(shape)
    target_bins = max(2.0, 2.0 * n ** 0.4)
    starts = _greedy_bins(p[order], max(5.0 / n, 1.0 / target_bins))
    pb = np.add.reduceat(p[order], starts)
    qb = np.add.reduceat(q[order], starts)
    bins = pb.size
    out = {"tv": tv, "tv_floor": tv_floor, "impossible_mass": impossible, "bins": bins,
           "merge_factors": list(factors)}
    if bins < 2:
        out.update(g=None, df=None, p=None)
        return out
    obs, exp = n * qb / max(qb.sum(), 1e-300), n * pb
    pos = obs > 0
    g = 2.0 * float(np.sum(obs[pos] * np.log(obs[pos] / exp[pos])))
    williams = 1.0 + (bins + 1.0) / (6.0 * n)
    df = bins - 1
    p_value = 0.0 if impossible > 0.0 else float(stats.chi2.sf(max(g, 0.0) / williams, df))
    out.update(g=g, df=df, p=p_value)
    return out


# --------------------------------------------------------------------------------------------
# one-dimensional tests
# --------------------------------------------------------------------------------------------

def _cvm_asymptotic_sf(t: float) -> float:
    """Survival function of the limiting Cramér–von Mises distribution (Anderson & Darling 1952)."""
    if t <= 0.0:
        return 1.0
    k = np.arange(200)
    y = 4 * k + 1
    q = y * y / (16.0 * t)
    terms = (np.exp(special.gammaln(k + 0.5) - special.gammaln(k + 1)) / (np.pi ** 1.5 * math.sqrt(t))
             * np.sqrt(y) * special.kve(0.25, q) * np.exp(-2.0 * q))
    return float(min(1.0, max(0.0, 1.0 - terms.sum())))


def one_dim_tests(x: np.ndarray, w: np.ndarray | None, n: float, edges: np.ndarray, C: np.ndarray) -> dict:
    """Kolmogorov–Smirnov and Cramér–von Mises statistics and p-values of 1D samples against the
    piecewise-linear CDF through ``(edges, C)`` (scipy for unweighted samples; weighted: with ``n``)."""
    cdf = lambda t: np.interp(t, edges, C)       # noqa: E731 - the exact piecewise-linear CDF
    if w is None:
        ks = stats.kstest(x, cdf)
        cvm = stats.cramervonmises(x, cdf)
        return {"ks": float(ks.statistic), "ks_p": float(ks.pvalue), "cvm": float(cvm.statistic),
                "cvm_p": float(cvm.pvalue), "ks_method": "scipy.stats.kstest, exact finite-N distribution",
                "cvm_method": "scipy.stats.cramervonmises"}
    order = np.argsort(x, kind="stable")
    u = cdf(x[order])
    W = cumulative_weights(w[order], x.size)
    d = float(max(np.max(W[1:] - u), np.max(u - W[:-1])))
    n_int = max(1, int(round(n)))
    # T = n ∫ (F - u)^2 du with F = W_i on [u_i, u_i+1)
    ue = np.concatenate([[0.0], u, [1.0]])
    omega2 = float(np.sum((ue[1:] - W) ** 3 - (ue[:-1] - W) ** 3)) / 3.0
    t = n * omega2
    return {"ks": d, "ks_p": float(stats.kstwo.sf(d, n_int)), "cvm": t, "cvm_p": _cvm_asymptotic_sf(t),
            "ks_method": "Kolmogorov distribution with the effective sample size (approximate for weights)",
            "cvm_method": "asymptotic Cramér–von Mises distribution with the effective sample size (approximate)"}
