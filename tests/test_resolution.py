"""Densities the grid cannot represent, and schedules that leave [0, 1], are refused (exit 2)
before anything claims to be complete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gridflow.cli import main
from gridflow.errors import DensityError
from gridflow.problem import Problem
from gridflow.resolution import MIN_STD_PER_CELL
from tests.reference import gaussian, make_case

CASE = """
name = "bad"
[grid]
lower = [{lo}]
upper = [{hi}]
cells = [{cells}]
[target]
{target}
[initial]
{initial}
{tempering}
[flow]
kind = "wfr"
[time]
end = 2.0
save_every = {save}
"""
N01 = 'kind = "gaussian"\nmean = [0.0]\ncov = [[1.0]]'


def _case(tmp_path: Path, *, lo=-5.0, hi=5.0, cells=1000, target=N01, initial=N01, tempering="", save=0.5) -> Path:
    path = tmp_path / "case.toml"
    path.write_text(CASE.format(lo=lo, hi=hi, cells=cells, target=target, initial=initial, tempering=tempering,
                                save=save))
    return path


BAD = {
    "target-cov-1e-20": dict(target='kind = "gaussian"\nmean = [0.3]\ncov = [[1e-20]]'),
    "initial-cov-1e-300": dict(initial='kind = "gaussian"\nmean = [0.0]\ncov = [[1e-300]]'),
    "initial-mean-1e6": dict(initial='kind = "gaussian"\nmean = [1e6]\ncov = [[1.0]]'),
    "target-outside-box": dict(target='kind = "gaussian"\nmean = [9.0]\ncov = [[1.0]]'),
    "expression-spike": dict(initial='kind = "expression"\nlog_density = "-x**2/1e-12"'),
    "mixture-component-too-narrow": dict(target='kind = "mixture"\nweights = [0.5, 0.5]\ncomponents = ['
                                               '{ kind = "gaussian", mean = [0.0], cov = [[1.0]] }, '
                                               '{ kind = "gaussian", mean = [2.0], cov = [[1e-8]] }]'),
    # lambda = t/2 plus a spike to 1.1 exactly at the save time t = 1 (between the points a range
    # check on a fine grid of times would see)
    "spiked-schedule": dict(tempering='[tempering]\nschedule = { kind = "expression", lambda = '
                                      '"minimum(t/2, 1) + 0.6*exp(-((t - 1.0)/1e-7)**2)" }', save=0.5),
}


@pytest.mark.parametrize("name", list(BAD))
def test_unrepresentable_input_is_exit_2_and_never_complete(tmp_path, capsys, name):
    out = tmp_path / "out.h5"
    status = main(["run", str(_case(tmp_path, **BAD[name])), "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("gridflow: error: ") and err.count("\n") == 1 and "Traceback" not in err
    if out.exists():   # a run that failed mid-way may leave its frames, never a "complete" file
        from gridflow.trajectory import trajectory_attrs

        assert trajectory_attrs(out)["status"] != "complete"


def test_messages_name_the_distribution_and_the_fix(tmp_path):
    def message(**kw) -> str:
        case = make_case(lower=[-5.0], upper=[5.0], cells=[1000], flow="wfr", initial=gaussian([0.0], [[1.0]]),
                         target=gaussian([0.0], [[1.0]]))
        case.update(kw)
        with pytest.raises(DensityError) as info:
            Problem.from_case(case)
        return str(info.value)

    text = message(target=gaussian([0.3], [[1e-20]]))
    assert "target" in text and "standard deviation 1e-10" in text and "0.01 wide" in text and "Refine" in text
    text = message(initial=gaussian([1e6], [[1.0]]))
    assert "initial density" in text and "holds only 0 of the mass" in text and "enlarge the box" in text
    text = message(initial={"kind": "expression", "log_density": "-x**2/1e-12"})
    assert "initial density" in text and "not resolved by the grid" in text


@pytest.mark.parametrize("kind", ["gaussian", "expression"])
@pytest.mark.parametrize("centre", [0.0, 0.005, 0.0025])
def test_the_resolution_threshold_is_where_the_midpoint_rule_breaks_down(kind, centre):
    """A Gaussian table of standard deviation MIN_STD_PER_CELL cells is accepted, and its midpoint
    mass is then right to 2 % wherever it sits in a cell; at a quarter of a cell it is refused.  A
    formula is refused exactly when its midpoint mass is off by more than 2 % (which, for a Gaussian
    of a quarter cell, depends on where it sits: at a quarter-cell offset the midpoint rule is still
    right to 1.5 %)."""
    from scipy.special import logsumexp

    h = 0.01
    x = np.linspace(-5.0, 5.0, 1001)[:-1] + 0.5 * h
    for std_cells in (MIN_STD_PER_CELL, 0.25):
        std = std_cells * h
        raw = -0.5 * ((x - centre) / std) ** 2 - np.log(np.sqrt(2 * np.pi) * std)
        midpoint_error = abs(np.exp(logsumexp(raw)) * h - 1.0)    # the exact mass is 1
        if kind == "gaussian":
            target = gaussian([centre], [[std * std]])
            ok = std_cells >= MIN_STD_PER_CELL
        else:
            target = {"kind": "expression", "log_density": f"-0.5*((x - {centre!r})/{std!r})**2"}
            ok = midpoint_error <= 0.02
        case = make_case(lower=[-5.0], upper=[5.0], cells=[1000], flow="fisher-rao",
                         initial=gaussian([0.0], [[1.0]]), target=target)
        if ok:
            Problem.from_case(case)
            assert midpoint_error <= 0.02
        else:
            with pytest.raises(DensityError):
                Problem.from_case(case)


def test_zero_initial_density_is_refused_with_the_right_reason():
    case = make_case(lower=[-5.0], upper=[5.0], cells=[100], flow="fokker-planck",
                     initial={"kind": "expression", "log_density": "where(abs(x) < 1, 0, log(0*x))"},
                     target=gaussian([0.0], [[1.0]]))
    with pytest.raises(DensityError) as info:
        Problem.from_case(case)
    text = str(info.value)
    assert "initial density is zero on some cells" in text and "tempering reference" not in text.split(".")[0]
