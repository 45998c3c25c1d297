"""The value checkers and error messages of case files (docs/conventions.md).

Validation is table driven: each table is described by a :data:`Schema` (key -> :class:`Field`
holding a checker and a default); :func:`check_table` rejects unknown keys, fills defaults and
calls the checkers, :func:`check_kinded` picks the schema of a table by its ``kind``.  Every
problem is a :class:`~gridflow.errors.CaseError` whose one-paragraph message names the dotted
path (``target.components[1].cov``), what was found, what was expected and how to fix it
(:func:`fail`, :func:`missing`, :func:`unknown_key`).  The schemas themselves are in
:mod:`gridflow.io.case_schema`.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any, NoReturn

from gridflow.errors import CaseError

__all__ = ["Checker", "Context", "Field", "OMIT", "REQUIRED", "Schema", "as_list", "as_mapping", "boolean",
           "check_kinded", "check_table", "describe", "fail", "join_path", "missing", "num", "nums", "text",
           "unknown_key"]

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
"""A TOML bare key (other keys are quoted in dotted paths)."""

# --------------------------------------------------------------------------- messages


def join_path(path: str, key: object) -> str:
    """Dotted path of ``key`` inside the table at ``path`` (odd keys are quoted, TOML style)."""
    k = str(key)
    k = k if BARE_KEY.fullmatch(k) else json.dumps(k)
    return f"{path}.{k}" if path else k


def describe(v: object) -> str:
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


def fail(path: str, value: object, expected: str, fix: str) -> NoReturn:
    """Raise the standard 'path: expected ..., found ...; fix' error."""
    raise CaseError(f"{path}: expected {expected}, found {describe(value)}. {fix}")


def missing(path: str, expected: str, example: str) -> NoReturn:
    raise CaseError(f"{path} is missing: it is required ({expected}). Add it, e.g. {example}.")


def unknown_key(path: str, key: object, allowed: Sequence[str], where: str = "here") -> NoReturn:
    near = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise CaseError(
        f"{join_path(path, key)}: unknown key{hint}. Allowed keys {where}: {', '.join(allowed)}. "
        f"Remove the key or fix its spelling (unknown keys are never ignored)."
    )

# --------------------------------------------------------------------------- checkers


@dataclass
class Context:
    """What checkers need to know about the rest of the case."""

    d: int = 1
    base_dir: Path = field(default_factory=Path.cwd)
    depth: int = 0


Checker = Callable[[Any, str, Context], Any]
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
        fail(path, v, what, fix)
    try:
        x = float(v)  # type: ignore[arg-type]
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        fail(path, v, f"a finite number ({what})", fix)
    return x


def num(*, gt: float | None = None, ge: float | None = None, le: float | None = None) -> Checker:
    """A finite number (ints accepted), resolved as float, within the given bounds."""
    rng = _bounds(gt, ge, le)
    what = f"a number {rng}".strip()

    def check(v: Any, path: str, ctx: Context) -> float:
        key = path.rsplit(".", 1)[-1]
        x = _to_float(v, path, what, f"Write a plain number without quotes, e.g. {key} = 1.0.")
        if (gt is not None and not x > gt) or (ge is not None and not x >= ge) or (le is not None and not x <= le):
            fail(path, v, what, f"Choose a value {rng}.")
        return x

    return check


def text(*, choices: Sequence[str] = (), pattern: re.Pattern[str] | None = None, what: str = "",
         fix: str = "Change the value to match.") -> Checker:
    """A string, optionally one of ``choices`` or matching ``pattern`` (``what`` describes it, ``fix`` says how)."""
    expected = what or ("one of " + ", ".join(json.dumps(c) for c in choices) if choices else "a string")

    def check(v: Any, path: str, ctx: Context) -> str:
        key = path.rsplit(".", 1)[-1]
        if not isinstance(v, str):
            example = json.dumps(choices[0] if choices else "...")
            fail(path, v, expected, f"Write it as a quoted TOML string, e.g. {key} = {example}.")
        if choices and v not in choices:
            near = difflib.get_close_matches(v, choices, n=1)
            fail(path, v, expected, f"Use {json.dumps(near[0]) if near else 'one of these'}.")
        if pattern is not None and not pattern.fullmatch(v):
            fail(path, v, expected, fix)
        return v

    return check


def boolean(v: Any, path: str, ctx: Context) -> bool:
    """A TOML boolean (true/false; 0 and 1 are not booleans)."""
    if not isinstance(v, bool):
        fail(path, v, "a boolean", f"Write true or false (without quotes), e.g. {path.rsplit('.', 1)[-1]} = false.")
    return v


def as_list(v: Any, path: str, what: str, example: str) -> list:
    if not isinstance(v, (list, tuple)):
        fail(path, v, what, f"Write a TOML list in square brackets, e.g. {example}.")
    return list(v)


def nums(*, per_dim: bool = False, nonempty: bool = False, gt: float | None = None, ge: float | None = None,
         le: float | None = None, increasing: bool = False, example: str = "[0.0, 1.0]") -> Checker:
    """A list of finite numbers (one per dimension when ``per_dim``), resolved as floats."""
    rng = _bounds(gt, ge, le)

    def check(v: Any, path: str, ctx: Context) -> list[float]:
        n = ctx.d if per_dim else None
        what = (f"a list of {n} number{'s' if n != 1 else ''} (one per dimension, the grid is {n}D)" if n
                else "a non-empty list of numbers" if nonempty else "a list of numbers")
        items = as_list(v, path, what, example)
        if n is not None and len(items) != n:
            fail(path, v, what, f"Give exactly one entry per dimension of the grid (grid.lower has {n}).")
        if nonempty and not items:
            fail(path, v, what, f"Give at least one value, e.g. {example}.")
        out = [num(gt=gt, ge=ge, le=le)(x, f"{path}[{i}]", ctx) for i, x in enumerate(items)]
        if increasing:
            for i in range(1, len(out)):
                if not out[i] > out[i - 1]:
                    fail(f"{path}[{i}]", items[i], f"a value > {path}[{i - 1}] = {out[i - 1]!r} "
                          f"(the list must be strictly increasing)", "Sort the list and remove repeated values.")
        return out

    return check


# --------------------------------------------------------------------------- tables


def as_mapping(v: Any, path: str, example: str = "") -> Mapping:
    if not isinstance(v, Mapping):
        fix = f"Write it as a TOML table, e.g. {example}." if example else "Write it as a TOML table."
        fail(path or "the case", v, "a table", fix)
    return v


def check_table(v: Any, path: str, schema: Schema, ctx: Context, *, example: str = "", where: str = "here") -> dict:
    """Check a table against ``schema``: no unknown keys, required keys present, defaults filled."""
    m = as_mapping(v, path, example)
    for key in m:
        if key not in schema:
            unknown_key(path, key, list(schema), where)
    out: dict[str, Any] = {}
    for key, f in schema.items():
        p = join_path(path, key)
        if key in m:
            out[key] = f.check(m[key], p, ctx)
        elif f.default is REQUIRED:
            missing(p, f.expected or "see the case file documentation", f.example or f"{key} = ...")
        elif f.default is not OMIT:
            out[key] = f.default
    return out


def check_kinded(v: Any, path: str, ctx: Context, kinds: Mapping[str, Schema], what: str, example: str) -> dict:
    """A table selected by its ``kind`` key: validate it against the schema of that kind."""
    m = as_mapping(v, path, example)
    kind_path = join_path(path, "kind")
    if "kind" not in m:
        missing(kind_path, f"the {what} kind: one of {', '.join(kinds)}", example)
    kind = text(choices=tuple(kinds))(m["kind"], kind_path, ctx)
    schema = {"kind": Field(text()), **kinds[kind]}
    return check_table(m, path, schema, ctx, example=example, where=f"in a {kind!r} {what}")
