"""``gridflow run``: solve a case and write its trajectory file."""

from __future__ import annotations

import sys
from pathlib import Path

from gridflow.cli.arguments import check_output_path


def add_parser(sub) -> None:
    """Register ``gridflow run`` on the verbs' subparsers."""
    run = sub.add_parser("run", help="solve a case and write its trajectory file")
    run.add_argument("case", help="case file (TOML)")
    run.add_argument("-o", "--output", help="trajectory file to write (default: [output] path of the case)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a case key, VALUE in TOML syntax (repeatable), e.g. --set grid.cells=[4096]")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.add_argument("--resume", action="store_true",
                     help="continue an interrupted run of the same case from the last frame of its file")
    run.add_argument("--error-estimate", action="store_true",
                     help="also solve on a grid 3 times coarser per axis (cells divisible by 3) and store the "
                          "Richardson estimate of the L1 error per saved time (error_estimate); same as "
                          "--set output.error_estimate=true")


def command(args) -> int:
    from gridflow.io.case import check_memory, load_case
    from gridflow.io.runner import run

    overrides = list(args.overrides) + (["output.error_estimate=true"] if args.error_estimate else [])
    case = load_case(args.case, overrides=overrides)
    target = Path(args.output if args.output is not None else case["output"]["path"])
    check_output_path(target, inputs=[args.case], what="trajectory file")
    check_memory(case)
    progress = not args.quiet and sys.stderr.isatty()
    done_before = False
    if args.resume:
        from gridflow.io.trajectory import trajectory_attrs

        done_before = target.exists() and trajectory_attrs(target).get("status") == "complete"
    path = run(case, output=args.output, progress=progress, resume=args.resume)
    if done_before:
        print(f"{path} is already complete: nothing to resume", file=sys.stderr)
    else:
        print(f"wrote {path}", file=sys.stderr)
    return 0
