"""docs/benchmarks.md and its figures from the json written by ``run_all.py`` (no hand-typed numbers)."""

from __future__ import annotations

import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIG = ROOT / "docs" / "figures" / "benchmarks"
NAMES = {"gridflow-cli": "gridflow (`gridflow run`)", "gridflow": "gridflow (`gridflow.solve`)",
         "pypde-numpy": "py-pde, numpy backend", "pypde-numba": "py-pde, numba backend",
         "baseline": "numpy baseline (SG + Crank-Nicolson, one LU)"}
PROBLEMS = ("P1", "P2", "P3")
#: the sections written by ``large_runs.py`` and ``small_grids.py``; a rewrite by ``run_all.py`` keeps them
LARGE_RUNS = "## Large runs (issue 12, acceptance 2)"
SMALL_GRIDS = "## Small grids: numpy/LAPACK or compiled kernels"


def _bounds(lines: list[str], heading: str) -> tuple[int, int] | None:
    if heading not in lines:
        return None
    start = lines.index(heading)
    return start, next((k for k in range(start + 1, len(lines)) if lines[k].startswith("## ")), len(lines))


def rewrite_section(heading: str, body: str) -> Path:
    """Replace the section under ``heading`` of docs/benchmarks.md by ``body`` (which starts with it)."""
    path = ROOT / "docs" / "benchmarks.md"
    path.write_text(splice_section(path.read_text(), heading, body))
    return path


def section(text: str, heading: str) -> str | None:
    """The section of ``text`` under ``heading`` (up to the next ``## `` heading), or None."""
    lines = text.split("\n")
    span = _bounds(lines, heading)
    return None if span is None else "\n".join(lines[span[0]:span[1]]).rstrip("\n")


def splice_section(text: str, heading: str, body: str) -> str:
    """``text`` with the section under ``heading`` replaced by ``body`` (which starts with the heading),
    or ``body`` inserted before "## Reproduce" when there is none."""
    lines = text.split("\n")
    span = _bounds(lines, heading)
    if span is None:
        start = next((k for k, line in enumerate(lines) if line == "## Reproduce"), len(lines))
        span = (start, start)
    lines[span[0]:span[1]] = body.rstrip("\n").split("\n") + [""]
    return "\n".join(lines)


def med(values: list[float]) -> float | None:
    """Median or None."""
    return statistics.median(values) if values else None


def stats(res: dict, key: str) -> dict | None:
    """Whole-process and warm medians / spreads of one solver on one problem."""
    runs = res["runs"].get(key)
    if not runs:
        return None
    whole = [r["whole"] for r in runs]
    warm = [w for r in runs for w in r["warm"]]
    return {"whole": med(whole), "whole_min": min(whole), "whole_max": max(whole), "n_whole": len(whole),
            "warm": med(warm), "warm_min": min(warm) if warm else None, "warm_max": max(warm) if warm else None,
            "n_warm": len(warm), "min_density": min(r["min_density"] for r in runs),
            "rss": max(r["rss_mb"] for r in runs)}


def fmt(x: float | None, spec: str = ".3g") -> str:
    """A number or a dash."""
    return "–" if x is None else format(x, spec)


def ratio(a: float | None, b: float | None) -> str:
    """a / b as '12.3x', or a dash."""
    return "–" if a is None or b is None or b == 0 else f"{a / b:.3g}×"


def ratios(res: dict) -> list[dict]:
    """Competitor time / gridflow time per problem: whole-process (vs gridflow run) and warm (vs gridflow.solve)."""
    rows = []
    for p in PROBLEMS:
        g_cli, g = stats(res, f"gridflow-cli/{p}"), stats(res, f"gridflow/{p}")
        for s in ("pypde-numpy", "pypde-numba", "baseline"):
            c = stats(res, f"{s}/{p}")
            if not (c and g and g_cli):
                continue
            rows.append({"problem": p, "solver": s, "whole": ratio(c["whole"], g_cli["whole"]),
                         "warm": ratio(c["warm"], g["warm"]),
                         "whole_vs_solve_process": ratio(c["whole"], g["whole"])})
    return rows


def figures(res: dict) -> list[str]:
    """Time-to-accuracy bars and the P3 scaling plot; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    solvers = ("gridflow-cli", "gridflow", "pypde-numpy", "pypde-numba", "baseline")
    for ax, what in zip(axes, ("whole", "warm")):
        for i, s in enumerate(solvers):
            vals = [(stats(res, f"{s}/{p}") or {}).get(what) for p in PROBLEMS]
            xs = [j + 0.16 * (i - 2) for j in range(3)]
            ax.bar(xs, [v or 0 for v in vals], width=0.15, label=NAMES[s])
        ax.set_yscale("log")
        ax.set_xticks(range(3), PROBLEMS)
        ax.set_ylabel("seconds to L1 ≤ 1e-3 at t = 2")
        ax.set_title("whole process" if what == "whole" else "warm (in-process, after one solve)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(FIG / "time_to_accuracy.png", dpi=110)
    plt.close(fig)
    names.append("time_to_accuracy.png")
    sg = [r for r in res["scaling"] if r["flux"] == "scharfetter-gummel"]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    cells = [r["cells"] ** 2 for r in sg]
    ax.loglog(cells, [r["wall"] for r in sg], "o-", label="wall time (s)")
    ax.loglog(cells, [r["rss_mb"] / 1000 for r in sg], "s--", label="peak RSS (GB)")
    ax.set_xlabel("cells (P3, tolerance 1e-4)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(FIG / "scaling_p3.png", dpi=110)
    plt.close(fig)
    names.append("scaling_p3.png")
    return names


def write_report(res: dict, *, json_name: str) -> Path:
    """Write docs/benchmarks.md (and figures) from the measured results."""
    figs = figures(res)
    m = res["machine"]
    L = ["# Benchmarks: gridflow against other Python solvers", "",
         f"Generated by `python benchmarks/run_all.py{' --quick' if res['quick'] else ''}` from "
         f"`docs/figures/benchmarks/{json_name}`; do not edit by hand. Issue 12 asks for these numbers.", "",
         "## Set-up", "",
         "- P1: 1D, target 0.5 N(0,1) + 0.5 N(4,1) on [-8, 12], start N(0,1). P2: 2D product of two 1D "
         "two-component mixtures (four modes) on [-6, 6]², start N(0, I). P3: `benchmarks/cases/p3.toml` "
         "(rotated anisotropic Gaussian 0.7 + banana 0.3, not separable), start N(0, I). Fokker-Planck, "
         "diffusion 1, reflecting box, to t = 2.",
         "- Accuracy: L1 distance at t = 2 to the reference, both normalised, on the coarser of the two grids "
         "(the finer density remapped conservatively: a cubic spline of its cumulative mass per axis).",
         "- Competitors: gridflow as a process (`gridflow run`, writes the HDF5 file) and in-process "
         "(`gridflow.solve`); py-pde (`PDEBase` subclass: laplace c + grad V · grad c + c laplace V with "
         "py-pde's operators, zero-gradient boundary, adaptive Runge-Kutta, numpy and numba backends; the "
         "compiled stepper is built once per process and reused, so a warm solve pays no JIT); the numpy "
         "baseline: Scharfetter-Gummel generator (`gridflow.flows.fokker_planck.generator`) and Crank-Nicolson "
         "with one `scipy.sparse.linalg.splu` reused for every step (its LU is inside the timed solve).",
         "- Per solver and problem the cheapest (grid, tolerance) that meets L1 ≤ 1e-3 was searched "
         "(table below; py-pde's numpy backend takes its numba backend's setting: same discretisation and "
         "same steps, hence the same L1). py-pde's search starts at 192² in 2D (with its central "
         "drift, coarser grids were far from the target in a trial) and stops at the first grid that meets the target. "
         "FiPy was not run.",
         "- Timing: every measurement is a fresh process; within a round the solvers run in shuffled order; "
         "*whole process* is the wall time of the process minus the warm solves it did afterwards (imports, "
         "set-up, JIT and one solve); *warm* is the median of the solves after the first in that process. "
         "Shown: median [min–max] (n).",
         f"- Machine: {m['cpus']} cores shared with other jobs; load average (1, 5, 15 min) "
         f"{', '.join(f'{x:.1f}' for x in m['load_start'])} at the start and "
         f"{', '.join(f'{x:.1f}' for x in m['load_end'])} at the end; Python {m['python']}. "
         f"Whole run {res['seconds'] / 60:.1f} min{' (--quick: references on coarser grids, 2 rounds, py-pde 1 round)' if res['quick'] else ''}.",
         "", "## References", "",
         "| problem | gridflow grids | tolerance | est. error of the finer grid (Richardson) | extrapolation from (n/2, n) vs (n, 2n) | time error (10× tolerance) |",
         "|---|---|---|---|---|---|"]
    for p, r in res["references"].items():
        grids = " and ".join(("×".join([str(g)] * (2 if p != "P1" else 1))) for g in r["grids"])
        if p == "P2":
            grids = f"1D factors at {' and '.join(map(str, r['grids']))}, product on 1024²"
        ex = r.get("extrapolation_change")
        L.append(f"| {p} | {grids} | {r['tolerance']:g} | {r['space_error']:.1e} | {fmt(ex, '.1e')} | "
                 f"{r['time_error_bound']:.1e} |")
    L += ["", "The reference is the Richardson extrapolation of the two grids; its error is below the finer grid's "
          "estimate in the table (that estimate is |fine − coarse| / 3 in L1); the change of the extrapolation "
          "when the grids are halved, where shown, bounds the reference's own error. P2's error is the sum of "
          "its two 1D factors' (L1 of a product).", "",
          "## Chosen settings (cheapest meeting L1 ≤ 1e-3)", "",
          "| solver | problem | cells per axis | tolerance (baseline: steps) | L1 | warm s in search | min density | settings tried |",
          "|---|---|---|---|---|---|---|---|"]
    for key, f in res["search"].items():
        s, p = key.split("/")
        b = f["best"]
        if b is None:
            last = f["tried"][-1] if f["tried"] else None
            if last is None:
                L.append(f"| {NAMES[s]} | {p} | none tried | | | | | 0 |")
                continue
            L.append(f"| {NAMES[s]} | {p} | none met L1 ≤ 1e-3; last tried: {last['cells']} | {last['tol']:g} | "
                     f"{last['l1']:.2e} | {last['time']:.3g} | {last['min_density']:.2e} | {len(f['tried'])} |")
            continue
        L.append(f"| {NAMES[s]} | {p} | {b['cells']} | {b['tol']:g} | {b['l1']:.2e} | {b['time']:.3g} | "
                 f"{b['min_density']:.2e} | {len(f['tried'])} |")
    L += ["", "## Time to L1 ≤ 1e-3 at t = 2 (seconds)", "",
          "| problem | solver | whole process | warm | peak RSS MB | min density |", "|---|---|---|---|---|---|"]
    for p in PROBLEMS:
        for s in ("gridflow-cli", "gridflow", "pypde-numpy", "pypde-numba", "baseline"):
            st = stats(res, f"{s}/{p}")
            if not st:
                continue
            warm = (f"{fmt(st['warm'])} [{fmt(st['warm_min'])}–{fmt(st['warm_max'])}] ({st['n_warm']})"
                    if st["warm"] is not None else "–")
            L.append(f"| {p} | {NAMES[s]} | {fmt(st['whole'])} [{fmt(st['whole_min'])}–{fmt(st['whole_max'])}] "
                     f"({st['n_whole']}) | {warm} | {st['rss']:.0f} | {st['min_density']:.2e} |")
    L += ["", "## Ratios: competitor time / gridflow time (above 1: gridflow faster)", "",
          "Whole process: against `gridflow run`; warm: against warm `gridflow.solve`.", "",
          "| problem | competitor | whole process | warm |", "|---|---|---|---|"]
    for r in ratios(res):
        L.append(f"| {r['problem']} | {NAMES[r['solver']]} | {r['whole']} | {r['warm']} |")
    for key, f in res["search"].items():
        s, p = key.split("/")
        g = stats(res, f"gridflow/{p}")
        if f["best"] is None and f["tried"] and g and s == "pypde-numba":
            top = max(r["cells"] for r in f["tried"])
            last = [r for r in f["tried"] if r["cells"] == top]
            if all(r["l1"] > 1.0 for r in last):
                L.append(f"| {p} | {NAMES[s]} | – | – (diverged at {top} cells: L1 {min(r['l1'] for r in last):.2g}, "
                         f"min density {min(r['min_density'] for r in last):.2g}, {min(r['time'] for r in last):.3g} s) |")
                continue
            cheap = min(last, key=lambda r: r["time"])
            L.append(f"| {p} | {NAMES[s]} | – | > {ratio(cheap['time'], g['warm'])} (its cheapest try on {top}², the finest "
                     f"grid tried, took {cheap['time']:.3g} s warm and still had L1 {cheap['l1']:.2e}) |")
    L += ["", "A dash: not measured because the search found no setting meeting L1 ≤ 1e-3 within its per-solve "
          "time cap (or py-pde's adaptive Runge-Kutta diverged); the lower bound compares gridflow's warm "
          "time with py-pde's cheapest try on the finest grid it reached, which was still not accurate enough."]
    L += ["", f"![time to accuracy](figures/benchmarks/{figs[0]})", "",
          "## gridflow scaling on P3 (tolerance 1e-4, `gridflow run` process)", "",
          "| cells | flux | wall s | peak RSS MB | L1 to reference | min density |", "|---|---|---|---|---|---|"]
    for r in res["scaling"]:
        L.append(f"| {r['cells']}² | {r['flux']} | {r['wall']:.3g} | {r['rss_mb']:.0f} | {r['l1']:.2e} | "
                 f"{r['min_density']:.2e} |")
    L += ["", "L1 here is limited by the reference's own error (table above) once it falls to that level.", "",
          f"![scaling](figures/benchmarks/{figs[1]})", "",
          "## Reproduce", "", "    pip install -e '.[bench]'", "    python benchmarks/run_all.py --quick   # about 10 min",
          "    python benchmarks/run_all.py           # finer references, 5 rounds, 1024² scaling",
          "    python benchmarks/large_runs.py --cross-check --write-docs   # 'Large runs' (about 20 min)",
          "    python benchmarks/small_grids.py --write-docs                # 'Small grids' (about 5 min)", ""]
    path = ROOT / "docs" / "benchmarks.md"
    text = "\n".join(L)
    old = path.read_text() if path.exists() else ""
    for heading in (LARGE_RUNS, SMALL_GRIDS):
        kept = section(old, heading)
        if kept:
            text = splice_section(text, heading, kept)
    path.write_text(text)
    return path
