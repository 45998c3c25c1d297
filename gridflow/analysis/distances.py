"""Exact Wasserstein distances between an ensemble and a piecewise-constant grid law (docs/validation.md).

1D: W1 and W2 integrated exactly over the merged breakpoints of the two quantile functions.
2D: the sliced W2 over ``SLICED_DIRECTIONS`` directions (projected grid law on a lattice).
Also the merging of grid cells by integer factors used by the MMD and the histogram tests.
"""

from __future__ import annotations

import math

import numpy as np

from gridflow.core.grid import Grid

__all__ = ["wasserstein_1d", "quantile_distances", "cumulative_weights", "SlicedReference", "merge_cells",
           "SLICED_DIRECTIONS", "SLICED_MAX_LATTICE"]

#: number of directions of the sliced Wasserstein distance (angles (l + 1/2) pi / 64)
SLICED_DIRECTIONS = 64
#: lattice points per projected law of ``sliced_w2`` (upper bound)
SLICED_MAX_LATTICE = 32768


def cumulative_weights(xs_weights: np.ndarray | None, n: int) -> np.ndarray:
    """Cumulative sums ``[0, w_1, w_1 + w_2, ..., 1]`` of the weights normalised to 1 (equal weights 1/n when None)."""
    if xs_weights is None:
        return np.arange(n + 1) / n
    cum = np.concatenate([[0.0], np.cumsum(xs_weights)])
    return cum / cum[-1]


def quantile_distances(xs: np.ndarray, W: np.ndarray, edges: np.ndarray, C: np.ndarray) -> tuple[float, float]:
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
    W = cumulative_weights(None if weights is None else np.asarray(weights, float)[order], x.size)
    masses = np.asarray(masses, dtype=float).ravel()
    C = cumulative_weights(masses, masses.size)
    w1, w2sq = quantile_distances(x[order], W, np.asarray(edges, float), C)
    return w1, math.sqrt(w2sq)


def sqrt_g1g_integral(edges: np.ndarray, C: np.ndarray) -> float:
    """``∫ sqrt(G (1 - G)) dx`` for the piecewise-linear CDF through ``(edges, C)``, exactly."""
    def antiderivative(g):                       # d/dg = sqrt(g (1 - g))
        return (2 * g - 1) * np.sqrt(g * (1 - g)) / 4 + np.arcsin(2 * g - 1) / 8

    C = np.clip(C, 0.0, 1.0)
    h, p = np.diff(edges), np.diff(C)
    mid = 0.5 * (C[1:] + C[:-1])
    small = p < 1e-9                              # flat or nearly flat: midpoint rule (error ~ h p^2)
    exact = h * (antiderivative(C[1:]) - antiderivative(C[:-1])) / np.where(small, 1.0, p)
    return float(np.sum(np.where(small, h * np.sqrt(mid * (1 - mid)), exact)))


class SlicedReference:
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
        self._integrals = [self._quantile_integrals(t, P) for t, P in self.lattices]

    @staticmethod
    def _quantile_integrals(t: np.ndarray, P: np.ndarray) -> tuple:
        """The projected law's mean ``m`` and the coefficients of H(u) = ∫_0^u (G^-1(v) - m) dv, which
        is quadratic between the CDF knots P_k (the quantile G^-1 is linear there):
        H(P_k + d) = H_k + d (s_k + c_k d), s_k = t_k - m, c_k = (t_k+1 - t_k) / (2 (P_k+1 - P_k));
        and ``Q = ∫_0^1 (G^-1 - m)^2``.  Exact sums over the pieces; a piece of CDF span <= 1e-300
        gets c_k = 0 (its quadratic term is below width * span)."""
        span, width = np.diff(P), np.diff(t)
        m = float(np.sum(span * (t[:-1] + 0.5 * width)))
        s = t[:-1] - m
        H = np.concatenate([[0.0], np.cumsum(span * (s + 0.5 * width))])[:-1]
        Q = float(np.sum(span * (s * s + s * width + width * width / 3.0)))
        big = span > 1e-300
        c = np.divide(width, 2.0 * span, out=np.zeros_like(span), where=big)
        return m, H, s, c, Q

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
        pos = (c - lo) / delta                        # >= half / delta > 0 and < size - 1 (lo, t[-1] >= hi)
        left = np.minimum(pos.astype(np.int64), size - 1)   # truncation = floor for pos >= 0
        mf = m * (pos - left)                          # mass moved to the right neighbour
        D = np.bincount(left, weights=m - mf, minlength=size + 1)
        D[1:] += np.bincount(left, weights=mf, minlength=size)[:size]
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
        """Per-direction exact W2^2 between the projected ensemble and the projected lattice law.

        With y_i the sorted projections minus the law's mean m and (W_{i-1}, W_i] their quantile
        pieces, W2^2 = sum_i [(W_i - W_{i-1}) y_i^2 - 2 y_i (H(W_i) - H(W_{i-1}))] + Q(1), where
        H(u) = ∫_0^u (G^-1 - m) and Q(u) = ∫_0^u (G^-1 - m)^2 are exact quadratics / cubics in u
        between the law's CDF knots (:meth:`_quantile_integrals`); O(N log lattice) per direction.
        """
        proj = self.units[:, :1] * x[:, 0] + self.units[:, 1:] * x[:, 1]     # (directions, N), no BLAS threads
        out = np.empty(len(self.lattices))
        if w is None:
            proj.sort(axis=1)
            W = cumulative_weights(None, x.shape[0])
            for l, ((t, P), ints) in enumerate(zip(self.lattices, self._integrals)):
                out[l] = self._piecewise_w2(proj[l], W, P, ints)
        else:
            order = np.argsort(proj, axis=1, kind="stable")
            for l, ((t, P), ints) in enumerate(zip(self.lattices, self._integrals)):
                out[l] = self._piecewise_w2(proj[l, order[l]], cumulative_weights(w[order[l]], w.size), P, ints)
        return out

    @staticmethod
    def _piecewise_w2(xs: np.ndarray, W: np.ndarray, P: np.ndarray, ints: tuple) -> float:
        """W2^2 between sorted atoms ``xs`` with cumulative weights ``W`` and the law with CDF knots ``P``
        (rounding error about N eps Var / W2^2 relative: 1e-10 for 2e4 exact draws)."""
        m, H, s, c, Q = ints
        k = np.minimum(np.searchsorted(P, W, side="right") - 1, H.size - 1)   # P_k <= W < P_k+1
        d = W - P[k]
        HW = H[k] + d * (s[k] + c[k] * d)
        y = xs - m
        value = float(np.sum(np.diff(W) * (y * y) - 2.0 * y * np.diff(HW)) + Q)   # no BLAS (threads)
        return max(value, 0.0)


def merge_cells(grid: Grid, masses: np.ndarray, max_cells: int) -> tuple[list[np.ndarray], np.ndarray, tuple[int, ...]]:
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

