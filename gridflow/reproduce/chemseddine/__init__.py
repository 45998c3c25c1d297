r"""Reproduction of Chemseddine, Wald, Duong & Steidl (ICLR 2025; arXiv:2410.03282).

"Neural Sampling from Boltzmann Densities: Fisher–Rao Curves in the Wasserstein Geometry"
argues that the *linear interpolation of the energies* (the geometric tempering path
rho_t ∝ rho_0^{1-t} rho_1^t) can need an exploding velocity field in the continuity equation
("teleportation of mass"), whereas the *gradient-flow interpolation* (the Wasserstein
gradient flow of KL(. | N(0, 1)), i.e. the Fokker–Planck / Ornstein–Uhlenbeck flow, read
backwards from the target) stays well behaved: its action is bounded by KL(target | N(0, 1)).

Everything here is computed on the grid from the case files ``cases/papers/chemseddine-*.toml``
(loaded with :func:`gridflow.io.case.load_case`, with ``--set``-style overrides for m, the grid
and the saved times) and checked against independent references:

* :class:`TeleportExample` — the continuum minimal velocity and kinetic energy of the 1D
  example rho_0 ∝ e^{-|x|}, rho_1 ∝ e^{-2 min(|x|, |x-m|)}, in closed form per piece
  (every density of the path is e^{-(a x + b)} on four pieces) plus Gauss–Legendre quadrature
  of ∫ J^2 / rho; exact to ~1e-15 relative for m up to 50.  Large m:
  ||v_1||^2 = (m - 1/2)^2 e^m / 8 up to exponentially small terms (the flux through the valley
  at x = m/2 is (m - 1/2)/4 and ∫ 1/rho_1 over the valley is ≈ 2 e^m).
* :func:`teleport_fp_exact` — KL(rho_1 | N(0, 1)) and the relative Fisher information
  I(rho_1 | N(0, 1)) by quadrature.
* :func:`ou_mixture` / :func:`mixture_cell_averages` — a Gaussian mixture under the
  Fokker–Planck flow towards N(0, I) stays a mixture with means e^{-t} mu_k and covariances
  e^{-2t} Sigma_k + (1 - e^{-2t}) I (exact cell averages by 4x4 Gauss–Legendre per cell).

Every 1D kinetic-energy number printed in the report comes with its refinement (cell widths
halved four times for the path flow, twice for the Fokker–Planck flow); the printed value is
the Richardson extrapolation of the two finest grids, rounded so that its estimated error
(|finest grid - extrapolation| + |change of the extrapolation| + time and quadrature errors)
is below half a unit in the last printed digit.

The kinetic energy of the Fokker–Planck flow: its velocity is v = -a grad log(rho / pi_lambda),
so ||v||^2 = a^2 I(rho | pi_lambda), the ``fisher_information`` diagnostic that the solver
records in every frame (the runner does not write a ``kinetic_energy`` dataset for that flow;
it is computed here from the frames).

``reproduce(out_dir)`` writes ``report.md``, ``results.json``, CSV tables and the figures
(``figures/chemseddine/*.png``, linked relatively from the report, so that the report and the
figures can be copied together to ``docs/reproductions-chemseddine.md`` and
``docs/figures/chemseddine/``).

Modules (this package holds the entry point ``reproduce`` and re-exports ``TITLE``):

cases.py    constants of every study, the resolved case files with overrides, the frames of a solve
oracles.py  closed-form references: the teleportation example, Fokker–Planck quantities, OU mixtures
study.py    the studies on refined grids and their Richardson extrapolation (Refined, digits printed)
figures.py  the figures ``figures/chemseddine/*.png``
claims.py   the measured numbers and the claim records judged on them
report.py   the Markdown report and the tables (results.json, CSV)
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from gridflow.reproduce.chemseddine.claims import judge
from gridflow.reproduce.claims import write_claims
from gridflow.reproduce.chemseddine.cases import TITLE
from gridflow.reproduce.chemseddine.figures import make_figures
from gridflow.reproduce.chemseddine.report import write_report, write_tables
from gridflow.reproduce.chemseddine.study import (Log, mixture_study, study_2d, teleport_fp_study,
    teleport_profiles, teleport_study)

__all__ = ["TITLE", "reproduce"]


# =========================================================================== entry point


def reproduce(out_dir: Path, *, progress: bool = False) -> Path:
    """Recompute every number and figure of the reproduction into ``out_dir``; return the report's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = Log(progress)
    timing: dict[str, float] = {}
    t_start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, \
            np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        warnings.simplefilter("always")

        def timed(name: str, fun, *args):
            t0 = time.perf_counter()
            res = fun(*args)
            timing[name] = time.perf_counter() - t0
            return res

        tp = timed("1D linear path", teleport_study, log)
        prof = timed("1D profiles", teleport_profiles, log)
        fp = timed("1D Fokker-Planck", teleport_fp_study, log)
        mix = timed("1D mixtures", mixture_study, log)
        d2 = timed("2D", study_2d, log)
        figs = timed("figures", make_figures, out_dir, tp, prof, fp, mix, d2)
        write_tables(out_dir, tp, prof, fp, mix, d2)
    messages = [f"{w.category.__name__}: {w.message}" for w in caught]
    for msg in messages:
        log(f"warning: {msg}")
    timing["total"] = time.perf_counter() - t_start
    claims = judge(tp, prof, fp, mix, d2)
    write_claims(out_dir / "claims.json", claims["claims"], title=TITLE, report="reproductions-chemseddine.md",
                 measured=claims["measured"])
    report = write_report(out_dir, tp, prof, fp, mix, d2, figs, timing, messages, claims["claims"])
    log(f"report written to {report}")
    return report
