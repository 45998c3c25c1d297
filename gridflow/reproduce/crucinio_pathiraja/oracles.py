"""Independent references of the Crucinio & Pathiraja reproduction: exact Gaussian KL curves and rates, exact Fisher–Rao crossing times
and the ODE oracle of the adaptive schedules."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy import optimize, special
from scipy.integrate import solve_ivp

from gridflow.core.grid import Grid
from gridflow.reproduce.crucinio_pathiraja.cases import GAUSS, HORIZON_B, M_C, SCHEDULES_B
from gridflow.reproduce.crucinio_pathiraja.mmd import GridMMD, THRESHOLD, masses


# ============================================================================ exact oracles


def gaussian_exact_kl(target: str, flow: str, tempered: bool, times: np.ndarray) -> np.ndarray:
    """KL(rho_t || pi) of the Gaussian moment ODE (:func:`gridflow.analysis.exact.gaussian_flow_moments`; DOP853, rtol 1e-12) at ``times``."""
    from gridflow.analysis.exact import gaussian_flow_moments, gaussian_kl, linear_schedule

    _, mean, var, _ = GAUSS[target]
    a = 1.0 if flow in ("W", "WFR") else 0.0
    b = 1.0 if flow in ("FR", "WFR") else 0.0
    m, c = gaussian_flow_moments(times, mean0=[0.0], cov0=[[1.0]], target_mean=[mean], target_cov=[[var]],
                                 schedule=linear_schedule(10.0) if tempered else None, diffusion=a, reaction=b,
                                 method="DOP853")
    return np.asarray(gaussian_kl(m, c, [mean], [[var]]), float)


def asymptotic_kl_rate(flow: str, var: float) -> float:
    """Decay rate of KL once lambda = 1 (Gaussian target of variance ``var``, unit weights).

    Linearising the moment ODE at (m_pi, C_pi): the mean relaxes at a/C_pi + b, the variance at
    2a/C_pi + b; KL is quadratic in both deviations, so it decays at twice the slower rate.
    """
    a = 1.0 if flow in ("W", "WFR") else 0.0
    b = 1.0 if flow in ("FR", "WFR") else 0.0
    return 2.0 * min(a / var + b, 2.0 * a / var + b)


def fr_exponent(sched: str, t):
    """J(t) = ∫_0^t e^{-(t-s)} lambda(s) ds: tempered FR from rho_0 = pi_0 is exactly pi_J (docs/numerics.md, Fisher–Rao)."""
    from gridflow.analysis.exact import fisher_rao_exponent_exponential, fisher_rao_exponent_linear

    t = np.asarray(t, float)
    if sched == "plain":
        return -np.expm1(-t)
    if sched == "linear":
        return fisher_rao_exponent_linear(t, duration=60.0)
    if sched == "exponential":
        return fisher_rao_exponent_exponential(t, rate=1.0 / 30.0)
    if sched == "hyperbolic":  # lambda = 1 - 0.3/(0.6 + s):  ∫ e^{-(t-s)} 0.3/(0.6+s) ds = 0.3 e^{-(t+0.6)} [Ei(t+0.6) - Ei(0.6)]
        x = t + 0.6
        return -np.expm1(-t) - 0.3 * np.exp(-x) * (special.expi(x) - special.expi(0.6))
    raise ValueError(sched)


def fr_exact_times(grid: Grid, log_reference: np.ndarray, log_target: np.ndarray,
                   thresholds: Iterable[float] = (THRESHOLD,)) -> dict:
    """Exact FR hitting times: rho_t = pi_{J(t)}, so MMD^2(rho_t, pi) = M(J(t)); solve M(J*) = threshold
    on the grid (Brent), then J(t*) = J* for each schedule (Brent on the closed forms above)."""
    mmd = GridMMD(grid)
    q = masses(log_target, grid)
    tilt = log_target - log_reference
    from gridflow.core.distributions import normalise

    def m_of(j: float) -> float:
        return mmd.mmd2(masses(normalise(log_reference + j * tilt, grid), grid), q)

    js = np.linspace(0.0, 1.0, 201)
    curve = np.array([m_of(j) for j in js])
    out = {"monotone": bool(np.all(np.diff(curve) <= 1e-15)), "mmd2_at_J0": float(curve[0])}
    for thr in thresholds:
        if curve[0] < thr:
            jstar = 0.0
        else:
            jstar = optimize.brentq(lambda j: m_of(j) - thr, 0.0, 1.0, xtol=1e-14, rtol=1e-14)
        times = {}
        for sched in SCHEDULES_B:
            if jstar == 0.0:
                times[sched] = 0.0
            elif _scalar(fr_exponent(sched, HORIZON_B)) < jstar:
                times[sched] = math.inf
            else:
                times[sched] = optimize.brentq(lambda t: _scalar(fr_exponent(sched, t)) - jstar, 0.0, HORIZON_B,
                                               xtol=1e-12, rtol=1e-14)
        out[thr] = {"J_star": float(jstar), "times": times}
    return out


def _scalar(x) -> float:
    return float(np.asarray(x, float).ravel()[0])


def bimodal_tilt(m: float, x: np.ndarray) -> np.ndarray:
    """T = log pi - log pi_0 for pi = 1/2 N(0,1) + 1/2 N(m,1), pi_0 = N(0,1): log(1/2) + log(1 + e^{m x - m^2/2})."""
    return np.logaddexp(0.0, m * x - 0.5 * m * m) - math.log(2.0)


class TiltMoments:
    """Mean and variance of T under pi_s ∝ N(0,1) e^{s T} (1D bimodal), by the midpoint rule on a fine
    grid (h = 0.002 over [-12, m + 12]: spectrally accurate for these smooth, Gaussian-tailed integrands).
    Independent of gridflow's own code."""

    def __init__(self, m: float) -> None:
        self.x = np.arange(-12.0, m + 12.0, 0.002) + 0.001
        self.T = bimodal_tilt(m, self.x)
        self.logphi = -0.5 * self.x**2

    def __call__(self, s: float) -> tuple[float, float]:
        lw = self.logphi + s * self.T
        with np.errstate(under="ignore"):
            w = np.exp(lw - lw.max())
        w /= w.sum()
        mean = float(w @ self.T)
        return mean, float(w @ (self.T - mean) ** 2)


def adaptive_oracle(rule: str, variance: str, times: np.ndarray, m: float = M_C,
                    with_hit: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """lambda(t) and J(t) of an adaptive rule driving the tempered FR flow (b = 1, pi_0 = rho_0).

    rho_t = pi_J with J' = lambda - J, and lambda' = g(lambda, Var T) with the variance under rho_t = pi_J
    (``variance="density"``) or under pi_lambda (``"path"``); g = Var^-1/2 (ess), 1/((1-lambda) Var)
    (constant-rate; integrated as s = (1-lambda)^2, s' = -2/Var) or (1-lambda) Var (gradient-flow).
    lambda stays at 1 once it gets there.  solve_ivp (DOP853, rtol 1e-11).
    """
    mom = TiltMoments(m)

    def var_for(lam: float, j: float) -> float:
        return mom(min(max(j if variance == "density" else lam, 0.0), 1.0))[1]

    def lam_of(y0: float) -> float:
        return 1.0 - math.sqrt(max(y0, 0.0)) if rule == "constant-rate" else y0

    def rhs(t, y):
        lam, j = lam_of(y[0]), y[1]
        v = var_for(lam, j)
        if rule == "ess":
            dy = v ** -0.5
        elif rule == "gradient-flow":
            dy = (1.0 - lam) * v
        else:
            dy = -2.0 / v
        return [dy, lam - j]

    def hit(t, y):
        return (y[0] - 1.0) if rule != "constant-rate" else y[0]

    hit.terminal = True
    y0 = [1.0 if rule == "constant-rate" else 0.0, 0.0]
    tmax = float(np.max(times))
    sol = solve_ivp(rhs, (0.0, tmax), y0, method="DOP853", rtol=1e-11, atol=1e-13, dense_output=True, events=hit)
    t_hit = float(sol.t_events[0][0]) if len(sol.t_events[0]) else math.inf
    times = np.asarray(times, float)
    before = times <= t_hit
    lam = np.ones(len(times))
    jj = np.empty(len(times))
    if before.any():
        y = sol.sol(times[before])
        y0 = y[0]
        lam[before] = np.minimum(1.0, 1.0 - np.sqrt(np.maximum(y0, 0.0)) if rule == "constant-rate" else y0)
        jj[before] = y[1]
    if (~before).any():
        j_hit = float(sol.sol(t_hit)[1])
        jj[~before] = 1.0 - (1.0 - j_hit) * np.exp(-(times[~before] - t_hit))
    if with_hit:
        return lam, jj, t_hit
    return lam, jj
