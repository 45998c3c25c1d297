"""The command line: verbs, exit statuses, and clear one-paragraph errors on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from gridflow.cli import main

GOOD = """
name = "cli"
[grid]
lower = [-8.0]
upper = [10.0]
cells = [300]
[target]
kind = "mixture"
weights = [0.5, 0.5]
components = [{ kind = "gaussian", mean = [0.0], cov = [[1.0]] }, { kind = "gaussian", mean = [3.0], cov = [[1.0]] }]
[initial]
kind = "gaussian"
mean = [0.0]
cov = [[1.0]]
[tempering]
schedule = { kind = "linear", duration = 1.0 }
[flow]
kind = "wfr"
[time]
end = 1.0
save_every = 0.25
"""


def _write(tmp_path: Path, text: str, name: str = "case.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture
def good_run(tmp_path):
    case = _write(tmp_path, GOOD)
    out = tmp_path / "out.h5"
    assert main(["run", str(case), "-o", str(out), "-q"]) == 0
    return out


def test_run_info_plot_sample_compare(tmp_path, good_run, capsys):
    assert main(["info", str(good_run)]) == 0
    text = capsys.readouterr().out
    assert "status:    complete" in text and "frames:    5" in text
    fig = tmp_path / "fig.png"
    gif = tmp_path / "evolution.gif"
    assert main(["plot", str(good_run), "-o", str(fig), "--animate", str(gif)]) == 0
    assert fig.stat().st_size > 10_000
    from PIL import Image  # a matplotlib dependency

    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 5  # one per saved frame
    samples = tmp_path / "s.npz"
    assert main(["sample", str(good_run), "--time", "1.0", "-n", "500", "--seed", "3", "-o", str(samples)]) == 0
    capsys.readouterr()
    assert main(["compare", str(good_run), str(samples), "--time", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["time"] == 1.0 and result["n"] == 500 and 0.0 <= result["p_value"] <= 1.0
    assert {"w1", "w2", "ks", "mmd", "tv_histogram", "mean_error", "cov_error"} <= set(result["distances"])


def test_overrides_are_applied_and_recorded(tmp_path):
    case = _write(tmp_path, GOOD)
    out = tmp_path / "o.h5"
    assert main(["run", str(case), "-o", str(out), "-q", "--set", "grid.cells=[200]", "--set", "flow.kind=fisher-rao"]) == 0
    with h5py.File(out, "r") as f:
        assert f["x"].shape == (200,)
        assert f.attrs["flow"] == "fisher-rao"
        assert "cells = [\n    200,\n]" in f.attrs["case"] or "200" in f.attrs["case"]


def _initial_expression(log_density: str) -> str:
    """GOOD with the initial density replaced by an ``expression`` (TOML-escaped by the caller)."""
    return GOOD.replace('kind = "gaussian"\nmean = [0.0]\ncov = [[1.0]]\n[tempering]',
                        f'kind = "expression"\nlog_density = "{log_density}"\n[tempering]')


BAD_CASES = {
    "toml syntax": ("name = 'x'\n[grid\nlower = [0.0]", "line"),
    "unknown key": (GOOD.replace("[flow]", "[flow]\nspeed = 2"), "flow.speed"),
    "wrong type": (GOOD.replace("cells = [300]", 'cells = ["many"]'), "grid.cells"),
    "negative cells": (GOOD.replace("cells = [300]", "cells = [-5]"), "grid.cells"),
    "not positive definite": (GOOD.replace("cov = [[1.0]]\n[tempering]", "cov = [[-1.0]]\n[tempering]"), "positive"),
    "import in expression": (_initial_expression("__import__('os')"), "__import__"),
    "attribute access": (_initial_expression("x.real"), "."),
    "unknown name": (_initial_expression("open(x)"), "open"),
    "NaN on the grid": (_initial_expression("log(x)"), "NaN"),
    "+inf on the grid": (_initial_expression("1/(x - x)"), "inf"),
    "zero everywhere": (_initial_expression("-1e308*1e308 + 0*x"), "zero"),
    "missing required": (GOOD.replace("[initial]\nkind = \"gaussian\"\nmean = [0.0]\ncov = [[1.0]]\n", ""), "initial"),
}


@pytest.mark.parametrize("name", list(BAD_CASES))
def test_bad_case_exit_2_with_message_and_no_file(tmp_path, capsys, name):
    text, phrase = BAD_CASES[name]
    case = _write(tmp_path, text)
    out = tmp_path / "bad.h5"
    assert main(["run", str(case), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gridflow: error:") and phrase in err and "Traceback" not in err
    assert "\n\n" not in err.strip()               # one paragraph (a formula error adds a caret line)
    assert not out.exists()


def test_missing_case_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_unwritable_output(tmp_path, capsys):
    case = _write(tmp_path, GOOD)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["run", str(case), "-o", str(blocker / "out.h5"), "-q"]) == 2
    assert "out.h5" in capsys.readouterr().err


def test_edge_mass_is_a_recorded_warning(tmp_path):
    case = _write(tmp_path, GOOD.replace("lower = [-8.0]", "lower = [-1.0]"))
    out = tmp_path / "edge.h5"
    with pytest.warns(UserWarning, match="box truncates"):
        assert main(["run", str(case), "-o", str(out), "-q"]) == 0
    with h5py.File(out, "r") as f:
        assert "truncates" in f.attrs["warnings"] and f.attrs["status"] == "complete"


@pytest.mark.parametrize("content", [b"not an hdf5 file at all", "truncated", "foreign"])
def test_bad_trajectory_files(tmp_path, good_run, capsys, content):
    bad = tmp_path / "bad.h5"
    if content == "truncated":
        data = good_run.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif content == "foreign":
        with h5py.File(bad, "w") as f:
            f["something"] = np.arange(3)
    else:
        bad.write_bytes(content)
    for argv in (["info", str(bad)], ["plot", str(bad), "-o", str(tmp_path / "f.png")],
                 ["sample", str(bad), "--time", "1", "-n", "5", "-o", str(tmp_path / "s.npz")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "gridflow: error:" in err and "Traceback" not in err


def test_bad_figure_paths(tmp_path, good_run, capsys):
    for argv in (["plot", str(good_run), "-o", str(tmp_path / "f.png"), "--animate", str(tmp_path / "a.mp4")],
                 ["plot", str(good_run), "-o", str(tmp_path / "no" / "dir" / "f.png")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "gridflow: error:" in err and "Traceback" not in err
        assert ".gif" in err or "writable" in err


def test_samples_of_the_wrong_dimension(tmp_path, good_run, capsys):
    wrong = tmp_path / "w.npy"
    np.save(wrong, np.zeros((10, 2)))
    assert main(["compare", str(good_run), str(wrong), "--time", "1"]) == 2
    err = capsys.readouterr().err
    assert "2 coordinates per particle" in err and "1D" in err and "Traceback" not in err


def test_python_m_gridflow_is_the_console_script(tmp_path):
    env = {k: v for k, v in os.environ.items()}
    proc = subprocess.run([sys.executable, "-m", "gridflow", "run", str(tmp_path / "missing.toml")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "missing.toml" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "gridflow", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "run" in proc.stdout
