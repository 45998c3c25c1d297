"""When a p-value can be trusted (docs/validation.md): replicate tests of resampled ensembles are
calibrated, a single-ensemble test that takes the ESS of the final weights is not (acceptance 2 of the
sampler-validation issue).  Slow: run with ``-m slow``."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gridflow.analysis.metrics import compare
from gridflow.analysis.replicates import compare_replicates
from gridflow.analysis.validation import grid_reference
from gridflow.io.case import parse_case
from gridflow.particles.model import ParticleModel
from gridflow.particles.samplers import make_sampler

REPETITIONS, R, N = 100, 5, 1000


def _case(flow: str, *, reaction: float, end: float, tempering: float | None = None) -> dict:
    raw = {"name": "calibration", "grid": {"lower": [-6.0], "upper": [8.0], "cells": [700]},
           "target": {"kind": "gaussian", "mean": [3.0], "cov": [[0.25]]},
           "initial": {"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]},
           "flow": {"kind": flow, "diffusion": 1.0, "reaction": reaction}, "time": {"end": end}}
    if tempering:
        raw["tempering"] = {"schedule": {"kind": "linear", "duration": tempering}}
    return parse_case(raw)


def _repetitions(case, sampler: str, step: float, **options):
    """REPETITIONS x R independent final ensembles: the single-ensemble p-value of the first of each
    repetition (KS with the ESS of its weights), the replicate p-value of each repetition, all the
    ensembles, and the mean number of resampling events per run."""
    model = ParticleModel.from_case(case)
    end = case["time"]["end"]
    grid, density, _ = grid_reference(case, end)
    single, replicate, everything, resampled = [], [], [], []
    for k in range(REPETITIONS):
        ensembles = []
        for r in range(R):
            (f,) = make_sampler(sampler, model, step=step, **options).run(
                particles=N, times=[end], rng=np.random.SeedSequence([k, r]))
            ensembles.append((f.positions, f.weights))
            resampled.append(f.resampled)
        single.append(compare(grid, density, *ensembles[0], metrics=["ks"])["p_value"])
        replicate.append(compare_replicates(grid, density, ensembles)["p_value"])
        everything += ensembles
    return grid, density, np.array(single), np.array(replicate), everything, float(np.mean(resampled))


@pytest.mark.slow
def test_smc_wfr_replicate_p_values_are_uniform():
    """SMC-WFR (Langevin move, Fisher–Rao reweighting, resampling at ESS < N/2) on a tempered WFR
    case, N = 1000, h = 0.005: the 100 replicate-test p-values (R = 5 runs each) pass a KS test of
    uniformity at 1%.  The step's bias is far below the test's noise: pooling all 500 runs into one
    replicate test (100 times the evidence, 3 bins) does not resolve it at 1e-3 at h = 0.005, while it
    does at h = 0.02 (the bias shrinks with the step).  The single-ensemble test (KS with the ESS of
    the final weights) is not anti-conservative for this sampler: the Fisher–Rao weights computed
    from the ensemble's own kernel density balance it (at most 10 of 100 below 0.05; Binomial(100,
    0.05) exceeds 10 with probability 0.011)."""
    case = _case("wfr", reaction=3.0, end=1.0, tempering=1.0)
    grid, density, single, replicate, runs, resampled = _repetitions(case, "smc-wfr", 0.005)
    print(f"smc-wfr h=0.005: {resampled:.2f} resamplings per run; single p < 0.05 in {np.sum(single < 0.05)}/100, "
          f"replicate p < 0.05 in {np.sum(replicate < 0.05)}/100, KS of replicate p "
          f"{stats.kstest(replicate, 'uniform').pvalue:.3g}")
    assert resampled >= 1.0
    assert stats.kstest(replicate, "uniform").pvalue > 0.01
    pooled = compare_replicates(grid, density, runs, bins=3)
    print(f"pooled over {len(runs)} runs: p {pooled['p_value']:.3g}, bin means {pooled['bins'][0]['mean']}")
    assert pooled["p_value"] > 1e-3
    assert np.sum(single < 0.05) <= 10
    *_, coarse, _ = _repetitions(case, "smc-wfr", 0.02)
    p_coarse = compare_replicates(grid, density, coarse, bins=3)["p_value"]
    print(f"pooled at h = 0.02: p {p_coarse:.3g}")
    assert p_coarse < 1e-3


@pytest.mark.slow
def test_resampled_smc_single_test_is_anti_conservative():
    """Tempering SMC along the exact Fisher–Rao path, resampled at ESS < N/2 without rejuvenation moves
    (moves = 0: resampled particles stay copies; no time error, so the grid frame is the law of every
    particle): the single-ensemble test takes the ESS of the final weights (about N) and rejects at
    0.05 in far more than 5% of 100 runs (asserted > 15: Binomial(100, 0.05) reaches 16 with
    probability 1e-4), while the replicate test's p-values stay uniform (KS at 1%)."""
    case = _case("fisher-rao", reaction=1.0, end=2.0)
    _, _, single, replicate, _, resampled = _repetitions(case, "fr-smc", 0.05, moves=0)
    print(f"fr-smc moves=0: {resampled:.2f} resamplings per run; single p < 0.05 in {np.sum(single < 0.05)}/100, "
          f"replicate p < 0.05 in {np.sum(replicate < 0.05)}/100, KS of replicate p "
          f"{stats.kstest(replicate, 'uniform').pvalue:.3g}")
    assert np.sum(single < 0.05) > 15
    assert stats.kstest(replicate, "uniform").pvalue > 0.01
