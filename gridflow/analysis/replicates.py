"""Replicate ensembles tested together (Hotelling T^2 on equal-mass bins) and the masses of mixture modes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from gridflow.analysis.distances import cumulative_weights
from gridflow.core.grid import Grid
from gridflow.errors import InputError
from gridflow.particles.grid_sampling import cell_masses, check_samples

__all__ = ["compare_replicates", "mixture_modes", "Modes", "replicate_list", "check_ess", "finite_or_none"]


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float, or None when it is None, NaN or infinite (JSON-safe results)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def check_ess(ess: object, n_particles: int) -> float:
    """A stated effective sample size as a float >= 1; :class:`InputError` otherwise."""
    try:
        value = float(ess)
    except (TypeError, ValueError):
        raise InputError(f"ess must be a positive number (the ensemble's effective size), got {ess!r}.") from None
    if not (value >= 1.0 and math.isfinite(value)):
        raise InputError(f"ess must be a number >= 1 (the ensemble's effective size), got {ess!r}.")
    return value


class Modes:
    """Regions of the components of a mixture: cell c belongs to component k when
    log(weight_k) + log p_k is largest at its centre; a particle belongs to the component of its
    cell (so grid and particle masses are those of the same sets; outside the box: none)."""

    def __init__(self, grid: Grid, cell_labels: np.ndarray, names: Sequence[str]):
        self.grid = grid
        self.cell_labels = np.asarray(cell_labels, dtype=np.int64)
        self.names = list(names)

    def label(self, x: np.ndarray) -> np.ndarray:
        """Component index of each particle (n,), -1 outside the box."""
        g = self.grid
        idx, inside = [], np.ones(x.shape[0], dtype=bool)
        for k in range(g.dim):
            i = np.floor((x[:, k] - g.lower[k]) / g.spacing[k]).astype(np.int64)
            i = np.where(x[:, k] == g.upper[k], g.cells[k] - 1, i)
            inside &= (i >= 0) & (i < g.cells[k])
            idx.append(np.clip(i, 0, g.cells[k] - 1))
        out = self.cell_labels[tuple(idx)]
        return np.where(inside, out, -1)

    def grid_masses(self, masses: np.ndarray) -> np.ndarray:
        return np.array([float(masses[self.cell_labels == k].sum()) for k in range(len(self.names))])

    def particle_masses(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        lab = self.label(x)
        return np.array([float(w[lab == k].sum()) for k in range(len(self.names))])

    def masses(self, grid: Grid, masses: np.ndarray, x: np.ndarray, w: np.ndarray, n: float) -> list[dict]:
        """Grid and particle mass of every mode, with the binomial standard error for n particles."""
        out = []
        for k, (g, p) in enumerate(zip(self.grid_masses(masses), self.particle_masses(x, w))):
            se = math.sqrt(g * (1 - g) / n) if 1e-12 < g < 1 - 1e-12 else 0.0
            out.append({"component": k, "name": self.names[k], "grid_mass": g, "particle_mass": p,
                        "standard_error": se, "z": (p - g) / se if se > 0 else None})
        return out


def mixture_modes(table, grid: Grid) -> Modes | None:
    """The :class:`Modes` of a resolved distribution table (e.g. a case's ``target``) when it is a
    mixture of two or more components, else None."""
    if not isinstance(table, dict) or table.get("kind") != "mixture" or len(table.get("components", ())) < 2:
        return None
    from gridflow.particles.densities import log_density_function

    weights = np.asarray(table["weights"], dtype=float)
    weights = weights / weights.sum()
    pts = grid.points
    with np.errstate(divide="ignore", under="ignore"):
        logs = np.stack([math.log(wk) + log_density_function(c, grid, what=f"target.components[{k}]")(pts)
                         if wk > 0 else np.full(pts.shape[0], -np.inf)
                         for k, (wk, c) in enumerate(zip(weights, table["components"]))])
    labels = np.argmax(logs, axis=0).reshape(grid.shape)
    names = []
    for k, c in enumerate(table["components"]):
        mean = c.get("mean") if isinstance(c, dict) else None
        names.append(f"component {k}" + (f" (mean {', '.join(f'{v:g}' for v in mean)})" if mean is not None else ""))
    return Modes(grid, labels, names)


def replicate_list(samples: object, dim: int) -> list | None:
    """``samples`` as a list of ensembles ``(x, weights)`` when it is a list/tuple of ensembles (arrays
    of shape (N, d) (or (N,) in 1D), ``(x, weights)`` pairs, or dicts with ``positions`` and optional
    ``log_weights``/``weights``), else None (one ensemble)."""
    if not isinstance(samples, (list, tuple)) or len(samples) == 0:
        return None

    def one(item):
        if isinstance(item, np.ndarray):
            if item.ndim == 2 or (item.ndim == 1 and dim == 1 and item.size >= 2):
                return item, None
            return None
        if isinstance(item, dict) and "positions" in item:
            w = item.get("weights")
            if w is None and item.get("log_weights") is not None:
                lw = np.asarray(item["log_weights"], dtype=float)
                w = np.exp(lw - lw.max())
            return np.asarray(item["positions"]), w
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], np.ndarray) and item[0].ndim >= 1 \
                and item[0].size >= 2:
            return item[0], item[1]
        return None

    out = [one(item) for item in samples]
    if all(o is not None for o in out):
        return out
    return None


def _equal_mass_bins(grid: Grid, masses: np.ndarray, k: int) -> list[tuple[int, np.ndarray]]:
    """Per axis, the k - 1 interior edges that cut the marginal of the grid law into k bins of mass
    1/k each (exact: the marginal CDF is piecewise linear)."""
    out = []
    for axis in range(grid.dim):
        other = tuple(a for a in range(grid.dim) if a != axis)
        marginal = masses.sum(axis=other) if other else masses
        C = cumulative_weights(marginal, marginal.size)
        e = grid.edges[axis]
        q = np.arange(1, k) / k
        # first point where C reaches q (left inverse; flat stretches have no mass)
        j = np.clip(np.searchsorted(C, q, side="left"), 1, C.size - 1)
        frac = (q - C[j - 1]) / np.where(C[j] > C[j - 1], C[j] - C[j - 1], 1.0)
        out.append((axis, e[j - 1] + frac * (e[j] - e[j - 1])))
    return out


def compare_replicates(grid: Grid, density: np.ndarray, ensembles: Sequence[tuple[np.ndarray, np.ndarray | None]], *,
                       ess: float | Sequence[float] | None = None, bins: int | None = None,
                       modes: Modes | None = None, confidence: float = 0.95) -> dict:
    """Test R independent ensembles (``(x, weights)`` pairs) against a grid density with the
    between-replicate variation, whatever the correlation of the particles within an ensemble.

    Each ensemble gives a vector of linear statistics: its (weighted) masses in the bins that cut
    each marginal of the grid law into ``bins`` pieces of mass 1/bins (all but the last per axis),
    whose expectation under the hypothesis "every particle has the law rho" is exactly 1/bins
    whatever the dependence between particles (up to O(1/ESS) for self-normalised weights).  The
    R vectors are independent, so Hotelling's T^2 of their mean against 1/bins with their own
    sample covariance, (R - p) T^2 / (p (R - 1)) ~ F(p, R - p) for p statistics, is calibrated for
    approximately normal ensemble means (a mean over many particles).  ``bins`` defaults to
    min(8, (R + 1) // 2) in 1D and min(5, (R - 1) // 4 + 1) in 2D (p about (R - 1) / 2, leaving
    the covariance enough degrees of freedom for power); at most p = R - 2.

    Returns ``p_value``, ``statistic`` (F), ``df``, ``replicates``, ``n`` (per ensemble: N, Kish's
    ESS or the stated ``ess``), ``bins`` (per axis: edges, expected and mean masses, between-
    replicate sd, t) and, with ``modes``, ``mode_masses``: per component the grid mass, the mean
    particle mass over the replicates with a Student interval (``confidence``), the
    between-replicate sd, the binomial sd sqrt(g (1 - g) / n) and their ratio ``spread_ratio``
    (> 1: the particles are positively correlated, as after resampling), and a t-test p-value.
    """
    r = len(ensembles)
    if r < 3:
        raise InputError(f"A replicate comparison needs at least 3 independent ensembles, got {r}; run the sampler "
                         "with more seeds (or compare one ensemble at a time).")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"The confidence level must be in (0, 1), got {confidence!r}.")
    masses = cell_masses(grid, density)
    dim = grid.dim
    if ess is None or np.ndim(ess) == 0:
        stated = [ess] * r
    else:
        stated = list(ess)
        if len(stated) != r:
            raise InputError(f"ess has {len(stated)} values for {r} ensembles; give one number or one per ensemble.")
    max_bins = (r - 1) if dim == 1 else r // 2
    if bins is None:        # about half the replicates' degrees of freedom for the covariance: power
        k = max(2, min(8, (r + 1) // 2)) if dim == 1 else max(2, min(5, (r - 1) // 4 + 1))
    else:
        k = int(bins)
    if k < 2 or (k - 1) * dim > r - 2:
        raise InputError(f"bins = {k} needs {(k - 1) * dim + 2} ensembles or more ({r} given); use bins <= "
                         f"{max_bins} (and >= 2).")
    cuts = _equal_mass_bins(grid, masses, k)
    stats_rows, ns, checked = [], [], []
    for i, item in enumerate(ensembles):
        x, wts = item if isinstance(item, tuple) else (item, None)
        x, wts = check_samples(x, wts, dim=dim, source=f"Ensemble {i}")
        w = np.full(x.shape[0], 1.0 / x.shape[0]) if wts is None else wts / wts.sum()
        n = float(x.shape[0]) if wts is None else float(1.0 / np.sum(w * w))
        if stated[i] is not None:
            n = check_ess(stated[i], x.shape[0])
        ns.append(n)
        row = []
        for axis, inner in cuts:
            which = np.searchsorted(inner, x[:, axis], side="right")
            row.extend(np.bincount(which, weights=w, minlength=k)[:k - 1])
        stats_rows.append(row)
        checked.append((x, w))
    D = np.asarray(stats_rows) - 1.0 / k
    p = D.shape[1]
    mean = D.mean(axis=0)
    S = np.atleast_2d(np.cov(D, rowvar=False))
    sd = np.sqrt(np.diag(S))
    if np.all(sd > 0) and np.linalg.matrix_rank(S) == p:
        t2 = float(r * mean @ np.linalg.solve(S, mean))
        F = (r - p) / (p * (r - 1)) * t2
        p_value = float(stats.f.sf(F, p, r - p))
    else:           # identical replicates (or a degenerate bin): no between-replicate variation to test with
        F, p_value = math.nan, (1.0 if np.all(mean == 0) else 0.0)
    tcrit = float(stats.t.ppf(0.5 + confidence / 2, r - 1))
    bin_info, j = [], 0
    for axis, inner in cuts:
        sl = slice(j, j + k - 1)
        j += k - 1
        bin_info.append({"axis": axis, "edges": inner.tolist(), "expected": 1.0 / k,
                         "mean": (mean[sl] + 1.0 / k).tolist(), "sd": sd[sl].tolist(),
                         "t": [float(m / (s / math.sqrt(r))) if s > 0 else None for m, s in zip(mean[sl], sd[sl])]})
    result = {
        "replicates": r, "n": ns, "p_value": finite_or_none(p_value), "statistic": finite_or_none(F), "df": [p, r - p],
        "p_value_method": (f"Hotelling T^2 over {r} independent ensembles of their masses in {k} equal-mass bins of each "
                           "marginal of the grid law (between-replicate covariance; valid whatever the correlation "
                           "within an ensemble)"),
        "bins": bin_info, "confidence": confidence,
    }
    if modes is not None:
        g = modes.grid_masses(masses)
        per = np.array([modes.particle_masses(x, w) for x, w in checked])          # (R, K)
        out = []
        for c in range(len(modes.names)):
            m, s = float(per[:, c].mean()), float(per[:, c].std(ddof=1))
            half = tcrit * s / math.sqrt(r)
            binom = float(np.sqrt(g[c] * (1 - g[c]) / np.mean(ns))) if 0 < g[c] < 1 else 0.0
            tval = (m - g[c]) / (s / math.sqrt(r)) if s > 0 else None
            out.append({"component": c, "name": modes.names[c], "grid_mass": float(g[c]), "particle_mass": m,
                        "ci": [m - half, m + half], "sd": s, "binomial_sd": binom,
                        "spread_ratio": s / binom if binom > 0 else None,
                        "t": tval, "p_value": float(2 * stats.t.sf(abs(tval), r - 1)) if tval is not None else None,
                        "per_replicate": per[:, c].tolist()})
        result["mode_masses"] = out
    return result
