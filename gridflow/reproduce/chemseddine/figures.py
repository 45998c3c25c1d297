"""The figures of the Chemseddine et al. reproduction (``figures/chemseddine/*.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gridflow.reproduce.chemseddine.cases import (CLOSED_FORM_L1_TOLERANCE, FIGURE_DIR, H_2D, MIX_A, M_VALUES,
    PLOT_H, case_2d)
from gridflow.reproduce.chemseddine.oracles import mixture_cell_averages, ou_mixture


# =========================================================================== figures


def make_figures(out_dir: Path, tp: dict, prof: dict, fp: dict, mix: dict, d2: dict) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir = out_dir / FIGURE_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    colors = {1: "C0", 5: "C1", 15: "C2", 50: "C3"}

    def save(fig, name: str) -> None:
        p = fig_dir / f"{name}.png"
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths[name] = p

    # --- Figure 1: densities of the linear path
    fig, axes = plt.subplots(2, len(M_VALUES), figsize=(16, 6.5))
    cmap = plt.get_cmap("viridis")
    snaps = prof["snapshots"]
    for j, m in enumerate(M_VALUES):
        p = prof["by_m"][str(m)]
        x = p["x"]
        for i, s in enumerate(snaps):
            rho = np.exp(p["log_density"][s])
            c = cmap(i / (len(snaps) - 1))
            axes[0, j].plot(x, rho, color=c, label=f"t = {s:g}")
            axes[1, j].semilogy(x, rho, color=c, label=f"t = {s:g}")
        axes[0, j].set_xlim(-3, m + 3)
        axes[1, j].set_xlim(-5, m + 5)
        axes[1, j].set_ylim(max(1e-40, float(np.exp(p["log_density"][1.0]).min()) / 10), 2)
        axes[0, j].set_title(f"m = {m}")
        axes[1, j].set_xlabel("x")
    axes[0, 0].set_ylabel(r"$\rho_t(x)$")
    axes[1, 0].set_ylabel(r"$\rho_t(x)$ (log scale)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(r"Linear interpolation of the energies, $\rho_t \propto \rho_0^{1-t}\rho_1^t$, "
                 r"$\rho_0 \propto e^{-|x|}$, $\rho_1 \propto e^{-2\min(|x|,|x-m|)}$ (grid h = %g)" % PLOT_H)
    save(fig, "fig1-path-densities")

    # --- Figure 2: ||v_t||^2 over t and ||v_1||^2 over m
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    for m in M_VALUES:
        p = prof["by_m"][str(m)]
        ax1.semilogy(prof["t"], p["ke"], color=colors[m], label=f"m = {m} (grid)")
        ax1.semilogy(p["t_exact"], p["ke_exact"], "o", mfc="none", color=colors[m], ms=4)
    ax1.plot([], [], "ko", mfc="none", ms=4, label="exact (continuum)")
    ax1.set_xlabel("t")
    ax1.set_ylabel(r"$\|v_t\|^2_{L^2(\rho_t)}$")
    ax1.set_title("kinetic energy of the linear path")
    ax1.legend(fontsize=8)
    sw = prof["m_sweep"]
    ax2.semilogy(sw["m"], sw["ke1"], "-", color="C3", label=f"grid (h = {PLOT_H:g})")
    ax2.semilogy(sw["m"], sw["exact"], "ko", mfc="none", ms=4, label="exact (continuum)")
    ax2.semilogy(sw["m"], sw["asymptote"], "k--", lw=0.8, label=r"$(m-\frac{1}{2})^2 e^m/8$")
    ax2.set_xlabel("m")
    ax2.set_ylabel(r"$\|v_1\|^2_{L^2(\rho_1)}$")
    ax2.set_title(r"kinetic energy at $t = 1$ against the separation $m$")
    ax2.legend(fontsize=8)
    save(fig, "fig2-kinetic-energy")

    # --- Figure 3: v_1(x)
    fig, axes = plt.subplots(1, len(M_VALUES), figsize=(16, 3.8))
    for j, m in enumerate(M_VALUES):
        p = prof["by_m"][str(m)]
        x = p["x"]
        axes[j].semilogy(x, np.abs(p["v1"]), color=colors[m], label="grid")
        axes[j].semilogy(x, np.abs(p["v1_exact"]), "k--", lw=0.8, label="exact")
        axes[j].axvline(m / 2, color="grey", lw=0.5, ls=":")
        axes[j].set_xlim(-5, m + 5)
        axes[j].set_title(f"m = {m}")
        axes[j].set_xlabel("x")
    axes[0].set_ylabel(r"$|v_1(x)|$")
    axes[0].legend(fontsize=8)
    fig.suptitle(r"velocity of the linear path at $t = 1$ (dotted: the valley $x = m/2$)")
    save(fig, "fig3-velocity-t1")

    # --- Figure 4: gradient-flow interpolation
    fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(17, 4.6))
    p15 = fp["profiles"]["15"]
    for i, s in enumerate((0.0, 0.25, 0.5, 1.0, 2.0, 10.0)):
        key = min(p15["log_density"], key=lambda t: abs(t - s))
        ax0.plot(p15["x"], np.exp(p15["log_density"][key]), color=cmap(i / 5), label=f"t = {key:.3g}")
    ax0.set_xlim(-5, 20)
    ax0.set_xlabel("x")
    ax0.set_ylabel(r"$\rho_t(x)$")
    ax0.set_title("Fokker–Planck flow from $\\rho_1$ (m = 15) to N(0, 1)")
    ax0.legend(fontsize=8)
    for m in M_VALUES:
        p = fp["profiles"][str(m)]
        ax1.semilogy(p["t"], p["ke"], color=colors[m], label=f"m = {m}")
        ax1.axhline(fp["by_m"][str(m)]["exact_I0"], color=colors[m], lw=0.5, ls=":")
    ax1.set_xlabel("t")
    ax1.set_ylabel(r"$\|v_t\|^2 = I(\rho_t\,|\,N(0,1))$")
    ax1.set_title("kinetic energy of the gradient-flow interpolation")
    ax1.legend(fontsize=8)
    ms = np.array(M_VALUES, dtype=float)
    lin = [tp["by_m"][str(m)]["action"]["estimate"] for m in M_VALUES]
    lin1 = [tp["by_m"][str(m)]["ke"][-1]["estimate"] for m in M_VALUES]
    fpa = [fp["by_m"][str(m)]["action"]["estimate"] for m in M_VALUES]
    klb = [fp["by_m"][str(m)]["exact_kl"] for m in M_VALUES]
    ax2.semilogy(ms, lin1, "s-", color="C3", label=r"linear path: $\|v_1\|^2$")
    ax2.semilogy(ms, lin, "o-", color="C1", label=r"linear path: $\int_0^1\|v_t\|^2dt$")
    ax2.semilogy(ms, fpa, "o-", color="C0", label=r"gradient flow: $\int_0^{10}\|v_t\|^2dt$")
    ax2.semilogy(ms, [fp["by_m"][str(m)]["I0"]["estimate"] for m in M_VALUES], "s--", color="C0", mfc="none",
                 label=r"gradient flow: $\max_t\|v_t\|^2$")
    ax2.semilogy(ms, klb, "k+", ms=10, label=r"bound KL$(\rho_1\,|\,N(0,1))$")
    ax2.set_xlabel("m")
    ax2.set_ylabel("kinetic energy / action")
    ax2.set_title("linear path versus gradient-flow interpolation")
    ax2.legend(fontsize=8)
    save(fig, "fig4-gradient-flow")

    # --- Figure 5: mixtures
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    for kind, ax, title in (("crossing", axes[0], "w = (0.2, 0.8)"), ("symmetric", axes[1], "w = (0.5, 0.5)")):
        pr = mix["profiles"][kind]["4"]
        for i, (s, ld) in enumerate(sorted(pr["log_density"].items())):
            ax.plot(pr["x"], np.exp(ld), color=cmap(i / 5), label=f"t = {s:g}")
        ax.set_xlim(-8, 8)
        ax.set_xlabel("x")
        ax.set_ylabel(r"$\rho_t(x)$")
        ax.set_title(f"linear path N(0,1) → w₁N(-4,1) + w₂N(4,1), {title}")
        ax.legend(fontsize=7)
    for j, a in enumerate(MIX_A):
        for kind, ls in (("crossing", "-"), ("symmetric", "--")):
            pr = mix["profiles"][kind][str(a)]
            axes[2].semilogy(pr["t"], pr["ke"], ls, color=f"C{j}", label=f"a = {a}, {kind}")
    axes[2].set_xlabel("t")
    axes[2].set_ylabel(r"$\|v_t\|^2_{L^2(\rho_t)}$")
    axes[2].set_title("kinetic energy: crossing (solid) vs symmetric (dashed)")
    axes[2].legend(fontsize=7, ncol=2)
    save(fig, "fig5-mixtures")

    # --- Figure 6: 2D
    h = str(H_2D[-1])
    pth, fpd = d2["path"][h], d2["fp"][h]
    g = pth["grid"]
    ext = [g.lower[0], g.upper[0], g.lower[1], g.upper[1]]
    fig, axes = plt.subplots(2, 6, figsize=(20, 7))
    for i, (s, ld) in enumerate(sorted(pth["log_density"].items())):
        axes[0, i].imshow(np.exp(ld).T, origin="lower", extent=ext, cmap="magma")
        axes[0, i].set_title(f"linear path, t = {s:g}")
    for i, (s, ld) in enumerate(sorted(fpd["log_density"].items())[:5]):
        axes[1, i].imshow(np.exp(ld).T, origin="lower", extent=ext, cmap="magma")
        axes[1, i].set_title(f"Fokker–Planck, t = {s:g}")
    for ax in axes[:, :5].ravel():
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    # last column: the kinetic energy of each row's interpolation, both resolutions
    for ax, (key, color, label, ylabel, title) in zip(axes[:, 5], (
            ("path", "C3", "linear path", r"$\|v_t\|^2$", "linear path"),
            ("fp", "C0", "Fokker–Planck", r"$\|v_t\|^2 = I(\rho_t\,|\,N(0,I))$", "gradient-flow interpolation"))):
        for hh, ls in zip(H_2D, (":", "-")):
            run = d2[key][str(hh)]
            ax.semilogy(run["t"], run["ke"], ls, color=color, label=f"{label}, h = {hh:g}")
        ax.set_xlabel("t")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.suptitle("2D: N(0, I) ↔ four-mode mixture (weights 0.1, 0.2, 0.3, 0.4 at (3,3), (-3,3), (-3,-3), (3,-3))")
    fig.tight_layout()
    save(fig, "fig6-2d")

    # --- Figure 7: 2D closed form
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.3))
    for hh, mk in zip(H_2D, ("s", "o")):
        l1 = d2["fp"][str(hh)]["l1"]
        ts = sorted(float(t) for t in l1)
        ax1.semilogy(ts, [l1[str(round(t, 12))] for t in ts], mk + "-", label=f"h = {hh:g}")
    ax1.axhline(CLOSED_FORM_L1_TOLERANCE, color="k", ls="--", lw=0.8, label="test tolerance 2e-3 (h = 0.05)")
    ax1.set_xlabel("t")
    ax1.set_ylabel(r"$\|\rho^{grid}_t - \rho^{exact}_t\|_{L^1}$")
    ax1.set_title("Gaussian-mixture closed form of the FP flow")
    ax1.legend(fontsize=8)
    case = case_2d("fp-2d", H_2D[-1])
    grid = fpd["grid"]
    init = case["initial"]
    w, mu, cov = ou_mixture(init["weights"], [c["mean"] for c in init["components"]],
                            [c["cov"] for c in init["components"]], 1.0)
    exact = mixture_cell_averages(grid, w, mu, cov)
    err = np.exp(fpd["log_density"][1.0]) - exact
    im = ax2.imshow(err.T, origin="lower", extent=ext, cmap="RdBu_r",
                    vmin=-np.abs(err).max(), vmax=np.abs(err).max())
    fig.colorbar(im, ax=ax2)
    ax2.set_xlabel("x")
    ax2.set_ylabel("y")
    ax2.set_title("grid − exact at t = 1 (h = 0.05)")
    save(fig, "fig7-2d-closed-form")
    return paths
