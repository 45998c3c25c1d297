"""Step doubling's comparison: the compiled pass equals the numpy definitions, at every extreme."""

from __future__ import annotations

import numpy as np
import pytest

from gridflow.core.backend import COMPILED_CELLS as COMPILED_SIZE
from gridflow.time.doubling import compare, extrapolate, local_error


def _pair(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two log densities a step apart: a smooth profile reaching e^-900, an empty region, noise."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-30.0, 30.0, n)
    half = -x**2 + 0.1 * rng.standard_normal(n)          # down to about -900: below the double range
    half[: n // 50] = -np.inf                            # empty in both
    full = half + 0.3 * np.clip(rng.standard_normal(n), -4.0, 4.0)   # below log 4: extrapolation positive
    full[: n // 50] = -np.inf
    return half, full


@pytest.mark.parametrize("n", [COMPILED_SIZE - 1, COMPILED_SIZE, COMPILED_SIZE + 3 * 8192 + 17])
def test_compare_equals_local_error_and_extrapolate(n):
    """Error to round-off of the sum (relative 1e-13) and the extrapolation to 1e-12 in every cell,
    including cells far below the double range and empty ones (still empty)."""
    half, full = _pair(n, seed=n)
    err, ex = compare(half, full, 0.01)
    assert err == pytest.approx(local_error(half, full, 0.01), rel=1e-13, abs=0.0)
    ref = extrapolate(half, full)
    assert ref is not None and ex is not None
    empty = np.isneginf(ref)
    np.testing.assert_array_equal(np.isneginf(ex), empty)
    assert empty.sum() == n // 50
    np.testing.assert_allclose(ex[~empty], ref[~empty], rtol=1e-15, atol=1e-12)
    assert np.all(np.isfinite(ex[~empty])) and ex[~empty].min() < -800.0   # no cell underflowed to -inf


@pytest.mark.parametrize("n", [COMPILED_SIZE - 1, COMPILED_SIZE + 3 * 8192 + 17])
@pytest.mark.parametrize("spoil", ["negative", "nan", "revived"])
def test_compare_refuses_an_extrapolation_that_would_not_be_positive(n, spoil):
    """A cell where the full step is 4x the half steps' (the extrapolation would be <= 0), a NaN, or
    a cell empty after the half steps but not after the full step: no extrapolation, in one cell
    among tens of thousands, in the last chunk."""
    half, full = _pair(n, seed=3)
    if spoil == "negative":
        full[-5] = half[-5] + np.log(4.0)
    elif spoil == "nan":
        full[-5] = np.nan
    else:
        half[-5] = -np.inf
    err, ex = compare(half, full, 1.0)
    assert ex is None and extrapolate(half, full) is None
    if spoil == "nan":
        assert np.isnan(err)
    else:
        assert err == pytest.approx(local_error(half, full, 1.0), rel=1e-13)


def test_compare_in_2d_keeps_the_shape():
    half, full = _pair(120 * 80, seed=5)
    err, ex = compare(half.reshape(120, 80), full.reshape(120, 80), 0.5)
    assert ex.shape == (120, 80)
    np.testing.assert_allclose(ex, extrapolate(half, full).reshape(120, 80), rtol=1e-15, atol=1e-12)
    assert err == pytest.approx(local_error(half, full, 0.5), rel=1e-13)


@pytest.mark.parametrize("n", [COMPILED_SIZE - 1, COMPILED_SIZE, COMPILED_SIZE + 5 * 8192 + 17])
def test_weighted_error_sees_the_relative_error_where_the_target_is(n):
    """With a weight (the target), each cell counts max(|e^a - e^b|, w |a - b|): equal to the L1
    error where the density holds the mass, and where it lies e^-600 below a target cell of weight
    0.3 a relative difference of 1e-3 counts 3e-4 (L1: nothing).  Compiled and numpy agree."""
    half, full = _pair(n, seed=11)
    log_w = np.full(n, -np.inf)
    err0, _ = compare(half, full, 0.1, log_w)                # zero weight: the L1 error
    assert err0 == pytest.approx(local_error(half, full, 0.1), rel=1e-13)
    k = n // 2 + 7
    half[k] = -600.0
    full[k] = -600.0 + 1e-3
    log_w[k] = np.log(0.3)
    err, _ = compare(half, full, 0.1, log_w)
    base = local_error(half, full, 0.1)
    assert err == pytest.approx(base + 0.1 * (0.3e-3 - abs(np.exp(half[k]) - np.exp(full[k]))), rel=1e-12)
    assert err == pytest.approx(local_error(half, full, 0.1, log_w), rel=1e-13)
