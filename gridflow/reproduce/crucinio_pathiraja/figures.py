"""The figures of the Crucinio & Pathiraja reproduction (``cp-*.png``)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from gridflow.reproduce.crucinio_pathiraja.cases import (FLOWS, GAUSS, HORIZON_B, HORIZON_C, KL_FLOOR, M_VALUES,
    RULES, SCHEDULES_B, SCHEDULE_LABELS)
from gridflow.reproduce.crucinio_pathiraja.mmd import THRESHOLD
from gridflow.reproduce.crucinio_pathiraja.oracles import adaptive_oracle


# ============================================================================ figures

FLOW_COLORS = {"W": "tab:blue", "WFR": "tab:green", "FR": "tab:red"}
SCHED_STYLES = {"plain": ("k", "-"), "linear": ("tab:orange", "--"), "exponential": ("tab:purple", "-."),
                "hyperbolic": ("tab:cyan", ":")}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _positive(y: np.ndarray, floor: float = 1e-14) -> np.ndarray:
    y = np.asarray(y, float).copy()
    y[y < floor] = np.nan
    return y


@contextmanager
def _figure(path: Path, *shape: int, title: str | None = None, rect: tuple | None = None, **options):
    """``(fig, axes)`` of ``plt.subplots(*shape, **options)``; after the block, the figure gets the
    ``title`` and a tight layout (within ``rect``), is written to ``path`` (110 dpi) and closed."""
    plt = _plt()
    fig, axes = plt.subplots(*shape, **options)
    try:
        yield fig, axes
        if title is not None:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout(rect=rect)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def figure_a_kl(res: dict, a: dict, target: str, path: Path) -> None:
    _, mean, var, _ = GAUSS[target]
    with _figure(path, figsize=(7.5, 4.8)) as (_, ax):
        for flow in FLOWS:
            for tempered in (False, True):
                r = res[("a", target, flow, tempered, 1)]
                keep = r["t"] <= 10.0 + 1e-9
                ls = "--" if tempered else "-"
                label = f"{'tempered ' if tempered else ''}{flow}"
                ax.semilogy(r["t"][keep], _positive(r["kl"][keep]), ls, color=FLOW_COLORS[flow], lw=1.8, label=label)
                tt, ex = a["exact"][(target, flow, tempered)]
                sel = (tt <= 10.0 + 1e-9) & (np.arange(tt.size) % 2 == 0)
                ax.semilogy(tt[sel], _positive(ex[sel]), ls="none", marker=".", ms=3, color="k", alpha=0.5)
        ax.plot([], [], "k.", label="exact (Gaussian moment ODE)")
        ax.axhline(KL_FLOOR, color="0.6", lw=0.8, ls=":")
        ax.text(0.2, KL_FLOOR * 2, "round-off floor of the grid KL", color="0.4", fontsize=8)
        ax.set_xlabel("t")
        ax.set_ylabel("KL(rho_t || pi)")
        ax.set_title(f"mu_0 = N(0,1) -> pi = N({mean:g}, {var:g}); tempered: lambda = min(t/10, 1)")
        ax.set_xlim(0, 10)
        ax.legend(fontsize=8, ncol=2)
        ax.grid(alpha=0.3, which="both")


def figure_a_rates(res: dict, a: dict, path: Path) -> None:
    with _figure(path, 1, 2, figsize=(11, 4.3)) as (_, axes):
        for ax, target in zip(axes, GAUSS):
            _, mean, var, _ = GAUSS[target]
            for flow in FLOWS:
                r = res[("a", target, flow, True, 1)]
                ax.semilogy(r["t"], _positive(r["kl"]), color=FLOW_COLORS[flow], lw=1.8, label=f"tempered {flow} (grid)")
                ex = a["exact"][(target, flow, True)][1]
                ax.semilogy(r["t"], _positive(ex), "k:", lw=1)
                rate = next(x for x in a["rates"] if x["target"] == target and x["flow"] == flow and x["tempered"])
                if "grid" in rate:
                    t0, t1 = rate["window"]
                    k0 = float(np.interp(t0, r["t"], r["kl"]))
                    tt = np.array([t0, t1])
                    ax.semilogy(tt, 3 * k0 * np.exp(-rate["theory"] * (tt - t0)), color=FLOW_COLORS[flow], lw=0.8,
                                ls="--")
            ax.plot([], [], "k:", label="exact (moment ODE)")
            ax.plot([], [], "0.3", ls="--", lw=0.8, label="slope = asymptotic rate (x3 offset)")
            ax.axvline(10.0, color="0.5", lw=0.8)
            ax.set_xlabel("t  (lambda = 1 from t = 10)")
            ax.set_ylabel("KL(rho_t || pi)")
            ax.set_title(f"pi = N({mean:g}, {var:g}): exponential decay after tempering")
            ax.set_ylim(1e-13, None)
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3, which="both")


def figure_b_times(times: dict, fr_exact: dict | None, path: Path, *, title: str, reduction: dict | None = None) -> None:
    with _figure(path, 1, 3, figsize=(13, 4.8), sharey=True, title=title, rect=(0, 0.07, 1, 1)) as (fig, axes):
        top = HORIZON_B * 1.45
        ms = np.array(M_VALUES, float)
        for ax, flow in zip(axes, FLOWS):
            for i, sched in enumerate(SCHEDULES_B):
                color, ls = SCHED_STYLES[sched]
                y = np.array([times[(m, flow, sched)] for m in M_VALUES], float)
                off = (i - 1.5) * 0.06
                ax.semilogy(ms + off, np.where(np.isfinite(y), y, np.nan), ls=ls, marker="o", color=color,
                            label=SCHEDULE_LABELS[sched])
                miss = ~np.isfinite(y)
                if miss.any():
                    ax.plot(ms[miss] + off, np.full(miss.sum(), top), ls="none", marker="^", mfc="none", color=color)
                if reduction is not None:
                    yr = np.array([reduction[(m, flow, sched)] for m in M_VALUES], float)
                    ax.plot(ms + off, np.where(np.isfinite(yr), yr, np.nan), ls="none", marker="x", color="k", ms=6)
                if fr_exact is not None and flow == "FR":
                    ye = np.array([fr_exact[m][THRESHOLD]["times"][sched] for m in M_VALUES], float)
                    ax.plot(ms + off, np.where(np.isfinite(ye), ye, np.nan), ls="none", marker="+", color="k", ms=9)
            ax.axhline(HORIZON_B, color="0.6", lw=0.8, ls=":")
            ax.set_title(f"{flow} flow")
            ax.set_xlabel("mode separation m")
            ax.set_xticks(ms)
            ax.grid(alpha=0.3, which="both")
        if fr_exact is not None:
            axes[-1].plot([], [], "k+", ls="none", label="FR exact: rho_t = pi_J(t)")
        if reduction is not None:
            axes[-1].plot([], [], "kx", ls="none", label="exact value from the 1D reduction")
        axes[-1].plot([], [], "k^", mfc="none", ls="none", label=f"not reached by t = {HORIZON_B:g}")
        axes[0].set_ylabel("time until MMD^2(rho_t, pi) < 0.01")
        axes[0].set_ylim(0.1, top * 1.3)
        handles, labels = axes[-1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)


def figure_b_curves(res: dict, path: Path) -> None:
    with _figure(path, 2, 3, figsize=(13, 7), sharex=True,
                 title="MMD^2 (kernel exp(-(x-y)^2)) to pi = 1/2 N(0,1) + 1/2 N(m,1), from N(0,1); "
                       "line: 0.01") as (_, axes):
        for row, m in zip(axes, (4, 10)):
            for ax, flow in zip(row, FLOWS):
                for sched in SCHEDULES_B:
                    color, ls = SCHED_STYLES[sched]
                    r = res[("b", m, flow, sched, 0)]
                    ax.semilogy(r["t"], _positive(r["mmd2"], 1e-16), ls=ls, color=color, label=SCHEDULE_LABELS[sched])
                ax.axhline(THRESHOLD, color="0.4", lw=0.8)
                ax.set_title(f"{flow}, m = {m}")
                ax.set_ylim(1e-8, 1)
                ax.grid(alpha=0.3, which="both")
                if ax is row[0]:
                    ax.set_ylabel("MMD^2(rho_t, pi)")
        for ax in axes[-1]:
            ax.set_xlabel("t")
        axes[0][0].legend(fontsize=7)


def figure_c_lambda(res: dict, path: Path) -> None:
    with _figure(path, 1, 3, figsize=(13, 4.2), sharey=True,
                 title="Adaptive tempering on 1/2 N(0,1) + 1/2 N(4,1) from N(0,1): lambda(t)") as (_, axes):
        for ax, rule in zip(axes, RULES):
            end = 0.0
            for flow in FLOWS:
                r = res[("c", rule, "density", flow, 0)]
                t99 = np.flatnonzero(r["lam"] >= 0.999)
                end = max(end, float(r["t"][t99[0]]) if t99.size else HORIZON_C)
                ax.plot(r["t"], r["lam"], color=FLOW_COLORS[flow], lw=1.8, label=f"{flow}, Var under rho_t")
            r = res[("c", rule, "path", "W", 0)]
            ax.plot(r["t"], r["lam"], "k--", lw=1.2, label="any flow, Var under pi_lambda")
            end = max(end, 1.0)
            tt = np.linspace(0.0, min(HORIZON_C, 1.3 * end), 200)
            lam_o, _ = adaptive_oracle(rule, "density", tt)
            ax.plot(tt, lam_o, ls="none", marker="o", mfc="none", ms=4, color="tab:red", label="ODE oracle, FR (rho_t)")
            lam_p, _ = adaptive_oracle(rule, "path", tt)
            ax.plot(tt, lam_p, ls="none", marker="x", ms=4, color="k", label="ODE oracle (pi_lambda)")
            ax.set_xlim(0, min(HORIZON_C, 1.3 * end))
            ax.set_title(f"rule: {rule}")
            ax.set_xlabel("t")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("lambda(t)")
        axes[-1].legend(fontsize=7, loc="lower right")


def figure_c_mmd(res: dict, path: Path) -> None:
    with _figure(path, 1, 3, figsize=(13, 4.2), sharey=True,
                 title="Adaptive rules (variance under rho_t) against the plain flow; line: 0.01") as (_, axes):
        styles = {"plain": ("k", "-"), "ess": ("tab:orange", "--"), "constant-rate": ("tab:purple", "-."),
                  "gradient-flow": ("tab:cyan", ":")}
        for ax, flow in zip(axes, FLOWS):
            for rule in ("plain",) + RULES:
                r = res[("c", rule, "density" if rule != "plain" else "-", flow, 0)]
                color, ls = styles[rule]
                ax.semilogy(r["t"], _positive(r["mmd2"], 1e-16), ls=ls, color=color, lw=1.6,
                            label="plain" if rule == "plain" else f"adaptive {rule}")
            r = res[("b", 4, flow, "linear", 0)]
            ax.semilogy(r["t"], _positive(r["mmd2"], 1e-16), color="0.6", lw=1, label="linear, min(t/60, 1)")
            ax.axhline(THRESHOLD, color="0.4", lw=0.8)
            ax.set_title(f"{flow} flow, m = 4")
            ax.set_xlabel("t")
            ax.set_xlim(0, HORIZON_C)
            ax.set_ylim(1e-12, 1)
            ax.grid(alpha=0.3, which="both")
        axes[0].set_ylabel("MMD^2(rho_t, pi)")
        axes[0].legend(fontsize=7)


def figure_particles(res: dict, path: Path) -> None:
    with _figure(path, 2, 3, figsize=(13, 7), sharey=True,
                 title="Particles against the exact PDE: 1/2 N(0,1) + 1/2 N(m,1) from N(0,1)") as (_, axes):
        rows = (("FR", "fr-is", (2, 4, 10), "tab:red", "FR particles (N = 1000, weights e^{J T})"),
                ("W", "ula", (4, 6, 10), "tab:blue", "ULA (N = 1000, dt = 0.02)"))
        for row, (flow, sampler, ms, color, label) in zip(axes, rows):
            for ax, m in zip(row, ms):
                g = res[("b", m, flow, "plain", 0)]
                ax.semilogy(g["t"], _positive(g["mmd2"], 1e-16), "k", lw=2, label=f"grid {flow} (exact PDE)")
                p = res[("p", sampler, m, "plain")]
                for i, mmd2 in enumerate(p["mmd2"]):
                    ax.semilogy(p["t"], _positive(mmd2, 1e-16), color=color, lw=0.8, alpha=0.7,
                                label=label if i == 0 else None)
                ax.set_title(f"{flow}, m = {m}")
        for ax in axes.ravel():
            ax.axhline(THRESHOLD, color="0.4", lw=0.8)
            ax.set_xlim(0, HORIZON_B)
            ax.set_ylim(1e-6, 1)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
        for ax in axes[-1]:
            ax.set_xlabel("t")
        for row in axes:
            row[0].set_ylabel("MMD^2 to pi (unbiased; < 0 not shown)")
