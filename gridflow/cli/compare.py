"""``gridflow compare``: particle ensembles (one, or independent replicates) against the saved frames,
the target or the tempered target, at one or every common saved time."""

from __future__ import annotations

from pathlib import Path

from gridflow.cli.arguments import (MAX_BOOTSTRAP, MAX_PARTICLE_COORDINATE, SIGNIFICANCE, count,
                                     seed as check_seed)
from gridflow.errors import InputError


def add_parser(sub) -> None:
    """Register ``gridflow compare`` on the verbs' subparsers."""
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


def command(args) -> int:
    """``gridflow compare``: one ensemble or R >= 3 replicates against the grid, at one or every common time."""
    import glob
    import json
    import math

    import numpy as np

    from gridflow.analysis.metrics import check_metrics, compare
    from gridflow.analysis.replicates import compare_replicates, mixture_modes
    from gridflow.particles.grid_sampling import EnsembleSource, common_times
    from gridflow.io.trajectory import open_trajectory

    bootstrap = count(args.bootstrap, option="--bootstrap", maximum=MAX_BOOTSTRAP,
                       reason="each replicate costs one full comparison, and 1e5 replicates already resolve "
                              "p-values to 1e-5")
    seed = check_seed(args.seed)
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
    notes += _reference_error_notes(tr, results)
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


def _reference_error_notes(tr, results: list[dict]) -> list[str]:
    """A note when the frame's stored L1 error estimate (``run --error-estimate``) is not far below the
    particle noise floor: half of it (total variation) above 0.1 x the ``tv_histogram`` floor."""
    import numpy as np

    est = tr.extra.get("error_estimate")
    if est is None:
        return []
    worst = None
    for r in results:
        floor = r.get("noise_floor", {}).get("tv_histogram")
        if r["against"] != "frame" or not isinstance(floor, (int, float)) or floor <= 0:
            continue
        e = float(est[int(np.argmin(np.abs(tr.time - r["time"])))])
        if np.isfinite(e) and 0.5 * e > 0.1 * floor and (worst is None or e / floor > worst[1] / worst[2]):
            worst = (r["time"], e, floor)
    if worst is None:
        return []
    t, e, floor = worst
    return [f"the trajectory's estimated L1 error at t = {t:g} ({e:.3g}, total variation {0.5 * e:.3g}) is not far "
            f"below the particle noise floor (tv_histogram {floor:.3g}): grid error may show in the distances; "
            "use a finer grid as the reference"]


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
