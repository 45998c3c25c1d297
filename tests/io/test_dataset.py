"""open_dataset (a sweep as one xarray Dataset) and the in-memory API (solve_dataset with
densities given as Python callables or arrays)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray")

import gridflow
from gridflow.io.case import parse_case
from gridflow.errors import DensityError, InputError, TrajectoryFileError
from gridflow.batch.sweep import read_index, run_sweep

from tests.batch.test_sweep import BASE

RAW = tomllib.loads(BASE)["base"]


@pytest.fixture(scope="module")
def sweep_index(tmp_path_factory):
    d = tmp_path_factory.mktemp("ds")
    (d / "s.toml").write_text('name = "d"\n' + BASE + """
[vary]
"flow.kind" = ["fisher-rao", "wfr"]
[random]
draws = 2
seed = 5
"target.components[1].mean" = { uniform = [2.0, 4.0], shape = [1] }
""")
    return run_sweep(d / "s.toml", output=d / "out", workers=2)


def test_open_dataset_has_runs_and_parameters_as_coordinates(sweep_index):
    ds = gridflow.open_dataset(sweep_index)
    rows = read_index(sweep_index)
    assert ds.sizes["run"] == 4 and list(ds["run"].values) == [0, 1, 2, 3]
    assert list(ds["flow.kind"].values) == ["fisher-rao", "wfr"] * 2
    assert list(ds["draw"].values) == [0, 0, 1, 1]
    np.testing.assert_array_equal(ds["target.components[1].mean[0]"].values,
                                  [float(r["target.components[1].mean[0]"]) for r in rows])
    assert ds["density"].dims == ("run", "time", "x") and ds["density"].shape == (4, 3, 120)
    assert list(ds["status"].values) == ["complete"] * 4
    for k, row in enumerate(rows):
        tr = gridflow.open_trajectory(sweep_index.parent / row["path"])
        if k == 1:  # the same variables, dims and values as xarray's reading of the file
            f = gridflow.open_trajectory(sweep_index.parent / row["path"], as_xarray=True)
            one = ds.sel(run=1)
            assert set(f.variables) <= set(one.variables)
            for name in f.variables:
                assert one[name].dims == f[name].dims, name
                np.testing.assert_array_equal(one[name].values, f[name].values)
        np.testing.assert_array_equal(ds["density"].isel(run=k).values, tr.density)
        np.testing.assert_array_equal(ds["log_target"].isel(run=k).values, tr.log_target)
        assert ds["final_kl"].values[k] == float(row["final_kl"]) == tr.kl[-1]
        assert ds["flow"].values[k] == tr.attrs["flow"]
        assert tomllib.loads(ds["case"].values[k])["target"]["components"][1]["mean"][0] == pytest.approx(
            ds["target.components[1].mean[0]"].values[k], rel=1e-15)
    # the Fisher-Rao runs have no kinetic energy of transport: NaN there, values for WFR
    assert np.isnan(ds["kinetic_energy"].sel(run=[0, 2]).values).all()
    assert np.isfinite(ds["kinetic_energy"].sel(run=[1, 3]).values).all()
    assert ds.attrs["boundary"] == "reflecting" and "case" not in ds.attrs
    # selecting by parameter works as for any coordinate
    wfr = ds.where(ds["flow.kind"] == "wfr", drop=True)
    assert wfr.sizes["run"] == 2
    assert gridflow.open_dataset(sweep_index.parent).sizes == ds.sizes   # the directory is enough


def test_open_dataset_returns_one_dataset_per_grid(tmp_path):
    (tmp_path / "s.toml").write_text('name = "g"\n' + BASE + '[vary]\n"grid.cells" = [[100], [120], [100]]\n')
    index = run_sweep(tmp_path / "s.toml", output=tmp_path / "o", workers=1)
    parts = gridflow.open_dataset(index)
    assert isinstance(parts, list) and len(parts) == 2
    assert list(parts[0]["run"].values) == [0, 2] and parts[0].sizes["x"] == 100
    assert list(parts[1]["run"].values) == [1] and parts[1].sizes["x"] == 120
    with pytest.raises(TrajectoryFileError, match="No sweep index"):
        gridflow.open_dataset(tmp_path / "nothing.csv")
    with pytest.raises(TrajectoryFileError, match="no run with status"):
        gridflow.open_dataset(index, status="failed")


def test_solve_dataset_matches_the_file():
    case = parse_case(RAW)
    ds = gridflow.solve_dataset(case)
    assert not Path(case["output"]["path"]).exists()
    frames = gridflow.solve(case)
    np.testing.assert_array_equal(ds["density"].values, np.stack([f.density for f in frames]))
    np.testing.assert_array_equal(ds["time"].values, [0.0, 0.25, 0.5])


def test_solve_dataset_same_variables_as_file(tmp_path):
    case = parse_case(RAW)
    f = gridflow.open_trajectory(gridflow.run(case, output=tmp_path / "f.h5"), as_xarray=True)
    ds = gridflow.solve_dataset(RAW)
    assert set(ds.variables) == set(f.variables)
    for name in f.variables:
        assert ds[name].dims == f[name].dims, name
        np.testing.assert_array_equal(ds[name].values, f[name].values)
    assert {k: v for k, v in ds.attrs.items() if k != "created"} == \
        {k: v for k, v in f.attrs.items() if k != "created"}
    # sample and compare take the in-memory Dataset like the file
    path = tmp_path / "f.h5"
    np.testing.assert_array_equal(gridflow.sample(ds, time=0.5, n=200, seed=3),
                                  gridflow.sample(path, time=0.5, n=200, seed=3))
    x = gridflow.sample(path, time=0.25, n=300, seed=4)
    assert gridflow.compare(ds, x, time=0.25)["distances"] == gridflow.compare(path, x, time=0.25)["distances"]
    with pytest.raises(InputError, match="several runs"):
        gridflow.sample(xr.concat([ds, ds], dim="run"), time=0.5, n=3)


FORMULA_1D = "logaddexp(-0.5*x**2, -0.5*(x - 3)**2 - 1) + 0.1*sin(x)"


def _f1(x):
    return np.logaddexp(-0.5 * x**2, -0.5 * (x - 3) ** 2 - 1) + 0.1 * np.sin(x)


@pytest.mark.parametrize("flow", ["fokker-planck", "fisher-rao", "wfr"])
def test_callable_target_equals_formula_target(flow):
    raw = dict(RAW, flow={"kind": flow}, target={"kind": "expression", "log_density": FORMULA_1D})
    by_formula = gridflow.solve_dataset(raw)
    no_target = {k: v for k, v in raw.items() if k != "target"}
    by_function = gridflow.solve_dataset(no_target, target=_f1)
    grid = gridflow.Grid(RAW["grid"]["lower"], RAW["grid"]["upper"], RAW["grid"]["cells"])
    by_array = gridflow.solve_dataset(no_target, target=_f1(grid.axes[0]) - 7.0)   # any constant
    for other in (by_function, by_array):
        np.testing.assert_allclose(other["log_density"].values, by_formula["log_density"].values,
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(other["kl"].values, by_formula["kl"].values, rtol=1e-10, atol=1e-14)
    assert tomllib.loads(by_function.attrs["case"])["target"] == {"kind": "python", "source": "callable"}
    assert tomllib.loads(by_array.attrs["case"])["target"]["source"] == "array"


def test_callable_initial_reference_and_2d():
    raw2 = {"name": "two", "grid": {"lower": [-6.0, -7.0], "upper": [7.0, 7.0], "cells": [40, 36]},
            "flow": {"kind": "wfr"}, "time": {"end": 0.2, "save_every": 0.1},
            "tempering": {"schedule": {"kind": "linear", "duration": 0.4}}}
    formula_t, formula_i = "-0.5*((x - 1)**2 + y**2)", "-0.5*(x**2 + y**2) + 0.2*tanh(x*y)"
    ref = dict(raw2, target={"kind": "expression", "log_density": formula_t},
               initial={"kind": "expression", "log_density": formula_i})
    a = gridflow.solve_dataset(ref)
    b = gridflow.solve_dataset(raw2, target=lambda x, y: -0.5 * ((x - 1) ** 2 + y**2),
                               initial=lambda x, y: -0.5 * (x**2 + y**2) + 0.2 * np.tanh(x * y))
    assert b["density"].dims == ("time", "x", "y") and b["density"].shape == (3, 40, 36)
    np.testing.assert_allclose(b["log_density"].values, a["log_density"].values, rtol=1e-12, atol=1e-12)
    # a tempering reference given as a callable: the path starts from it (lambda = 0 at t = 0)
    c = gridflow.solve_dataset(dict(ref, tempering={"schedule": {"kind": "linear", "duration": 0.4},
                                                    "reference": {"kind": "expression", "log_density": "-0.5*(x**2 + y**2)"}}))
    d = gridflow.solve_dataset(dict(ref), reference=lambda x, y: -0.5 * (x**2 + y**2))
    np.testing.assert_allclose(d["log_reference"].values, c["log_reference"].values, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d["kl_tempered"].values, c["kl_tempered"].values, rtol=1e-9, atol=1e-13)


def test_in_memory_density_errors():
    no_target = {k: v for k, v in RAW.items() if k != "target"}
    with pytest.raises(InputError, match="shape"):
        gridflow.solve_dataset(no_target, target=np.zeros(7))
    with pytest.raises(DensityError, match="NaN or \\+inf"):
        gridflow.solve_dataset(no_target, target=lambda x: np.where(x > 0, np.nan, 0.0))
    with pytest.raises(DensityError, match="raised ZeroDivisionError"):
        gridflow.solve_dataset(no_target, target=lambda x: 1 / 0)
    with pytest.raises(DensityError, match="zero on some cells"):
        gridflow.solve_dataset(no_target, target=lambda x: np.where(x > 0, -np.inf, 0.0))
    with pytest.raises(gridflow.CaseError, match="target"):
        gridflow.solve_dataset(no_target)                       # no target at all


def test_api_doc_examples_run(tmp_path, monkeypatch):
    """Every ```python block of docs/api.md runs, in order, in one namespace."""
    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)
