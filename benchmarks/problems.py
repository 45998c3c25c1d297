"""Benchmark problems P1-P3 and the pure helpers of the competitor harness (L1, remap, Richardson).

P1: 1D bimodal target 0.5 N(0,1) + 0.5 N(4,1) on [-8, 12], start N(0,1).
P2: 2D product of two 1D two-component mixtures (four modes) on [-6, 6]^2, start N(0, I).
P3: ``benchmarks/cases/p3.toml`` (rotated anisotropic Gaussian 0.7 + banana 0.3, non-separable).
Every problem is the Fokker-Planck flow (diffusion 1, reflecting box) to t = 2.

Densities are compared as cell averages: a density on a fine grid is remapped to a coarser
grid of the same box by a cubic spline of its cumulative mass along each axis (fourth order,
conservative), so grids need not divide each other.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
T_END = 2.0

#: the 1D mixtures whose product is P2's target: (weights, means, standard deviations)
P2_X = ([0.5, 0.5], [-1.5, 1.5], [0.6, 0.6])
P2_Y = ([0.6, 0.4], [-1.0, 2.0], [0.7, 0.8])
P2_BOX = (-6.0, 6.0)


def _mixture(weights, means, sds) -> dict:
    """A 1D gridflow mixture table."""
    return {"kind": "mixture", "weights": list(weights), "components": [
        {"kind": "gaussian", "mean": [m], "cov": [[s * s]]} for m, s in zip(means, sds)]}


def p1_1d_case(*, cells: int, tolerance: float) -> dict:
    """P1 as a gridflow case."""
    return {"name": "p1", "grid": {"lower": [-8.0], "upper": [12.0], "cells": [cells], "boundary": "reflecting"},
            "target": _mixture([0.5, 0.5], [0.0, 4.0], [1.0, 1.0]),
            "initial": {"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]},
            "flow": {"kind": "fokker-planck", "diffusion": 1.0},
            "time": {"end": T_END, "save_times": [T_END], "tolerance": tolerance}}


def p2_axis_case(axis: int, *, cells: int, tolerance: float) -> dict:
    """The 1D factor of P2 along ``axis`` (0: x, 1: y) as a gridflow case: P2's solution is their product."""
    w, m, s = (P2_X, P2_Y)[axis]
    return {"name": f"p2-axis{axis}", "grid": {"lower": [P2_BOX[0]], "upper": [P2_BOX[1]], "cells": [cells]},
            "target": _mixture(w, m, s), "initial": {"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]},
            "flow": {"kind": "fokker-planck", "diffusion": 1.0},
            "time": {"end": T_END, "save_times": [T_END], "tolerance": tolerance}}


def p2_case(*, cells: int, tolerance: float) -> dict:
    """P2 as a gridflow case: the four-component mixture equal to the product of the two 1D mixtures."""
    comps, weights = [], []
    for wx, mx, sx in zip(*P2_X):
        for wy, my, sy in zip(*P2_Y):
            weights.append(wx * wy)
            comps.append({"kind": "gaussian", "mean": [mx, my], "cov": [[sx * sx, 0.0], [0.0, sy * sy]]})
    return {"name": "p2", "grid": {"lower": [P2_BOX[0]] * 2, "upper": [P2_BOX[1]] * 2, "cells": [cells, cells]},
            "target": {"kind": "mixture", "weights": weights, "components": comps},
            "initial": {"kind": "gaussian", "mean": [0.0, 0.0], "cov": [[1.0, 0.0], [0.0, 1.0]]},
            "flow": {"kind": "fokker-planck", "diffusion": 1.0},
            "time": {"end": T_END, "save_times": [T_END], "tolerance": tolerance}}


def p3_case(*, cells: int, tolerance: float) -> dict:
    """P3 (``benchmarks/cases/p3.toml``) with the given cells per axis and tolerance."""
    with open(HERE / "cases" / "p3.toml", "rb") as fh:
        case = tomllib.load(fh)
    case = copy.deepcopy(case)
    case["grid"]["cells"] = [cells, cells]
    case["grid"].setdefault("boundary", "reflecting")
    case["time"] = {"end": T_END, "save_times": [T_END], "tolerance": tolerance}
    return case


CASES = {"P1": p1_1d_case, "P2": p2_case, "P3": p3_case}
DIM = {"P1": 1, "P2": 2, "P3": 2}


def make_case(problem: str, *, cells: int, tolerance: float, flux: str | None = None) -> dict:
    """The gridflow case of ``problem`` ("P1", "P2", "P3"); ``flux`` sets ``flow.flux``."""
    case = CASES[problem](cells=cells, tolerance=tolerance)
    if flux is not None:
        case["flow"]["flux"] = flux
    return case


def box(problem: str) -> tuple[list[float], list[float]]:
    """Lower and upper corners of the problem's box."""
    g = make_case(problem, cells=8, tolerance=1e-3)["grid"]
    return list(g["lower"]), list(g["upper"])


def remap_axis(values: np.ndarray, *, axis: int, lower: float, upper: float, cells: int) -> np.ndarray:
    """Cell averages of ``values`` (cell averages on a uniform grid of [lower, upper]) on ``cells`` cells.

    The cumulative mass at the fine edges is interpolated by a cubic spline at the coarse edges
    (exact mass, fourth order for smooth densities); the same number of cells returns a copy.
    """
    from scipy.interpolate import CubicSpline

    n = values.shape[axis]
    if n == cells:
        return np.array(values, dtype=float)
    v = np.moveaxis(np.asarray(values, dtype=float), axis, 0)
    h = (upper - lower) / n
    cum = np.concatenate([np.zeros((1,) + v.shape[1:]), np.cumsum(v, axis=0) * h], axis=0)
    edges = np.linspace(lower, upper, n + 1)
    new_edges = np.linspace(lower, upper, cells + 1)
    new_cum = CubicSpline(edges, cum, axis=0)(new_edges)
    out = np.diff(new_cum, axis=0) / ((upper - lower) / cells)
    return np.moveaxis(out, 0, axis)


def remap(values: np.ndarray, *, lower, upper, cells) -> np.ndarray:
    """Remap cell averages on a box to ``cells`` (one count per axis), axis by axis."""
    out = np.asarray(values, dtype=float)
    for k, n in enumerate(cells):
        out = remap_axis(out, axis=k, lower=lower[k], upper=upper[k], cells=n)
    return out


def normalised(values: np.ndarray, *, cell_volume: float) -> np.ndarray:
    """``values`` scaled to unit mass."""
    return values / (values.sum() * cell_volume)


def l1_distance(rho: np.ndarray, reference: np.ndarray, *, lower, upper) -> float:
    """L1 distance of two densities on the same box, both normalised, on the coarser of their grids.

    The finer of the two is remapped (conservatively) to the grid of the other first.
    """
    if np.prod(rho.shape) > np.prod(reference.shape):
        rho, reference = reference, rho
    cells = rho.shape
    vol = float(np.prod([(u - l) / n for l, u, n in zip(lower, upper, cells)]))
    ref = remap(reference, lower=lower, upper=upper, cells=cells)
    return float(np.abs(normalised(rho, cell_volume=vol) - normalised(ref, cell_volume=vol)).sum() * vol)


def richardson(coarse: np.ndarray, fine: np.ndarray, *, lower, upper, order: int = 2) -> tuple[np.ndarray, float]:
    """Richardson extrapolation of a grid solution of order ``order`` from grids n and 2n.

    Returns the extrapolated cell averages on the coarse grid and the L1 norm of the
    correction, ``|fine - coarse| / (2**order - 1)``: the estimated error of ``fine``.
    """
    f = remap(fine, lower=lower, upper=upper, cells=coarse.shape)
    vol = float(np.prod([(u - l) / n for l, u, n in zip(lower, upper, coarse.shape)]))
    corr = (f - coarse) / (2 ** order - 1)
    return f + corr, float(np.abs(corr).sum() * vol)
