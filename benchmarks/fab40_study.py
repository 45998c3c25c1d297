"""FAB-40 convergence study: L1 to the closed form versus cells and time, per flux.

Fluxes: ``scharfetter-gummel``, ``log-mean``, ``log-quadratic`` (centre values) and
``log-quadratic/cell-averages`` (the same flux with ``flow.values = "cell-averages"``: the state is
cell averages, compared with the closed form's exact cell averages; the others with its centre values).

Each configuration (cells per axis, flux) runs in its own process (so that the peak memory,
``resource.getrusage(RUSAGE_SELF).ru_maxrss``, is that run's alone), one at a time, through the same
code path as ``gridflow run`` (:func:`gridflow.io.runner.run` writing a trajectory file, which is then read
back and compared with the closed form at every saved time).  Results are appended to a JSON file, so an
interrupted study continues where it stopped; then the figures ``docs/figures/fab40_l1_cells.png`` and
``docs/figures/fab40_l1_time.png`` and the markdown table ``docs/figures/fab40_table.md`` are written.

    python benchmarks/fab40_study.py                       # the study of docs/fab40.md
    python benchmarks/fab40_study.py --cells 256 512 --flux log-mean --end 0.5
    python benchmarks/fab40_study.py --cells 256 384 512 --flux log-quadratic/cell-averages --tolerance 1e-5
    python benchmarks/fab40_study.py --plot-only           # figures and table from the JSON
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gridflow.reproduce import fab40  # noqa: E402

FLUX_LABEL = {"scharfetter-gummel": "Scharfetter-Gummel", "log-mean": "log-mean",
              "log-quadratic": "log-quadratic", "log-quadratic/cell-averages": "log-quadratic, cell averages"}
FLUX_STYLE = {"scharfetter-gummel": "o-", "log-mean": "s-", "log-quadratic": "^-", "log-quadratic/cell-averages": "D-"}


def one_run(cells: int, flux: str, end: float, tolerance: float) -> dict:
    """Run the FAB-40 case at ``cells``^2 with ``flux`` to ``end``; L1 per saved time, wall time, peak RSS."""
    import warnings

    from gridflow.io.case import parse_case
    from gridflow.io.runner import run
    from gridflow.io.trajectory import open_trajectory

    times = [s for s in fab40.SAVE_TIMES if s <= end]
    name, _, values = flux.partition("/")
    text = fab40.fp_case_text(cells=cells, flux=name, save_times=times, tolerance=tolerance, values=values or None)
    case = parse_case(text, origin="fab40")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fab40.h5"
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run(case, output=out)
        wall = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_SELF)
        peak_gb = usage.ru_maxrss / 2**20
        cpu = usage.ru_utime + usage.ru_stime
        tr = open_trajectory(out)
        averages = values == "cell-averages"
        l1 = {f"{float(t):g}": fab40.l1_error(tr.grid, tr.density[k], float(t), cell_averages=averages)
              for k, t in enumerate(tr.time)}
        attrs = dict(tr.attrs)
        steps = int(attrs.get("total_steps", 0))
        peclet = float(attrs.get("max_cell_peclet", float("nan")))
    return dict(cells=cells, flux=flux, end=end, tolerance=tolerance, h=2 * fab40.BOX / cells, l1=l1,
                wall_s=wall, cpu_s=cpu, peak_gb=peak_gb, steps=steps, max_cell_peclet=peclet)


def _key(r: dict) -> tuple:
    return (r["cells"], r["flux"], r["end"], r["tolerance"])


def plot(results: list[dict], fig_dir: Path) -> None:
    """Write fab40_l1_cells.png, fab40_l1_time.png and fab40_table.md into ``fig_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    tmarks = ["0.5", "1", "3", "7"]
    fig, axes = plt.subplots(1, len(tmarks), figsize=(4 * len(tmarks), 3.6), sharey=True)
    for ax, tm in zip(axes, tmarks):
        for flux, style in FLUX_STYLE.items():
            rs = sorted((r for r in results if r["flux"] == flux and tm in r["l1"]), key=lambda r: r["cells"])
            if rs:
                ax.loglog([r["h"] for r in rs], [r["l1"][tm] for r in rs], style, label=FLUX_LABEL[flux])
        ax.axhline(1e-3, color="gray", lw=0.8, ls=":")
        ax.set_title(f"t = {tm}")
        ax.set_xlabel("cell width h")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("L1 to the closed form")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(fig_dir / "fab40_l1_cells.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in sorted(results, key=lambda r: (r["flux"], r["cells"])):
        ts = sorted((float(k), v) for k, v in r["l1"].items() if float(k) > 0)
        ax.semilogy([a for a, _ in ts], [b for _, b in ts], FLUX_STYLE[r["flux"]],
                    label=f"{FLUX_LABEL[r['flux']]}, {r['cells']}²")
    ax.axhline(1e-3, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("t")
    ax.set_ylabel("L1 to the closed form")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(fig_dir / "fab40_l1_time.png", dpi=110)
    plt.close(fig)

    all_t = sorted({k for r in results for k in r["l1"] if float(k) > 0}, key=float)
    head = "| flux | cells | h | max cell Péclet | " + " | ".join(f"L1 t={t}" for t in all_t) + \
        " | wall time (s) | CPU time (s) | peak memory (GB) | steps |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in sorted(results, key=lambda r: (r["flux"], r["cells"], r["end"])):
        cols = [f"{r['l1'][t]:.2e}" if t in r["l1"] else "" for t in all_t]
        pe = r["max_cell_peclet"] if r["max_cell_peclet"] == r["max_cell_peclet"] else r["h"] * (fab40.BOX - r["h"])
        lines.append(f"| {FLUX_LABEL[r['flux']]} | {r['cells']}² | {r['h']:.4g} | {pe:.3g} | "
                     + " | ".join(cols) + f" | {r['wall_s']:.0f} | {r.get('cpu_s', float('nan')):.0f} | {r['peak_gb']:.2f} | {r['steps']} |")
    (fig_dir / "fab40_table.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run the configurations not yet in the results file (one process each), then plot."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--flux", nargs="+", default=["scharfetter-gummel", "log-mean"])
    p.add_argument("--end", type=float, default=7.0)
    p.add_argument("--tolerance", type=float, default=1e-6)
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "fab40_results.json")
    p.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child process: one run, JSON out
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one_run(args.cells[0], args.flux[0], args.end, args.tolerance)))
        return 0
    results = json.loads(args.results.read_text()) if args.results.exists() else []
    if not args.plot_only:
        done = {_key(r) for r in results}
        for cells in args.cells:
            for flux in args.flux:
                if (cells, flux, args.end, args.tolerance) in done:
                    continue
                cmd = [sys.executable, __file__, "--one", "--cells", str(cells), "--flux", flux,
                       "--end", repr(args.end), "--tolerance", repr(args.tolerance)]
                env = dict(os.environ, PYTHONPATH=str(ROOT))
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
                r = json.loads(out.strip().splitlines()[-1])
                print(f"{flux:>20} {cells:5d}^2: " + ", ".join(f"t={k}: {v:.2e}" for k, v in r["l1"].items())
                      + f"; {r['wall_s']:.0f} s, {r['peak_gb']:.2f} GB", flush=True)
                results.append(r)
                args.results.write_text(json.dumps(results, indent=1))
    plot(results, args.figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
