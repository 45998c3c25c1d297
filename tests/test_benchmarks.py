"""The pure helpers of the competitor benchmarks (benchmarks/problems.py): remap, L1, Richardson."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import erf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import problems  # noqa: E402


def _gauss_averages(n: int, *, lo: float = -6.0, up: float = 6.0, mean: float = 0.3, sd: float = 1.0) -> np.ndarray:
    """Exact cell averages of N(mean, sd^2) on n cells of [lo, up]."""
    e = np.linspace(lo, up, n + 1)
    return np.diff(0.5 * erf((e - mean) / (sd * np.sqrt(2)))) / ((up - lo) / n)


@pytest.mark.parametrize("fine,coarse", [(256, 64), (300, 64), (200, 48)])
def test_remap_of_exact_averages_is_fourth_order_and_conservative(fine, coarse):
    got = problems.remap_axis(_gauss_averages(fine), axis=0, lower=-6.0, upper=6.0, cells=coarse)
    exact = _gauss_averages(coarse)
    # cubic spline of the cumulative mass: error O(h_fine^4) in the CDF, divided by h_coarse
    h_f, h_c = 12.0 / fine, 12.0 / coarse
    assert np.abs(got - exact).max() < 2 * h_f ** 4 / h_c
    assert got.sum() * h_c == pytest.approx(1.0 - 2e-9, abs=1e-8)   # mass beyond +-6 sd is ~2e-9


def test_l1_distance_of_shifted_gaussians_matches_closed_form():
    # L1 between N(0,1) and N(d,1) is 2 (2 Phi(d/2) - 1)
    d = 0.1
    a = _gauss_averages(512, mean=0.0)
    b = _gauss_averages(128, mean=d)
    closed = 2 * erf(d / 2 / np.sqrt(2))
    got = problems.l1_distance(a, b, lower=[-6.0], upper=[6.0])
    assert got == pytest.approx(closed, rel=2e-3)   # averaging over h = 12/128 blurs by O(h^2)
    assert problems.l1_distance(b, a, lower=[-6.0], upper=[6.0]) == pytest.approx(got, rel=1e-12)


def test_l1_distance_2d_is_separable_for_identical_factor():
    a1, b1 = _gauss_averages(64, mean=0.0), _gauss_averages(64, mean=0.2)
    f = _gauss_averages(64, mean=-1.0)
    one = problems.l1_distance(a1, b1, lower=[-6.0], upper=[6.0])
    two = problems.l1_distance(np.outer(a1, f), np.outer(b1, f), lower=[-6.0] * 2, upper=[6.0] * 2)
    assert two == pytest.approx(one, rel=1e-9)


def test_richardson_removes_second_order_error():
    # a second-order "solver": the point value at the cell centre (= average - h^2/24 f'')
    def centres(n):
        e = np.linspace(-6, 6, n + 1)
        x = 0.5 * (e[1:] + e[:-1])
        return np.exp(-0.5 * (x - 0.3) ** 2) / np.sqrt(2 * np.pi)

    exact = _gauss_averages(64)
    coarse, fine = centres(64), centres(128)
    ext, est = problems.richardson(coarse, fine, lower=[-6.0], upper=[6.0])
    err_fine = np.abs(problems.remap(fine, lower=[-6.0], upper=[6.0], cells=[64]) - exact).sum() * 12 / 64
    err_ext = np.abs(ext - exact).sum() * 12 / 64
    assert est == pytest.approx(err_fine, rel=0.05)     # the estimate is the fine grid's error
    assert err_ext < err_fine / 20                       # extrapolation gains at least one order


def test_p2_case_is_the_product_of_its_axis_cases():
    from gridflow.core.problem import Problem

    p2 = Problem.from_case(problems.p2_case(cells=32, tolerance=1e-3))
    px = Problem.from_case(problems.p2_axis_case(0, cells=32, tolerance=1e-3))
    py = Problem.from_case(problems.p2_axis_case(1, cells=32, tolerance=1e-3))
    prod = px.path.log_target[:, None] + py.path.log_target[None, :]
    assert np.allclose(p2.path.log_target, prod, atol=1e-10)
