r"""Crucinio & Pathiraja, *Properties and limitations of geometric tempering for gradient flow
dynamics* (TMLR; arXiv 2604.20301), reproduced on the grid: ``gridflow reproduce crucinio-pathiraja``.

Every flow is solved from a case file in ``cases/papers/cp-*.toml`` (loaded with
:func:`gridflow.io.case.load_case`; the mode separation ``m``, the flow, the schedule and the grid
refinement are ``--set``-style overrides), at two resolutions, so that every number printed in
the report is shown converged to the digits printed.

Parts (the brief's letters):

(a) the six flows W, FR, WFR, plain and tempered with lambda = min(t/10, 1), from N(0, 1) to
    pi = N(1, 5) and to pi = N(20, 0.1) (densities spanning e^-2000): KL(rho_t || pi) for
    t in [0, 10] at h and h/2, against the exact Gaussian moment ODE (:mod:`gridflow.analysis.exact`), and the
    exponential decay rates after lambda = 1 (runs to t = 30);
(b) the bimodal target 1/2 N(0,1) + 1/2 N(m,1) from N(0,1), m in {1, 2, 4, 6, 8, 10}: the time at
    which the exact MMD^2 (kernel exp(-(x-y)^2)) between rho_t and pi falls below 0.01, t <= 60,
    for W, WFR, FR, plain and tempered (linear, duration 60; exponential, rate 1/30;
    1 - 1/(2 + t/0.3) as an ``expression`` schedule, evaluated exactly);
(c) the three adaptive rules of :mod:`gridflow.core.schedule` on m = 4, t <= 100, with the variance under rho_t
    and under pi_lambda, and lambda(t) of the rule driven by the tempered FR solution against an
    independent ODE oracle;
(d) the 2D analogue of (b): modes m apart along the diagonal, checked against the exact
    reduction of the 2D problem to the 1D one;
plus the property "tempered FR KL >= plain FR KL at every saved time" over every configuration,
and seeded particle estimators of the same dynamics compared with the exact PDE.

MMD^2 between two grid densities is exact for piecewise-constant densities: with cell masses
p, q and the cell-pair integrals J(i - j) = h^-2 ∫∫_{cells i, j} exp(-(x - y)^2) dx dy (closed
form in erfc, :func:`cell_pair_kernel`), MMD^2 = (p - q)^T J (p - q); in 2D the kernel is the
product of the axis kernels.

Modules (this package holds the entry points ``reproduce`` and ``publish`` and re-exports ``TITLE``):

cases.py    constants, case-file overrides and the jobs (one grid solve each) of parts (a)-(d)
mmd.py      exact MMD^2 between grid densities; the first time a curve falls below the threshold
oracles.py  exact Gaussian KL curves and rates, Fisher–Rao crossing times, the adaptive-schedule ODE oracle
study.py    the solves (process pool), the particle runs, the analyses of parts (a)-(d) and their digits
figures.py  the figures ``cp-*.png``
claims.py   the measured numbers and the claim records judged on them
report.py   tables (CSV, JSON), figures and the Markdown report
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from gridflow.reproduce.crucinio_pathiraja.cases import TITLE
from gridflow.reproduce.crucinio_pathiraja.report import write_outputs
from gridflow.reproduce.crucinio_pathiraja.study import compute

__all__ = ["TITLE", "publish", "reproduce"]


def reproduce(out_dir: Path, *, progress: bool = False) -> Path:
    """Regenerate every number, table and figure of the reproduction into ``out_dir``; returns report.md."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    res = compute(progress=progress)
    return write_outputs(res, out_dir, wall=time.perf_counter() - start, progress=progress)


def publish(out_dir: Path, docs_dir: Path) -> Path:
    """Copy a reproduction's report and figures into the docs tree: ``docs/reproductions-crucinio-pathiraja.md``
    and ``docs/figures/crucinio-pathiraja/*.png`` (image links rewritten to work from ``docs/``)."""
    out_dir, docs_dir = Path(out_dir), Path(docs_dir)
    fig_dir = docs_dir / "figures" / "crucinio-pathiraja"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for png in sorted(out_dir.glob("*.png")):
        shutil.copyfile(png, fig_dir / png.name)
    text = (out_dir / "report.md").read_text()
    text = text.replace("](cp-", "](figures/crucinio-pathiraja/cp-")
    target = docs_dir / "reproductions-crucinio-pathiraja.md"
    target.write_text(text)
    return target
