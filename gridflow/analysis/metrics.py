"""Distances and tests between a particle ensemble and a grid density (``gridflow compare``; docs/validation.md).

The grid density ``rho`` is piecewise constant on the cells, so in 1D its CDF ``G`` is
piecewise linear and its quantile function ``G^-1`` is piecewise linear in ``u``; the
(weighted) empirical quantile function is piecewise constant.  Everything below is exact
for that piecewise-constant law unless the docstring says otherwise.

Metrics (weights ``w_i`` normalised to sum 1; unweighted means ``w_i = 1/N``; ``n`` is ``N``,
or Kish's effective sample size ``1 / sum w_i^2`` for a weighted ensemble):

``w1``, ``w2`` (1D)
    ``(∫_0^1 |F_n^-1(u) - G^-1(u)|^p du)^(1/p)``, integrated exactly over the merged
    breakpoints (cumulative masses and cumulative weights): on each piece the integrand is
    ``|linear|^p``, integrated in closed form.  Null mean of ``w1``:
    ``sqrt(2/pi) ∫ sqrt(G(1-G)) dx / sqrt(n)`` (asymptotic; the integral is exact).
``ks`` (1D)
    ``sup |F_n - G|``; p-value from ``scipy.stats.kstest`` (the exact finite-N Kolmogorov
    distribution ``scipy.stats.kstwo``).  Weighted: ``kstwo`` with ``n`` (approximate).  Null mean ``(sqrt(pi/2) ln 2 - 1/(6 sqrt n)) / sqrt(n)``.
``cvm`` (1D)
    ``T = n ∫ (F_n - G)^2 dG`` and its p-value (``scipy.stats.cramervonmises``; weighted:
    the asymptotic distribution with ``n``).  Null mean exactly 1/6 for every ``n``.
``sliced_w2`` (2D)
    ``sqrt(mean_theta W2^2(P_theta mu_n, P_theta rho))`` over 64 directions
    ``theta = (l + 1/2) pi / 64``.  Each cell projects to a trapezoid; the projected law is
    represented by its CDF at lattice points ``Delta = min(h)/12`` apart (at most 32768
    points), linearly interpolated in between, then compared exactly as in 1D.  The CDF at the
    lattice points is that of the cell masses deposited linearly on the lattice and spread by
    the cell trapezoid (O(cells) per direction; ``SlicedReference(exact=True)`` evaluates the
    exact sum instead).  Deposit and interpolation move mass by less than ``Delta``; their
    effect on the value is O(Delta^2): below 1e-3 relative in the tests (lattice 8x finer),
    far inside the null spread.
``mmd``
    Unbiased MMD^2 with ``k(x, y) = exp(-|x-y|^2 / (2 s^2))``.  ``s`` (``mmd_bandwidth``) is
    the median heuristic for the grid law: the median distance between two independent draws
    of an isotropic Gaussian with the grid's mean variance, ``s = sigma sqrt(2 median chi2_d)``.
    ``E k(x_i, Y)`` is exact (products of normal-CDF differences per axis) and ``E k(Y, Y')``
    is exact (closed-form double cell integrals, a Toeplitz quadratic form done by FFT).  More
    than 5000 particles: a random subset of 5000 is used for all terms (keeps the statistic
    degenerate, i.e. unbiased with null spread ~ 1/5000).  Grids above 4096 cells (1D) or
    256 per axis (2D) are merged by an integer factor first: that moves mass by less than one
    merged cell ``H`` and changes sqrt(MMD^2) by at most ``H / s``.  Null mean 0.
``tv_histogram``
    Total variation between the particle histogram and the grid masses on cells merged to at
    most 512 (1D) or 64 x 64 (2D); particles outside the box count as unmatched mass.
    Null mean from the exact binomial mean absolute deviation (de Moivre).
``mean_error``, ``cov_error``, ``mean_z``
    ``|mean_n - mean_rho|``, ``||Cov_n - Cov_rho||_F`` (unbiased weighted covariance) and
    ``max_a |mean diff_a| / (sd_a / sqrt(n))``; floors are root-mean-square values.

Tests: ``g_test`` (G statistic with Williams' correction, chi-square null, bins merged along
the cell order — a snake order in 2D — until each expects at least ``max(5, n / (2 n^0.4))``
particles), ``ks``, ``cvm`` and, with ``bootstrap = B > 0``, a parametric bootstrap from the
grid (``w2`` in 1D, ``sliced_w2`` in 2D; p = (1 + #{T_b >= T}) / (B + 1), exactly calibrated).
The combined ``p_value`` is the KS p-value in 1D; in 2D the bootstrap p-value when
``bootstrap > 0``, else the G-test p-value.  A particle where rho is zero (outside the box, or
in a cell of zero density) is impossible under the hypothesis: ``p_value`` is then 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from gridflow.analysis.diagnostics import moments
from gridflow.analysis.distances import (SLICED_DIRECTIONS, SlicedReference, cumulative_weights, quantile_distances,
                                         sqrt_g1g_integral)
from gridflow.analysis.hypothesis_tests import histogram_tests, one_dim_tests
from gridflow.analysis.mmd import mmd2
from gridflow.analysis.replicates import Modes, check_ess, finite_or_none
from gridflow.core.grid import Grid
from gridflow.errors import InputError
from gridflow.particles.grid_sampling import GridDensitySampler, cell_masses, check_samples

__all__ = ["compare", "METRICS", "DEFAULT_METRICS", "check_metrics"]

#: the distances ``compare`` can report, per dimension
METRICS = {1: ("w1", "w2", "ks", "cvm", "mmd", "tv_histogram", "mean_error", "cov_error", "mean_z"),
           2: ("sliced_w2", "mmd", "tv_histogram", "mean_error", "cov_error", "mean_z")}
#: what ``gridflow compare`` reports without ``--metrics``: all but the MMD, whose O(N^2) kernel sum over
#: 5000 particles costs about a second (``--metrics all`` adds it)
DEFAULT_METRICS = {d: tuple(m for m in names if m != "mmd") for d, names in METRICS.items()}


def _regions(grid: Grid, masses: np.ndarray, x: np.ndarray, w: np.ndarray, n: float, regions) -> list[dict]:
    out = []
    for item in regions:
        try:
            lo, hi = item
            lo = np.broadcast_to(np.asarray(lo, dtype=float), (grid.dim,))
            hi = np.broadcast_to(np.asarray(hi, dtype=float), (grid.dim,))
        except (TypeError, ValueError):
            raise InputError(f"A region must be a pair (lower, upper) with {grid.dim} coordinates each, got "
                             f"{item!r}; e.g. ([-1.0], [1.0]).") from None
        if np.any(hi <= lo):
            raise InputError(f"Region {item!r} is empty: every upper bound must exceed its lower bound.")
        grid_mass = masses
        for axis in range(grid.dim):
            e = grid.edges[axis]
            frac = np.clip((np.minimum(e[1:], hi[axis]) - np.maximum(e[:-1], lo[axis])) / np.diff(e), 0.0, 1.0)
            grid_mass = np.tensordot(frac, grid_mass, axes=([0], [0]))
        grid_mass = min(max(float(grid_mass), 0.0), 1.0)
        particle = float(w[np.all((x >= lo) & (x <= hi), axis=1)].sum())
        se = math.sqrt(grid_mass * (1 - grid_mass) / n) if 1e-12 < grid_mass < 1 - 1e-12 else 0.0
        out.append({"lower": lo.tolist(), "upper": hi.tolist(), "grid_mass": grid_mass,
                    "particle_mass": particle, "standard_error": se,
                    "z": (particle - grid_mass) / se if se > 0 else None})
    return out



def check_metrics(metrics: str | Sequence[str] | None, dim: int) -> tuple[str, ...]:
    """The distance names of a ``metrics`` choice: None (all), ``"all"``, ``"default"`` (all but the MMD), a
    comma-separated string or a sequence of names from :data:`METRICS`; raises :class:`InputError` for an
    unknown name or an empty choice."""
    if metrics is None:
        return METRICS[dim]
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else [str(m).strip() for m in metrics]
    names = [m for m in names if m]
    out: list[str] = []
    for m in names:
        add = METRICS[dim] if m == "all" else DEFAULT_METRICS[dim] if m == "default" else (m,)
        for a in add:
            if a not in METRICS[dim]:
                raise InputError(f"Unknown metric {a!r} for a {dim}D density; choose from {', '.join(METRICS[dim])} "
                                 "(or 'all', 'default').")
            if a not in out:
                out.append(a)
    if not out:
        raise InputError(f"No metric chosen; give a comma-separated list from {', '.join(METRICS[dim])}.")
    return tuple(a for a in METRICS[dim] if a in out)


def compare(grid: Grid, density: np.ndarray, samples: np.ndarray, weights: np.ndarray | None = None, *,
            rng: np.random.Generator | int | None = 0, bootstrap: int = 0,
            regions: Sequence[tuple] | None = None, bandwidth: float | None = None, ess: float | None = None,
            modes: Modes | None = None, metrics: str | Sequence[str] | None = None) -> dict:
    """Distances and consistency tests between a particle ensemble and a grid density.

    ``density`` holds the cell averages (normalised here); ``samples`` is ``(N, dim)`` (or
    ``(N,)`` in 1D); ``weights`` optional importance weights (normalised here; equal weights
    are the unweighted ensemble).  ``rng`` seeds the MMD subset (N > 5000) and the bootstrap.
    ``bootstrap = B > 0`` adds a parametric bootstrap test with B draws from the grid.
    ``regions`` — boxes ``(lower, upper)`` — adds ``mode_masses``; ``bandwidth`` overrides the
    MMD bandwidth.  ``ess`` states the ensemble's effective size: it replaces N (or Kish's ESS of the
    weights) in every p-value, floor and standard error (e.g. for resampled, correlated particles).
    ``modes`` (:func:`mixture_modes`) adds ``mode_masses`` per mixture component (with ``regions``
    the boxes follow them).  ``metrics`` chooses the distances (:func:`check_metrics`; default all);
    the p-values (KS and Cramér–von Mises in 1D, G-test, bootstrap) are computed whatever the choice.  Returns a JSON-serialisable dict (keys ``n``, ``n_particles``,
    ``distances``, ``p_value``, ``p_values``, ``noise_floor``, ``description``, ...); see the
    module docstring for the definitions.
    """
    if isinstance(bootstrap, bool) or int(bootstrap) != bootstrap or bootstrap < 0:
        raise InputError(f"bootstrap must be a non-negative integer (number of draws), got {bootstrap!r}.")
    bootstrap = int(bootstrap)
    chosen = check_metrics(metrics, grid.dim)
    masses = cell_masses(grid, density)
    x, weights = check_samples(samples, weights, dim=grid.dim, source="The samples")
    n_particles = x.shape[0]
    if weights is not None:
        keep = weights > 0.0
        x, weights = x[keep], weights[keep] / weights[keep].sum()
        if x.shape[0] < 2:
            raise InputError("Fewer than 2 particles have positive weight; an ensemble needs at least 2 weighted "
                             "particles to be compared with a density.")
        if np.all(weights == weights[0]):
            weights = None
    weighted = weights is not None
    w = np.full(x.shape[0], 1.0 / x.shape[0]) if weights is None else weights
    n = float(x.shape[0]) if not weighted else float(1.0 / np.sum(w * w))
    if ess is not None:
        n = check_ess(ess, x.shape[0])
    rng = np.random.default_rng(rng)
    dim = grid.dim

    with np.errstate(divide="ignore"):
        mean_g, cov_g = moments(np.log(masses), grid)
    sd_g = np.sqrt(np.diag(cov_g))
    if bandwidth is None:
        bandwidth = float(math.sqrt(np.trace(cov_g) / dim * 2.0 * stats.chi2.ppf(0.5, dim)))
    elif not (bandwidth > 0 and math.isfinite(bandwidth)):
        raise InputError(f"The MMD bandwidth must be a positive number, got {bandwidth!r}.")

    distances, floors, pvals, tests = {}, {}, {}, {}
    with np.errstate(under="ignore"):
        if dim == 1:
            edges = grid.edges[0]
            C = cumulative_weights(masses, masses.size)
            order = np.argsort(x[:, 0], kind="stable")
            xs = x[order, 0]
            W = cumulative_weights(None if not weighted else w[order], xs.size)
            w1, w2sq = quantile_distances(xs, W, edges, C)
            distances.update(w1=w1, w2=math.sqrt(w2sq))
            floors["w1"] = math.sqrt(2.0 / math.pi) * sqrt_g1g_integral(edges, C) / math.sqrt(n)
            one = one_dim_tests(x[:, 0], weights if ess is None else w, n, edges, C)   # stated ess: the n-based tests
            distances.update(ks=one["ks"], cvm=one["cvm"])
            floors["ks"] = (math.sqrt(math.pi / 2) * math.log(2) - 1 / (6 * math.sqrt(n))) / math.sqrt(n)
            floors["cvm"] = 1.0 / 6.0
            pvals.update(ks=one["ks_p"], cvm=one["cvm_p"])
            tests["ks"] = {"statistic": one["ks"], "p_value": one["ks_p"], "method": one["ks_method"]}
            tests["cvm"] = {"statistic": one["cvm"], "p_value": one["cvm_p"], "method": one["cvm_method"]}
            boot_name = "w2"

            def boot_statistic(y):
                return math.sqrt(quantile_distances(np.sort(y[:, 0]), cumulative_weights(None, y.shape[0]), edges, C)[1])
        else:
            boot_name = "sliced_w2"
            if "sliced_w2" in chosen or bootstrap:
                sliced = SlicedReference(grid, masses)
                distances["sliced_w2"] = math.sqrt(float(np.mean(sliced.w2_squared(x, weights))))

            def boot_statistic(y):
                return math.sqrt(float(np.mean(sliced.w2_squared(y, None))))

        mmd_used = 0
        if "mmd" in chosen:
            mmd, mmd_used = mmd2(grid, masses, x, w, bandwidth, rng)
            distances["mmd"] = mmd
            floors["mmd"] = 0.0

        hist = histogram_tests(grid, masses, x, w, n)
        distances["tv_histogram"] = hist["tv"]
        floors["tv_histogram"] = hist["tv_floor"]
        pvals["g_test"] = hist["p"]
        tests["g_test"] = {"statistic": hist["g"], "df": hist["df"], "bins": hist["bins"], "p_value": hist["p"],
                           "method": "G statistic with Williams' correction, chi-square null"
                                     + (" (weighted: counts scaled to the effective sample size, approximate)"
                                        if weighted else "")}

        mean_p = w @ x
        centred = x - mean_p
        cov_p = (centred * w[:, None]).T @ centred / (1.0 - float(np.sum(w * w)))
        diff = mean_p - mean_g
        distances["mean_error"] = float(np.linalg.norm(diff))
        distances["cov_error"] = float(np.linalg.norm(cov_p - cov_g))
        distances["mean_z"] = float(np.max(np.abs(diff) / (sd_g / math.sqrt(n))))
        floors["mean_error"] = math.sqrt(float(np.trace(cov_g)) / n)
        floors["cov_error"] = math.sqrt(_fourth_moment_excess(grid, masses, mean_g, cov_g) / n)
        if dim == 1:
            floors["mean_z"] = math.sqrt(2.0 / math.pi)

        if bootstrap:
            sampler = GridDensitySampler(grid, masses)
            size = max(2, int(round(n)))
            observed = distances[boot_name]
            null = np.array([boot_statistic(sampler.sample(size, rng)) for _ in range(int(bootstrap))])
            p_boot = float((1 + np.sum(null >= observed * (1 - 100 * np.finfo(float).eps))) / (bootstrap + 1))
            pvals[f"bootstrap_{boot_name}"] = p_boot
            floors[boot_name] = float(null.mean())
            tests[f"bootstrap_{boot_name}"] = {
                "statistic": observed, "p_value": p_boot, "resamples": int(bootstrap),
                "null_mean": float(null.mean()), "null_quantiles": {q: float(np.quantile(null, float(q)))
                                                                    for q in ("0.05", "0.5", "0.95")},
                "method": f"parametric bootstrap: {int(bootstrap)} sets of {size} exact samples of the grid density"
                          + (" (weighted ensemble: sets of the effective sample size, approximate)" if weighted else ""),
            }

    if dim == 1:
        p_value, method = pvals["ks"], tests["ks"]["method"]
        method = "Kolmogorov–Smirnov test against the exact piecewise-linear CDF: " + method
    elif bootstrap:
        p_value, method = pvals["bootstrap_sliced_w2"], tests["bootstrap_sliced_w2"]["method"] + " (sliced W2)"
    else:
        p_value, method = pvals["g_test"], "G-test on merged histogram cells: " + tests["g_test"]["method"]
        if p_value is None:
            method = "none: too few particles for a histogram test (use bootstrap > 0)"
    distances = {k: v for k, v in distances.items() if k in chosen}
    floors = {k: v for k, v in floors.items() if k in chosen}
    if hist["impossible_mass"] > 0.0:
        p_value = 0.0
        method += f"; p_value = 0 because particles of total weight {hist['impossible_mass']:.3g} lie where the density is zero"

    result = {
        "dim": dim,
        "n": (x.shape[0] if not weighted and ess is None else n),
        "n_particles": int(n_particles),
        "weighted": weighted,
        "distances": {k: finite_or_none(v) for k, v in distances.items()},
        "p_value": finite_or_none(p_value),
        "p_value_method": method,
        "p_values": {k: finite_or_none(v) for k, v in pvals.items()},
        "noise_floor": {k: finite_or_none(v) for k, v in floors.items()},
        "excess": {k: finite_or_none(distances[k] - floors[k]) for k in floors if k in distances},
        "description": {k: v for k, v in _descriptions(dim, floors, bandwidth, mmd_used, hist, bootstrap).items()
                        if k in chosen},
        "mmd_bandwidth": bandwidth,
        "mmd_particles": int(mmd_used),
        "tests": tests,
    }
    if ess is not None:
        result["ess_stated"] = n
    if modes is not None:
        result["mode_masses"] = modes.masses(grid, masses, x, w, n)
    if regions is not None:
        result["mode_masses"] = result.get("mode_masses", []) + _regions(grid, masses, x, w, n, regions)
    return result



def _fourth_moment_excess(grid: Grid, masses: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> float:
    """``sum_ab (E[(X_a-mu_a)^2 (X_b-mu_b)^2] - Cov_ab^2)`` for the piecewise-constant law
    (uniform within cells): n times the mean squared Frobenius error of a sample covariance."""
    d = [c - m for c, m in zip(grid.coordinates, mean)]
    h2 = [h * h for h in grid.spacing]
    second = [di * di + hi / 12.0 for di, hi in zip(d, h2)]          # E[(X_a - mu_a)^2 | cell]
    total = 0.0
    for a in range(grid.dim):
        for b in range(grid.dim):
            if a == b:
                m4 = np.sum(masses * (d[a] ** 4 + d[a] ** 2 * h2[a] / 2.0 + h2[a] ** 2 / 80.0))
            else:
                m4 = np.sum(masses * second[a] * second[b])
            total += float(m4) - float(cov[a, b]) ** 2
    return max(total, 0.0)


def _descriptions(dim: int, floors: dict, s: float, mmd_used: int, hist: dict, bootstrap: int) -> dict:
    def floor(name):
        v = floors.get(name)
        return f"{v:.4g}" if v is not None else "not known in closed form" + (
            "" if bootstrap else " (run with bootstrap > 0 for a Monte Carlo value)")

    boot = " (mean of the bootstrap draws)" if bootstrap else ""
    out = {}
    if dim == 1:
        out["w1"] = ("Wasserstein-1 distance, exact via quantile functions; exact samples: about "
                     f"{floor('w1')} = sqrt(2/pi) ∫ sqrt(G(1-G)) dx / sqrt(n)")
        out["w2"] = f"Wasserstein-2 distance, exact via quantile functions; exact samples: {floor('w2')}{boot}"
        out["ks"] = f"Kolmogorov–Smirnov statistic sup|F_n - G|; exact samples: about {floor('ks')}"
        out["cvm"] = "Cramér–von Mises statistic n ∫(F_n - G)^2 dG; exact samples: 1/6 on average"
    else:
        out["sliced_w2"] = (f"sliced Wasserstein-2 over {SLICED_DIRECTIONS} directions (projected grid law exact on a "
                            f"lattice of spacing h/8); exact samples: {floor('sliced_w2')}{boot}")
    out["mmd"] = (f"unbiased MMD^2, Gaussian kernel of bandwidth {s:.4g}, exact grid integrals, {mmd_used} particles; "
                  "exact samples: 0 on average (spread ~ 1/n)")
    out["tv_histogram"] = (f"total variation between particle and grid masses on {np.prod(hist['merge_factors'])}-fold "
                           f"merged cells; exact samples: about {floor('tv_histogram')}")
    out["mean_error"] = f"Euclidean norm of the mean difference; exact samples: about {floor('mean_error')} (rms)"
    out["cov_error"] = f"Frobenius norm of the covariance difference; exact samples: about {floor('cov_error')} (rms)"
    out["mean_z"] = ("largest |mean difference| / (sd / sqrt(n)) over coordinates; exact samples: "
                     + ("about 0.80 = sqrt(2/pi)" if dim == 1 else
                        "0.80 (fully correlated coordinates) to 1.13 = 2/sqrt(pi) (uncorrelated) on average"))
    return out
