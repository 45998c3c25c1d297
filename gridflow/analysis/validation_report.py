"""Reading a validation study (:mod:`gridflow.analysis.validation`): its text summary and its figure."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


# ============================================================================================
# report and plot
# ============================================================================================

def _fmt_fit(fit: dict) -> str:
    if fit.get("slope") is None:
        return "n/a"
    return f"{fit['slope']:+.3f} [{fit['ci'][0]:+.3f}, {fit['ci'][1]:+.3f}] ({len(fit['used'])} points)"


def format_study(study: dict) -> str:
    """A plain-text report of a study."""
    c = study["confidence"]
    lines = [f"validate {study['case']}: sampler {study['sampler']} ({study['flow']}), t = {study['time']:g}, "
             f"{study['replicates']} replicates, {int(round(100 * c))}% intervals",
             f"grid reference: {study['reference']['source']} (lambda = {study['reference']['lambda']:.4g}, "
             f"KL(rho_t||pi) = {study['reference']['kl']:.4g})"]
    for k in study["metrics"]:
        lines.append("")
        lines.append(f"{k}:   mean   [iid floor]   excess [CI]" + ("   bias [CI]" if "bias" in
                                                                    study["rows"][0]["metrics"][k] else ""))
        for r in study["rows"]:
            m = r["metrics"][k]
            e = m["excess"]
            text = (f"  N={r['particles']:<7d} h={r['step']:<8g} {m['mean']:.4g} [{m['floor']:.4g}]   "
                    f"{e['value']:+.3g} [{e['ci'][0]:+.3g}, {e['ci'][1]:+.3g}]")
            if "bias" in m:
                b = m["bias"]
                text += f"   {b['value']:.3g} [{b['ci'][0]:.3g}, {b['ci'][1]:.3g}]"
            if study["rows"][0].get("ess") is not None and r["ess"] < r["particles"]:
                text += f"   ESS {r['ess']:.4g}"
            if (r.get("replicate_test") or {}).get("p_value") is not None:
                text += f"   replicate test p {r['replicate_test']['p_value']:.3g}"
            lines.append(text)
        fits = study["slopes"]["step"][k]["fits"]
        if fits:
            lines.append(f"  slope of {study['slopes']['step'][k]['quantity']} in h: "
                         + "; ".join(f"N={n} {_fmt_fit(fit)}" for n, fit in fits.items()))
        fits = study["slopes"]["particles"][k]["fits"]
        if fits:
            lines.append("  slope of excess in N: " + "; ".join(f"h={h} {_fmt_fit(fit)}" for h, fit in fits.items()))
    lines.append("")
    lines.append("(n/a: fewer than two points whose interval excludes 0; increase N or --replicates)")
    if any((r.get("replicate_test") or {}).get("p_value") is not None for r in study["rows"]):
        lines.append("(replicate test p: Hotelling T^2 of the replicates' masses in equal-mass bins of rho_T, valid "
                     "whatever the correlation within an ensemble; small p: the law differs from rho_T)")
    v = study.get("verdict")
    if v:
        lines.append("")
        if v["flagged"]:
            lines.append("FLAGGED: the excess over the iid floor does not shrink")
            lines.extend(f"  {r}" for r in v["reasons"])
        else:
            lines.append("not flagged: wherever the excess is resolved it shrinks with h or with N "
                         "(or no direction could be decided)")
        lines.append(f"  (rule: {v['rule']})")
    if any("p_value" in r for r in study["rows"]):
        lines.append("")
        for r in study["rows"]:
            if "p_value" in r:
                lines.append(f"  N={r['particles']} h={r['step']:g}: median p-value {r['p_value']['median']:.3g}, "
                             f"rejected at 1% in {100 * r['p_value']['rejected_at_1pct']:.0f}% of replicates")
    return "\n".join(lines)


def plot_study(study: dict, path: str | os.PathLike, *, metrics: Sequence[str] | None = None) -> Path:
    """Log–log figure: per metric, bias (or excess) against h for each N, and excess against N for
    each h with the iid floor; error bars are the intervals, dashed lines the fitted slopes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(metrics or study["metrics"])[:4]
    fig, axes = plt.subplots(len(metrics), 2, figsize=(10, 3.4 * len(metrics)), squeeze=False)
    rows = study["rows"]
    for i, k in enumerate(metrics):
        ax_h, ax_n = axes[i]
        qkey = study["slopes"]["step"][k]["quantity"]
        for c, n in enumerate(study["particles"]):
            sel = [r for r in rows if r["particles"] == n]
            _errorbars(ax_h, [r["step"] for r in sel], [r["metrics"][k][qkey] for r in sel], f"C{c}", f"N={n}")
            fit = study["slopes"]["step"][k]["fits"].get(str(n))
            _fit_line(ax_h, fit, f"C{c}")
        ax_h.set_xscale("log")
        ax_h.set_yscale("log")
        ax_h.set_xlabel("step h")
        ax_h.set_ylabel(f"{k}: {qkey}")
        ax_h.grid(alpha=0.3, which="both")
        _legend(ax_h)
        for c, h in enumerate(study["steps"]):
            sel = [r for r in rows if r["step"] == h]
            _errorbars(ax_n, [r["particles"] for r in sel], [r["metrics"][k]["excess"] for r in sel], f"C{c}",
                       f"h={h:g}")
            _fit_line(ax_n, study["slopes"]["particles"][k]["fits"].get(repr(h)), f"C{c}")
        ns = study["particles"]
        ax_n.plot(ns, [study["floor"][str(n)][k]["mean"] for n in ns], "k:s", lw=1, ms=3, label="iid floor (mean)")
        ax_n.set_xscale("log")
        ax_n.set_yscale("log")
        ax_n.set_xlabel("particles N")
        ax_n.set_ylabel(f"{k}: excess over the iid floor")
        ax_n.grid(alpha=0.3, which="both")
        _legend(ax_n)
    fig.suptitle(f"{study['case']}: {study['sampler']} at t = {study['time']:g} "
                 f"({study['replicates']} replicates, {int(round(100 * study['confidence']))}% intervals)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _legend(ax):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _errorbars(ax, x, quantities, color, label):
    """Values with their intervals; a value whose interval reaches 0 (not resolved) is an open
    marker with only its upper bar."""
    x = np.asarray(x, float)
    v = np.asarray([q["value"] for q in quantities], float)
    lo = np.asarray([q["ci"][0] for q in quantities], float)
    hi = np.asarray([q["ci"][1] for q in quantities], float)
    pos = np.isfinite(v) & (v > 0)
    if not pos.any():
        return
    resolved = pos & np.isfinite(lo) & (lo > 0)
    ax.plot(x[pos], v[pos], "-", color=color, lw=1)
    up = np.clip(np.nan_to_num(hi - v), 0, None)
    if resolved.any():
        ax.errorbar(x[resolved], v[resolved], yerr=np.vstack([v - lo, up])[:, resolved], fmt="o", color=color,
                    label=label, capsize=3, ms=4)
    loose = pos & ~resolved
    if loose.any():
        ax.errorbar(x[loose], v[loose], yerr=np.vstack([np.zeros(loose.sum()), up[loose]]), fmt="o", mfc="none",
                    color=color, capsize=3, ms=4, label=None if resolved.any() else f"{label} (interval includes 0)")


def _fit_line(ax, fit, color):
    if not fit or fit.get("slope") is None:
        return
    used = np.asarray(fit["used"], float)
    xs = np.geomspace(used.min(), used.max(), 20)
    ax.plot(xs, np.exp(fit["intercept"]) * xs ** fit["slope"], "--", color=color, lw=1,
            label=f"slope {fit['slope']:+.2f} ± {(fit['ci'][1] - fit['ci'][0]) / 2:.2f}")
