"""Speed of the reference samplers (gridflow.particles.samplers): time per step and per particle-step.

Runs every sampler on its flow for a 1D bimodal case (½N(0,1) + ½N(4,1) from N(0,1)) and a 2D
two-mode case, with N particles and step 0.01 to t = 1 (100 steps), and prints the median of
``--repeat`` runs.  No budget: a reference for the validation studies' cost
(a study costs replicates x sum over (N, h) of N t / h particle-steps).

    python benchmarks/bench_samplers.py [--particles 4000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from gridflow.io.case import parse_case
from gridflow.particles.samplers import SAMPLERS, ParticleModel, make_sampler


def gaussian(mean, cov):
    return {"kind": "gaussian", "mean": list(mean), "cov": [list(r) for r in cov]}


def case(dim: int, flow: str) -> dict:
    if dim == 1:
        grid = {"lower": [-8.0], "upper": [12.0], "cells": [2000]}
        target = {"kind": "mixture", "weights": [0.5, 0.5],
                  "components": [gaussian([0.0], [[1.0]]), gaussian([4.0], [[1.0]])]}
        initial = gaussian([0.0], [[1.0]])
    else:
        grid = {"lower": [-8.0, -8.0], "upper": [10.0, 10.0], "cells": [128, 128]}
        eye = [[1.0, 0.0], [0.0, 1.0]]
        target = {"kind": "mixture", "weights": [0.5, 0.5],
                  "components": [gaussian([0.0, 0.0], eye), gaussian([4.0, 3.0], eye)]}
        initial = gaussian([0.0, 0.0], eye)
    return parse_case({"name": "bench", "grid": grid, "target": target, "initial": initial,
                       "flow": {"kind": flow}, "time": {"end": 1.0}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--particles", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for dim in (1, 2):
        for name, cls in SAMPLERS.items():
            model = ParticleModel.from_case(case(dim, cls.flows[0]))
            times = []
            for r in range(args.repeat):
                sampler = make_sampler(name, model, step=0.01)
                t0 = time.perf_counter()
                list(sampler.run(particles=args.particles, times=[1.0], rng=r))
                times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            print(f"{dim}D {name:8s} N={args.particles}: {med:.3f} s for 100 steps "
                  f"({1e3 * med / 100:.2f} ms/step, {1e9 * med / (100 * args.particles):.0f} ns/particle-step)")


if __name__ == "__main__":
    main()
