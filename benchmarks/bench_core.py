"""Speed of the core solver (issue: core engine, acceptance 6).

Targets on the 2-core reference machine, tolerance 1e-6:
  * 1D tempered WFR, 4096 cells, to t = 10: under 1 s;
  * 2D tempered WFR, 256 x 256 cells, to t = 2: under 20 s.

Times the whole solve with diagnostics at every saved frame (``gridflow.io.runner.solve``),
and, with --file, the full ``run`` that also writes the trajectory file.  Prints the median
and the spread of ``--repeat`` runs.

    python benchmarks/bench_core.py [--repeat 5] [--file]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from timing import measure  # benchmarks/timing.py (scripts run from benchmarks/)


def case_1d() -> dict:
    return {
        "name": "bench-1d",
        "grid": {"lower": [-10.0], "upper": [20.0], "cells": [4096], "boundary": "reflecting"},
        "target": {"kind": "mixture", "weights": [0.5, 0.5], "components": [
            {"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]},
            {"kind": "gaussian", "mean": [4.0], "cov": [[1.0]]}]},
        "initial": {"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]},
        "tempering": {"reference": "initial", "schedule": {"kind": "linear", "duration": 10.0}},
        "flow": {"kind": "wfr", "diffusion": 1.0, "reaction": 1.0},
        "time": {"end": 10.0, "save_every": 0.1, "tolerance": 1e-6},
        "output": {"path": "outputs/bench-1d.h5"},
    }


def case_2d() -> dict:
    return {
        "name": "bench-2d",
        "grid": {"lower": [-8.0, -8.0], "upper": [8.0, 8.0], "cells": [256, 256], "boundary": "reflecting"},
        "target": {"kind": "mixture", "weights": [0.5, 0.5], "components": [
            {"kind": "gaussian", "mean": [-2.0, 0.0], "cov": [[1.0, 0.5], [0.5, 1.0]]},
            {"kind": "gaussian", "mean": [3.0, 2.0], "cov": [[1.0, 0.0], [0.0, 0.5]]}]},
        "initial": {"kind": "gaussian", "mean": [0.0, 0.0], "cov": [[1.0, 0.0], [0.0, 1.0]]},
        "tempering": {"reference": "initial", "schedule": {"kind": "linear", "duration": 2.0}},
        "flow": {"kind": "wfr", "diffusion": 1.0, "reaction": 1.0},
        "time": {"end": 2.0, "save_every": 0.1, "tolerance": 1e-6},
        "output": {"path": "outputs/bench-2d.h5"},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--file", action="store_true", help="also time the full run writing the HDF5 file")
    args = ap.parse_args()
    from gridflow.io.runner import run, solve

    for name, make, budget in (("1D tempered WFR 4096 cells, t=10", case_1d, 1.0),
                               ("2D tempered WFR 256x256, t=2", case_2d, 20.0)):
        case = make()
        solve(case)  # warm-up (imports, caches)
        times = measure(lambda: solve(case), args.repeat)
        med = statistics.median(times)
        print(f"{name}: solve median {med:.3f} s (min {min(times):.3f}, max {max(times):.3f}, "
              f"n={len(times)}) budget {budget:g} s -> {'OK' if med < budget else 'OVER'}")
        if args.file:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "bench.h5"
                times = measure(lambda: run(case, output=out), args.repeat)
            med = statistics.median(times)
            print(f"{name}: run+file median {med:.3f} s (min {min(times):.3f}, max {max(times):.3f}) "
                  f"budget {budget:g} s -> {'OK' if med < budget else 'OVER'}")


if __name__ == "__main__":
    main()
