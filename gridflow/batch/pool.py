"""The local process pool of a sweep (:func:`run_pool`): runs on ``workers`` processes, a dying
worker failing only the run it held, Ctrl-C and SIGTERM stopping the workers."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

from gridflow.batch import worker
from gridflow.batch.plan import SweepRun
from gridflow.batch.worker import run_one

__all__ = ["IN_FLIGHT_PER_WORKER", "run_pool", "stop_flag"]

#: Runs submitted per worker process at a time: one running and one waiting in the pool's queue,
#: so that a worker that finishes a run starts the next at once instead of waiting for the sweep's
#: process to wake up, collect the result and submit another (on a loaded machine that round trip
#: took a noticeable part of a short run's wall time).
IN_FLIGHT_PER_WORKER = 2


def worker_init() -> None:
    """In each worker process: Ctrl-C is left to the sweep's process (which stops the workers with
    SIGTERM); SIGTERM ends an idle worker and marks a run in progress ``interrupted``; and SIGTERM
    comes when the sweep's process dies (Linux), so no worker is left behind."""
    import signal

    worker.IN_POOL_WORKER = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)   # not the sweep process's handler, inherited by fork
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: workers end when their queue closes
        pass


def _executor(workers: int) -> cf.ProcessPoolExecutor:
    """A pool of ``workers`` processes, forked from this one unless that is unsafe.

    Forking is unsafe once numba's parallel kernels have run here on its OpenMP threading layer with
    GNU OpenMP (no TBB installed): a forked child that starts a parallel kernel aborts.  Then the
    workers come from a fork server (a fresh process that has run no kernel).
    """
    import sys

    context = None
    numba = sys.modules.get("numba")
    if numba is not None:
        try:
            layer = numba.threading_layer()
        except ValueError:           # no parallel kernel has run in this process
            layer = None
        if layer == "omp":
            import multiprocessing

            context = multiprocessing.get_context("forkserver")
    return cf.ProcessPoolExecutor(max_workers=workers, initializer=worker_init, mp_context=context)


def _stop(pool: cf.ProcessPoolExecutor) -> None:
    """Interrupt a pool: SIGTERM to its workers (their runs are marked ``interrupted``), cancel the rest."""
    for proc in list(getattr(pool, "_processes", {}).values()):
        try:
            proc.terminate()
        except (OSError, ValueError):
            pass
    pool.shutdown(wait=True, cancel_futures=True)


def _isolated(r: SweepRun) -> dict[str, Any]:
    """Run one case in a process of its own: a crash of that process fails this run only."""
    with _executor(1) as pool:
        try:
            return pool.submit(run_one, r.case, r.path).result()
        except cf.process.BrokenProcessPool:
            return {"status": "failed", "error": "the worker process died (killed, or crashed in compiled code)"}


def run_pool(todo: Sequence[SweepRun], workers: int, finished: Callable[[SweepRun, dict], None]) -> None:
    """Run ``todo`` on a process pool, at most ``workers`` at a time (and
    :data:`IN_FLIGHT_PER_WORKER` per worker submitted).  When a dying worker breaks the pool, the
    runs submitted to it and not finished are rerun one process each (so only the culprit fails)
    and a new pool takes the rest."""
    import gridflow.io.runner  # noqa: F401  imported once here, not in every forked worker
    import gridflow.io.trajectory_writer  # noqa: F401  (imports gridflow.io.trajectory)
    import gridflow.io.h5reader  # noqa: F401

    with stop_flag() as stop:
        _pool_loop(todo, workers, finished, stop)


@contextmanager
def stop_flag():
    """While the pool runs, Ctrl-C and SIGTERM only set a flag that the loop checks (an exception
    raised at an arbitrary point could be swallowed inside the pool's machinery)."""
    import signal
    import threading

    stop: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _pool_loop(todo: Sequence[SweepRun], workers: int, finished: Callable[[SweepRun, dict], None],
               stop: list[int]) -> None:
    """The body of :func:`_pool`; raises KeyboardInterrupt (after stopping the workers) once ``stop``
    holds a signal."""
    queue = list(todo)[::-1]
    while queue:
        if stop:
            raise KeyboardInterrupt
        suspects: list[SweepRun] = []
        with _executor(workers) as pool:
            running: dict[cf.Future, SweepRun] = {}
            try:
                while (queue or running) and not suspects:
                    while queue and len(running) < IN_FLIGHT_PER_WORKER * workers:
                        r = queue.pop()
                        running[pool.submit(run_one, r.case, r.path)] = r
                    done, _ = cf.wait(running, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                    if stop:
                        raise KeyboardInterrupt
                    for fut in done:
                        r = running.pop(fut)
                        try:
                            result = fut.result()
                        except cf.process.BrokenProcessPool:
                            suspects.append(r)
                            continue
                        finished(r, result)
                        if result["status"] == "interrupted":
                            raise KeyboardInterrupt
                suspects.extend(running.values())
            except KeyboardInterrupt:
                _stop(pool)
                raise
        for r in suspects:
            if stop:
                raise KeyboardInterrupt
            finished(r, _isolated(r))
