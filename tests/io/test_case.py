"""Case files (docs/conventions.md): resolution, defaults, overrides, rejection of bad input, round trips."""

from __future__ import annotations

import copy
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridflow.io.case import apply_override, case_dim, check_memory, dumps_case, estimate_run_bytes, load_case, parse_case
from gridflow.io.case_schema import MAX_FRAMES, TIME_RESOLUTION
from gridflow.errors import CaseError, ExpressionError, LimitError

DATA = Path(__file__).parents[1] / "data" / "cases"
try:
    import gridflow.io.expression  # noqa: F401

    HAVE_EXPRESSION = True
except ImportError:  # written in parallel; expression tests are skipped until it exists
    HAVE_EXPRESSION = False

MIN_1D = """
name = "min-1d"
[grid]
lower = [-5]
upper = [5.0]
cells = [100]
[target]
kind = "gaussian"
mean = [1]
cov = [[2]]
[initial]
kind = "gaussian"
mean = [0.0]
cov = [[1.0]]
[flow]
kind = "wfr"
[time]
end = 2
"""

RICH_2D: dict[str, Any] = {
    "name": "rich-2d",
    "description": "two dimensions, every section",
    "grid": {"lower": [-6.0, -6.0], "upper": [6.0, 6.0], "cells": [40, 30], "boundary": "periodic"},
    "target": {
        "kind": "mixture",
        "weights": [1.0, 3.0],
        "components": [
            {"kind": "gaussian", "mean": [-2.0, 0.0], "cov": [[1.0, 0.3], [0.3, 1.0]]},
            {"kind": "gaussian", "mean": [2.0, 0.0], "cov": [[0.5, 0.0], [0.0, 0.5]]},
        ],
    },
    "initial": {"kind": "gaussian", "mean": [0.0, 0.0], "cov": [[4.0, 0.0], [0.0, 4.0]]},
    "tempering": {
        "reference": {"kind": "gaussian", "mean": [0.0, 0.0], "cov": [[9.0, 0.0], [0.0, 9.0]]},
        "schedule": {"kind": "linear", "duration": 2.0},
    },
    "flow": {"kind": "fokker-planck", "diffusion": 0.5, "reaction": 0.0},
    "time": {"end": 4.0, "save_times": [0.0, 1.0, 2.5], "tolerance": 1e-6, "max_step": 0.1, "initial_step": 1e-4},
    "output": {"path": "runs/rich.h5"},
}


def _raw_min_1d() -> dict:
    return tomllib.loads(MIN_1D)


def _walk_numbers(obj: Any, path: str = ""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk_numbers(v, f"{path}.{k}" if path else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk_numbers(v, f"{path}[{i}]")
    else:
        yield path, obj


def assert_resolved(case: dict) -> None:
    """Plain TOML types, no None, floats as float and cells as int, and a round trip."""
    for path, v in _walk_numbers(case):
        assert v is not None and isinstance(v, (str, int, float, bool)), path
        if path.startswith("grid.cells["):
            assert type(v) is int, path
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            assert type(v) is float, path
    text = dumps_case(case)
    assert parse_case(text) == case
    assert parse_case(case) == case


# --------------------------------------------------------------------------- valid cases


def test_minimal_1d_resolves_with_defaults():
    case = parse_case(MIN_1D)
    assert case == {
        "name": "min-1d",
        "description": "",
        "grid": {"lower": [-5.0], "upper": [5.0], "cells": [100], "boundary": "reflecting"},
        "target": {"kind": "gaussian", "mean": [1.0], "cov": [[2.0]]},
        "initial": {"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]},
        "flow": {"kind": "wfr", "diffusion": 1.0, "reaction": 1.0, "flux": "scharfetter-gummel"},
        "time": {"end": 2.0, "save_every": 0.02, "tolerance": 1e-7},
        "output": {"path": "outputs/min-1d.h5"},
    }
    assert "tempering" not in case
    assert case_dim(case) == 1
    assert_resolved(case)


def test_rich_2d_resolves_and_keeps_values():
    case = parse_case(RICH_2D)
    assert case_dim(case) == 2
    assert case["target"]["weights"] == [1.0, 3.0]
    assert case["time"] == RICH_2D["time"]  # save_times given: no save_every added
    assert case["tempering"] == RICH_2D["tempering"]
    assert case["output"]["path"] == "runs/rich.h5"
    assert_resolved(case)


def test_input_mapping_is_not_mutated():
    raw = copy.deepcopy(RICH_2D)
    parse_case(raw, overrides=["grid.cells=[8, 8]"])
    assert raw == RICH_2D


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[2].joinpath("cases").glob("*.toml")))
def test_shipped_cases_load(path):
    assert_resolved(load_case(path))


@pytest.mark.parametrize("section,key,value", [
    ("description", None, ""),
    ("grid", "boundary", "reflecting"),
    ("flow", "diffusion", 1.0),
    ("flow", "reaction", 1.0),
    ("time", "save_every", 0.02),
    ("time", "tolerance", 1e-7),
    ("output", "path", "outputs/min-1d.h5"),
])
def test_defaults(section, key, value):
    case = parse_case(MIN_1D)
    assert (case[section] if key is None else case[section][key]) == value


def test_optional_time_keys_stay_absent():
    time = parse_case(MIN_1D)["time"]
    assert "max_step" not in time and "initial_step" not in time and "save_times" not in time


def test_mixture_default_weights_are_equal():
    raw = _raw_min_1d()
    raw["target"] = {"kind": "mixture", "components": [raw["target"], raw["initial"], raw["target"]]}
    weights = parse_case(raw)["target"]["weights"]
    assert len(weights) == 3 and len(set(weights)) == 1 and weights[0] > 0


@pytest.mark.parametrize("schedule,resolved", [
    ({"kind": "constant", "value": 0}, {"kind": "constant", "value": 0.0}),
    ({"kind": "constant", "value": 1}, {"kind": "constant", "value": 1.0}),
    ({"kind": "linear", "duration": 3}, {"kind": "linear", "duration": 3.0}),
    ({"kind": "exponential", "rate": 0.5}, {"kind": "exponential", "rate": 0.5}),
    ({"kind": "table", "times": [0, 1.5], "values": [0, 1]},
     {"kind": "table", "times": [0.0, 1.5], "values": [0.0, 1.0]}),
    ({"kind": "table", "times": [2], "values": [0.25]}, {"kind": "table", "times": [2.0], "values": [0.25]}),
    ({"kind": "adaptive", "rule": "ess"},
     {"kind": "adaptive", "rule": "ess", "variance": "path", "scale": 1.0, "correction": False}),
    ({"kind": "adaptive", "rule": "gradient-flow", "variance": "density", "scale": 2, "correction": True},
     {"kind": "adaptive", "rule": "gradient-flow", "variance": "density", "scale": 2.0, "correction": True}),
    ({"kind": "adaptive", "rule": "constant-rate"},
     {"kind": "adaptive", "rule": "constant-rate", "variance": "path", "scale": 1.0, "correction": False}),
])
def test_schedule_kinds(schedule, resolved):
    raw = _raw_min_1d()
    raw["tempering"] = {"schedule": schedule}
    case = parse_case(raw)
    assert case["tempering"] == {"reference": "initial", "schedule": resolved}
    assert_resolved(case)


def test_path_flow_default_tempering():
    case = parse_case(MIN_1D, overrides=["flow.kind=path", "time.end=7"])
    assert case["tempering"] == {"reference": "initial", "schedule": {"kind": "linear", "duration": 7.0}}
    assert_resolved(case)


def test_path_flow_keeps_given_tempering():
    case = parse_case(MIN_1D, overrides=["flow.kind=path", "tempering.schedule={kind='exponential', rate=2}"])
    assert case["tempering"]["schedule"] == {"kind": "exponential", "rate": 2.0}


def test_load_case_resolves_file_paths_against_the_case_directory():
    case = load_case(DATA / "file-target.toml")
    assert case["target"] == {"kind": "file", "path": str((DATA / "log_density.npy").resolve())}
    assert Path(case["target"]["path"]).is_absolute()
    assert_resolved(case)


def test_parse_case_base_dir_and_file_key():
    raw = _raw_min_1d()
    raw["target"] = {"kind": "file", "path": "log_density.npy"}
    with pytest.raises(CaseError, match="does not exist"):
        parse_case(raw, base_dir=DATA / "nowhere")
    raw["target"]["key"] = "log_pi"
    assert parse_case(raw, base_dir=DATA)["target"]["key"] == "log_pi"


def test_load_case_with_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(MIN_1D)
    case = load_case(f, overrides=["grid.cells=[64]", "name=renamed"])
    assert case["grid"]["cells"] == [64]
    assert case["output"]["path"] == "outputs/renamed.h5"


@pytest.mark.skipif(not HAVE_EXPRESSION, reason="gridflow.io.expression not written yet")
def test_expression_distributions():
    case = parse_case(RICH_2D, overrides=['initial={kind="expression", log_density="-(x**2 + y**2)/2"}'])
    assert case["initial"] == {"kind": "expression", "log_density": "-(x**2 + y**2)/2"}
    with pytest.raises(ExpressionError, match=r"target\.log_density") as info:
        parse_case(MIN_1D, overrides=['target={kind="expression", log_density="-x**2 - y**2"}'])
    assert isinstance(info.value, CaseError)
    with pytest.raises(ExpressionError, match=r"target\.components\[0\]\.log_density"):
        parse_case(MIN_1D, overrides=["target={kind='mixture', components=[{kind='expression', "
                                      "log_density='__import__(\"os\")'}]}"])


# --------------------------------------------------------------------------- overrides


@pytest.mark.parametrize("assignment,where,value", [
    ("grid.cells=[4096]", ("grid", "cells"), [4096]),                    # list
    ("time.end=5", ("time", "end"), 5),                                   # TOML int
    ("flow.kind=fisher-rao", ("flow", "kind"), "fisher-rao"),             # unquoted string
    ('flow.kind="wfr"', ("flow", "kind"), "wfr"),                         # quoted string
    ("name = spaced ", ("name",), "spaced"),                              # blanks around key and value
    ("tempering.schedule.duration=5", ("tempering", "schedule", "duration"), 5),  # new nested tables
    ("tempering.schedule={kind='linear', duration=2}", ("tempering", "schedule"), {"kind": "linear", "duration": 2}),
    ("description=a=b", ("description",), "a=b"),                        # only the first '=' splits
])
def test_apply_override(assignment, where, value):
    raw = _raw_min_1d()
    apply_override(raw, assignment)
    node = raw
    for k in where:
        node = node[k]
    assert node == value


def test_override_list_item():
    raw = copy.deepcopy(RICH_2D)
    apply_override(raw, "target.components[1].mean=[3, 1]")
    assert raw["target"]["components"][1]["mean"] == [3, 1]
    assert parse_case(raw)["target"]["components"][1]["mean"] == [3.0, 1.0]


def test_overrides_create_tables_and_are_validated():
    case = parse_case(MIN_1D, overrides=["tempering.schedule.kind=linear", "tempering.schedule.duration=5"])
    assert case["tempering"]["schedule"] == {"kind": "linear", "duration": 5.0}
    with pytest.raises(CaseError, match=r"grid\.cells\[0\].*integer"):
        parse_case(MIN_1D, overrides=["grid.cells=[100.5]"])
    with pytest.raises(CaseError, match=r"flow\.kind.*fokker-planck"):
        parse_case(MIN_1D, overrides=["flow.kind=langevin"])
    with pytest.raises(CaseError, match=r"grid\.cells: expected a list"):
        parse_case(MIN_1D, overrides=["grid.cells=many"])
    with pytest.raises(CaseError, match=r"tempering\.schedule\.rate: unknown key.*kind, duration"):
        parse_case(MIN_1D, overrides=["tempering.schedule={kind='linear', duration=1}", "tempering.schedule.rate=1"])


@pytest.mark.parametrize("assignment,phrase", [
    ("grid.cells", "not an assignment"),
    ("=3", "not a dotted key"),
    ("  =3", "not a dotted key"),
    ("grid..cells=3", "not a dotted key"),
    ("grid.cells.x=3", "not a table"),
    ("target.components[0].mean=[1]", "not a list"),
    ("target[0]=1", "not a list"),
])
def test_malformed_overrides(assignment, phrase):
    with pytest.raises(CaseError, match=re.escape(phrase)):
        parse_case(MIN_1D, overrides=[assignment])


# --------------------------------------------------------------------------- rejections


def _steps(path: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]


def S(path: str, value: Any) -> Callable[[dict], None]:
    """Mutator: set ``path`` (``a.b[1].c``) to ``value``."""
    def mutate(raw: dict) -> None:
        *head, last = _steps(path)
        node = raw
        for k in head:
            node = node[k]
        node[last] = value
    return mutate


def D(path: str) -> Callable[[dict], None]:
    """Mutator: delete ``path``."""
    def mutate(raw: dict) -> None:
        *head, last = _steps(path)
        node = raw
        for k in head:
            node = node[k]
        del node[last]
    return mutate


def _2d(*mutators):
    def mutate(raw):
        for m in mutators:
            m(raw)
    return ("2d", mutate)


_ADAPTIVE = {"kind": "adaptive", "rule": "ess"}
REJECTIONS: list[tuple[str, Any, list[str]]] = [
    # unknown keys, at several depths: dotted path and allowed keys
    ("unknown-top", S("colour", "red"), ["colour: unknown key", "name, description, grid, target, initial"]),
    ("unknown-grid", S("grid.cellz", [3]), ["grid.cellz", "did you mean 'cells'", "lower, upper, cells, boundary"]),
    ("unknown-time", S("time.step", 0.1), ["time.step", "end, save_every, save_times, tolerance, max_step"]),
    ("unknown-flow", S("flow.drift", 1.0), ["flow.drift", "kind, diffusion, reaction"]),
    ("unknown-output", S("output", {"dir": "x"}), ["output.dir", "Allowed keys here: path"]),
    ("unknown-gaussian", S("target.weights", [1.0]), ["target.weights", "'gaussian' distribution: kind, mean, cov"]),
    ("unknown-component", _2d(S("target.components[1].covariance", 1)),
     ["target.components[1].covariance", "kind, mean, cov"]),
    ("unknown-mixture", _2d(S("target.normalise", True)), ["target.normalise", "kind, components, weights"]),
    ("unknown-reference", _2d(S("tempering.reference.scale", 2.0)), ["tempering.reference.scale", "kind, mean, cov"]),
    ("unknown-schedule", _2d(S("tempering.schedule.rate", 2.0)), ["tempering.schedule.rate", "kind, duration"]),
    ("unknown-tempering", _2d(S("tempering.lambda", 0.5)), ["tempering.lambda", "reference, schedule"]),
    ("unknown-adaptive", S("tempering", {"schedule": {**_ADAPTIVE, "ruler": "x"}}),
     ["tempering.schedule.ruler", "kind, rule, variance, scale, correction"]),
    ("unknown-expression", S("initial", {"kind": "expression", "log_density": "-x", "mean": [0]}),
     ["initial.mean", "kind, log_density"]),
    ("unknown-file", S("initial", {"kind": "file", "path": str(DATA / "log_density.npy"), "dataset": "a"}),
     ["initial.dataset", "kind, path, key"]),
    # wrong types
    ("name-int", S("name", 3), ["name: expected", "found 3 (an integer)"]),
    ("name-none", S("name", None), ["name: expected", "NoneType"]),
    ("lower-string", S("grid.lower", "0"), ["grid.lower", "a list"]),
    ("upper-item-string", S("grid.upper[0]", "1"), ["grid.upper[0]", '"1" (a string)']),
    ("end-string", S("time.end", "10"), ["time.end", "a string"]),
    ("end-bool", S("time.end", True), ["time.end", "true (a boolean)"]),
    ("diffusion-bool", S("flow.diffusion", False), ["flow.diffusion", "(a boolean)"]),
    ("cells-table", S("grid.cells", {"x": 3}), ["grid.cells: expected a list", "a table"]),
    ("cells-scalar", S("grid.cells", 100), ["grid.cells: expected a list"]),
    ("cov-flat", _2d(S("initial.cov", [4.0, 0.0, 0.0, 4.0])), ["initial.cov:", "a 2x2 matrix"]),
    ("cov-row-scalar", _2d(S("initial.cov", [[4.0, 0.0], 4.0])), ["initial.cov[1]", "a list of 2 numbers"]),
    ("cov-ragged", _2d(S("initial.cov", [[4.0, 0.0], [4.0]])), ["initial.cov[1]", "a list of 2 numbers"]),
    ("components-table", _2d(S("target.components", {"kind": "gaussian"})), ["target.components", "list of distribution tables"]),
    ("schedule-string", S("tempering", {"schedule": "linear"}), ["tempering.schedule: expected a table"]),
    ("correction-int", S("tempering", {"schedule": {**_ADAPTIVE, "correction": 1}}),
     ["tempering.schedule.correction", "a boolean"]),
    ("description-list", S("description", ["a"]), ["description: expected a string"]),
    ("boundary-choice", S("grid.boundary", "open"), ["grid.boundary", '"reflecting", "periodic"']),
    ("flow-kind-choice", S("flow.kind", "langevin"), ["flow.kind", '"fokker-planck"']),
    ("target-kind-choice", S("target.kind", "normal"), ["target.kind", '"gaussian", "mixture", "expression"']),
    ("grid-list", S("grid", [1]), ["grid: expected a table"]),
    ("case-not-table", lambda raw: raw.clear() or raw.update({"name": "x", "grid": []}), ["grid: expected a table"]),
    ("nan", S("target.mean[0]", float("nan")), ["target.mean[0]", "finite"]),
    ("inf", S("grid.upper[0]", float("inf")), ["grid.upper[0]", "finite"]),
    ("huge-int", S("time.end", 10**400), ["time.end", "finite"]),
    # cells
    ("cells-zero", S("grid.cells", [0]), ["grid.cells[0]", "integer >= 2"]),
    ("cells-negative", S("grid.cells", [-5]), ["grid.cells[0]", "integer >= 2"]),
    ("cells-one", S("grid.cells", [1]), ["grid.cells[0]", "at least 2 cells"]),
    ("cells-float", S("grid.cells", [100.0]), ["grid.cells[0]", "whole number"]),
    ("cells-bool", S("grid.cells", [True]), ["grid.cells[0]", "(a boolean)"]),
    ("cells-total", _2d(S("grid.cells", [10_000, 10_000])), ["grid.cells", "at most 1e+07 cells"]),
    # box
    ("upper-equal", S("grid.upper", [-5.0]), ["grid.upper[0]", "> grid.lower[0]", "positive width"]),
    ("upper-below", _2d(S("grid.upper", [6.0, -7.0])), ["grid.upper[1]", "positive width"]),
    ("box-overflow", S("grid", {"lower": [-1e308], "upper": [1e308], "cells": [10]}), ["finite width"]),
    # covariance
    ("cov-asymmetric", _2d(S("initial.cov", [[1.0, 0.5], [0.4, 1.0]])),
     ["initial.cov is not symmetric", "initial.cov[0][1] = 0.5", "make the two entries equal"]),
    ("cov-not-pd", _2d(S("initial.cov", [[1.0, 2.0], [2.0, 1.0]])),
     ["initial.cov is not positive definite", "Cholesky", "shrink the off-diagonal"]),
    ("cov-zero", S("target.cov", [[0.0]]), ["target.cov is not positive definite"]),
    ("cov-negative", _2d(S("target.components[0].cov", [[-1.0, 0.0], [0.0, 1.0]])),
     ["target.components[0].cov is not positive definite"]),
    # dimensions
    ("mean-2-in-1d", S("target.mean", [0.0, 1.0]), ["target.mean", "1 number (one per dimension, the grid is 1D)"]),
    ("cov-2x2-in-1d", S("initial.cov", [[1.0, 0.0], [0.0, 1.0]]), ["initial.cov", "a 1x1 matrix"]),
    ("mean-1-in-2d", _2d(S("target.components[1].mean", [0.0])), ["target.components[1].mean", "2 numbers"]),
    ("upper-length", _2d(S("grid.upper", [1.0])), ["grid.upper", "2 numbers"]),
    ("cells-length", _2d(S("grid.cells", [10])), ["grid.cells", "2 integers"]),
    ("dim-3", S("grid.lower", [0.0, 0.0, 0.0]), ["grid.lower", "1 or 2 numbers"]),
    ("dim-0", S("grid.lower", []), ["grid.lower", "1 or 2 numbers"]),
    # schedules
    ("constant-above", S("tempering", {"schedule": {"kind": "constant", "value": 1.5}}),
     ["tempering.schedule.value", ">= 0 and <= 1"]),
    ("linear-zero", S("tempering", {"schedule": {"kind": "linear", "duration": 0}}),
     ["tempering.schedule.duration", "> 0"]),
    ("exponential-negative", S("tempering", {"schedule": {"kind": "exponential", "rate": -1}}),
     ["tempering.schedule.rate", "> 0"]),
    ("table-decreasing", S("tempering", {"schedule": {"kind": "table", "times": [0, 2, 1], "values": [0, .5, 1]}}),
     ["tempering.schedule.times[2]", "strictly increasing"]),
    ("table-negative-time", S("tempering", {"schedule": {"kind": "table", "times": [-1, 2], "values": [0, 1]}}),
     ["tempering.schedule.times[0]", ">= 0"]),
    ("table-lengths", S("tempering", {"schedule": {"kind": "table", "times": [0, 1], "values": [0]}}),
     ["tempering.schedule.values", "same length"]),
    ("table-value", S("tempering", {"schedule": {"kind": "table", "times": [0, 1], "values": [0, 2]}}),
     ["tempering.schedule.values[1]", "<= 1"]),
    ("table-empty", S("tempering", {"schedule": {"kind": "table", "times": [], "values": []}}),
     ["tempering.schedule.times", "at least one"]),
    ("adaptive-no-rule", S("tempering", {"schedule": {"kind": "adaptive"}}), ["tempering.schedule.rule is missing"]),
    ("adaptive-bad-rule", S("tempering", {"schedule": {"kind": "adaptive", "rule": "fast"}}),
     ["tempering.schedule.rule", '"ess", "constant-rate", "gradient-flow"']),
    ("adaptive-variance", S("tempering", {"schedule": {**_ADAPTIVE, "variance": "sample"}}),
     ["tempering.schedule.variance", '"path", "density"']),
    ("adaptive-scale", S("tempering", {"schedule": {**_ADAPTIVE, "scale": 0}}), ["tempering.schedule.scale", "> 0"]),
    ("schedule-no-kind", S("tempering", {"schedule": {"duration": 1}}), ["tempering.schedule.kind is missing"]),
    ("schedule-bad-kind", S("tempering", {"schedule": {"kind": "cosine"}}),
     ["tempering.schedule.kind", '"constant", "linear", "exponential", "table", "expression", "adaptive"']),
    ("tempering-no-schedule", S("tempering", {"reference": "initial"}), ["tempering.schedule is missing"]),
    ("reference-string", S("tempering", {"reference": "final", "schedule": {"kind": "linear", "duration": 1}}),
     ["tempering.reference", '"initial" or a distribution table']),
    # time
    ("save-both", S("time", {"end": 1.0, "save_every": 0.1, "save_times": [0.0, 1.0]}),
     ["save_every and save_times", "Keep one"]),
    ("save-times-after-end", S("time", {"end": 1.0, "save_times": [0.0, 2.0]}), ["time.save_times", "<= time.end"]),
    ("save-times-empty", S("time", {"end": 1.0, "save_times": []}), ["time.save_times", "at least one"]),
    ("save-times-order", S("time", {"end": 1.0, "save_times": [0.5, 0.5]}), ["time.save_times[1]", "increasing"]),
    ("save-times-negative", S("time", {"end": 1.0, "save_times": [-0.5]}), ["time.save_times[0]", ">= 0"]),
    ("save-every-zero", S("time.save_every", 0.0), ["time.save_every", "> 0"]),
    ("tolerance-big", S("time.tolerance", 0.5), ["time.tolerance", "<= 0.1"]),
    ("tolerance-zero", S("time.tolerance", 0), ["time.tolerance", "> 0"]),
    ("end-zero", S("time.end", 0), ["time.end", "> 0"]),
    ("end-negative", S("time.end", -1.0), ["time.end", "> 0"]),
    ("max-step-zero", S("time.max_step", 0.0), ["time.max_step", "> 0"]),
    ("initial-step-negative", S("time.initial_step", -1e-3), ["time.initial_step", "> 0"]),
    # flow weights
    ("fp-no-diffusion", S("flow", {"kind": "fokker-planck", "diffusion": 0}), ["fokker-planck flow needs diffusion > 0"]),
    ("fr-no-reaction", S("flow", {"kind": "fisher-rao", "reaction": 0.0}), ["fisher-rao flow needs reaction > 0"]),
    ("wfr-nothing", S("flow", {"kind": "wfr", "reaction": 0.0, "diffusion": 0.0}), ["diffusion + reaction > 0"]),
    ("diffusion-negative", S("flow.diffusion", -1.0), ["flow.diffusion", ">= 0"]),
    # missing required keys
    *[(f"missing-{p}", D(p), [f"{p} is missing"]) for p in
      ("name", "grid", "target", "initial", "flow", "time", "flow.kind", "time.end", "grid.lower", "grid.upper",
       "grid.cells", "target.kind", "target.mean", "initial.cov")],
    ("missing-components", S("target", {"kind": "mixture"}), ["target.components is missing"]),
    ("missing-log-density", S("target", {"kind": "expression"}), ["target.log_density is missing"]),
    ("missing-file-path", S("target", {"kind": "file"}), ["target.path is missing"]),
    # mixtures
    ("weights-length", _2d(S("target.weights", [1.0])), ["target.weights", "2 weights (one per component)"]),
    ("weights-zero", _2d(S("target.weights", [1.0, 0.0])), ["target.weights[1]", "> 0"]),
    ("components-empty", S("target", {"kind": "mixture", "components": []}), ["target.components", "at least one"]),
    ("nested-component", _2d(S("target.components[1]", {"kind": "mixture", "components": [{"kind": "gaussian"}]})),
     ["target.components[1].components[0].mean is missing"]),
    # names and files
    ("name-space", S("name", "my case"), ["name:", "letters, digits"]),
    ("name-empty", S("name", ""), ["name:", "non-empty"]),
    ("name-slash", S("name", "a/b"), ["name:", "file name"]),
    ("output-empty", S("output", {"path": ""}), ["output.path", "non-empty"]),
    ("file-missing", S("target", {"kind": "file", "path": "no-such-file.npy"}),
     ["target.path", "does not exist", "no-such-file.npy"]),
    ("file-suffix", S("target", {"kind": "file", "path": str(DATA / "file-target.toml")}),
     ["target.path", ".npy, .npz, .h5"]),
    ("file-key", S("target", {"kind": "file", "path": str(DATA / "log_density.npy"), "key": 1}),
     ["target.key", "a string"]),
]


@pytest.mark.parametrize("mutate,phrases", [(m, p) for _, m, p in REJECTIONS], ids=[i for i, _, _ in REJECTIONS])
def test_rejections(mutate, phrases):
    if isinstance(mutate, tuple):
        raw = copy.deepcopy(RICH_2D)
        mutate = mutate[1]
    else:
        raw = _raw_min_1d()
    mutate(raw)
    with pytest.raises(CaseError) as info:
        parse_case(raw, origin="case.toml")
    message = str(info.value)
    assert message.startswith("case.toml: ")
    assert "\n" not in message
    for phrase in phrases:
        assert phrase in message


def test_toml_syntax_error_has_line_and_column(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text('name = "x"\n[grid]\nlower = [0.0\ncells = [10]\n')
    with pytest.raises(CaseError, match=r"broken\.toml.*TOML syntax error.*line \d+, column \d+"):
        load_case(f)
    with pytest.raises(CaseError, match=r"line 2, column 8"):
        parse_case('name = "x"\nflow = kind = 3\n')


def test_missing_case_file_names_the_path(tmp_path):
    with pytest.raises(CaseError, match=r"nope\.toml.*does not exist"):
        load_case(tmp_path / "nope.toml")
    with pytest.raises(CaseError, match=r"not a regular file \(a directory\)"):
        load_case(tmp_path)
    with pytest.raises(CaseError, match=r"not a regular file \(a character device\)"):
        load_case(os.devnull)                   # refused from its type: never read (/dev/zero would not end)
    (tmp_path / "bin.toml").write_bytes(b"name = \"\xff\"")
    with pytest.raises(CaseError, match="UTF-8"):
        load_case(tmp_path / "bin.toml")


def test_expression_errors_carry_the_dotted_path():
    pytest.importorskip("gridflow.io.expression")
    with pytest.raises(ExpressionError, match=r"^<case>: initial\.log_density: .*"):
        parse_case(MIN_1D, overrides=['initial={kind="expression", log_density="import os"}'])


# --------------------------------------------------------------------------- property tests

NUMBER = st.floats(-50, 50, allow_nan=False) | st.integers(-50, 50)
POSITIVE = st.floats(1e-3, 100) | st.integers(1, 100)
EXPRESSIONS = {1: ["-x**2/2", "-abs(x)", "-2*minimum(abs(x), abs(x - 15))", "-log1p(x**2)"],
               2: ["-(x**2 + y**2)/2", "-x**2/200 - 0.5*(y + 0.1*x**2 - 10)**2", "logaddexp(-x**2, -y**2)"]}


@st.composite
def covariances(draw, d: int) -> list[list[Any]]:
    if d == 1:
        return [[draw(POSITIVE)]]
    a, c = draw(st.floats(0.01, 100)), draw(st.floats(0.01, 100))
    b = draw(st.floats(-0.9, 0.9)) * (a * c) ** 0.5
    return [[a, b], [b, c]]


def distributions(d: int, depth: int = 2) -> st.SearchStrategy[dict]:
    gaussian = st.fixed_dictionaries({"kind": st.just("gaussian"), "mean": st.lists(NUMBER, min_size=d, max_size=d),
                                      "cov": covariances(d)})
    file = st.fixed_dictionaries({"kind": st.just("file"), "path": st.just("log_density.npy")},
                                 optional={"key": st.sampled_from(["log_density", "a"])})
    leaves = [gaussian, file]
    if HAVE_EXPRESSION:
        leaves.append(st.fixed_dictionaries({"kind": st.just("expression"),
                                             "log_density": st.sampled_from(EXPRESSIONS[d])}))
    leaf = st.one_of(leaves)
    if depth == 0:
        return leaf

    @st.composite
    def mixture(draw):
        comps = draw(st.lists(distributions(d, depth - 1), min_size=1, max_size=3))
        table = {"kind": "mixture", "components": comps}
        if draw(st.booleans()):
            table["weights"] = draw(st.lists(POSITIVE, min_size=len(comps), max_size=len(comps)))
        return table

    return st.one_of(leaf, mixture())


SCHEDULES_ST = st.one_of(
    st.fixed_dictionaries({"kind": st.just("constant"), "value": st.floats(0, 1) | st.integers(0, 1)}),
    st.fixed_dictionaries({"kind": st.just("linear"), "duration": POSITIVE}),
    st.fixed_dictionaries({"kind": st.just("exponential"), "rate": POSITIVE}),
    st.lists(st.tuples(st.floats(0, 100), st.floats(0, 1)), min_size=1, max_size=5, unique_by=lambda p: p[0]).map(
        lambda ps: {"kind": "table", "times": sorted(p[0] for p in ps), "values": [p[1] for p in ps]}),
    st.fixed_dictionaries({"kind": st.just("adaptive"), "rule": st.sampled_from(["ess", "constant-rate", "gradient-flow"])},
                          optional={"variance": st.sampled_from(["path", "density"]), "scale": POSITIVE,
                                    "correction": st.booleans()}),
)


@st.composite
def valid_cases(draw) -> dict:
    """Raw valid cases: every optional key sometimes present, numbers sometimes ints."""
    d = draw(st.sampled_from([1, 2]))
    lower = draw(st.lists(NUMBER, min_size=d, max_size=d))
    upper = [lo + w for lo, w in zip(lower, draw(st.lists(st.floats(0.1, 100), min_size=d, max_size=d)))]
    grid: dict[str, Any] = {"lower": lower, "upper": upper,
                            "cells": draw(st.lists(st.integers(2, 3000), min_size=d, max_size=d))}
    if draw(st.booleans()):
        grid["boundary"] = draw(st.sampled_from(["reflecting", "periodic"]))
    kind = draw(st.sampled_from(["fokker-planck", "fisher-rao", "wfr", "path"]))
    flow: dict[str, Any] = {"kind": kind}
    for key in ("diffusion", "reaction"):
        if draw(st.booleans()):
            flow[key] = draw(st.just(0) | POSITIVE)
    needs = {"fokker-planck": ["diffusion"], "fisher-rao": ["reaction"], "wfr": ["diffusion", "reaction"]}
    if needs.get(kind) and all(flow.get(k, 1) == 0 for k in needs[kind]):
        flow[needs[kind][0]] = 1.0
    end = draw(POSITIVE)
    time: dict[str, Any] = {"end": end}
    save = draw(st.sampled_from(["none", "every", "times"]))
    if save == "every":
        time["save_every"] = draw(POSITIVE)
    elif save == "times":
        fractions = sorted(draw(st.lists(st.floats(0, 1), min_size=1, max_size=6, unique=True)))
        times = [end * f for f in fractions]
        gap = TIME_RESOLUTION * max(1.0, end)  # saved times closer than this are refused
        kept: list[float] = []
        for t in times:
            if (t == 0.0 and not kept) or t - (kept[-1] if kept else 0.0) >= gap:  # 0 once only
                kept.append(t)
        time["save_times"] = kept or [0.0]
    for key, strategy in (("tolerance", st.floats(1e-12, 0.1)), ("max_step", POSITIVE), ("initial_step", POSITIVE)):
        if draw(st.booleans()):
            time[key] = draw(strategy)
    case: dict[str, Any] = {"name": draw(st.from_regex(r"[A-Za-z0-9._-]{1,24}", fullmatch=True)), "grid": grid,
                            "target": draw(distributions(d)), "initial": draw(distributions(d)), "flow": flow,
                            "time": time}
    if draw(st.booleans()):
        case["description"] = draw(st.text(max_size=40))
    if draw(st.booleans()):
        tempering: dict[str, Any] = {"schedule": draw(SCHEDULES_ST)}
        if draw(st.booleans()):
            tempering["reference"] = draw(st.just("initial") | distributions(d, 1))
        case["tempering"] = tempering
    if draw(st.booleans()):
        case["output"] = {"path": draw(st.sampled_from(["out.h5", "runs/a b/é.h5"]))} if draw(st.booleans()) else {}
    return case


FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(valid_cases())
def test_valid_cases_resolve_and_round_trip(raw):
    case = parse_case(raw, base_dir=DATA)
    assert case_dim(case) == len(raw["grid"]["lower"])
    assert_resolved(case)
    assert parse_case(tomllib.loads(dumps_case(case))) == case
    assert ("tempering" in case) == (raw["flow"]["kind"] == "path" or "tempering" in raw)


# Mutations ------------------------------------------------------------------------------

_REQUIRED = {"case": {"name", "grid", "target", "initial", "flow", "time"}, "grid": {"lower", "upper", "cells"},
             "flow": {"kind"}, "time": {"end"}, "tempering": {"schedule"}, "output": set()}
_DIST_REQUIRED = {"gaussian": {"mean", "cov"}, "mixture": {"components"}, "expression": {"log_density"},
                  "file": {"path"}}
_SCHEDULE_REQUIRED = {"constant": {"value"}, "linear": {"duration"}, "exponential": {"rate"},
                      "table": {"times", "values"}, "adaptive": {"rule"}}
_CHILD_ROLE = {("case", "grid"): "grid", ("case", "target"): "dist", ("case", "initial"): "dist",
               ("case", "tempering"): "tempering", ("case", "flow"): "flow", ("case", "time"): "time",
               ("case", "output"): "output", ("tempering", "reference"): "dist", ("tempering", "schedule"): "schedule"}


def _nodes(node: Any, role: str, where: tuple = ()):
    """Yield (location, value, role, required) for every node below ``node``."""
    if isinstance(node, dict):
        if role == "dist":
            required = {"kind"} | _DIST_REQUIRED[node["kind"]]
        elif role == "schedule":
            required = {"kind"} | _SCHEDULE_REQUIRED[node["kind"]]
        else:
            required = _REQUIRED.get(role, set())
        for k, v in node.items():
            child = "components" if (role, k) == ("dist", "components") else _CHILD_ROLE.get((role, k), "leaf")
            yield where + (k,), v, child, k in required
            yield from _nodes(v, child, where + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            child = "dist" if role == "components" else "leaf"
            yield where + (i,), v, child, False
            yield from _nodes(v, child, where + (i,))


def _wrong_values(value: Any) -> list[Any]:
    """Values of a type that is never acceptable where ``value`` (valid) stands."""
    if isinstance(value, bool):
        return ["oops", 1, 1.5, [], {"zz": 1}]
    if isinstance(value, (int, float)):  # ints and floats are interchangeable in number slots
        return ["oops", True, [], {"zz": 1}]
    if isinstance(value, str):
        return [3, 2.5, True, [], {"zz": 1}]
    if isinstance(value, list):
        return ["oops", 3, True, {"zz": 1}]
    return ["oops", 3, True, [1]]


def _parent(raw: dict, where: tuple) -> Any:
    node: Any = raw
    for k in where[:-1]:
        node = node[k]
    return node


@FAST
@given(valid_cases(), st.data())
def test_mutated_cases_raise_case_error(raw, data):
    nodes = list(_nodes(raw, "case"))
    kind = data.draw(st.sampled_from(["drop", "unknown", "wrong-type"]))
    if kind == "drop":
        where = data.draw(st.sampled_from([w for w, _, _, req in nodes if req]))
        del _parent(raw, where)[where[-1]]
    elif kind == "unknown":
        tables = [()] + [w for w, v, _, _ in nodes if isinstance(v, dict)]
        where = data.draw(st.sampled_from(tables))
        table = raw
        for k in where:
            table = table[k]
        table[data.draw(st.sampled_from(["zz", "Kind", "cell", "x y", "save-every"]))] = 1
    else:
        where, value, _, _ = data.draw(st.sampled_from(nodes))
        wrong = _wrong_values(value)
        if where[:2] == ("grid", "cells") and not isinstance(value, list):
            wrong.append(2.5)  # a float is a wrong type only for cell counts
        _parent(raw, where)[where[-1]] = data.draw(st.sampled_from(wrong))
    with pytest.raises(CaseError):
        parse_case(raw, base_dir=DATA)


GARBAGE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["initial", "gaussian", "mixture", "linear", "wfr", "path", "log_density.npy"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["kind", "mean", "cov", "components", "weights", "schedule", "value", "zz"])
                      | st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


@FAST
@given(valid_cases(), st.data())
def test_garbage_anywhere_gives_case_error_or_a_valid_case(raw, data):
    nodes = list(_nodes(raw, "case"))
    where = data.draw(st.sampled_from([w for w, *_ in nodes]))
    _parent(raw, where)[where[-1]] = data.draw(GARBAGE)
    try:
        case = parse_case(raw, base_dir=DATA)
    except CaseError:
        return
    assert_resolved(case)


@FAST
@given(st.lists(st.text(max_size=30), max_size=3))
def test_arbitrary_overrides_give_case_error_or_a_valid_case(overrides):
    try:
        case = parse_case(MIN_1D, overrides=overrides)
    except CaseError:
        return
    assert_resolved(case)


def test_an_override_replaces_its_alternative():
    base = {"name": "t", "grid": {"lower": [0.0], "upper": [1.0], "cells": [10]},
            "target": {"kind": "gaussian", "mean": [0.5], "cov": [[0.1]]},
            "initial": {"kind": "gaussian", "mean": [0.5], "cov": [[0.1]]},
            "flow": {"kind": "fokker-planck"}, "time": {"end": 1.0, "save_every": 0.5}}
    case = parse_case(base, overrides=["time.save_times=[0.0, 0.3, 1.0]"])
    assert case["time"]["save_times"] == [0.0, 0.3, 1.0] and "save_every" not in case["time"]
    base["time"] = {"end": 1.0, "save_times": [0.0, 1.0]}
    case = parse_case(base, overrides=["time.save_every=0.25"])
    assert case["time"]["save_every"] == 0.25 and "save_times" not in case["time"]


# Limits: values a float can hold but the solver cannot use are refused up front (issue 9) ------------


@pytest.mark.parametrize("override, expect", [
    # diffusion x end / h^2 = 1e308 x 2 / 0.01 overflows: not a finite problem
    ("flow.diffusion=1e308", ["flow.diffusion", "not finite", "1e+100"]),
    ("flow.reaction=1e300", ["flow.reaction", "not finite"]),
    # below the integrator's time resolution (1e-12 x max(1, t)) no frame is distinct from t = 0
    ("time.end=5e-324", ["time.end", ">= 1e-09", "rescale"]),
    ("time.end=1e-300", ["time.end", ">= 1e-09"]),
    # 2e9 frames: refused from end / save_every alone, before any list of times exists
    ("time.save_every=1e-9", ["time.save_every", f"at most {MAX_FRAMES} frames", "save_every >= 2e-05"]),
    ("time.save_times=[0.0, 1e-12, 1.0]", ["time.save_times[1]", "not distinct"]),
    ("time.max_step=1e-300", ["time.max_step", "at most 1e+07 steps"]),
    ("time.initial_step=1e-300", ["time.initial_step", ">= 2e-09"]),
    ("name=\"" + "a" * 5000 + "\"", ["name:", "at most 128 characters", "not 5000"]),
    ("grid.lower=[-1e200]", ["grid.lower[0]", "too large"]),
    ("grid.upper=[1e101]", ["grid.upper[0]", "too large"]),
])
def test_values_beyond_the_solvers_range_are_refused(override, expect):
    with pytest.raises(CaseError) as err:
        parse_case(MIN_1D, overrides=[override])
    message = str(err.value)
    assert "\n" not in message
    for part in expect:
        assert part in message, (part, message)


def _min_1d() -> dict:
    return tomllib.loads(MIN_1D)


def test_save_every_at_the_frame_limit_is_accepted_and_one_above_is_not():
    end = 2.0
    assert parse_case(MIN_1D, overrides=[f"time.save_every={end / MAX_FRAMES!r}"])["time"]["save_every"] == end / MAX_FRAMES
    with pytest.raises(CaseError, match="frames"):
        parse_case(MIN_1D, overrides=[f"time.save_every={end / (MAX_FRAMES + 1)!r}"])


def test_cells_that_are_not_distinct_numbers_are_refused():
    # cells 1e-6 wide at coordinate 1e6: 1e-12 relative, below the 1e-10 the centres need
    raw = {**_min_1d(), "grid": {"lower": [1e6], "upper": [1e6 + 1e-3], "cells": [1000]},
           "initial": {"kind": "gaussian", "mean": [1e6], "cov": [[1e-8]]},
           "target": {"kind": "gaussian", "mean": [1e6], "cov": [[1e-8]]}}
    with pytest.raises(CaseError, match=r"grid.cells\[0\].*not be distinct"):
        parse_case(raw)


@pytest.mark.parametrize("weights, expect", [
    ([1e308, 1e308], ["target.weights", "sum to more than", "common factor"]),
    ([1e-320, 1e10], ["target.weights[0]", "normalised weight is 0"]),
])
def test_mixture_weights_that_cannot_be_normalised_are_refused(weights, expect):
    raw = {**_min_1d(), "target": {"kind": "mixture", "weights": weights,
                                "components": [_min_1d()["initial"], _min_1d()["target"]]}}
    with pytest.raises(CaseError) as err:
        parse_case(raw)
    for part in expect:
        assert part in str(err.value)


def test_mixture_weights_of_extreme_ratio_give_the_heavy_component():
    import numpy as np

    from gridflow.core.distributions import log_density
    from gridflow.core.grid import Grid

    raw = {**_min_1d(), "target": {"kind": "mixture", "weights": [1, 1e300],
                                "components": [_min_1d()["initial"], _min_1d()["target"]]}}
    case = parse_case(raw)
    grid = Grid([-5.0], [5.0], [100])
    mixed = log_density(case["target"], grid)
    heavy = log_density(parse_case(MIN_1D)["target"], grid)
    # weight 1e-300 of the light component changes log rho by at most log(1 + 1e-300 * ratio) ~ 0
    assert np.all(np.isfinite(mixed))
    np.testing.assert_allclose(mixed, heavy, rtol=0, atol=1e-12)


def test_memory_estimate_is_checked_before_allocating():
    case = parse_case(MIN_1D, overrides=["grid.cells=[1000000]"])
    need = estimate_run_bytes(case)
    assert need == 1_000_000 * 256
    check_memory(case, available=need)          # exactly enough
    with pytest.raises(LimitError) as err:
        check_memory(case, available=need - 1)
    assert "1000000 cells" in str(err.value) and "fewer grid.cells" in str(err.value)
