"""``gridflow sample``: exact iid samples of a saved frame."""

from __future__ import annotations

import sys

from gridflow.cli.arguments import MAX_SAMPLES, check_output_path, count, printable, seed as check_seed


def add_parser(sub) -> None:
    """Register ``gridflow sample`` on the verbs' subparsers."""
    sample = sub.add_parser("sample", help="exact iid samples of a saved frame (a ground-truth data set)")
    sample.add_argument("file", help="trajectory file (.h5)")
    sample.add_argument("--time", type=float, required=True, help="a saved time")
    sample.add_argument("-n", required=True, help=f"number of samples (at most {MAX_SAMPLES:.0e})")
    sample.add_argument("--seed", type=int, default=None, help="random seed (reproducible output)")
    sample.add_argument("-o", "--output", required=True, help="samples file (.npz or .h5)")


def command(args) -> int:
    from gridflow.particles.grid_sampling import frame_generator, sample_grid_density, save_samples
    from gridflow.io.trajectory import open_trajectory

    n = count(args.n, option="-n", minimum=1, maximum=MAX_SAMPLES,
               reason="the samples are held in memory (8 bytes per coordinate); draw several files with different "
                      "--seed instead")
    seed = check_seed(args.seed)
    check_output_path(args.output, inputs=[args.file], what="samples file")
    tr = open_trajectory(args.file)
    i = tr.frame(args.time)
    samples = sample_grid_density(tr.grid, tr.density[i], n, rng=frame_generator(seed, i))
    save_samples(args.output, samples, attrs={"source": str(args.file), "time": float(tr.time[i]),
                                              "seed": -1 if seed is None else seed})
    print(f"wrote {n} samples of rho(t = {tr.time[i]:g}) to {printable(args.output)}", file=sys.stderr)
    return 0
