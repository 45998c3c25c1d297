"""As far_gaussian_wfr.py with fixed steps (the plain splitting step, no step doubling, no
extrapolation): the moment errors at t = end for each number of steps, so the time error (second
order in dt) can be separated from the space error (dt -> 0) and 1D compared with 2D at equal steps.

    PYTHONPATH=. python benchmarks/far_gaussian_wfr_fixed.py --dim 1 --h 0.1 --n 1024,2048,4096,8192
"""
import argparse, time, sys
import numpy as np
from gridflow.analysis.exact import gaussian_flow_moments, linear_schedule
from gridflow.core.grid import Grid
from gridflow.core.problem import Problem
from gridflow.io.case import parse_case
from gridflow.time.stepper import Stepper
import gridflow.flows.nodal as nodal

p = argparse.ArgumentParser()
p.add_argument("--dim", type=int, default=2)
p.add_argument("--mean", type=float, default=30.0)
p.add_argument("--h", type=float, default=0.1)
p.add_argument("--n", type=str, default="16,32")   # numbers of steps
p.add_argument("--margin", type=float, default=7.0)
p.add_argument("--end", type=float, default=0.125)
p.add_argument("--tempered", action="store_true")
p.add_argument("--corr", type=float, default=0.0)
p.add_argument("--nocross", action="store_true")
a = p.parse_args()
if a.nocross:
    def _shifts(lhat, grid):
        parts = [nodal._axis_shift(lhat, k, grid.periodic) for k in range(grid.dim)]
        return [q[0] for q in parts], parts
    nodal._shifts = _shifts
d = a.dim
if d == 1:
    lower, upper = [-a.margin], [a.mean + a.margin]
    tcov = [[0.5]]; m0 = [0.0]; c0 = [[1.0]]; tm = [a.mean]
else:
    ylo = -a.margin - (4.0 if a.corr else 0.0)
    lower, upper = [-a.margin, ylo], [a.mean + a.margin, a.margin]
    tcov = [[0.5, a.corr], [a.corr, 0.7]]; m0 = [0.0, 0.0]; c0 = np.eye(2).tolist(); tm = [a.mean, 0.0]
cells = [int(round((b - c) / a.h)) for c, b in zip(lower, upper)]
raw = {"name": "m", "grid": {"lower": lower, "upper": upper, "cells": cells},
       "target": {"kind": "gaussian", "mean": tm, "cov": tcov},
       "initial": {"kind": "gaussian", "mean": m0, "cov": c0},
       "flow": {"kind": "wfr", "flux": "log-quadratic"},
       "time": {"end": a.end, "save_every": a.end, "tolerance": 1e-5}}
if a.tempered:
    raw["tempering"] = {"schedule": {"kind": "linear", "duration": a.end}}
problem = Problem.from_case(parse_case(raw))
grid = problem.grid
X = np.meshgrid(*grid.axes, indexing="ij")
means, covs = gaussian_flow_moments([0.0, a.end], mean0=m0, cov0=c0, target_mean=tm, target_cov=tcov,
                                    schedule=linear_schedule(a.end) if a.tempered else None)
def moments(lr):
    pts = nodal.to_points(lr, grid)
    w = np.exp(pts - pts.max()); w /= w.sum()
    m = np.array([(w * x).sum() for x in X])
    cov = np.array([[(w * (X[i] - m[i]) * (X[j] - m[j])).sum() for j in range(d)] for i in range(d)])
    return m, cov
st = Stepper(problem, tolerance=1.0)
s0 = st.initial_state()
m, c = moments(s0.log_rho)
print(" ".join(sys.argv[1:]), f"cells={cells} t=0 err m={np.abs(m-means[0]).max():.2e} c={np.abs(c-covs[0]).max():.2e}")
for n in [int(s) for s in a.n.split(",")]:
    t0 = time.time()
    s = s0
    dt = a.end / n
    for i in range(n):
        s = st.step(s, dt)
    m, c = moments(s.log_rho)
    em, ec = m - means[1], c - covs[1]
    print(f"  n={n} dt={dt:.3g} " + " ".join(f"m{i}={em[i]:+.7e}" for i in range(d)) + " " +
          " ".join(f"c{i}{j}={ec[i, j]:+.7e}" for i in range(d) for j in range(i, d)) +
          f"  ({time.time() - t0:.1f}s load {open('/proc/loadavg').read().split()[0]})")
