"""The computations of the Crucinio & Pathiraja reproduction: exact MMD^2 between grid densities, the solves run in a process pool,
the particle runs and the analyses of parts (a)-(d) built from them."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from gridflow.io.case import load_case
from gridflow.reproduce.crucinio_pathiraja.cases import (CASE_DIR, FLOWS, GAUSS, HORIZON_B, HORIZON_C, Job, KL_FLOOR,
    LEVELS_B, M_VALUES, REFERENCE_TABLE, REFINED_D, SCHEDULES_B, TABLE_TIMES_A, _configs_c, bimodal_1d_overrides,
    jobs_a, jobs_b, jobs_c, jobs_d, refine_jobs_b, refine_jobs_c, refine_jobs_d)
from gridflow.reproduce.crucinio_pathiraja.mmd import GridMMD, THRESHOLD, first_below, masses
from gridflow.reproduce.crucinio_pathiraja.oracles import (adaptive_oracle, asymptotic_kl_rate, bimodal_tilt,
    fr_exact_times, fr_exponent, gaussian_exact_kl)


def solve_job(job: Job) -> dict:
    """Solve ``job`` and return its saved times, lambda, KL, MMD^2 to pi, step counts and wall time."""
    from gridflow.core.problem import Problem
    from gridflow.time.solver import save_times, simulate

    start = time.perf_counter()
    with np.errstate(divide="raise", invalid="raise", over="raise", under="ignore"):
        case = load_case(CASE_DIR / job.case, overrides=list(job.overrides))
        problem = Problem.from_case(case)
        grid = problem.grid
        tt = case["time"]
        mmd = GridMMD(grid) if job.mmd else None
        q = masses(problem.path.log_target, grid)
        rec: dict[str, list] = {"t": [], "lam": [], "kl": [], "mmd2": [], "mass": []}
        steps = rejected = 0
        for f in simulate(problem, times=save_times(tt), tolerance=float(tt["tolerance"]),
                          max_step=tt.get("max_step"), initial_step=tt.get("initial_step")):
            rec["t"].append(f.time)
            rec["lam"].append(f.lam)
            rec["kl"].append(f.diagnostics["kl"])
            rec["mass"].append(f.diagnostics["mass"])
            if mmd is not None:
                rec["mmd2"].append(mmd.mmd2(masses(f.log_rho, grid), q))
            steps += f.steps
            rejected += f.rejected
    out = {k: np.asarray(v, float) for k, v in rec.items()}
    out.update(key=job.key, steps=steps, rejected=rejected, cells=list(grid.cells), h=list(grid.spacing),
               tolerance=float(tt["tolerance"]), wall=time.perf_counter() - start)
    return out


def workers() -> int:
    env = os.environ.get("GRIDFLOW_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(2, os.cpu_count() or 1))


class Pool:
    """Up to 2 worker processes (``GRIDFLOW_WORKERS`` overrides), each with single-threaded BLAS.

    Workers are spawned with OPENBLAS/OMP/MKL_NUM_THREADS = 1: two processes each running a
    multi-threaded BLAS on 2 cores oversubscribe them (measured: 6x slower matrix-vector products).
    With one worker everything runs in this process.
    """

    _THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

    def __init__(self, *, progress: bool = False) -> None:
        self.progress = progress
        self.workers = workers()
        self.executor = None
        if self.workers > 1:
            import multiprocessing

            saved = {k: os.environ.get(k) for k in self._THREAD_VARS}
            os.environ.update({k: "1" for k in self._THREAD_VARS})
            try:
                self.executor = ProcessPoolExecutor(max_workers=self.workers,
                                                    mp_context=multiprocessing.get_context("spawn"))
                # start the workers now, while the environment says single-threaded
                list(self.executor.map(int, range(self.workers)))
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v

    def run(self, jobs: Sequence, label: str = "") -> dict[tuple, dict]:
        """Run ``jobs`` (most expensive first); results keyed by ``job.key``."""
        jobs = sorted(jobs, key=lambda j: -j.cost)
        results: dict[tuple, dict] = {}
        start = time.perf_counter()
        step = max(1, len(jobs) // 8)

        def report(done: int) -> None:
            if self.progress and (done == len(jobs) or done % step == 0):
                print(f"[crucinio-pathiraja] {label}: {done}/{len(jobs)} runs "
                      f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)

        if self.executor is None:
            for i, job in enumerate(jobs, 1):
                results[job.key] = dispatch(job)
                report(i)
            return results
        futures = [self.executor.submit(dispatch, job) for job in jobs]
        for i, fut in enumerate(as_completed(futures), 1):
            res = fut.result()
            results[res["key"]] = res
            report(i)
        return results

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()
            self.executor = None

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def dispatch(job):
    """Run one job of either kind (a grid solve or a particle run)."""
    return solve_particles(job) if isinstance(job, ParticleJob) else solve_job(job)


# ============================================================================ particle estimators


def _mixture_terms(m: float, x: np.ndarray) -> tuple[np.ndarray, float]:
    """E k(x, Y) and E k(Y, Y') for Y, Y' ~ pi = 1/2 N(0,1) + 1/2 N(m,1), k = exp(-(x-y)^2), exactly."""
    cross = 0.5 * (np.exp(-x**2 / 3.0) + np.exp(-(x - m) ** 2 / 3.0)) / math.sqrt(3.0)
    pp = 0.5 * (1.0 + math.exp(-m * m / 5.0)) / math.sqrt(5.0)
    return cross, pp


def particle_mmd2(x: np.ndarray, w: np.ndarray, m: float, kxx: np.ndarray | None = None) -> float:
    """Unbiased MMD^2 between a weighted ensemble (weights summing to 1) and pi, exact pi terms."""
    if kxx is None:
        kxx = np.exp(-(x[:, None] - x[None, :]) ** 2)
    cross, pp = _mixture_terms(m, x)
    sw2 = float(w @ w)
    part = (float(w @ kxx @ w) - sw2) / (1.0 - sw2)
    return part - 2.0 * float(w @ cross) + pp


@dataclass(frozen=True)
class ParticleJob:
    key: tuple
    kind: str            # "fr-is" | "ula"
    m: float
    sched: str
    n: int
    seeds: tuple[int, ...]
    dt: float = 0.01
    every: float = 0.25
    cost: float = 1.0


def solve_particles(job: ParticleJob) -> dict:
    """Seeded particle runs of the paper's kind of dynamics; MMD^2 to pi at t = 0, every, ..., 60.

    ``fr-is``: iid draws from rho_0 = N(0,1) with weights ∝ exp(J(t) T) (the exact FR/tempered-FR law for
    N -> infinity, no time error; :mod:`gridflow.particles.samplers`).  ``ula``: (tempered) unadjusted Langevin,
    X += dt grad log pi_lambda(X) + sqrt(2 dt) xi, the particle method of the W flow (weak error O(dt)).
    """
    start = time.perf_counter()
    times = np.round(np.arange(0.0, HORIZON_B + 1e-9, job.every), 10)
    out = np.empty((len(job.seeds), len(times)))
    with np.errstate(divide="raise", invalid="raise", over="raise", under="ignore"):
        if job.kind == "fr-is":
            jt = fr_exponent(job.sched, times)
            for r, seed in enumerate(job.seeds):
                x = np.random.default_rng(seed).standard_normal(job.n)
                tilt = bimodal_tilt(job.m, x)
                kxx = np.exp(-(x[:, None] - x[None, :]) ** 2)
                for i, j in enumerate(jt):
                    lw = j * tilt
                    w = np.exp(lw - lw.max())
                    out[r, i] = particle_mmd2(x, w / w.sum(), job.m, kxx)
        else:
            rng = np.random.default_rng(list(job.seeds))
            x = rng.standard_normal((len(job.seeds), job.n))
            steps_per = int(round(job.every / job.dt))
            uni = np.full(job.n, 1.0 / job.n)
            for i in range(len(times)):
                for r in range(len(job.seeds)):
                    out[r, i] = particle_mmd2(x[r], uni, job.m)
                if i == len(times) - 1:
                    break
                for _ in range(steps_per):  # untempered ULA: grad log pi = -x + m P(far mode | x)
                    grad = -x + job.m * special.expit(job.m * x - 0.5 * job.m**2)
                    x = x + job.dt * grad + math.sqrt(2.0 * job.dt) * rng.standard_normal(x.shape)
    return {"key": job.key, "t": times, "mmd2": out, "wall": time.perf_counter() - start}


def particle_jobs() -> list[ParticleJob]:
    jobs = [ParticleJob(("p", "fr-is", m, s), "fr-is", m, s, 1000, tuple(range(5)), every=0.5, cost=0.3)
            for m in M_VALUES for s in ("plain", "linear")]
    jobs += [ParticleJob(("p", "ula", m, "plain"), "ula", m, "plain", 1000, tuple(range(3)), dt=0.02, every=0.5,
                         cost=1.0) for m in (2, 4, 6, 10)]
    return jobs


# ============================================================================ analysis helpers


def crossing_cubic(t: np.ndarray, y: np.ndarray, threshold: float = THRESHOLD) -> float:
    """The crossing time from a cubic through the 4 frames around it (log y), to bound the error of
    the linear interpolation in :func:`first_below`; inf/t0 cases as there."""
    t, y = np.asarray(t, float), np.asarray(y, float)
    below = np.flatnonzero(y < threshold)
    if below.size == 0 or below[0] == 0:
        return first_below(t, y, threshold)
    k = int(below[0])
    idx = np.arange(max(0, k - 2), min(len(t), k + 2))
    if len(idx) < 4 or np.any(y[idx] <= 0.0):
        return first_below(t, y, threshold)
    coef = np.polyfit(t[idx] - t[k - 1], np.log(y[idx]), 3)
    g = lambda s: np.polyval(coef, s) - math.log(threshold)  # noqa: E731
    return float(t[k - 1] + optimize.brentq(g, 0.0, t[k] - t[k - 1]))


def agreed_digits(a: float, b: float, max_sig: int = 6) -> int:
    """Largest number of significant digits (<= max_sig) to which b (the finer value) is determined:
    a, b - |a - b| and b + |a - b| all round to the same digits.  For a second-order method the error
    of b is about |a - b|/3, so a coincidence of rounding near a rounding boundary does not count."""
    delta = abs(a - b)
    for s in range(max_sig, 0, -1):
        if sig(a, s) == sig(b, s) == sig(b - delta, s) == sig(b + delta, s):
            return s
    return 0


def sig(x: float, s: int) -> str:
    out = f"{x:#.{s}g}"
    if "e" in out:
        mant, exp = out.split("e")
        return f"{mant.rstrip('.')}e{int(exp)}"
    return out.rstrip(".")


def fmt_kl(a: float, b: float) -> tuple[str, int]:
    """The value b printed to the digits on which the runs at h (a) and h/2 (b) agree."""
    if max(abs(a), abs(b)) < KL_FLOOR:
        return f"< {KL_FLOOR:.0e} (round-off)", -1
    s = agreed_digits(a, b)
    if s == 0:
        return f"{sig(a, 3)} / {sig(b, 3)} (not converged)", 0
    return sig(b, s), s


def fmt_time(a: float, b: float | None = None, horizon: float = HORIZON_B, decimals: int = 2) -> str:
    """A crossing time printed to the decimals (<= ``decimals``) on which the two resolutions agree."""
    if b is None:
        b = a
    if not math.isfinite(a) and not math.isfinite(b):
        return f"> {horizon:g}"
    if math.isfinite(a) != math.isfinite(b):
        return f"{a:.2f} / {b:.2f} (unresolved)"
    for d in range(decimals, -1, -1):
        if round(a, d) == round(b, d):
            return f"{b:.{d}f}"
    return f"{a:.1f} / {b:.1f} (unresolved)"


def fr_gap(plain: dict, tempered: dict) -> dict:
    """KL(tempered FR) - KL(plain FR) at the saved times common to both runs."""
    tp = np.round(plain["t"], 9)
    tt = np.round(tempered["t"], 9)
    common, ip, it = np.intersect1d(tp, tt, return_indices=True)
    gap = tempered["kl"][it] - plain["kl"][ip]
    scale = np.maximum(1.0, np.abs(plain["kl"][ip]))
    ok = bool(np.all(gap >= -1e-12 * scale))
    i = int(np.argmin(gap))
    neg = gap < 0.0
    kl_where_negative = float(np.max(np.maximum(np.abs(plain["kl"][ip][neg]), np.abs(tempered["kl"][it][neg])))) \
        if neg.any() else 0.0
    return {"times": int(common.size), "min_gap": float(gap[i]), "at": float(common[i]), "holds": ok,
            "min_scaled_gap": float(np.min(gap / scale)),
            "strict_after_0": bool(np.all(gap[common > 0] > 0.0)), "kl_where_negative": kl_where_negative}


# ============================================================================ analyses


def analyse_a(res: dict) -> dict:
    out: dict = {"table": [], "rates": [], "gaps": []}
    for target, (_, mean, var, cells) in GAUSS.items():
        for flow in FLOWS:
            for tempered in (False, True):
                r0, r1 = res[("a", target, flow, tempered, 0)], res[("a", target, flow, tempered, 1)]
                exact_curve = gaussian_exact_kl(target, flow, tempered, r1["t"])
                out.setdefault("exact", {})[(target, flow, tempered)] = (r1["t"], exact_curve)
                for t in TABLE_TIMES_A:
                    i0 = int(np.argmin(np.abs(r0["t"] - t)))
                    i1 = int(np.argmin(np.abs(r1["t"] - t)))
                    ex = float(exact_curve[i1])
                    a, b = float(r0["kl"][i0]), float(r1["kl"][i1])
                    text, digits = fmt_kl(a, b)
                    if digits > 0:
                        ex_text = sig(float(ex), digits)
                        agrees = ex_text == text
                    elif digits < 0:
                        ex_text = f"< {KL_FLOOR:.0e}" if abs(ex) < KL_FLOOR else sig(float(ex), 3)
                        agrees = abs(ex) < KL_FLOOR
                    else:
                        ex_text, agrees = sig(float(ex), 3), False
                    out["table"].append({"target": target, "flow": flow, "tempered": tempered, "t": t,
                                         "kl_h": a, "kl_h2": b, "exact": float(ex), "printed": text,
                                         "digits": digits, "exact_printed": ex_text, "exact_agrees": agrees})
                if target == "wide":
                    for t, (ref, unit) in zip(TABLE_TIMES_A, REFERENCE_TABLE[(flow, tempered)]):
                        e = out["table"][-len(TABLE_TIMES_A) + TABLE_TIMES_A.index(t)]
                        out.setdefault("reference", []).append(
                            {"flow": flow, "tempered": tempered, "t": t, "table": ref, "unit": unit, "grid": e["kl_h2"],
                             "exact": e["exact"], "agrees": abs(e["kl_h2"] - ref) <= unit})
                # exponential decay rate over the late window (after lambda = 1 for tempered runs)
                t1, kl1 = r1["t"], r1["kl"]
                start = 10.0 if tempered else 0.0
                k_start = float(np.interp(start, t1, kl1))
                win = (t1 >= start) & (kl1 > 1e-9) & (kl1 < 1e-2 * k_start)
                rate = {"target": target, "flow": flow, "tempered": tempered,
                        "theory": asymptotic_kl_rate(flow, var)}
                if win.sum() >= 5:
                    tw = t1[win]
                    exw = exact_curve[win]
                    rate.update(window=[float(tw[0]), float(tw[-1])], kl_range=[float(kl1[win].min()), float(kl1[win].max())],
                                grid=float(-np.polyfit(tw, np.log(kl1[win]), 1)[0]),
                                exact=float(-np.polyfit(tw, np.log(exw), 1)[0]))
                out["rates"].append(rate)
            for flow in FLOWS:
                g = fr_gap(res[("a", target, flow, False, 0)], res[("a", target, flow, True, 0)])
                out.setdefault("tempered_above", []).append({"target": target, "flow": flow, **g})
            for level in (0, 1):
                g = fr_gap(res[("a", target, "FR", False, level)], res[("a", target, "FR", True, level)])
                out["gaps"].append({"part": "a", "config": f"{target}, linear 10, level {level}", **g})
    return out


def analyse_b(res: dict) -> dict:
    out: dict = {"times": {}, "fr_exact": {}, "gaps": [], "unreached": {}, "interp": 0.0}
    from gridflow.core.problem import Problem

    for m in M_VALUES:
        case = load_case(CASE_DIR / "cp-bimodal.toml", overrides=bimodal_1d_overrides(m, LEVELS_B[1]["h"]))
        prob = Problem.from_case(case)
        ex = fr_exact_times(prob.grid, prob.path.log_reference, prob.path.log_target,
                            thresholds=(THRESHOLD, THRESHOLD * math.sqrt(5.0)))
        out["fr_exact"][m] = ex
        for flow in FLOWS:
            for sched in SCHEDULES_B:
                r0, r1 = res[("b", m, flow, sched, 0)], res[("b", m, flow, sched, 1)]
                a, b = first_below(r0["t"], r0["mmd2"]), first_below(r1["t"], r1["mmd2"])
                out["times"][(m, flow, sched)] = (a, b)
                out["interp"] = max(out["interp"], abs(crossing_cubic(r1["t"], r1["mmd2"]) - b) if math.isfinite(b)
                                    else 0.0)
                if not math.isfinite(a):
                    out["unreached"][(m, flow, sched)] = (float(r0["mmd2"][-1]), float(r1["mmd2"][-1]),
                                                          float(r0["mmd2"].min()))
        for sched in ("linear", "exponential", "hyperbolic"):
            for level in (0, 1):
                g = fr_gap(res[("b", m, "FR", "plain", level)], res[("b", m, "FR", sched, level)])
                out["gaps"].append({"part": "b", "config": f"m = {m}, {sched}, level {level}", **g})
    return out


def analyse_c(res: dict) -> dict:
    out: dict = {"rows": [], "gaps": [], "oracle": []}
    plain = {flow: first_below(res[("c", "plain", "-", flow, 0)]["t"], res[("c", "plain", "-", flow, 0)]["mmd2"])
             for flow in FLOWS}
    for rule, var, flow in _configs_c():
        r0, r1 = res[("c", rule, var, flow, 0)], res[("c", rule, var, flow, 1)]
        a, b = first_below(r0["t"], r0["mmd2"]), first_below(r1["t"], r1["mmd2"])

        def t_lam(r, level=0.99):
            return _first_at_least(r["t"], r["lam"], level)

        row = {"rule": rule, "variance": var, "flow": flow, "t_cross": (a, b), "plain": plain[flow],
               "t_lam99": (t_lam(r0), t_lam(r1)), "lam_at": {t: float(np.interp(t, r0["t"], r0["lam"]))
                                                           for t in (0.5, 1.0, 2.0, 5.0)},
               "kl_end": float(r0["kl"][-1])}
        if rule != "plain" and flow == "FR":
            tt = np.linspace(0.0, HORIZON_C, 10001)
            lam_o, _, t_hit = adaptive_oracle(rule, var, tt, with_hit=True)
            row["oracle_t_lam99"] = _first_at_least(tt, lam_o, 0.99)
            row["oracle_t_lam1"] = t_hit
        if rule != "plain" and (flow == "FR" or var == "path"):
            lam_o, _ = adaptive_oracle(rule, var, r0["t"]) if flow == "FR" else adaptive_oracle(rule, "path", r0["t"])
            err0 = float(np.max(np.abs(r0["lam"] - lam_o)))
            lam_o1, _ = adaptive_oracle(rule, var if flow == "FR" else "path", r1["t"])
            err1 = float(np.max(np.abs(r1["lam"] - lam_o1)))
            row["oracle_err"] = (err0, err1)
            out["oracle"].append({"rule": rule, "variance": var, "flow": flow, "err_h": err0, "err_h2": err1})
        out["rows"].append(row)
        if flow == "FR" and rule != "plain":
            for level in (0, 1):
                g = fr_gap(res[("c", "plain", "-", "FR", level)], res[("c", rule, var, "FR", level)])
                out["gaps"].append({"part": "c", "config": f"{rule}, variance {var}, level {level}", **g})
    return out


def _first_at_least(t: np.ndarray, y: np.ndarray, level: float) -> float:
    """First time y(t) >= level, linearly interpolated (inf: never)."""
    i = np.flatnonzero(y >= level)
    if i.size == 0:
        return math.inf
    k = int(i[0])
    if k == 0:
        return float(t[0])
    return float(t[k - 1] + (level - y[k - 1]) / (y[k] - y[k - 1]) * (t[k] - t[k - 1]))


def analyse_d(res: dict, b: dict) -> dict:
    out: dict = {"times": {}, "gaps": [], "max_dev": {}}
    thr1d = THRESHOLD * math.sqrt(5.0)
    for m in M_VALUES:
        for flow in FLOWS:
            for sched in SCHEDULES_B:
                r0 = res[("d", m, flow, sched, 0)]
                t0 = first_below(r0["t"], r0["mmd2"])
                r1 = res.get(("d", m, flow, sched, 1))
                t1 = first_below(r1["t"], r1["mmd2"]) if r1 is not None else None
                ref = res[("b", m, flow, sched, 1)]
                red = first_below(ref["t"], ref["mmd2"], thr1d)
                if flow == "FR":
                    red_exact = b["fr_exact"][m][thr1d]["times"][sched]
                else:
                    red_exact = None
                out["times"][(m, flow, sched)] = {"h": t0, "h2": t1, "reduction": red, "reduction_fr_exact": red_exact}
        for sched in ("linear", "exponential", "hyperbolic"):
            g = fr_gap(res[("d", m, "FR", "plain", 0)], res[("d", m, "FR", sched, 0)])
            out["gaps"].append({"part": "d", "config": f"2D m = {m}, {sched}, level 0", **g})
    for m, flow, sched in REFINED_D:
        if flow == "FR" and sched != "plain":
            g = fr_gap(res[("d", m, "FR", "plain", 1)], res[("d", m, "FR", sched, 1)])
            out["gaps"].append({"part": "d", "config": f"2D m = {m}, {sched}, level 1", **g})
    devs = [abs(v["h"] - v["reduction"]) for v in out["times"].values()
            if math.isfinite(v["h"]) and math.isfinite(v["reduction"])]
    out["max_dev"] = max(devs) if devs else 0.0
    return out


def analyse_particles(res: dict, b: dict) -> dict:
    out = {}
    for key, r in res.items():
        if key[0] != "p":
            continue
        _, kind, m, sched = key
        times = [first_below(r["t"], row) for row in r["mmd2"]]
        grid = b["times"][(m, "FR" if kind == "fr-is" else "W", sched)][1]
        out[(kind, m, sched)] = {"times": times, "grid": grid, "final": r["mmd2"][:, -1].tolist(),
                                 "reached": sum(math.isfinite(x) for x in times), "runs": len(times),
                                 "n": 1000}
    return out


# ============================================================================ the reproduction


def compute(*, progress: bool = False) -> dict:
    """Every grid solve and particle run: the full study (level 0), then the refinement runs."""
    res: dict = {}
    with Pool(progress=progress) as pool:
        res.update(pool.run(jobs_a() + jobs_b() + jobs_c() + jobs_d() + particle_jobs(), "study"))
        res.update(pool.run(refine_jobs_b(res) + refine_jobs_c(res) + refine_jobs_d(res), "refinement"))
    return res
