"""The sampler base class (time loop, tempering parameter, frames) and the registry of samplers by name."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from gridflow.core.logspace import logsumexp
from gridflow.core.schedule import Adaptive, linear_ramp
from gridflow.errors import InputError
from gridflow.particles.ensemble import normalised_weights, effective_sample_size, systematic_resample
from gridflow.particles.model import ParticleModel

__all__ = ["ParticleFrame", "ParticleSampler", "SAMPLERS", "ALIASES"]

SAMPLERS: dict[str, type["ParticleSampler"]] = {}
"""Built-in samplers by name (``--sampler``), filled as their classes are defined (:class:`ParticleSampler`);
in the order their modules are first imported (:mod:`gridflow.particles.samplers` imports them in the documented order)."""
ALIASES: dict[str, str] = {}
"""Other names of the built-in samplers (alias -> name)."""


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
        return None if self.log_weights is None else normalised_weights(self.log_weights)


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
    (False: particles are independent, so replicates may be batched), optionally ``aliases``, and
    implement :meth:`_step` (and optionally :meth:`_start`).  A subclass that sets its own ``name``
    is registered in :data:`SAMPLERS` under it (and in :data:`ALIASES` under its aliases), unless
    defined with ``register=False`` (``class S(ParticleSampler, register=False)``).
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    flows: ClassVar[tuple[str, ...]] = ()
    weighted: ClassVar[bool] = False
    interacting: ClassVar[bool] = True
    exact_in_time: ClassVar[bool] = False

    def __init_subclass__(cls, *, register: bool = True, **kwargs: Any) -> None:
        """Register a sampler class that sets its own ``name`` (and its ``aliases``) by name."""
        super().__init_subclass__(**kwargs)
        if not register or "name" not in cls.__dict__:
            return
        if cls.name in SAMPLERS or cls.name in ALIASES:
            raise ValueError(f"A sampler named {cls.name!r} is already registered ({SAMPLERS.get(cls.name)}).")
        SAMPLERS[cls.name] = cls
        for alias in cls.aliases:
            ALIASES[alias] = cls.name

    def __init__(self, model: ParticleModel, *, step: float, threshold: float = 0.5) -> None:
        if model.flow not in self.flows:
            import gridflow.particles.samplers  # noqa: F401  (all built-in samplers registered, for the message)

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
                w = (np.full(tilt.size, 1.0 / tilt.size) if state.log_w is None else normalised_weights(state.log_w))
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
        w = normalised_weights(state.log_w)
        if 1.0 / np.sum(w * w) >= self.threshold * n:
            return False
        idx = systematic_resample(w, rng)
        state.x = state.x[idx]
        state.log_w = np.zeros(n)
        state.resampled += 1
        return True

