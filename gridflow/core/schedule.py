r"""Tempering schedules lambda(t) for the geometric path pi_lambda ∝ pi_0^(1-lambda) pi^lambda.

Explicit schedules are functions of time.  Besides ``value(t)`` each gives the
exponentially weighted integral the exact Fisher–Rao step needs (docs/numerics.md, Fisher–Rao),

.. math::  w(t, \Delta t; b) = \int_0^{\Delta t} b\, e^{-b(\Delta t - s)} \lambda(t + s)\, ds,

in closed form.  Adaptive schedules (docs/numerics.md, adaptive schedules) are driven by the current density and
are integrated as an ODE by the stepper; they only provide the rate ``d lambda / dt``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from gridflow.errors import ScheduleError


def _exp_window(b: float, s0: float, s1: float, dt: float) -> tuple[float, float]:
    """Return ``(I0, I1)`` with I0 = ∫_{s0}^{s1} b e^{-b(dt-s)} ds, I1 = ∫_{s0}^{s1} b e^{-b(dt-s)} (s-s0) ds."""
    width = s1 - s0
    if b == 0.0:
        return 0.0, 0.0
    e1 = np.exp(-b * (dt - s1))
    em = np.expm1(-b * width)  # e^{-b width} - 1, accurate for small widths
    i0 = -e1 * em
    i1 = e1 * (width + em / b)
    return float(i0), float(i1)


class Schedule:
    """Base class: an explicit schedule lambda(t) in [0, 1]."""

    #: Times where lambda(t) is not smooth (steps should not straddle them for accuracy).
    breakpoints: tuple[float, ...] = ()
    adaptive = False

    def value(self, t: float) -> float:
        raise NotImplementedError

    def fr_weight(self, t: float, dt: float, b: float) -> float:
        """∫_0^dt b e^{-b(dt-s)} lambda(t+s) ds, exactly."""
        raise NotImplementedError

    def derivative(self, t: float) -> float:
        """d lambda/dt at t (the left derivative at a kink, the right one at t = 0)."""
        raise NotImplementedError

    def is_fixed_after(self, t: float) -> bool:
        """True when lambda is constant on [t, ∞) (the target no longer moves)."""
        return False


@dataclass(frozen=True)
class Untempered(Schedule):
    """lambda = 1 at all times: the plain flow towards pi."""

    def value(self, t: float) -> float:
        return 1.0

    def fr_weight(self, t: float, dt: float, b: float) -> float:
        return float(-np.expm1(-b * dt))

    def derivative(self, t: float) -> float:
        return 0.0

    def is_fixed_after(self, t: float) -> bool:
        return True


@dataclass(frozen=True)
class PiecewiseLinear(Schedule):
    """lambda interpolates ``values`` at ``times`` linearly; held constant outside.

    Covers the ``constant`` (one knot), ``linear`` (knots (0, 0) and (duration, 1))
    and ``table`` schedule kinds.
    """

    times: tuple[float, ...]
    values: tuple[float, ...]
    breakpoints: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "breakpoints", tuple(float(t) for t in self.times))

    def value(self, t: float) -> float:
        return float(np.interp(t, self.times, self.values))

    def fr_weight(self, t: float, dt: float, b: float) -> float:
        knots = [0.0] + [tk - t for tk in self.times if 0.0 < tk - t < dt] + [dt]
        total = 0.0
        for s0, s1 in zip(knots[:-1], knots[1:]):
            lam0 = self.value(t + s0)
            slope = (self.value(t + s1) - lam0) / (s1 - s0) if s1 > s0 else 0.0
            i0, i1 = _exp_window(b, s0, s1, dt)
            total += lam0 * i0 + slope * i1
        return total

    def derivative(self, t: float) -> float:
        times, values = self.times, self.values
        if len(times) < 2 or t > times[-1] or t < times[0]:
            return 0.0
        k = int(np.searchsorted(times, t, side="left"))   # segment (k-1, k) ends at or after t
        k = min(max(k, 1), len(times) - 1)
        return (values[k] - values[k - 1]) / (times[k] - times[k - 1])

    def is_fixed_after(self, t: float) -> bool:
        return t >= self.times[-1]


@dataclass(frozen=True)
class Exponential(Schedule):
    """lambda(t) = 1 - exp(-rate t)."""

    rate: float

    def value(self, t: float) -> float:
        return float(-np.expm1(-self.rate * t))

    def fr_weight(self, t: float, dt: float, b: float) -> float:
        # ∫ b e^{-b(dt-s)} (1 - e^{-r(t+s)}) ds = (1 - e^{-b dt}) - b e^{-rt - b dt} ∫_0^dt e^{(b-r)s} ds
        c = b - self.rate
        inner = dt if c == 0.0 else float(np.expm1(c * dt) / c)
        return float(-np.expm1(-b * dt) - b * np.exp(-self.rate * t - b * dt) * inner)

    def derivative(self, t: float) -> float:
        return float(self.rate * np.exp(-self.rate * t))


_GL_X, _GL_W = np.polynomial.legendre.leggauss(20)


class ExpressionSchedule(Schedule):
    """lambda(t) given by a formula in ``t`` (parsed by :mod:`gridflow.io.expression`, never eval'd).

    Meant for smooth schedules such as ``1 - 1/(2 + t/0.3)``.  The Fisher–Rao weight integral
    is computed by 20-point Gauss–Legendre quadrature checked against its two-panel version
    (agreement to 1e-14), falling back to adaptive quadrature (``scipy.integrate.quad``,
    absolute error <= 1e-14) — exact to round-off for smooth lambda; the derivative (used by the ``path``
    flow) by fourth-order differences with step h = 1e-3 max(1, t) (central; one-sided for
    t < 2h), error ~1e-12 for smooth lambda.  A formula with kinks is
    integrated correctly but steps may straddle them: use a ``table`` schedule for those.
    """

    def __init__(self, formula: str) -> None:
        from gridflow.io.expression import parse_expression

        self.formula = formula
        self._expr = parse_expression(formula, variables=("t",))

    def __repr__(self) -> str:
        return f"ExpressionSchedule({self.formula!r})"

    def values(self, t: np.ndarray, *, checked: bool = True) -> np.ndarray:
        """lambda at an array of times; :class:`ScheduleError` if one is not finite or outside [0, 1].

        Every value the solver uses passes this check (each step, each quadrature node);
        ``checked=False`` returns the raw values.
        """
        t = np.asarray(t, dtype=float)
        with np.errstate(all="ignore"):
            lam = np.broadcast_to(np.asarray(self._expr.evaluate(t=t), dtype=float), t.shape).copy()
        if checked:
            bad = ~(np.isfinite(lam) & (lam >= 0.0) & (lam <= 1.0))
            if bad.any():
                k = int(np.argmax(bad.ravel()))
                raise ScheduleError(
                    f"The tempering schedule lambda(t) = {self.formula!r} gives lambda({t.ravel()[k]:.10g}) = "
                    f"{float(lam.ravel()[k])!r}, outside [0, 1]. Write a formula that stays in [0, 1] for every t in "
                    f"[0, time.end], e.g. \"1 - exp(-t/5)\" or \"minimum(t/5, 1)\".")
        return lam

    def value(self, t: float) -> float:
        return float(self.values(np.array([float(t)]))[0])

    def fr_weight(self, t: float, dt: float, b: float) -> float:
        if dt <= 0.0 or b == 0.0:
            return 0.0
        # 20-point Gauss–Legendre on [0, dt] and on its two halves, in one vectorised evaluation;
        # they agree to round-off for a lambda that is smooth on the step (the usual case), else
        # adaptive quadrature decides.
        half = 0.5 * dt
        s = np.concatenate([half * (1.0 + _GL_X), 0.5 * half * (1.0 + _GL_X), half + 0.5 * half * (1.0 + _GL_X)])
        f = b * np.exp(-b * (dt - s)) * self.values(t + s)
        n = len(_GL_X)
        one = half * float(_GL_W @ f[:n])
        two = 0.5 * half * float(_GL_W @ f[n:2 * n] + _GL_W @ f[2 * n:])
        if abs(one - two) <= 1e-14:
            return two
        from scipy.integrate import quad

        result, _ = quad(lambda u: b * np.exp(-b * (dt - u)) * self.value(t + u), 0.0, dt,
                         epsabs=1e-14, epsrel=1e-13, limit=200)
        return float(result)

    def derivative(self, t: float) -> float:
        h = 1e-3 * max(1.0, abs(t))
        if t >= 2 * h:
            f = self.values(t + h * np.array([-2.0, -1.0, 1.0, 2.0]))
            return float((f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h))
        f = self.values(t + h * np.arange(5.0))
        return float((-25 * f[0] + 48 * f[1] - 36 * f[2] + 16 * f[3] - 3 * f[4]) / (12 * h))


ADAPTIVE_RULES = ("ess", "constant-rate", "gradient-flow")


@dataclass(frozen=True)
class Adaptive(Schedule):
    """lambda driven by the current density (docs/numerics.md, adaptive schedules), lambda(0) = 0, capped at 1.

    ``rule`` gives d lambda/dt from the variance ``v`` of T = log pi - log pi_0:
    ``ess``: v^{-1/2}; ``constant-rate``: 1/((1-lambda) v); ``gradient-flow``: (1-lambda) v;
    each multiplied by ``scale``.  ``variance="path"`` takes v under pi_lambda (exact on
    the grid), ``"density"`` under rho_t (what particles estimate).  ``correction`` adds
    E_rho T - E_{pi_lambda} T (the deterministic variant).
    """

    rule: str
    variance: str = "path"
    scale: float = 1.0
    correction: bool = False
    adaptive = True

    def rate(self, lam: float, *, var: float, mean_gap: float = 0.0) -> float:
        """d lambda/dt at ``lam`` given Var(T) and E_rho T - E_{pi_lambda} T."""
        if lam >= 1.0:
            return 0.0
        var = max(var, 1e-300)
        if self.rule == "ess":
            r = var**-0.5
        elif self.rule == "constant-rate":
            r = 1.0 / ((1.0 - lam) * var)
        else:
            r = (1.0 - lam) * var
        r *= self.scale
        if self.correction:
            r += mean_gap
        return max(float(r), 0.0)

    def value(self, t: float) -> float:  # pragma: no cover - adaptive lambda lives in the stepper
        raise TypeError("an adaptive schedule has no a-priori value; the stepper integrates it")

    def fr_weight(self, t: float, dt: float, b: float) -> float:  # pragma: no cover
        raise TypeError("an adaptive schedule is integrated by the stepper")


def linear_ramp(lam0: float, lam1: float, dt: float) -> PiecewiseLinear:
    """The schedule that goes linearly from lam0 at t=0 to lam1 at t=dt (used inside a step)."""
    return PiecewiseLinear(times=(0.0, dt), values=(lam0, lam1))


def schedule_from_table(table: Mapping | None) -> Schedule:
    """Build a schedule from a resolved ``[tempering] schedule`` table (None: untempered)."""
    if table is None:
        return Untempered()
    kind = table["kind"]
    if kind == "constant":
        return PiecewiseLinear(times=(0.0,), values=(float(table["value"]),))
    if kind == "linear":
        return PiecewiseLinear(times=(0.0, float(table["duration"])), values=(0.0, 1.0))
    if kind == "exponential":
        return Exponential(rate=float(table["rate"]))
    if kind == "table":
        return PiecewiseLinear(times=tuple(map(float, table["times"])), values=tuple(map(float, table["values"])))
    if kind == "expression":
        return ExpressionSchedule(str(table["lambda"]))
    if kind == "adaptive":
        return Adaptive(
            rule=table["rule"],
            variance=table.get("variance", "path"),
            scale=float(table.get("scale", 1.0)),
            correction=bool(table.get("correction", False)),
        )
    raise ValueError(f"unknown schedule kind {kind!r}")

