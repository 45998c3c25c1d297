"""The studies of the Chemseddine et al. reproduction: grid solves on refined grids, their Richardson
extrapolation (:class:`Refined`) and the significant digits printed from it."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from gridflow.core.problem import Problem
from gridflow.reproduce.chemseddine.cases import (ACTION_PANELS, FP2D_CHECK_TIMES, FP2D_END, FP2D_SAVES, FP_END,
    FP_H, FP_SAVES, FP_SNAPSHOTS, H_2D, I0_H, LAMBDAS, MIX_A, MIX_WEIGHTS, M_VALUES, PATH_H, PLOT_H, case_2d,
    fp_kinetic_energy, frames, mixture_path_case, teleport_fp_case, teleport_path_case)
from gridflow.reproduce.chemseddine.oracles import (TeleportExample, closed_form_l1, gauss_legendre_panels,
    mixture_kl_to_standard_normal, teleport_asymptote, teleport_exact_action, teleport_fp_exact)


# =========================================================================== convergence


@dataclass
class Refined:
    """A quantity on a sequence of grids h_0 > h_1 > ... (ratio 2) with its extrapolated value."""

    hs: list[float]
    values: list[float]
    order: float
    extra_error: float = 0.0
    exact: float | None = None
    estimate: float = field(init=False)
    error: float = field(init=False)
    richardson: list[float] = field(init=False)

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=float)
        factor = 2.0 ** self.order - 1.0
        r = v[1:] + (v[1:] - v[:-1]) / factor
        self.richardson = [float(x) for x in r]
        self.estimate = float(r[-1])
        change = abs(r[-1] - r[-2]) if r.size > 1 else abs(v[-1] - v[-2])
        self.error = float(abs(v[-1] - r[-1]) + change + self.extra_error)

    @property
    def digits(self) -> int:
        """Significant digits whose half unit exceeds the error estimate (1 to 7)."""
        return significant_digits(self.estimate, self.error)

    def text(self) -> str:
        return fmt(self.estimate, self.digits)

    def as_dict(self) -> dict:
        return {"h": self.hs, "values": self.values, "order": self.order, "richardson": self.richardson,
                "estimate": self.estimate, "error_estimate": self.error, "digits": self.digits,
                "exact": self.exact, "printed": self.text()}


def significant_digits(value: float, error: float, max_digits: int = 7) -> int:
    """Largest d <= max_digits with error <= half a unit in the d-th significant digit of value."""
    if value == 0.0 or not math.isfinite(value):
        return 1
    if error <= 0.0:
        return max_digits
    e = math.floor(math.log10(abs(value)))
    d = math.floor(e + 1 - math.log10(2.0 * error))
    return int(min(max_digits, max(1, d)))


def fmt(value: float, digits: int) -> str:
    """``value`` with ``digits`` significant digits (plain notation between 1e-3 and 1e6)."""
    if value == 0.0:
        return "0"
    e = math.floor(math.log10(abs(value)))
    if -3 <= e < 6:
        dec = max(0, digits - 1 - e)
        return f"{round(value, dec):.{dec}f}"
    mant = f"{value:.{digits - 1}e}"
    m, ex = mant.split("e")
    return f"{m}e{int(ex)}"


# =========================================================================== studies


class Log:
    def __init__(self, progress: bool) -> None:
        self.progress = progress
        self.start = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if self.progress:
            print(f"[chemseddine {time.perf_counter() - self.start:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _merge_times(*groups: Iterable[float]) -> list[float]:
    out = sorted({round(float(t), 15) for g in groups for t in g})
    return out


def teleport_study(log: Log) -> dict:
    """||v_t||^2 of the linear path at LAMBDAS, its action and length, for every m and h."""
    out: dict = {"m": list(M_VALUES), "lambdas": list(LAMBDAS), "h": list(PATH_H), "by_m": {}}
    for m in M_VALUES:
        rows, quad_err = _path_refinement(lambda h, ts: teleport_path_case(m, h, ts), log, f"teleport path m={m:g}")
        exact_ke = [TeleportExample(m, t).kinetic_energy() for t in LAMBDAS]
        exact_action, exact_length = teleport_exact_action(m, *gauss_legendre_panels())
        entry = {
            "ke": [Refined(list(PATH_H), [r[i] for r in rows["ke"]], 2.0, exact=exact_ke[i]).as_dict()
                   for i in range(len(LAMBDAS))],
            "action": Refined(list(PATH_H), rows["action"], 2.0, extra_error=quad_err["action"],
                              exact=exact_action).as_dict(),
            "length": Refined(list(PATH_H), rows["length"], 2.0, extra_error=quad_err["length"],
                              exact=exact_length).as_dict(),
            "quadrature_check": quad_err,
            "asymptote_v1": teleport_asymptote(m),
        }
        out["by_m"][str(m)] = entry
    return out


def _path_refinement(make_case: Callable[[float, list[float]], dict], log: Log, label: str) -> tuple[dict, dict]:
    """||v_t||^2 at LAMBDAS, action and length of a 1D path on every h of PATH_H.

    The time integrals use composite Gauss–Legendre quadrature (ACTION_PANELS x ACTION_NODES); on the
    coarsest grid the rule with half as many panels is evaluated too, and the relative change
    (the quadrature error does not depend on h) is returned, scaled to the finest values.
    """
    nodes, weights = gauss_legendre_panels()
    nodes_c, weights_c = gauss_legendre_panels(ACTION_PANELS // 2)
    rows: dict = {"ke": [], "action": [], "length": []}
    rel: dict = {}
    for h in PATH_H:
        coarse = h == PATH_H[0]
        times = _merge_times(LAMBDAS, nodes, nodes_c) if coarse else _merge_times(LAMBDAS, nodes)
        _, gen = frames(make_case(h, times))
        ke = {round(f.time, 15): f.kinetic_energy for f in gen}
        k = lambda ts: np.array([ke[round(float(t), 15)] for t in ts])  # noqa: E731
        rows["ke"].append([float(v) for v in k(LAMBDAS)])
        rows["action"].append(float(np.sum(weights * k(nodes))))
        rows["length"].append(float(np.sum(weights * np.sqrt(k(nodes)))))
        if coarse:
            for name, fine, crude in (("action", rows["action"][-1], float(np.sum(weights_c * k(nodes_c)))),
                                      ("length", rows["length"][-1], float(np.sum(weights_c * np.sqrt(k(nodes_c)))))):
                rel[name] = abs(fine - crude) / abs(fine)
        log(f"{label} h={h:g}: ||v_1||^2 = {rows['ke'][-1][-1]:.6e}")
    quad_err = {name: rel[name] * abs(rows[name][-1]) for name in ("action", "length")}
    quad_err.update({f"relative_{name}": rel[name] for name in ("action", "length")})
    return rows, quad_err


def teleport_profiles(log: Log) -> dict:
    """Curves for the figures at h = PLOT_H: ||v_t||^2 over t, densities, v_1(x), ||v_1||^2 over m."""
    t_grid = np.linspace(0.0, 1.0, 401)
    snaps = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
    out: dict = {"t": t_grid.tolist(), "snapshots": list(snaps), "by_m": {}}
    for m in M_VALUES:
        case = teleport_path_case(m, PLOT_H, _merge_times(t_grid, snaps))
        problem, gen = frames(case)
        ke, dens, v1 = [], {}, None
        for f in gen:
            ke.append(f.kinetic_energy)
            for s in snaps:
                if abs(f.time - s) < 1e-12:
                    dens[s] = f.log_rho.copy()
            if f.time == 1.0:
                v1 = f.velocity[0].copy()
        x = problem.grid.axes[0]
        t_exact = np.linspace(0.0, 1.0, 21)
        right = x > m / 2
        with np.errstate(under="ignore"):
            mass2 = {s: float(np.exp(ld[right]).sum() * problem.grid.spacing[0]) for s, ld in dens.items()}
        mass2_exact = {}
        for s in snaps:
            ex = TeleportExample(m, s)
            mass2_exact[s] = float((ex.mass[2] + ex.mass[3]) / ex.Z)
        out["by_m"][str(m)] = {
            "x": x, "ke": np.array(ke), "log_density": dens, "v1": v1, "mass_right": mass2,
            "mass_right_exact": mass2_exact,
            "t_exact": t_exact, "ke_exact": np.array([TeleportExample(m, t).kinetic_energy() for t in t_exact]),
            "v1_exact": TeleportExample(m, 1.0).velocity(x),
        }
        log(f"teleport profile m={m:g}")
    ms = np.arange(1, 51)
    ke1 = []
    for m in ms:
        case = teleport_path_case(int(m), PLOT_H, [1.0])
        _, gen = frames(case)
        ke1.append([f.kinetic_energy for f in gen][-1])
    out["m_sweep"] = {"m": ms, "ke1": np.array(ke1),
                      "exact": np.array([TeleportExample(float(m), 1.0).kinetic_energy() for m in ms]),
                      "asymptote": np.array([teleport_asymptote(float(m)) for m in ms])}
    log("teleport ||v_1||^2 over m")
    return out


def fp_times(end: float = FP_END, n: int = FP_SAVES) -> np.ndarray:
    """Saved times t = s^2, s uniform on [0, sqrt(end)] (I(t) is smooth in s = sqrt(t) near t = 0)."""
    s = np.linspace(0.0, math.sqrt(end), n)
    t = s * s
    t[-1] = end
    return t


def _simpson_sqrt_time(values: np.ndarray, times: np.ndarray) -> float:
    """∫ values dt with t = s^2 (uniform s): Simpson's rule in s of values * 2 s."""
    from scipy.integrate import simpson

    s = np.sqrt(times)
    return float(simpson(values * 2 * s, x=s))


def fp_run(case: Mapping) -> dict:
    """Fisher information (= ||v_t||^2 with a = 1), KL and the saved log densities of a FP case."""
    problem, gen = frames(case)
    ts, ke, kl, dens = [], [], [], {}
    for f in gen:
        ts.append(f.time)
        ke.append(fp_kinetic_energy(f, case))
        kl.append(f.diagnostics["kl"])
        dens[round(f.time, 12)] = f.log_rho
    return {"problem": problem, "t": np.array(ts), "ke": np.array(ke), "kl": np.array(kl), "log_density": dens}


def _on_grid(ts: np.ndarray, subset: Iterable[float]) -> np.ndarray:
    """Mask of the entries of ``ts`` that belong to ``subset`` (to 1e-12)."""
    sub = np.asarray(list(subset), dtype=float)
    return np.array([bool(np.any(np.abs(sub - t) < 1e-12)) for t in ts])


def teleport_fp_initial_fisher(m: float, h: float) -> float:
    """I(rho_1 | N(0, 1)) on the grid: the ``fisher_information`` diagnostic of the FP case at t = 0."""
    from gridflow.analysis.diagnostics import fisher_information

    problem = Problem.from_case(teleport_fp_case(m, h))
    return fisher_information(problem.log_initial, problem.path.log_target, problem.grid)


def teleport_fp_study(log: Log) -> dict:
    """The Fokker–Planck (gradient-flow) interpolation from rho_1 towards N(0, 1), for every m and h."""
    quad_times = fp_times()
    times = _merge_times(quad_times, FP_SNAPSHOTS)
    out: dict = {"h": list(FP_H), "h_I0": list(I0_H), "end": FP_END, "by_m": {}, "profiles": {}}

    def derived(r: dict) -> dict:
        sel = _on_grid(r["t"], quad_times)
        t, ke = r["t"][sel], r["ke"][sel]
        i_one = int(np.argmin(np.abs(r["t"] - 1.0)))
        return {"I1": float(r["ke"][i_one]), "action": _simpson_sqrt_time(ke, t),
                "action_half": _simpson_sqrt_time(ke[::2], t[::2]),
                "length": _simpson_sqrt_time(np.sqrt(ke), t),
                "length_half": _simpson_sqrt_time(np.sqrt(ke[::2]), t[::2]),
                "kl0": float(r["kl"][0]), "klT": float(r["kl"][-1])}

    # time-step check: the local tolerance divided by 10 on one configuration
    m_chk, h_chk = 15, FP_H[1]
    chk = [derived(fp_run(teleport_fp_case(m_chk, h_chk, times, tolerance=tol))) for tol in (1e-7, 1e-8)]
    rel_time = {k: abs(chk[0][k] - chk[1][k]) / abs(chk[1][k]) for k in ("I1", "action", "length")}
    out["time_check"] = {"m": m_chk, "h": h_chk, "tolerance_1e-7": chk[0], "tolerance_1e-8": chk[1],
                         "relative_difference": rel_time}
    log(f"FP time-tolerance check: relative changes {rel_time}")
    for m in M_VALUES:
        rows: dict = {k: [] for k in ("I1", "action", "action_half", "length", "length_half", "kl0", "klT")}
        i0_frames = []
        for h in FP_H:
            r = fp_run(teleport_fp_case(m, h, times))
            i0_frames.append(float(r["ke"][0]))
            for k, v in derived(r).items():
                rows[k].append(v)
            if h == PLOT_H:
                out["profiles"][str(m)] = {"t": r["t"], "ke": r["ke"], "kl": r["kl"],
                                           "x": r["problem"].grid.axes[0], "log_density": r["log_density"]}
            log(f"FP m={m:g} h={h:g}: action = {rows['action'][-1]:.10g}")
        i0 = [teleport_fp_initial_fisher(m, h) for h in I0_H]
        assert np.allclose(i0[:len(FP_H)], i0_frames, rtol=1e-12, atol=0.0)
        exact = teleport_fp_exact(m)
        quad = {k: abs(rows[k][-1] - rows[f"{k}_half"][-1]) for k in ("action", "length")}
        extra = {k: quad.get(k, 0.0) + rel_time[k] * abs(rows[k][-1]) for k in ("I1", "action", "length")}
        out["by_m"][str(m)] = {
            "exact_kl": exact["kl"], "exact_I0": exact["fisher"],
            "I0": Refined(list(I0_H), i0, 1.0, exact=exact["fisher"]).as_dict(),
            "I1": Refined(list(FP_H), rows["I1"], 2.0, extra_error=extra["I1"]).as_dict(),
            "action": Refined(list(FP_H), rows["action"], 2.0, extra_error=extra["action"]).as_dict(),
            "length": Refined(list(FP_H), rows["length"], 2.0, extra_error=extra["length"]).as_dict(),
            "kl0": Refined(list(FP_H), rows["kl0"], 2.0, exact=exact["kl"]).as_dict(),
            "kl_drop": Refined(list(FP_H), [a - b for a, b in zip(rows["kl0"], rows["klT"])], 2.0).as_dict(),
            "klT": rows["klT"][-1],
            "quadrature_check": {"action_all_saves": rows["action"][-1],
                                 "action_every_other_save": rows["action_half"][-1]},
        }
    return out


def mixture_study(log: Log) -> dict:
    """Linear paths from N(0,1) to two-mode mixtures: mass crossing a barrier versus a symmetric split."""
    out: dict = {"a": list(MIX_A), "h": list(PATH_H), "weights": {k: list(v) for k, v in MIX_WEIGHTS.items()},
                 "by_kind": {}, "profiles": {}}
    for kind, w in MIX_WEIGHTS.items():
        out["by_kind"][kind] = {}
        for a in MIX_A:
            rows, quad_err = _path_refinement(lambda h, ts: mixture_path_case(a, w, h, ts), log,
                                              f"mixture {kind} a={a}")
            out["by_kind"][kind][str(a)] = {
                "ke": [Refined(list(PATH_H), [r[i] for r in rows["ke"]], 2.0).as_dict() for i in range(len(LAMBDAS))],
                "action": Refined(list(PATH_H), rows["action"], 2.0, extra_error=quad_err["action"]).as_dict(),
                "length": Refined(list(PATH_H), rows["length"], 2.0, extra_error=quad_err["length"]).as_dict(),
                "quadrature_check": quad_err,
                "kl_bound": mixture_kl_to_standard_normal(a, w),
            }
        # profiles for the figure
        t_grid = np.linspace(0.0, 1.0, 201)
        snaps = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
        out["profiles"][kind] = {}
        for a in MIX_A:
            case = mixture_path_case(a, w, PLOT_H, _merge_times(t_grid, snaps))
            problem, gen = frames(case)
            ke, dens = [], {}
            for f in gen:
                ke.append(f.kinetic_energy)
                if any(abs(f.time - s) < 1e-12 for s in snaps) and a == 4:
                    dens[round(f.time, 12)] = f.log_rho.copy()
            out["profiles"][kind][str(a)] = {"t": t_grid, "ke": np.array(ke), "x": problem.grid.axes[0],
                                             "log_density": dens}
    return out


def study_2d(log: Log) -> dict:
    """2D: linear path from N(0, I) to the four-mode mixture versus the FP flow from the mixture."""
    # path: Gauss–Legendre panels refined towards t = 1 (||v_t||^2 grows steeply there)
    edges = [0.0, 0.25, 0.5, 0.75, 0.875, 0.9375, 1.0]
    nodes, weights = gauss_legendre_panels(nodes=5, edges=edges)
    path_times = _merge_times(LAMBDAS, (0.25, 0.75), nodes)
    out: dict = {"h": list(H_2D), "path": {}, "fp": {}}
    for h in H_2D:
        case = case_2d("path-2d", h, path_times)
        problem, gen = frames(case)
        ts, ke, dens = [], [], {}
        for f in gen:
            ts.append(f.time)
            ke.append(f.kinetic_energy)
            if h == H_2D[-1] and any(abs(f.time - s) < 1e-12 for s in (0.0, 0.5, 0.75, 0.9, 1.0)):
                dens[round(f.time, 12)] = f.log_rho.copy()
        ts, ke = np.array(ts), np.array(ke)
        k = lambda t: float(ke[np.argmin(np.abs(ts - t))])  # noqa: E731
        out["path"][str(h)] = {"t": ts, "ke": ke, "ke_at": {str(t): k(t) for t in LAMBDAS},
                               "action": float(np.sum(weights * np.array([k(t) for t in nodes]))),
                               "max": float(ke.max()), "log_density": dens, "grid": problem.grid}
        log(f"2D path h={h:g}: ||v_1||^2 = {k(1.0):.6g}")
    times = fp_times(FP2D_END, FP2D_SAVES)
    all_times = _merge_times(times, FP2D_CHECK_TIMES)
    for h in H_2D:
        case = case_2d("fp-2d", h, all_times)
        problem, gen = frames(case)
        ts, ke, kl, l1, dens = [], [], [], {}, {}
        for f in gen:
            ts.append(f.time)
            ke.append(fp_kinetic_energy(f, case))
            kl.append(f.diagnostics["kl"])
            if any(abs(f.time - s) < 1e-12 for s in (0.0,) + FP2D_CHECK_TIMES):
                l1[str(round(f.time, 12))] = closed_form_l1(case, f, problem.grid)
                if h == H_2D[-1]:
                    dens[round(f.time, 12)] = f.log_rho.copy()
        ts, ke, kl = np.array(ts), np.array(ke), np.array(kl)
        sel = _on_grid(ts, times)
        out["fp"][str(h)] = {"t": ts, "ke": ke, "kl": kl, "l1": l1,
                             "action": _simpson_sqrt_time(ke[sel], ts[sel]),
                             "action_half": _simpson_sqrt_time(ke[sel][::2], ts[sel][::2]), "kl0": float(kl[0]),
                             "klT": float(kl[-1]), "log_density": dens, "grid": problem.grid}
        log(f"2D FP h={h:g}: max closed-form L1 = {max(l1.values()):.2e}")
    return out
