r"""Validation studies of particle samplers against the grid solution (``gridflow validate``).

A study runs a sampler (:mod:`gridflow.particles.samplers`) on the problem of a case for every number of
particles N, every step h and ``replicates`` independent seeds, and measures each final ensemble
against the grid density rho_T at the chosen time T with the distances of
:mod:`gridflow.analysis.metrics`.  Every discretised sampler is biased and every finite ensemble is noisy,
so a p-value alone says little; the study separates the two (docs/validation.md):

``floor``
    the **iid floor**: the mean of the same distance for N exact iid draws of rho_T
    (:func:`gridflow.particles.grid_sampling.sample_grid_density`), over the same number of replicates.  It is
    what a perfect sampler with N particles would score.
``excess``
    mean distance of the sampler minus the floor, with a Welch confidence interval.  For an exact
    but correlated or weighted sampler (importance sampling, SMC) it is the price of the weights
    and decays like N^{-1/2}; for a biased sampler it tends to the bias as N grows.
``bias``
    for the squared-type distances (``w2``, ``sliced_w2``, ``mean_error``, ``cov_error``) the
    debiased estimate sqrt(mean D^2 - mean D_iid^2) (and sqrt(mean MMD^2 - mean MMD_iid^2) for
    the unbiased ``mmd``): the noise of an ensemble adds to D^2 (to first order), so the
    difference estimates the squared distance between the sampler's *law* and rho_T.  It scales
    like h^p for a sampler of weak order p, whatever N (once the bias is resolved).

Slopes are weighted least-squares fits of log(value) against log(h) (``bias`` where defined,
else ``excess``) for each N, and of log(excess) against log(N) for each h; only points whose
confidence interval excludes 0 enter a fit, weighted by the inverse variance of the log
(delta method); the slope's interval is normal with the fit's standard error.

The grid reference is solved in memory from the case (:class:`gridflow.core.problem.Problem`,
:func:`gridflow.time.solver.simulate`) or read from a trajectory file (``reference``).
"""

from __future__ import annotations

import math
import os
import time as _time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gridflow.core.grid import Grid
from gridflow.errors import InputError
from gridflow.io.case_schema import DEFAULT_TOLERANCE


__all__ = ["run_study", "analyse_ensembles", "check_study", "validate", "verdict", "grid_reference", "fit_slope", "parse_list", "FAST_METRICS",
           "SQUARED_METRICS"]

#: distances computed without the full ``compare`` (cheap): per dimension
FAST_METRICS = {1: ("w1", "w2", "mean_error", "cov_error"), 2: ("sliced_w2", "mean_error", "cov_error")}
#: distances whose square is additive in (law error)^2 + (noise)^2: they get a debiased ``bias``
SQUARED_METRICS = ("w2", "sliced_w2", "mean_error", "cov_error")
#: metrics that are already squared distances with an unbiased estimator (bias = sqrt of the excess)
_UNBIASED_SQUARED = ("mmd",)
_COMPARE_METRICS = {1: ("w1", "w2", "ks", "cvm", "mmd", "tv_histogram", "mean_error", "cov_error", "mean_z"),
                    2: ("sliced_w2", "mmd", "tv_histogram", "mean_error", "cov_error", "mean_z")}
#: replicates x particles x dim above which a non-interacting sampler runs its replicates in several batches
_BATCH_VALUES = 4_000_000


# ============================================================================================
# the grid reference
# ============================================================================================

def grid_reference(case: Mapping, time: float, *, reference: str | os.PathLike | None = None
                   ) -> tuple[Grid, np.ndarray, dict]:
    """The grid density rho_T of ``case`` at ``time``: ``(grid, density, info)``.

    Solved in memory (only the frame at ``time``) unless ``reference`` names a trajectory file,
    whose frame at ``time`` is used after checking that its grid is the case's.
    """
    from gridflow.core.problem import Problem

    problem = Problem.from_case(case)
    if reference is not None:
        from gridflow.io.trajectory import open_trajectory

        tr = open_trajectory(reference)
        i = tr.frame(time)
        g = tr.grid
        if g.cells != problem.grid.cells or not np.allclose(g.lower, problem.grid.lower) \
                or not np.allclose(g.upper, problem.grid.upper):
            raise InputError(
                f"The reference trajectory {reference} has the grid {list(g.cells)} cells on "
                f"{list(g.lower)}..{list(g.upper)}, but the case has {list(problem.grid.cells)} cells on "
                f"{list(problem.grid.lower)}..{list(problem.grid.upper)}; pass the trajectory of this case "
                "(or leave --reference out to solve it).")
        return g, tr.density[i], {"source": str(reference), "time": float(tr.time[i]),
                                  "lambda": float(tr.lambda_[i]), "kl": float(tr.kl[i])}
    if problem.flow == "path":
        raise InputError("The case's flow is 'path' (a prescribed density), which no sampler runs; validate "
                         "samplers on fokker-planck, fisher-rao or wfr cases.")
    from gridflow.time.solver import simulate

    t = case["time"]
    (frame,) = simulate(problem, times=[float(time)], tolerance=float(t.get("tolerance", DEFAULT_TOLERANCE)),
                        max_step=t.get("max_step"), initial_step=t.get("initial_step"))
    return problem.grid, frame.density, {"source": "solved", "time": float(frame.time), "lambda": float(frame.lam),
                                         "kl": float(frame.diagnostics["kl"])}


# ============================================================================================
# distances of one ensemble
# ============================================================================================

class _Measure:
    """Distances of ensembles to one grid frame; the cheap ones without the full ``compare``."""

    def __init__(self, grid: Grid, density: np.ndarray, metrics: Sequence[str]):
        from gridflow.analysis.diagnostics import moments
        from gridflow.particles.grid_sampling import cell_masses

        self.grid = grid
        self.density = density
        self.masses = cell_masses(grid, density)
        self.metrics = tuple(metrics)
        with np.errstate(divide="ignore"):
            self.mean, self.cov = moments(np.log(self.masses), grid)
        self.full = any(m not in FAST_METRICS[grid.dim] for m in self.metrics)
        self._sliced = None

    def __call__(self, x: np.ndarray, w: np.ndarray | None, rng: np.random.Generator) -> dict[str, float]:
        from gridflow.analysis.distances import wasserstein_1d
        from gridflow.analysis.metrics import compare

        out: dict[str, float] = {}
        if self.full:
            r = compare(self.grid, self.density, x, w, rng=rng)
            out.update({k: r["distances"][k] for k in self.metrics if k in r["distances"]})
            out["p_value"] = r["p_value"]
            return out
        wn = None if w is None else w / w.sum()
        want = set(self.metrics)
        if want & {"w1", "w2"}:
            w1, w2 = wasserstein_1d(x[:, 0], self.grid.edges[0], self.masses, wn)
            out.update(w1=w1, w2=w2)
        if "sliced_w2" in want:
            if self._sliced is None:
                from gridflow.analysis.distances import SlicedReference

                self._sliced = SlicedReference(self.grid, self.masses)
            out["sliced_w2"] = math.sqrt(float(np.mean(self._sliced.w2_squared(x, wn))))
        if want & {"mean_error", "cov_error"}:
            ww = np.full(x.shape[0], 1.0 / x.shape[0]) if wn is None else wn
            mean = ww @ x
            c = x - mean
            cov = (c * ww[:, None]).T @ c / (1.0 - float(np.sum(ww * ww)))
            out["mean_error"] = float(np.linalg.norm(mean - self.mean))
            out["cov_error"] = float(np.linalg.norm(cov - self.cov))
        return {k: out[k] for k in self.metrics}


# ============================================================================================
# statistics
# ============================================================================================

def _mean_ci(values: np.ndarray, confidence: float) -> dict:
    from scipy import stats

    v = np.asarray(values, dtype=float)
    n = v.size
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if n > 1 else math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan
    return {"mean": mean, "sd": sd, "ci": [mean - half, mean + half]}


def _difference(a: np.ndarray, b: np.ndarray, confidence: float) -> dict:
    """mean(a) - mean(b) with a Welch interval (independent samples)."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = a.size, b.size
    diff = float(a.mean() - b.mean())
    if na < 2 or nb < 2:
        return {"value": diff, "se": math.nan, "ci": [math.nan, math.nan]}
    va, vb = a.var(ddof=1) / na, b.var(ddof=1) / nb
    se = math.sqrt(va + vb)
    if se == 0.0:
        return {"value": diff, "se": 0.0, "ci": [diff, diff]}
    df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return {"value": diff, "se": se, "ci": [diff - half, diff + half]}


def _sqrt_interval(d: dict) -> dict:
    """sqrt of a squared-distance difference and of its interval (clipped at 0)."""
    value = d["value"]
    lo, hi = d["ci"]
    return {"value": math.sqrt(value) if value > 0 else 0.0,
            "se": d["se"] / (2 * math.sqrt(value)) if value > 0 and math.isfinite(d["se"]) else math.nan,
            "ci": [math.sqrt(max(lo, 0.0)) if math.isfinite(lo) else math.nan,
                   math.sqrt(max(hi, 0.0)) if math.isfinite(hi) else math.nan]}


def fit_slope(x: Sequence[float], values: Sequence[float], errors: Sequence[float], lower: Sequence[float], *,
              confidence: float = 0.95) -> dict:
    """Weighted least-squares slope of log(value) against log(x).

    A point enters when its value and the lower end of its interval are positive (resolved from
    zero); its weight is 1 / var(log value) with sd(log value) = error / value (delta method).
    Returns ``slope``, ``se``, ``ci``, ``intercept`` and the ``used`` x values (``slope`` is None
    with fewer than two points).
    """
    from scipy import stats

    x = np.asarray(x, float)
    y = np.asarray(values, float)
    e = np.asarray(errors, float)
    lo = np.asarray(lower, float)
    ok = np.isfinite(y) & (y > 0) & np.isfinite(lo) & (lo > 0) & np.isfinite(e) & (e > 0) & (x > 0)
    out: dict[str, Any] = {"used": x[ok].tolist(), "slope": None, "se": None, "ci": None, "intercept": None}
    if ok.sum() < 2 or np.unique(x[ok]).size < 2:
        out["note"] = "fewer than two points resolved from zero (their intervals include 0)"
        return out
    lx, ly = np.log(x[ok]), np.log(y[ok])
    wt = (y[ok] / e[ok]) ** 2
    xm = np.sum(wt * lx) / wt.sum()
    ym = np.sum(wt * ly) / wt.sum()
    sxx = float(np.sum(wt * (lx - xm) ** 2))
    slope = float(np.sum(wt * (lx - xm) * (ly - ym)) / sxx)
    se = math.sqrt(1.0 / sxx)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    out.update(slope=slope, se=se, ci=[slope - z * se, slope + z * se], intercept=float(ym - slope * xm))
    return out


# ============================================================================================
# the study
# ============================================================================================

def parse_list(text: str, kind: Callable, what: str, example: str) -> list:
    """The comma-separated ``text`` as a list of ``kind``; :class:`InputError` naming option ``what`` otherwise."""
    try:
        values = [kind(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(f"--{what} must be a comma-separated list, e.g. --{what} {example}; got {text!r}.") from None
    if not values:
        raise InputError(f"--{what} needs at least one value, e.g. --{what} {example}.")
    return values


def _ensembles(model, name: str, options: Mapping, n: int, step: float, replicates: int, t: float,
               seeds: list[np.random.SeedSequence]) -> tuple[list[tuple[np.ndarray, np.ndarray | None]], list[float]]:
    """R final ensembles of the sampler (independent particles: replicates batched in one run)."""
    from gridflow.particles.samplers import make_sampler

    sampler = make_sampler(name, model, step=step, **options)
    out, ess = [], []
    if sampler.independent_particles:
        per_batch = max(1, _BATCH_VALUES // (n * model.dim))
        for start in range(0, replicates, per_batch):
            count = min(per_batch, replicates - start)
            (frame,) = sampler.run(particles=n * count, times=[t], rng=np.random.default_rng(seeds[start]))
            for k in range(count):
                x = frame.positions[k * n:(k + 1) * n]
                if frame.log_weights is None:
                    out.append((x, None))
                    ess.append(float(n))
                else:
                    lw = frame.log_weights[k * n:(k + 1) * n]
                    w = np.exp(lw - lw.max())
                    w /= w.sum()
                    out.append((x, w))
                    ess.append(float(1.0 / np.sum(w * w)))
        return out, ess
    for r in range(replicates):
        (frame,) = sampler.run(particles=n, times=[t], rng=np.random.default_rng(seeds[r]))
        out.append((frame.positions, frame.weights))
        ess.append(frame.ess)
    return out, ess


def check_study(case: Mapping, *, particles: Sequence[int], steps: Sequence[float], replicates: int,
                metrics: Sequence[str] | str | None, confidence: float, time: float | None
                ) -> tuple[list[int], list[float], list[str], float]:
    """Checked ``(particles, steps, metrics, time)`` of a study of ``case`` (:class:`InputError` otherwise)."""
    if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)) or replicates < 2:
        raise InputError(f"--replicates must be an integer >= 2 (intervals need a spread), got {replicates!r}.")
    particles = [int(n) for n in particles]
    steps = [float(h) for h in steps]
    if not particles or any(n < 2 for n in particles):
        raise InputError(f"--particles must be integers >= 2, got {particles}.")
    if not steps or any(not (h > 0 and math.isfinite(h)) for h in steps):
        raise InputError(f"--step must be positive numbers, got {steps}.")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"The confidence level must be in (0, 1), got {confidence!r}.")
    dim = len(case["grid"]["lower"])
    if metrics is None:
        metrics = list(FAST_METRICS[dim])
    elif isinstance(metrics, str):
        metrics = list(_COMPARE_METRICS[dim]) if metrics == "all" else parse_list(metrics, str, "metrics", "w1,w2")
    unknown = [m for m in metrics if m not in _COMPARE_METRICS[dim]]
    if unknown:
        raise InputError(f"Unknown metric(s) {unknown} for a {dim}D case; choose from "
                         f"{', '.join(_COMPARE_METRICS[dim])} (or 'all').")
    t = float(case["time"]["end"] if time is None else time)
    if not (t > 0 and math.isfinite(t)):
        raise InputError(f"--time must be a positive time, got {time!r}.")
    return particles, steps, list(metrics), t


def run_study(case: Mapping, *, sampler: str | Callable, particles: Sequence[int], steps: Sequence[float], replicates: int,
              time: float | None = None, seed: int = 0, metrics: Sequence[str] | str | None = None,
              options: Mapping[str, Any] | None = None, reference: str | os.PathLike | None = None,
              confidence: float = 0.95, progress: Callable[[str], None] | None = None) -> dict:
    """Run a validation study; return a JSON-serialisable dict (see the module docstring).

    ``particles`` and ``steps`` are the values of N and h; every (N, h) pair gets ``replicates``
    runs with seeds derived from ``seed``.  ``time`` defaults to the case's ``time.end``.
    ``metrics``: names of distances (default :data:`FAST_METRICS` of the dimension; ``"all"``:
    everything :func:`gridflow.analysis.metrics.compare` reports, also its p-value).  ``options`` go to the
    sampler (e.g. ``{"moves": 10}``).  ``progress`` receives one line per finished configuration.

    ``sampler`` is a built-in name (:data:`gridflow.particles.samplers.SAMPLERS`), a user sampler function
    ``fn(x, log_w, t, dt, rng, target) -> (x, log_w)`` or ``"FILE.py:NAME"``
    (:class:`gridflow.particles.samplers.UserSampler`).  The ensembles are made here and measured by
    :func:`analyse_ensembles`.  The result has a ``verdict`` (:func:`verdict`).
    """
    from gridflow.particles.model import ParticleModel
    from gridflow.particles.samplers import make_sampler

    particles, steps, metrics, t = check_study(case, particles=particles, steps=steps, replicates=replicates,
                                               metrics=metrics, confidence=confidence, time=time)
    options = dict(options or {})
    model = ParticleModel.from_case(case)
    make_sampler(sampler, model, step=steps[0], **options)          # checks the sampler, flow and options early
    grid, density, info = grid_reference(case, t, reference=reference)
    root = np.random.SeedSequence(seed)
    floor_seeds, run_seeds = root.spawn(2)
    run_seeds = run_seeds.spawn(len(particles) * len(steps))

    def produce():
        for i, n in enumerate(particles):
            for j, h in enumerate(steps):
                t0 = _time.perf_counter()
                seeds = run_seeds[i * len(steps) + j].spawn(replicates + 1)
                ensembles, ess = _ensembles(model, sampler, options, n, h, replicates, t, seeds[:replicates])
                yield n, h, ensembles, ess, _time.perf_counter() - t0, np.random.default_rng(seeds[replicates])

    study = analyse_ensembles(grid, density, produce(), particles=particles, steps=steps, replicates=replicates,
                              time=t, metrics=metrics, floor_seed=floor_seeds, confidence=confidence,
                              progress=progress)
    smp = make_sampler(sampler, model, step=steps[0], **options)
    study = {"case": case.get("name", ""), "sampler": smp.name, "sampler_options": smp.options(), "flow": model.flow,
             "seed": int(seed), "reference": info, **study, "exact_in_time": bool(smp.exact_in_time)}
    study["verdict"] = verdict(study)
    return study


def analyse_ensembles(grid: Grid, density: np.ndarray, batches, *, particles: Sequence[int], steps: Sequence[float],
                      replicates: int, time: float, metrics: Sequence[str], floor_seed: np.random.SeedSequence,
                      confidence: float = 0.95, progress: Callable[[str], None] | None = None) -> dict:
    """The analysis part of a study: the iid floor of each N (``replicates`` sets of N exact draws of
    ``density``), then for each ``(n, h, ensembles, ess, seconds, rng)`` of ``batches`` (an iterable,
    consumed after the floors) the distances of the ensembles (``(x, weights)`` pairs, independent
    replicates), their excess over the floor and bias with intervals, the replicate test
    (:func:`gridflow.analysis.replicates.compare_replicates`, with 3 or more ensembles) and finally
    the slopes in h and N.  Returns the study's ``dim``, ``time``, ``replicates``, ``confidence``,
    ``metrics``, ``particles``, ``steps``, ``floor``, ``rows`` and ``slopes``.
    """
    from gridflow.particles.grid_sampling import sample_grid_density

    measure = _Measure(grid, density, metrics)
    floor_seeds = dict(zip(particles, floor_seed.spawn(len(particles))))
    names = list(metrics) + (["p_value"] if measure.full else [])

    def summarise(values: dict[str, list[float]]) -> dict:
        return {k: _mean_ci(np.asarray(v), confidence) for k, v in values.items()}

    floors, floor_raw = {}, {}
    for n in particles:
        t0 = _time.perf_counter()
        seeds = floor_seeds[n].spawn(replicates)
        raw: dict[str, list[float]] = {k: [] for k in names}
        for r in range(replicates):
            rng = np.random.default_rng(seeds[r])
            x = sample_grid_density(grid, density, n, rng=rng)
            for k, v in measure(x, None, rng).items():
                raw[k].append(v)
        floor_raw[n] = raw
        floors[str(n)] = summarise(raw)
        if progress:
            progress(f"iid floor N={n}: {replicates} replicates in {_time.perf_counter() - t0:.1f} s")

    rows = []
    for n, h, ensembles, ess, elapsed, mrng in batches:
        raw = {k: [] for k in names}
        for x, w in ensembles:
            for k, v in measure(x, w, mrng).items():
                raw[k].append(v)
        row_metrics = {}
        for k in metrics:
            a, b = np.asarray(raw[k]), np.asarray(floor_raw[n][k])
            entry = {**_mean_ci(a, confidence), "floor": floors[str(n)][k]["mean"],
                     "excess": _difference(a, b, confidence)}
            if k in SQUARED_METRICS:
                entry["bias"] = _sqrt_interval(_difference(a ** 2, b ** 2, confidence))
            elif k in _UNBIASED_SQUARED:
                entry["bias"] = _sqrt_interval(entry["excess"])
            row_metrics[k] = entry
        row = {"particles": n, "step": h, "effective_step": time / max(1, math.ceil(time / h * (1 - 1e-12))),
               "replicates": len(ensembles), "seconds_per_replicate": elapsed / max(1, len(ensembles)),
               "ess": float(np.mean(ess)), "metrics": row_metrics,
               "replicate_test": _replicate_test(grid, density, ensembles),
               "raw": {k: list(map(float, v)) for k, v in raw.items()}}
        if "p_value" in raw:
            p = np.asarray(raw["p_value"], float)
            row["p_value"] = {"median": float(np.median(p)), "rejected_at_1pct": float(np.mean(p < 0.01))}
        rows.append(row)
        if progress:
            k0 = metrics[0]
            e = row_metrics[k0]["excess"]
            rt = row["replicate_test"]
            progress(f"N={n} h={h:g}: {elapsed:.1f} s, {k0} {row_metrics[k0]['mean']:.4g} "
                     f"(floor {row_metrics[k0]['floor']:.4g}, excess {e['value']:.3g} "
                     f"[{e['ci'][0]:.3g}, {e['ci'][1]:.3g}])"
                     + (f", replicate test p = {rt['p_value']:.3g}" if rt.get("p_value") is not None else ""))
    rows.sort(key=lambda r: (particles.index(r["particles"]), steps.index(r["step"])))
    return {"dim": grid.dim, "time": float(time), "replicates": int(replicates), "confidence": confidence,
            "metrics": list(metrics), "particles": list(particles), "steps": list(steps), "floor": floors,
            "rows": rows, "slopes": _slopes(rows, metrics, particles, steps, confidence)}


def _replicate_test(grid: Grid, density: np.ndarray, ensembles: Sequence) -> dict:
    """Hotelling's T^2 of the ensembles' equal-mass bin masses (:func:`compare_replicates`): ``p_value``,
    ``statistic`` (F), ``df`` and ``bins`` per axis; ``p_value`` None with a ``note`` when there are too
    few ensembles (3 in 1D, 4 in 2D)."""
    from gridflow.analysis.replicates import compare_replicates

    if len(ensembles) < 2 + grid.dim:
        return {"p_value": None, "note": f"the replicate test needs at least {2 + grid.dim} replicates in "
                                         f"{grid.dim}D ({len(ensembles)} given)"}
    r = compare_replicates(grid, density, [(x, w) for x, w in ensembles])
    return {"p_value": r["p_value"], "statistic": r["statistic"], "df": r["df"], "bins": len(r["bins"][0]["edges"]) + 1}


def _slopes(rows: list[dict], metrics: Sequence[str], particles: Sequence[int], steps: Sequence[float],
            confidence: float) -> dict:
    """Fits of the bias (or excess) in h for each N and of the excess in N for each h (:func:`fit_slope`)."""
    slopes: dict[str, dict] = {"step": {}, "particles": {}}
    for k in metrics:
        key = "bias" if (k in SQUARED_METRICS or k in _UNBIASED_SQUARED) else "excess"
        slopes["step"][k] = {"quantity": key, "fits": {}}
        if len(steps) > 1:
            for n in particles:
                sel = [r for r in rows if r["particles"] == n]
                q = [r["metrics"][k][key] for r in sel]
                fit = fit_slope([r["step"] for r in sel], [v["value"] for v in q], [v["se"] for v in q],
                                [v["ci"][0] for v in q], confidence=confidence)
                slopes["step"][k]["fits"][str(n)] = fit
        slopes["particles"][k] = {"quantity": "excess", "fits": {}}
        if len(particles) > 1:
            for h in steps:
                sel = [r for r in rows if r["step"] == h]
                q = [r["metrics"][k]["excess"] for r in sel]
                fit = fit_slope([r["particles"] for r in sel], [v["value"] for v in q], [v["se"] for v in q],
                                [v["ci"][0] for v in q], confidence=confidence)
                slopes["particles"][k]["fits"][repr(h)] = fit

    return slopes


#: a consistent sampler's bias shrinks at least like h^MIN_ORDER (weak order >= 1/2) ...
MIN_ORDER = 0.5
#: ... or, without time error, its excess shrinks at least like N^-MIN_RATE
MIN_RATE = 0.25


def verdict(study: Mapping, *, min_order: float = MIN_ORDER, min_rate: float = MIN_RATE) -> dict:
    """Does the sampler's excess over the iid floor shrink with N or with h?  Decided per metric
    from the replicate confidence intervals of the study:

    * ``resolved``: the excess at the largest N and smallest h has its interval above 0 (else the
      sampler is indistinguishable from N iid draws there, and nothing is flagged);
    * ``shrinks_with_step``: the slope in h of the bias (or excess) at the largest N, with its
      interval; False when the whole interval lies below ``min_order`` (the bias provably shrinks
      slower than h^min_order, or grows), None when there is no fit (one step, fewer than two
      resolved points) or the sampler has no time error;
    * ``shrinks_with_particles``: the slope in N of the excess at the smallest h; False when the
      whole interval lies above ``-min_rate``, None without a fit.

    A metric is flagged when it is resolved and shrinks neither with h nor with N (at least one of
    the two decided).  The sampler is flagged when any metric is.  Returns ``flagged``, ``metrics``
    (the per-metric decisions), ``rule`` (this rule in words) and ``reasons`` (one line per flag).
    """
    rows = study["rows"]
    n_max, h_min = max(study["particles"]), min(study["steps"])
    corner = next(r for r in rows if r["particles"] == n_max and r["step"] == h_min)
    out: dict[str, Any] = {"flagged": False, "metrics": {}, "reasons": [], "min_order": min_order,
                           "min_rate": min_rate,
                           "rule": (f"flagged when, for some metric, the excess at N={n_max}, h={h_min:g} is resolved "
                                    f"(its interval above 0) and it shrinks neither with h (slope interval of the bias "
                                    f"in h entirely below {min_order:g}) nor with N (slope interval of the excess in N "
                                    f"entirely above {-min_rate:g}); a direction without a fit does not count")}
    for k in study["metrics"]:
        e = corner["metrics"][k]["excess"]
        resolved = bool(math.isfinite(e["ci"][0]) and e["ci"][0] > 0)
        fit_h = study["slopes"]["step"][k]["fits"].get(str(n_max))
        fit_n = study["slopes"]["particles"][k]["fits"].get(repr(h_min))
        by_h = None
        if fit_h and fit_h.get("slope") is not None and not study.get("exact_in_time"):
            by_h = bool(fit_h["ci"][1] >= min_order)
        by_n = None
        if fit_n and fit_n.get("slope") is not None:
            by_n = bool(fit_n["ci"][0] <= -min_rate)
        flagged = resolved and by_h is not True and by_n is not True and (by_h is not None or by_n is not None)
        out["metrics"][k] = {"resolved": resolved, "excess": e, "shrinks_with_step": by_h,
                             "slope_in_step": None if not fit_h else fit_h.get("slope"),
                             "slope_in_step_ci": None if not fit_h else fit_h.get("ci"),
                             "shrinks_with_particles": by_n,
                             "slope_in_particles": None if not fit_n else fit_n.get("slope"),
                             "slope_in_particles_ci": None if not fit_n else fit_n.get("ci"),
                             "flagged": flagged}
        if flagged:
            parts = []
            if by_h is False:
                parts.append(f"slope in h {fit_h['slope']:+.2f} [{fit_h['ci'][0]:+.2f}, {fit_h['ci'][1]:+.2f}] "
                             f"< {min_order:g}")
            if by_n is False:
                parts.append(f"slope in N {fit_n['slope']:+.2f} [{fit_n['ci'][0]:+.2f}, {fit_n['ci'][1]:+.2f}] "
                             f"> {-min_rate:g}")
            out["reasons"].append(f"{k}: excess {e['value']:.3g} [{e['ci'][0]:.3g}, {e['ci'][1]:.3g}] at N={n_max}, "
                                  f"h={h_min:g} does not shrink ({'; '.join(parts)})")
            out["flagged"] = True
    return out


def validate(case: Mapping | str | os.PathLike, *, sampler: str | Callable | None = None,
             particles: Sequence[int] = (1000, 4000, 16000), steps: Sequence[float] = (0.02, 0.01, 0.005),
             replicates: int = 20, overrides: Sequence[str] = (), ensembles: str | os.PathLike | None = None,
             **kwargs: Any) -> dict:
    """A validation study of ``sampler`` on ``case`` (a resolved case, or the path of a case file).

    ``sampler``: a built-in name, a function ``fn(x, log_w, t, dt, rng, target) -> (x, log_w)``
    (see :class:`gridflow.particles.samplers.Target` for ``target``) or ``"FILE.py:NAME"``.  Further keyword
    arguments go to :func:`run_study` (``time``, ``seed``, ``metrics``, ``options``, ``reference``,
    ``confidence``, ``progress``).  Instead of a sampler, ``ensembles`` names files made elsewhere by a
    pattern with the fields {N}, {step}, {rep} (:func:`gridflow.analysis.ensemble_files.validate_ensembles`;
    ``particles``, ``steps`` and ``replicates`` then come from the files).  Returns the study dict;
    ``study["verdict"]["flagged"]`` says whether the sampler's excess over the iid floor fails to shrink
    with N or h (:func:`verdict`).
    """
    if (sampler is None) == (ensembles is None):
        raise InputError("Give either a sampler (sampler=NAME, a function or 'FILE.py:NAME') or ensemble files "
                         "(ensembles='runs/x_N{N}_h{step}_r{rep}.npz'), not both or neither.")
    if not isinstance(case, Mapping):
        from gridflow.io.case import load_case

        case = load_case(case, overrides=list(overrides))
    if ensembles is not None:
        from gridflow.analysis.ensemble_files import validate_ensembles

        return validate_ensembles(case, ensembles, **kwargs)
    return run_study(case, sampler=sampler, particles=particles, steps=steps, replicates=replicates, **kwargs)
