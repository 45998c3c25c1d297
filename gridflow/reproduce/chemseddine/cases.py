"""The Chemseddine et al. reproduction's settings and case files: the constants of every study, the
resolved cases (``cases/papers/chemseddine-*.toml`` with overrides) and the frames of a solve."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from gridflow.core.problem import Problem
from gridflow.errors import InputError
from gridflow.io.case import load_case
from gridflow.io.case_schema import DEFAULT_TOLERANCE
from gridflow.reproduce.common import CWD_PAPERS, SOURCE_PAPERS
from gridflow.time.solver import Frame, save_times, simulate, simulate_path


TITLE = ("Chemseddine, Wald, Duong & Steidl, \"Neural Sampling from Boltzmann Densities: Fisher–Rao Curves "
         "in the Wasserstein Geometry\" (ICLR 2025; arXiv:2410.03282)")

#: Case files (in ``cases/papers/``) used by the reproduction.
CASE_FILES = {
    "teleport-path": "chemseddine-teleport-path.toml",
    "teleport-fp": "chemseddine-teleport-fp.toml",
    "mixture-path": "chemseddine-mixture-path.toml",
    "path-2d": "chemseddine-2d-path.toml",
    "fp-2d": "chemseddine-2d-fp.toml",
}

#: Figures directory relative to the output directory (and to ``docs/``).
FIGURE_DIR = Path("figures") / "chemseddine"

M_VALUES = (1, 5, 15, 50)
LAMBDAS = (0.0, 0.5, 0.9, 1.0)
#: Cell widths of the path-flow refinement (each divides 1/2, so the kinks x = 0, m/2, m lie on faces).
PATH_H = (0.05, 0.025, 0.0125, 0.00625, 0.003125)
#: Cell widths of the Fokker–Planck refinement.
FP_H = (0.05, 0.025, 0.0125, 0.00625)
#: Cell widths for I(rho_1 | N(0, 1)) = ||v_0||^2 of the Fokker–Planck flow (first order: kinks).
I0_H = FP_H + (0.003125, 0.0015625, 0.00078125)
#: Cell width of the profiles shown in the figures.
PLOT_H = 0.0125
PATH_MARGIN = 30.0  # box [-30, m + 30] for the path (rho_0 tails e^-30 at the walls)
FP_MARGIN = 15.0  # box [-15, m + 15] for the Fokker–Planck flow (rho_1 tails e^-30)
FP_END = 10.0
FP_SAVES = 201  # saved times t = s^2, s uniform on [0, sqrt(FP_END)]
FP_SNAPSHOTS = (0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
ACTION_PANELS = 40  # Gauss–Legendre panels on [0, 1] for the action of a path
ACTION_NODES = 8
MIX_A = (2, 4, 6, 8)
MIX_WEIGHTS = {"crossing": (0.2, 0.8), "symmetric": (0.5, 0.5)}
MIX_BOX = 20.0
H_2D = (0.1, 0.05)
FP2D_END = 3.0
FP2D_SAVES = 41
FP2D_CHECK_TIMES = (0.25, 0.5, 1.0, 2.0, 3.0)
CLOSED_FORM_L1_TOLERANCE = 2e-3


# =========================================================================== case files


def cases_dir() -> Path:
    """``cases/papers`` of the source tree (or of the current directory)."""
    for d in (SOURCE_PAPERS, Path.cwd() / CWD_PAPERS):
        if (d / CASE_FILES["teleport-path"]).is_file():
            return d
    raise InputError(
        "The case files of the Chemseddine et al. reproduction (cases/papers/chemseddine-*.toml) were not "
        "found next to the gridflow sources or in the current directory; run from a checkout of gridflow."
    )


def _toml_list(values: Iterable[float]) -> str:
    return "[" + ", ".join(repr(float(v)) for v in values) + "]"


def _cells(length: float, h: float) -> int:
    n = int(round(length / h))
    if abs(n * h - length) > 1e-9 * max(1.0, length):
        raise ValueError(f"cell width {h} does not divide the box length {length}")
    return n


def load(key: str, overrides: Sequence[str] = ()) -> dict:
    """The resolved case ``CASE_FILES[key]`` with ``overrides`` (``dotted.key=VALUE``) applied."""
    return load_case(cases_dir() / CASE_FILES[key], overrides=list(overrides))


def teleport_path_case(m: float, h: float, times: Sequence[float] | None = None) -> dict:
    """The linear path of the teleportation example for separation ``m`` on cells of width ``h``."""
    lower, upper = -PATH_MARGIN, m + PATH_MARGIN
    ov = [f'target.log_density="-2*minimum(abs(x), abs(x - {float(m)!r}))"', f"grid.lower=[{lower!r}]",
          f"grid.upper=[{float(upper)!r}]", f"grid.cells=[{_cells(upper - lower, h)}]",
          f"name=\"chemseddine-teleport-path-m{m:g}\""]
    if times is not None:
        ov.append(f"time.save_times={_toml_list(times)}")
    return load("teleport-path", ov)


def teleport_fp_case(m: float, h: float, times: Sequence[float] | None = None, tolerance: float | None = None) -> dict:
    """The Fokker–Planck flow from rho_1 (separation ``m``) towards N(0, 1)."""
    lower, upper = -FP_MARGIN, m + FP_MARGIN
    ov = [f'initial.log_density="-2*minimum(abs(x), abs(x - {float(m)!r}))"', f"grid.lower=[{lower!r}]",
          f"grid.upper=[{float(upper)!r}]", f"grid.cells=[{_cells(upper - lower, h)}]",
          f"name=\"chemseddine-teleport-fp-m{m:g}\""]
    if times is not None:
        ov += [f"time.end={float(max(times))!r}", f"time.save_times={_toml_list(times)}"]
    if tolerance is not None:
        ov.append(f"time.tolerance={tolerance!r}")
    return load("teleport-fp", ov)


def mixture_path_case(a: float, weights: Sequence[float], h: float, times: Sequence[float] | None = None) -> dict:
    """The linear path from N(0, 1) to w_1 N(-a, 1) + w_2 N(a, 1)."""
    ov = [f"target.weights={_toml_list(weights)}", f"target.components[0].mean=[{-float(a)!r}]",
          f"target.components[1].mean=[{float(a)!r}]", f"grid.lower=[{-MIX_BOX!r}]", f"grid.upper=[{MIX_BOX!r}]",
          f"grid.cells=[{_cells(2 * MIX_BOX, h)}]", f"name=\"chemseddine-mixture-path-a{a:g}\""]
    if times is not None:
        ov.append(f"time.save_times={_toml_list(times)}")
    return load("mixture-path", ov)


def case_2d(key: str, h: float, times: Sequence[float] | None = None, tolerance: float | None = None) -> dict:
    """The 2D case ``key`` ("path-2d" or "fp-2d") on cells of width ``h`` (same box)."""
    base = load(key)
    lo, hi = base["grid"]["lower"], base["grid"]["upper"]
    cells = [_cells(u - l, h) for l, u in zip(lo, hi)]
    ov = [f"grid.cells=[{cells[0]}, {cells[1]}]"]
    if times is not None:
        ov += [f"time.end={float(max(times))!r}", f"time.save_times={_toml_list(times)}"]
    if tolerance is not None:
        ov.append(f"time.tolerance={tolerance!r}")
    return load(key, ov)


def frames(case: Mapping) -> tuple[Problem, Iterator[Frame]]:
    """The problem of a resolved case and a generator of its frames (the runner's dispatch)."""
    problem = Problem.from_case(case)
    times = save_times(case["time"])
    if problem.flow == "path":
        return problem, simulate_path(problem, times=times)
    t = case["time"]
    return problem, simulate(problem, times=times, tolerance=float(t.get("tolerance", DEFAULT_TOLERANCE)),
                             max_step=t.get("max_step"), initial_step=t.get("initial_step"))


def fp_kinetic_energy(frame: Frame, case: Mapping) -> float:
    """||v||^2 of the Fokker–Planck velocity v = -a grad log(rho / pi_lambda): a^2 I(rho | pi_lambda)."""
    a = float(case["flow"].get("diffusion", 1.0))
    return a * a * float(frame.diagnostics["fisher_information"])
