"""Figures of a trajectory: density snapshots and diagnostics (matplotlib, Agg)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gridflow.core.distributions import normalise  # noqa: E402


def _snapshot_indices(n: int, k: int) -> list[int]:
    return sorted(set(np.linspace(0, n - 1, min(k, n)).round().astype(int).tolist()))


def _tempered(tr, lam: float) -> np.ndarray:
    log = tr.log_reference + lam * (tr.log_target - tr.log_reference)
    return np.exp(normalise(log, tr.grid))


def _case_name(tr) -> str:
    """``"NAME: "`` from the case stored in the file, or ``""``."""
    name = tr.case.get("name", "")
    return f"{name}: " if name else ""


def _diagnostics(axes, tr) -> None:
    ax_kl, ax_lam = axes
    positive = [np.where(v > 0, v, np.nan) for v in (tr.kl, tr.kl_tempered)]   # log scale: drop exact zeros
    ax_kl.semilogy(tr.time, positive[0], label=r"KL($\rho_t\,\|\,\pi$)")
    ax_kl.semilogy(tr.time, positive[1], "--", label=r"KL($\rho_t\,\|\,\pi_{\lambda(t)}$)")
    label = "KL divergence"
    if tr.kinetic_energy is not None:  # path flow: the action of the prescribed curve
        energy = np.where(tr.kinetic_energy > 0, tr.kinetic_energy, np.nan)
        what = "kinetic energy" if tr.velocity is not None else "transport kinetic energy"
        ax_kl.semilogy(tr.time, energy, color="C4", label=what + r" $\|v_t\|^2_{L^2(\rho_t)}$")
        positive.append(energy)
        label = "KL divergence, kinetic energy"
    estimate = tr.extra.get("error_estimate")
    if estimate is not None and np.isfinite(estimate).any():  # written by run --error-estimate
        estimate = np.where(estimate > 0, estimate, np.nan)
        ax_kl.semilogy(tr.time, estimate, ":", color="C5", label="estimated L1 error (Richardson)")
        positive.append(estimate)
        label += ", L1 error"
    values = np.concatenate(positive)
    top = np.nanmax(values) if np.isfinite(values).any() else 1.0
    bottom = np.nanmin(values) if np.isfinite(values).any() else 1e-16
    ax_kl.set_ylim(max(bottom, top * 1e-14) / 2, top * 2)
    ax_kl.set_xlabel("t")
    ax_kl.set_ylabel(label)
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


def figure_formats() -> list[str]:
    """File extensions (without the dot) matplotlib can write a figure in."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def check_figure_path(path: str | os.PathLike) -> None:
    """Raise :class:`~gridflow.errors.InputError` unless ``path`` ends in an extension matplotlib can write."""
    from pathlib import Path

    from gridflow.errors import InputError

    suffix = Path(path).suffix.lower().lstrip(".")
    formats = figure_formats()
    if suffix not in formats:
        found = f"ends in .{suffix}" if suffix else "has no extension"
        raise InputError(f"The figure file {os.fspath(path)!r} {found}; the format is chosen by the extension: use "
                         f"one of {', '.join('.' + f for f in formats)} (e.g. .png).")


def plot_trajectory(tr, path: str | os.PathLike, *, snapshots: int = 6) -> None:
    """Write a figure of ``tr`` (a :class:`~gridflow.io.trajectory.Trajectory`) to ``path`` (format by its extension)."""
    check_figure_path(path)
    n = len(tr.time)
    idx = _snapshot_indices(n, snapshots) if n else []
    title = f"{_case_name(tr)}{tr.attrs.get('flow', '')} flow — status {tr.status}"
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


def animate_trajectory(tr, path: str | os.PathLike, *, fps: int = 12, max_frames: int = 120) -> int:
    """Render the evolution of ``tr`` as an animated GIF at ``path``; returns the frame count.

    1D: the density with the target and the current tempered target pi_lambda(t).  2D: a heat
    map of the density with a fixed colour scale.  At most ``max_frames`` evenly spaced saved
    frames are drawn.
    """
    from matplotlib.animation import FuncAnimation, PillowWriter

    from gridflow.errors import InputError

    path = os.fspath(path)
    if not path.lower().endswith(".gif"):
        raise InputError(f"The animation file {path!r} must end in .gif (it is written as an animated GIF).")
    n = len(tr.time)
    if n == 0:
        raise InputError(f"{tr.path or 'The trajectory'} holds no frames: nothing to animate.")
    idx = _snapshot_indices(n, max_frames)
    flow = tr.attrs.get("flow", "")
    if tr.dim == 1:
        fig, ax = plt.subplots(figsize=(7, 4))
        top = float(max(np.max(tr.density[idx]), np.exp(tr.log_target).max())) * 1.08
        ax.plot(tr.x, np.exp(tr.log_target), "k--", lw=1.2, label=r"target $\pi$")
        (tempered,) = ax.plot(tr.x, _tempered(tr, float(tr.lambda_[0])), ":", color="gray", lw=1.2,
                              label=r"$\pi_{\lambda(t)}$")
        (line,) = ax.plot(tr.x, tr.density[0], color="C0", lw=1.6, label=r"$\rho_t$")
        ax.set_ylim(0, top)
        ax.set_xlabel("x")
        ax.set_ylabel("density")
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)

        def draw(i: int):
            line.set_ydata(tr.density[i])
            tempered.set_ydata(_tempered(tr, float(tr.lambda_[i])))
            ax.set_title(f"{flow} flow: t = {tr.time[i]:.3g}, λ = {tr.lambda_[i]:.3g}, KL = {tr.kl[i]:.3g}")
            return line, tempered
    else:
        fig, ax = plt.subplots(figsize=(5.6, 4.8))
        extent = [tr.grid.lower[0], tr.grid.upper[0], tr.grid.lower[1], tr.grid.upper[1]]
        image = ax.imshow(tr.density[0].T, origin="lower", extent=extent, aspect="auto", cmap="magma",
                          vmin=0.0, vmax=float(np.max(tr.density[idx])))
        fig.colorbar(image, ax=ax, label="density")
        ax.set_xlabel("x")
        ax.set_ylabel("y")

        def draw(i: int):
            image.set_data(tr.density[i].T)
            ax.set_title(f"{flow} flow: t = {tr.time[i]:.3g}, λ = {tr.lambda_[i]:.3g}, KL = {tr.kl[i]:.3g}",
                         fontsize=9)
            return (image,)

    draw(idx[0])  # the title takes its place before the layout is fixed
    fig.tight_layout()
    animation = FuncAnimation(fig, draw, frames=idx, blit=False)
    try:
        animation.save(path, writer=PillowWriter(fps=fps), dpi=80)
    except OSError as exc:
        raise InputError(f"Cannot write the animation {path} ({exc}); choose a writable path.") from exc
    finally:
        plt.close(fig)
    return len(idx)
