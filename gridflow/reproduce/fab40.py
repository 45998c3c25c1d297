r"""FAB-40: the 40-mode 2D Gaussian mixture of the neural-sampler literature, and its closed form.

The benchmark (Midgley et al., "Flow Annealed Importance Sampling Bootstrap", ICLR 2023; used by
Chemseddine et al., ICLR 2025) is a mixture of :data:`N_MODES` equally weighted isotropic
Gaussians with variance :data:`VARIANCE` (standard deviation softplus(1) = 1.3133) and means drawn
uniformly in [-40, 40]^2.  Here the means are drawn once with ``numpy.random.default_rng(SEED)``
and written into the case files ``cases/papers/chemseddine-fab40-fp.toml`` and
``chemseddine-fab40-path.toml`` (:func:`write_cases`), so that the cases do not depend on numpy.

Fokker–Planck (Ornstein–Uhlenbeck) flow towards N(0, I) from the mixture: the solution stays a
mixture with the same weights, means e^{-t} mu_k and isotropic variances
e^{-2t} VARIANCE + (1 - e^{-2t}) (:func:`exact_density`).

The error measure (:func:`l1_error`) compares the grid density with the closed form's *point
values at the cell centres, normalised on the grid* (sum times cell volume equal to 1), the same
representation gridflow gives the initial density; so the L1 error at t = 0 is round-off.  The
cell averages differ from the point values by O(h^2): (h^2/24) |Laplacian rho| per cell, which is
at most 1.5e-4 in L1 for h = 0.1 (variance 1.72) and smaller for finer cells and later times.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gridflow.core.grid import Grid

#: Seed of ``numpy.random.default_rng`` that draws the means.
SEED = 0
#: Number of mixture components.
N_MODES = 40
#: The means are uniform in [-MEAN_RANGE, MEAN_RANGE]^2.
MEAN_RANGE = 40.0
#: Variance of every component (standard deviation softplus(1) = log(1 + e) = 1.3133).
VARIANCE = 1.72466
#: The box is [-BOX, BOX]^2 (the farthest mean, at |x_k| <= 40, is 7.6 standard deviations inside).
BOX = 50.0
#: Save times of the shipped Fokker–Planck case (those of the acceptance test included).
SAVE_TIMES = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.0)


def means(*, seed: int = SEED, n_modes: int = N_MODES, mean_range: float = MEAN_RANGE) -> np.ndarray:
    """The ``(n_modes, 2)`` means, uniform in [-mean_range, mean_range]^2 from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-mean_range, mean_range, size=(n_modes, 2))


def ou_parameters(t: float, mu: np.ndarray, *, variance: float = VARIANCE) -> tuple[np.ndarray, float]:
    """Means and common variance at time ``t`` of the mixture under the Fokker–Planck flow to N(0, I)."""
    decay = np.exp(-t)
    return mu * decay, float(variance * decay * decay - np.expm1(-2.0 * t))


def exact_density(grid: Grid, t: float, *, mu: np.ndarray | None = None, variance: float = VARIANCE,
                  normalise: bool = True, cell_averages: bool = False) -> np.ndarray:
    """Closed-form density of the 2D ``grid`` at time ``t`` (equal weights): its values at the cell
    centres, or with ``cell_averages`` its exact cell averages (differences of the normal CDF).

    Each isotropic component factorises into a product of 1D Gaussians, so the mixture is the
    matrix product A B^T of the (cells_x, K) and (cells_y, K) factor tables.  With ``normalise``
    the values are divided by their (midpoint) mass on the grid.
    """
    from scipy.special import ndtr

    mu = means() if mu is None else np.asarray(mu, dtype=float)
    m, v = ou_parameters(t, mu, variance=variance)
    factors = []
    for k, (centres, edges) in enumerate(zip(grid.axes, grid.edges)):
        if cell_averages:
            cdf = ndtr((edges[:, None] - m[None, :, k]) / np.sqrt(v))
            factors.append(np.diff(cdf, axis=0) / np.diff(edges)[:, None])
        else:
            factors.append(np.exp(-(centres[:, None] - m[None, :, k]) ** 2 / (2 * v)) / np.sqrt(2 * np.pi * v))
    rho = factors[0] @ factors[1].T / len(m)
    if normalise:
        rho /= rho.sum() * grid.cell_volume
    return rho


def l1_error(grid: Grid, density: np.ndarray, t: float, *, mu: np.ndarray | None = None,
             variance: float = VARIANCE, cell_averages: bool = False) -> float:
    """L1 distance sum |rho - rho_exact| h_x h_y between a grid density and the closed form at ``t``:
    its point values at the cell centres, or with ``cell_averages`` (for a run whose state is cell
    averages, ``flow.values = "cell-averages"``) its exact cell averages; normalised on the grid."""
    exact = exact_density(grid, t, mu=mu, variance=variance, cell_averages=cell_averages)
    return float(np.abs(np.asarray(density, dtype=float) - exact).sum() * grid.cell_volume)


def _mixture_toml(mu: np.ndarray, variance: float, indent: str = "  ") -> str:
    """TOML body of an equally weighted isotropic mixture with means ``mu``."""
    weights = ", ".join(["1.0"] * len(mu))
    comps = "\n".join(
        f'{indent}{{ kind = "gaussian", mean = [{float(a)!r}, {float(b)!r}], cov = [[{variance!r}, 0.0], [0.0, {variance!r}]] }},'
        for a, b in mu)
    return f'kind = "mixture"\nweights = [{weights}]\ncomponents = [\n{comps}\n]\n'


def _case_toml(*, comment: str, name: str, description: str, cells: int, initial: str, target: str,
               rest: str) -> str:
    """The TOML text of a FAB-40 case on [-BOX, BOX]^2 with ``cells`` per axis: the header
    ``comment`` (its lines without the "# "), name, description, grid, the ``initial`` and ``target``
    tables' bodies, then the ``rest`` of the tables."""
    h = 2 * BOX / cells
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    return f"""\
{header}name = "{name}"
description = "{description}"

[grid]
lower = [{-BOX!r}, {-BOX!r}]
upper = [{BOX!r}, {BOX!r}]
cells = [{cells}, {cells}]      # h = {h:.6g}

[initial]
{initial}
[target]
{target}
{rest}"""


def _standard_gaussian_toml(variance: float) -> str:
    """TOML body of N(0, variance I) in 2D."""
    return f'kind = "gaussian"\nmean = [0.0, 0.0]\ncov = [[{variance!r}, 0.0], [0.0, {variance!r}]]\n'


def fp_case_text(*, cells: int, flux: str, save_times: Sequence[float] = SAVE_TIMES, tolerance: float = 1e-6,
                 name: str = "chemseddine-fab40-fp", mu: np.ndarray | None = None, values: str | None = None) -> str:
    """The TOML text of the FAB-40 Fokker–Planck case (mixture -> N(0, I)) on [-BOX, BOX]^2 (``values``:
    ``flow.values``, left out if None)."""
    h = 2 * BOX / cells
    comment = f"""\
FAB-40 (Midgley et al. ICLR 2023; the 2D benchmark of Chemseddine et al. ICLR 2025 and the
neural-sampler papers): 40 equally weighted isotropic Gaussians, variance 1.72466 (std
softplus(1)), means uniform in [-40, 40]^2 drawn with numpy.random.default_rng({SEED}) and written
out below (regenerate with gridflow.reproduce.fab40.write_cases).  Fokker-Planck flow towards
N(0, I); closed form: the mixture with means e^-t mu_k and variances e^-2t 1.72466 + (1 - e^-2t).
The drift reaches |x| = 50 at the box edge: cell Peclet number h|grad log pi| up to {h * (BOX - h):.3g},
where the Scharfetter-Gummel flux is close to first order; the log-mean flux stays second order, and
the log-quadratic flux with cell averages as the state (flow.values) is ~10x more accurate again.
docs/fab40.md has the convergence study that chose the cells, the flux and the state, and the errors
to expect (cell averages: L1 <= 1e-3 at every saved time from 448^2 cells; log-mean: ~0.4 h^2)."""
    rest = f"""\
[flow]
kind = "fokker-planck"
diffusion = 1.0
flux = "{flux}"
{f'values = "{values}"' + chr(10) if values else ""}
[time]
end = {float(save_times[-1])!r}
save_times = [{", ".join(repr(float(s)) for s in save_times)}]
tolerance = {tolerance!r}
"""
    return _case_toml(
        comment=comment, name=name, cells=cells, rest=rest,
        description="FAB-40: Fokker-Planck flow from the 40-mode Gaussian mixture towards N(0, I) (closed form)",
        initial=_mixture_toml(means() if mu is None else mu, VARIANCE), target=_standard_gaussian_toml(1.0))


def path_case_text(*, cells: int = 512, mu: np.ndarray | None = None) -> str:
    """The TOML text of the FAB-40 path flow: linear interpolation of the energies from N(0, 100 I)."""
    comment = f"""\
FAB-40 path flow: the linear interpolation of the energies (geometric tempering path
pi_t ∝ N(0, 100 I)^(1-t) pi_FAB40^t) from N(0, 100 I) to the 40-mode mixture of
chemseddine-fab40-fp.toml (same means, drawn with numpy.random.default_rng({SEED})).  The minimal
velocity (a weighted elliptic solve per frame) and its kinetic energy show the mass moving
between the modes as they separate."""
    rest = """\
[tempering]
reference = "initial"
schedule = { kind = "linear", duration = 1.0 }

[flow]
kind = "path"

[time]
end = 1.0
save_times = [0.0, 0.25, 0.5, 0.75, 0.9, 1.0]
"""
    return _case_toml(
        comment=comment, name="chemseddine-fab40-path", cells=cells, rest=rest,
        description="FAB-40: linear interpolation of the energies from N(0, 100 I) to the 40-mode Gaussian mixture",
        initial=_standard_gaussian_toml(100.0), target=_mixture_toml(means() if mu is None else mu, VARIANCE))


#: cells per axis, flux and state of the shipped Fokker–Planck case (chosen by benchmarks/fab40_study.py).
SHIPPED_CELLS = 448
SHIPPED_FLUX = "log-quadratic"
SHIPPED_VALUES = "cell-averages"
#: time tolerance of the shipped case (the time error is then ~2e-4 in L1, below the spatial error)
SHIPPED_TOLERANCE = 1e-5


def write_cases(directory: str | Path) -> list[Path]:
    """Write ``chemseddine-fab40-fp.toml`` and ``chemseddine-fab40-path.toml`` into ``directory``."""
    out = Path(directory)
    fp = out / "chemseddine-fab40-fp.toml"
    fp.write_text(fp_case_text(cells=SHIPPED_CELLS, flux=SHIPPED_FLUX, tolerance=SHIPPED_TOLERANCE,
                               values=SHIPPED_VALUES))
    path = out / "chemseddine-fab40-path.toml"
    path.write_text(path_case_text())
    return [fp, path]


#: Upper bounds on the L1 error of the shipped case at the acceptance times: the errors measured by
#: `gridflow run cases/papers/chemseddine-fab40-fp.toml` (448^2, log-quadratic, cell averages; docs/fab40.md:
#: 4.48e-4, 6.12e-4, 3.65e-4, 1.2e-5 against the exact cell averages) plus 15 %, and 1e-4 at t = 7 (where
#: the time error, ~1e-5, is no longer negligible); asserted by the slow test of tests/reproduce/test_fab40.py.
#: Issue 14 asks for 1e-3 at every one of these times.
SHIPPED_L1_BOUNDS = {0.5: 5.2e-4, 1.0: 7.1e-4, 3.0: 4.2e-4, 7.0: 1e-4}
