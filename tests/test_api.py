"""The Python API mirrors the command line: same case -> same file, same samples, same comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gridflow
from gridflow.cli import main

from tests.cli.test_cli import GOOD


@pytest.fixture(scope="module")
def case_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "case.toml"
    path.write_text(GOOD)
    return path


def test_api_and_cli_agree(tmp_path, case_file, capsys):
    via_cli = tmp_path / "cli.h5"
    assert main(["run", str(case_file), "-o", str(via_cli), "-q"]) == 0
    via_api = gridflow.run(gridflow.load_case(case_file), output=tmp_path / "api.h5")
    a, b = gridflow.open_trajectory(via_cli), gridflow.open_trajectory(via_api)
    np.testing.assert_array_equal(a.density, b.density)   # deterministic: bit for bit
    frames = gridflow.solve(gridflow.load_case(case_file))
    np.testing.assert_array_equal(np.stack([f.density for f in frames]), b.density)

    npz = tmp_path / "s.npz"
    assert main(["sample", str(via_cli), "--time", "0.5", "-n", "300", "--seed", "7", "-o", str(npz)]) == 0
    samples = gridflow.sample(via_api, time=0.5, n=300, seed=7)
    with np.load(npz) as f:
        np.testing.assert_array_equal(f["samples"], samples)

    capsys.readouterr()
    assert main(["compare", str(via_cli), str(npz), "--time", "0.5", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    result = gridflow.compare(b, samples, time=0.5)
    assert printed["distances"] == pytest.approx(result["distances"], rel=1e-12)
    assert printed["p_value"] == pytest.approx(result["p_value"], rel=1e-12) and printed["n"] == 300


def test_api_errors_are_input_errors(tmp_path, case_file):
    path = gridflow.run(gridflow.load_case(case_file), output=tmp_path / "o.h5")
    with pytest.raises(gridflow.InputError, match="positive number"):
        gridflow.sample(path, time=0.5, n=0)
    with pytest.raises(gridflow.TrajectoryFileError, match="No saved frame"):
        gridflow.compare(path, np.zeros((5, 1)), time=0.3)
    with pytest.raises(gridflow.InputError):
        gridflow.compare(path, np.zeros((5, 2)), time=0.5)
