"""Figures of a trajectory: density snapshots and diagnostics (matplotlib, Agg)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gridflow.distributions import normalise  # noqa: E402


def _snapshot_indices(n: int, k: int) -> list[int]:
    return sorted(set(np.linspace(0, n - 1, min(k, n)).round().astype(int).tolist()))


def _tempered(tr, lam: float) -> np.ndarray:
    log = tr.log_reference + lam * (tr.log_target - tr.log_reference)
    return np.exp(normalise(log, tr.grid))


def _diagnostics(axes, tr) -> None:
    ax_kl, ax_lam = axes
    positive = [np.where(v > 0, v, np.nan) for v in (tr.kl, tr.kl_tempered)]   # log scale: drop exact zeros
    ax_kl.semilogy(tr.time, positive[0], label=r"KL($\rho_t\,\|\,\pi$)")
    ax_kl.semilogy(tr.time, positive[1], "--", label=r"KL($\rho_t\,\|\,\pi_{\lambda(t)}$)")
    top = np.nanmax(np.concatenate(positive)) if np.isfinite(np.concatenate(positive)).any() else 1.0
    bottom = np.nanmin(np.concatenate(positive)) if np.isfinite(np.concatenate(positive)).any() else 1e-16
    ax_kl.set_ylim(max(bottom, top * 1e-14) / 2, top * 2)
    ax_kl.set_xlabel("t")
    ax_kl.set_ylabel("KL divergence")
    ax_kl.legend(fontsize=8)
    ax_kl.grid(alpha=0.3)
    ax_lam.plot(tr.time, tr.lambda_, color="C2", label=r"$\lambda(t)$")
    ax_lam.set_ylim(-0.05, 1.05)
    ax_lam.set_xlabel("t")
    ax_lam.set_ylabel(r"$\lambda$", color="C2")
    mass_ax = ax_lam.twinx()
    mass_ax.plot(tr.time, tr.mass - 1.0, color="C3", lw=0.8)
    mass_ax.set_ylabel("mass - 1", color="C3")
    mass_ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax_lam.grid(alpha=0.3)


def plot_trajectory(tr, path: str | os.PathLike, *, snapshots: int = 6) -> None:
    """Write a figure of ``tr`` (a :class:`~gridflow.trajectory.Trajectory`) to ``path``."""
    n = len(tr.time)
    idx = _snapshot_indices(n, snapshots) if n else []
    title = f"{tr.attrs.get('flow', '')} flow — status {tr.status}"
    if tr.dim == 1:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [2, 1, 1]})
        ax = axes[0]
        cmap = plt.get_cmap("viridis")
        x = tr.x
        for j, i in enumerate(idx):
            ax.plot(x, tr.density[i], color=cmap(j / max(1, len(idx) - 1)), lw=1.4, label=f"t = {tr.time[i]:.3g}")
        ax.plot(x, np.exp(tr.log_target), "k--", lw=1.2, label=r"target $\pi$")
        if n and np.any(tr.lambda_ < 1.0):
            ax.plot(x, _tempered(tr, float(tr.lambda_[-1])), ":", color="gray", lw=1.2,
                    label=rf"$\pi_\lambda$, $\lambda$ = {tr.lambda_[-1]:.3g}")
        ax.set_xlabel("x")
        ax.set_ylabel(r"density $\rho_t(x)$")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        _diagnostics(axes[1:], tr)
    else:
        k = len(idx)
        fig = plt.figure(figsize=(3.4 * (k + 1), 6.6))
        gs = fig.add_gridspec(2, k + 1)
        extent = [tr.grid.lower[0], tr.grid.upper[0], tr.grid.lower[1], tr.grid.upper[1]]
        for j, i in enumerate(idx):
            ax = fig.add_subplot(gs[0, j])
            ax.imshow(tr.density[i].T, origin="lower", extent=extent, aspect="auto", cmap="magma")
            ax.set_title(f"t = {tr.time[i]:.3g}, λ = {tr.lambda_[i]:.2g}", fontsize=9)
            ax.set_xlabel("x")
            ax.set_ylabel("y")
        ax = fig.add_subplot(gs[0, k])
        ax.imshow(np.exp(tr.log_target).T, origin="lower", extent=extent, aspect="auto", cmap="magma")
        ax.set_title(r"target $\pi$", fontsize=9)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        _diagnostics((fig.add_subplot(gs[1, : (k + 1) // 2]), fig.add_subplot(gs[1, (k + 1) // 2:])), tr)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
