"""The case file schema: every table, its keys, their checkers and defaults, and the limits.

:data:`SECTIONS` (the top-level tables), :data:`DISTRIBUTIONS` and :data:`SCHEDULES` (tables
selected by ``kind``) are the one definition of every key and every default of a case
(docs/conventions.md lists them), e.g. :data:`DEFAULT_TOLERANCE`.  The cross-field rules that
need more than one key (a positive definite covariance, normalisable weights, a representable
box, resolvable saved times, a finite stiffness, an expression schedule within [0, 1]) are the
``check_*`` functions, called by :mod:`gridflow.io.case` while it resolves a case.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np

from gridflow.core.schedule import ADAPTIVE_RULES
from gridflow.errors import CaseError, ExpressionError
from gridflow.io.case_checks import (Context, Field, OMIT, Schema, as_list, boolean, check_kinded, fail, join_path,
                                     num, nums, text)

__all__ = ["BOUNDARIES", "DEFAULT_TOLERANCE", "DISTRIBUTIONS", "DISTRIBUTION_KINDS", "FLOW_KINDS", "FLUXES",
           "MAX_CELLS", "MAX_COORDINATE", "MAX_FRAMES", "MAX_NAME_LENGTH", "MAX_STEPS", "MAX_STIFFNESS",
           "SCHEDULES", "SCHEDULE_KINDS", "SECTIONS", "SECTION_EXAMPLES", "TIME_RESOLUTION", "TOP_LEVEL",
           "check_box", "check_distribution", "check_schedule_range", "check_stiffness", "check_times"]

FLOW_KINDS = ("fokker-planck", "fisher-rao", "wfr", "path")
BOUNDARIES = ("reflecting", "periodic")
FLUXES = ("scharfetter-gummel", "log-mean", "log-quadratic")
#: what the grid values of the state are (flow.values; "auto": cell averages exactly where the
#: log-quadratic flux meets a Fisher-Rao part, centre values elsewhere; docs/conventions.md)
GRID_VALUES = ("auto", "cell-averages", "centre-values")
FILE_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")
#: Largest total number of cells of a grid.
MAX_CELLS = 10_000_000
#: Deepest nesting of mixtures inside mixtures.
MAX_NESTING = 32
#: Longest case name (it becomes a file name, with suffixes such as ``-validate-SAMPLER.png``).
MAX_NAME_LENGTH = 128
#: Most saved frames of a run (checked before any list of times is built).
MAX_FRAMES = 100_000
#: Most time steps ``time.end / time.max_step`` a run may be forced to take.
MAX_STEPS = 10_000_000
#: Largest absolute box coordinate: squared distances and cell volumes must stay finite.
MAX_COORDINATE = 1e100
#: Smallest cell width relative to the box coordinates (below it cell centres are not distinct).
MIN_RELATIVE_CELL = 1e-10
#: Largest rate x time of the flow (``diffusion * end / h^2``, ``reaction * end``): beyond it the
#: solver's arithmetic (squares of rates, exponentials of rate x time) is no longer finite.
MAX_STIFFNESS = 1e100
#: Smallest separation of saved times, relative to ``max(1, time.end)``: the integrator resolves
#: times to 1e-12 x max(1, t), so frames closer than 1000 times that are not distinct.
TIME_RESOLUTION = 1e-9
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
#: Default local error per time step (``time.tolerance``), in total variation; the solver, the
#: stepper and every reader of a case without it use this value.
DEFAULT_TOLERANCE = 1e-7

def _cells(v: Any, path: str, ctx: Context) -> list[int]:
    what = f"a list of {ctx.d} integer{'s' if ctx.d > 1 else ''} >= 2 (cells per dimension)"
    items = as_list(v, path, what, "cells = [200]" if ctx.d == 1 else "cells = [200, 200]")
    if len(items) != ctx.d:
        fail(path, v, what, f"Give one cell count per dimension of the grid (grid.lower has {ctx.d} entries).")
    out = []
    for i, c in enumerate(items):
        if not isinstance(c, Integral) or isinstance(c, bool):
            fail(f"{path}[{i}]", c, "an integer >= 2", "Write the number of cells as a whole number, e.g. 200.")
        if c < 2:
            fail(f"{path}[{i}]", c, "an integer >= 2", "A grid needs at least 2 cells per dimension.")
        out.append(int(c))
    if math.prod(out) > MAX_CELLS:
        fail(path, v, f"at most {MAX_CELLS:.0e} cells in total (found {math.prod(out)})",
              "Use fewer cells per dimension.")
    return out


def _matrix(v: Any, path: str, ctx: Context) -> list[list[float]]:
    d = ctx.d
    what = f"a {d}x{d} matrix written as a list of {d} rows, each a list of {d} numbers"
    example = "cov = [[1.0]]" if d == 1 else "cov = [[1.0, 0.0], [0.0, 1.0]]"
    rows = as_list(v, path, what, example)
    if len(rows) != d:
        fail(path, v, what, f"Give one row per dimension of the grid, e.g. {example}.")
    out = []
    for i, row in enumerate(rows):
        r = as_list(row, f"{path}[{i}]", f"a list of {d} numbers", example)
        if len(r) != d:
            fail(f"{path}[{i}]", row, f"a list of {d} numbers", f"Each row has one entry per dimension, e.g. {example}.")
        out.append([num()(x, f"{path}[{i}][{j}]", ctx) for j, x in enumerate(r)])
    return out


def _check_covariance(c: list[list[float]], path: str) -> None:
    """Raise unless ``c`` is symmetric (to 1e-12 relative) and positive definite (Cholesky)."""
    d = len(c)
    scale = max(abs(x) for row in c for x in row)
    for i in range(d):
        for j in range(i):
            if not abs(c[i][j] - c[j][i]) <= 1e-12 * scale:
                raise CaseError(
                    f"{path} is not symmetric: {path}[{i}][{j}] = {c[i][j]!r} but {path}[{j}][{i}] = {c[j][i]!r}. "
                    f"A covariance matrix equals its transpose (to 1e-12 relative): make the two entries equal."
                )
    low = [[0.0] * d for _ in range(d)]  # Cholesky factor, by hand (d <= 2; plain floats, no numpy traps)
    for j in range(d):
        s = c[j][j] - sum(low[j][k] ** 2 for k in range(j))
        if not (math.isfinite(s) and s > 0.0):
            raise CaseError(
                f"{path} is not positive definite: its Cholesky factorisation fails at pivot {j} "
                f"(remaining variance {s:.6g} <= 0). A covariance needs positive variances on the diagonal "
                f"and correlations strictly between -1 and 1: increase the diagonal entries or shrink the "
                f"off-diagonal ones (e.g. {path} = [[1.0, 0.5], [0.5, 1.0]] in 2D)."
            )
        low[j][j] = math.sqrt(s)
        for i in range(j + 1, d):
            low[i][j] = (c[i][j] - sum(low[i][k] * low[j][k] for k in range(j))) / low[j][j]


def _check_weights(weights: list[float], path: str) -> None:
    """Mixture weights must normalise in floating point: a finite sum, and no weight negligible to 0."""
    total = sum(weights)
    if not math.isfinite(total):
        raise CaseError(f"{path}: the weights sum to more than {np.finfo(float).max:.3g}, so they cannot be "
                        f"normalised. Only their ratios matter: divide them all by a common factor, e.g. "
                        f"weights = [0.5, 0.5].")
    smallest = min(weights)
    if smallest / total == 0.0:
        k = weights.index(smallest)
        raise CaseError(f"{path}[{k}]: the weight {smallest!r} is below the floating-point resolution of the "
                        f"total {total:.6g} (its normalised weight is 0). Remove that component or give it a "
                        f"larger weight.")


def check_box(grid: Mapping) -> None:
    """The box must be representable: coordinates of magnitude <= MAX_COORDINATE and distinct cell centres."""
    for i, (lo, hi, n) in enumerate(zip(grid["lower"], grid["upper"], grid["cells"])):
        big = max(abs(lo), abs(hi))
        if big > MAX_COORDINATE:
            key = "grid.lower" if abs(lo) >= abs(hi) else "grid.upper"
            fail(f"{key}[{i}]", lo if key == "grid.lower" else hi,
                  f"a coordinate of magnitude <= {MAX_COORDINATE:g} (the box is too large: squared distances "
                  f"and cell volumes would overflow)", "Use a smaller box, or rescale the coordinates.")
        h = (hi - lo) / n
        if not h >= max(MIN_RELATIVE_CELL * big, 1.0 / MAX_COORDINATE):
            fail(f"grid.cells[{i}]", n, f"cells at least {max(MIN_RELATIVE_CELL * big, 1.0 / MAX_COORDINATE):.3g} "
                  f"wide (found {h:.3g}: the box is too narrow for the size of its coordinates, cell centres "
                  f"would not be distinct numbers)", "Use fewer cells, a wider box, or coordinates centred near 0.")


def check_times(time: dict) -> None:
    """Saved times must be resolvable and not too many (counted before any list of times is built)."""
    end = time["end"]
    spacing = TIME_RESOLUTION * max(1.0, end)
    rescale = ("The integrator resolves times to 1e-12 x max(1, t). To simulate a very short time, rescale it: "
               "multiply the times by c and divide flow.diffusion and flow.reaction by c.")
    if end < spacing:
        fail("time.end", end, f"a final time >= {TIME_RESOLUTION:g}", rescale)
    if "save_every" in time:
        every = time["save_every"]
        frames = end / every
        if frames > MAX_FRAMES:
            fail("time.save_every", every, f"at most {MAX_FRAMES} frames (time.end / save_every = {frames:.3g})",
                  f"Save less often: save_every >= {end / MAX_FRAMES:.6g}.")
        if every < spacing:
            fail("time.save_every", every, f"an interval >= {spacing:.3g} (= {TIME_RESOLUTION:g} x max(1, time.end))",
                  rescale)
    if "save_times" in time:
        times = time["save_times"]
        if len(times) > MAX_FRAMES:
            fail("time.save_times", times, f"at most {MAX_FRAMES} times", "Save fewer frames.")
        for i, (a, b) in enumerate(zip([0.0] + times, times)):
            if 0.0 < b - a < spacing:
                fail(f"time.save_times[{i}]", b, f"a time at least {spacing:.3g} after {a!r} (saved times closer "
                      f"than {TIME_RESOLUTION:g} x max(1, time.end) are not distinct)", "Remove or spread out the times.")
    if "max_step" in time and end / time["max_step"] > MAX_STEPS:
        fail("time.max_step", time["max_step"], f"a step >= time.end / {MAX_STEPS:.0e} = {end / MAX_STEPS:.3g} "
              f"(at most {MAX_STEPS:.0e} steps)", "Increase max_step or leave it out (steps are chosen adaptively).")
    if "initial_step" in time and time["initial_step"] < spacing:
        fail("time.initial_step", time["initial_step"], f"a step >= {spacing:.3g}",
              "Leave initial_step out (it is chosen automatically) or make it larger.")


def check_stiffness(flow: Mapping, grid: Mapping, end: float) -> None:
    """Rates times the run's duration must stay below MAX_STIFFNESS (else the arithmetic is not finite)."""
    kind = flow["kind"]
    h = min((hi - lo) / n for lo, hi, n in zip(grid["lower"], grid["upper"], grid["cells"]))
    if kind in ("fokker-planck", "wfr"):
        s = flow["diffusion"] * end / (h * h)
        if not s <= MAX_STIFFNESS:
            fail("flow.diffusion", flow["diffusion"], f"diffusion x time.end / h^2 <= {MAX_STIFFNESS:g} (found "
                  f"{s:.3g} with cells h = {h:.3g} wide: the problem is not finite in floating point)",
                  "Use a smaller diffusion or a shorter time.end (the flow reaches equilibrium long before).")
    if kind in ("fisher-rao", "wfr"):
        s = flow["reaction"] * end
        if not s <= MAX_STIFFNESS:
            fail("flow.reaction", flow["reaction"], f"reaction x time.end <= {MAX_STIFFNESS:g} (found {s:.3g}: the "
                  f"problem is not finite in floating point)",
                  "Use a smaller reaction or a shorter time.end (the flow reaches equilibrium long before).")


def check_distribution(v: Any, path: str, ctx: Context) -> dict:
    """A distribution table (recursive through mixtures)."""
    example = "{ kind = \"gaussian\", mean = [0.0], cov = [[1.0]] }"
    if ctx.depth > MAX_NESTING:
        raise CaseError(f"{path}: mixtures are nested more than {MAX_NESTING} levels deep; flatten them.")
    inner = Context(d=ctx.d, base_dir=ctx.base_dir, depth=ctx.depth + 1)
    dist = check_kinded(v, path, inner, DISTRIBUTIONS, "distribution", example)
    kind = dist["kind"]
    if kind == "gaussian":
        _check_covariance(dist["cov"], join_path(path, "cov"))
    elif kind == "mixture":
        n = len(dist["components"])
        if "weights" not in dist:
            dist["weights"] = [1.0 / n] * n
        elif len(dist["weights"]) != n:
            fail(join_path(path, "weights"), dist["weights"], f"a list of {n} weights (one per component)",
                  "Give one positive weight per entry of components, or leave weights out for equal weights.")
        else:
            _check_weights(dist["weights"], join_path(path, "weights"))
        dist = {"kind": kind, "weights": dist["weights"], "components": dist["components"]}
    elif kind == "expression":
        from gridflow.io.expression import parse_expression

        try:
            parse_expression(dist["log_density"], variables=("x",) if ctx.d == 1 else ("x", "y"))
        except ExpressionError as exc:
            raise ExpressionError(f"{join_path(path, 'log_density')}: {exc}") from None
    return dist


def _components(v: Any, path: str, ctx: Context) -> list[dict]:
    items = as_list(v, path, "a non-empty list of distribution tables",
                  "components = [{ kind = \"gaussian\", mean = [0.0], cov = [[1.0]] }]")
    if not items:
        fail(path, v, "a non-empty list of distribution tables", "Give at least one component.")
    return [check_distribution(c, f"{path}[{i}]", ctx) for i, c in enumerate(items)]


def _file_path(v: Any, path: str, ctx: Context) -> str:
    s = text()(v, path, ctx)
    p = Path(os.path.expanduser(s)) if s else Path()
    full = Path(os.path.abspath(ctx.base_dir / p))
    if not s or not full.is_file():
        raise CaseError(
            f"{path}: the file {json.dumps(s)} does not exist (looked for {full}). Relative paths are relative "
            f"to the directory of the case file; fix the path or create the file."
        )
    if full.suffix not in FILE_SUFFIXES:
        fail(path, v, f"a file ending in {', '.join(FILE_SUFFIXES)}",
              "Store the log density at the cell centres as a .npy, .npz or .h5 file.")
    return str(full)


DISTRIBUTIONS: dict[str, Schema] = {
    "gaussian": {
        "mean": Field(nums(per_dim=True, example="mean = [0.0]"), example="mean = [0.0]",
                      expected="the mean, one number per dimension"),
        "cov": Field(_matrix, example="cov = [[1.0]]", expected="the covariance, a d x d matrix"),
    },
    "mixture": {
        "components": Field(_components, example="components = [{ kind = \"gaussian\", mean = [0.0], cov = [[1.0]] }]",
                            expected="a non-empty list of distribution tables"),
        "weights": Field(nums(nonempty=True, gt=0.0, example="weights = [0.5, 0.5]"), default=OMIT),
    },
    "expression": {
        "log_density": Field(text(what="a formula string"), example="log_density = \"-x**2/2\"",
                             expected="the log density as a formula in x (and y in 2D)"),
    },
    "file": {
        "path": Field(_file_path, example="path = \"log_target.npy\"",
                      expected="a .npy/.npz/.h5 file with the log density at the cell centres"),
        "key": Field(text(), default=OMIT),
    },
}
DISTRIBUTION_KINDS = tuple(DISTRIBUTIONS)

SCHEDULES: dict[str, Schema] = {
    "constant": {"value": Field(num(ge=0.0, le=1.0), example="value = 0.5", expected="lambda, a number in [0, 1]")},
    "linear": {"duration": Field(num(gt=0.0), example="duration = 10.0", expected="a duration > 0")},
    "exponential": {"rate": Field(num(gt=0.0), example="rate = 0.5", expected="a rate > 0")},
    "table": {
        "times": Field(nums(nonempty=True, ge=0.0, increasing=True, example="times = [0.0, 5.0]"),
                       example="times = [0.0, 5.0]", expected="strictly increasing times >= 0"),
        "values": Field(nums(nonempty=True, ge=0.0, le=1.0, example="values = [0.0, 1.0]"),
                        example="values = [0.0, 1.0]", expected="values of lambda in [0, 1]"),
    },
    "expression": {
        "lambda": Field(text(), example="lambda = \"1 - 1/(2 + t/0.3)\"",
                        expected="a formula in t with values in [0, 1] (smooth; use a table for kinks)"),
    },
    "adaptive": {
        "rule": Field(text(choices=ADAPTIVE_RULES), example="rule = \"ess\"",
                      expected="one of " + ", ".join(ADAPTIVE_RULES)),
        "variance": Field(text(choices=("path", "density")), default="path"),
        "scale": Field(num(gt=0.0), default=1.0),
        "correction": Field(boolean, default=False),
    },
}
SCHEDULE_KINDS = tuple(SCHEDULES)


def _schedule(v: Any, path: str, ctx: Context) -> dict:
    sched = check_kinded(v, path, ctx, SCHEDULES, "schedule", "schedule = { kind = \"linear\", duration = 10.0 }")
    if sched["kind"] == "table" and len(sched["times"]) != len(sched["values"]):
        fail(join_path(path, "values"), sched["values"], f"{len(sched['times'])} values (one per entry of times)",
              "Give times and values the same length.")
    if sched["kind"] == "expression":
        from gridflow.io.expression import parse_expression

        try:
            parse_expression(sched["lambda"], variables=("t",))
        except ExpressionError as exc:
            raise ExpressionError(f"{join_path(path, 'lambda')}: {exc}") from None
    return sched


def check_schedule_range(schedule: Mapping, path: str, end: float) -> None:
    """An ``expression`` schedule must be finite and in [0, 1] on [0, end] (checked on 10001 times)."""
    from gridflow.core.schedule import schedule_from_table

    t = np.linspace(0.0, end, 10001)
    with np.errstate(all="ignore"):
        lam = schedule_from_table(schedule).values(t, checked=False)
    bad = ~np.isfinite(lam) | (lam < 0.0) | (lam > 1.0)
    if bad.any():
        k = int(np.argmax(bad))
        raise CaseError(f"{path}.lambda: the formula gives lambda({t[k]:.6g}) = {float(lam[k])!r}, outside [0, 1] "
                        f"(checked on [0, time.end = {end:g}]). Write a formula with values in [0, 1], e.g. "
                        f"\"1 - exp(-t/5)\" or \"minimum(t/5, 1)\".")


def _reference(v: Any, path: str, ctx: Context) -> str | dict:
    if isinstance(v, str):
        return text(choices=("initial",), what="\"initial\" or a distribution table")(v, path, ctx)
    return check_distribution(v, path, ctx)


SECTIONS: dict[str, Schema] = {
    "grid": {
        "lower": Field(nums(per_dim=True, example="lower = [0.0]"), example="lower = [-5.0]",
                       expected="the lower corner of the box, one number per dimension"),
        "upper": Field(nums(per_dim=True, example="upper = [1.0]"), example="upper = [5.0]",
                       expected="the upper corner of the box, one number per dimension"),
        "cells": Field(_cells, example="cells = [200]", expected="the number of cells per dimension"),
        "boundary": Field(text(choices=BOUNDARIES), default="reflecting"),
    },
    "tempering": {
        "reference": Field(_reference, default="initial"),
        "schedule": Field(_schedule, example="schedule = { kind = \"linear\", duration = 10.0 }",
                          expected="a schedule table: kind = " + " | ".join(SCHEDULE_KINDS)),
    },
    "flow": {
        "kind": Field(text(choices=FLOW_KINDS), example="kind = \"wfr\"", expected="one of " + ", ".join(FLOW_KINDS)),
        "diffusion": Field(num(ge=0.0), default=1.0),
        "reaction": Field(num(ge=0.0), default=1.0),
        "flux": Field(text(choices=FLUXES), default="scharfetter-gummel"),
        "values": Field(text(choices=GRID_VALUES), default=OMIT),
    },
    "time": {
        "end": Field(num(gt=0.0), example="end = 10.0", expected="the final time, > 0"),
        "save_every": Field(num(gt=0.0), default=OMIT),
        "save_times": Field(nums(nonempty=True, ge=0.0, increasing=True, example="save_times = [0.0, 1.0]"),
                            default=OMIT),
        "tolerance": Field(num(gt=0.0, le=0.1), default=DEFAULT_TOLERANCE),
        "max_step": Field(num(gt=0.0), default=OMIT),
        "initial_step": Field(num(gt=0.0), default=OMIT),
    },
    "output": {"path": Field(text(pattern=re.compile(r".+", re.S), what="a non-empty path",
                                  fix="Give the trajectory file, e.g. path = \"outputs/run.h5\"."), default=OMIT),
               "error_estimate": Field(boolean, default=OMIT)},
}
SECTION_EXAMPLES = {
    "grid": "[grid] lower = [0.0], upper = [1.0], cells = [200]",
    "target": "[target] kind = \"gaussian\", mean = [0.0], cov = [[1.0]]",
    "initial": "[initial] kind = \"gaussian\", mean = [0.0], cov = [[1.0]]",
    "flow": "[flow] kind = \"wfr\"",
    "time": "[time] end = 10.0",
}
TOP_LEVEL = ("name", "description", "grid", "target", "initial", "tempering", "flow", "time", "output")
