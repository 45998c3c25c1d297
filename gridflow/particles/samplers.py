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

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from gridflow.errors import InputError, NumericalError
from gridflow.core.grid import Grid
from gridflow.core.logspace import logsumexp
from gridflow.core.problem import Problem
from gridflow.particles.grid_sampling import GridDensitySampler
from gridflow.core.schedule import Adaptive, Schedule, linear_ramp

__all__ = [
    "LogDensity", "log_density_function", "ParticleModel", "ParticleFrame", "ParticleSampler",
    "TemperedULA", "FisherRaoImportance", "TemperingSMC", "BirthDeath", "BirthDeathLangevin", "SMCWFR",
    "SAMPLERS", "make_sampler", "run_sampler", "systematic_resample", "effective_sample_size",
    "kde_log_density", "kde_bandwidth", "reflect", "Target", "UserSampler", "load_user_sampler",
]


# ============================================================================================
# log densities at arbitrary points
# ============================================================================================

class LogDensity:
    """A log density (up to an additive constant) and its gradient at points ``x`` of shape (n, d)."""

    dim: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.value_and_grad(x, grad=False)[0]

    def grad(self, x: np.ndarray) -> np.ndarray:
        return self.value_and_grad(x)[1]

    def value_and_grad(self, x: np.ndarray, *, grad: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError


class _Gaussian(LogDensity):
    def __init__(self, mean, cov):
        self.mean = np.asarray(mean, dtype=float)
        self.cov = np.asarray(cov, dtype=float)
        self.dim = self.mean.size
        self.chol = np.linalg.cholesky(self.cov)
        self.precision = np.linalg.inv(self.cov)
        self.precision = 0.5 * (self.precision + self.precision.T)
        self.const = -float(np.sum(np.log(np.diag(self.chol)))) - 0.5 * self.dim * math.log(2 * math.pi)

    def value_and_grad(self, x, *, grad=True):
        diff = x - self.mean
        pd = diff @ self.precision
        value = self.const - 0.5 * np.sum(pd * diff, axis=1)
        return value, (-pd if grad else None)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.mean + rng.standard_normal((n, self.dim)) @ self.chol.T


class _Mixture(LogDensity):
    def __init__(self, weights, components: list[LogDensity]):
        w = np.asarray(weights, dtype=float)
        self.weights = w / w.sum()
        self.log_weights = np.log(self.weights)
        self.components = components
        self.dim = components[0].dim

    def value_and_grad(self, x, *, grad=True):
        parts = [c.value_and_grad(x, grad=grad) for c in self.components]
        logs = np.stack([lw + v for lw, (v, _) in zip(self.log_weights, parts)])      # (K, n)
        top = logs.max(axis=0)
        with np.errstate(under="ignore"):
            value = top + np.log(np.sum(np.exp(logs - top), axis=0))
        if not grad:
            return value, None
        with np.errstate(under="ignore"):
            resp = np.exp(logs - value)                                                # responsibilities
        g = sum(r[:, None] * gk for r, (_, gk) in zip(resp, parts))
        return value, g

    @property
    def gaussian(self) -> bool:
        return all(isinstance(c, _Gaussian) or (isinstance(c, _Mixture) and c.gaussian) for c in self.components)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        counts = rng.multinomial(n, self.weights)
        out = np.concatenate([c.sample(int(k), rng) for c, k in zip(self.components, counts)])
        return out[rng.permutation(n)]


class _Expression(LogDensity):
    """A parsed formula; gradient by central differences (step cbrt(eps) max(1, |x|), error ~1e-10)."""

    def __init__(self, text: str, dim: int):
        from gridflow.io.expression import parse_expression

        self.names = ("x",) if dim == 1 else ("x", "y")
        self.expr = parse_expression(text, variables=self.names)
        self.dim = dim
        self.text = text

    def _eval(self, x):
        return self.expr.evaluate(**{name: x[:, k] for k, name in enumerate(self.names)})

    def value_and_grad(self, x, *, grad=True):
        value = self._eval(x)
        if not grad:
            return value, None
        g = np.empty_like(x)
        for k in range(self.dim):
            delta = np.cbrt(np.finfo(float).eps) * np.maximum(1.0, np.abs(x[:, k]))
            up, down = x.copy(), x.copy()
            up[:, k] += delta
            down[:, k] -= delta
            with np.errstate(invalid="ignore"):
                g[:, k] = (self._eval(up) - self._eval(down)) / ((up[:, k] - x[:, k]) + (x[:, k] - down[:, k]))
        return value, g


class _GridValues(LogDensity):
    """Cell-centre log values of a grid; ``mode="linear"``: multilinear interpolation (clamped at
    the outer centres) and the gradient of the interpolant; ``mode="cell"``: the value of the cell
    holding x (the log density of the piecewise-constant grid law), gradient zero."""

    def __init__(self, values: np.ndarray, grid: Grid, mode: str = "linear"):
        self.values = np.asarray(values, dtype=float)
        self.grid = grid
        self.dim = grid.dim
        self.mode = mode

    def _locate(self, x):
        idx, frac = [], []
        for k in range(self.dim):
            n, h, lo = self.grid.cells[k], self.grid.spacing[k], self.grid.lower[k]
            if self.mode == "cell":
                idx.append(np.clip(np.floor((x[:, k] - lo) / h).astype(np.int64), 0, n - 1))
                continue
            u = np.clip((x[:, k] - lo) / h - 0.5, 0.0, n - 1.0)
            i0 = np.minimum(np.floor(u).astype(np.int64), n - 2)
            idx.append(i0)
            frac.append(u - i0)
        return idx, frac

    def value_and_grad(self, x, *, grad=True):
        idx, frac = self._locate(x)
        v = self.values
        if self.mode == "cell":
            return v[tuple(idx)], (np.zeros_like(x) if grad else None)
        h = self.grid.spacing
        if self.dim == 1:
            (i,), (f,) = idx, frac
            a, b = v[i], v[i + 1]
            return a + f * (b - a), (((b - a) / h[0])[:, None] if grad else None)
        (i, j), (f, g) = idx, frac
        a, b, c, d = v[i, j], v[i + 1, j], v[i, j + 1], v[i + 1, j + 1]
        value = a * (1 - f) * (1 - g) + b * f * (1 - g) + c * (1 - f) * g + d * f * g
        if not grad:
            return value, None
        gx = ((b - a) * (1 - g) + (d - c) * g) / h[0]
        gy = ((c - a) * (1 - f) + (d - b) * f) / h[1]
        return value, np.stack([gx, gy], axis=1)


def log_density_function(table: Mapping, grid: Grid, *, what: str = "density") -> LogDensity:
    """The log density of a resolved distribution table as a function of position (the distribution kinds of the README).

    ``gaussian`` and ``mixture`` are exact (closed-form gradients), ``expression`` evaluates the
    formula (central-difference gradients), ``file`` interpolates the cell-centre values.
    """
    kind = table["kind"]
    if kind == "gaussian":
        return _Gaussian(table["mean"], table["cov"])
    if kind == "mixture":
        return _Mixture(table["weights"], [log_density_function(c, grid, what=f"{what}.components[{k}]")
                                           for k, c in enumerate(table["components"])])
    if kind == "expression":
        return _Expression(table["log_density"], grid.dim)
    if kind == "file":
        from gridflow.core.distributions import log_density

        return _GridValues(log_density(table, grid, what=what), grid)
    raise InputError(f"{what}: unknown distribution kind {kind!r}; use gaussian, mixture, expression or file.")


# ============================================================================================
# the problem of a case, for particles
# ============================================================================================

def reflect(x: np.ndarray, lower: Sequence[float], upper: Sequence[float], *, periodic: bool = False) -> np.ndarray:
    """Fold positions (n, d) into the box: mirror images at the walls (reflecting) or wrap (periodic).

    Reflection is the exact fold of the real line onto [lower, upper] (any distance outside)."""
    lo = np.asarray(lower, dtype=float)
    width = np.asarray(upper, dtype=float) - lo
    if periodic:
        return lo + np.mod(x - lo, width)
    y = np.mod(x - lo, 2.0 * width)
    return lo + np.where(y > width, 2.0 * width - y, y)


@dataclass
class ParticleModel:
    """Everything a sampler needs from a case, as functions of position.

    Build with :meth:`from_case`.  ``target``, ``reference`` (pi_0) and ``initial`` (mu_0) are
    :class:`LogDensity` functions; ``problem`` is the grid problem (its box, schedule, weights
    and, for adaptive schedules with ``variance = "path"``, the exact path moments).
    """

    problem: Problem
    target: LogDensity
    reference: LogDensity
    initial: LogDensity
    reference_is_initial: bool
    case: Mapping | None = None
    _initial_sampler: Any = field(default=None, repr=False)

    @classmethod
    def from_case(cls, case: Mapping) -> "ParticleModel":
        """The particle version of a resolved case (see :func:`gridflow.io.case.load_case`)."""
        problem = Problem.from_case(case)
        grid = problem.grid
        target = log_density_function(case["target"], grid, what="target")
        tempering = case.get("tempering")
        ref_table = tempering.get("reference", "initial") if tempering else "initial"
        init_table = case["initial"]
        exact = init_table["kind"] == "gaussian" or (
            init_table["kind"] == "mixture" and _Mixture(init_table["weights"], [
                log_density_function(c, grid) for c in init_table["components"]]).gaussian)
        if exact:
            initial = log_density_function(init_table, grid, what="initial")
        else:   # sampled from the grid's piecewise-constant initial density: its log density is the cell value
            initial = _GridValues(problem.log_initial, grid, mode="cell")
        if ref_table == "initial":
            reference, is_initial = initial, True
        else:
            reference, is_initial = log_density_function(ref_table, grid, what="tempering.reference"), False
        model = cls(problem=problem, target=target, reference=reference, initial=initial,
                    reference_is_initial=is_initial, case=case)
        if not exact:
            model._initial_sampler = GridDensitySampler(grid, np.exp(problem.log_initial))
        return model

    # -- shortcuts --------------------------------------------------------------------------
    @property
    def grid(self) -> Grid:
        return self.problem.grid

    @property
    def dim(self) -> int:
        return self.grid.dim

    @property
    def flow(self) -> str:
        return self.problem.flow

    @property
    def diffusion(self) -> float:
        return self.problem.diffusion

    @property
    def reaction(self) -> float:
        return self.problem.reaction

    @property
    def schedule(self) -> Schedule:
        return self.problem.schedule

    @property
    def periodic(self) -> bool:
        return self.grid.periodic

    def confine(self, x: np.ndarray) -> np.ndarray:
        """Positions folded into the box (reflecting or periodic, as the grid)."""
        g = self.grid
        return reflect(x, g.lower, g.upper, periodic=g.periodic)

    def inside(self, x: np.ndarray) -> np.ndarray:
        g = self.grid
        return np.all((x >= np.asarray(g.lower)) & (x <= np.asarray(g.upper)), axis=1)

    def sample_initial(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` exact draws of mu_0 restricted to the box, shape (n, d)."""
        if self._initial_sampler is not None:
            return self._initial_sampler.sample(n, rng)
        out = self.initial.sample(n, rng)
        for _ in range(100):                    # rejection of draws outside the box (the grid truncates)
            bad = ~self.inside(out)
            if not bad.any():
                return out
            out[bad] = self.initial.sample(int(bad.sum()), rng)
        raise InputError("The initial density puts almost no mass inside the box (100 rounds of redrawing the "
                         "particles outside it did not succeed); enlarge [grid] lower/upper to cover it.")

    def grad_log_tempered(self, x: np.ndarray, lam: float) -> np.ndarray:
        """grad log pi_lambda = (1 - lambda) grad log pi_0 + lambda grad log pi."""
        if lam >= 1.0:
            g = self.target.grad(x)
        elif lam <= 0.0:
            g = self.reference.grad(x)
        else:
            g = (1.0 - lam) * self.reference.grad(x) + lam * self.target.grad(x)
        if not np.all(np.isfinite(g)):
            bad = ~np.all(np.isfinite(g), axis=1)
            raise NumericalError(
                f"grad log pi_lambda (lambda = {lam:.4g}) is not finite at {int(bad.sum())} particles (first at "
                f"{x[np.argmax(bad)].tolist()}): the target or reference log density is not differentiable "
                "there; smooth the density or shrink the box.")
        return g

    def log_tempered(self, x: np.ndarray, lam: float) -> np.ndarray:
        """log pi_lambda up to a constant."""
        if lam >= 1.0:
            return self.target(x)
        if lam <= 0.0:
            return self.reference(x)
        return (1.0 - lam) * self.reference(x) + lam * self.target(x)

    def tilt(self, x: np.ndarray) -> np.ndarray:
        """T = log pi - log pi_0 (up to a constant)."""
        return self.target(x) - self.reference(x)

    def fr_log_density(self, x: np.ndarray, decay: float, J: float) -> np.ndarray:
        """log rho_t of the Fisher–Rao flow up to a constant: decay log mu_0 + (1 - decay) log pi_0 + J T,
        with decay = e^{-bt} (also fine for a tempered run with reference mu_0)."""
        if self.reference_is_initial:
            return self.initial(x) + J * self.tilt(x)
        return decay * self.initial(x) + (1.0 - decay) * self.reference(x) + J * self.tilt(x)


# ============================================================================================
# ensemble tools
# ============================================================================================

def _normalised(log_w: np.ndarray) -> np.ndarray:
    with np.errstate(under="ignore"):
        w = np.exp(log_w - np.max(log_w))
    return w / w.sum()


def effective_sample_size(log_weights: np.ndarray | None, n: int | None = None) -> float:
    """Kish's ESS 1 / sum w_i^2 of normalised weights (``n`` when unweighted)."""
    if log_weights is None:
        return float(n)
    w = _normalised(np.asarray(log_weights, dtype=float))
    return float(1.0 / np.sum(w * w))


def systematic_resample(weights: np.ndarray, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Indices of a systematic resample of size ``n`` (default len(weights)): one uniform u,
    points (u + k)/n, so particle i is copied floor(n w_i) or ceil(n w_i) times."""
    w = np.asarray(weights, dtype=float)
    n = w.size if n is None else int(n)
    cum = np.cumsum(w / w.sum())
    cum[-1] = 1.0
    u = (rng.random() + np.arange(n)) / n
    return np.minimum(np.searchsorted(cum, u, side="right"), w.size - 1)


def kde_bandwidth(x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Rule-of-thumb bandwidth per axis: Silverman 0.9 min(sd, IQR/1.34) n^(-1/5) in 1D, Scott
    sd n^(-1/6) in 2D; n is the ESS for weighted ensembles (and the IQR is not used)."""
    n, d = x.shape
    if weights is None:
        sd = x.std(axis=0, ddof=1)
        neff = n
        if d == 1:
            k25, k75 = (n - 1) // 4, (3 * (n - 1)) // 4       # order statistics (no interpolation needed)
            part = np.partition(x[:, 0], [k25, k75])
            iqr = (part[k75] - part[k25]) / 1.34
            sd = np.array([min(sd[0], iqr) if iqr > 0 else sd[0]])
    else:
        w = weights / weights.sum()
        mean = w @ x
        sd = np.sqrt(np.maximum(w @ (x - mean) ** 2, 0.0))
        neff = 1.0 / np.sum(w * w)
    sd = np.where(sd > 0, sd, 1e-3)
    return 0.9 * sd * neff ** -0.2 if d == 1 else sd * neff ** (-1.0 / 6.0)


#: bins per axis of the binned KDE (upper bounds)
KDE_MAX_BINS = {1: 16384, 2: 1024}


def kde_log_density(points: np.ndarray, *, bandwidth: float | Sequence[float], lower: Sequence[float],
                    upper: Sequence[float], weights: np.ndarray | None = None, at: np.ndarray | None = None,
                    boundary: str = "reflecting", method: str = "binned") -> np.ndarray:
    """log of the Gaussian kernel density estimate sum_j w_j N(x; X_j, diag(bandwidth^2)) at ``at``
    (default: the points themselves), for points in the box [lower, upper].

    The kernel is reflected at reflecting walls (method of images: mass is not lost at the walls,
    as for reflected particles) or wrapped on a periodic box.  ``method="binned"``: linear binning
    on bins of width <= bandwidth/4 (at most :data:`KDE_MAX_BINS` per axis), discrete convolution
    with the sampled kernel (``scipy.ndimage.convolve1d``, mirror or wrap mode), linear
    interpolation back (Wand 1994; error O((bin/bandwidth)^2) relative).  ``method="exact"``:
    direct sums over all pairs (O(N M); for tests and small ensembles), reflected with the
    first image at each wall.
    """
    x = np.asarray(points, dtype=float)
    n, d = x.shape
    q = x if at is None else np.asarray(at, dtype=float)
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
    sigma = np.broadcast_to(np.asarray(bandwidth, dtype=float), (d,))
    lo, hi = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    if method == "exact":
        return _kde_exact(x, w, sigma, lo, hi, q, boundary)
    if method != "binned":
        raise ValueError(f"method must be 'binned' or 'exact', got {method!r}")
    width = hi - lo
    bins = [int(np.clip(math.ceil(width[k] / (sigma[k] / 4.0)), 8, KDE_MAX_BINS[d])) for k in range(d)]
    delta = width / np.asarray(bins)
    # linear binning onto the bin centres lo + (j + 1/2) delta
    idx, frac = [], []
    for k in range(d):
        u = np.clip((x[:, k] - lo[k]) / delta[k] - 0.5, 0.0, bins[k] - 1.0)
        i0 = np.minimum(np.floor(u).astype(np.int64), max(bins[k] - 2, 0))
        idx.append(i0)
        frac.append(u - i0)
    if d == 1:
        (i0,), (f,) = idx, frac
        counts = np.bincount(i0, w * (1 - f), minlength=bins[0]) + np.bincount(i0 + 1, w * f, minlength=bins[0])
    else:
        (i0, j0), (f, g) = idx, frac
        nb = bins[0] * bins[1]
        counts = np.zeros(nb)
        for di, dj, ww in ((0, 0, (1 - f) * (1 - g)), (1, 0, f * (1 - g)), (0, 1, (1 - f) * g), (1, 1, f * g)):
            counts += np.bincount((i0 + di) * bins[1] + (j0 + dj), w * ww, minlength=nb)
        counts = counts.reshape(bins)
    mode = "wrap" if boundary == "periodic" else "reflect"
    from scipy import ndimage

    dens = counts
    for k in range(d):
        half = int(math.ceil(5.0 * sigma[k] / delta[k]))
        offsets = np.arange(-half, half + 1) * delta[k]
        kern = np.exp(-0.5 * (offsets / sigma[k]) ** 2)
        kern /= kern.sum() * delta[k]                       # a density on the bins: sum kern * delta = 1
        dens = ndimage.convolve1d(dens, kern, axis=k, mode=mode)
    # linear interpolation at the query points
    values = _interp_centres(dens, lo, delta, q)
    tiny = np.finfo(float).tiny
    return np.log(np.maximum(values, tiny))


def _interp_centres(values: np.ndarray, lo: np.ndarray, delta: np.ndarray, q: np.ndarray) -> np.ndarray:
    idx, frac = [], []
    for k in range(values.ndim):
        m = values.shape[k]
        u = np.clip((q[:, k] - lo[k]) / delta[k] - 0.5, 0.0, m - 1.0)
        i0 = np.minimum(np.floor(u).astype(np.int64), m - 2)
        idx.append(i0)
        frac.append(u - i0)
    if values.ndim == 1:
        (i,), (f,) = idx, frac
        return values[i] * (1 - f) + values[i + 1] * f
    (i, j), (f, g) = idx, frac
    return (values[i, j] * (1 - f) * (1 - g) + values[i + 1, j] * f * (1 - g)
            + values[i, j + 1] * (1 - f) * g + values[i + 1, j + 1] * f * g)


def _kde_exact(x, w, sigma, lo, hi, q, boundary, chunk: int = 2048):
    d = x.shape[1]
    width = hi - lo
    norm = 1.0 / np.prod(np.sqrt(2 * np.pi) * sigma)
    out = np.empty(q.shape[0])
    for start in range(0, q.shape[0], chunk):           # loop over chunks of query points, not particles
        qq = q[start:start + chunk]
        total = np.ones((qq.shape[0], x.shape[0]))
        for k in range(d):
            diff = qq[:, k, None] - x[None, :, k]
            if boundary == "periodic":
                diff = np.mod(diff + 0.5 * width[k], width[k]) - 0.5 * width[k]
                factor = np.exp(-0.5 * (diff / sigma[k]) ** 2)
            else:
                images = (diff, qq[:, k, None] - (2 * lo[k] - x[None, :, k]), qq[:, k, None] - (2 * hi[k] - x[None, :, k]))
                with np.errstate(under="ignore"):
                    factor = sum(np.exp(-0.5 * (e / sigma[k]) ** 2) for e in images)
            total *= factor
        out[start:start + chunk] = norm * (total @ w)
    return np.log(np.maximum(out, np.finfo(float).tiny))


# ============================================================================================
# samplers
# ============================================================================================

@dataclass
class ParticleFrame:
    """One saved ensemble: ``positions`` (N, d), ``log_weights`` (N,) normalised or None,
    the tempering parameter ``lam`` used at ``time``, the ``ess``, the number of resampling
    events since the previous frame and the number of time ``steps`` taken since then."""

    time: float
    positions: np.ndarray
    log_weights: np.ndarray | None
    lam: float
    ess: float
    resampled: int = 0
    steps: int = 0

    @property
    def weights(self) -> np.ndarray | None:
        """Normalised weights (None for an unweighted ensemble)."""
        return None if self.log_weights is None else _normalised(self.log_weights)


@dataclass
class _State:
    t: float
    x: np.ndarray
    log_w: np.ndarray | None
    lam: float
    J: float = 0.0
    resampled: int = 0
    extra: dict = field(default_factory=dict)


class ParticleSampler:
    """Base class: the time loop, the tempering parameter and frames.

    Subclasses set ``name``, ``flows`` (case flows they solve), ``weighted``, ``interacting``
    (False: particles are independent, so replicates may be batched) and implement
    :meth:`_step` (and optionally :meth:`_start`).
    """

    name: ClassVar[str] = ""
    flows: ClassVar[tuple[str, ...]] = ()
    weighted: ClassVar[bool] = False
    interacting: ClassVar[bool] = True
    exact_in_time: ClassVar[bool] = False

    def __init__(self, model: ParticleModel, *, step: float, threshold: float = 0.5) -> None:
        if model.flow not in self.flows:
            kinds = ", ".join(f"{k!r}: {', '.join(s.flows)}" for k, s in SAMPLERS.items())
            raise InputError(
                f"The sampler {self.name!r} runs the {' or '.join(self.flows)} flow, but the case's flow is "
                f"{model.flow!r}. Choose a sampler of that flow (sampler: flows — {kinds}) or change the case "
                f"(e.g. --set flow.kind={self.flows[0]}).")
        if not (isinstance(step, (int, float, np.floating)) and math.isfinite(step) and step > 0):
            raise InputError(f"The time step must be a positive number, got {step!r}; e.g. --step 0.01.")
        if not 0.0 <= threshold <= 1.0:
            raise InputError(f"The resampling threshold (ESS / N) must be in [0, 1], got {threshold!r}.")
        self.model = model
        self.step = float(step)
        self.threshold = float(threshold)
        self.a = model.diffusion
        self.b = model.reaction

    @property
    def independent_particles(self) -> bool:
        """True when particles never interact: not an interacting sampler, and lambda not driven by
        ensemble estimates (an adaptive schedule with ``variance = "density"`` or ``correction``).
        Replicates of such a sampler can be run as one large ensemble."""
        sched = self.model.schedule
        coupled = isinstance(sched, Adaptive) and (sched.variance == "density" or sched.correction)
        return not self.interacting and not coupled

    def options(self) -> dict[str, Any]:
        """The sampler's settings (stored as attributes of particle files)."""
        return {"sampler": self.name, "step": self.step, "threshold": self.threshold}

    # -- time loop --------------------------------------------------------------------------
    def run(self, *, particles: int, times: Sequence[float], rng: np.random.Generator | int | None = None
            ) -> Iterator[ParticleFrame]:
        """Yield a :class:`ParticleFrame` at each of ``times`` (increasing, >= 0), starting from
        ``particles`` exact draws of mu_0 at t = 0."""
        if isinstance(particles, bool) or not isinstance(particles, (int, np.integer)) or particles < 2:
            raise InputError(f"The number of particles must be an integer >= 2, got {particles!r}.")
        times = np.asarray(times, dtype=float).ravel()
        if times.size == 0 or not np.all(np.isfinite(times)) or times[0] < 0 or np.any(np.diff(times) <= 0):
            raise InputError(f"Frame times must be finite, >= 0 and strictly increasing, got {times.tolist()}.")
        rng = np.random.default_rng(rng)
        sched = self.model.schedule
        lam0 = 0.0 if sched.adaptive else sched.value(0.0)
        state = self._start(int(particles), rng, lam0)
        for t_frame in times:
            steps = 0
            interval = t_frame - state.t
            if interval > 0:
                count = max(1, math.ceil(interval / self.step * (1 - 1e-12)))
                dt = interval / count
                t0 = state.t
                for k in range(count):
                    t = t0 + k * dt
                    self._advance(state, t, dt, rng)
                    state.t = t0 + (k + 1) * dt
                steps = count
            state.t = float(t_frame)
            yield self._frame(state, steps)
            state.resampled = 0

    def _frame(self, state: _State, steps: int) -> ParticleFrame:
        lw = None if state.log_w is None else state.log_w - logsumexp(state.log_w)
        return ParticleFrame(time=float(state.t), positions=state.x.copy(), log_weights=lw, lam=float(state.lam),
                             ess=effective_sample_size(lw, state.x.shape[0]), resampled=state.resampled,
                             steps=steps)

    def _start(self, n: int, rng: np.random.Generator, lam0: float) -> _State:
        x = self.model.sample_initial(n, rng)
        return _State(t=0.0, x=x, log_w=np.zeros(n) if self.weighted else None, lam=lam0)

    def _advance(self, state: _State, t: float, dt: float, rng: np.random.Generator) -> None:
        lam_new, fr_weight = self._lambda_step(state, t, dt)
        self._step(state, t, dt, rng, lam_new, fr_weight)
        state.J = math.exp(-self.b * dt) * state.J + fr_weight
        state.lam = lam_new

    def _step(self, state: _State, t: float, dt: float, rng: np.random.Generator, lam_new: float,
              fr_weight: float) -> None:
        raise NotImplementedError

    def _lambda_step(self, state: _State, t: float, dt: float) -> tuple[float, float]:
        """lambda at t + dt and ∫_0^dt b e^{-b(dt-s)} lambda(t+s) ds (exact for explicit schedules;
        explicit Euler for adaptive ones, lambda linear within the step)."""
        sched = self.model.schedule
        if not sched.adaptive:
            return sched.value(t + dt), sched.fr_weight(t, dt, self.b) if self.b > 0 else 0.0
        assert isinstance(sched, Adaptive)
        lam = state.lam
        if lam >= 1.0:
            new = 1.0
        else:
            path = self.model.problem.path
            mean_path, var_path = path.tilt_moments(path.log_density(lam))
            var, gap = var_path, 0.0
            if sched.variance == "density" or sched.correction:
                tilt = self.model.tilt(state.x)
                w = (np.full(tilt.size, 1.0 / tilt.size) if state.log_w is None else _normalised(state.log_w))
                mean_rho = float(w @ tilt)
                var_rho = float(w @ (tilt - mean_rho) ** 2)
                if sched.variance == "density":
                    var = var_rho
                if sched.correction:   # E_rho T - E_{pi_lambda} T (T at particles = grid T + a constant)
                    gap = mean_rho - self._tilt_offset() - mean_path
            new = min(1.0, lam + dt * sched.rate(lam, var=var, mean_gap=gap))
        return new, (linear_ramp(lam, new, dt).fr_weight(0.0, dt, self.b) if self.b > 0 else 0.0)

    def _tilt_offset(self) -> float:
        """T at particles minus T on the grid: both are log pi - log pi_0 up to (different) constants;
        the difference is evaluated once at the cell centres."""
        if not hasattr(self, "_offset"):
            path = self.model.problem.path
            self._offset = float(np.mean(self.model.tilt(self.model.grid.points) - path.tilt.ravel()))
        return self._offset

    # -- shared moves -----------------------------------------------------------------------
    def _langevin(self, x: np.ndarray, lam: float, dt: float, rng: np.random.Generator) -> np.ndarray:
        drift = self.model.grad_log_tempered(x, lam)
        x = x + (self.a * dt) * drift + math.sqrt(2.0 * self.a * dt) * rng.standard_normal(x.shape)
        return self.model.confine(x)

    def _maybe_resample(self, state: _State, rng: np.random.Generator) -> bool:
        n = state.x.shape[0]
        w = _normalised(state.log_w)
        if 1.0 / np.sum(w * w) >= self.threshold * n:
            return False
        idx = systematic_resample(w, rng)
        state.x = state.x[idx]
        state.log_w = np.zeros(n)
        state.resampled += 1
        return True


class TemperedULA(ParticleSampler):
    r"""Tempered unadjusted Langevin algorithm (Fokker–Planck flow, weight a = ``flow.diffusion``).

    Euler–Maruyama for dX = a grad log pi_lambda(t)(X) dt + sqrt(2a) dB:

        X_{k+1} = X_k + a h grad log pi_{lambda(t_k)}(X_k) + sqrt(2 a h) xi_k,   xi_k ~ N(0, I),

    then folded into the box (reflecting/periodic).  Weak order 1: expectations at fixed t have
    an error O(h) (for Gaussian targets the stationary variance is C / (1 - a h / (2C)) in 1D).
    Unweighted; particles are independent.
    """

    name = "ula"
    flows = ("fokker-planck",)
    interacting = False

    def _step(self, state, t, dt, rng, lam_new, fr_weight):
        state.x = self._langevin(state.x, state.lam, dt, rng)


class FisherRaoImportance(ParticleSampler):
    r"""Exact Fisher–Rao importance sampling (Fisher–Rao flow, weight b = ``flow.reaction``).

    The particles are N draws X_i of mu_0 that never move; their log weights are the exact
    density ratio of the FR flow,

        log w_i(t) = E(t) (log pi_0 - log mu_0)(X_i) + J(t) T(X_i),   E = 1 - e^{-bt},

    (the first term vanishes when pi_0 = mu_0; untempered, log w = (1 - e^{-bt})(log pi - log mu_0)).
    No time discretisation for explicit schedules (J in closed form); ``step`` only matters for
    adaptive schedules.  Never resampled.  Particles are independent (self-normalised IS).
    """

    name = "fr-is"
    flows = ("fisher-rao",)
    weighted = True
    interacting = False
    exact_in_time = True

    def _start(self, n, rng, lam0):
        state = super()._start(n, rng, lam0)
        m = self.model
        state.extra["tilt"] = m.tilt(state.x)
        state.extra["gap"] = None if m.reference_is_initial else m.reference(state.x) - m.initial(state.x)
        return state

    def _advance(self, state, t, dt, rng):
        if self.model.schedule.adaptive:      # lambda (and J) integrated step by step
            super()._advance(state, t, dt, rng)
            self._set_weights(state, t + dt)
        # explicit schedules: nothing to integrate, the weights are set exactly in _frame

    def _step(self, state, t, dt, rng, lam_new, fr_weight):
        pass

    def _set_weights(self, state, t):
        log_w = state.J * state.extra["tilt"]
        if state.extra["gap"] is not None:
            log_w = log_w - np.expm1(-self.b * t) * state.extra["gap"]
        state.log_w = log_w

    def _frame(self, state, steps):
        sched = self.model.schedule
        if not sched.adaptive:
            state.lam = sched.value(state.t)
            state.J = sched.fr_weight(0.0, state.t, self.b) if state.t > 0 else 0.0
            self._set_weights(state, state.t)
        return super()._frame(state, steps if sched.adaptive else 0)


class TemperingSMC(ParticleSampler):
    r"""Tempering SMC along the exact Fisher–Rao path (Fisher–Rao flow, weight b).

    The target at time t is rho_t ∝ mu_0^{e^{-bt}} pi_0^{1-e^{-bt}} exp(J(t) T) (= pi_{J(t)} when
    pi_0 = mu_0).  Per step t -> t + h: incremental weights
    log w += (e^{-bt} - e^{-b(t+h)}) (log pi_0 - log mu_0) + (J(t+h) - J(t)) T; when
    ESS < ``threshold`` N, systematic resampling followed by ``moves`` random-walk Metropolis
    steps that leave rho_{t+h} invariant (Gaussian proposal with covariance
    ``scale``^2 2.38^2/d times the ensemble covariance; proposals outside a reflecting box are
    rejected).  No time discretisation error (the weights are exact; the moves are exact MCMC);
    the error is Monte Carlo only (resampling makes the particles dependent: use replicates).
    """

    name = "fr-smc"
    flows = ("fisher-rao",)
    weighted = True
    exact_in_time = True

    def __init__(self, model, *, step, threshold=0.5, moves: int = 5, scale: float = 1.0):
        super().__init__(model, step=step, threshold=threshold)
        if isinstance(moves, bool) or not isinstance(moves, (int, np.integer)) or moves < 0:
            raise InputError(f"moves must be a non-negative integer, got {moves!r}.")
        if not (scale > 0 and math.isfinite(scale)):
            raise InputError(f"The proposal scale must be a positive number, got {scale!r}.")
        self.moves, self.scale = int(moves), float(scale)
        self.accepted = 0
        self.proposed = 0

    def options(self):
        return {**super().options(), "moves": self.moves, "scale": self.scale}

    def _step(self, state, t, dt, rng, lam_new, fr_weight):
        m = self.model
        d0, d1 = math.exp(-self.b * t), math.exp(-self.b * (t + dt))
        dJ = (math.exp(-self.b * dt) * state.J + fr_weight) - state.J
        inc = dJ * m.tilt(state.x)
        if not m.reference_is_initial:
            inc = inc + (d0 - d1) * (m.reference(state.x) - m.initial(state.x))
        state.log_w = state.log_w + inc
        if self._maybe_resample(state, rng) and self.moves:
            self._move(state, rng, d1, math.exp(-self.b * dt) * state.J + fr_weight)

    def _move(self, state, rng, decay, J):
        m = self.model
        x = state.x
        n, d = x.shape
        cov = np.atleast_2d(np.cov(x, rowvar=False))
        cov += 1e-12 * np.eye(d) * max(1.0, float(np.trace(cov)))
        chol = np.linalg.cholesky((self.scale * 2.38) ** 2 / d * cov)
        logp = m.fr_log_density(x, decay, J)
        for _ in range(self.moves):
            prop = x + rng.standard_normal((n, d)) @ chol.T
            if m.periodic:
                prop = m.confine(prop)
                ok = np.ones(n, dtype=bool)
            else:
                ok = m.inside(prop)
            logq = np.full(n, -np.inf)
            logq[ok] = m.fr_log_density(prop[ok], decay, J)
            with np.errstate(invalid="ignore"):
                accept = np.log(rng.random(n)) < logq - logp
            accept &= ok
            x = np.where(accept[:, None], prop, x)
            logp = np.where(accept, logq, logp)
            self.accepted += int(accept.sum())
            self.proposed += n
        state.x = x


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
    flows = ("wfr",)

    def _step(self, state, t, dt, rng, lam_new, fr_weight):
        state.x = self._langevin(state.x, state.lam, dt, rng)
        self._birth_death_step(state, state.lam, dt, rng)


class SMCWFR(ParticleSampler):
    r"""Weighted WFR sampler in the spirit of SMC-WFR (Crucinio & Pathiraja 2025) (WFR flow).

    Per step of length h from weighted particles (X_j, W_j): the ULA move
    X'_i = mu_i + sqrt(2 a h) xi_i, mu_i = X_i + a h grad log pi_{lambda(t)}(X_i) (folded into the
    box); then the exact Fisher–Rao step of length h applied to the weights,

        log W_i += (1 - e^{-bh}) [log pi_lambda(X'_i) - log q(X'_i)],   q = sum_j W_j N(mu_j, 2 a h I),

    where q — the law of the moved ensemble — is evaluated by the binned kernel sum of
    :func:`kde_log_density` (bandwidth sqrt(2 a h), reflected at the walls); lambda is taken at
    the end of the step.  Systematic resampling when ESS < ``threshold`` N.  Weak order 1 (Lie
    splitting and ULA); no free bandwidth.
    """

    name = "smc-wfr"
    flows = ("wfr",)
    weighted = True

    def _step(self, state, t, dt, rng, lam_new, fr_weight):
        m = self.model
        x = state.x
        means = x + (self.a * dt) * m.grad_log_tempered(x, state.lam)
        sd = math.sqrt(2.0 * self.a * dt)
        new = m.confine(means + sd * rng.standard_normal(x.shape))
        g = m.grid
        w = _normalised(state.log_w)
        # kernel centres folded into the box too (the images at the walls are handled by the KDE)
        log_q = kde_log_density(m.confine(means), bandwidth=sd, lower=g.lower, upper=g.upper, weights=w,
                                at=new, boundary=g.boundary)
        state.x = new
        state.log_w = state.log_w - np.max(state.log_w) - np.expm1(-self.b * dt) * (
            m.log_tempered(new, lam_new) - log_q)
        self._maybe_resample(state, rng)


# ============================================================================================
# the user's own sampler
# ============================================================================================

class _Fixed:
    """pi_0 or pi of a case as seen by a user sampler: ``log_density(x, t)`` and
    ``grad_log_density(x, t)`` (``t`` is accepted and ignored: these do not change in time)."""

    def __init__(self, density: LogDensity, name: str):
        self._density = density
        self.name = name

    def log_density(self, x: np.ndarray, t: float | None = None) -> np.ndarray:
        """log of the density (up to a constant) at positions x (n, d)."""
        return self._density(np.asarray(x, dtype=float))

    def grad_log_density(self, x: np.ndarray, t: float | None = None) -> np.ndarray:
        """Gradient of the log density at positions x (n, d), shape (n, d)."""
        return self._density.grad(np.asarray(x, dtype=float))

    def __repr__(self) -> str:
        return f"<{self.name} of the case>"


class Target:
    r"""What a user sampler gets as ``target``: the tempered density pi_lambda(t) ∝ pi_0^{1-lambda} pi^lambda
    of the case, with lambda = lambda(t) from the case's schedule, as functions of position and time.

    ``log_density(x, t)`` (up to a constant) and ``grad_log_density(x, t)`` are those of
    pi_lambda(t) (computed as the built-in samplers compute their drift); ``reference`` (pi_0) and
    ``target`` (pi) offer the same two methods.  Also: ``lam(t)``, ``diffusion`` (a), ``reaction``
    (b), ``dim``, ``lower``/``upper`` and ``boundary`` of the box, ``confine(x)`` (fold positions
    into the box as the built-in samplers do), ``inside(x)`` and ``options`` (``--option KEY=VALUE``).
    For an adaptive schedule lambda is advanced with the ensemble (explicit Euler, as the built-in
    samplers): within a step it is linear between its values at the two ends; outside the current step
    the nearer end is used.  At the two ends of the current step lambda is exactly the value the
    built-in samplers use there.
    """

    def __init__(self, model: ParticleModel, options: Mapping[str, Any] | None = None):
        self._model = model
        self.reference = _Fixed(model.reference, "reference pi_0")
        self.target = _Fixed(model.target, "target pi")
        self.options = dict(options or {})
        self.diffusion = float(model.diffusion)
        self.reaction = float(model.reaction)
        self.dim = int(model.dim)
        self.lower = np.asarray(model.grid.lower, dtype=float)
        self.upper = np.asarray(model.grid.upper, dtype=float)
        self.boundary = model.grid.boundary
        self._window: tuple[float, float, float, float] | None = None    # (t0, t1, lam0, lam1), adaptive only

    def lam(self, t: float) -> float:
        """lambda(t) of the case's schedule."""
        sched = self._model.schedule
        if self._window is not None:             # the ends of the current step: the values the loop uses
            t0, t1, l0, l1 = self._window
            if t == t0:
                return l0
            if t == t1:
                return l1
        if not sched.adaptive:
            return float(sched.value(float(t)))
        if self._window is None:
            return 0.0
        t0, t1, l0, l1 = self._window
        if t1 <= t0 or t <= t0:
            return l0
        if t >= t1:
            return l1
        return l0 + (l1 - l0) * (t - t0) / (t1 - t0)

    def log_density(self, x: np.ndarray, t: float) -> np.ndarray:
        """log pi_lambda(t) at positions x (n, d), up to a constant; shape (n,)."""
        return self._model.log_tempered(np.asarray(x, dtype=float), self.lam(t))

    def grad_log_density(self, x: np.ndarray, t: float) -> np.ndarray:
        """grad log pi_lambda(t) at positions x (n, d); shape (n, d)."""
        return self._model.grad_log_tempered(np.asarray(x, dtype=float), self.lam(t))

    def confine(self, x: np.ndarray) -> np.ndarray:
        """Positions folded into the box: mirrored at reflecting walls, wrapped on a periodic box."""
        return self._model.confine(np.asarray(x, dtype=float))

    def inside(self, x: np.ndarray) -> np.ndarray:
        """Boolean (n,): which positions lie in the box."""
        return self._model.inside(np.asarray(x, dtype=float))


class UserSampler(ParticleSampler):
    r"""A sampler given as a Python function ``fn(x, log_w, t, dt, rng, target) -> (x, log_w)``.

    Per step from t to t + dt, ``fn`` gets the positions x (N, d), the log weights (N,) (zeros for
    an unweighted ensemble), the time, the step, a ``numpy.random.Generator`` and a :class:`Target`;
    it returns the new positions (N, d) (or (N,) in 1D) and log weights (N,), or None for an
    unweighted ensemble.  The ensemble starts from N exact draws of mu_0 in the box, like the
    built-in samplers; the number of particles must stay N.  Anything wrong with what ``fn`` does
    (an exception, a wrong shape, NaN) is an :class:`~gridflow.errors.InputError` naming ``label``.
    Runs the flow of any case; particles are treated as interacting (replicates run one by one).
    """

    name = "user"
    flows = ("fokker-planck", "fisher-rao", "wfr")
    weighted = True

    def __init__(self, model: ParticleModel, *, step: float, fn: Any, label: str | None = None,
                 threshold: float = 0.5, **options: Any) -> None:
        if not callable(fn):
            raise InputError(f"The sampler {label or fn!r} is not callable; pass a function "
                             "NAME(x, log_w, t, dt, rng, target) returning (x, log_w).")
        super().__init__(model, step=step, threshold=threshold)
        self.fn = fn
        self.label = label or getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
        self.target = Target(model, options)
        self.name = self.label  # type: ignore[misc]   # instance attribute: the study reports it

    def options(self) -> dict[str, Any]:
        return {"sampler": self.label, "step": self.step,
                **{k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in self.target.options.items()}}

    def _step(self, state, t, dt, rng, lam_new, fr_weight):
        self.target._window = (t, t + dt, state.lam, lam_new)
        n, d = state.x.shape
        try:
            out = self.fn(state.x.copy(), state.log_w.copy(), float(t), float(dt), rng, self.target)
        except (InputError, NumericalError):
            raise
        except Exception as exc:                    # the user's code failed: one line naming it
            msg = str(exc).splitlines()[0] if str(exc) else ""
            raise InputError(f"The sampler {self.label} raised {type(exc).__name__}"
                             f"{': ' + msg if msg else ''} at t = {t:.6g} (dt = {dt:.6g}); fix the sampler "
                             "(run it on the ensemble x, log_w it received to see the traceback).") from None
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise InputError(f"The sampler {self.label} must return a pair (x, log_w), but returned "
                             f"{type(out).__name__}{f' of length {len(out)}' if isinstance(out, (tuple, list)) else ''}"
                             f" at t = {t:.6g}.")
        x, log_w = out
        try:
            x = np.asarray(x, dtype=float)
        except (TypeError, ValueError):
            raise InputError(f"The sampler {self.label} returned positions that are not an array of numbers "
                             f"at t = {t:.6g}.") from None
        if x.ndim == 1 and d == 1:
            x = x[:, None]
        if x.shape != (n, d):
            raise InputError(f"The sampler {self.label} returned positions of shape {x.shape} at t = {t:.6g}; "
                             f"they must keep the shape ({n}, {d}) of the x it received (N particles stay N).")
        if not np.all(np.isfinite(x)):
            raise InputError(f"The sampler {self.label} returned {int(np.sum(~np.isfinite(x)))} non-finite "
                             f"coordinates at t = {t:.6g}; check its step (dt = {dt:.6g}).")
        if log_w is None:
            log_w = np.zeros(n)
        else:
            try:
                log_w = np.asarray(log_w, dtype=float)
            except (TypeError, ValueError):
                raise InputError(f"The sampler {self.label} returned log weights that are not numbers "
                                 f"at t = {t:.6g}.") from None
            if log_w.shape != (n,):
                raise InputError(f"The sampler {self.label} returned log weights of shape {log_w.shape} at "
                                 f"t = {t:.6g}; they must have shape ({n},) (or be None for equal weights).")
            if np.any(np.isnan(log_w)) or np.any(log_w == np.inf) or not np.any(np.isfinite(log_w)):
                raise InputError(f"The sampler {self.label} returned log weights that are NaN, +inf or all -inf "
                                 f"at t = {t:.6g}.")
        state.x = x
        state.log_w = log_w

    def _frame(self, state, steps):
        frame = super()._frame(state, steps)
        if frame.log_weights is not None and np.ptp(frame.log_weights) == 0.0:
            frame.log_weights = None                        # equal weights: an unweighted ensemble
        return frame


def load_user_sampler(spec: str) -> tuple[Any, str]:
    """The function named by ``"FILE.py:NAME"``: ``(function, label)``.

    The file is imported as a module of its own (not on ``sys.path``); every failure (no such
    file, no ``:NAME``, an error while importing it, no such name, not callable) is an
    :class:`~gridflow.errors.InputError` with a one-line message naming the file.
    """
    import importlib.util
    import traceback

    path_text, sep, name = str(spec).rpartition(":")
    if not sep or not path_text or not name:
        raise InputError(f"--sampler {spec!r}: a user sampler is given as FILE.py:NAME (the file and the name of "
                         "the function in it), e.g. --sampler my_samplers.py:ula.")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise InputError(f"Sampler file {path} does not exist (from --sampler {spec}); check the path.")
    module_name = f"gridflow_user_sampler_{abs(hash(str(path.resolve())))}"
    try:
        mspec = importlib.util.spec_from_file_location(module_name, path)
        if mspec is None or mspec.loader is None:
            raise ImportError("not a Python source file")
        module = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(module)
    except Exception as exc:
        where = ""
        tb = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
        if tb:
            where = f" (line {tb[-1].lineno})"
        elif isinstance(exc, SyntaxError) and exc.lineno:
            where = f" (line {exc.lineno})"
        msg = (str(exc).splitlines() or [""])[0]
        raise InputError(f"Sampler file {path} could not be loaded: {type(exc).__name__}{': ' + msg if msg else ''}"
                         f"{where}.") from None
    fn = getattr(module, name, None)
    if fn is None:
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == module_name)
        raise InputError(f"Sampler file {path} has no {name!r}"
                         + (f"; it defines {', '.join(found)}." if found else "; it defines no function."))
    if not callable(fn):
        raise InputError(f"{name!r} in the sampler file {path} is a {type(fn).__name__}, not a function "
                         "NAME(x, log_w, t, dt, rng, target).")
    return fn, f"{path.name}:{name}"


SAMPLERS: dict[str, type[ParticleSampler]] = {
    cls.name: cls for cls in (TemperedULA, FisherRaoImportance, TemperingSMC, BirthDeath, BirthDeathLangevin, SMCWFR)
}
"""Samplers by name (``--sampler``)."""

#: user sampler files already imported in this process ("FILE.py:NAME" -> (function, label))
_USER_CACHE: dict[str, tuple[Any, str]] = {}

_ALIASES = {"is": "fr-is", "smc": "fr-smc", "birth-death": "bd", "birth-death-langevin": "bdl", "tempered-ula": "ula"}


def make_sampler(name: Any, model: ParticleModel, *, step: float, **options: Any) -> ParticleSampler:
    """The sampler ``name`` (a key of :data:`SAMPLERS` or an alias) for ``model``; ``options`` are
    the sampler's own keyword arguments (``threshold``, ``moves``, ``scale``, ``bandwidth``, ``kde``).

    ``name`` may also be a user sampler: a function ``fn(x, log_w, t, dt, rng, target)`` or a string
    ``"FILE.py:NAME"`` (:class:`UserSampler`; ``options`` then reach it as ``target.options``)."""
    if callable(name) and not isinstance(name, str):
        return UserSampler(model, step=step, fn=name, **options)
    if isinstance(name, str) and (":" in name or name.endswith(".py")) and name not in SAMPLERS \
            and name not in _ALIASES:
        fn, label = _USER_CACHE.get(name) or load_user_sampler(name)
        _USER_CACHE[name] = (fn, label)
        return UserSampler(model, step=step, fn=fn, label=label, **options)
    key = _ALIASES.get(name, name)
    if key not in SAMPLERS:
        raise InputError(f"Unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)} "
                         f"(aliases: {', '.join(f'{a}={b}' for a, b in _ALIASES.items())}).")
    cls = SAMPLERS[key]
    try:
        return cls(model, step=step, **options)
    except TypeError as exc:
        raise InputError(f"Bad option for the sampler {key!r}: {exc}. See the docstring of "
                         f"gridflow.particles.samplers.{cls.__name__} for its options.") from None


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
