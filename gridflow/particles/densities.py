"""Log densities of a case's distributions at arbitrary points, with gradients (docs/validation.md).

``gaussian`` and ``mixture`` tables are exact (closed-form gradients), ``expression`` formulas are
evaluated exactly with central-difference gradients, ``file`` densities are interpolated
multilinearly between cell-centre values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from gridflow.core.grid import Grid
from gridflow.errors import InputError

__all__ = ["LogDensity", "log_density_function"]


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

