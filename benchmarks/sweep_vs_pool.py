"""Acceptance 1 of issue 13: the 180-run sweep against a hand-written 2-process pool, same session.

    python benchmarks/sweep_vs_pool.py [--sweep cases/sweeps/mixtures-1d.toml] [--workers 2]

(a) a hand-written pool (multiprocessing, ``workers`` processes) of ``gridflow.solve`` on the
sweep's resolved cases, in memory, no files; (b) ``gridflow sweep SWEEP --workers N -q`` as a
command (its start-up, planning, files and index included) into a fresh directory.  With
``--rounds 2`` (the default) they are timed in the order a, b, b, a, so that a machine whose load
drifts favours neither; prints every time, the totals and their ratio (target <= 1.3).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _solve(case) -> float:
    from gridflow.io.runner import solve

    return solve(case)[-1].diagnostics["kl"]


def hand_pool(cases, workers: int) -> float:
    """Seconds to solve every case on a pool of ``workers`` processes (results discarded)."""
    start = time.perf_counter()
    with mp.get_context("fork").Pool(workers) as pool:
        list(pool.imap_unordered(_solve, cases))
    return time.perf_counter() - start


def sweep_command(sweep: Path, workers: int, out: Path) -> float:
    """Seconds of ``gridflow sweep`` as a command, fresh output directory."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gridflow", "sweep", str(sweep), "-o", str(out), "--workers", str(workers),
                    "-q"], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default=str(ROOT / "cases" / "sweeps" / "mixtures-1d.toml"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (a, b) in alternating order")
    args = parser.parse_args()
    from gridflow.batch.sweep import plan_sweep

    runs, _, _ = plan_sweep(args.sweep)
    cases = [r.case for r in runs if r.case is not None]
    pool: list[float] = []
    sweep: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.rounds):
            order = ("a", "b") if k % 2 == 0 else ("b", "a")
            for which in order:
                if which == "a":
                    pool.append(hand_pool(cases, args.workers))
                else:
                    sweep.append(sweep_command(Path(args.sweep), args.workers, Path(tmp) / f"out{k}"))
                print(f"  ({which}) {'hand-written pool' if which == 'a' else 'gridflow sweep'}: "
                      f"{(pool if which == 'a' else sweep)[-1]:.1f} s", flush=True)
    print(f"{len(cases)} runs, {args.workers} workers: hand-written pool {sum(pool):.1f} s, gridflow sweep "
          f"{sum(sweep):.1f} s (over {args.rounds} rounds), ratio {sum(sweep) / sum(pool):.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
