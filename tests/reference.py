"""Exact references shared by the tests: Gaussian cases and exact cell averages."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from gridflow.core.grid import Grid


def gaussian(mean, cov) -> dict:
    return {"kind": "gaussian", "mean": list(map(float, mean)), "cov": [list(map(float, r)) for r in cov]}


def make_case(*, lower, upper, cells, initial, target, flow, schedule=None, end=1.0, tolerance=1e-7,
              diffusion=1.0, reaction=1.0, boundary="reflecting", save_every=None) -> dict:
    """A resolved-style case dict (what :func:`gridflow.io.case.load_case` returns)."""
    case = {
        "name": "test",
        "grid": {"lower": list(lower), "upper": list(upper), "cells": list(cells), "boundary": boundary},
        "initial": initial,
        "target": target,
        "flow": {"kind": flow, "diffusion": diffusion, "reaction": reaction},
        "time": {"end": end, "save_every": save_every or end, "tolerance": tolerance},
        "output": {"path": "outputs/test.h5"},
    }
    if schedule is not None:
        case["tempering"] = {"reference": "initial", "schedule": schedule}
    return case


def gaussian_cell_averages(grid: Grid, mean, cov) -> np.ndarray:
    """Exact cell averages of N(mean, cov): 1D by the CDF, 2D by 4x4 Gauss–Legendre per cell (O(h^8))."""
    mean = np.asarray(mean, float)
    cov = np.asarray(cov, float)
    if grid.dim == 1:
        e = grid.edges[0]
        return np.diff(ndtr((e - mean[0]) / np.sqrt(cov[0, 0]))) / grid.spacing[0]
    nodes, weights = np.polynomial.legendre.leggauss(4)
    prec = np.linalg.inv(cov)
    norm = 1.0 / (2 * np.pi * np.sqrt(np.linalg.det(cov)))
    out = np.zeros(grid.shape)
    X, Y = grid.coordinates
    hx, hy = grid.spacing
    for a, wa in zip(nodes, weights):
        for b, wb in zip(nodes, weights):
            dx = X + 0.5 * hx * a - mean[0]
            dy = Y + 0.5 * hy * b - mean[1]
            q = prec[0, 0] * dx * dx + 2 * prec[0, 1] * dx * dy + prec[1, 1] * dy * dy
            out += 0.25 * wa * wb * norm * np.exp(-0.5 * q)
    return out


def l1(a: np.ndarray, b: np.ndarray, grid: Grid) -> float:
    return float(np.abs(a - b).sum() * grid.cell_volume)
