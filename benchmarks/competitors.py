"""The solvers compared in ``run_all.py``; each returns the density at t = 2 on its grid.

* ``gridflow``: ``gridflow.solve`` of the problem's case (cells, tolerance);
* ``pypde-numpy`` / ``pypde-numba``: py-pde, d c/dt = laplace c + grad V . grad c + c laplace V
  (V = -log target, its derivatives by central differences), zero-gradient boundary,
  adaptive Runge-Kutta (``solver="runge-kutta"``) with the given tolerance;
* ``baseline``: the Scharfetter-Gummel generator L (``gridflow.flows.fokker_planck.generator``)
  and Crank-Nicolson with one sparse LU of (I - dt/2 L) reused for every step
  (``tolerance`` is read as the number of steps to t = 2).

Run as a script, one measurement in a fresh process, printing one JSON line::

    python benchmarks/competitors.py SOLVER PROBLEM CELLS TOL [--warm N] [--save FILE.npy]

without ``--warm`` the process solves once (imports and JIT included in the wall time the
caller measures); with ``--warm N`` it solves once to warm up and times N more solves.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from problems import T_END, make_case  # noqa: E402

SOLVERS = ("gridflow", "pypde-numpy", "pypde-numba", "baseline")


def _problem_arrays(problem: str, cells: int):
    """Grid, initial density and potential V = -log target of the problem on ``cells`` per axis."""
    from gridflow.core.problem import Problem

    p = Problem.from_case(make_case(problem, cells=cells, tolerance=1e-3))
    return p.grid, np.exp(p.log_initial), -np.asarray(p.path.log_target)


def solve_gridflow(problem: str, cells: int, tolerance: float, *, flux: str | None = None) -> np.ndarray:
    """gridflow's density at t = 2."""
    import gridflow

    return gridflow.solve(make_case(problem, cells=cells, tolerance=tolerance, flux=flux))[-1].density


def make_pypde(problem: str, cells: int):
    """A function tolerance, backend -> density at t = 2 solving the problem with py-pde."""
    import pde

    grid, rho0, v = _problem_arrays(problem, cells)
    lo, up = grid.lower, grid.upper
    g = pde.CartesianGrid([[float(a), float(b)] for a, b in zip(lo, up)], list(grid.shape))
    h = [(float(b) - float(a)) / n for a, b, n in zip(lo, up, grid.shape)]
    grads = np.gradient(v, *h) if v.ndim > 1 else [np.gradient(v, h[0])]
    lap = sum(np.gradient(grads[k], h[k], axis=k) for k in range(v.ndim))

    class FokkerPlanck(pde.PDEBase):
        """d c/dt = laplace c + grad V . grad c + c laplace V with zero-gradient boundaries."""

        bc = {"derivative": 0}

        def evolution_rate(self, state, t=0):
            gc = state.gradient(self.bc)
            drift = sum(grads[k] * gc.data[k] for k in range(v.ndim))
            return pde.ScalarField(state.grid, state.laplace(self.bc).data + drift + state.data * lap)

        def make_evolution_rate(self, state, backend):
            laplace = state.grid.make_operator("laplace", bc=self.bc, backend=backend, dtype=state.dtype)
            gradient = state.grid.make_operator("gradient", bc=self.bc, backend=backend, dtype=state.dtype)
            gv = np.array(grads)
            lp = np.array(lap)
            dim = v.ndim

            def rhs(data, t=0):
                out = laplace(data, args={"t": t})
                gc = gradient(data, args={"t": t})
                for k in range(dim):
                    out += gv[k] * gc[k]
                return out + data * lp

            return rhs

    eq = FokkerPlanck()
    field = pde.ScalarField(g, rho0)

    steppers = {}

    def run(tolerance: float, backend: str) -> np.ndarray:
        # the compiled stepper is built once per (tolerance, backend) and reused: a warm solve
        # pays no JIT (py-pde's own ``solve`` would compile a new stepper at every call)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            key = (tolerance, backend)
            if key not in steppers:
                solver = pde.solvers.RungeKuttaSolver(eq, backend=backend, adaptive=True, tolerance=tolerance)
                steppers[key] = solver.make_stepper(field, dt=1e-4)
            state = field.copy()
            t = steppers[key](state, 0.0, T_END)
        if abs(t - T_END) > 1e-9:
            raise RuntimeError(f"py-pde stopped at t = {t}")
        return np.asarray(state.data)

    return run


def make_baseline(problem: str, cells: int):
    """A function steps -> (density at t = 2, min over all steps): SG generator + Crank-Nicolson, one LU."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    from gridflow.flows.fokker_planck import generator

    grid, rho0, v = _problem_arrays(problem, cells)
    gen = generator(v, grid, diffusion=1.0)
    eye = sp.identity(gen.shape[0], format="csc")

    def run(steps: float) -> tuple[np.ndarray, float]:
        n = int(steps)
        dt = T_END / n
        lu = splu((eye - 0.5 * dt * gen).tocsc())
        rhs = (eye + 0.5 * dt * gen).tocsr()
        u = rho0.ravel().copy()
        low = float(u.min())
        for _ in range(n):
            u = lu.solve(rhs @ u)
            low = min(low, float(u.min()))
        return u.reshape(rho0.shape), low

    return run


def make_solver(solver: str, problem: str, cells: int):
    """A function tol -> (density, min density seen) for ``solver``; setup done once."""
    if solver == "gridflow":
        return lambda tol: (d := solve_gridflow(problem, cells, tol), float(d.min()))
    if solver.startswith("pypde-"):
        run = make_pypde(problem, cells)
        backend = solver.split("-", 1)[1]
        return lambda tol: (d := run(tol, backend), float(d.min()))
    if solver == "baseline":
        return make_baseline(problem, cells)
    raise ValueError(f"unknown solver {solver!r}; one of {', '.join(SOLVERS)}")


#: candidate grids (cells per axis) and tolerances (steps for the baseline), loosest first
SEARCH_GRID = {1: [64, 96, 128, 192, 256, 384, 512], 2: [48, 64, 96, 128, 192, 256]}
#: py-pde's central drift needs much finer grids in 2D (P2: L1 6e-3 at 128^2, 2.4e-2 at 64^2, measured)
SEARCH_GRID_PYPDE = {1: [128, 192, 256, 384, 512, 768], 2: [192, 256, 320, 384, 512]}
SEARCH_TOL = {"gridflow": [1e-3, 3e-4, 1e-4, 3e-5, 1e-5], "pypde-numpy": [1e-3, 1e-4, 1e-5],
              "pypde-numba": [1e-3, 1e-4, 1e-5], "baseline": [10, 20, 40, 80, 160]}
TARGET_L1 = 1e-3


def search(solver: str, problem: str, reference: np.ndarray, *, max_seconds: float = 60.0) -> list[dict]:
    """Every tried (cells, tol) with its warm solve time, L1 to ``reference`` and min density.

    Grids ascend; on each grid the tolerances go from loosest to tightest and stop at the first
    that meets L1 <= TARGET_L1.  The search stops one grid after the first grid that met it,
    or when a solve took longer than ``max_seconds``; py-pde (seconds to minutes per solve, a JIT
    per grid and tolerance) stops at the first grid that meets it.
    """
    from problems import DIM, box, l1_distance

    lower, upper = box(problem)
    rows, met_on = [], None
    pypde = solver.startswith("pypde")
    for cells in (SEARCH_GRID_PYPDE if pypde else SEARCH_GRID)[DIM[problem]]:
        fn = make_solver(solver, problem, cells)
        slow = False
        for tol in SEARCH_TOL[solver]:
            if solver != "pypde-numpy":
                fn(tol)  # warm (JIT, caches)
            t0 = time.perf_counter()
            rho, low = fn(tol)
            dt = time.perf_counter() - t0
            l1 = l1_distance(np.asarray(rho, dtype=float), reference,
                             lower=lower, upper=upper)
            rows.append({"cells": cells, "tol": tol, "time": dt, "l1": l1, "min_density": low})
            slow = dt > max_seconds
            if l1 <= TARGET_L1 or slow:
                break
        if met_on is None and any(r["l1"] <= TARGET_L1 for r in rows):
            met_on = cells
            if pypde:
                break
        elif met_on is not None or slow:
            break
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("solver", choices=SOLVERS)
    ap.add_argument("problem", choices=("P1", "P2", "P3"))
    ap.add_argument("cells", type=int)
    ap.add_argument("tol", type=float)
    ap.add_argument("--warm", type=int, default=0, help="solve once, then time this many solves")
    ap.add_argument("--save", default=None, help="save the density to this .npy file")
    ap.add_argument("--search", default=None, metavar="REF.npy",
                    help="search mode: CELLS and TOL are ignored; try SEARCH_GRID x SEARCH_TOL against REF.npy")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="search: stop a grid after a solve this long")
    args = ap.parse_args()
    if args.search:
        print(json.dumps(search(args.solver, args.problem, np.load(args.search), max_seconds=args.max_seconds)))
        return
    t0 = time.perf_counter()
    fn = make_solver(args.solver, args.problem, args.cells)
    rho, low = fn(args.tol)
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.warm):
        if sum(times) > 20.0 or (times and first > 60.0):   # long solves: fewer warm repeats
            break
        t1 = time.perf_counter()
        rho, low = fn(args.tol)
        times.append(time.perf_counter() - t1)
    if args.save:
        np.save(args.save, rho)
    print(json.dumps({"first": first, "warm": times, "min_density": low}))


if __name__ == "__main__":
    main()
