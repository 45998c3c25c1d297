"""Parameter sweeps: many runs of one base case, a trajectory file each and an index (``gridflow sweep``).

A sweep file (TOML, described in docs/sweeps.md) names a base case and the case keys to vary, by
the dotted keys of ``--set``: ``[vary]`` lists are combined as a Cartesian product, each ``[zip]``
group varies its lists together, and ``[random]`` makes ``draws`` random settings from a seed.
:func:`plan_sweep` turns the file into the list of runs (each a resolved case, or the error that
made it invalid); :func:`run_sweep` runs them on a local process pool, skipping runs whose file is
already complete, recording failures without stopping, and keeps ``index.csv`` (one row per run:
its parameters, status, wall time, final diagnostics, path and error) up to date after every run.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import csv
import itertools
import json
import math
import os
import re
import time
import tomllib
import warnings
from contextlib import contextmanager
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gridflow.errors import CaseError, GridflowError

__all__ = ["SweepRun", "load_sweep", "plan_sweep", "run_sweep", "INDEX_NAME", "RANDOM_KINDS"]

INDEX_NAME = "index.csv"
#: Seconds between rewrites of the index while a sweep runs (and always after a failure and at the end).
INDEX_INTERVAL = 2.0
TOP_KEYS = ("name", "description", "base", "output", "set", "vary", "zip", "random")
#: random draw kinds -> number of parameters they take
RANDOM_KINDS = ("uniform", "loguniform", "normal", "integers", "choice", "dirichlet")
_RANDOM_OPTIONS = ("shape", "sort")
UNSET = {"unset": True}
"""The value ``{ unset = true }`` removes a key from the base case (e.g. ``tempering`` for an untempered run)."""
#: index columns after the parameters
RESULT_COLUMNS = ("status", "wall_time", "final_time", "final_kl", "total_steps", "path", "error", "warnings")
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


def _inline(value: Any) -> str:
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
        items = ", ".join(f"{k if re.fullmatch(r'[A-Za-z0-9_-]+', str(k)) else json.dumps(str(k))} = {_inline(v)}"
                          for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
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
        apply_override(raw, f"{key}={_inline(value)}")


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
               base_dir: str | os.PathLike | None = None) -> tuple[list[SweepRun], Path, dict]:
    """The runs of a sweep (a sweep file's path, or its table): ``(runs, output directory, info)``.

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


# --------------------------------------------------------------------------- the index


def flatten_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Index columns of a run's parameters: numbers and strings as they are, lists by item
    (``key[0]``, ``key[1][0]``), tables by sub-key (``key.kind``); an unset key gives no column."""
    out: dict[str, Any] = {}

    def walk(name: str, v: Any) -> None:
        if v == UNSET:
            return
        if isinstance(v, Mapping):
            for k, sub in v.items():
                walk(f"{name}.{k}", sub)
        elif isinstance(v, (list, tuple)):
            for k, sub in enumerate(v):
                walk(f"{name}[{k}]", sub)
        else:
            out[name] = v

    for key, value in params.items():
        walk(key, value)
    return out


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def write_index(path: Path, runs: Sequence[SweepRun]) -> None:
    """Write ``index.csv`` (atomically: a temporary file renamed over it): one row per run."""
    rows = []
    columns: dict[str, None] = {"run": None}
    if any(r.draw is not None for r in runs):
        columns["draw"] = None
    for r in runs:
        if r._flat is None:
            r._flat = {"run": r.index, **({} if r.draw is None else {"draw": r.draw}),
                       **flatten_params(r.params), "path": os.path.relpath(r.path, path.parent)}
        columns.update(dict.fromkeys(r._flat))
    columns.update(dict.fromkeys(RESULT_COLUMNS))
    for r in runs:
        values = {"status": "pending", **r._flat, **r.result}
        values["path"] = r._flat["path"]
        rows.append([_cell(values.get(c)) for c in columns])
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(list(columns))
        w.writerows(rows)
    os.replace(tmp, path)


def read_index(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of an ``index.csv`` as dictionaries of strings (``[]`` if the file does not exist)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------------- running


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _final(path: Path) -> dict[str, Any]:
    """Final time, KL and step count read back from a trajectory file."""
    from gridflow.io.h5reader import read_file
    from gridflow.io.h5store import decode_attr
    from gridflow.io.trajectory import FILE_KIND

    def read(f, _path) -> dict[str, Any]:
        n = len(f["time"])
        if not n:
            return {}
        return {"final_time": float(f["time"][n - 1]), "final_kl": float(f["kl"][n - 1]),
                "total_steps": int(decode_attr(f.attrs.get("total_steps", 0)))}

    return read_file(Path(path), FILE_KIND, read)[0]


def run_one(case: Mapping, path: str | os.PathLike) -> dict[str, Any]:
    """Run one case of a sweep into ``path`` (continuing an interrupted file of the same case);
    never raises for a failed run: returns ``status``, ``wall_time``, final diagnostics and ``error``."""
    from gridflow.io.runner import run

    start = time.perf_counter()
    result: dict[str, Any] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            run(case, output=path, resume=True)
            result["status"] = "complete"
            result.update(_final(Path(path)))
        except KeyboardInterrupt:
            if _IN_WORKER:  # stopped by the sweep (or its death): the file says interrupted; leave now
                os._exit(143)
            result.update(status="interrupted", error="interrupted")
        except Exception as exc:  # a failed run is recorded, never stops the sweep
            kind = "failed" if isinstance(exc, GridflowError) else "failed (internal error)"
            result.update(status="failed", error=_first_line(exc) if kind == "failed" else f"{kind}: "
                          f"{_first_line(exc)}")
    result["wall_time"] = round(time.perf_counter() - start, 4)
    if caught:
        result["warnings"] = "; ".join(dict.fromkeys(str(w.message) for w in caught))
    return result


def _already_complete(run: SweepRun, old_rows: Mapping[str, Mapping[str, str]]) -> dict[str, Any] | None:
    """The recorded result of a run whose file is complete and written by the same case, else None."""
    from gridflow.io.runner import _case_differences
    from gridflow.io.trajectory import trajectory_attrs

    if run.case is None or not run.path.exists():
        return None
    try:
        attrs = trajectory_attrs(run.path)
        if attrs.get("status") != "complete" or _case_differences(str(attrs.get("case", "")), run.case):
            return None
        result = {"status": "complete", **_final(run.path)}
    except GridflowError:
        return None
    old = old_rows.get(str(run.index), {})
    if old.get("status") == "complete" and old.get("wall_time"):
        result["wall_time"] = float(old["wall_time"])
    if old.get("warnings"):
        result["warnings"] = old["warnings"]
    return result


def run_sweep(sweep: str | os.PathLike | Mapping, *, output: str | os.PathLike | None = None,
              workers: int | None = None, progress: bool = False,
              on_result: Callable[[SweepRun], None] | None = None) -> Path:
    """Run every run of a sweep (see :func:`plan_sweep`); return the path of its ``index.csv``.

    Runs whose file is already complete (written by the same case) are skipped; the others run on
    ``workers`` local processes (default: the core count; 1 runs them in this process), an
    interrupted file being continued from its last frame.  A run that fails (invalid case,
    numerical failure, anything else) is recorded with status ``failed`` and its error and never
    stops the sweep; a worker process that dies fails only the run it held.  The index is
    rewritten every :data:`INDEX_INTERVAL` seconds, after a failure and at the end (also when
    interrupted); rerunning the same sweep completes only the missing runs, whatever the index
    says (complete files are recognised by their ``status`` attribute).  ``on_result`` is called with each finished run.
    """
    from gridflow.io.runner import _sigterm_interrupts

    with _sigterm_interrupts():  # SIGTERM like Ctrl-C: workers stopped, index written
        return _run_sweep(sweep, output=output, workers=workers, progress=progress, on_result=on_result)


def _run_sweep(sweep: str | os.PathLike | Mapping, *, output: str | os.PathLike | None, workers: int | None,
               progress: bool, on_result: Callable[[SweepRun], None] | None) -> Path:
    """The body of :func:`run_sweep`."""
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise CaseError(f"--workers must be at least 1, got {workers}.")
    runs, out, _info = plan_sweep(sweep, output=output)
    out.mkdir(parents=True, exist_ok=True)
    index = out / INDEX_NAME
    old_rows = {row.get("run", ""): row for row in read_index(index)}
    todo = []
    for r in runs:
        if r.case is None:
            r.result = {"status": "failed", "error": r.error}
        elif (done := _already_complete(r, old_rows)) is not None:
            r.result = done
        else:
            todo.append(r)
    write_index(index, runs)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(runs), initial=len(runs) - len(todo), unit="run", desc=_info["name"])

    last_write = [time.monotonic()]

    def finished(r: SweepRun, result: dict[str, Any]) -> None:
        r.result = result
        if time.monotonic() - last_write[0] >= INDEX_INTERVAL or result.get("status") != "complete":
            write_index(index, runs)      # not after every run: the main process shares the cores
            last_write[0] = time.monotonic()
        if bar is not None:
            bar.update(1)
            failed = sum(1 for x in runs if x.result.get("status") == "failed")
            if failed:
                bar.set_postfix(failed=failed)
        if on_result is not None:
            on_result(r)

    try:
        if workers == 1 or len(todo) <= 1:
            for r in todo:
                result = run_one(r.case, r.path)
                finished(r, result)
                if result["status"] == "interrupted":
                    raise KeyboardInterrupt
        else:
            _pool(todo, min(workers, len(todo)), finished)
    finally:
        if bar is not None:
            bar.close()
        write_index(index, runs)
    return index


_IN_WORKER = False


def _worker_init() -> None:
    """In each worker process: Ctrl-C is left to the sweep's process (which stops the workers with
    SIGTERM); SIGTERM ends an idle worker and marks a run in progress ``interrupted``; and SIGTERM
    comes when the sweep's process dies (Linux), so no worker is left behind."""
    import signal

    global _IN_WORKER
    _IN_WORKER = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)   # not the sweep process's handler, inherited by fork
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: workers end when their queue closes
        pass


def _stop(pool: cf.ProcessPoolExecutor) -> None:
    """Interrupt a pool: SIGTERM to its workers (their runs are marked ``interrupted``), cancel the rest."""
    for proc in list(getattr(pool, "_processes", {}).values()):
        try:
            proc.terminate()
        except (OSError, ValueError):
            pass
    pool.shutdown(wait=True, cancel_futures=True)


def _isolated(r: SweepRun) -> dict[str, Any]:
    """Run one case in a process of its own: a crash of that process fails this run only."""
    with cf.ProcessPoolExecutor(max_workers=1, initializer=_worker_init) as pool:
        try:
            return pool.submit(run_one, r.case, r.path).result()
        except cf.process.BrokenProcessPool:
            return {"status": "failed", "error": "the worker process died (killed, or crashed in compiled code)"}


def _pool(todo: Sequence[SweepRun], workers: int, finished: Callable[[SweepRun, dict], None]) -> None:
    """Run ``todo`` on a process pool, at most ``workers`` at a time.  When a dying worker breaks
    the pool, the runs it held are rerun one process each (so only the culprit fails) and a new
    pool takes the rest."""
    import gridflow.io.runner  # noqa: F401  imported once here, not in every forked worker
    import gridflow.io.trajectory_writer  # noqa: F401  (imports gridflow.io.trajectory)

    with _stop_flag() as stop:
        _pool_loop(todo, workers, finished, stop)


@contextmanager
def _stop_flag():
    """While the pool runs, Ctrl-C and SIGTERM only set a flag that the loop checks (an exception
    raised at an arbitrary point could be swallowed inside the pool's machinery)."""
    import signal
    import threading

    stop: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _pool_loop(todo: Sequence[SweepRun], workers: int, finished: Callable[[SweepRun, dict], None],
               stop: list[int]) -> None:
    """The body of :func:`_pool`; raises KeyboardInterrupt (after stopping the workers) once ``stop``
    holds a signal."""
    queue = list(todo)[::-1]
    while queue:
        if stop:
            raise KeyboardInterrupt
        suspects: list[SweepRun] = []
        with cf.ProcessPoolExecutor(max_workers=workers, initializer=_worker_init) as pool:
            running: dict[cf.Future, SweepRun] = {}
            try:
                while (queue or running) and not suspects:
                    while queue and len(running) < workers:
                        r = queue.pop()
                        running[pool.submit(run_one, r.case, r.path)] = r
                    done, _ = cf.wait(running, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                    if stop:
                        raise KeyboardInterrupt
                    for fut in done:
                        r = running.pop(fut)
                        try:
                            result = fut.result()
                        except cf.process.BrokenProcessPool:
                            suspects.append(r)
                            continue
                        finished(r, result)
                        if result["status"] == "interrupted":
                            raise KeyboardInterrupt
                suspects.extend(running.values())
            except KeyboardInterrupt:
                _stop(pool)
                raise
        for r in suspects:
            if stop:
                raise KeyboardInterrupt
            finished(r, _isolated(r))


def command(args: Any) -> int:
    """``gridflow sweep``: run (or with ``--dry-run`` list) a sweep; print a one-line summary.
    Exit status 0 when every run is complete, 1 when some failed (their errors are in the index)."""
    import sys

    if args.workers is not None and args.workers < 1:
        raise CaseError(f"--workers must be at least 1, got {args.workers}.")
    if args.dry_run:
        runs, out, _ = plan_sweep(args.sweep, output=args.output)
        for r in runs:
            params = ", ".join(f"{k}={_inline(v)}" for k, v in r.params.items())
            print(f"{r.path}  {params}" + (f"  INVALID: {r.error}" if r.error else ""))
        print(f"{len(runs)} runs into {out}", file=sys.stderr)
        return 0
    index = run_sweep(args.sweep, output=args.output, workers=args.workers,
                      progress=not args.quiet and sys.stderr.isatty())
    rows = read_index(index)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    print(f"wrote {index} ({len(rows)} runs: {summary})", file=sys.stderr)
    return 0 if counts.get("complete", 0) == len(rows) else 1
