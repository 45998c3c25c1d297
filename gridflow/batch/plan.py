"""Sweep files -> runs: reading a sweep file and planning its runs (:func:`plan_sweep`).

A sweep file (TOML, described in docs/sweeps.md) names a base case and the case keys to vary, by
the dotted keys of ``--set``: ``[vary]`` lists are combined as a Cartesian product, each ``[zip]``
group varies its lists together, and ``[random]`` makes ``draws`` random settings from a seed.
:func:`plan_sweep` turns the file into the list of runs (each a resolved case, or the error that
made it invalid); :mod:`gridflow.batch.sweep` runs them.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gridflow.errors import CaseError

__all__ = ["SweepRun", "load_sweep", "plan_sweep", "RANDOM_KINDS", "UNSET"]

TOP_KEYS = ("name", "description", "base", "output", "set", "vary", "zip", "random")
#: random draw kinds -> number of parameters they take
RANDOM_KINDS = ("uniform", "loguniform", "normal", "integers", "choice", "dirichlet")
_RANDOM_OPTIONS = ("shape", "sort")
UNSET = {"unset": True}
"""The value ``{ unset = true }`` removes a key from the base case (e.g. ``tempering`` for an untempered run)."""
#: index columns after the parameters
_NAME = re.compile(r"[A-Za-z0-9._-]+")
_STEP = re.compile(r"([^.\[\]=\s]+)((?:\[\d+\])*)")


@dataclass
class SweepRun:
    """One run of a sweep: its number, the parameter values it sets, its case (``None`` when the
    overrides make an invalid case, then ``error`` says why) and its trajectory file."""

    index: int
    params: dict[str, Any]
    path: Path
    case: dict | None = None
    error: str = ""
    draw: int | None = None
    result: dict[str, Any] = field(default_factory=dict)
    _flat: dict[str, Any] | None = field(default=None, repr=False)


# --------------------------------------------------------------------------- reading the sweep file


def _fail(origin: str, message: str) -> CaseError:
    return CaseError(f"{origin}: {message}")


def load_sweep(path: str | os.PathLike) -> tuple[dict, Path]:
    """Read a sweep file; return its table and the directory relative paths are resolved against."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaseError(f"Sweep file {str(p)!r} does not exist; check the path (looked for {p.absolute()}).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseError(f"Sweep file {str(p)!r} cannot be read as UTF-8 text ({exc}); check the path.") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CaseError(f"{p}: TOML syntax error: {exc}. Fix the syntax at that line and column.") from None
    return table, p.absolute().parent


def _steps(key: str, origin: str) -> list[str | int]:
    """The steps of a dotted key (``target.components[1].mean`` -> target, components, 1, mean)."""
    steps: list[str | int] = []
    for seg in key.split("."):
        m = _STEP.fullmatch(seg.strip())
        if not m:
            raise _fail(origin, f"{key!r} is not a dotted case key (names separated by dots, list items as [i]), "
                        f"e.g. \"target.components[1].mean\".")
        steps.append(m.group(1))
        steps.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return steps


def inline_toml(value: Any) -> str:
    """TOML text of a value, inline (``{ a = 1 }`` for tables), so ``--set``'s parser reads it back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        items = ", ".join(f"{k if re.fullmatch(r'[A-Za-z0-9_-]+', str(k)) else json.dumps(str(k))} = {inline_toml(v)}"
                          for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(inline_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _unset(raw: dict, steps: Sequence[str | int]) -> None:
    """Remove the key at ``steps`` from a raw case (nothing happens if it is absent)."""
    node: Any = raw
    for step in steps[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(node, dict):
        node.pop(steps[-1], None)


def _apply(raw: dict, key: str, value: Any) -> None:
    """Set (or, for ``{ unset = true }``, remove) one dotted key of a raw case, as ``--set`` does."""
    from gridflow.io.case import apply_override

    if value == UNSET:
        _unset(raw, _steps(key, "override"))
    else:
        apply_override(raw, f"{key}={inline_toml(value)}")


def _checked_lists(table: Any, where: str, origin: str) -> dict[str, list]:
    if not isinstance(table, Mapping) or not table:
        raise _fail(origin, f"[{where}] must be a table of dotted case keys and lists of values, e.g. "
                    f"\"flow.kind\" = [\"fokker-planck\", \"wfr\"].")
    out = {}
    for key, values in table.items():
        _steps(key, origin)
        if not isinstance(values, list) or not values:
            raise _fail(origin, f"{where}.{key!r} must be a non-empty list of values (one per run), found "
                        f"{values!r}; write e.g. \"{key}\" = [1.0, 2.0].")
        out[key] = values
    return out


def _random_spec(table: Any, origin: str) -> tuple[int, int, dict[str, dict]]:
    """Validate ``[random]``: number of draws, seed and the distribution of each key."""
    if not isinstance(table, Mapping):
        raise _fail(origin, "[random] must be a table with draws, seed and dotted keys.")
    draws, seed = table.get("draws"), table.get("seed", 0)
    if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
        raise _fail(origin, f"random.draws must be a positive integer (the number of random settings), found "
                    f"{draws!r}; write e.g. draws = 30.")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise _fail(origin, f"random.seed must be a non-negative integer, found {seed!r}.")
    specs = {}
    for key, spec in table.items():
        if key in ("draws", "seed"):
            continue
        _steps(key, origin)
        kinds = [k for k in RANDOM_KINDS if isinstance(spec, Mapping) and k in spec]
        if len(kinds) != 1:
            raise _fail(origin, f"random.{key!r} must be a table with exactly one of {', '.join(RANDOM_KINDS)} "
                        f"(and optionally shape, sort), found {spec!r}; e.g. {{ uniform = [2.0, 6.0], shape = [1] }}.")
        kind = kinds[0]
        extra = set(spec) - {kind, *_RANDOM_OPTIONS}
        if extra:
            raise _fail(origin, f"random.{key!r} has unknown keys {sorted(extra)}; allowed: {kind}, shape, sort.")
        args = spec[kind]
        ok = isinstance(args, list) and bool(args) and (kind == "choice" or all(
            isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in args))
        if ok and kind in ("uniform", "loguniform", "normal", "integers"):
            ok = len(args) == 2 and (args[1] > args[0] if kind != "normal" else args[1] > 0) and (
                kind != "loguniform" or args[0] > 0) and (kind != "integers" or all(isinstance(a, int) for a in args))
        if ok and kind == "dirichlet":
            ok = len(args) >= 2 and all(a > 0 for a in args)
        if not ok:
            expected = {"uniform": "[low, high] with high > low", "loguniform": "[low, high] with 0 < low < high",
                        "normal": "[mean, std] with std > 0", "integers": "[low, high] integers, high > low (inclusive)",
                        "choice": "a non-empty list of values", "dirichlet": "a list of >= 2 positive concentrations"}
            raise _fail(origin, f"random.{key!r}: {kind} needs {expected[kind]}, found {args!r}.")
        shape = spec.get("shape", [])
        shape = [shape] if isinstance(shape, int) and not isinstance(shape, bool) else shape
        if not (isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
                                                for n in shape)):
            raise _fail(origin, f"random.{key!r}: shape must be a list of positive integers, e.g. shape = [1], "
                        f"found {spec.get('shape')!r}.")
        if kind == "dirichlet" and shape:
            raise _fail(origin, f"random.{key!r}: a dirichlet draw is a list already; drop shape.")
        specs[key] = {"kind": kind, "args": args, "shape": shape, "sort": bool(spec.get("sort", False))}
    if not specs:
        raise _fail(origin, "[random] names no keys to draw; add e.g. \"target.components[1].mean\" = "
                    "{ uniform = [2.0, 6.0], shape = [1] }.")
    return draws, seed, specs


def _draw(rng: np.random.Generator, spec: Mapping) -> Any:
    """One random value of a ``[random]`` key (a number, or nested lists of the given shape)."""
    kind, args, shape = spec["kind"], spec["args"], tuple(spec["shape"])
    size = shape or None
    if kind == "uniform":
        v = rng.uniform(args[0], args[1], size=size)
    elif kind == "loguniform":
        v = np.exp(rng.uniform(math.log(args[0]), math.log(args[1]), size=size))
    elif kind == "normal":
        v = rng.normal(args[0], args[1], size=size)
    elif kind == "integers":
        v = rng.integers(args[0], args[1], endpoint=True, size=size)
    elif kind == "choice":
        idx = rng.integers(0, len(args), size=size)
        return copy.deepcopy(args[int(idx)]) if size is None else np.asarray(args, dtype=object)[idx].tolist()
    else:  # dirichlet
        v = rng.dirichlet(np.asarray(args, dtype=float))
    if spec["sort"] and np.ndim(v):
        v = np.sort(v, axis=None).reshape(np.shape(v))
    return v.tolist() if isinstance(v, np.ndarray) else v.item()


def _axes(table: Mapping, origin: str) -> tuple[list[list[dict[str, Any]]], list[str]]:
    """The axes of the sweep: each a list of settings ``{key: value}``; their product is the run set.
    Also the names of the axes (``draw`` for the random one)."""
    axes: list[list[dict[str, Any]]] = []
    names: list[str] = []
    if "random" in table:
        draws, seed, specs = _random_spec(table["random"], origin)
        rng = np.random.default_rng(seed)
        axes.append([{key: _draw(rng, spec) for key, spec in specs.items()} for _ in range(draws)])
        names.append("draw")
    if "vary" in table:
        for key, values in _checked_lists(table["vary"], "vary", origin).items():
            axes.append([{key: v} for v in values])
            names.append(key)
    groups = table.get("zip", [])
    groups = [groups] if isinstance(groups, Mapping) else groups
    if not isinstance(groups, list):
        raise _fail(origin, "zip must be a table ([zip]) or an array of tables ([[zip]]) of equal-length lists.")
    for k, group in enumerate(groups):
        lists = _checked_lists(group, "zip", origin)
        lengths = {key: len(v) for key, v in lists.items()}
        if len(set(lengths.values())) != 1:
            raise _fail(origin, f"the lists of zip group {k} have different lengths {lengths}; lists varied "
                        f"together need one value per run each.")
        n = next(iter(lengths.values()))
        axes.append([{key: values[i] for key, values in lists.items()} for i in range(n)])
        names.append(f"zip{k}")
    return axes, names


def plan_sweep(sweep: str | os.PathLike | Mapping, *, output: str | os.PathLike | None = None,
               base_dir: str | os.PathLike | None = None,
               error_estimate: bool = False) -> tuple[list[SweepRun], Path, dict]:
    """The runs of a sweep (a sweep file's path, or its table): ``(runs, output directory, info)``.

    ``error_estimate`` sets ``output.error_estimate = true`` in every run (``gridflow sweep
    --error-estimate``: each trajectory carries the Richardson estimate of its L1 error).

    Each run's case is the base case with the run's values set, named ``<name>-<index>`` and
    written to ``<output>/<name>-<index>.h5``; a combination that makes an invalid case is
    returned with ``case=None`` and its ``error`` (the sweep itself is not refused).  Raises
    :class:`~gridflow.errors.CaseError` for a malformed sweep file or base case.
    """
    if isinstance(sweep, Mapping):
        table, origin = dict(sweep), "<sweep>"
        here = Path(os.path.abspath(base_dir if base_dir is not None else os.getcwd()))
    else:
        table, here = load_sweep(sweep)
        origin = str(sweep)
    for key in table:
        if key not in TOP_KEYS:
            raise _fail(origin, f"unknown key {key!r} at the top level of a sweep; allowed: {', '.join(TOP_KEYS)} "
                        f"(see docs/sweeps.md).")
    name = table.get("name", Path(origin).stem if origin != "<sweep>" else "sweep")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _fail(origin, f"name must be letters, digits, '.', '_' and '-' (it names the run files), found {name!r}.")
    base = table.get("base")
    if isinstance(base, str):
        base_path = (here / base).resolve()
        try:
            raw_base = tomllib.loads(base_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise _fail(origin, f"the base case {base!r} does not exist (looked for {base_path}); base is a case "
                        f"file relative to the sweep file, or an inline [base] table.") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise _fail(origin, f"the base case {base_path} cannot be read as TOML ({exc}).") from None
        case_dir = base_path.parent
    elif isinstance(base, Mapping):
        raw_base, case_dir = copy.deepcopy(dict(base)), here
    else:
        raise _fail(origin, "base is required: a case file (base = \"case.toml\", relative to the sweep file) "
                    "or an inline [base] table holding a case.")
    fixed = table.get("set", {})
    if not isinstance(fixed, Mapping):
        raise _fail(origin, "[set] must be a table of dotted case keys and the value every run gets, e.g. "
                    "\"grid.cells\" = [400].")
    if error_estimate:
        fixed = {**fixed, "output.error_estimate": True}
    try:
        for key, value in fixed.items():
            _steps(key, origin)
            _apply(raw_base, key, value)
    except CaseError as exc:
        raise _fail(origin, f"[set]: {exc}") from None
    out = Path(output if output is not None else table.get("output", f"outputs/sweeps/{name}"))
    if not isinstance(table.get("output", ""), str):
        raise _fail(origin, "output must be a directory path (a string).")
    axes, axis_names = _axes(table, origin)
    runs = []
    for i, combo in enumerate(itertools.product(*axes) if axes else [()]):
        params: dict[str, Any] = {}
        for setting in combo:
            params.update(setting)
        raw = copy.deepcopy(raw_base)
        path = out / f"{name}-{i:04d}.h5"
        run = SweepRun(index=i, params=params, path=path)
        if axis_names and axis_names[0] == "draw":
            run.draw = axes[0].index(combo[0])
        try:
            for key, value in params.items():
                _apply(raw, key, value)
            raw["name"] = f"{name}-{i:04d}"
            raw.setdefault("output", {})
            if isinstance(raw["output"], dict):
                raw["output"]["path"] = str(path)
            from gridflow.io.case import parse_case

            run.case = parse_case(raw, origin=f"run {i}", base_dir=case_dir)
        except CaseError as exc:
            run.error = str(exc)
        runs.append(run)
    if all(r.case is None for r in runs):
        raise _fail(origin, f"no run of the sweep is a valid case; the first: {runs[0].error}")
    info = {"name": name, "description": str(table.get("description", "")), "axes": axis_names}
    return runs, out, info

