"""``gridflow validate``: its arguments and limits, and running, printing and saving a validation study."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gridflow.cli.arguments import (MAX_PARTICLES, MAX_REPLICATES, MAX_SAMPLER_STEPS, check_output_path, count,
                                     seed as check_seed)
from gridflow.errors import GridflowError, InputError, LimitError
from gridflow.analysis.validation import parse_list, run_study
from gridflow.analysis.validation_report import format_study, plot_study


def _clean(obj):
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj

# ============================================================================================
# command line
# ============================================================================================

def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``validate`` verb on an ``argparse`` subparsers object; returns its parser
    (``command`` is set as its default ``handler``)."""
    from gridflow.particles.samplers import SAMPLERS

    p = subparsers.add_parser(
        "validate", help="validation study of a particle sampler against the grid solution",
        description=("Run a particle sampler on the problem of a case for several numbers of particles and step "
                     "sizes, with replicates; report each distance's excess over the iid floor with confidence "
                     "intervals, the slopes in N and in the step, and draw a log-log plot."))
    p.add_argument("case", help="case file (TOML), or a trajectory file (.h5) whose case and frames are the reference")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--sampler",
                       help=f"one of {', '.join(SAMPLERS)}, or your own as FILE.py:NAME, a function "
                            "NAME(x, log_w, t, dt, rng, target) returning (x, log_w) (see docs/validation.md)")
    which.add_argument("--ensembles", metavar="PATTERN",
                       help="validate ensembles made elsewhere instead: files named after PATTERN with the fields "
                            "{N}, {step}, {rep}, e.g. 'runs/ula_N{N}_h{step}_r{rep}.npz' (particle files, .npy, .npz, "
                            ".h5; a field left out is read from the file's attributes n, step, replicate)")
    p.add_argument("--particles", default="1000,4000,16000", help="comma-separated N values (default 1000,4000,16000)")
    p.add_argument("--step", default="0.02,0.01,0.005", help="comma-separated step sizes (default 0.02,0.01,0.005)")
    p.add_argument("--replicates", type=int, default=20, help="replicates per (N, step) (default 20)")
    p.add_argument("--time", type=float, default=None, help="time T of the comparison (default: time.end of the case)")
    p.add_argument("--seed", type=int, default=0, help="root seed (default 0)")
    p.add_argument("--metrics", default=None,
                   help="comma-separated distances (1D default w1,w2,mean_error,cov_error; 2D sliced_w2,mean_error,"
                        "cov_error), or 'all' for everything `gridflow compare` reports (slower)")
    p.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="sampler option, VALUE in TOML syntax (repeatable), e.g. --option moves=10 --option bandwidth=0.3")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a case key (repeatable), as for `gridflow run`")
    p.add_argument("--reference", default=None, help="trajectory file of the case to use instead of solving it")
    p.add_argument("--confidence", type=float, default=0.95, help="level of the intervals (default 0.95)")
    p.add_argument("-o", "--output", default=None,
                   help="plot file (default: next to the case's output, NAME-validate-SAMPLER.png)")
    p.add_argument("--save", default=None, help="also write the full study as JSON to this file")
    p.add_argument("--particles-output", default=None,
                   help="write the particle trajectory (all saved times of the case) of one run with the largest N "
                        "and smallest step to this .h5 file")
    p.add_argument("--json", action="store_true", help="print the study as one JSON object on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(handler=command)
    return p


def _parse_options(items: Sequence[str]) -> dict[str, Any]:
    import tomllib

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--option needs KEY=VALUE (VALUE in TOML syntax), e.g. --option moves=10; got {item!r}.")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value.strip()
    return out


def _load(args) -> tuple[dict, str | None]:
    from gridflow.io.case import load_case, parse_case

    path = Path(args.case)
    if path.suffix.lower() in (".h5", ".hdf5", ".nc"):
        from gridflow.io.trajectory import open_trajectory

        tr = open_trajectory(path)
        text = tr.attrs.get("case")
        if not text:
            raise InputError(f"{path} holds no case (attribute 'case'); pass the case file (TOML) instead.")
        return parse_case(str(text), overrides=args.overrides, origin=str(path)), (args.reference or str(path))
    return load_case(path, overrides=args.overrides), args.reference


def _file_safe(name: str) -> str:
    """A sampler name usable in a file name (``ula.py:step`` -> ``ula.py-step``)."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(name))


def command(args) -> int:
    """Run the ``validate`` verb from parsed arguments (after the limits on the study size); returns the
    exit status (0)."""
    _limits(args)
    case, reference = _load(args)
    particles = parse_list(args.particles, int, "particles", "1000,4000,16000")
    steps = parse_list(args.step, float, "step", "0.02,0.01,0.005")
    options = _parse_options(args.options)
    say = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    if getattr(args, "ensembles", None) is not None:
        from gridflow.analysis.ensemble_files import validate_ensembles

        if args.particles_output or options:
            raise InputError("--particles-output and --option run a sampler; with --ensembles there is none to run "
                             "(drop them).")
        study = validate_ensembles(case, args.ensembles, time=args.time, seed=args.seed, metrics=args.metrics,
                                   reference=reference, confidence=args.confidence, progress=say)
    else:
        study = run_study(case, sampler=args.sampler, particles=particles, steps=steps, replicates=args.replicates,
                          time=args.time, seed=args.seed, metrics=args.metrics, options=options,
                          reference=reference, confidence=args.confidence, progress=say)
    out = Path(args.output) if args.output else Path(case["output"]["path"]).with_name(
        f"{Path(case['output']['path']).stem}-validate-{_file_safe(study['sampler'])}.png")
    plot_study(study, out)
    study["plot"] = str(out)
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text(json.dumps(_clean(study), indent=1))
    if args.particles_output:
        from gridflow.particles.samplers import run_sampler

        run_sampler(case, sampler=args.sampler, particles=max(particles), step=min(steps), seed=args.seed,
                    output=args.particles_output, options=options)
    if args.json:
        print(json.dumps(_clean(study)))
    else:
        print(format_study(study))
        print(f"\nplot: {out}" + (f"; particles: {args.particles_output}" if args.particles_output else ""))
    return 0


def _limits(args) -> None:
    """Caps on the study size of ``validate``: steps per run, particles, replicates; seeds and output paths."""
    check_seed(args.seed)
    if not 1 <= args.replicates <= MAX_REPLICATES:
        raise LimitError(f"--replicates must be between 1 and {MAX_REPLICATES}, got {args.replicates}.")
    for text in str(args.particles).split(","):
        try:
            float(text)
        except ValueError:
            continue  # the study reports malformed lists itself
        count(text.strip(), option="--particles", minimum=1, maximum=MAX_PARTICLES,
                   reason="the particles of a run are held in memory")
    steps = []
    for text in str(args.step).split(","):
        try:
            steps.append(float(text))
        except ValueError:
            continue  # the study reports malformed lists itself
    positive = [h for h in steps if h > 0.0 and h == h and h != float("inf")]
    case = _case(args)
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


def _case(args) -> dict | None:
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
