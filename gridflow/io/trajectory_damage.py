"""Damaged frames of a trajectory: times out of order, densities not finite, negative or of mass off 1."""

from __future__ import annotations

import math

import numpy as np

from gridflow.io.trajectory import Trajectory

__all__ = ["MASS_TOLERANCE", "damaged_frames"]

MASS_TOLERANCE = 1e-6
"""How far from 1 a frame's mass may be before the frame counts as damaged (the solver keeps it
to round-off, ~1e-13)."""


def damaged_frames(tr: Trajectory) -> list[tuple[int, float, str]]:
    """Every damaged frame of ``tr`` as ``(index, time, problem)``: a time that is NaN, infinite
    or not after the previous frame's, a density that is not finite, negative, or of mass off 1
    by more than :data:`MASS_TOLERANCE`.  Empty for a sound trajectory."""
    found: list[tuple[int, float, str]] = []
    vol = tr.grid.cell_volume if len(tr.time) else 1.0
    last = -math.inf
    for k, t in enumerate(np.asarray(tr.time, dtype=float)):
        problems = []
        if not math.isfinite(t):
            problems.append(f"time is {float(t)}")
        elif t <= last:
            problems.append(f"time not after the previous frame's ({last:.10g})")
        if math.isfinite(t):
            last = max(last, t)
        rho = np.asarray(tr.density[k], dtype=float)
        if not np.all(np.isfinite(rho)):
            problems.append(f"density not finite in {int(np.count_nonzero(~np.isfinite(rho)))} cells")
        else:
            if np.any(rho < 0):
                problems.append(f"negative density (min {float(rho.min()):.3g})")
            mass = float(rho.sum() * vol)
            if not abs(mass - 1.0) <= MASS_TOLERANCE:
                problems.append(f"mass {mass:.12g}, not 1")
        if problems:
            found.append((k, float(t), "; ".join(problems)))
    return found
