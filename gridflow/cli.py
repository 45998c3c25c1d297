"""The ``gridflow`` command line (``python -m gridflow`` is the same).

Its top-level imports are only what :func:`main` needs before its ``KeyboardInterrupt`` handler
is in force (standard modules that the interpreter has loaded already, gridflow's errors and
version); everything else is imported inside ``main``, so Ctrl-C at any moment after start-up is
one line and exit status 130.
"""

from __future__ import annotations

import errno
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from gridflow._version import __version__
from gridflow.errors import GridflowError, InputError, LimitError

_default_format_warning = warnings.formatwarning

#: Most samples ``gridflow sample -n`` draws (1e8 points of 2 coordinates are 1.6 GB).
MAX_SAMPLES = 100_000_000
#: Most bootstrap replicates of ``compare --bootstrap`` (p-values resolved to 1e-5; each replicate
#: costs one comparison).
MAX_BOOTSTRAP = 100_000
#: Significance level the bootstrap p-value floor 1/(B + 1) is compared with.
SIGNIFICANCE = 0.05
#: Most sampler steps (time / step) of one ``validate`` run.
MAX_SAMPLER_STEPS = 1_000_000
#: Most particles and replicates of ``validate``.
MAX_PARTICLES = 10_000_000
MAX_REPLICATES = 10_000
#: Largest particle coordinate ``compare`` accepts (squared distances must stay finite).
MAX_PARTICLE_COORDINATE = 1e100


def _parser() -> argparse.ArgumentParser:  # noqa: F821 - imported here, inside main's handler
    import argparse

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
    sample.add_argument("-n", required=True, help=f"number of samples (at most {MAX_SAMPLES:.0e})")
    sample.add_argument("--seed", type=int, default=None, help="random seed (reproducible output)")
    sample.add_argument("-o", "--output", required=True, help="samples file (.npz or .h5)")

    cmp_ = sub.add_parser("compare", help="compare particle ensembles with the saved frames (or the target)",
                          description="Compare one ensemble, or several independent ensembles (replicates), with "
                                      "the grid density at every common saved time (or at --time).")
    cmp_.add_argument("file", help="trajectory file (.h5)")
    cmp_.add_argument("samples", nargs="+", metavar="SAMPLES",
                      help="sample files (.npy N x d, .npz or .h5 with `samples`, optional `weights`) or gridflow "
                           "particle files (`positions`, optional `log_weights`), or glob patterns ('runs/*.h5'); "
                           "two or more ensembles are tested together as independent replicates")
    cmp_.add_argument("--time", type=float, default=None,
                      help="a saved time (default: every time the trajectory and all particle files hold)")
    cmp_.add_argument("--metrics", default="default",
                      help="comma-separated distances (1D: w1,w2,ks,cvm,mmd,tv_histogram,mean_error,cov_error,"
                           "mean_z; 2D: sliced_w2,mmd,tv_histogram,mean_error,cov_error,mean_z), 'all' or "
                           "'default' (all but mmd)")
    cmp_.add_argument("--against", choices=("frame", "target", "tempered"), default="frame",
                      help="compare with the saved frame rho_t (default), the target pi, or the tempered "
                           "pi_lambda(t) of the frame's lambda")
    cmp_.add_argument("--ess", default=None, help="the effective size of each ensemble (e.g. for resampled particles)")
    cmp_.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    cmp_.add_argument("--bootstrap", default="0",
                      help=f"parametric bootstrap replicates for the p-value (at most {MAX_BOOTSTRAP:.0e})")
    cmp_.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and MMD subsampling")

    plot = sub.add_parser("plot", help="plot density snapshots and diagnostics")
    plot.add_argument("file", help="trajectory file (.h5)")
    plot.add_argument("-o", "--output", help="figure file (default: next to the trajectory, .png)")
    plot.add_argument("--animate", metavar="OUT.gif", help="also render the evolution as an animated GIF")

    sweep = sub.add_parser("sweep", help="run a parameter sweep: one trajectory per run and an index.csv",
                           description="Run every case of a sweep file (docs/sweeps.md) on local processes; "
                                       "complete runs are skipped, failures recorded in the index.")
    sweep.add_argument("sweep", help="sweep file (TOML)")
    sweep.add_argument("-o", "--output", help="output directory (default: output of the sweep file)")
    sweep.add_argument("--workers", type=int, default=None, help="worker processes (default: the core count)")
    sweep.add_argument("--dry-run", action="store_true", help="list the runs and their parameters, run nothing")
    sweep.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    from gridflow.analysis.validation_cli import add_parser as add_validate_parser

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


# --------------------------------------------------------------------------- argument checks


def _count(text: str, *, option: str, maximum: int, minimum: int = 0, reason: str) -> int:
    """A whole number given on the command line (``1000`` or ``1e6``), in [minimum, maximum].

    Raises :class:`InputError` for anything else and :class:`LimitError` above ``maximum``
    (``reason`` says why the limit exists).
    """
    try:
        value = float(text) if not str(text).strip().lstrip("+-").isdigit() else int(str(text).strip())
    except (TypeError, ValueError):
        raise InputError(f"{option} must be a whole number, got {text!r}.") from None
    if isinstance(value, float):
        if not (value == value and abs(value) != float("inf")) or value != int(value):
            raise InputError(f"{option} must be a whole number, got {text!r}.")
        value = int(value)
    if value < minimum:
        raise InputError(f"{option} must be at least {minimum}, got {text!r}.")
    if value > maximum:
        raise LimitError(f"{option} {text} exceeds the limit of {maximum:.0e}: {reason}.")
    return value


def _seed(value: int | None, option: str = "--seed") -> int | None:
    """A random seed must be a non-negative integer (numpy's seed sequence refuses others)."""
    if value is not None and value < 0:
        raise InputError(f"{option} must be a non-negative integer, got {value}; e.g. {option} 1.")
    return value


def check_output_path(path: str | os.PathLike, *, inputs: Sequence[str | os.PathLike] = (),
                      what: str = "output file") -> Path:
    """Refuse an output path that cannot or must not be written, before any work is done.

    Refused (:class:`InputError`): a NUL byte or a component longer than the file system allows;
    a path that is one of the command's ``inputs``; an existing directory, device, FIFO, socket or
    write-protected file (:func:`gridflow.io.output_safety.check_output_path`); a new path whose directory
    (the nearest existing one: missing directories are created) the user cannot write to.
    Returns the path.
    """
    text = os.fspath(path)
    if not text:
        raise InputError(f"The {what} path is empty; give a file name.")
    if "\0" in text:
        raise InputError(f"The {what} path {text!r} contains a NUL byte; give a plain file name.")
    p = Path(text)
    name_max = 255
    try:
        name_max = os.pathconf(p.parent if p.parent.exists() else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        pass
    for part in p.parts:
        if len(os.fsencode(part)) > name_max:
            raise InputError(f"The {what} path has a component of {len(os.fsencode(part))} bytes, more than the "
                             f"file system allows ({name_max}); use a shorter name.")
    for source in inputs:
        try:
            same = Path(source).exists() and p.exists() and os.path.samefile(source, p)
        except OSError:
            same = False
        if same or os.path.abspath(source) == os.path.abspath(p):
            raise InputError(f"The {what} {text} is also an input of this command ({os.fspath(source)}); writing it "
                             f"would destroy the input. Choose another path with -o.")
    try:
        st = p.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise InputError(f"Cannot use the {what} {text} ({exc.strerror}); check the path.") from None
    if st is not None:  # an existing path: the store's own check (devices, FIFOs, directories, write-protected)
        from gridflow.io.output_safety import check_output_path as check_existing

        check_existing(p, noun=what)
        return p
    parent = p.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"Cannot create the {what} {text}: {parent} is not a directory; choose another path.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"Cannot create the {what} {text}: the directory {parent} is not writable; choose another "
                         f"path or change its permissions.")
    return p


def _printable(text: object) -> str:
    """``text`` with control and format characters (escape sequences, bidi overrides) shown as escapes."""
    import unicodedata

    return "".join(c if unicodedata.category(c)[0] != "C" else
                   (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") for c in str(text))


# --------------------------------------------------------------------------- verbs


def _cmd_run(args) -> int:
    from gridflow.io.case import check_memory, load_case
    from gridflow.io.runner import run

    case = load_case(args.case, overrides=args.overrides)
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


def _cmd_info(args) -> int:
    from gridflow.io.trajectory import open_trajectory

    tr = open_trajectory(args.file)
    print(summary(tr))
    return 0


def summary(tr) -> str:
    """A short human-readable summary of a trajectory (strings from the file shown without control characters)."""
    g = tr.grid
    case = tr.case
    name, description = _printable(case.get("name", "")), _printable(case.get("description", ""))
    lines = [
        f"file:      {_printable(tr.path)}",
        f"case:      {name}" + (f" ({description})" if description else ""),
        f"status:    {_printable(tr.status)}",
        f"flow:      {_printable(tr.attrs.get('flow', '?'))}",
        f"grid:      {g.dim}D, cells {list(g.cells)}, box {list(g.lower)} .. {list(g.upper)}, {_printable(g.boundary)}",
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
    lines += _damage_lines(tr)
    if tr.attrs.get("warnings"):
        lines.append(f"warnings:  {_printable(tr.attrs['warnings'])}")
    return "\n".join(line for line in lines if not line.endswith(":"))


def _damage_lines(tr) -> list[str]:
    """Lines of :func:`summary` listing the damaged frames (at most 10 shown) and whether
    ``--resume`` would accept the file."""
    from gridflow.io.runner import resume_verdict
    from gridflow.io.trajectory_damage import damaged_frames

    lines = []
    damaged = damaged_frames(tr)
    if damaged:
        lines.append(f"damaged:   {len(damaged)} frame(s): " + ", ".join(str(k) for k, _, _ in damaged[:20])
                     + (" ..." if len(damaged) > 20 else ""))
        for k, t, problem in damaged[:10]:
            lines.append(f"           frame {k} (t = {t:.10g}): {problem}")
    if tr.status != "complete" or damaged:
        ok, why = resume_verdict(tr)
        lines.append(f"resume:    {'accepted' if ok else 'refused'}: {_printable(why)}")
    return lines


def _cmd_sample(args) -> int:
    from gridflow.particles.grid_sampling import frame_generator, sample_grid_density, save_samples
    from gridflow.io.trajectory import open_trajectory

    n = _count(args.n, option="-n", minimum=1, maximum=MAX_SAMPLES,
               reason="the samples are held in memory (8 bytes per coordinate); draw several files with different "
                      "--seed instead")
    seed = _seed(args.seed)
    check_output_path(args.output, inputs=[args.file], what="samples file")
    tr = open_trajectory(args.file)
    i = tr.frame(args.time)
    samples = sample_grid_density(tr.grid, tr.density[i], n, rng=frame_generator(seed, i))
    save_samples(args.output, samples, attrs={"source": str(args.file), "time": float(tr.time[i]),
                                              "seed": -1 if seed is None else seed})
    print(f"wrote {n} samples of rho(t = {tr.time[i]:g}) to {_printable(args.output)}", file=sys.stderr)
    return 0


def _check_particles(samples) -> None:
    """Particles so far out that squared distances overflow give no distances: refuse them."""
    import numpy as np

    x = np.asarray(samples, dtype=float)
    with np.errstate(invalid="ignore"):
        far = np.abs(x) > MAX_PARTICLE_COORDINATE
    if far.any():
        k = int(np.argmax(far.reshape(len(x), -1).any(axis=1)))
        raise InputError(f"Particle {k} lies at {x[k].tolist()}, beyond |x| = {MAX_PARTICLE_COORDINATE:g}: distances to "
                         f"it are not finite numbers. Remove the particles that diverged (or fix the sampler).")


def _cmd_compare(args) -> int:
    """``gridflow compare``: one ensemble or R >= 3 replicates against the grid, at one or every common time."""
    import glob
    import json
    import math

    import numpy as np

    from gridflow.analysis.metrics import check_metrics, compare
    from gridflow.analysis.replicates import compare_replicates, mixture_modes
    from gridflow.particles.grid_sampling import EnsembleSource, common_times
    from gridflow.io.trajectory import open_trajectory

    bootstrap = _count(args.bootstrap, option="--bootstrap", maximum=MAX_BOOTSTRAP,
                       reason="each replicate costs one full comparison, and 1e5 replicates already resolve "
                              "p-values to 1e-5")
    seed = _seed(args.seed)
    ess = None
    if args.ess is not None:
        try:
            ess = float(args.ess)
        except ValueError:
            raise InputError(f"--ess must be a number >= 1 (the effective size of an ensemble), got {args.ess!r}.") from None
        if not (ess >= 1.0 and math.isfinite(ess)):
            raise InputError(f"--ess must be a number >= 1 (the effective size of an ensemble), got {args.ess!r}.")
    tr = open_trajectory(args.file)
    chosen = check_metrics(args.metrics, tr.dim)
    paths: list[str] = []
    for item in args.samples:
        if any(c in item for c in "*?[") and not Path(item).exists():
            found = sorted(glob.glob(item))
            if not found:
                raise InputError(f"The pattern {item!r} matches no file; check the path (quote it so that the shell "
                                 "does not expand it first).")
            paths.extend(found)
        else:
            paths.append(item)
    sources = [EnsembleSource(p, dim=tr.dim) for p in paths]
    if args.time is not None:
        indices = [tr.frame(args.time)]
    else:
        indices = common_times(tr.time, sources)
        if not indices:
            untagged = [str(s.path) for s in sources if s.times is None]
            if len(untagged) == len(sources):
                raise InputError(f"The sample file {untagged[0]} carries no time; name the time with --time.")
            raise InputError(f"The trajectory and the ensembles share no saved time (trajectory: t = "
                             f"{tr.time[0]:g} .. {tr.time[-1]:g}); check the files or name a time with --time.")
        if all(s.times is None for s in sources):
            raise InputError(f"The sample file {sources[0].path} carries no time; name the time with --time.")
    modes = mixture_modes(tr.case.get("target"), tr.grid)
    if args.against == "target":
        base = np.exp(tr.log_target - np.max(tr.log_target))
    results = []
    for i in indices:
        t = float(tr.time[i])
        if args.against == "frame":
            density = tr.density[i]
        elif args.against == "target":
            density = base
        else:
            log = tr.log_reference + float(tr.lambda_[i]) * (tr.log_target - tr.log_reference)
            with np.errstate(invalid="ignore"):
                density = np.exp(np.nan_to_num(log - np.nanmax(log), nan=-np.inf))
        ensembles = [s.ensemble(t) for s in sources]
        for x, _ in ensembles:
            _check_particles(x)
        if len(ensembles) == 1:
            x, w = ensembles[0]
            result = compare(tr.grid, density, x, w, rng=seed, bootstrap=bootstrap, ess=ess, modes=modes,
                             metrics=chosen)
            bad = [name for name, value in result["distances"].items() if value is None]
            if bad:
                raise InputError(f"The distances {', '.join(bad)} between these particles and the density at t = "
                                 f"{t:g} are not finite numbers (particles too far out, or weights too extreme), so "
                                 "there is no result; check the samples.")
        else:
            result = compare_replicates(tr.grid, density, ensembles, ess=ess, modes=modes)
            result["files"] = [str(s.path) for s in sources]
        results.append({"time": t, "against": args.against, **result})
    notes = []
    if bootstrap and 1.0 / (bootstrap + 1) > SIGNIFICANCE:
        need = int(round(1.0 / SIGNIFICANCE)) - 1
        notes.append(f"with --bootstrap {bootstrap} the bootstrap p-value is at least 1/(B + 1) = "
                     f"{1.0 / (bootstrap + 1):.3g} > {SIGNIFICANCE:g}: it cannot reach the {SIGNIFICANCE:g} "
                     f"significance level; use --bootstrap {need} or more")
    if bootstrap and len(sources) > 1:
        notes.append("--bootstrap is not used by the replicate test (its p-value comes from the between-replicate "
                     "variation)")
    if args.json:
        if args.time is not None:
            out = results[0]
            if notes:
                out["notes"] = notes
        else:
            out = {"times": [r["time"] for r in results], "results": results}
            if notes:
                out["notes"] = notes
        print(json.dumps(out, allow_nan=False))
        return 0
    if len(sources) == 1 and args.time is not None:
        _print_single(results[0])
    else:
        _print_table(results, replicates=len(sources) > 1)
    for r in results:
        if r.get("mode_masses"):
            _print_modes(r)
    for note in notes:
        print(f"note: {note}")
    return 0


def _print_single(result: dict) -> None:
    """One comparison in detail: distances with their iid noise floors, then the p-value."""
    print(f"time {result['time']:g}: {result['n_particles']} particles (n = {result['n']:.6g})"
          + ("" if result["against"] == "frame" else f", against the {result['against']} density"))
    floors = result.get("noise_floor", {})
    for name, value in result["distances"].items():
        floor = floors.get(name)
        extra = f"   (exact samples: ~{floor:.3g})" if isinstance(floor, (int, float)) else ""
        print(f"  {name:14s} {value:.6g}{extra}")
    print(f"p-value {result['p_value']} ({result.get('p_value_method', '')})")


def _print_table(results: list[dict], *, replicates: bool) -> None:
    """One row per time: the distances and the p-value (single ensemble) or the replicate test."""
    def cell(v):
        return "-" if v is None else f"{v:.4g}"

    if replicates:
        r0 = results[0]
        print(f"{r0['replicates']} independent ensembles against the {r0['against']} density; p-value: "
              f"{r0['p_value_method']}")
        print(f"{'time':>10} {'F':>10} {'df':>8} {'p_value':>10}")
        for r in results:
            print(f"{r['time']:>10.4g} {cell(r['statistic']):>10} {r['df'][0]:>3},{r['df'][1]:<4} {cell(r['p_value']):>10}")
        return
    names = list(results[0]["distances"])
    print(f"against the {results[0]['against']} density; p-value: {results[0]['p_value_method']}")
    print(f"{'time':>10} {'n':>9} " + " ".join(f"{n:>12}" for n in names) + f" {'p_value':>10}")
    for r in results:
        print(f"{r['time']:>10.4g} {r['n']:>9.6g} " + " ".join(f"{cell(r['distances'][n]):>12}" for n in names)
              + f" {cell(r['p_value']):>10}")


def _print_modes(result: dict) -> None:
    """Mass of every mixture component: grid, particles, and their uncertainty."""
    print(f"mode masses at t = {result['time']:g}:")
    for m in result["mode_masses"]:
        if "ci" in m:        # replicates: Student interval and spread over binomial
            ratio = m.get("spread_ratio")
            print(f"  {m['name']}: grid {m['grid_mass']:.4g}, particles {m['particle_mass']:.4g} "
                  f"[{m['ci'][0]:.4g}, {m['ci'][1]:.4g}], spread/binomial {_cell_text(ratio)}, p {_cell_text(m['p_value'])}")
        elif "name" in m:
            print(f"  {m['name']}: grid {m['grid_mass']:.4g}, particles {m['particle_mass']:.4g} "
                  f"(binomial se {m['standard_error']:.3g}, z {_cell_text(m['z'])})")


def _cell_text(value) -> str:
    """A number for a table cell (``-`` for none)."""
    return "-" if value is None else f"{value:.3g}"


def _cmd_plot(args) -> int:
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
    print(f"wrote {_printable(out)}", file=sys.stderr)
    if args.animate:
        frames = animate_trajectory(tr, args.animate)
        print(f"wrote {_printable(args.animate)} ({frames} frames)", file=sys.stderr)
    return 0


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """gridflow's own warnings as one line; other libraries' warnings (numpy, scipy, matplotlib) are not shown."""
    from gridflow.errors import BoundaryMassWarning, PecletWarning

    if issubclass(category, (BoundaryMassWarning, PecletWarning)):
        return f"gridflow: warning: {_printable(message)}\n"
    return ""


def _debug_format_warning(message, category, filename, lineno, line=None) -> str:
    """With --debug every warning is shown, gridflow's as one line."""
    return _format_warning(message, category, filename, lineno, line) or _default_format_warning(
        message, category, filename, lineno, line)


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at the null device so that the final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (e.g. captured)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 numerical failure, 2 bad input, 130 interrupted).

    Ctrl-C at any moment (also while modules are imported) is one line and status 130; a closed
    stdout (``gridflow compare --json | head -c 10``) ends quietly.
    """
    import signal

    global _SIGINT_SEEN
    _SIGINT_SEEN = False
    previous = signal.getsignal(signal.SIGINT)
    own = previous is signal.default_int_handler
    try:
        if own:
            signal.signal(signal.SIGINT, _note_sigint)
    except ValueError:                   # not the main thread: signals go elsewhere
        own = False
    try:
        return _main(argv)
    finally:
        if own:
            signal.signal(signal.SIGINT, previous)


#: set by gridflow's SIGINT handler: C code (numpy's extension import, numba's compiler callbacks)
#: may swallow the KeyboardInterrupt or turn it into another error; this says Ctrl-C came
_SIGINT_SEEN = False


def _note_sigint(signum, frame) -> None:
    """SIGINT handler while :func:`main` runs: remember it, then interrupt as Python does."""
    global _SIGINT_SEEN
    _SIGINT_SEEN = True
    raise KeyboardInterrupt


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = _parser().parse_args(argv)
        warnings.formatwarning = _debug_format_warning if args.debug else _format_warning
        try:
            status = _dispatch(args)
            sys.stdout.flush()  # a broken pipe shows here, not at interpreter exit
            return status
        finally:
            warnings.formatwarning = _default_format_warning
    except KeyboardInterrupt:
        return _interrupted()
    except ImportError as exc:           # numpy turns Ctrl-C during its C-extension import into this
        if caused_by_interrupt(exc) or _SIGINT_SEEN:
            return _interrupted()
        raise
    except BrokenPipeError:
        _silence_stdout()
        return 1


def caused_by_interrupt(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in the chain of exceptions that led to ``exc`` (numpy, for
    one, re-raises Ctrl-C during the import of its C extensions as an ImportError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _interrupted() -> int:
    try:
        print("gridflow: interrupted", file=sys.stderr)
    except (OSError, KeyboardInterrupt):
        pass
    return 130


def _cmd_validate(args) -> int:
    from gridflow.analysis.validation_cli import command

    _validate_limits(args)
    return command(args)


def _validate_limits(args) -> None:
    """Caps on the study size of ``validate``: steps per run, particles, replicates; seeds and output paths."""
    _seed(args.seed)
    if not 1 <= args.replicates <= MAX_REPLICATES:
        raise LimitError(f"--replicates must be between 1 and {MAX_REPLICATES}, got {args.replicates}.")
    for text in str(args.particles).split(","):
        if text.strip():
            _count(text.strip(), option="--particles", minimum=1, maximum=MAX_PARTICLES,
                   reason="the particles of a run are held in memory")
    steps = []
    for text in str(args.step).split(","):
        try:
            steps.append(float(text))
        except ValueError:
            continue  # the study reports malformed lists itself
    positive = [h for h in steps if h > 0.0 and h == h and h != float("inf")]
    case = _validate_case(args)
    if case is not None:
        from gridflow.io.case import check_memory

        check_memory(case)
    if positive:
        horizon = args.time if args.time is not None else (case["time"]["end"] if case is not None else None)
        if horizon is not None and horizon / min(positive) > MAX_SAMPLER_STEPS:
            raise LimitError(f"--step {min(positive):g} needs {horizon / min(positive):.3g} sampler steps to reach "
                             f"t = {horizon:g}, more than the limit of {MAX_SAMPLER_STEPS:.0e}; use --step "
                             f"{horizon / MAX_SAMPLER_STEPS:.3g} or larger.")
    inputs = [args.case] + ([args.reference] if args.reference else [])
    for option in ("output", "save", "particles_output"):
        if getattr(args, option, None):
            check_output_path(getattr(args, option), inputs=inputs, what=f"--{option.replace('_', '-')} file")


def _validate_case(args) -> dict | None:
    """The resolved case of a ``validate`` command (None when it cannot be read: the study then says why)."""
    try:
        path = Path(args.case)
        if path.suffix.lower() in (".h5", ".hdf5", ".nc"):
            from gridflow.io.case import parse_case
            from gridflow.io.trajectory import trajectory_attrs

            return parse_case(str(trajectory_attrs(path).get("case", "")), overrides=args.overrides)
        from gridflow.io.case import load_case

        return load_case(path, overrides=args.overrides)
    except (GridflowError, KeyError, TypeError, ValueError, OSError):
        return None


def _cmd_reproduce(args) -> int:
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


def _cmd_sweep(args) -> int:
    from gridflow.batch.sweep import command

    return command(args)


#: errno values of an OSError that the user's input causes (a path, a permission): exit status 2.
_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG,
                errno.EROFS, errno.ELOOP, errno.EEXIST, errno.ENXIO, errno.ETXTBSY}


def _dispatch(args) -> int:
    handlers = {"run": _cmd_run, "info": _cmd_info, "plot": _cmd_plot, "sample": _cmd_sample,
                "compare": _cmd_compare, "reproduce": _cmd_reproduce, "validate": _cmd_validate,
                "sweep": _cmd_sweep}
    try:
        return handlers[args.verb](args)
    except GridflowError as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        kind = "error" if isinstance(exc, InputError) else "numerical failure"
        print(f"gridflow: {kind}: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, BrokenPipeError):
        raise
    except OSError as exc:  # a file the command reads or writes
        if args.debug:
            import traceback

            traceback.print_exc()
        where = f" {_printable(exc.filename)}" if exc.filename else ""
        if exc.errno in _USER_ERRNOS:
            print(f"gridflow: error: cannot use{where}: {exc.strerror or exc}; check the path and its permissions.",
                  file=sys.stderr)
            return 2
        print(f"gridflow: error: input/output error on{where}: {exc.strerror or exc}.", file=sys.stderr)
        return 1
    except MemoryError:
        print("gridflow: error: out of memory; use a smaller problem (fewer grid cells, samples or replicates).",
              file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: say so plainly
        if caused_by_interrupt(exc) or _SIGINT_SEEN:
            raise KeyboardInterrupt from exc
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"gridflow: internal error: {type(exc).__name__}: {_one_line(exc)} (run with --debug for the "
              f"traceback, and please report it)", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` without control characters except the newlines a formula error's caret needs."""
    return "\n".join(_printable(line) for line in str(exc).split("\n"))
