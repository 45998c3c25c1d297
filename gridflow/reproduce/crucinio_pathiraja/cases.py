"""Settings and grid solves of the Crucinio & Pathiraja reproduction: constants, case-file overrides and the jobs (one
grid solve each) of parts (a)-(d)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gridflow.analysis.exact import REFERENCE_KL_TABLE
from gridflow.reproduce.crucinio_pathiraja.mmd import first_below
from gridflow.reproduce.common import CWD_PAPERS, SOURCE_PAPERS


TITLE = ("Crucinio & Pathiraja, 'Properties and limitations of geometric tempering for gradient flow "
         "dynamics' (TMLR; arXiv 2604.20301)")

#: where the case files live (the repository's ``cases/papers``; the working directory's as a fallback)
CASE_DIR = SOURCE_PAPERS if SOURCE_PAPERS.is_dir() else Path.cwd() / CWD_PAPERS

FLOWS = {"W": "fokker-planck", "WFR": "wfr", "FR": "fisher-rao"}
M_VALUES = (1, 2, 4, 6, 8, 10)
HORIZON_B = 60.0
HORIZON_C = 100.0
RULES = ("ess", "constant-rate", "gradient-flow")
VARIANCES = ("density", "path")
#: lambda(t) = 1 - 1/(2 + t/0.3) of part (b), as the formula of an ``expression`` schedule
HYPERBOLIC_FORMULA = "1 - 1/(2 + t/0.3)"
#: schedules of part (b): label -> override (None: plain).  The 1D runs of "hyperbolic" use
#: cp-bimodal-hyperbolic.toml, whose schedule is this one; the 2D runs pass it as an override.
SCHEDULES_B = {
    "plain": None,
    "linear": '{ kind = "linear", duration = 60.0 }',
    "exponential": '{ kind = "exponential", rate = %r }' % (1.0 / 30.0),
    "hyperbolic": '{ kind = "expression", lambda = "%s" }' % HYPERBOLIC_FORMULA,
}
SCHEDULE_LABELS = {
    "plain": "plain (lambda = 1)",
    "linear": "linear, min(t/60, 1)",
    "exponential": "exponential, 1 - e^(-t/30)",
    "hyperbolic": "1 - 1/(2 + t/0.3)",
}
#: a grid KL below this is not resolved (not converged under refinement at the tolerances used)
KL_FLOOR = 1e-11


# ============================================================================ schedule 1 - 1/(2 + t/0.3)


def hyperbolic(t):
    """lambda(t) = 1 - 1/(2 + t/0.3) (lambda(0) = 1/2), vectorised."""
    return 1.0 - 1.0 / (2.0 + np.asarray(t, dtype=float) / 0.3)


# ============================================================================ jobs (one grid solve each)


@dataclass(frozen=True)
class Job:
    """One grid solve: a case file of ``cases/papers`` with overrides; ``key`` names the result."""

    key: tuple
    case: str
    overrides: tuple[str, ...] = ()
    mmd: bool = True
    cost: float = 1.0


# ============================================================================ case overrides


def bimodal_1d_overrides(m: float, h: float) -> list[str]:
    """Target 1/2 N(0,1) + 1/2 N(m,1) on the box [-8, m + 8] with cell width h."""
    n = int(math.ceil((m + 16.0) / h - 1e-9))
    return [f"target.components[1].mean=[{float(m)!r}]", f"grid.upper=[{-8.0 + n * h!r}]", f"grid.cells=[{n}]"]


def bimodal_2d_overrides(m: float, h: float) -> list[str]:
    """Second mode at (m, m)/sqrt 2 (distance m), box [-6, m/sqrt2 + 6]^2 with cell width h."""
    a = m / math.sqrt(2.0)
    n = int(math.ceil((a + 12.0) / h - 1e-9))
    up = -6.0 + n * h
    return [f"target.components[1].mean=[{a!r}, {a!r}]", f"grid.upper=[{up!r}, {up!r}]", f"grid.cells=[{n}, {n}]"]


def _schedule_override(spec: str | None) -> list[str]:
    return [] if spec is None else [f"tempering.schedule={spec}"]


# ---------------------------------------------------------------------------- (a) Gaussian targets

GAUSS = {  # name -> (case file, target mean, target variance, cells at level 0)
    "wide": ("cp-gaussian-wide.toml", 1.0, 5.0, 3700),
    "narrow": ("cp-gaussian-narrow.toml", 20.0, 0.1, 3100),
}
LEVELS_A = {0: {"refine": 1, "tol": 1e-6}, 1: {"refine": 2, "tol": 1e-7}}
TABLE_TIMES_A = (1.0, 2.0, 5.0, 10.0)
#: the reference table :data:`gridflow.analysis.exact.REFERENCE_KL_TABLE` for pi = N(1, 5): (value as printed, one unit of its last digit), t = 1, 2, 5, 10
REFERENCE_TABLE = {(short, tempered): REFERENCE_KL_TABLE[(FLOWS[short], tempered)]
                   for short in FLOWS for tempered in (False, True)}
#: the finer runs of the tempered flows go on after lambda = 1 (t = 10) to measure the decay rates
RATE_END_A = {"wide": 30.0, "narrow": 14.0}


def jobs_a() -> list[Job]:
    jobs = []
    for target, (file, _, _, cells) in GAUSS.items():
        for flow, kind in FLOWS.items():
            for tempered in (False, True):
                for level, spec in LEVELS_A.items():
                    end = RATE_END_A[target] if (level == 1 and tempered) else 10.0
                    ov = [f"flow.kind={kind}", f"grid.cells=[{cells * spec['refine']}]", f"time.end={end!r}",
                          f"time.tolerance={spec['tol']!r}"]
                    ov += _schedule_override('{ kind = "linear", duration = 10.0 }' if tempered else None)
                    cost = (6.0 if target == "narrow" and kind != "fisher-rao" else 1.0) * (1 + level)
                    jobs.append(Job(("a", target, flow, tempered, level), file, tuple(ov), mmd=False, cost=cost))
    return jobs


# ---------------------------------------------------------------------------- (b) bimodal 1D

#: level 0 is the full study; level 1 (h/2, tolerance/10) re-runs each configuration to just past
#: its level-0 crossing time (to t = 60 when level 0 does not cross)
LEVELS_B = {0: {"h": 0.02, "save": 0.1, "tol": 1e-6}, 1: {"h": 0.01, "save": 0.1, "tol": 1e-7}}


def refined_end(t_cross: float, horizon: float) -> float:
    """End time of a refinement run: past the coarse crossing time (the horizon if none)."""
    return horizon if not math.isfinite(t_cross) else float(min(horizon, math.ceil(1.2 * t_cross + 2.0)))


def _bimodal_job(part: str, m: float, flow: str, sched: str, level: int, levels: dict, dim: int,
                 end: float = HORIZON_B) -> Job:
    """A bimodal run: 1D from cp-bimodal(-hyperbolic).toml, 2D from cp-bimodal-2d.toml (the 2D runs
    of the 1 - 1/(2 + t/0.3) schedule take the expression schedule of cp-bimodal-hyperbolic.toml as an
    override)."""
    spec = levels[level]
    if dim == 1:
        file = "cp-bimodal-hyperbolic.toml" if sched == "hyperbolic" else "cp-bimodal.toml"
        ov = bimodal_1d_overrides(m, spec["h"])
        cells = (m + 16.0) / spec["h"]
    else:
        file = "cp-bimodal-2d.toml"
        ov = bimodal_2d_overrides(m, spec["h"])
        cells = ((m / math.sqrt(2.0) + 12.0) / spec["h"]) ** 2
    ov += [f"flow.kind={FLOWS[flow]}", f"time.save_every={spec['save']!r}", f"time.tolerance={spec['tol']!r}",
           f"time.end={end!r}"]
    if sched != "hyperbolic" or dim == 2:
        ov += _schedule_override(SCHEDULES_B[sched])
    cost = (cells / 1000.0) ** (0.3 if dim == 1 else 0.9) * (1.5 if flow != "FR" else 0.4) * end / HORIZON_B
    return Job((part, m, flow, sched, level), file, tuple(ov), cost=cost)


def jobs_b() -> list[Job]:
    return [_bimodal_job("b", m, flow, sched, 0, LEVELS_B, 1)
            for m in M_VALUES for flow in FLOWS for sched in SCHEDULES_B]


def refine_jobs_b(res: dict) -> list[Job]:
    jobs = []
    for m in M_VALUES:
        for flow in FLOWS:
            for sched in SCHEDULES_B:
                r = res[("b", m, flow, sched, 0)]
                end = refined_end(first_below(r["t"], r["mmd2"]), HORIZON_B)
                jobs.append(_bimodal_job("b", m, flow, sched, 1, LEVELS_B, 1, end=end))
    return jobs


# ---------------------------------------------------------------------------- (c) adaptive rules

LEVELS_C = LEVELS_B
M_C = 4.0


def _adaptive_job(rule: str, var: str, flow: str, level: int, end: float = HORIZON_C) -> Job:
    spec = LEVELS_C[level]
    ov = bimodal_1d_overrides(M_C, spec["h"]) + [
        f"flow.kind={FLOWS[flow]}", f"time.save_every={spec['save']!r}", f"time.tolerance={spec['tol']!r}",
        f"time.end={end!r}"]
    cost = (2.0 if flow != "FR" else 0.8) * end / HORIZON_C
    if rule == "plain":
        return Job(("c", "plain", "-", flow, level), "cp-bimodal.toml", tuple(ov), cost=cost)
    ov += [f"tempering.schedule.rule={rule}", f"tempering.schedule.variance={var}"]
    return Job(("c", rule, var, flow, level), "cp-bimodal-adaptive.toml", tuple(ov), cost=cost)


def _configs_c() -> list[tuple[str, str, str]]:
    return [(rule, var, flow) for flow in FLOWS for rule in RULES for var in VARIANCES] + \
           [("plain", "-", flow) for flow in FLOWS]


def jobs_c() -> list[Job]:
    return [_adaptive_job(rule, var, flow, 0) for rule, var, flow in _configs_c()]


def refine_jobs_c(res: dict) -> list[Job]:
    jobs = []
    for rule, var, flow in _configs_c():
        r = res[("c", rule, var, flow, 0)]
        jobs.append(_adaptive_job(rule, var, flow, 1, end=refined_end(first_below(r["t"], r["mmd2"]), HORIZON_C)))
    return jobs


# ---------------------------------------------------------------------------- (d) 2D analogue

LEVELS_D = {0: {"h": 0.2, "save": 0.2, "tol": 1e-6}, 1: {"h": 0.1, "save": 0.1, "tol": 1e-7}}
#: configurations re-run at h/2 (to just past their coarse crossing time)
REFINED_D = [(m, flow, sched) for m in (2, 4) for flow in FLOWS for sched in ("plain", "hyperbolic")] + \
            [(2, "FR", "linear"), (2, "FR", "exponential")]


def jobs_d() -> list[Job]:
    return [_bimodal_job("d", m, flow, sched, 0, LEVELS_D, 2)
            for m in M_VALUES for flow in FLOWS for sched in SCHEDULES_B]


def refine_jobs_d(res: dict) -> list[Job]:
    jobs = []
    for m, flow, sched in REFINED_D:
        r = res[("d", m, flow, sched, 0)]
        jobs.append(_bimodal_job("d", m, flow, sched, 1, LEVELS_D, 2,
                                 end=refined_end(first_below(r["t"], r["mmd2"]), HORIZON_B)))
    return jobs
