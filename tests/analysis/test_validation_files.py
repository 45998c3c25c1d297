"""Validation studies of ensembles made elsewhere (gridflow validate --ensembles, gridflow.analysis.ensemble_files)
and the replicate test in every study row."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from gridflow.analysis.distances import wasserstein_1d
from gridflow.analysis.ensemble_files import find_ensembles, validate_ensembles
from gridflow.analysis.validation import grid_reference
from gridflow.cli.validate import add_parser, command
from gridflow.errors import InputError
from gridflow.io.case import parse_case
from gridflow.particles.grid_sampling import cell_masses, sample_grid_density, save_samples
from gridflow.particles.samplers import run_sampler

CASE = {"name": "files", "grid": {"lower": [-6.0], "upper": [7.0], "cells": [520]},
        "target": {"kind": "gaussian", "mean": [1.0], "cov": [[0.5]]},
        "initial": {"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]},
        "flow": {"kind": "fokker-planck"}, "time": {"end": 1.0}}
PARTICLES, STEPS, REPLICATES = (1000, 4000), (0.02, 0.01), 6


@pytest.fixture(scope="module")
def reference():
    case = parse_case(CASE)
    grid, density, _ = grid_reference(case, 1.0)
    return case, grid, density


def _write(root, grid, density, *, shift=0.0, name="run_N{N}_h{step}_r{rep}.npz"):
    """Exact draws of rho_1 (shifted by ``shift``) named after the pattern ``name``."""
    rng = np.random.default_rng(5)
    for n in PARTICLES:
        for h in STEPS:
            for r in range(REPLICATES):
                x = sample_grid_density(grid, density, n, rng=rng) + shift
                save_samples(root / name.format(N=n, step=h, rep=r), x)
    return str(root / name)


def test_exact_ensembles_pass_and_a_constant_shift_is_flagged(tmp_path, reference):
    """Exact draws: every replicate-test p-value above 1e-3 (each is U(0,1): 4 rows fail together with
    probability < 4e-3) and no flag.  The same draws shifted by 0.1 (0.14 sd; a bias that does not
    shrink with h): a bin mass moves by about 0.04, 2.7 binomial sd of one ensemble of 1000 and 5.4
    of one of 4000; with 6 replicates (F(2, 4)) that is p < 1e-3 at N = 4000 and < 0.05 at N = 1000,
    and the sampler is flagged (its excess shrinks neither with h nor with N)."""
    case, grid, density = reference
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    good = validate_ensembles(case, _write(tmp_path / "good", grid, density), seed=1)
    assert good["particles"] == list(PARTICLES) and good["steps"] == list(STEPS) and len(good["rows"]) == 4
    assert all(r["replicates"] == REPLICATES for r in good["rows"])
    assert all(r["replicate_test"]["p_value"] > 1e-3 for r in good["rows"])
    assert not good["verdict"]["flagged"]
    bad = validate_ensembles(case, _write(tmp_path / "bad", grid, density, shift=0.1), seed=1)
    p_bad = {(r["particles"], r["step"]): r["replicate_test"]["p_value"] for r in bad["rows"]}
    assert all(p < 1e-3 for (n, _), p in p_bad.items() if n == 4000) and max(p_bad.values()) < 0.05
    assert bad["verdict"]["flagged"]
    assert bad["rows"][-1]["metrics"]["mean_error"]["mean"] == pytest.approx(0.1, abs=0.005)


def test_fields_from_attributes_and_the_command_line(tmp_path, reference, capsys):
    """Step and replicate as file attributes (h5), N from the particle count; the CLI prints the same
    study as JSON with the replicate test per row."""
    case, grid, density = reference
    rng = np.random.default_rng(2)
    for h in STEPS:
        for r in range(3):
            save_samples(tmp_path / f"ens_{h}_{r}.h5", sample_grid_density(grid, density, 500, rng=rng),
                         attrs={"step": h, "replicate": r})
    found = find_ensembles(tmp_path / "ens_*.h5")
    assert sorted((f["step"], f["rep"]) for f in found) == sorted((h, r) for h in STEPS for r in range(3))
    assert all(f["N"] is None for f in found)
    toml = tmp_path / "case.toml"
    toml.write_text('name = "files"\n[grid]\nlower = [-6.0]\nupper = [7.0]\ncells = [520]\n'
                    '[target]\nkind = "gaussian"\nmean = [1.0]\ncov = [[0.5]]\n'
                    '[initial]\nkind = "gaussian"\nmean = [0.0]\ncov = [[1.0]]\n[flow]\nkind = "fokker-planck"\n'
                    f'[time]\nend = 1.0\n[output]\npath = "{tmp_path / "files.h5"}"\n')
    p = argparse.ArgumentParser(prog="gridflow")
    add_parser(p.add_subparsers(dest="verb", required=True))
    args = p.parse_args(["validate", str(toml), "--ensembles", str(tmp_path / "ens_*.h5"), "--json", "-q",
                         "-o", str(tmp_path / "fig.png")])
    assert command(args) == 0
    study = json.loads(capsys.readouterr().out)
    assert study["particles"] == [500] and study["steps"] == [0.02, 0.01]
    assert [r["replicates"] for r in study["rows"]] == [3, 3]
    assert all(0.0 <= r["replicate_test"]["p_value"] <= 1.0 for r in study["rows"])
    args = p.parse_args(["validate", str(toml), "--ensembles", str(tmp_path / "ens_*.h5"), "-q",
                         "-o", str(tmp_path / "fig.png")])
    assert command(args) == 0
    assert "replicate test p" in capsys.readouterr().out


def test_ensemble_pattern_errors(tmp_path, reference):
    case, grid, density = reference
    with pytest.raises(InputError, match="field"):
        find_ensembles(tmp_path / "run_{n}.npz")
    with pytest.raises(InputError, match="No file matches"):
        find_ensembles(tmp_path / "run_N{N}_h{step}.npz")
    x = sample_grid_density(grid, density, 100, rng=1)
    for r in range(2):
        save_samples(tmp_path / f"run_N100_h0.1_r{r}.npz", x)
    save_samples(tmp_path / "run_N100_h0.05_r0.npz", x)
    with pytest.raises(InputError, match="N=100 step=0.05"):
        validate_ensembles(case, str(tmp_path / "run_N{N}_h{step}_r{rep}.npz"))
    save_samples(tmp_path / "x_0.npz", x)
    with pytest.raises(InputError, match="no step"):
        find_ensembles(tmp_path / "x_{rep}.npz")
    for r in "ab":
        save_samples(tmp_path / f"y_N200_h0.1_{r}.npz", x)
    with pytest.raises(InputError, match="name says N = 200"):
        validate_ensembles(case, str(tmp_path / "y_N{N}_h{step}_*.npz"))


def test_python_api_and_the_replicate_test_of_run_study(tmp_path, reference):
    """gridflow.validate(case, ensembles=PATTERN) is validate_ensembles; a sampler study carries the
    replicate test per row (3 replicates: F(1, 2), one interior bin edge), None with a note below 3."""
    import gridflow
    from gridflow.analysis.validation import run_study

    case, grid, density = reference
    rng = np.random.default_rng(3)
    for r in range(3):
        save_samples(tmp_path / f"e_N300_h0.1_r{r}.npz", sample_grid_density(grid, density, 300, rng=rng))
    study = gridflow.validate(case, ensembles=str(tmp_path / "e_N{N}_h{step}_r{rep}.npz"))
    assert study["ensembles"]["files"] == 3 and study["rows"][0]["replicate_test"]["df"] == [1, 2]
    with pytest.raises(InputError, match="either a sampler"):
        gridflow.validate(case)
    three = run_study(case, sampler="ula", particles=[200], steps=[0.1], replicates=3)
    assert 0.0 <= three["rows"][0]["replicate_test"]["p_value"] <= 1.0
    two = run_study(case, sampler="ula", particles=[200], steps=[0.1], replicates=2)
    assert two["rows"][0]["replicate_test"]["p_value"] is None and "at least 3" in two["rows"][0]["replicate_test"]["note"]


def test_gridflow_particle_files_as_ensembles(tmp_path, reference):
    """Particle files written by run_sampler (positions, log_weights; the sampler's step as an attribute):
    the step comes from the attribute, N from the particle count, the frame at the study's time; the
    result is the built-in study's (same distances of the same ensembles)."""
    case, grid, density = reference
    for h in (0.1, 0.05):
        for r in range(3):
            run_sampler(case, sampler="ula", particles=300, step=h, seed=r, times=[0.5, 1.0],
                        output=tmp_path / f"ula_{h}_{r}.h5")
    study = validate_ensembles(case, str(tmp_path / "ula_*_{rep}.h5"), metrics="w2")
    assert study["steps"] == [0.1, 0.05] and study["particles"] == [300]
    for row in study["rows"]:
        w2 = []
        for r in range(3):
            (f,) = run_sampler(case, sampler="ula", particles=300, step=row["step"], seed=r, times=[0.5, 1.0])[1:]
            w2.append(wasserstein_1d(f.positions[:, 0], grid.edges[0], cell_masses(grid, density))[1])
        assert row["raw"]["w2"] == pytest.approx(w2, rel=1e-12)
