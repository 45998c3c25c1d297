"""WFR (log-quadratic flux) from N(0, I) to a far or near Gaussian: the error of each moment of the
point values against the Gaussian moment ODEs at end/2 and end (docs/numerics.md, "Cell averages and
point values"), with adaptive steps.  Box [-margin, mean + margin] x [-ymargin, ymargin] (ymargin
defaults to margin; --corr extends it by 4 below).  --nocross drops C's 2D cross term.

    PYTHONPATH=. python benchmarks/far_gaussian_wfr.py --dim 2 --mean 30 --h 0.1 --margin 6 --tol 1e-5
"""
import argparse, time, sys
import numpy as np
import gridflow
from gridflow.analysis.exact import gaussian_flow_moments, linear_schedule
from gridflow.core.grid import Grid
from gridflow.io.case import parse_case
import gridflow.flows.nodal as nodal

p = argparse.ArgumentParser()
p.add_argument("--dim", type=int, default=2)
p.add_argument("--mean", type=float, default=30.0)
p.add_argument("--h", type=float, default=0.1)
p.add_argument("--tol", type=float, default=1e-5)
p.add_argument("--margin", type=float, default=5.0)   # box beyond 0 and the target mean
p.add_argument("--ymargin", type=float, default=None)
p.add_argument("--end", type=float, default=0.125)
p.add_argument("--tempered", action="store_true")
p.add_argument("--corr", type=float, default=0.0)
p.add_argument("--nocross", action="store_true")
p.add_argument("--tcov", type=str, default="0.5,0.7")
a = p.parse_args()
if a.nocross:
    orig = nodal._shifts
    def _shifts(lhat, grid):
        parts = [nodal._axis_shift(lhat, k, grid.periodic) for k in range(grid.dim)]
        return [q[0] for q in parts], parts
    nodal._shifts = _shifts
d = a.dim
tv = [float(s) for s in a.tcov.split(",")]
ym = a.ymargin if a.ymargin is not None else a.margin
if d == 1:
    lower, upper = [-a.margin], [a.mean + a.margin]
    tcov = [[tv[0]]]; m0 = [0.0]; c0 = [[1.0]]; tm = [a.mean]
else:
    ylo = -ym - (4.0 if a.corr else 0.0)
    lower, upper = [-a.margin, ylo], [a.mean + a.margin, ym]
    tcov = [[tv[0], a.corr], [a.corr, tv[1]]]; m0 = [0.0, 0.0]; c0 = np.eye(2).tolist(); tm = [a.mean, 0.0]
cells = [int(round((b - c) / a.h)) for c, b in zip(lower, upper)]
raw = {"name": "m", "grid": {"lower": lower, "upper": upper, "cells": cells},
       "target": {"kind": "gaussian", "mean": tm, "cov": tcov},
       "initial": {"kind": "gaussian", "mean": m0, "cov": c0},
       "flow": {"kind": "wfr", "flux": "log-quadratic"},
       "time": {"end": a.end, "save_every": a.end / 2, "tolerance": a.tol}}
if a.tempered:
    raw["tempering"] = {"schedule": {"kind": "linear", "duration": a.end}}
t0 = time.time()
frames = gridflow.solve(parse_case(raw))
el = time.time() - t0
grid = Grid(lower, upper, cells)
X = np.meshgrid(*grid.axes, indexing="ij")
means, covs = gaussian_flow_moments([f.time for f in frames], mean0=m0, cov0=c0, target_mean=tm,
                                    target_cov=tcov, schedule=linear_schedule(a.end) if a.tempered else None)
out = []
worst = 0.0
for k, f in enumerate(frames):
    pts = nodal.to_points(f.log_rho, grid)
    w = np.exp(pts - pts.max()); w /= w.sum()
    m = np.array([(w * x).sum() for x in X])
    cov = np.array([[(w * (X[i] - m[i]) * (X[j] - m[j])).sum() for j in range(d)] for i in range(d)])
    em = m - means[k]; ec = cov - covs[k]
    row = [f.time] + list(em) + [ec[i, j] for i in range(d) for j in range(i, d)]
    out.append(row)
    worst = max(worst, float(np.abs(em).max()), float(np.abs(ec).max()))
names = ["t"] + [f"m{i}" for i in range(d)] + [f"c{i}{j}" for i in range(d) for j in range(i, d)]
print(" ".join(sys.argv[1:]), f"cells={cells} time={el:.1f}s load={open('/proc/loadavg').read().split()[0]} WORST={worst:.3g}")
for r in out:
    print("  " + " ".join(f"{n}={v:+.2e}" for n, v in zip(names, r)))
