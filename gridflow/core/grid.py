"""Uniform cell-centred finite-volume grids on boxes in one or two dimensions."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

BOUNDARIES = ("reflecting", "periodic")


@dataclass(frozen=True)
class Grid:
    """A box ``[lower, upper]`` split into ``cells`` equal cells per axis.

    Values on the grid are cell averages stored at the cell centres, in arrays of
    shape :attr:`shape` indexed ``(x)`` or ``(x, y)``.  ``boundary`` is
    ``"reflecting"`` (zero flux through the walls) or ``"periodic"``.
    """

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    cells: tuple[int, ...]
    boundary: str = "reflecting"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lower", tuple(float(v) for v in self.lower))
        object.__setattr__(self, "upper", tuple(float(v) for v in self.upper))
        object.__setattr__(self, "cells", tuple(int(v) for v in self.cells))
        if not (len(self.lower) == len(self.upper) == len(self.cells)) or len(self.cells) not in (1, 2):
            raise ValueError("lower, upper and cells need one entry per dimension (1 or 2)")
        if any(u <= l for l, u in zip(self.lower, self.upper)):
            raise ValueError("every upper bound must exceed its lower bound")
        if any(n < 2 for n in self.cells):
            raise ValueError("every axis needs at least 2 cells")
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}")

    @property
    def dim(self) -> int:
        """Number of space dimensions (1 or 2)."""
        return len(self.cells)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of an array of cell values."""
        return self.cells

    @property
    def size(self) -> int:
        """Total number of cells."""
        return int(np.prod(self.cells))

    @property
    def periodic(self) -> bool:
        return self.boundary == "periodic"

    @cached_property
    def spacing(self) -> tuple[float, ...]:
        """Cell width per axis."""
        return tuple((u - l) / n for l, u, n in zip(self.lower, self.upper, self.cells))

    @property
    def cell_volume(self) -> float:
        """Length (1D) or area (2D) of one cell."""
        return float(np.prod(self.spacing))

    @cached_property
    def edges(self) -> tuple[np.ndarray, ...]:
        """Cell edges per axis, ``cells[k] + 1`` values each."""
        return tuple(np.linspace(l, u, n + 1) for l, u, n in zip(self.lower, self.upper, self.cells))

    @cached_property
    def axes(self) -> tuple[np.ndarray, ...]:
        """Cell centres per axis."""
        return tuple(l + (np.arange(n) + 0.5) * h for l, n, h in zip(self.lower, self.cells, self.spacing))

    def bounds(self, axis: int) -> np.ndarray:
        """Cell bounds of one axis as an array of shape ``(cells, 2)`` (CF convention)."""
        e = self.edges[axis]
        return np.stack([e[:-1], e[1:]], axis=1)

    @cached_property
    def coordinates(self) -> tuple[np.ndarray, ...]:
        """Cell-centre coordinates broadcast to :attr:`shape` (``indexing='ij'``)."""
        return tuple(np.meshgrid(*self.axes, indexing="ij"))

    @cached_property
    def points(self) -> np.ndarray:
        """Cell centres as an array of shape ``(size, dim)`` in C order."""
        return np.stack([c.ravel() for c in self.coordinates], axis=1)

    def integrate(self, values: np.ndarray) -> float:
        """Midpoint-rule integral of cell values over the box (exact for cell averages)."""
        return float(np.sum(values) * self.cell_volume)
