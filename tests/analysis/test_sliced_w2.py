"""The sliced W2 of an ensemble by the quantile integrals of the projected grid law
(gridflow.analysis.distances.SlicedReference.w2_squared) against the merge of the two quantile functions."""

from __future__ import annotations

import numpy as np
import pytest

from gridflow.analysis.distances import SlicedReference, cumulative_weights, quantile_distances
from gridflow.core.grid import Grid


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n", [2, 300, 20000])
def test_quantile_integrals_give_the_merged_quantile_w2(weighted, n):
    """Both are exact: they agree to rounding, about N eps Var / W2^2 relative (< 1e-8 here), for
    exact-like, shifted, weighted and two-particle ensembles; the grid has empty cells (flat CDF
    stretches, denormal masses in the tails)."""
    grid = Grid((-6.0, -5.0), (6.0, 7.0), (96, 80))
    X, Y = grid.coordinates
    masses = np.exp(-0.5 * ((X - 1.0) ** 2 / 0.5 + (Y - 0.5) ** 2 + 0.6 * X * Y))
    masses[masses < 1e-300] = 0.0
    masses[40:44, :] = 0.0
    masses /= masses.sum()
    ref = SlicedReference(grid, masses, directions=16)
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 2)) * [0.7, 1.0] + [1.2, 0.4]
    w = rng.random(n) if weighted else None
    got = ref.w2_squared(x, None if w is None else w / w.sum())
    for l, (t, P) in enumerate(ref.lattices):
        proj = x @ ref.units[l]
        order = np.argsort(proj, kind="stable")
        want = quantile_distances(proj[order], cumulative_weights(None if w is None else w[order], n), t, P)[1]
        assert got[l] == pytest.approx(want, rel=1e-8, abs=1e-14)
