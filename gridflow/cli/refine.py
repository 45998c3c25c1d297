"""``gridflow refine``: solve a case on K grids (ratio 3 per axis) and estimate the error of the finest."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    """Register ``gridflow refine`` on the verbs' subparsers."""
    ref = sub.add_parser(
        "refine", help="estimate a case's L1 error per saved time from coarser grids (Richardson, ratio 3)",
        description="Solve the case on its grid and on grids 3, 9, ... times coarser per axis (in memory: no "
                    "file is written), and print per saved time the L1 differences between consecutive levels at "
                    "their common cell centres, the observed order (3 or more levels) and the Richardson estimate "
                    "of the L1 error of the case's grid. The cells must be divisible by 3^(levels-1).")
    ref.add_argument("case", help="case file (TOML)")
    ref.add_argument("--levels", default="2", help="number of grids, >= 2 (default 2; 3 also measures the order)")
    ref.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a case key, VALUE in TOML syntax (repeatable)")
    ref.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _levels(text: str) -> int:
    from gridflow.errors import InputError

    try:
        levels = int(text)
    except ValueError:
        levels = 0
    if not 2 <= levels <= 6:
        raise InputError(f"--levels must be an integer from 2 to 6 (the number of grids, each 3 times coarser per "
                         f"axis), got {text!r}.")
    return levels


def _num(v: float) -> str:
    return "-" if v != v else f"{v:.3e}"


def command(args) -> int:
    import json

    from gridflow.analysis.refinement import TIGHTER, refine
    from gridflow.io.case import check_memory, load_case

    levels = _levels(args.levels)
    case = load_case(args.case, overrides=args.overrides)
    check_memory(case)
    result = refine(case, levels)
    if args.json:
        print(json.dumps(result.as_dict()))
        return 0
    cells = "  ".join(" x ".join(map(str, c)) for c in result.cells)
    print(f"levels (cells): {cells}; tolerance {result.tolerance:.3g} on the finest, "
          f"{result.tolerance / TIGHTER:.3g} on the coarser")
    diff_names = [f"|d{k}{k + 1}|" for k in range(levels - 1)]
    print(f"{'time':>10}  " + "  ".join(f"{n:>10}" for n in diff_names) + f"  {'order':>6}  {'estimate':>10}")
    for i, t in enumerate(result.times):
        order = "-" if result.order[i] != result.order[i] else f"{result.order[i]:.2f}"
        print(f"{t:>10.4g}  " + "  ".join(f"{_num(d):>10}" for d in result.differences[:, i])
              + f"  {order:>6}  {_num(result.estimate[i]):>10}")
    sys.stdout.flush()
    print(f"max estimated L1 error of the finest grid: {_num(float(result.estimate.max()))}", file=sys.stderr)
    return 0
