"""Densities the grid cannot represent, and schedules that leave [0, 1], are refused (exit 2)
before anything claims to be complete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gridflow.cli import main
from gridflow.errors import DensityError
from gridflow.core.problem import Problem
from gridflow.core.resolution import MIN_STD_PER_CELL
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
        from gridflow.io.trajectory import trajectory_attrs

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


# --------------------------------------------------------------------------- cell Péclet number

def _peclet_case(*, cells: int, target_var: float, flux: str | None = None, flow: str = "fokker-planck",
                 schedule=None, initial_var: float = 4.0, length: float = 10.0) -> dict:
    """The initial density N(0, 4) puts mass >= 1e-12 in every cell of [-10, 10] (7e-8 in the outermost at
    h = 0.1; below the box-edge warning), so every edge counts
    for the Peclet number; a tempered case has the reference N(0, 1)."""
    case = make_case(lower=[-length], upper=[length], cells=[cells], flow=flow,
                     initial=gaussian([0.0], [[initial_var]]), target=gaussian([0.0], [[target_var]]),
                     schedule=schedule)
    if schedule is not None:
        case["tempering"]["reference"] = gaussian([0.0], [[1.0]])
    if flux is not None:
        case["flow"]["flux"] = flux
    return case


def _quiet_problem(case) -> Problem:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Problem.from_case(case)


@pytest.mark.parametrize("cells,var", [(200, 1.0), (400, 0.5), (50, 2.0)])
def test_max_cell_peclet_of_a_gaussian_target_is_h_times_the_last_edge_over_the_variance(cells, var):
    """log pi = -x^2/(2 var): across the edge at x_e, |Delta log pi| = h |x_e| / var exactly (the centres
    are x_e -+ h/2); the outermost interior edge is at |x_e| = L - h."""
    length = 10.0
    h = 2 * length / cells
    problem = _quiet_problem(_peclet_case(cells=cells, target_var=var, length=length))
    assert problem.max_cell_peclet == pytest.approx(h * (length - h) / var, rel=1e-9)


def test_peclet_covers_the_lambda_range_of_the_schedule():
    """Tempered from N(0, 1) to N(0, 1/4): a linear schedule reaches lambda = 1 (Pe of the target, 4x
    that of the reference); a constant lambda = 1/2 gives log pi = -(1 + 4) x^2 / 4, Pe 2.5 h (L - h)."""
    length, cells = 10.0, 400
    h = 2 * length / cells
    base = h * (length - h)
    linear = _quiet_problem(_peclet_case(cells=cells, target_var=0.25, flow="wfr",
                                         schedule={"kind": "linear", "duration": 1.0}))
    assert linear.max_cell_peclet == pytest.approx(4 * base, rel=1e-9)
    half = _quiet_problem(_peclet_case(cells=cells, target_var=0.25, flow="wfr",
                                       schedule={"kind": "constant", "value": 0.5}))
    assert half.max_cell_peclet == pytest.approx(2.5 * base, rel=1e-9)
    # a flow without transport has no Péclet number
    assert _quiet_problem(_peclet_case(cells=cells, target_var=0.25, flow="fisher-rao")).max_cell_peclet is None


def test_peclet_warning_names_the_cell_width_and_the_log_mean_flux():
    from gridflow.errors import PecletWarning
    from gridflow.core.resolution import MAX_CELL_PECLET, PECLET_MARGIN

    length, cells, var = 10.0, 200, 0.25        # h = 0.1, Pe = 0.1 * 9.9 / 0.25 = 3.96
    h = 2 * length / cells
    peclet = h * (length - h) / var
    assert peclet > MAX_CELL_PECLET
    with pytest.warns(PecletWarning) as record:
        problem = Problem.from_case(_peclet_case(cells=cells, target_var=var))
    message = str(next(r for r in record if issubclass(r.category, PecletWarning)).message)
    cells_needed = int(np.ceil(2 * length / (PECLET_MARGIN * h * MAX_CELL_PECLET / peclet)))
    assert cells_needed == 440      # 20 / (0.9 * 0.1 * 2 / 3.96)
    assert f"{peclet:.3g}" in message and f"{2 * length / cells_needed:.3g} along x" in message
    assert f"({cells_needed} cells)" in message and 'flow.flux = "log-mean"' in message
    assert "\n" not in message and message in problem.warnings
    # the suggested cells do bring the number under the threshold
    finer = _quiet_problem(_peclet_case(cells=cells_needed, target_var=var))
    assert finer.max_cell_peclet <= MAX_CELL_PECLET
    # no warning with the log-mean flux, nor under the threshold; the number is still recorded
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", PecletWarning)
        lm = Problem.from_case(_peclet_case(cells=cells, target_var=var, flux="log-mean"))
        assert lm.max_cell_peclet == pytest.approx(peclet, rel=1e-9) and not lm.warnings
        low = Problem.from_case(_peclet_case(cells=cells, target_var=1.0))
        assert low.max_cell_peclet == pytest.approx(peclet * var, rel=1e-9) and not low.warnings


def test_peclet_is_stored_in_the_file_and_shown_by_info(tmp_path, capsys):
    path = tmp_path / "case.toml"
    path.write_text(CASE.format(lo=-10.0, hi=10.0, cells=200, target='kind = "gaussian"\nmean = [0.0]\ncov = [[0.25]]',
                                initial=N01.replace("[[1.0]]", "[[4.0]]"), tempering="", save=1.0)
                    .replace('kind = "wfr"', 'kind = "fokker-planck"')
                    .replace("end = 2.0", "end = 0.01").replace("save_every = 1.0", "save_every = 0.01"))
    out = tmp_path / "out.h5"
    from gridflow.cli.entry import _format_warning
    from gridflow.errors import PecletWarning

    with pytest.warns(PecletWarning) as record:
        assert main(["run", str(path), "-o", str(out), "-q"]) == 0
    assert len(record) == 1
    line = _format_warning(record[0].message, PecletWarning, "x.py", 1)
    assert line.startswith("gridflow: warning: the cell Peclet number h|grad log pi| reaches 3.96")
    assert line.count("\n") == 1
    from gridflow.io.trajectory import trajectory_attrs

    attrs = trajectory_attrs(out)
    assert float(attrs["max_cell_peclet"]) == pytest.approx(0.1 * 9.9 / 0.25, rel=1e-9)
    assert "Peclet" in attrs["warnings"]
    assert main(["info", str(out)]) == 0
    assert "peclet:    3.96" in capsys.readouterr().out


def test_peclet_counts_only_edges_where_some_density_lives():
    """With the initial density N(0, 1) as well, the cells beyond |x| ~ 7 hold less than 1e-12 of every
    density: the outermost counted edge is the outer edge of the outermost cell whose exact mass
    (by the normal CDF) reaches 1e-12."""
    from scipy.stats import norm

    from gridflow.core.resolution import PECLET_MASS

    length, cells, var = 10.0, 200, 1.0
    h = 2 * length / cells
    problem = _quiet_problem(_peclet_case(cells=cells, target_var=var, initial_var=1.0))
    edges = np.linspace(-length, length, cells + 1)
    mass = np.diff(norm.cdf(edges))
    occupied = np.flatnonzero(mass >= PECLET_MASS)
    outer = min(edges[occupied[-1] + 1], length - h)          # outer edge of the outermost occupied cell
    assert outer < length - h                                 # the mask does cut the box
    assert problem.max_cell_peclet == pytest.approx(h * outer / var, rel=1e-9)
