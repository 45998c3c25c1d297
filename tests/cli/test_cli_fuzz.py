"""Fuzzing the command line: whatever the arguments and ``--set`` values, the outcome is exit 0,
exit 1 with a one-line message, or exit 2 (a usage error or one error paragraph) -- never a
traceback, never an "internal error", never a changed input file.

The examples run in-process through :func:`gridflow.cli.main`; grids are kept tiny by a final
``--set grid.cells=[...]`` so that every example takes a fraction of a second.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridflow.cli import main

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted((ROOT / "cases").glob("*.toml"))


def _keys(table: dict, prefix: str = "") -> list[str]:
    """Dotted keys of every value of a TOML table (lists are values; their items as key[i])."""
    out = []
    for key, value in table.items():
        name = f"{prefix}{key}"
        out.append(name)
        if isinstance(value, dict):
            out += _keys(value, name + ".")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for i, item in enumerate(value):
                out += _keys(item, f"{name}[{i}].")
    return out


#: Examples per run (60 keeps the test under a minute; set GRIDFLOW_FUZZ_EXAMPLES for a longer hunt, random seed).
EXAMPLES = int(os.environ.get("GRIDFLOW_FUZZ_EXAMPLES", "60"))
KEYS = sorted({k for case in CASES for k in _keys(tomllib.loads(case.read_text()))})


def _numbers(table, prefix: str = "") -> list[tuple[str, float]]:
    """(dotted key, value) of every number of a TOML table, list items as key[i]."""
    out = []
    items = table.items() if isinstance(table, dict) else enumerate(table)
    for key, value in items:
        name = f"{prefix}[{key}]" if isinstance(table, list) else (f"{prefix}.{key}" if prefix else str(key))
        if isinstance(value, (dict, list)):
            out += _numbers(value, name)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((name, float(value)))
    return out


NUMERIC = {case.name: _numbers(tomllib.loads(case.read_text())) for case in CASES}
DIMS = {case.name: len(tomllib.loads(case.read_text())["grid"]["lower"]) for case in CASES}

NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.integers(-10**400, 10**400).map(str),
                    st.sampled_from(["0", "-0.0", "1e-320", "5e-324", "1e308", "-1e308", "1e300", "nan", "inf"]))
TEXT = st.text(max_size=40)
TOMLISH = st.one_of(
    st.lists(st.floats(-1e3, 1e3) | st.sampled_from([float("nan"), 1e308, -1e308, 0.0]), max_size=3).map(
        lambda xs: "[" + ", ".join(repr(x) for x in xs) + "]"),
    st.sampled_from(['"fokker-planck"', '"wfr"', '"fisher-rao"', '"path"', '"periodic"', "true", "{}", "[[1.0]]",
                     '{ kind = "linear", duration = 0.0 }', '{ kind = "gaussian", mean = [0.0], cov = [[1.0]] }',
                     '"-x**2/2"', '"1e400*x"', '"\\u0000"', '"a\\nb"']),
)
VALUES = st.one_of(NUMBERS, TEXT, TOMLISH)
ASSIGNMENTS = st.one_of(
    st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"),
    TEXT,                                                                    # garbage, maybe without '='
)
OPTION_VALUES = st.one_of(NUMBERS, TEXT, st.sampled_from(["1", "0.5", "10", "-1", "1e10", "1e-12", "0"]))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny trajectory, a samples file and copies of the shipped cases (the inputs that must not change)."""
    base = tmp_path_factory.mktemp("fuzz")
    cases = []
    for case in CASES:
        shutil.copy(case, base / case.name)
        cases.append(base / case.name)
    traj = base / "tiny.h5"
    assert main(["run", str(base / "quickstart.toml"), "-q", "-o", str(traj), "--set", "grid.cells=[40]",
                 "--set", "time.end=2.0", "--set", "time.save_every=0.5"]) == 0
    samples = base / "samples.npy"
    np.save(samples, np.random.default_rng(0).normal(size=(50, 1)))
    return base, cases, traj, samples


def _digest(paths) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@st.composite
def commands(draw, cases, traj, samples, out_dir):
    """argv of one command: a verb, its inputs, random options, and (for run) random --set values."""
    verb = draw(st.sampled_from(["run", "run", "run", "info", "sample", "compare", "plot"]))
    out = draw(st.sampled_from([str(out_dir / "o.h5"), str(out_dir / "o.npz"), str(out_dir / "o.png"),
                                str(out_dir / "o.unknownext"), str(traj), str(out_dir / "sub" / "o.h5"),
                                str(out_dir / ("n" * 300 + ".h5")), os.devnull]))
    if verb == "run":
        case = draw(st.sampled_from(cases))
        argv = ["run", str(case), "-q"]
        numeric = NUMERIC[case.name]
        scaled = st.tuples(st.sampled_from(numeric), st.sampled_from([-1.0, 1.0]),
                           st.integers(-330, 330) | st.integers(-3, 3)).map(
            lambda t: f"{t[0][0]}={t[1] * t[0][1] * 10.0 ** t[2]!r}" if abs(t[2]) < 300 else
            f"{t[0][0]}={t[1] * (t[0][1] or 1.0)!r}e{t[2]}")          # the case's own numbers, rescaled
        for assignment in draw(st.lists(scaled | ASSIGNMENTS, min_size=1, max_size=3)):
            argv += ["--set", assignment]
        if draw(st.booleans()):
            argv += ["-o", out if out != str(traj) else str(out_dir / "o.h5")]  # rewriting tiny.h5 would be legal
        else:
            argv += ["--set", f'output.path="{out_dir / "case.h5"}"']
        cells = draw(st.integers(8, 200 if DIMS[case.name] == 1 else 24))
        argv += ["--set", f"grid.cells=[{', '.join([str(cells)] * DIMS[case.name])}]"]  # keep the grid tiny
        return argv
    argv = [verb, str(traj)]
    if verb == "compare":
        argv.append(str(samples))
    if verb in ("sample", "compare"):
        argv += ["--time", draw(st.sampled_from(["0", "0.5", "2", "2.0"]) | OPTION_VALUES)]
        argv += ["--seed", draw(st.sampled_from(["0", "7"]) | OPTION_VALUES)]
    if verb == "sample":
        argv += ["-n", draw(st.sampled_from(["10", "1000"]) | OPTION_VALUES), "-o", out]
    if verb == "compare":
        if draw(st.booleans()):
            argv += ["--bootstrap", draw(st.sampled_from(["0", "5", "19"]) | OPTION_VALUES)]
        if draw(st.booleans()):
            argv.append("--json")
    if verb == "plot" and draw(st.booleans()):
        argv += ["-o", out]
    if draw(st.integers(0, 4)) == 0:                  # an unexpected extra token somewhere
        argv.insert(draw(st.integers(1, len(argv))), draw(TEXT | st.sampled_from(["--debug", "-n", "--set"])))
    return argv


def _check_outcome(argv, status, out: str, err: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    assert status in (0, 1, 2), (argv, status, err)
    if status == 1:
        lines = [line for line in err.strip().split("\n") if line]
        assert len(lines) == 1 and lines[0].startswith("gridflow: "), (argv, err)
    if status == 2:
        assert err.strip(), (argv, "exit 2 without a message")


@pytest.mark.filterwarnings("ignore")  # as outside pytest (conftest's raise-on-overflow is undone below)
def test_cli_fuzz_never_crashes_nor_changes_its_inputs(workspace, capsys):
    base, cases, traj, samples = workspace
    inputs = [*cases, traj, samples]
    before = _digest(inputs)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES == 60,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(data=st.data())
    def one(data):
        out_dir = Path(tempfile.mkdtemp(dir=base))
        argv = data.draw(commands(cases, traj, samples, out_dir), label="argv")
        capsys.readouterr()
        try:
            with np.errstate(all="warn", under="ignore"):  # numpy's defaults, as for the installed command
                status = main(argv)
        except SystemExit as exc:               # argparse: usage error (2) or --help (0)
            status = exc.code if isinstance(exc.code, int) else 2
        captured = capsys.readouterr()
        _check_outcome(argv, status, captured.out, captured.err)
        assert _digest(inputs) == before, (argv, "an input file changed")
        shutil.rmtree(out_dir, ignore_errors=True)

    one()
