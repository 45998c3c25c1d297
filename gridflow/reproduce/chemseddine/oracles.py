"""Independent references of the Chemseddine et al. reproduction: the closed-form teleportation example,
exact Fokker–Planck quantities and Gaussian mixtures under the Ornstein–Uhlenbeck flow."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from gridflow.core.grid import Grid
from gridflow.time.solver import Frame
from gridflow.reproduce.chemseddine.cases import ACTION_NODES, ACTION_PANELS


# =========================================================================== exact references


def _i0(a: float, length: np.ndarray) -> np.ndarray:
    """∫_0^L e^{-a s} ds (a scalar, L >= 0 an array), without cancellation for small a L."""
    length = np.asarray(length, dtype=float)
    if a == 0.0:
        return length.copy()
    z = -a * length
    out = -np.expm1(z) / a
    small = np.abs(z) < 1e-3
    out[small] = (length * (1 + z / 2 + z * z / 6 + z ** 3 / 24))[small]
    return out


def _i1(a: float, length: np.ndarray) -> np.ndarray:
    """∫_0^L s e^{-a s} ds (series for |a L| < 1/2, closed form otherwise)."""
    length = np.asarray(length, dtype=float)
    z = -a * length
    out = np.empty_like(length)
    small = np.abs(z) < 0.5
    series = np.zeros_like(length)
    term = np.ones_like(length)
    for k in range(30):
        series += term / (k + 2)
        term = term * z / (k + 1)
    out[small] = (length * length * series)[small]
    big = ~small
    if np.any(big):
        out[big] = (_i0(a, length[big]) - length[big] * np.exp(z[big])) / a
    return out


class TeleportExample:
    r"""Continuum minimal velocity of the path rho_t ∝ e^{-f_t}, f_t = (1-t)|x| + 2t min(|x|, |x-m|).

    On each of the pieces (-inf, 0), (0, m/2), (m/2, m), (m, inf) the path density is
    e^{-(a x + b)} / Z and the tilt g = |x| - 2 min(|x|, |x-m|) (= log rho_1 - log rho_0 up to a
    constant) is c x + d, so d_t rho = rho (g - E g) and the flux J(x) = -∫_{-inf}^x d_t rho =
    ∫_x^inf d_t rho are closed forms.  J is taken from the side of x that holds less mass (no
    cancellation in the tails); ||v_t||^2 = ∫ J^2 / rho by composite Gauss–Legendre quadrature
    (the integrand is smooth on each piece), the tails cut at 80 from the outer kinks.
    """

    def __init__(self, m: float, t: float) -> None:
        m, t = float(m), float(t)
        self.m, self.t = m, t
        al = 1.0 + t
        self.al = al
        a3 = 1.0 - 3.0 * t
        # pieces: (p, q, a, c) with f = a x + b and g = c x + d on (p, q)
        self.pieces = ((-np.inf, 0.0, -al, 1.0), (0.0, m / 2, al, -1.0), (m / 2, m, a3, 3.0), (m, np.inf, al, -1.0))
        half = np.array([m / 2])
        e_half = math.exp(-al * m / 2)  # e^{-f(m/2)}
        e_m = math.exp(-(1.0 - t) * m)  # e^{-f(m)}
        mass = [1 / al, _i0(al, half)[0], e_half * _i0(a3, half)[0], e_m / al]
        first = [-1 / al ** 2, -_i1(al, half)[0], e_half * (-m / 2 * _i0(a3, half)[0] + 3 * _i1(a3, half)[0]),
                 e_m * (m / al - 1 / al ** 2)]
        self.mass = np.array(mass)  # ∫ e^{-f} per piece
        self.Z = float(self.mass.sum())
        self.mean_tilt = float(sum(first) / self.Z)
        self.total = np.array(first) - self.mean_tilt * self.mass  # ∫ e^{-f} (g - E g) per piece

    def f(self, x: np.ndarray) -> np.ndarray:
        m, t = self.m, self.t
        return (1 - t) * np.abs(x) + 2 * t * np.minimum(np.abs(x), np.abs(x - m))

    def g(self, x: np.ndarray) -> np.ndarray:
        return np.abs(x) - 2 * np.minimum(np.abs(x), np.abs(x - self.m))

    def log_density(self, x: np.ndarray) -> np.ndarray:
        return -self.f(np.asarray(x, dtype=float)) - math.log(self.Z)

    def _segment(self, k: int, u: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(∫_u^w e^{-f} (g - E g), ∫_u^w e^{-f}) inside the finite part of piece k."""
        a, c = self.pieces[k][2], self.pieces[k][3]
        e = np.exp(-self.f(u))
        return e * ((self.g(u) - self.mean_tilt) * _i0(a, w - u) + c * _i1(a, w - u)), e * _i0(a, w - u)

    def flux(self, x: np.ndarray, k: int) -> np.ndarray:
        """J = rho v at points ``x`` of piece ``k``."""
        x = np.asarray(x, dtype=float)
        al, mean = self.al, self.mean_tilt
        p, q = self.pieces[k][:2]
        if k == 0:
            ex = np.exp(al * x)
            left, left_mass = ex * ((x - mean) / al - 1 / al ** 2), ex / al
        else:
            s, mm = self._segment(k, np.full_like(x, p), x)
            left, left_mass = self.total[:k].sum() + s, self.mass[:k].sum() + mm
        if k == 3:
            right = np.exp(-self.f(x)) * ((self.g(x) - mean) / al - 1 / al ** 2)
        else:
            right = self.total[k + 1:].sum() + self._segment(k, x, np.full_like(x, q))[0]
        return np.where(left_mass <= 0.5 * self.Z, -left, right) / self.Z

    def _piece_of(self, x: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.array([0.0, self.m / 2, self.m]), x, side="right")

    def velocity(self, x: np.ndarray) -> np.ndarray:
        """v_t(x) = J / rho (lambda' = 1)."""
        x = np.asarray(x, dtype=float)
        out = np.empty_like(x)
        which = self._piece_of(x)
        for k in range(4):
            sel = which == k
            if np.any(sel):
                out[sel] = self.flux(x[sel], k) * self.Z * np.exp(self.f(x[sel]))
        return out

    def kinetic_energy(self, panel: float = 0.25, nodes: int = 20, tail: float = 80.0) -> float:
        """||v_t||^2 = ∫ J^2 / rho (Gauss–Legendre, ``nodes`` per panel of width <= ``panel``)."""
        gx, gw = np.polynomial.legendre.leggauss(nodes)
        total = 0.0
        for k, (p, q, _, _) in enumerate(self.pieces):
            lo = -tail if k == 0 else p
            hi = self.m + tail if k == 3 else q
            n = max(1, int(np.ceil((hi - lo) / panel)))
            edges = np.linspace(lo, hi, n + 1)
            mid = (0.5 * (edges[:-1] + edges[1:]))[:, None]
            half = (0.5 * np.diff(edges))[:, None]
            xs = (mid + half * gx).ravel()
            ws = (half * gw).ravel()
            j = self.flux(xs, k)
            total += float(np.sum(ws * j * j * np.exp(self.f(xs))))
        return total * self.Z


def teleport_asymptote(m: float) -> float:
    """Large-m form of ||v_1||^2 for the teleportation example: (m - 1/2)^2 e^m / 8."""
    return (m - 0.5) ** 2 * math.exp(m) / 8.0


def gauss_legendre_panels(panels: int = ACTION_PANELS, nodes: int = ACTION_NODES,
                          edges: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of composite Gauss–Legendre quadrature on [0, 1]."""
    gx, gw = np.polynomial.legendre.leggauss(nodes)
    e = np.linspace(0.0, 1.0, panels + 1) if edges is None else np.asarray(edges, dtype=float)
    mid = 0.5 * (e[:-1] + e[1:])
    half = 0.5 * np.diff(e)
    return (mid[:, None] + half[:, None] * gx).ravel(), (half[:, None] * gw).ravel()


def teleport_exact_action(m: float, nodes: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """(∫_0^1 ||v_t||^2 dt, ∫_0^1 ||v_t|| dt) of the continuum example by the given quadrature."""
    ke = np.array([TeleportExample(m, t).kinetic_energy() for t in nodes])
    return float(np.sum(weights * ke)), float(np.sum(weights * np.sqrt(ke)))


def teleport_fp_exact(m: float) -> dict:
    """KL(rho_1 | N(0,1)) and I(rho_1 | N(0,1)) for rho_1 ∝ e^{-2 min(|x|, |x-m|)} (quadrature)."""
    from scipy.integrate import quad

    z = 2.0 - math.exp(-m)

    def expect(fun: Callable[[float], float]) -> float:
        total = 0.0
        for lo, hi in ((-np.inf, 0.0), (0.0, m / 2), (m / 2, m), (m, np.inf)):
            val, _ = quad(lambda x: fun(x) * math.exp(-2 * min(abs(x), abs(x - m))) / z, lo, hi,
                          epsabs=0.0, epsrel=1e-13, limit=200)
            total += val
        return total

    def score(x: float) -> float:  # d/dx log rho_1
        return -2.0 * (math.copysign(1.0, x) if x < m / 2 else math.copysign(1.0, x - m))

    second = expect(lambda x: x * x)
    kl = -math.log(z) - 2 * expect(lambda x: min(abs(x), abs(x - m))) + 0.5 * math.log(2 * math.pi) + 0.5 * second
    fisher = expect(lambda x: (score(x) + x) ** 2)
    return {"kl": kl, "fisher": fisher, "second_moment": second}


def mixture_kl_to_standard_normal(a: float, weights: Sequence[float]) -> float:
    """KL(w_1 N(-a,1) + w_2 N(a,1) | N(0,1)) by quadrature."""
    from scipy.integrate import quad
    from scipy.special import logsumexp

    w = np.asarray(weights, dtype=float) / np.sum(weights)

    def log_p(x: float) -> float:
        return float(logsumexp([math.log(w[0]) - 0.5 * (x + a) ** 2, math.log(w[1]) - 0.5 * (x - a) ** 2])
                     - 0.5 * math.log(2 * math.pi))

    def integrand(x: float) -> float:
        lp = log_p(x)
        return math.exp(lp) * (lp + 0.5 * x * x + 0.5 * math.log(2 * math.pi))

    val, _ = quad(integrand, -a - 40, a + 40, points=[-a, 0.0, a], epsabs=0.0, epsrel=1e-12, limit=400)
    return val


def ou_mixture(weights: Sequence[float], means: Sequence[Sequence[float]], covs: Sequence[Sequence[Sequence[float]]],
               t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Gaussian mixture after time t of the Fokker–Planck flow towards N(0, I) (weights, means, covs)."""
    w = np.asarray(weights, dtype=float)
    mu = np.asarray(means, dtype=float)
    cov = np.asarray(covs, dtype=float)
    d = mu.shape[1]
    e = math.exp(-t)
    return w / w.sum(), e * mu, e * e * cov + (1 - e * e) * np.eye(d)[None]


def mixture_cell_averages(grid: Grid, weights: np.ndarray, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """Exact cell averages of a 2D Gaussian mixture (4x4 Gauss–Legendre per cell, error O(h^8))."""
    nodes, wts = np.polynomial.legendre.leggauss(4)
    X, Y = grid.coordinates
    hx, hy = grid.spacing
    out = np.zeros(grid.shape)
    for w, mu, cov in zip(weights, means, covs):
        prec = np.linalg.inv(cov)
        norm = w / (2 * math.pi * math.sqrt(np.linalg.det(cov)))
        for a, wa in zip(nodes, wts):
            dx = X + 0.5 * hx * a - mu[0]
            for b, wb in zip(nodes, wts):
                dy = Y + 0.5 * hy * b - mu[1]
                q = prec[0, 0] * dx * dx + 2 * prec[0, 1] * dx * dy + prec[1, 1] * dy * dy
                with np.errstate(under="ignore"):
                    out += 0.25 * wa * wb * norm * np.exp(-0.5 * q)
    return out


def closed_form_l1(case: Mapping, frame: Frame, grid: Grid) -> float:
    """L1 distance between the grid density of a 2D ``fp-2d`` frame and the exact cell averages."""
    init = case["initial"]
    w, mu, cov = ou_mixture(init["weights"], [c["mean"] for c in init["components"]],
                            [c["cov"] for c in init["components"]], frame.time)
    exact = mixture_cell_averages(grid, w, mu, cov)
    return float(np.abs(frame.density - exact).sum() * grid.cell_volume)
