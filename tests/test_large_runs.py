"""The pure helpers of benchmarks/large_runs.py (Richardson at common centres, docs section splicing)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import large_runs  # noqa: E402
import report  # noqa: E402


def _density_and_error(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth normalised density f and a smooth error shape e (zero integral) at the n² centres."""
    x = large_runs.centres(n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    f = np.exp(-0.5 * ((X - 0.4) ** 2 / 0.8 + (Y + 0.3) ** 2 / 1.3)) / (2 * np.pi * np.sqrt(0.8 * 1.3))
    e = f * ((X - 0.4) ** 2 / 0.8 ** 2 - 1 / 0.8)      # d^2 f / dx^2: integrates to 0 over the box
    return f, e


def _synthetic_reference(n: int = 40):
    """The Reference of u_n = f + h^2 e and u_3n (same f, e), with f, e at the n² centres and h."""
    h = 12.0 / n
    f, e = _density_and_error(n)
    ff, ef = _density_and_error(3 * n)
    return large_runs.Reference(f + h ** 2 * e, ff + (h / 3) ** 2 * ef), f, e, h


def test_reference_removes_a_second_order_error_at_common_centres():
    # u_n = f + h^2 e at the centres: the pair (n, 3n) extrapolates to f, and |u_3n - u_n| / 8 is the
    # fine grid's own error h_3n^2 |e|, up to the normalisation by the discrete mass: the box (y = -6 is 5
    # standard deviations from the mean) cuts off a mass ~1e-6 of f, and of h^2 e, a relative change below 1e-5
    ref, f, e, h = _synthetic_reference()
    assert np.abs(ref.at_coarse - f).max() < 1e-13 * f.max()
    true_fine_error = (h / 3) ** 2 * np.abs(e).sum() * h ** 2
    assert ref.fine_error == pytest.approx(true_fine_error, rel=1e-5)


def test_reference_on_another_grid_is_the_spline_of_the_extrapolation():
    ref, f, _, _ = _synthetic_reference()
    exact, _ = _density_and_error(80)
    # bicubic interpolation: O(h_fine^4 f'''') ~ 1e-4 * 0.1 here; the h^2 error itself (~6e-3) is removed
    assert np.abs(ref.on_grid(80) - exact).max() < 2e-4 * exact.max()
    with pytest.raises(ValueError, match="3 times"):
        large_runs.Reference(f, ref.fine[:-3, :-3])


def test_splice_section_replaces_inserts_and_is_kept():
    heading = report.LARGE_RUNS
    doc = "# Title\n\n## A\n\na\n\n## Reproduce\n\n    run\n"
    first = report.splice_section(doc, heading, f"{heading}\n\nv1\n")
    assert first.index(heading) < first.index("## Reproduce") and "v1" in first
    second = report.splice_section(first, heading, f"{heading}\n\nv2")
    assert "v1" not in second and second.count(heading) == 1
    assert report.section(second, heading) == f"{heading}\n\nv2"
    assert report.splice_section(second, heading, f"{heading}\n\nv2") == second
    assert report.section(doc, heading) is None
