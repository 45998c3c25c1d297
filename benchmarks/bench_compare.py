"""Speed of ``gridflow.analysis.metrics.compare`` (sample/compare issue, budget cases).

Targets on the 2-core reference machine:
  * 1D: 1e5 particles against a 4096-cell frame: under 2 s;
  * 2D: 2e4 particles against a 256 x 256 frame: under 10 s (all metrics), and under 0.3 s with the
    default metrics of ``gridflow compare`` (all but the O(N^2) MMD).

The frames are two-component Gaussian mixtures (the densities of ``bench_core.py``'s
targets); the particles are exact samples of a slightly shifted density, so that every
metric does its full work.  Prints the median and the spread of ``--repeat`` runs.

    python benchmarks/bench_compare.py [--repeat 7] [--bootstrap 0]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from gridflow.core.grid import Grid
from gridflow.analysis.metrics import compare
from gridflow.particles.grid_sampling import sample_grid_density

from timing import measure  # benchmarks/timing.py (scripts run from benchmarks/)


def frame_1d(shift: float = 0.0) -> tuple[Grid, np.ndarray]:
    grid = Grid((-10.0,), (20.0,), (4096,))
    x = grid.axes[0] - shift
    rho = 0.5 * np.exp(-0.5 * x ** 2) + 0.5 * np.exp(-0.5 * (x - 4.0) ** 2)
    return grid, rho / (rho.sum() * grid.cell_volume)


def frame_2d(shift: float = 0.0) -> tuple[Grid, np.ndarray]:
    grid = Grid((-8.0, -8.0), (8.0, 8.0), (256, 256))
    x, y = grid.coordinates
    x = x - shift
    a = np.exp(-0.5 * ((x + 2.0) ** 2 - 2 * 0.5 * (x + 2.0) * y + y ** 2) / 0.75)
    b = np.exp(-0.5 * ((x - 3.0) ** 2 + (y - 2.0) ** 2 / 0.5))
    rho = 0.5 * a / a.sum() + 0.5 * b / b.sum()
    return grid, rho / (rho.sum() * grid.cell_volume)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--bootstrap", type=int, default=0, help="bootstrap draws passed to compare (default 0)")
    args = parser.parse_args()
    cases = []
    grid, rho = frame_1d()
    samples = sample_grid_density(grid, frame_1d(0.05)[1], 100_000, rng=1)
    cases.append(("1D, 4096 cells, 1e5 particles", 2.0, lambda: compare(grid, rho, samples, bootstrap=args.bootstrap)))
    grid2, rho2 = frame_2d()
    samples2 = sample_grid_density(grid2, frame_2d(0.05)[1], 20_000, rng=2)
    cases.append(("2D, 256x256 cells, 2e4 particles", 10.0,
                  lambda: compare(grid2, rho2, samples2, bootstrap=args.bootstrap)))
    cases.append(("2D, 256x256 cells, 2e4 particles, default metrics (all but mmd)", 0.3,
                  lambda: compare(grid2, rho2, samples2, bootstrap=args.bootstrap, metrics="default")))
    for name, budget, fn in cases:
        fn()                                    # warm-up (imports, caches)
        times = measure(fn, args.repeat)
        note = f"budget {budget:g} s" if not args.bootstrap else f"bootstrap {args.bootstrap}: no budget"
        print(f"{name}: median {statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f}, "
              f"{args.repeat} runs; {note})")


if __name__ == "__main__":
    main()
