"""Case files: read, override, validate and resolve (docs/conventions.md).

A case file is TOML.  :func:`load_case` reads one, applies ``--set`` overrides to the raw
tables (:func:`apply_override`), validates everything and returns the *resolved* case: a plain
nested dict (only ``str``, ``float``, ``int``, ``bool``, ``list`` and ``dict``) with every
default filled in, numbers as ``float`` (``int`` for cell counts) and ``file`` paths made
absolute.  The resolved case is a valid case itself: ``parse_case(dumps_case(c)) == c``.

The tables, keys and defaults are those of :mod:`gridflow.io.case_schema`, checked with the
checkers of :mod:`gridflow.io.case_checks`; this module resolves a whole case (the grid first,
for its dimension, then the sections that depend on it), reads files and estimates the memory
of a run (:func:`check_memory`).
"""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w

from gridflow.errors import CaseError
from gridflow.io.case_checks import (Context, as_list, as_mapping, check_table, describe, fail, join_path, missing,
                                     text, unknown_key)
from gridflow.io.case_schema import (MAX_NAME_LENGTH, NAME_PATTERN, SECTION_EXAMPLES, SECTIONS, TOP_LEVEL, check_box,
                                     check_distribution, check_schedule_range, check_stiffness, check_times)

__all__ = ["load_case", "parse_case", "apply_override", "dumps_case", "case_dim", "plain_tables",
           "BYTES_PER_CELL", "estimate_run_bytes", "available_memory", "check_memory"]

#: Largest case file read (a case is a few kB of TOML).
MAX_CASE_BYTES = 16 * 2**20
#: Memory a run needs per grid cell, in bytes (measured about 230 B in 1D and 2D: some 30
#: float64 work arrays for the stepper, its error estimate and the diagnostics).
BYTES_PER_CELL = 256

def _section(raw: Mapping, key: str, ctx: Context) -> dict:
    if key not in raw:
        missing(key, f"the [{key}] table", SECTION_EXAMPLES[key])
    return check_table(raw[key], key, SECTIONS[key], ctx, example=f"[{key}]")


def _resolve(raw: Any, ctx: Context) -> dict:
    """Validate a raw case (nested dicts from TOML, overrides applied) and fill in defaults."""
    raw = as_mapping(raw, "")
    for key in raw:
        if key not in TOP_LEVEL:
            unknown_key("", key, TOP_LEVEL, "at the top level of a case")
    if "name" not in raw:
        missing("name", "the case name, used for the output file name", "name = \"my-case\"")
    name = text(pattern=NAME_PATTERN, what="a non-empty name of letters, digits, '.', '_' and '-' (it becomes a file name)",
                fix="Replace spaces and other characters by '-', e.g. name = \"bimodal-wfr\".")(raw["name"], "name", ctx)
    if len(name) > MAX_NAME_LENGTH:
        fail("name", name, f"a name of at most {MAX_NAME_LENGTH} characters (it becomes a file name), "
              f"not {len(name)}", "Use a shorter name.")
    description = text()(raw["description"], "description", ctx) if "description" in raw else ""

    # grid first: its dimension is needed by everything else
    g = as_mapping(raw.get("grid", {}), "grid", "[grid]")
    if "lower" in g:
        lower = as_list(g["lower"], "grid.lower", "a list of 1 or 2 numbers (one per dimension)", "lower = [0.0]")
        if len(lower) not in (1, 2):
            fail("grid.lower", g["lower"], "a list of 1 or 2 numbers (gridflow solves 1D and 2D problems)",
                  "Give one lower bound per dimension, e.g. lower = [-5.0] or lower = [-5.0, -5.0].")
        ctx.d = len(lower)
    grid = _section(raw, "grid", ctx)
    for i, (lo, hi) in enumerate(zip(grid["lower"], grid["upper"])):
        if not hi > lo:
            fail(f"grid.upper[{i}]", hi, f"a number > grid.lower[{i}] = {lo!r}", "The box must have positive width: "
                  "make upper larger than lower in every dimension.")
        if not math.isfinite(hi - lo):
            fail(f"grid.upper[{i}]", hi, "a box of finite width", "Use a smaller box.")
    check_box(grid)

    time = _section(raw, "time", ctx)
    end = time["end"]
    if "save_every" in time and "save_times" in time:
        raise CaseError("time: both save_every and save_times are given; they are alternatives. Keep one of them.")
    if "save_times" in time and time["save_times"][-1] > end:
        fail("time.save_times", time["save_times"][-1], f"times <= time.end = {end!r}",
              "Remove the saved times after the end of the run or increase time.end.")
    if "save_every" not in time and "save_times" not in time:
        time["save_every"] = end / 100.0
    check_times(time)

    flow = _section(raw, "flow", ctx)
    need = {"fokker-planck": ("diffusion", flow["diffusion"]), "fisher-rao": ("reaction", flow["reaction"]),
            "wfr": ("diffusion + reaction", flow["diffusion"] + flow["reaction"])}.get(flow["kind"])
    if need is not None and not need[1] > 0.0:
        raise CaseError(f"flow: the {flow['kind']} flow needs {need[0]} > 0, found {need[1]!r}. "
                        f"Set flow.{need[0].split()[0]} to a positive value, e.g. 1.0.")
    if flow.get("values") == "cell-averages" and not (flow["flux"] == "log-quadratic" and flow["kind"] in (
            "fokker-planck", "wfr") and flow["diffusion"] > 0.0):
        raise CaseError(f"flow: values = \"cell-averages\" needs the log-quadratic flux and a Fokker-Planck part "
                        f"(found flux = {flow['flux']!r}, kind = {flow['kind']!r}, diffusion = {flow['diffusion']!r}). "
                        f"Set flow.flux = \"log-quadratic\", or remove flow.values.")
    check_stiffness(flow, grid, end)

    target = check_distribution(raw["target"], "target", ctx) if "target" in raw else missing(
        "target", "the target density pi", SECTION_EXAMPLES["target"])
    initial = check_distribution(raw["initial"], "initial", ctx) if "initial" in raw else missing(
        "initial", "the initial density", SECTION_EXAMPLES["initial"])

    case: dict[str, Any] = {"name": name, "description": description, "grid": grid, "target": target,
                            "initial": initial}
    if "tempering" in raw:
        case["tempering"] = check_table(raw["tempering"], "tempering", SECTIONS["tempering"], ctx, example="[tempering]")
        if (case["tempering"].get("schedule") or {}).get("kind") == "expression":
            check_schedule_range(case["tempering"]["schedule"], "tempering.schedule", end)
    elif flow["kind"] == "path":
        case["tempering"] = {"reference": "initial", "schedule": {"kind": "linear", "duration": end}}
    output = check_table(raw.get("output", {}), "output", SECTIONS["output"], ctx, example="[output]")
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
                                f"({describe(node)}); check the index.")
            if last:
                node[step] = value
            node, where = node[step], f"{where}[{step}]"
        else:
            if not isinstance(node, dict):
                raise CaseError(f"Override {assignment!r}: {where} is {describe(node)}, not a table, so it has no "
                                f"key {step!r}; check the dotted key.")
            if last:
                node[step] = value
                for other in _ALTERNATIVES.get((where, step), ()):  # an override replaces its alternative
                    node.pop(other, None)
            elif step not in node:
                node[step] = [] if isinstance(nxt, int) else {}
            node, where = node[step], join_path(where, step)


def plain_tables(obj: Any) -> Any:
    """A deep copy with mappings as dicts and tuples as lists (overrides need mutable tables)."""
    if isinstance(obj, Mapping):
        return {k: plain_tables(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_tables(v) for v in obj]
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
            raw = plain_tables(source)
        else:
            raise CaseError(f"a case must be TOML text or a table, not {describe(source)}.")
        for assignment in overrides:
            apply_override(raw, assignment)
        ctx = Context(base_dir=Path(os.path.abspath(base_dir if base_dir is not None else os.getcwd())))
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
    return tomli_w.dumps(plain_tables(case))


def case_dim(case: Mapping) -> int:
    """Dimension (1 or 2) of a case: the number of entries of ``grid.lower``."""
    return len(case["grid"]["lower"])
