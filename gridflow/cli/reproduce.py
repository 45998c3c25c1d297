"""``gridflow reproduce``: regenerate the numbers, figures and verdicts of a paper's claims."""

from __future__ import annotations

import sys
from pathlib import Path

from gridflow.errors import InputError


def add_parser(sub) -> None:
    """Register ``gridflow reproduce`` on the verbs' subparsers."""
    from gridflow.reproduce import REPRODUCTIONS

    rep = sub.add_parser("reproduce", help="regenerate the numbers and figures of a published claim",
                         description="Reproduce a paper's claims on the grid: " + ", ".join(REPRODUCTIONS) + ".")
    rep.add_argument("name", choices=[*REPRODUCTIONS, "all"], help="which reproduction ('all' runs each)")
    rep.add_argument("-o", "--output", default="outputs/reproduce",
                     help="directory; each reproduction writes into a subdirectory named after it")
    rep.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    rep.add_argument("--publish", metavar="DOCS", default=None,
                     help="also copy the report and figures into DOCS (e.g. docs) as reproductions-NAME.md "
                          "and figures/NAME/")


def command(args) -> int:
    import time

    from gridflow.reproduce import REPRODUCTIONS, publish, reproduce

    if "\0" in args.output or (args.publish and "\0" in args.publish):
        raise InputError("The output directory contains a NUL byte; give a plain directory name.")
    names = list(REPRODUCTIONS) if args.name == "all" else [args.name]
    for name in names:
        start = time.monotonic()
        out = Path(args.output) / name
        report = reproduce(name, out, progress=not args.quiet and sys.stderr.isatty())
        print(f"wrote {report} ({time.monotonic() - start:.0f} s)", file=sys.stderr)
        if args.publish:
            print(f"wrote {publish(name, out, args.publish)}", file=sys.stderr)
    return 0
