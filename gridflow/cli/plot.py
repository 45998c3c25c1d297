"""``gridflow plot``: density snapshots and diagnostics of a trajectory (and an animated GIF)."""

from __future__ import annotations

import sys
from pathlib import Path

from gridflow.cli.arguments import check_output_path, printable
from gridflow.errors import InputError


def add_parser(sub) -> None:
    """Register ``gridflow plot`` on the verbs' subparsers."""
    plot = sub.add_parser("plot", help="plot density snapshots and diagnostics")
    plot.add_argument("file", help="trajectory file (.h5)")
    plot.add_argument("-o", "--output", help="figure file (default: next to the trajectory, .png)")
    plot.add_argument("--animate", metavar="OUT.gif", help="also render the evolution as an animated GIF")


def command(args) -> int:
    from gridflow.analysis.plot import animate_trajectory, check_figure_path, plot_trajectory
    from gridflow.io.trajectory import open_trajectory

    out = Path(args.output) if args.output else Path(args.file).with_suffix(".png")
    check_output_path(out, inputs=[args.file], what="figure file")
    check_figure_path(out)
    if args.animate:
        if not args.animate.lower().endswith(".gif"):
            raise InputError(f"The animation file {args.animate!r} must end in .gif (it is written as an animated GIF).")
        check_output_path(args.animate, inputs=[args.file, out], what="animation file")
    tr = open_trajectory(args.file)
    try:
        plot_trajectory(tr, out)
    except OSError as exc:
        raise InputError(f"Cannot write the figure {out} ({exc}); choose a writable path with -o.") from exc
    print(f"wrote {printable(out)}", file=sys.stderr)
    if args.animate:
        frames = animate_trajectory(tr, args.animate)
        print(f"wrote {printable(args.animate)} ({frames} frames)", file=sys.stderr)
    return 0
