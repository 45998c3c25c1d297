"""Acceptance 1 of issue 13: the 180-run sweep against a hand-written 2-process pool, same session.

    python benchmarks/sweep_vs_pool.py [--sweep cases/sweeps/mixtures-1d.toml] [--workers 2]

(a) a hand-written pool (multiprocessing, ``workers`` processes) of ``parse_case`` + ``gridflow.solve``
on the sweep's case dictionaries, in memory, no files (the issue's hand-written pool); (b) ``gridflow sweep SWEEP --workers N -q`` as a
command (its start-up, planning, files and index included) into a fresh directory.  With
``--rounds 2`` (the default) they are timed in the order a, b, b, a, so that a machine whose load
drifts favours neither; prints every wall and CPU time (CPU: user + system of all the processes,
steadier than wall time on a shared machine), the totals and their ratios (target <= 1.3).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _solve(case) -> float:
    """What the issue's user wrote: parse the case dictionary, then solve it in memory."""
    from gridflow.io.case import parse_case
    from gridflow.io.runner import solve

    return solve(parse_case(case))[-1].diagnostics["kl"]


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its waited-for children so far."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def hand_pool(cases, workers: int) -> tuple[float, float]:
    """Wall and CPU seconds to solve every case on a pool of ``workers`` processes (results discarded)."""
    start, cpu = time.perf_counter(), _cpu()
    pool = mp.get_context("fork").Pool(workers)
    list(pool.imap_unordered(_solve, cases))
    pool.close()
    pool.join()                                  # the workers reaped: their CPU time counted
    return time.perf_counter() - start, _cpu() - cpu


def sweep_command(sweep: Path, workers: int, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``gridflow sweep`` as a command, fresh output directory."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start, cpu = time.perf_counter(), _cpu()
    subprocess.run([sys.executable, "-m", "gridflow", "sweep", str(sweep), "-o", str(out), "--workers", str(workers),
                    "-q"], env=env, check=True)
    return time.perf_counter() - start, _cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default=str(ROOT / "cases" / "sweeps" / "mixtures-1d.toml"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (a, b) in alternating order")
    args = parser.parse_args()
    from gridflow.batch.sweep import plan_sweep

    runs, _, _ = plan_sweep(args.sweep)
    cases = [r.case for r in runs if r.case is not None]
    pool: list[tuple[float, float]] = []
    sweep: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.rounds):
            order = ("a", "b") if k % 2 == 0 else ("b", "a")
            for which in order:
                if which == "a":
                    pool.append(hand_pool(cases, args.workers))
                else:
                    sweep.append(sweep_command(Path(args.sweep), args.workers, Path(tmp) / f"out{k}"))
                wall, cpu = (pool if which == "a" else sweep)[-1]
                print(f"  ({which}) {'hand-written pool' if which == 'a' else 'gridflow sweep'}: {wall:.1f} s wall, "
                      f"{cpu:.1f} s CPU", flush=True)
    (pw, pc), (sw, sc) = ([sum(x) for x in zip(*pool)], [sum(x) for x in zip(*sweep)])
    print(f"{len(cases)} runs, {args.workers} workers, {args.rounds} rounds: hand-written pool {pw:.1f} s wall "
          f"({pc:.1f} s CPU), gridflow sweep {sw:.1f} s wall ({sc:.1f} s CPU); ratio {sw / pw:.2f} wall, "
          f"{sc / pc:.2f} CPU (target <= 1.3; on a machine shared with other work the CPU ratio is the steadier)")

if __name__ == "__main__":
    main()
