"""Parameter sweeps: many runs of one base case, a trajectory file each and an index (``gridflow sweep``).

The sweep is split by concept: :mod:`gridflow.batch.plan` (sweep file -> runs),
:mod:`gridflow.batch.index` (``index.csv``, ``index.nc``), :mod:`gridflow.batch.worker` (one run),
:mod:`gridflow.batch.pool` (the local process pool), :mod:`gridflow.batch.cluster` (a Dask
cluster); this module runs a sweep (:func:`run_sweep`): it skips runs whose file is already
complete, records failures without stopping, and keeps the index (one row per run: its
parameters, status, wall time, final diagnostics, path and error) up to date.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gridflow.batch.index import INDEX_NAME, RESULT_COLUMNS, flatten_params, read_index, write_index
from gridflow.batch.plan import RANDOM_KINDS, SweepRun, load_sweep, plan_sweep
from gridflow.batch.worker import final_diagnostics, run_one
from gridflow.errors import CaseError, GridflowError

__all__ = ["SweepRun", "load_sweep", "plan_sweep", "run_sweep", "run_one", "read_index", "write_index",
           "flatten_params", "INDEX_NAME", "RESULT_COLUMNS", "RANDOM_KINDS"]

#: Seconds between rewrites of the index while a sweep runs (and always after a failure and at the end).
INDEX_INTERVAL = 2.0


def _already_complete(run: SweepRun, old_rows: Mapping[str, Mapping[str, str]]) -> dict[str, Any] | None:
    """The recorded result of a run whose file is complete and written by the same case, else None."""
    from gridflow.io.runner import _case_differences
    from gridflow.io.trajectory import trajectory_attrs

    if run.case is None or not run.path.exists():
        return None
    try:
        attrs = trajectory_attrs(run.path)
        if attrs.get("status") != "complete" or _case_differences(str(attrs.get("case", "")), run.case):
            return None
        result = {"status": "complete", **final_diagnostics(run.path)}
    except GridflowError:
        return None
    old = old_rows.get(str(run.index), {})
    if old.get("status") == "complete" and old.get("wall_time"):
        result["wall_time"] = float(old["wall_time"])
    if old.get("warnings"):
        result["warnings"] = old["warnings"]
    return result


def run_sweep(sweep: str | os.PathLike | Mapping, *, output: str | os.PathLike | None = None,
              workers: int | None = None, scheduler: str | None = None, progress: bool = False,
              on_result: Callable[[SweepRun], None] | None = None, error_estimate: bool = False) -> Path:
    """Run every run of a sweep (see :func:`plan_sweep`); return the path of its ``index.csv``.

    Runs whose file is already complete (written by the same case) are skipped; the others run on
    ``workers`` local processes (default: the core count; 1 runs them in this process), or, with
    ``scheduler`` (the address of a Dask distributed scheduler, e.g. ``tcp://host:8786``), on that
    cluster (:mod:`gridflow.batch.cluster`; its workers must see the output directory); an
    interrupted file is continued from its last frame.  A run that fails (invalid case,
    numerical failure, anything else) is recorded with status ``failed`` and its error and never
    stops the sweep; a worker process that dies fails only the run it held.  The index is
    rewritten every :data:`INDEX_INTERVAL` seconds, after a failure and at the end (also when
    interrupted); rerunning the same sweep completes only the missing runs, whatever the index
    says (complete files are recognised by their ``status`` attribute).  ``on_result`` is called
    with each finished run.  ``index.nc`` (the same table, netCDF) is written at the end.
    """
    from gridflow.io.runner import _sigterm_interrupts

    with _sigterm_interrupts():  # SIGTERM like Ctrl-C: workers stopped, index written
        return _run_sweep(sweep, output=output, workers=workers, scheduler=scheduler, progress=progress,
                          on_result=on_result, error_estimate=error_estimate)


def _run_sweep(sweep: str | os.PathLike | Mapping, *, output: str | os.PathLike | None, workers: int | None,
               scheduler: str | None, progress: bool, on_result: Callable[[SweepRun], None] | None,
               error_estimate: bool = False) -> Path:
    """The body of :func:`run_sweep`: plan, connect to the cluster (if any), run."""
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise CaseError(f"--workers must be at least 1, got {workers}.")
    runs, out, info = plan_sweep(sweep, output=output, error_estimate=error_estimate)
    if scheduler is None:
        return _execute(runs, out, info["name"], workers=workers, client=None, progress=progress,
                        on_result=on_result)
    from gridflow.batch.cluster import connect

    client = connect(scheduler)     # before any file is written: a bad address changes nothing
    try:
        return _execute(runs, out, info["name"], workers=workers, client=client, progress=progress,
                        on_result=on_result)
    finally:
        client.close()


def _execute(runs: list[SweepRun], out: Path, name: str, *, workers: int, client: Any, progress: bool,
             on_result: Callable[[SweepRun], None] | None) -> Path:
    """Run the runs not yet complete (on ``client``'s cluster, or ``workers`` local processes)
    and keep the index in ``out``; return its path."""
    out.mkdir(parents=True, exist_ok=True)
    index = out / INDEX_NAME
    old_rows = {row.get("run", ""): row for row in read_index(index)}
    todo = []
    for r in runs:
        if r.case is None:
            r.result = {"status": "failed", "error": r.error}
        elif (done := _already_complete(r, old_rows)) is not None:
            r.result = done
        else:
            todo.append(r)
    write_index(index, runs)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(runs), initial=len(runs) - len(todo), unit="run", desc=name)

    last_write = [time.monotonic()]

    def finished(r: SweepRun, result: dict[str, Any]) -> None:
        r.result = result
        if time.monotonic() - last_write[0] >= INDEX_INTERVAL or result.get("status") != "complete":
            write_index(index, runs)      # not after every run: the main process shares the cores
            last_write[0] = time.monotonic()
        if bar is not None:
            bar.update(1)
            failed = sum(1 for x in runs if x.result.get("status") == "failed")
            if failed:
                bar.set_postfix(failed=failed)
        if on_result is not None:
            on_result(r)

    try:
        if client is not None:
            from gridflow.batch.cluster import run_cluster

            run_cluster(client, todo, finished)
        elif workers == 1 or len(todo) <= 1:
            for r in todo:
                result = run_one(r.case, r.path)
                finished(r, result)
                if result["status"] == "interrupted":
                    raise KeyboardInterrupt
        else:
            from gridflow.batch.pool import run_pool

            run_pool(todo, min(workers, len(todo)), finished)
    finally:
        if bar is not None:
            bar.close()
        write_index(index, runs, table=True)
    return index


def command(args: Any) -> int:
    """``gridflow sweep``: run (or with ``--dry-run`` list) a sweep; print a one-line summary.
    Exit status 0 when every run is complete, 1 when some failed (their errors are in the index)."""
    import sys

    from gridflow.batch.plan import inline_toml

    if args.workers is not None and args.workers < 1:
        raise CaseError(f"--workers must be at least 1, got {args.workers}.")
    if args.dry_run:
        runs, out, _ = plan_sweep(args.sweep, output=args.output, error_estimate=args.error_estimate)
        for r in runs:
            params = ", ".join(f"{k}={inline_toml(v)}" for k, v in r.params.items())
            print(f"{r.path}  {params}" + (f"  INVALID: {r.error}" if r.error else ""))
        print(f"{len(runs)} runs into {out}", file=sys.stderr)
        return 0
    index = run_sweep(args.sweep, output=args.output, workers=args.workers, scheduler=args.scheduler,
                      progress=not args.quiet and sys.stderr.isatty(), error_estimate=args.error_estimate)
    rows = read_index(index)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    print(f"wrote {index} ({len(rows)} runs: {summary})", file=sys.stderr)
    return 0 if counts.get("complete", 0) == len(rows) else 1
