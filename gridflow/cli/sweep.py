"""``gridflow sweep``: a parameter sweep, one trajectory per run and an index (docs/sweeps.md)."""

from __future__ import annotations


def add_parser(sub) -> None:
    """Register ``gridflow sweep`` on the verbs' subparsers."""
    sweep = sub.add_parser("sweep", help="run a parameter sweep: one trajectory per run and an index.csv",
                           description="Run every case of a sweep file (docs/sweeps.md) on local processes or a Dask cluster; "
                                       "complete runs are skipped, failures recorded in the index.")
    sweep.add_argument("sweep", help="sweep file (TOML)")
    sweep.add_argument("-o", "--output", help="output directory (default: output of the sweep file)")
    sweep.add_argument("--workers", type=int, default=None, help="worker processes (default: the core count)")
    sweep.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="run on an existing Dask distributed cluster (e.g. tcp://host:8786; needs the dask "
                            "extra) instead of local processes")
    sweep.add_argument("--error-estimate", action="store_true",
                       help="every run also solves on a 3x coarser grid and stores the Richardson estimate of its L1 "
                            "error (error_estimate; the index gets its largest value)")
    sweep.add_argument("--dry-run", action="store_true", help="list the runs and their parameters, run nothing")
    sweep.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def command(args) -> int:
    from gridflow.batch.sweep import command as run_sweep

    return run_sweep(args)
