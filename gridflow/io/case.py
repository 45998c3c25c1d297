"""Case files: read, override, validate and resolve (docs/conventions.md).

A case file is TOML.  :func:`load_case` reads one, applies ``--set`` overrides to the raw
tables, validates everything and returns the *resolved* case: a plain nested dict (only
``str``, ``float``, ``int``, ``bool``, ``list`` and ``dict``) with every default filled in,
numbers as ``float`` (``int`` for cell counts) and ``file`` paths made absolute.  The resolved
case is a valid case itself: ``parse_case(dumps_case(c)) == c``.

Validation is table driven: each table is described by a :data:`Schema` (key -> :class:`Field`
holding a checker and a default), :func:`_table` rejects unknown keys, fills defaults and
calls the checkers; the few cross-field rules (dimensions, ``save_every`` versus
``save_times``, flow weights) are checked by the functions that resolve each section.  Every
problem is a :class:`~gridflow.errors.CaseError` whose one-paragraph message names the dotted
path (``target.components[1].cov``), what was found, what was expected and how to fix it.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import tomli_w

from gridflow.errors import CaseError, ExpressionError

__all__ = ["load_case", "parse_case", "apply_override", "dumps_case", "case_dim",
           "FLOW_KINDS", "DISTRIBUTION_KINDS", "SCHEDULE_KINDS", "MAX_CELLS", "MAX_FRAMES", "MAX_NAME_LENGTH",
           "MAX_STEPS", "MAX_COORDINATE", "MAX_STIFFNESS", "TIME_RESOLUTION", "BYTES_PER_CELL",
           "estimate_run_bytes", "available_memory", "check_memory"]

FLOW_KINDS = ("fokker-planck", "fisher-rao", "wfr", "path")
BOUNDARIES = ("reflecting", "periodic")
FLUXES = ("scharfetter-gummel", "log-mean", "log-quadratic")
ADAPTIVE_RULES = ("ess", "constant-rate", "gradient-flow")
FILE_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")
#: Largest total number of cells of a grid.
MAX_CELLS = 10_000_000
#: Deepest nesting of mixtures inside mixtures.
MAX_NESTING = 32
#: Longest case name (it becomes a file name, with suffixes such as ``-validate-SAMPLER.png``).
MAX_NAME_LENGTH = 128
#: Largest case file read (a case is a few kB of TOML).
MAX_CASE_BYTES = 16 * 2**20
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
#: Memory a run needs per grid cell, in bytes (measured about 230 B in 1D and 2D: some 30
#: float64 work arrays for the stepper, its error estimate and the diagnostics).
BYTES_PER_CELL = 256
_NAME = re.compile(r"[A-Za-z0-9._-]+")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

# --------------------------------------------------------------------------- messages


def _join(path: str, key: object) -> str:
    """Dotted path of ``key`` inside the table at ``path`` (odd keys are quoted, TOML style)."""
    k = str(key)
    k = k if _BARE_KEY.fullmatch(k) else json.dumps(k)
    return f"{path}.{k}" if path else k


def _found(v: object) -> str:
    """A short description of a found value, with its type."""
    if isinstance(v, bool):
        return f"{str(v).lower()} (a boolean)"
    if isinstance(v, Integral):
        return f"{int(v)} (an integer)" if int(v).bit_length() < 64 else "a huge integer"
    if isinstance(v, Real):
        return f"{float(v)!r} (a number)"
    if isinstance(v, str):
        s = json.dumps(v)
        return f"{s if len(s) <= 60 else s[:57] + '...'} (a string)"
    if isinstance(v, Mapping):
        keys = ", ".join(map(str, list(v)[:8])) + (", ..." if len(v) > 8 else "")
        return f"a table with keys [{keys}]" if v else "an empty table"
    if isinstance(v, (list, tuple)):
        return f"a list of {len(v)} item{'' if len(v) == 1 else 's'}"
    return f"a value of type {type(v).__name__}"


def _fail(path: str, value: object, expected: str, fix: str) -> NoReturn:
    """Raise the standard 'path: expected ..., found ...; fix' error."""
    raise CaseError(f"{path}: expected {expected}, found {_found(value)}. {fix}")


def _missing(path: str, expected: str, example: str) -> NoReturn:
    raise CaseError(f"{path} is missing: it is required ({expected}). Add it, e.g. {example}.")


def _unknown(path: str, key: object, allowed: Sequence[str], where: str = "here") -> NoReturn:
    near = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise CaseError(
        f"{_join(path, key)}: unknown key{hint}. Allowed keys {where}: {', '.join(allowed)}. "
        f"Remove the key or fix its spelling (unknown keys are never ignored)."
    )


# --------------------------------------------------------------------------- checkers


@dataclass
class _Ctx:
    """What checkers need to know about the rest of the case."""

    d: int = 1
    base_dir: Path = field(default_factory=Path.cwd)
    depth: int = 0


Checker = Callable[[Any, str, _Ctx], Any]
REQUIRED: Any = object()  #: default of a required key
OMIT: Any = object()      #: default of an optional key that stays absent


@dataclass(frozen=True)
class Field:
    """One key of a table: its checker, its default (value, REQUIRED or OMIT) and an example."""

    check: Checker
    default: Any = REQUIRED
    example: str = ""
    expected: str = ""


Schema = dict[str, Field]


def _is_number(v: object) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _bounds(gt: float | None, ge: float | None, le: float | None) -> str:
    parts = [f"> {gt:g}" if gt is not None else "", f">= {ge:g}" if ge is not None else "",
             f"<= {le:g}" if le is not None else ""]
    return " and ".join(p for p in parts if p)


def _to_float(v: object, path: str, what: str, fix: str) -> float:
    if not _is_number(v):
        _fail(path, v, what, fix)
    try:
        x = float(v)  # type: ignore[arg-type]
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        _fail(path, v, f"a finite number ({what})", fix)
    return x


def num(*, gt: float | None = None, ge: float | None = None, le: float | None = None) -> Checker:
    """A finite number (ints accepted), resolved as float, within the given bounds."""
    rng = _bounds(gt, ge, le)
    what = f"a number {rng}".strip()

    def check(v: Any, path: str, ctx: _Ctx) -> float:
        key = path.rsplit(".", 1)[-1]
        x = _to_float(v, path, what, f"Write a plain number without quotes, e.g. {key} = 1.0.")
        if (gt is not None and not x > gt) or (ge is not None and not x >= ge) or (le is not None and not x <= le):
            _fail(path, v, what, f"Choose a value {rng}.")
        return x

    return check


def text(*, choices: Sequence[str] = (), pattern: re.Pattern[str] | None = None, what: str = "",
         fix: str = "Change the value to match.") -> Checker:
    """A string, optionally one of ``choices`` or matching ``pattern`` (``what`` describes it, ``fix`` says how)."""
    expected = what or ("one of " + ", ".join(json.dumps(c) for c in choices) if choices else "a string")

    def check(v: Any, path: str, ctx: _Ctx) -> str:
        key = path.rsplit(".", 1)[-1]
        if not isinstance(v, str):
            example = json.dumps(choices[0] if choices else "...")
            _fail(path, v, expected, f"Write it as a quoted TOML string, e.g. {key} = {example}.")
        if choices and v not in choices:
            near = difflib.get_close_matches(v, choices, n=1)
            _fail(path, v, expected, f"Use {json.dumps(near[0]) if near else 'one of these'}.")
        if pattern is not None and not pattern.fullmatch(v):
            _fail(path, v, expected, fix)
        return v

    return check


def boolean(v: Any, path: str, ctx: _Ctx) -> bool:
    """A TOML boolean (true/false; 0 and 1 are not booleans)."""
    if not isinstance(v, bool):
        _fail(path, v, "a boolean", f"Write true or false (without quotes), e.g. {path.rsplit('.', 1)[-1]} = false.")
    return v


def _list(v: Any, path: str, what: str, example: str) -> list:
    if not isinstance(v, (list, tuple)):
        _fail(path, v, what, f"Write a TOML list in square brackets, e.g. {example}.")
    return list(v)


def nums(*, per_dim: bool = False, nonempty: bool = False, gt: float | None = None, ge: float | None = None,
         le: float | None = None, increasing: bool = False, example: str = "[0.0, 1.0]") -> Checker:
    """A list of finite numbers (one per dimension when ``per_dim``), resolved as floats."""
    rng = _bounds(gt, ge, le)

    def check(v: Any, path: str, ctx: _Ctx) -> list[float]:
        n = ctx.d if per_dim else None
        what = (f"a list of {n} number{'s' if n != 1 else ''} (one per dimension, the grid is {n}D)" if n
                else "a non-empty list of numbers" if nonempty else "a list of numbers")
        items = _list(v, path, what, example)
        if n is not None and len(items) != n:
            _fail(path, v, what, f"Give exactly one entry per dimension of the grid (grid.lower has {n}).")
        if nonempty and not items:
            _fail(path, v, what, f"Give at least one value, e.g. {example}.")
        out = [num(gt=gt, ge=ge, le=le)(x, f"{path}[{i}]", ctx) for i, x in enumerate(items)]
        if increasing:
            for i in range(1, len(out)):
                if not out[i] > out[i - 1]:
                    _fail(f"{path}[{i}]", items[i], f"a value > {path}[{i - 1}] = {out[i - 1]!r} "
                          f"(the list must be strictly increasing)", "Sort the list and remove repeated values.")
        return out

    return check


def _cells(v: Any, path: str, ctx: _Ctx) -> list[int]:
    what = f"a list of {ctx.d} integer{'s' if ctx.d > 1 else ''} >= 2 (cells per dimension)"
    items = _list(v, path, what, "cells = [200]" if ctx.d == 1 else "cells = [200, 200]")
    if len(items) != ctx.d:
        _fail(path, v, what, f"Give one cell count per dimension of the grid (grid.lower has {ctx.d} entries).")
    out = []
    for i, c in enumerate(items):
        if not isinstance(c, Integral) or isinstance(c, bool):
            _fail(f"{path}[{i}]", c, "an integer >= 2", "Write the number of cells as a whole number, e.g. 200.")
        if c < 2:
            _fail(f"{path}[{i}]", c, "an integer >= 2", "A grid needs at least 2 cells per dimension.")
        out.append(int(c))
    if math.prod(out) > MAX_CELLS:
        _fail(path, v, f"at most {MAX_CELLS:.0e} cells in total (found {math.prod(out)})",
              "Use fewer cells per dimension.")
    return out


def _matrix(v: Any, path: str, ctx: _Ctx) -> list[list[float]]:
    d = ctx.d
    what = f"a {d}x{d} matrix written as a list of {d} rows, each a list of {d} numbers"
    example = "cov = [[1.0]]" if d == 1 else "cov = [[1.0, 0.0], [0.0, 1.0]]"
    rows = _list(v, path, what, example)
    if len(rows) != d:
        _fail(path, v, what, f"Give one row per dimension of the grid, e.g. {example}.")
    out = []
    for i, row in enumerate(rows):
        r = _list(row, f"{path}[{i}]", f"a list of {d} numbers", example)
        if len(r) != d:
            _fail(f"{path}[{i}]", row, f"a list of {d} numbers", f"Each row has one entry per dimension, e.g. {example}.")
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


def _check_box(grid: Mapping) -> None:
    """The box must be representable: coordinates of magnitude <= MAX_COORDINATE and distinct cell centres."""
    for i, (lo, hi, n) in enumerate(zip(grid["lower"], grid["upper"], grid["cells"])):
        big = max(abs(lo), abs(hi))
        if big > MAX_COORDINATE:
            key = "grid.lower" if abs(lo) >= abs(hi) else "grid.upper"
            _fail(f"{key}[{i}]", lo if key == "grid.lower" else hi,
                  f"a coordinate of magnitude <= {MAX_COORDINATE:g} (the box is too large: squared distances "
                  f"and cell volumes would overflow)", "Use a smaller box, or rescale the coordinates.")
        h = (hi - lo) / n
        if not h >= max(MIN_RELATIVE_CELL * big, 1.0 / MAX_COORDINATE):
            _fail(f"grid.cells[{i}]", n, f"cells at least {max(MIN_RELATIVE_CELL * big, 1.0 / MAX_COORDINATE):.3g} "
                  f"wide (found {h:.3g}: the box is too narrow for the size of its coordinates, cell centres "
                  f"would not be distinct numbers)", "Use fewer cells, a wider box, or coordinates centred near 0.")


def _check_times(time: dict) -> None:
    """Saved times must be resolvable and not too many (counted before any list of times is built)."""
    end = time["end"]
    spacing = TIME_RESOLUTION * max(1.0, end)
    rescale = ("The integrator resolves times to 1e-12 x max(1, t). To simulate a very short time, rescale it: "
               "multiply the times by c and divide flow.diffusion and flow.reaction by c.")
    if end < spacing:
        _fail("time.end", end, f"a final time >= {TIME_RESOLUTION:g}", rescale)
    if "save_every" in time:
        every = time["save_every"]
        frames = end / every
        if frames > MAX_FRAMES:
            _fail("time.save_every", every, f"at most {MAX_FRAMES} frames (time.end / save_every = {frames:.3g})",
                  f"Save less often: save_every >= {end / MAX_FRAMES:.6g}.")
        if every < spacing:
            _fail("time.save_every", every, f"an interval >= {spacing:.3g} (= {TIME_RESOLUTION:g} x max(1, time.end))",
                  rescale)
    if "save_times" in time:
        times = time["save_times"]
        if len(times) > MAX_FRAMES:
            _fail("time.save_times", times, f"at most {MAX_FRAMES} times", "Save fewer frames.")
        for i, (a, b) in enumerate(zip([0.0] + times, times)):
            if 0.0 < b - a < spacing:
                _fail(f"time.save_times[{i}]", b, f"a time at least {spacing:.3g} after {a!r} (saved times closer "
                      f"than {TIME_RESOLUTION:g} x max(1, time.end) are not distinct)", "Remove or spread out the times.")
    if "max_step" in time and end / time["max_step"] > MAX_STEPS:
        _fail("time.max_step", time["max_step"], f"a step >= time.end / {MAX_STEPS:.0e} = {end / MAX_STEPS:.3g} "
              f"(at most {MAX_STEPS:.0e} steps)", "Increase max_step or leave it out (steps are chosen adaptively).")
    if "initial_step" in time and time["initial_step"] < spacing:
        _fail("time.initial_step", time["initial_step"], f"a step >= {spacing:.3g}",
              "Leave initial_step out (it is chosen automatically) or make it larger.")


def _check_stiffness(flow: Mapping, grid: Mapping, end: float) -> None:
    """Rates times the run's duration must stay below MAX_STIFFNESS (else the arithmetic is not finite)."""
    kind = flow["kind"]
    h = min((hi - lo) / n for lo, hi, n in zip(grid["lower"], grid["upper"], grid["cells"]))
    if kind in ("fokker-planck", "wfr"):
        s = flow["diffusion"] * end / (h * h)
        if not s <= MAX_STIFFNESS:
            _fail("flow.diffusion", flow["diffusion"], f"diffusion x time.end / h^2 <= {MAX_STIFFNESS:g} (found "
                  f"{s:.3g} with cells h = {h:.3g} wide: the problem is not finite in floating point)",
                  "Use a smaller diffusion or a shorter time.end (the flow reaches equilibrium long before).")
    if kind in ("fisher-rao", "wfr"):
        s = flow["reaction"] * end
        if not s <= MAX_STIFFNESS:
            _fail("flow.reaction", flow["reaction"], f"reaction x time.end <= {MAX_STIFFNESS:g} (found {s:.3g}: the "
                  f"problem is not finite in floating point)",
                  "Use a smaller reaction or a shorter time.end (the flow reaches equilibrium long before).")


# --------------------------------------------------------------------------- tables


def _mapping(v: Any, path: str, example: str = "") -> Mapping:
    if not isinstance(v, Mapping):
        fix = f"Write it as a TOML table, e.g. {example}." if example else "Write it as a TOML table."
        _fail(path or "the case", v, "a table", fix)
    return v


def _table(v: Any, path: str, schema: Schema, ctx: _Ctx, *, example: str = "", where: str = "here") -> dict:
    """Check a table against ``schema``: no unknown keys, required keys present, defaults filled."""
    m = _mapping(v, path, example)
    for key in m:
        if key not in schema:
            _unknown(path, key, list(schema), where)
    out: dict[str, Any] = {}
    for key, f in schema.items():
        p = _join(path, key)
        if key in m:
            out[key] = f.check(m[key], p, ctx)
        elif f.default is REQUIRED:
            _missing(p, f.expected or "see the case file documentation", f.example or f"{key} = ...")
        elif f.default is not OMIT:
            out[key] = f.default
    return out


def _kinded(v: Any, path: str, ctx: _Ctx, kinds: Mapping[str, Schema], what: str, example: str) -> dict:
    """A table selected by its ``kind`` key: validate it against the schema of that kind."""
    m = _mapping(v, path, example)
    kind_path = _join(path, "kind")
    if "kind" not in m:
        _missing(kind_path, f"the {what} kind: one of {', '.join(kinds)}", example)
    kind = text(choices=tuple(kinds))(m["kind"], kind_path, ctx)
    schema = {"kind": Field(text()), **kinds[kind]}
    return _table(m, path, schema, ctx, example=example, where=f"in a {kind!r} {what}")


def _distribution(v: Any, path: str, ctx: _Ctx) -> dict:
    """A distribution table (recursive through mixtures)."""
    example = "{ kind = \"gaussian\", mean = [0.0], cov = [[1.0]] }"
    if ctx.depth > MAX_NESTING:
        raise CaseError(f"{path}: mixtures are nested more than {MAX_NESTING} levels deep; flatten them.")
    inner = _Ctx(d=ctx.d, base_dir=ctx.base_dir, depth=ctx.depth + 1)
    dist = _kinded(v, path, inner, DISTRIBUTIONS, "distribution", example)
    kind = dist["kind"]
    if kind == "gaussian":
        _check_covariance(dist["cov"], _join(path, "cov"))
    elif kind == "mixture":
        n = len(dist["components"])
        if "weights" not in dist:
            dist["weights"] = [1.0 / n] * n
        elif len(dist["weights"]) != n:
            _fail(_join(path, "weights"), dist["weights"], f"a list of {n} weights (one per component)",
                  "Give one positive weight per entry of components, or leave weights out for equal weights.")
        else:
            _check_weights(dist["weights"], _join(path, "weights"))
        dist = {"kind": kind, "weights": dist["weights"], "components": dist["components"]}
    elif kind == "expression":
        from gridflow.io.expression import parse_expression

        try:
            parse_expression(dist["log_density"], variables=("x",) if ctx.d == 1 else ("x", "y"))
        except ExpressionError as exc:
            raise ExpressionError(f"{_join(path, 'log_density')}: {exc}") from None
    return dist


def _components(v: Any, path: str, ctx: _Ctx) -> list[dict]:
    items = _list(v, path, "a non-empty list of distribution tables",
                  "components = [{ kind = \"gaussian\", mean = [0.0], cov = [[1.0]] }]")
    if not items:
        _fail(path, v, "a non-empty list of distribution tables", "Give at least one component.")
    return [_distribution(c, f"{path}[{i}]", ctx) for i, c in enumerate(items)]


def _file_path(v: Any, path: str, ctx: _Ctx) -> str:
    s = text()(v, path, ctx)
    p = Path(os.path.expanduser(s)) if s else Path()
    full = Path(os.path.abspath(ctx.base_dir / p))
    if not s or not full.is_file():
        raise CaseError(
            f"{path}: the file {json.dumps(s)} does not exist (looked for {full}). Relative paths are relative "
            f"to the directory of the case file; fix the path or create the file."
        )
    if full.suffix not in FILE_SUFFIXES:
        _fail(path, v, f"a file ending in {', '.join(FILE_SUFFIXES)}",
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


def _schedule(v: Any, path: str, ctx: _Ctx) -> dict:
    sched = _kinded(v, path, ctx, SCHEDULES, "schedule", "schedule = { kind = \"linear\", duration = 10.0 }")
    if sched["kind"] == "table" and len(sched["times"]) != len(sched["values"]):
        _fail(_join(path, "values"), sched["values"], f"{len(sched['times'])} values (one per entry of times)",
              "Give times and values the same length.")
    if sched["kind"] == "expression":
        from gridflow.io.expression import parse_expression

        try:
            parse_expression(sched["lambda"], variables=("t",))
        except ExpressionError as exc:
            raise ExpressionError(f"{_join(path, 'lambda')}: {exc}") from None
    return sched


def _check_schedule_range(schedule: Mapping, path: str, end: float) -> None:
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


def _reference(v: Any, path: str, ctx: _Ctx) -> str | dict:
    if isinstance(v, str):
        return text(choices=("initial",), what="\"initial\" or a distribution table")(v, path, ctx)
    return _distribution(v, path, ctx)


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
    },
    "time": {
        "end": Field(num(gt=0.0), example="end = 10.0", expected="the final time, > 0"),
        "save_every": Field(num(gt=0.0), default=OMIT),
        "save_times": Field(nums(nonempty=True, ge=0.0, increasing=True, example="save_times = [0.0, 1.0]"),
                            default=OMIT),
        "tolerance": Field(num(gt=0.0, le=0.1), default=1e-7),
        "max_step": Field(num(gt=0.0), default=OMIT),
        "initial_step": Field(num(gt=0.0), default=OMIT),
    },
    "output": {"path": Field(text(pattern=re.compile(r".+", re.S), what="a non-empty path",
                                  fix="Give the trajectory file, e.g. path = \"outputs/run.h5\"."), default=OMIT)},
}
_SECTION_EXAMPLES = {
    "grid": "[grid] lower = [0.0], upper = [1.0], cells = [200]",
    "target": "[target] kind = \"gaussian\", mean = [0.0], cov = [[1.0]]",
    "initial": "[initial] kind = \"gaussian\", mean = [0.0], cov = [[1.0]]",
    "flow": "[flow] kind = \"wfr\"",
    "time": "[time] end = 10.0",
}
TOP_LEVEL = ("name", "description", "grid", "target", "initial", "tempering", "flow", "time", "output")


def _section(raw: Mapping, key: str, ctx: _Ctx) -> dict:
    if key not in raw:
        _missing(key, f"the [{key}] table", _SECTION_EXAMPLES[key])
    return _table(raw[key], key, SECTIONS[key], ctx, example=f"[{key}]")


def _resolve(raw: Any, ctx: _Ctx) -> dict:
    """Validate a raw case (nested dicts from TOML, overrides applied) and fill in defaults."""
    raw = _mapping(raw, "")
    for key in raw:
        if key not in TOP_LEVEL:
            _unknown("", key, TOP_LEVEL, "at the top level of a case")
    if "name" not in raw:
        _missing("name", "the case name, used for the output file name", "name = \"my-case\"")
    name = text(pattern=_NAME, what="a non-empty name of letters, digits, '.', '_' and '-' (it becomes a file name)",
                fix="Replace spaces and other characters by '-', e.g. name = \"bimodal-wfr\".")(raw["name"], "name", ctx)
    if len(name) > MAX_NAME_LENGTH:
        _fail("name", name, f"a name of at most {MAX_NAME_LENGTH} characters (it becomes a file name), "
              f"not {len(name)}", "Use a shorter name.")
    description = text()(raw["description"], "description", ctx) if "description" in raw else ""

    # grid first: its dimension is needed by everything else
    g = _mapping(raw.get("grid", {}), "grid", "[grid]")
    if "lower" in g:
        lower = _list(g["lower"], "grid.lower", "a list of 1 or 2 numbers (one per dimension)", "lower = [0.0]")
        if len(lower) not in (1, 2):
            _fail("grid.lower", g["lower"], "a list of 1 or 2 numbers (gridflow solves 1D and 2D problems)",
                  "Give one lower bound per dimension, e.g. lower = [-5.0] or lower = [-5.0, -5.0].")
        ctx.d = len(lower)
    grid = _section(raw, "grid", ctx)
    for i, (lo, hi) in enumerate(zip(grid["lower"], grid["upper"])):
        if not hi > lo:
            _fail(f"grid.upper[{i}]", hi, f"a number > grid.lower[{i}] = {lo!r}", "The box must have positive width: "
                  "make upper larger than lower in every dimension.")
        if not math.isfinite(hi - lo):
            _fail(f"grid.upper[{i}]", hi, "a box of finite width", "Use a smaller box.")
    _check_box(grid)

    time = _section(raw, "time", ctx)
    end = time["end"]
    if "save_every" in time and "save_times" in time:
        raise CaseError("time: both save_every and save_times are given; they are alternatives. Keep one of them.")
    if "save_times" in time and time["save_times"][-1] > end:
        _fail("time.save_times", time["save_times"][-1], f"times <= time.end = {end!r}",
              "Remove the saved times after the end of the run or increase time.end.")
    if "save_every" not in time and "save_times" not in time:
        time["save_every"] = end / 100.0
    _check_times(time)

    flow = _section(raw, "flow", ctx)
    need = {"fokker-planck": ("diffusion", flow["diffusion"]), "fisher-rao": ("reaction", flow["reaction"]),
            "wfr": ("diffusion + reaction", flow["diffusion"] + flow["reaction"])}.get(flow["kind"])
    if need is not None and not need[1] > 0.0:
        raise CaseError(f"flow: the {flow['kind']} flow needs {need[0]} > 0, found {need[1]!r}. "
                        f"Set flow.{need[0].split()[0]} to a positive value, e.g. 1.0.")
    _check_stiffness(flow, grid, end)

    target = _distribution(raw["target"], "target", ctx) if "target" in raw else _missing(
        "target", "the target density pi", _SECTION_EXAMPLES["target"])
    initial = _distribution(raw["initial"], "initial", ctx) if "initial" in raw else _missing(
        "initial", "the initial density", _SECTION_EXAMPLES["initial"])

    case: dict[str, Any] = {"name": name, "description": description, "grid": grid, "target": target,
                            "initial": initial}
    if "tempering" in raw:
        case["tempering"] = _table(raw["tempering"], "tempering", SECTIONS["tempering"], ctx, example="[tempering]")
        if (case["tempering"].get("schedule") or {}).get("kind") == "expression":
            _check_schedule_range(case["tempering"]["schedule"], "tempering.schedule", end)
    elif flow["kind"] == "path":
        case["tempering"] = {"reference": "initial", "schedule": {"kind": "linear", "duration": end}}
    output = _table(raw.get("output", {}), "output", SECTIONS["output"], ctx, example="[output]")
    output.setdefault("path", f"outputs/{name}.h5")
    case.update(flow=flow, time=time, output=output)
    return case


# --------------------------------------------------------------------------- public API

_SEGMENT = re.compile(r"\s*([^.\[\]=\s]+)((?:\[\d+\])*)\s*")


_ALTERNATIVES = {("time", "save_every"): ("save_times",), ("time", "save_times"): ("save_every",)}
"""Keys that exclude each other: overriding one removes the other from the case."""


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one ``"dotted.key=VALUE"`` assignment to a raw (unvalidated) case, in place.

    VALUE is TOML (``[4096]``, ``5``, ``"text"``, ``{ kind = "linear", duration = 5 }``); when it
    does not parse it is taken as a plain string, so ``flow.kind=wfr`` works unquoted.  Missing
    tables on the way are created; list items are reached with ``[i]``
    (``target.components[1].mean=[3.0]``).  Setting ``time.save_times`` removes
    ``time.save_every`` and vice versa (they are alternatives).
    """
    if not isinstance(assignment, str) or "=" not in assignment:
        raise CaseError(f"Override {assignment!r} is not an assignment: write it as dotted.key=VALUE, "
                        f"e.g. --set grid.cells=[4096].")
    key, value_text = assignment.split("=", 1)
    segments = key.split(".")
    matches = [_SEGMENT.fullmatch(s) for s in segments]
    if not key.strip() or not all(matches):
        raise CaseError(f"Override {assignment!r}: {key.strip()!r} is not a dotted key (names separated by dots, "
                        f"list items as [i]); write it as dotted.key=VALUE, e.g. --set time.end=5.")
    value_text = value_text.strip()
    try:
        parsed = tomllib.loads("v = " + value_text)
        value = parsed["v"] if list(parsed) == ["v"] else value_text
    except tomllib.TOMLDecodeError:
        value = value_text
    steps: list[str | int] = []
    for m in matches:
        assert m is not None
        steps.append(m.group(1))
        steps.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    node: Any = raw
    where = ""
    for step, nxt in zip(steps, steps[1:] + [None]):
        last = nxt is None
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                raise CaseError(f"Override {assignment!r}: {where} is not a list with an item [{step}] "
                                f"({_found(node)}); check the index.")
            if last:
                node[step] = value
            node, where = node[step], f"{where}[{step}]"
        else:
            if not isinstance(node, dict):
                raise CaseError(f"Override {assignment!r}: {where} is {_found(node)}, not a table, so it has no "
                                f"key {step!r}; check the dotted key.")
            if last:
                node[step] = value
                for other in _ALTERNATIVES.get((where, step), ()):  # an override replaces its alternative
                    node.pop(other, None)
            elif step not in node:
                node[step] = [] if isinstance(nxt, int) else {}
            node, where = node[step], _join(where, step)


def _plain(obj: Any) -> Any:
    """A deep copy with mappings as dicts and tuples as lists (overrides need mutable tables)."""
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def parse_case(source: str | Mapping, *, overrides: Sequence[str] = (), origin: str = "<case>",
               base_dir: str | os.PathLike | None = None) -> dict:
    """Validate and resolve a case given as TOML text or as (raw) nested mappings.

    ``overrides`` (``"dotted.key=VALUE"``) are applied before validation; ``origin`` names the
    source in messages; relative ``file`` paths are resolved against ``base_dir`` (default: the
    current directory).  Raises :class:`CaseError` on any problem.
    """
    if isinstance(overrides, str):
        overrides = [overrides]
    try:
        if isinstance(source, str):
            try:
                raw: Any = tomllib.loads(source)
            except tomllib.TOMLDecodeError as exc:
                raise CaseError(f"TOML syntax error: {exc}. Fix the syntax at that line and column "
                                f"(strings need quotes, tables [name], lists [a, b]).") from None
        elif isinstance(source, Mapping):
            raw = _plain(source)
        else:
            raise CaseError(f"a case must be TOML text or a table, not {_found(source)}.")
        for assignment in overrides:
            apply_override(raw, assignment)
        ctx = _Ctx(base_dir=Path(os.path.abspath(base_dir if base_dir is not None else os.getcwd())))
        return _resolve(raw, ctx)
    except CaseError as exc:
        raise type(exc)(f"{origin}: {exc}") from None
    except RecursionError:
        raise CaseError(f"{origin}: the case is nested too deeply; simplify it.") from None


def _file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def load_case(path: str | os.PathLike, *, overrides: Sequence[str] = ()) -> dict:
    """Read a TOML case file, apply ``overrides``, validate and resolve it (see :func:`parse_case`)."""
    p = Path(path)
    if "\0" in str(p):
        raise CaseError(f"Case file {str(p)!r}: the path contains a NUL byte; check the path.")
    try:
        st = p.stat()  # never open a device or a FIFO: reading /dev/zero would not end
        if not stat.S_ISREG(st.st_mode):
            raise CaseError(f"Case file {str(p)!r} is not a regular file ({_file_kind(st.st_mode)}); pass the "
                            f"path of a TOML case file.")
        if st.st_size > MAX_CASE_BYTES:
            raise CaseError(f"Case file {str(p)!r} is {st.st_size} bytes long, more than a case file can be "
                            f"({MAX_CASE_BYTES} bytes); check the path.")
        data = p.read_bytes()
    except FileNotFoundError:
        raise CaseError(f"Case file {str(p)!r} does not exist; check the path (looked for {p.absolute()}).") from None
    except OSError as exc:
        raise CaseError(f"Case file {str(p)!r} cannot be read ({exc.strerror or exc}); check the path and "
                        f"its permissions.") from None
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CaseError(f"Case file {str(p)!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8 "
                        f"TOML.") from None
    return parse_case(source, overrides=overrides, origin=str(p), base_dir=p.absolute().parent)


def estimate_run_bytes(case: Mapping) -> int:
    """Memory a run of the resolved ``case`` needs, in bytes (:data:`BYTES_PER_CELL` per grid cell)."""
    return math.prod(case["grid"]["cells"]) * BYTES_PER_CELL


def available_memory() -> int | None:
    """Memory available to a new computation, in bytes (``MemAvailable`` of /proc/meminfo), or None if unknown."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_memory(case: Mapping, *, available: int | None = None) -> None:
    """Raise :class:`~gridflow.errors.LimitError` if a run of ``case`` needs more memory than is available.

    ``available`` (bytes) defaults to :func:`available_memory`; nothing is checked when it is unknown.
    The estimate is made from the cell counts alone, before anything is allocated.
    """
    from gridflow.errors import LimitError

    available = available_memory() if available is None else available
    need = estimate_run_bytes(case)
    if available is not None and need > available:
        cells = case["grid"]["cells"]
        raise LimitError(f"The grid of {' x '.join(map(str, cells))} cells needs about {need / 2**30:.3g} GiB of "
                         f"memory ({BYTES_PER_CELL} bytes per cell), but only {available / 2**30:.3g} GiB are "
                         f"available. Use fewer grid.cells, or free memory.")


def dumps_case(case: Mapping) -> str:
    """TOML text of a (resolved) case; ``parse_case(dumps_case(c)) == c`` for resolved cases."""
    return tomli_w.dumps(_plain(case))


def case_dim(case: Mapping) -> int:
    """Dimension (1 or 2) of a case: the number of entries of ``grid.lower``."""
    return len(case["grid"]["lower"])
