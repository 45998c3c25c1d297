"""The ``gridflow`` command line (``python -m gridflow`` is the same)."""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Sequence

from gridflow._version import __version__
from gridflow.errors import GridflowError, InputError

_default_format_warning = warnings.formatwarning


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gridflow", description=(
        "Exact grid solutions of the Fokker-Planck, Fisher-Rao and Wasserstein-Fisher-Rao flows "
        "(with geometric tempering), for validating particle samplers."))
    p.add_argument("--version", action="version", version=f"gridflow {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    run = sub.add_parser("run", help="solve a case and write its trajectory file")
    run.add_argument("case", help="case file (TOML)")
    run.add_argument("-o", "--output", help="trajectory file to write (default: [output] path of the case)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a case key, VALUE in TOML syntax (repeatable), e.g. --set grid.cells=[4096]")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.add_argument("--resume", action="store_true",
                     help="continue an interrupted run of the same case from the last frame of its file")

    info = sub.add_parser("info", help="summarise a trajectory file")
    info.add_argument("file", help="trajectory file (.h5)")

    sample = sub.add_parser("sample", help="exact iid samples of a saved frame (a ground-truth data set)")
    sample.add_argument("file", help="trajectory file (.h5)")
    sample.add_argument("--time", type=float, required=True, help="a saved time")
    sample.add_argument("-n", type=int, required=True, help="number of samples")
    sample.add_argument("--seed", type=int, default=None, help="random seed (reproducible output)")
    sample.add_argument("-o", "--output", required=True, help="samples file (.npz or .h5)")

    cmp_ = sub.add_parser("compare", help="compare a particle ensemble with a saved frame")
    cmp_.add_argument("file", help="trajectory file (.h5)")
    cmp_.add_argument("samples", help="samples: .npy (N x d), .npz or .h5 (`samples`, optional `weights`)")
    cmp_.add_argument("--time", type=float, required=True, help="a saved time")
    cmp_.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    cmp_.add_argument("--bootstrap", type=int, default=0, help="parametric bootstrap replicates for the p-value")
    cmp_.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and MMD subsampling")

    plot = sub.add_parser("plot", help="plot density snapshots and diagnostics")
    plot.add_argument("file", help="trajectory file (.h5)")
    plot.add_argument("-o", "--output", help="figure file (default: next to the trajectory, .png)")
    plot.add_argument("--animate", metavar="OUT.gif", help="also render the evolution as an animated GIF")

    from gridflow.validation import add_parser as add_validate_parser

    add_validate_parser(sub)

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
    return p


def _cmd_run(args) -> int:
    from gridflow.case import load_case
    from gridflow.runner import run

    case = load_case(args.case, overrides=args.overrides)
    progress = not args.quiet and sys.stderr.isatty()
    done_before = False
    if args.resume:
        from pathlib import Path

        from gridflow.trajectory import trajectory_attrs

        target = Path(args.output if args.output is not None else case["output"]["path"])
        done_before = target.exists() and trajectory_attrs(target).get("status") == "complete"
    path = run(case, output=args.output, progress=progress, resume=args.resume)
    if done_before:
        print(f"{path} is already complete: nothing to resume", file=sys.stderr)
    else:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _cmd_info(args) -> int:
    from gridflow.trajectory import open_trajectory

    tr = open_trajectory(args.file)
    print(summary(tr))
    return 0


def summary(tr) -> str:
    """A short human-readable summary of a trajectory."""
    g = tr.grid
    case = tr.case
    lines = [
        f"file:      {tr.path}",
        f"case:      {case.get('name', '')}" + (f" ({case['description']})" if case.get("description") else ""),
        f"status:    {tr.status}",
        f"flow:      {tr.attrs.get('flow', '?')}",
        f"grid:      {g.dim}D, cells {list(g.cells)}, box {list(g.lower)} .. {list(g.upper)}, {g.boundary}",
    ]
    if len(tr.time):
        lines += [
            f"frames:    {len(tr.time)}, t = {tr.time[0]:g} .. {tr.time[-1]:g}",
            f"lambda:    {tr.lambda_[-1]:.6g} at the last frame",
            f"KL:        {tr.kl[0]:.6g} -> {tr.kl[-1]:.6g} (KL(rho_t || pi) at first and last frame)",
            f"mass:      {tr.mass[-1]:.15g}",
        ]
    else:
        lines.append("frames:    none written")
    if "max_cell_peclet" in tr.attrs:
        lines.append(f"peclet:    {float(tr.attrs['max_cell_peclet']):.3g} (largest cell Peclet number h|grad log pi|)")
    if tr.attrs.get("warnings"):
        lines.append(f"warnings:  {tr.attrs['warnings']}")
    return "\n".join(line for line in lines if not line.endswith(":"))


def _cmd_sample(args) -> int:
    from gridflow.sampling import sample_grid_density, save_samples
    from gridflow.trajectory import open_trajectory

    if args.n < 1:
        raise InputError(f"-n must be a positive number of samples, got {args.n}.")
    tr = open_trajectory(args.file)
    i = tr.frame(args.time)
    samples = sample_grid_density(tr.grid, tr.density[i], args.n, rng=args.seed)
    save_samples(args.output, samples, attrs={"source": str(args.file), "time": float(tr.time[i]),
                                              "seed": -1 if args.seed is None else args.seed})
    print(f"wrote {args.n} samples of rho(t = {tr.time[i]:g}) to {args.output}", file=sys.stderr)
    return 0


def _cmd_compare(args) -> int:
    import json

    from gridflow.metrics import compare
    from gridflow.sampling import load_samples
    from gridflow.trajectory import open_trajectory

    tr = open_trajectory(args.file)
    i = tr.frame(args.time)
    samples, weights = load_samples(args.samples, dim=tr.dim)
    result = compare(tr.grid, tr.density[i], samples, weights, rng=args.seed, bootstrap=args.bootstrap)
    result = {"time": float(tr.time[i]), **result}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"time {result['time']:g}: {result['n_particles']} particles (n = {result['n']:.6g})")
    floors = result.get("noise_floor", {})
    for name, value in result["distances"].items():
        floor = floors.get(name)
        extra = f"   (exact samples: ~{floor:.3g})" if isinstance(floor, (int, float)) else ""
        print(f"  {name:14s} {value:.6g}{extra}")
    print(f"p-value {result['p_value']} ({result.get('p_value_method', '')})")
    return 0


def _cmd_plot(args) -> int:
    from pathlib import Path

    from gridflow.plot import animate_trajectory, plot_trajectory
    from gridflow.trajectory import open_trajectory

    tr = open_trajectory(args.file)
    out = Path(args.output) if args.output else Path(args.file).with_suffix(".png")
    if args.animate and not args.animate.lower().endswith(".gif"):
        raise InputError(f"The animation file {args.animate!r} must end in .gif (it is written as an animated GIF).")
    try:
        plot_trajectory(tr, out)
    except OSError as exc:
        raise InputError(f"Cannot write the figure {out} ({exc}); choose a writable path with -o.") from exc
    print(f"wrote {out}", file=sys.stderr)
    if args.animate:
        frames = animate_trajectory(tr, args.animate)
        print(f"wrote {args.animate} ({frames} frames)", file=sys.stderr)
    return 0


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """gridflow's own warnings as one line, without the source line that raised them."""
    from gridflow.errors import BoundaryMassWarning, PecletWarning

    if issubclass(category, (BoundaryMassWarning, PecletWarning)):
        return f"gridflow: warning: {message}\n"
    return _default_format_warning(message, category, filename, lineno, line)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 numerical failure, 2 bad input)."""
    args = _parser().parse_args(argv)
    warnings.formatwarning = _format_warning  # printing only: recorded warnings are unaffected
    try:
        return _dispatch(args)
    finally:
        warnings.formatwarning = _default_format_warning


def _cmd_validate(args) -> int:
    from gridflow.validation import command

    return command(args)


def _cmd_reproduce(args) -> int:
    import time
    from pathlib import Path

    from gridflow.reproduce import REPRODUCTIONS, publish, reproduce

    names = list(REPRODUCTIONS) if args.name == "all" else [args.name]
    for name in names:
        start = time.monotonic()
        out = Path(args.output) / name
        report = reproduce(name, out, progress=not args.quiet and sys.stderr.isatty())
        print(f"wrote {report} ({time.monotonic() - start:.0f} s)", file=sys.stderr)
        if args.publish:
            print(f"wrote {publish(name, out, args.publish)}", file=sys.stderr)
    return 0


def _dispatch(args) -> int:
    handlers = {"run": _cmd_run, "info": _cmd_info, "plot": _cmd_plot, "sample": _cmd_sample,
                "compare": _cmd_compare, "reproduce": _cmd_reproduce, "validate": _cmd_validate}
    try:
        return handlers[args.verb](args)
    except GridflowError as exc:
        if args.debug:
            traceback.print_exc()
        kind = "error" if isinstance(exc, InputError) else "numerical failure"
        print(f"gridflow: {kind}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gridflow: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so plainly
        if args.debug:
            traceback.print_exc()
        print(f"gridflow: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback, "
              f"and please report it)", file=sys.stderr)
        return 1
