"""When a p-value can be trusted (docs/validation.md): replicate tests of resampled ensembles are
calibrated, a single-ensemble test that takes the ESS of the final weights is not (acceptance 2 of the
sampler-validation issue).  Slow: run with ``-m slow``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats

from gridflow.analysis.metrics import compare
from gridflow.analysis.replicates import compare_replicates, mixture_modes
from gridflow.analysis.validation import grid_reference
from gridflow.io.case import parse_case
from gridflow.particles.grid_sampling import cell_masses
from gridflow.particles.model import ParticleModel
from gridflow.particles.samplers import make_sampler

REPETITIONS, R, N = 100, 5, 1000
#: Binomial(100, 0.05) reaches 16 with probability 1e-4: a calibrated test almost never rejects this often
ANTI_CONSERVATIVE = 16

UNIMODAL = {"kind": "gaussian", "mean": [3.0], "cov": [[0.25]]}
#: two modes 8 apart (16 sd of a component): the Langevin moves never carry a particle across
BIMODAL = {"kind": "mixture", "weights": [0.3, 0.7],
           "components": [{"kind": "gaussian", "mean": [-4.0], "cov": [[0.25]]},
                          {"kind": "gaussian", "mean": [4.0], "cov": [[0.25]]}]}


def _case(flow: str, *, reaction: float, end: float, tempering: float | None = None, target: dict = UNIMODAL,
          box: tuple[float, float] = (-6.0, 8.0)) -> dict:
    raw = {"name": "calibration", "grid": {"lower": [box[0]], "upper": [box[1]], "cells": [700]},
           "target": target, "initial": {"kind": "gaussian", "mean": [0.0], "cov": [[1.0]]},
           "flow": {"kind": flow, "diffusion": 1.0, "reaction": reaction}, "time": {"end": end}}
    if tempering:
        raw["tempering"] = {"schedule": {"kind": "linear", "duration": tempering}}
    return parse_case(raw)


@dataclass
class Repetitions:
    """REPETITIONS x R independent final ensembles of one sampler setting."""

    grid: object
    density: np.ndarray
    single: np.ndarray          # single-ensemble p-value (compare's, KS with the ESS of the weights) of the first run of each repetition
    replicate: np.ndarray       # replicate-test p-value of each repetition
    runs: list                  # all REPETITIONS * R ensembles (x, weights)
    resampled: float            # mean number of resampling events per run
    mode_z: np.ndarray | None = None        # single-ensemble z of the first mode's mass (binomial with the ESS)
    mode_masses: np.ndarray | None = None   # first mode's mass in every run
    mode_replicate: np.ndarray | None = None  # replicate t-test p-value of the first mode's mass


def _repetitions(case, sampler: str, step: float, **options) -> Repetitions:
    """Run REPETITIONS x R independent ensembles of ``sampler`` to the case's end time and test them
    as ``gridflow compare`` does (default metrics; mode masses when the target is a mixture)."""
    model = ParticleModel.from_case(case)
    end = case["time"]["end"]
    grid, density, _ = grid_reference(case, end)
    modes = mixture_modes(case["target"], grid)
    single, replicate, everything, resampled, z, masses, mode_rep = [], [], [], [], [], [], []
    for k in range(REPETITIONS):
        ensembles = []
        for r in range(R):
            (f,) = make_sampler(sampler, model, step=step, **options).run(
                particles=N, times=[end], rng=np.random.SeedSequence([k, r]))
            ensembles.append((f.positions, f.weights))
            resampled.append(f.resampled)
        one = compare(grid, density, *ensembles[0], modes=modes, metrics="default")
        single.append(one["p_value"])
        rep = compare_replicates(grid, density, ensembles, modes=modes)
        replicate.append(rep["p_value"])
        if modes is not None:
            z.append(one["mode_masses"][0]["z"])
            masses += [modes.particle_masses(x, w)[0] for x, w in ensembles]
            mode_rep.append(rep["mode_masses"][0]["p_value"])
        everything += ensembles
    out = Repetitions(grid, density, np.array(single), np.array(replicate), everything, float(np.mean(resampled)))
    if modes is not None:
        out.mode_z, out.mode_masses, out.mode_replicate = np.array(z), np.array(masses), np.array(mode_rep)
    return out


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
    res = _repetitions(case, "smc-wfr", 0.005)
    single, replicate = res.single, res.replicate
    print(f"smc-wfr h=0.005: {res.resampled:.2f} resamplings per run; single p < 0.05 in {np.sum(single < 0.05)}/100, "
          f"replicate p < 0.05 in {np.sum(replicate < 0.05)}/100, KS of replicate p "
          f"{stats.kstest(replicate, 'uniform').pvalue:.3g}")
    assert res.resampled >= 1.0
    assert stats.kstest(replicate, "uniform").pvalue > 0.01
    pooled = compare_replicates(res.grid, res.density, res.runs, bins=3)
    print(f"pooled over {len(res.runs)} runs: p {pooled['p_value']:.3g}, bin means {pooled['bins'][0]['mean']}")
    assert pooled["p_value"] > 1e-3
    assert np.sum(single < 0.05) <= 10
    coarse = _repetitions(case, "smc-wfr", 0.02)
    p_coarse = compare_replicates(coarse.grid, coarse.density, coarse.runs, bins=3)["p_value"]
    print(f"pooled at h = 0.02: p {p_coarse:.3g}")
    assert p_coarse < 1e-3


@pytest.mark.slow
def test_smc_wfr_resampling_every_step_between_separated_modes_is_anti_conservative():
    """SMC-WFR resampling at every step (``threshold = 1``) on two modes 8 apart (0.3 N(-4, 1/4) +
    0.7 N(4, 1/4) from N(0, 1), untempered WFR, a = 1, b = 0.3, t = 2, N = 1000, h = 0.0025).

    Every step's systematic resampling turns the small Fisher–Rao reweighting into births and deaths
    that move mass between the modes at random; the Langevin moves cannot carry it back across, and the
    Fisher–Rao balancing removes it only at rate b.  So the mode masses spread more than binomially
    (asserted: between-run sd > 1.2 x the binomial sd — the sample sd of 500 runs has a relative
    standard error of 0.03, so an iid ensemble gives about 1 +- 0.03), while the final weights are
    uniform (ESS = N).  The single-ensemble tests of ``compare`` (KS with the ESS; mode-mass z with the
    binomial error) then reject at 0.05 in >= 16 of 100 runs (Binomial(100, 0.05) reaches 16 with
    probability 1e-4); the mode-mass count agrees with 2 Phi(-1.96 / spread) within 3 binomial sd.
    The replicate tests (Hotelling and the mode-mass t-test, R = 5) stay uniform (KS at 1%).

    The step's bias is below what the replicate test resolves: pooled over all 500 runs (100 times the
    evidence, 8 bins) it is not resolved at 1e-3 and the mean mode mass is within 3 standard errors of
    the grid's, while at h = 0.02 the same pooled test resolves it (p < 1e-3): the pooled check can see
    an O(h) bias."""
    case = _case("wfr", reaction=0.3, end=2.0, target=BIMODAL, box=(-7.0, 7.0))
    res = _repetitions(case, "smc-wfr", 0.0025, threshold=1.0)
    modes = mixture_modes(case["target"], res.grid)
    g = float(modes.grid_masses(cell_masses(res.grid, res.density))[0])
    binomial = math.sqrt(g * (1 - g) / N)
    spread = float(np.std(res.mode_masses, ddof=1)) / binomial
    single, z = int(np.sum(res.single < 0.05)), int(np.sum(np.abs(res.mode_z) > stats.norm.ppf(0.975)))
    print(f"smc-wfr threshold=1 h=0.0025: {res.resampled:.0f} resamplings per run; mode mass {np.mean(res.mode_masses):.4f} "
          f"(grid {g:.4f}), spread {spread:.3f} x binomial; single KS p < 0.05 in {single}/100, mode |z| > 1.96 in "
          f"{z}/100; replicate p < 0.05 in {np.sum(res.replicate < 0.05)}/100, KS of replicate p "
          f"{stats.kstest(res.replicate, 'uniform').pvalue:.3g}, of mode t-test p "
          f"{stats.kstest(res.mode_replicate, 'uniform').pvalue:.3g}")
    assert spread > 1.2
    assert single >= ANTI_CONSERVATIVE and z >= ANTI_CONSERVATIVE
    expected = 2 * stats.norm.sf(stats.norm.ppf(0.975) / spread)
    assert abs(z - REPETITIONS * expected) <= 3 * math.sqrt(REPETITIONS * expected * (1 - expected))
    assert stats.kstest(res.replicate, "uniform").pvalue > 0.01
    assert stats.kstest(res.mode_replicate, "uniform").pvalue > 0.01
    pooled = compare_replicates(res.grid, res.density, res.runs, bins=8)
    se = float(np.std(res.mode_masses, ddof=1)) / math.sqrt(res.mode_masses.size)
    print(f"pooled over {len(res.runs)} runs: p {pooled['p_value']:.3g}, bin t {np.round(pooled['bins'][0]['t'], 2)}, "
          f"mode mass off by {(np.mean(res.mode_masses) - g) / se:.2f} se")
    assert pooled["p_value"] > 1e-3
    assert abs(np.mean(res.mode_masses) - g) < 3 * se
    coarse = _repetitions(case, "smc-wfr", 0.02, threshold=1.0)
    p_coarse = compare_replicates(coarse.grid, coarse.density, coarse.runs, bins=8)["p_value"]
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
    res = _repetitions(case, "fr-smc", 0.05, moves=0)
    single, replicate = res.single, res.replicate
    print(f"fr-smc moves=0: {res.resampled:.2f} resamplings per run; single p < 0.05 in {np.sum(single < 0.05)}/100, "
          f"replicate p < 0.05 in {np.sum(replicate < 0.05)}/100, KS of replicate p "
          f"{stats.kstest(replicate, 'uniform').pvalue:.3g}")
    assert np.sum(single < 0.05) >= ANTI_CONSERVATIVE
    assert stats.kstest(replicate, "uniform").pvalue > 0.01
