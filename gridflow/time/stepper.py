r"""Adaptive time integration of the Fokker–Planck, Fisher–Rao and WFR flows, on log densities.

One step of length dt from t is the Strang splitting

    FR(dt/2) ∘ W(dt) ∘ FR(dt/2),

where FR is the exact Fisher–Rao step in log space (with the exact tempering integral over
its half step) and W integrates d rho/dt = a L(lambda(t + dt/2)) rho with the Scharfetter–
Gummel generator frozen at the step's midpoint.  In 2D, W(dt) is itself the Strang product
W_x(dt/2) W_y(dt) W_x(dt/2) of the axis generators.  Each axis step is MPRK22 (second order,
positive and exactly mass-conserving at any dt), solved on the log density
(:func:`gridflow.flows.fokker_planck.log_axis_step`).  The composition is second order in time; it
keeps the density positive and its mass exact at any step size, and the discrete equilibrium
exactly.  The state is the log density throughout: no step turns a finite log density into
-inf, however far below the floating-point range the density is.  With the log-quadratic flux and
both parts (WFR) the state is the log of the *cell averages*; FR acts exactly on the point values (converted exactly for
Gaussians, :mod:`gridflow.flows.nodal`) and W on the averages with the flux of the point values
(:meth:`Stepper._wasserstein_cell_averages`), and the KL guard compares averages with averages.

Step size control is by step doubling: a step of dt and two of dt/2 are compared; the local
error estimate is ``||rho_half - rho_full||_1 / 3`` (total variation of the cell masses, plus
the difference in lambda for adaptive schedules; :mod:`gridflow.time.doubling`), and the step
is accepted when it is at most ``tolerance``.  With a Fisher–Rao part each cell counts at least
``pi_lambda |log rho_half - log rho_full|``: Fisher–Rao grows a cell far below the target towards
it and multiplies its relative error with it, which the L1 norm of the small density does not
see.  The accepted state is the Richardson extrapolation (4 rho_half - rho_full)/3 formed in log
space (:func:`~gridflow.time.doubling.extrapolate`) when it is positive in every cell, else
rho_half.  For a fixed target the accepted state must not increase the discrete KL
(else rho_half is tried, else the step is rejected and dt halved).  The next dt is
``0.9 dt (tolerance/err)^(1/3)`` (clipped to [dt/5, 5 dt]).  Steps never straddle a save time
or a kink of the schedule.  Every lambda used is checked to lie in [0, 1].

Adaptive schedules (``lambda`` driven by the density) are integrated alongside: within a
step lambda follows the linear predictor lambda + s g0 (capped at 1), and after it
lambda_{n+1} = lambda_n + dt (g0 + g1) / 2 (Heun), second order like the density.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gridflow.analysis.diagnostics import kl_divergence
from gridflow.errors import NumericalError, ScheduleError
from gridflow.flows.fisher_rao import fisher_rao_step
from gridflow.flows.fokker_planck import AxisRates, LogMeanAxis, axis_rates, edge_differences, log_axis_step, log_mean_axis
from gridflow.core.backend import KernelChoice
from gridflow.core.logspace import logsumexp
from gridflow.core.problem import Problem
from gridflow.core.schedule import Adaptive, Schedule, linear_ramp
from gridflow.time.doubling import compare
from gridflow.io.case_schema import DEFAULT_TOLERANCE

def _nodal():
    """:mod:`gridflow.flows.nodal` (cell averages), imported on first use: its kernels are compiled
    (numba), whose start-up a run without cell averages does not pay."""
    from gridflow.flows import nodal

    return nodal


#: lambdas whose W operators are kept (:meth:`Stepper.rates`).  Reuse happens only while lambda is
#: fixed; during a tempering ramp every step brings three new lambdas, and each entry holds four
#: arrays of the grid's size (32 MB at 1024²), so a long cache only costs memory.
RATES_CACHE_SIZE = 3

#: with cell averages and no Fisher-Rao part, D = C^-1 is solved to round-off only where the density is
#: above e^-NEGLIGIBLE_GAP times the largest (:func:`gridflow.flows.nodal.to_points`): there the point
#: values only feed the flux, which such cells do not weigh in (with a Fisher-Rao part every cell is
#: solved to round-off: a far tail can become a mode)
NEGLIGIBLE_GAP = 50.0

#: the two-point flux of the Wasserstein part, by the name ``flow.flux`` takes
FLUX_DESCRIPTIONS = {
    "scharfetter-gummel": "Scharfetter-Gummel two-point flux (2nd order; error constant grows with the cell "
                          "Peclet number h|grad log pi|)",
    "log-mean": "log-mean two-point flux kappa Lambda(rho_i, rho_j)(g_i - g_j), g = log(rho/pi) (2nd order, "
                "error constant set by the density, not the drift)",
    "log-quadratic": "flux kappa m (g_i - g_j), g = log(rho/pi), mobility m = rho at the edge from the quadratic "
                     "through log rho at four cells (2nd order; exact mobility for Gaussians); with a Fisher-Rao part "
                     "or flow.values = \"cell-averages\" the state is cell averages, converted exactly for Gaussians "
                     "to the point values that the flux and the Fisher-Rao step use",
}


def scheme_description(flux: str = "scharfetter-gummel") -> str:
    """One-line description of the discretisation, as stored in a trajectory's ``scheme`` attribute."""
    return (
        f"space: cell-centred finite volumes, {FLUX_DESCRIPTIONS[flux]}; "
        "Fisher-Rao: exact in log space; time: Strang splitting FR(dt/2) W(dt) FR(dt/2), "
        "W by MPRK22 on the log density (positive, conservative, 2nd order; 2D: Strang over axes), "
        "adaptive step doubling on the L1 local error with log-space Richardson extrapolation"
    )


#: the default scheme's description
SCHEME = scheme_description()


@dataclass
class State:
    """Time, log density (not renormalised by the W part) and tempering parameter."""

    t: float
    log_rho: np.ndarray
    lam: float
    #: with the log-quadratic flux, the log point values whose cell averages are ``log_rho`` (if known)
    log_points: np.ndarray | None = None


@dataclass
class StepStats:
    """Step history of an integration."""

    accepted: int = 0
    rejected: int = 0
    rejected_kl: int = 0
    extrapolated: int = 0
    min_dt: float = np.inf
    max_dt: float = 0.0
    steps: list[tuple[float, float, float]] = field(default_factory=list)  # (t, dt, error) accepted

    def record(self, t: float, dt: float, err: float, *, keep: bool) -> None:
        self.accepted += 1
        self.min_dt = min(self.min_dt, dt)
        self.max_dt = max(self.max_dt, dt)
        if keep:
            self.steps.append((t, dt, err))


class Stepper:
    """Adaptive splitting integrator for one :class:`~gridflow.core.problem.Problem`.

    ``tolerance`` bounds the local error per step in total variation (L1 of the density; with a
    Fisher–Rao part each cell counts at least pi_lambda times its relative error);
    ``max_step`` caps the step; ``initial_step`` is the first step tried.
    """

    def __init__(self, problem: Problem, *, tolerance: float = DEFAULT_TOLERANCE, max_step: float | None = None,
                 initial_step: float | None = None, keep_history: bool = False, extrapolate: bool = True) -> None:
        if problem.flow == "path":
            raise ValueError("the path flow prescribes the density; it is not integrated by Stepper")
        self.problem = problem
        self.grid = problem.grid
        self.path = problem.path
        self.schedule: Schedule = problem.schedule
        self.a = problem.diffusion
        self.b = problem.reaction
        self.tolerance = float(tolerance)
        self.max_step = float(max_step) if max_step else np.inf
        self.dt = float(initial_step) if initial_step else float(np.clip(0.1 * self.tolerance ** (1 / 3), 1e-8, 1.0))
        self.stats = StepStats()
        self.keep_history = keep_history
        self.extrapolate = extrapolate
        self._ref_diff = [edge_differences(self.path.log_reference, self.grid, k) for k in range(self.grid.dim)]
        self._tilt_diff = [edge_differences(self.path.tilt, self.grid, k) for k in range(self.grid.dim)]
        self._rates_cache: dict[float, list[AxisRates]] = {}
        #: the state is log cell averages, converted to point values for the Fisher-Rao step and the
        #: flux (gridflow.flows.nodal): with the log-quadratic flux, a Wasserstein and a Fisher-Rao
        #: part (the two must agree on what a grid value is), or when the case asks for it
        #: (flow.values = "cell-averages": Fokker-Planck alone then has exact cell-average fluxes for
        #: Gaussians, not only exact face values, at several times the cost of the plain flux)
        self.cell_averages = problem.flux == "log-quadratic" and self.a > 0.0 and (
            problem.values == "cell-averages" or (problem.values == "auto" and self.b > 0.0))
        self._negligible = NEGLIGIBLE_GAP if self.b == 0.0 else None
        #: numpy or compiled kernels for this run's steps (gridflow.core.backend): numpy has only the
        #: Scharfetter-Gummel step on lines with walls
        self.kernels = KernelChoice(self.grid.size, dim=self.grid.dim, needs_compiled=(
            self.a > 0.0 and (problem.flux != "scharfetter-gummel" or self.cell_averages or self.grid.periodic)))
        #: the last point values D gave and their shifts (nodal.point_shifts), reused by the next W step
        #: that starts from them; and the target's shifts per lambda (2D cell averages)
        self._known_points: tuple[np.ndarray, tuple] | None = None
        self._pi_shifts: dict[float, tuple] = {}

    # ----------------------------------------------------------------------------- pieces
    def initial_state(self) -> State:
        lam0 = 0.0 if self.schedule.adaptive else self.schedule.value(0.0)
        if self.cell_averages:
            points = self.problem.log_initial.copy()
            log_avg = _nodal().to_averages(points, self.grid)
            shift = -logsumexp(log_avg) - np.log(self.grid.cell_volume)
            return State(0.0, log_avg + shift, lam0, points + shift)
        return State(0.0, self.problem.log_initial.copy(), lam0)

    def kl_target(self, lam: float) -> np.ndarray:
        """The log target the discrete KL of the state is measured against: pi_lambda's log point
        values, or with cell averages as the state its log cell averages (of mass one)."""
        log_pi = self.path.log_density(lam)
        if not self.cell_averages:
            return log_pi
        log_avg = _nodal().to_averages(log_pi, self.grid)
        return log_avg - logsumexp(log_avg) - np.log(self.grid.cell_volume)

    def rates(self, lam: float) -> list[AxisRates | LogMeanAxis]:
        """The W operator per axis for pi_lambda (cached): Scharfetter–Gummel rates, or the
        log-mean flux towards log pi_lambda (``problem.flux``)."""
        cached = self._rates_cache.get(lam)
        if cached is None:
            if self.problem.flux in ("log-mean", "log-quadratic"):
                log_pi = self.path.log_reference + lam * self.path.tilt
                mean = 2 if self.problem.flux == "log-quadratic" else 1
                cached = [log_mean_axis(log_pi, self.grid, k, self.a, mean=mean) for k in range(self.grid.dim)]
            else:
                cached = [
                    axis_rates(-(dr + lam * dt_), self.grid, k, self.a)
                    for k, (dr, dt_) in enumerate(zip(self._ref_diff, self._tilt_diff))
                ]
            _remember(self._rates_cache, lam, cached)
        return cached

    def lambda_rate(self, log_rho: np.ndarray, lam: float) -> float:
        """d lambda/dt of an adaptive schedule at (rho, lambda)."""
        sched = self.schedule
        assert isinstance(sched, Adaptive)
        mean_path, var_path = self.path.tilt_moments(self.path.log_density(lam))
        if sched.variance == "density" or sched.correction:
            mean_rho, var_rho = self.path.tilt_moments(log_rho)
        var = var_path if sched.variance == "path" else var_rho
        gap = mean_rho - mean_path if sched.correction else 0.0
        return sched.rate(lam, var=var, mean_gap=gap)

    def _axis_step(self, rates: AxisRates | LogMeanAxis, log_rho: np.ndarray, tau: float, *,
                   order: int = 2) -> np.ndarray:
        """One axis step, by the implementation the run has chosen so far (:attr:`kernels`)."""
        out = log_axis_step(rates, log_rho, tau, order=order, compiled_kernels=self.kernels.compiled)
        self.kernels.count()
        return out

    def _wasserstein(self, log_rho: np.ndarray, lam: float, dt: float) -> np.ndarray:
        rates = self.rates(lam)
        if self.grid.dim == 1:
            return self._axis_step(rates[0], log_rho, dt)
        log_rho = self._axis_step(rates[0], log_rho, 0.5 * dt)
        log_rho = self._axis_step(rates[1], log_rho, dt)
        return self._axis_step(rates[0], log_rho, 0.5 * dt)

    def _fisher_rao(self, log_rho: np.ndarray, sched: Schedule, t: float, dt: float) -> np.ndarray:
        return fisher_rao_step(log_rho, path=self.path, schedule=sched, t=t, dt=dt, reaction=self.b)

    def step(self, state: State, dt: float) -> State:
        """One splitting step of length dt (no error control)."""
        lr = state.log_rho
        if self.schedule.adaptive:
            g0 = self.lambda_rate(lr, state.lam)
            lam_pred = min(1.0, state.lam + dt * g0)
            sched: Schedule = linear_ramp(state.lam, lam_pred, dt)
            t0 = 0.0
        else:
            sched, t0 = self.schedule, state.t
        points = None
        if self.a == 0.0:
            lr = self._fisher_rao(lr, sched, t0, dt)
        elif self.cell_averages:
            lam_mid = _checked_lambda(sched.value(t0 + 0.5 * dt), state.t + 0.5 * dt)
            lr, points = self._step_cell_averages(state, sched, t0, dt, lam_mid)
        else:
            if self.b > 0.0:
                lr = self._fisher_rao(lr, sched, t0, 0.5 * dt)
            lr = self._wasserstein(lr, _checked_lambda(sched.value(t0 + 0.5 * dt), state.t + 0.5 * dt), dt)
            if self.b > 0.0:
                lr = self._fisher_rao(lr, sched, t0 + 0.5 * dt, 0.5 * dt)
        if self.schedule.adaptive:
            g1 = self.lambda_rate(lr, lam_pred)
            lam = min(1.0, state.lam + 0.5 * dt * (g0 + g1))
            if not lam >= 0.0:
                raise NumericalError(f"The adaptive schedule gave lambda = {lam!r} at t = {state.t + dt:.6g}.")
        else:
            lam = sched.value(t0 + dt)
        return State(state.t + dt, lr, lam, points)

    # ----------------------------------------------------------------------------- cell averages
    def _fisher_rao_points(self, log_avg: np.ndarray, points: np.ndarray, sched: Schedule, t: float,
                           dt: float) -> tuple[np.ndarray, np.ndarray]:
        """The exact Fisher-Rao step on the point values, back to cell averages of the mass of ``log_avg``."""
        points = self._fisher_rao(points, sched, t, dt)
        new = _nodal().to_averages(points, self.grid)
        shift = logsumexp(log_avg) - logsumexp(new)
        return new + shift, points + shift

    def _step_cell_averages(self, state: State, sched: Schedule, t0: float, dt: float,
                            lam: float) -> tuple[np.ndarray, np.ndarray]:
        """FR(dt/2) W(dt) FR(dt/2) with cell averages as the state: FR exact on the point values,
        W finite volumes on the averages with the flux from the point values (gridflow.flows.nodal)."""
        log_avg = state.log_rho
        points = (state.log_points if state.log_points is not None
                  else _nodal().to_points(log_avg, self.grid, negligible_below=self._negligible))
        if self.b > 0.0:
            log_avg, points = self._fisher_rao_points(log_avg, points, sched, t0, 0.5 * dt)
        new = self._wasserstein_cell_averages(log_avg, points, lam, dt)
        points = self._points(new, guess=points + (new - log_avg))
        log_avg = new
        if self.b > 0.0:
            log_avg, points = self._fisher_rao_points(log_avg, points, sched, t0 + 0.5 * dt, 0.5 * dt)
        return log_avg, points

    def _points(self, log_avg: np.ndarray, *, guess: np.ndarray) -> np.ndarray:
        """D(log_avg) from ``guess``, remembering its shifts for the W step that starts from it."""
        if self.grid.dim == 1:
            return _nodal().to_points(log_avg, self.grid, guess=guess, negligible_below=self._negligible)
        points, known = _nodal().to_points(log_avg, self.grid, guess=guess, negligible_below=self._negligible,
                                  with_shifts=True)
        self._known_points = (points, known)
        return points

    def _wasserstein_cell_averages(self, log_avg: np.ndarray, points: np.ndarray, lam: float,
                                   dt: float) -> np.ndarray:
        """W(dt) on the log cell averages (2D: Strang over the axes).

        Along axis k the flux is the log-quadratic one of the values that are point values along k
        and averages across it, l - kappa_k, towards the target's such values
        (:func:`~gridflow.flows.nodal.transverse_targets`): exact edge fluxes for Gaussians.  kappa_k (log average minus
        log point value along k, of ``points``) is frozen within the step, so the generator acting on the
        cell averages is the log-quadratic one with column weights e^{-kappa_k}: positive, conservative,
        and at rest exactly when the point values are log pi + const.  Each axis step is MPRK22 with
        the rates frozen at the midpoint predicted by an implicit Euler half step (second order).
        """
        log_pi = self.path.log_reference + lam * self.path.tilt
        if self.grid.dim == 1:
            with np.errstate(invalid="ignore"):
                shifts, targets = [np.where(np.isfinite(points), log_avg - points, 0.0)], [log_pi]
        else:
            known = self._known_points
            known = known[1] if known is not None and known[0] is points else _nodal().point_shifts(points, self.grid)
            pi_known = self._pi_shifts.get(lam)
            if pi_known is None:
                pi_known = _remember(self._pi_shifts, lam, _nodal().point_shifts(log_pi, self.grid))
            shifts = known[0]
            targets = _nodal().transverse_targets(points, log_pi, self.grid, lhat_shifts=known, pi_shifts=pi_known)
        periodic, kap = self.grid.periodic, [self.a / h ** 2 for h in self.grid.spacing]

        def axis_step(k: int, values: np.ndarray, tau: float) -> np.ndarray:
            target = targets[k]

            def rates(at: np.ndarray) -> AxisRates:
                up, down = _nodal().log_quadratic_rates(at - shifts[k], target, k, kap[k], periodic, -shifts[k])
                return AxisRates(axis=k, up=up, down=down, periodic=periodic)

            mid = self._axis_step(rates(values), values, 0.5 * tau, order=1)
            return self._axis_step(rates(mid), values, tau, order=2)

        if self.grid.dim == 1:
            return axis_step(0, log_avg, dt)
        log_avg = axis_step(0, log_avg, 0.5 * dt)
        log_avg = axis_step(1, log_avg, dt)
        return axis_step(0, log_avg, 0.5 * dt)

    def _target_fixed(self, state: State) -> bool:
        if self.schedule.adaptive:
            return state.lam >= 1.0
        return self.schedule.is_fixed_after(state.t)

    # ----------------------------------------------------------------------------- control
    def advance(self, state: State, t_end: float, *, on_step: Callable[[State], None] | None = None) -> State:
        """Integrate from ``state`` to exactly ``t_end`` with adaptive steps."""
        vol = self.grid.cell_volume
        eps = 1e-12 * max(1.0, abs(t_end))
        kl_before: tuple[State, float] | None = None  # KL of the current state, kept across rejected tries
        while t_end - state.t > eps:
            dt = min(self.dt, self.max_step, t_end - state.t)
            clipped = dt < self.dt
            for bp in self.schedule.breakpoints:
                if state.t + eps < bp < state.t + dt - eps:
                    dt, clipped = bp - state.t, True
            if t_end - (state.t + dt) < eps:
                dt = t_end - state.t
            full = self.step(state, dt)
            half = self.step(self.step(state, 0.5 * dt), 0.5 * dt)
            # with a Fisher-Rao part a cell's relative error counts with the mass pi_lambda gives it (doubling.local_error)
            weight = self.path.log_density(state.lam) if self.b > 0.0 else None
            difference, ex = compare(half.log_rho, full.log_rho, vol, weight, compiled_kernels=self.kernels.compiled)
            err = (difference + abs(half.lam - full.lam)) / 3.0
            ok = bool(np.isfinite(err)) and err <= self.tolerance
            accepted = None
            if ok:
                candidates = [half.log_rho]
                if self.extrapolate and ex is not None:
                    candidates.insert(0, ex)
                kl_new = None
                if self._target_fixed(state):
                    # the KL guard judges exactly the state that would be accepted: the first candidate
                    # that does not increase the discrete KL (computed in order, only as far as needed)
                    log_pi = self.kl_target(state.lam)
                    if kl_before is None or kl_before[0] is not state:
                        kl_before = (state, kl_divergence(state.log_rho, log_pi, self.grid, compiled_kernels=self.kernels.compiled))
                    kl0 = kl_before[1]
                    slack = 1e-13 * max(1.0, abs(kl0))
                    passing = None
                    for c in candidates:
                        kl_c = kl_divergence(c, log_pi, self.grid, compiled_kernels=self.kernels.compiled)
                        if kl_c <= kl0 + slack:
                            passing, kl_new = c, kl_c
                            break
                    candidates = [] if passing is None else [passing]
                    if not candidates:
                        self.stats.rejected_kl += 1
                accepted = candidates[0] if candidates else None
                ok = accepted is not None
            if ok:
                t_new = t_end if t_end - (state.t + dt) < eps else state.t + dt
                if accepted is not half.log_rho:
                    self.stats.extrapolated += 1
                points = half.log_points
                if points is not None and accepted is not half.log_rho:
                    points = self._points(accepted, guess=points + (accepted - half.log_rho))
                lam_old = state.lam
                state = State(t_new, accepted, half.lam, points)
                if kl_new is not None and state.lam == lam_old:
                    kl_before = (state, kl_new)     # the next step's guard starts from this KL
                self.stats.record(state.t, dt, float(err), keep=self.keep_history)
                if on_step is not None:
                    on_step(state)
            else:
                self.stats.rejected += 1
            if not np.isfinite(err):
                factor = 0.2
            elif err == 0.0:
                factor = 5.0
            else:
                factor = float(np.clip(0.9 * (self.tolerance / err) ** (1.0 / 3.0), 0.2, 5.0))
            if not ok:
                factor = min(factor, 0.5)
            new_dt = dt * factor
            self.dt = max(new_dt, self.dt) if (ok and clipped) else new_dt
            if self.dt < 1e-14 * max(1.0, t_end):
                raise NumericalError(
                    f"The time step fell below {self.dt:.3g} at t = {state.t:.6g} without meeting the "
                    f"tolerance {self.tolerance:g}: the problem is too stiff or ill-posed at this "
                    f"resolution. Check the densities, or loosen [time] tolerance."
                )
        return state


def _remember(cache: dict, key: float, value):
    """Put ``value`` into a per-lambda cache of at most :data:`RATES_CACHE_SIZE` entries (the oldest goes)."""
    if len(cache) >= RATES_CACHE_SIZE:
        del cache[next(iter(cache))]
    cache[key] = value
    return value


def _checked_lambda(lam: float, t: float) -> float:
    """``lam`` if it lies in [0, 1]; else :class:`~gridflow.errors.ScheduleError`."""
    if not 0.0 <= lam <= 1.0:
        raise ScheduleError(f"The tempering schedule gives lambda({t:.10g}) = {float(lam)!r}, outside [0, 1]. "
                            "Use a schedule with values in [0, 1].")
    return lam
