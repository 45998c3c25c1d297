"""The user's own sampler: a function ``fn(x, log_w, t, dt, rng, target)`` or ``FILE.py:NAME`` (docs/validation.md)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gridflow.errors import InputError, NumericalError
from gridflow.particles.base import ParticleSampler
from gridflow.particles.densities import LogDensity
from gridflow.particles.model import ParticleModel

__all__ = ["Target", "UserSampler", "load_user_sampler"]


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


class UserSampler(ParticleSampler, register=False):
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
