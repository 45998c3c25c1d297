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
    the cell trapezoid (O(cells) per direction; ``_SlicedReference(exact=True)`` evaluates the
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
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import signal, special, stats

from gridflow.analysis.diagnostics import moments
from gridflow.errors import InputError
from gridflow.core.grid import Grid
from gridflow.particles.grid_sampling import GridDensitySampler, cell_masses, check_samples

__all__ = ["compare", "compare_replicates", "mixture_modes", "wasserstein_1d", "SLICED_DIRECTIONS",
           "MMD_MAX_PARTICLES", "METRICS", "DEFAULT_METRICS", "check_metrics"]

#: the distances ``compare`` can report, per dimension
METRICS = {1: ("w1", "w2", "ks", "cvm", "mmd", "tv_histogram", "mean_error", "cov_error", "mean_z"),
           2: ("sliced_w2", "mmd", "tv_histogram", "mean_error", "cov_error", "mean_z")}
#: what ``gridflow compare`` reports without ``--metrics``: all but the MMD, whose O(N^2) kernel sum over
#: 5000 particles costs about a second (``--metrics all`` adds it)
DEFAULT_METRICS = {d: tuple(m for m in names if m != "mmd") for d, names in METRICS.items()}

#: number of directions of the sliced Wasserstein distance (angles (l + 1/2) pi / 64)
SLICED_DIRECTIONS = 64
#: particles used by the MMD (a random subset beyond this)
MMD_MAX_PARTICLES = 5000
#: cells per axis beyond which the MMD merges cells (exact up to this)
MMD_MAX_CELLS = {1: 4096, 2: 256}
#: cells per axis of the histogram of ``tv_histogram`` and the G-test
HIST_MAX_CELLS = {1: 512, 2: 64}
#: lattice points per projected law of ``sliced_w2`` (upper bound)
SLICED_MAX_LATTICE = 32768

_SQRT_2PI = math.sqrt(2.0 * math.pi)
#: threads for the O(N^2) and O(N K) kernel sums (numpy/scipy ufuncs release the GIL)
_WORKERS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))


def _chunked_sum(fn: Callable[[int], float], n: int, chunk: int) -> float:
    """``sum(fn(i) for i in range(0, n, chunk))``, chunks run on a few threads, summed in order."""
    starts = range(0, n, chunk)
    if _WORKERS == 1 or len(starts) == 1:
        return float(sum(fn(i) for i in starts))
    with ThreadPoolExecutor(min(_WORKERS, len(starts))) as pool:
        return float(sum(pool.map(fn, starts)))


# --------------------------------------------------------------------------------------------
# 1D Wasserstein distances via quantile functions
# --------------------------------------------------------------------------------------------

def _cumulative(xs_weights: np.ndarray | None, n: int) -> np.ndarray:
    if xs_weights is None:
        return np.arange(n + 1) / n
    cum = np.concatenate([[0.0], np.cumsum(xs_weights)])
    return cum / cum[-1]


def _quantile_distances(xs: np.ndarray, W: np.ndarray, edges: np.ndarray, C: np.ndarray) -> tuple[float, float]:
    """``(W1, W2^2)`` between the law with sorted atoms ``xs`` and cumulative weights ``W``
    (``W[0] = 0``, ``W[-1] = 1``) and the law whose CDF is piecewise linear through
    ``(edges, C)`` (``C[0] = 0``, ``C[-1] = 1``); exact up to rounding."""
    # merge the two sorted breakpoint lists (a C value goes after the W values equal to it)
    nC, nW = C.size, W.size
    posC = np.arange(nC) + np.searchsorted(W, C, side="right")
    isC = np.zeros(nC + nW, dtype=bool)
    isC[posC] = True
    u = np.empty(nC + nW)
    u[posC] = C
    u[~isC] = W
    countC = np.cumsum(isC)                     # C values among u[0..m]
    countW = np.arange(1, nC + nW + 1) - countC  # W values among u[0..m]
    a, b = u[:-1], u[1:]                          # pieces; zero-length ones contribute nothing
    # grid quantile: linear on [C_k, C_k+1] (no C strictly inside (a, b), so C_k <= a < b <= C_k+1)
    k = np.minimum(np.maximum(countC[:-1] - 1, 0), nC - 2)
    c0, span = C[k], C[k + 1] - C[k]
    e0, width = edges[k], edges[k + 1] - edges[k]
    # position within the cell as a fraction of its CDF span (<= 1, so no overflow for a span of
    # 1e-320); on a flat stretch (span 0) only zero-length pieces lie there
    pos = span > 0.0
    fa = np.divide(np.maximum(a - c0, 0.0), span, out=np.zeros_like(span), where=pos)
    fb = np.divide(np.maximum(b - c0, 0.0), span, out=np.zeros_like(span), where=pos)
    ga = e0 + width * np.minimum(fa, 1.0)
    gb = e0 + width * np.minimum(fb, 1.0)
    # empirical quantile: xs[i-1] on (W_i-1, W_i], i = number of W values <= a
    v = xs[np.minimum(np.maximum(countW[:-1], 1), xs.size) - 1]
    da, db = ga - v, gb - v
    length = b - a
    w2sq = float(np.sum(length * (da * da + da * db + db * db))) / 3.0
    s = np.abs(da) + np.abs(db)
    same = da * db >= 0.0
    w1 = np.where(same, 0.5 * length * s, length * (da * da + db * db) / (2.0 * np.where(same, 1.0, s)))
    return float(np.sum(w1)), w2sq


def wasserstein_1d(samples: np.ndarray, edges: np.ndarray, masses: np.ndarray,
                   weights: np.ndarray | None = None) -> tuple[float, float]:
    """Exact ``(W1, W2)`` between 1D (weighted) samples and the piecewise-constant law with
    cell ``edges`` and cell ``masses`` (normalised here)."""
    x = np.asarray(samples, dtype=float).ravel()
    order = np.argsort(x, kind="stable")
    W = _cumulative(None if weights is None else np.asarray(weights, float)[order], x.size)
    masses = np.asarray(masses, dtype=float).ravel()
    C = _cumulative(masses, masses.size)
    w1, w2sq = _quantile_distances(x[order], W, np.asarray(edges, float), C)
    return w1, math.sqrt(w2sq)


def _sqrt_g1g_integral(edges: np.ndarray, C: np.ndarray) -> float:
    """``∫ sqrt(G (1 - G)) dx`` for the piecewise-linear CDF through ``(edges, C)``, exactly."""
    def antiderivative(g):                       # d/dg = sqrt(g (1 - g))
        return (2 * g - 1) * np.sqrt(g * (1 - g)) / 4 + np.arcsin(2 * g - 1) / 8

    C = np.clip(C, 0.0, 1.0)
    h, p = np.diff(edges), np.diff(C)
    mid = 0.5 * (C[1:] + C[:-1])
    small = p < 1e-9                              # flat or nearly flat: midpoint rule (error ~ h p^2)
    exact = h * (antiderivative(C[1:]) - antiderivative(C[:-1])) / np.where(small, 1.0, p)
    return float(np.sum(np.where(small, h * np.sqrt(mid * (1 - mid)), exact)))


# --------------------------------------------------------------------------------------------
# sliced W2 in 2D
# --------------------------------------------------------------------------------------------

class _SlicedReference:
    """Projections of the 2D grid law onto ``SLICED_DIRECTIONS`` directions, as CDF values on a
    lattice (piecewise-linear interpolation in between).

    By default each cell's mass is split between the two lattice points around its projected
    centre (linear deposit, which keeps the mean and moves mass by less than the lattice step
    Delta = h/12) and the deposit is convolved with the exact CDF of the cell's projected trapezoid:
    O(cells + lattice) per direction.  ``exact=True`` evaluates the sum over cells at every
    lattice point instead (O(cells (h / Delta)) per direction, about 30x slower; for tests).
    """

    def __init__(self, grid: Grid, masses: np.ndarray, directions: int = SLICED_DIRECTIONS,
                 refine: int = 1, exact: bool = False):
        theta = (np.arange(directions) + 0.5) * np.pi / directions
        self.units = np.stack([np.cos(theta), np.sin(theta)], axis=1)
        hx, hy = grid.spacing
        ix, iy = np.nonzero(masses)
        m = masses[ix, iy]
        cx, cy = grid.axes[0][ix], grid.axes[1][iy]
        self.lattices = []
        for cos, sin in self.units:
            c = cx * cos + cy * sin
            alpha, beta = hx * abs(cos), hy * abs(sin)
            a, b = min(alpha, beta), max(alpha, beta)     # projection of a cell: trapezoid of widths a, b
            half = 0.5 * (a + b)
            lo, hi = c.min() - half, c.max() + half
            delta = max(min(hx, hy) / ((8 if exact else 12) * refine), (hi - lo) / (SLICED_MAX_LATTICE * refine))
            count = int(math.ceil((hi - lo) / delta))
            t = lo + delta * np.arange(count + 1)
            t[-1] = max(t[-1], hi)
            build = self._lattice_cdf if exact else self._deposited_cdf
            self.lattices.append((t, build(t, lo, delta, c, m, a, b)))

    @staticmethod
    def _trapezoid_cdf(u, a, b):
        """CDF of the projection of a cell (trapezoid of widths a <= b) at ``u`` from its left end."""
        u = np.clip(u, 0.0, a + b)
        return np.where(u < a, u * u / (2 * a * b),
                        np.where(u < b, (u - 0.5 * a) / b, 1.0 - (a + b - u) ** 2 / (2 * a * b)))

    @classmethod
    def _deposited_cdf(cls, t, lo, delta, c, m, a, b):
        """``P(t_j) = sum_l D_l T(t_j - t_l)``: the masses ``m`` deposited linearly on the lattice
        (``D``), convolved with the trapezoid CDF ``T``; as ``T`` is a cumulative kernel, ``P`` is the
        cumulative deposit convolved with the lattice increments of ``T`` (a short kernel)."""
        size = t.size
        half = 0.5 * (a + b)
        pos = (c - lo) / delta
        left = np.clip(np.floor(pos).astype(np.int64), 0, size - 1)
        frac = np.clip(pos - left, 0.0, 1.0)
        D = np.bincount(left, weights=m * (1.0 - frac), minlength=size + 1)
        D += np.bincount(left + 1, weights=m * frac, minlength=size + 1)
        R = int(math.ceil(half / delta)) + 1
        K = cls._trapezoid_cdf(np.arange(-R - 1, R + 1) * delta + half, a, b)      # T(r delta), r = -R-1..R
        dK = np.diff(K)                                                            # r = -R..R
        dK[-1] += 1.0 - K[-1]                                                      # T = 1 beyond the support
        C = np.cumsum(D[:size])
        C = np.concatenate([C, np.full(R + 1, C[-1] + D[size])])
        P = np.convolve(C, dK)[R:R + size]                                          # P_j = sum_r dK_r C_(j-r)
        P = np.maximum.accumulate(np.clip(P, 0.0, None))
        P[0] = 0.0
        return P / P[-1]

    @staticmethod
    def _lattice_cdf(t, lo, delta, c, m, a, b):
        """``P(t_j) = sum_k m_k T(t_j - c_k)`` with ``T`` the CDF of the centred trapezoid;
        each cell touches only the few lattice points inside its support (no cancellation)."""
        half = 0.5 * (a + b)
        size = t.size
        # cells entirely below t_j contribute m_k: deposit at the first j with t_j >= c_k + half
        above = np.clip(np.ceil((c + half - lo) / delta).astype(np.int64), 0, size - 1)
        above += t[above] < c + half                             # rounding: step one lattice point on
        full = np.cumsum(np.bincount(above, weights=m, minlength=size + 1)[:size])
        partial = np.zeros(size)
        start = np.clip(np.floor((c - half - lo) / delta).astype(np.int64), 0, size - 1)
        for r in range(int(math.ceil(2 * half / delta)) + 2):
            j = start + r
            ok = j < size
            s = t[np.minimum(j, size - 1)] - c + half          # position inside [0, a + b]
            inside = ok & (s > 0.0) & (t[np.minimum(j, size - 1)] < c + half)
            s = np.where(inside, s, 0.0)
            value = np.where(s < a, s * s / (2 * a * b),
                             np.where(s < b, (s - 0.5 * a) / b, 1.0 - (a + b - s) ** 2 / (2 * a * b)))
            partial += np.bincount(np.where(inside, j, size), weights=m * value, minlength=size + 1)[:size]
        P = np.maximum.accumulate(np.clip(full + partial, 0.0, None))
        P[0] = 0.0
        return P / P[-1]

    def w2_squared(self, x: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        """Per-direction exact W2^2 between the projected ensemble and the projected lattice law."""
        proj = self.units[:, :1] * x[:, 0] + self.units[:, 1:] * x[:, 1]     # (directions, N), no BLAS threads
        out = np.empty(len(self.lattices))
        if w is None:
            W = _cumulative(None, x.shape[0])
            proj.sort(axis=1)
            for l, (t, P) in enumerate(self.lattices):
                out[l] = _quantile_distances(proj[l], W, t, P)[1]
        else:
            for l, (t, P) in enumerate(self.lattices):
                order = np.argsort(proj[l], kind="stable")
                out[l] = _quantile_distances(proj[l, order], _cumulative(w[order], w.size), t, P)[1]
        return out


# --------------------------------------------------------------------------------------------
# MMD with exact grid integrals
# --------------------------------------------------------------------------------------------

def _merge_cells(grid: Grid, masses: np.ndarray, max_cells: int) -> tuple[list[np.ndarray], np.ndarray, tuple[int, ...]]:
    """Masses on cells merged by integer factors ``f_a = ceil(n_a / max_cells)`` (padding the
    box with empty cells), with the merged edges and the factors."""
    factors = tuple(-(-n // max_cells) for n in grid.shape)
    pads = [(0, (-n) % f) for n, f in zip(grid.shape, factors)]
    merged = np.pad(masses, pads)
    if grid.dim == 1:
        merged = merged.reshape(-1, factors[0]).sum(axis=1)
    else:
        nx, ny = merged.shape
        merged = merged.reshape(nx // factors[0], factors[0], ny // factors[1], factors[1]).sum(axis=(1, 3))
    edges = [lo + f * h * np.arange(n + 1) for lo, f, h, n in zip(grid.lower, factors, grid.spacing, merged.shape)]
    return edges, merged, factors


def _trim(edges: list[np.ndarray], masses: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Restrict to the bounding box of the cells with mass."""
    slices = []
    for axis in range(masses.ndim):
        other = tuple(i for i in range(masses.ndim) if i != axis)
        nz = np.flatnonzero(masses.sum(axis=other) > 0) if other else np.flatnonzero(masses > 0)
        slices.append(slice(nz[0], nz[-1] + 1))
    edges = [e[s.start:s.stop + 1] for e, s in zip(edges, slices)]
    return edges, masses[tuple(slices)]


def _cell_pair_kernel(count: int, h: float, s: float) -> np.ndarray:
    """``J(k) = h^-2 ∫_0^h ∫_0^h exp(-(k h + a - b)^2 / (2 s^2)) da db`` for k = -(count-1)..count-1.

    Second difference of the second antiderivative ``F2(z) = s sqrt(pi/2) |z| + G(z)``,
    ``G(z) = -s sqrt(pi/2) |z| erfc(|z| / (s sqrt 2)) + s^2 exp(-z^2 / (2 s^2))``; the linear
    part contributes only at k = 0 (``2 h s sqrt(pi/2)``), so no large terms cancel.
    """
    k = np.arange(-(count - 1), count)
    c = s * math.sqrt(math.pi / 2)

    def G(z):
        z = np.abs(z)
        return -c * z * special.erfc(z / (s * math.sqrt(2))) + s * s * np.exp(-0.5 * (z / s) ** 2)

    d2 = G((k + 1) * h) - 2 * G(k * h) + G((k - 1) * h) + np.where(k == 0, 2 * h * c, 0.0)
    return d2 / (h * h)


def _grid_grid_term(edges: list[np.ndarray], masses: np.ndarray, s: float) -> float:
    """``E k(Y, Y')`` for Y, Y' iid from the grid law: ``sum m_c m_c' prod_a J_a(c_a - c'_a)``."""
    out = masses
    for axis, e in enumerate(edges):
        n = masses.shape[axis]
        J = _cell_pair_kernel(n, e[1] - e[0], s)
        shape = [1] * masses.ndim
        shape[axis] = -1
        full = signal.fftconvolve(out, J.reshape(shape), mode="full", axes=axis)
        out = np.take(full, np.arange(n - 1, 2 * n - 1), axis=axis)
    return float(np.sum(masses * out))


def _cross_term(x: np.ndarray, w: np.ndarray, edges: list[np.ndarray], masses: np.ndarray, s: float) -> float:
    """``sum_i w_i E k(x_i, Y)`` with exact cell integrals (normal-CDF differences per axis)."""
    if masses.ndim == 1:
        h = edges[0][1] - edges[0][0]
        jumps = -np.diff(np.concatenate([[0.0], masses, [0.0]]))    # sum_c m_c [Phi_c+1 - Phi_c] = sum_j jumps_j Phi_j
        nz = np.flatnonzero(jumps)
        e, jumps = edges[0][nz] / s, jumps[nz] * (s * _SQRT_2PI / h)
        xs = x[:, 0] / s

        def part(i):
            xb = xs[i:i + chunk]
            return float(w[i:i + chunk] @ (special.ndtr(e[None, :] - xb[:, None]) @ jumps))

        chunk = max(1, 2 ** 19 // e.size)
        return _chunked_sum(part, x.shape[0], chunk)
    ex, ey = edges[0] / s, edges[1] / s
    cx, cy = s * _SQRT_2PI / (edges[0][1] - edges[0][0]), s * _SQRT_2PI / (edges[1][1] - edges[1][0])
    xs = x / s

    def part(i):
        xb = xs[i:i + chunk]
        ax = np.diff(special.ndtr(ex[None, :] - xb[:, :1]), axis=1) * cx
        ay = np.diff(special.ndtr(ey[None, :] - xb[:, 1:2]), axis=1) * cy
        return float(w[i:i + chunk] @ np.sum((ax @ masses) * ay, axis=1))

    chunk = max(1, 2 ** 18 // max(masses.shape))
    return _chunked_sum(part, x.shape[0], chunk)


def _particle_term(x: np.ndarray, w: np.ndarray, s: float) -> float:
    """``sum_{i != j} w_i w_j k(x_i, x_j) / (1 - sum w_i^2)`` (the unbiased U-statistic for
    equal weights)."""
    n = x.shape[0]
    xs = x / s

    def part(i):
        xb = xs[i:i + chunk]
        d2 = np.zeros((xb.shape[0], n))
        for a in range(x.shape[1]):
            d2 += (xb[:, a:a + 1] - xs[None, :, a]) ** 2
        return float(w[i:i + chunk] @ (np.exp(-0.5 * d2) @ w))

    chunk = max(1, 2 ** 19 // n)
    total = _chunked_sum(part, n, chunk)
    sw2 = float(np.sum(w * w))
    return (total - sw2) / (1.0 - sw2)


def _mmd2(grid: Grid, masses: np.ndarray, x: np.ndarray, w: np.ndarray, s: float,
          rng: np.random.Generator) -> tuple[float, int]:
    if x.shape[0] > MMD_MAX_PARTICLES:
        pick = rng.choice(x.shape[0], MMD_MAX_PARTICLES, replace=False)
        x, w = x[pick], w[pick] / w[pick].sum()
    edges, merged, _ = _merge_cells(grid, masses, MMD_MAX_CELLS[grid.dim])
    merged = np.where(merged > 1e-17 * merged.max(), merged, 0.0)    # below rounding: drop, then trim
    edges, merged = _trim(edges, merged)
    value = _particle_term(x, w, s) - 2.0 * _cross_term(x, w, edges, merged, s) + _grid_grid_term(edges, merged, s)
    return value, x.shape[0]


# --------------------------------------------------------------------------------------------
# histogram: total variation and G-test
# --------------------------------------------------------------------------------------------

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


def _histogram_tests(grid: Grid, masses: np.ndarray, x: np.ndarray, w: np.ndarray, n: float) -> dict:
    lower, upper, h = np.asarray(grid.lower), np.asarray(grid.upper), np.asarray(grid.spacing)
    inside = np.all((x >= lower) & (x <= upper), axis=1)
    fine = np.minimum(((x[inside] - lower) / h).astype(np.int64), np.asarray(grid.shape) - 1)
    impossible = float(w[~inside].sum() + w[inside][masses[tuple(fine.T)] == 0.0].sum())
    _, p, factors = _merge_cells(grid, masses, HIST_MAX_CELLS[grid.dim])
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


def _one_dim_tests(x: np.ndarray, w: np.ndarray | None, n: float, edges: np.ndarray, C: np.ndarray) -> dict:
    cdf = lambda t: np.interp(t, edges, C)       # noqa: E731 - the exact piecewise-linear CDF
    if w is None:
        ks = stats.kstest(x, cdf)
        cvm = stats.cramervonmises(x, cdf)
        return {"ks": float(ks.statistic), "ks_p": float(ks.pvalue), "cvm": float(cvm.statistic),
                "cvm_p": float(cvm.pvalue), "ks_method": "scipy.stats.kstest, exact finite-N distribution",
                "cvm_method": "scipy.stats.cramervonmises"}
    order = np.argsort(x, kind="stable")
    u = cdf(x[order])
    W = _cumulative(w[order], x.size)
    d = float(max(np.max(W[1:] - u), np.max(u - W[:-1])))
    n_int = max(1, int(round(n)))
    # T = n ∫ (F - u)^2 du with F = W_i on [u_i, u_i+1)
    ue = np.concatenate([[0.0], u, [1.0]])
    omega2 = float(np.sum((ue[1:] - W) ** 3 - (ue[:-1] - W) ** 3)) / 3.0
    t = n * omega2
    return {"ks": d, "ks_p": float(stats.kstwo.sf(d, n_int)), "cvm": t, "cvm_p": _cvm_asymptotic_sf(t),
            "ks_method": "Kolmogorov distribution with the effective sample size (approximate for weights)",
            "cvm_method": "asymptotic Cramér–von Mises distribution with the effective sample size (approximate)"}


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------

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


def _finite(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


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
            modes: "Modes | None" = None, metrics: str | Sequence[str] | None = None) -> dict:
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
        n = _check_ess(ess, x.shape[0])
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
            C = _cumulative(masses, masses.size)
            order = np.argsort(x[:, 0], kind="stable")
            xs = x[order, 0]
            W = _cumulative(None if not weighted else w[order], xs.size)
            w1, w2sq = _quantile_distances(xs, W, edges, C)
            distances.update(w1=w1, w2=math.sqrt(w2sq))
            floors["w1"] = math.sqrt(2.0 / math.pi) * _sqrt_g1g_integral(edges, C) / math.sqrt(n)
            one = _one_dim_tests(x[:, 0], weights if ess is None else w, n, edges, C)   # stated ess: the n-based tests
            distances.update(ks=one["ks"], cvm=one["cvm"])
            floors["ks"] = (math.sqrt(math.pi / 2) * math.log(2) - 1 / (6 * math.sqrt(n))) / math.sqrt(n)
            floors["cvm"] = 1.0 / 6.0
            pvals.update(ks=one["ks_p"], cvm=one["cvm_p"])
            tests["ks"] = {"statistic": one["ks"], "p_value": one["ks_p"], "method": one["ks_method"]}
            tests["cvm"] = {"statistic": one["cvm"], "p_value": one["cvm_p"], "method": one["cvm_method"]}
            boot_name = "w2"

            def boot_statistic(y):
                return math.sqrt(_quantile_distances(np.sort(y[:, 0]), _cumulative(None, y.shape[0]), edges, C)[1])
        else:
            boot_name = "sliced_w2"
            if "sliced_w2" in chosen or bootstrap:
                sliced = _SlicedReference(grid, masses)
                distances["sliced_w2"] = math.sqrt(float(np.mean(sliced.w2_squared(x, weights))))

            def boot_statistic(y):
                return math.sqrt(float(np.mean(sliced.w2_squared(y, None))))

        mmd_used = 0
        if "mmd" in chosen:
            mmd, mmd_used = _mmd2(grid, masses, x, w, bandwidth, rng)
            distances["mmd"] = mmd
            floors["mmd"] = 0.0

        hist = _histogram_tests(grid, masses, x, w, n)
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
        "distances": {k: _finite(v) for k, v in distances.items()},
        "p_value": _finite(p_value),
        "p_value_method": method,
        "p_values": {k: _finite(v) for k, v in pvals.items()},
        "noise_floor": {k: _finite(v) for k, v in floors.items()},
        "excess": {k: _finite(distances[k] - floors[k]) for k in floors if k in distances},
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


def _check_ess(ess, n_particles: int) -> float:
    try:
        value = float(ess)
    except (TypeError, ValueError):
        raise InputError(f"ess must be a positive number (the ensemble's effective size), got {ess!r}.") from None
    if not (value >= 1.0 and math.isfinite(value)):
        raise InputError(f"ess must be a number >= 1 (the ensemble's effective size), got {ess!r}.")
    return value


# --------------------------------------------------------------------------------------------
# modes of a mixture, and replicates
# --------------------------------------------------------------------------------------------

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
    from gridflow.particles.samplers import log_density_function

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


def _replicate_list(samples, dim: int) -> list | None:
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
        C = _cumulative(marginal, marginal.size)
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
            n = _check_ess(stated[i], x.shape[0])
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
        "replicates": r, "n": ns, "p_value": _finite(p_value), "statistic": _finite(F), "df": [p, r - p],
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
