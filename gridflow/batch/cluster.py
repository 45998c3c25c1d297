"""A sweep on an existing Dask distributed cluster (``gridflow sweep --scheduler ADDRESS``).

Each run is one task, :func:`gridflow.batch.worker.run_one`, with the run's resolved case and the
absolute path of its file: the workers must have gridflow installed and see the output directory
(a shared file system).  The sweep's process keeps the index as with the local pool: complete
runs are skipped before anything is submitted, a failed run (or one whose worker died on every
worker that tried it, Dask's ``KilledWorker``) is recorded and never stops the sweep.  Dask is an
optional dependency (``pip install 'gridflow[dask]'``), imported only here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from gridflow.batch.plan import SweepRun
from gridflow.batch.pool import stop_flag
from gridflow.batch.worker import first_line, run_one
from gridflow.errors import InputError

__all__ = ["connect", "run_cluster"]

#: Seconds to wait for the scheduler when connecting.
CONNECT_TIMEOUT = 10
#: Seconds between looks at the runs' futures (also how soon Ctrl-C is noticed).
POLL_INTERVAL = 0.1


def connect(address: str):
    """A ``distributed.Client`` connected to the scheduler at ``address``; :class:`InputError` if
    Dask distributed is not installed or the scheduler cannot be reached."""
    try:
        from distributed import Client
    except ImportError:
        raise InputError("--scheduler needs Dask distributed, which is not installed: pip install "
                         "'gridflow[dask]' (or 'dask[distributed]'), or run on local processes with "
                         "--workers N.") from None
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise InputError(f"Cannot connect to the Dask scheduler at {address!r} ({first_line(exc)}); check the "
                         "address (e.g. tcp://host:8786) and that the scheduler is running.") from None


def _result(future) -> dict[str, Any]:
    """The result of a finished task; a task that raised (its worker died: ``KilledWorker``) failed."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - recorded in the index, never stops the sweep
        if type(exc).__name__ == "KilledWorker":
            return {"status": "failed", "error": "the worker process died (killed, or crashed in compiled code) "
                    "on every worker that tried this run"}
        return {"status": "failed", "error": f"failed (internal error): {first_line(exc)}"}


def run_cluster(client, todo: Sequence[SweepRun], finished: Callable[[SweepRun, dict], None]) -> None:
    """Run ``todo`` on the cluster of ``client``, calling ``finished`` with each result as it comes.
    Ctrl-C or SIGTERM cancels the runs not yet finished and raises KeyboardInterrupt."""
    token = uuid.uuid4().hex[:12]           # task keys unique to this sweep
    with stop_flag() as stop:
        pending = {client.submit(run_one, r.case, str(r.path.absolute()), pure=False,
                                 key=f"gridflow-{r.path.stem}-{token}"): r for r in todo}
        try:
            while pending:
                if stop:
                    raise KeyboardInterrupt
                done = [future for future in pending if future.done()]
                if not done:
                    time.sleep(POLL_INTERVAL)
                for future in done:
                    finished(pending.pop(future), _result(future))
        except KeyboardInterrupt:
            client.cancel(list(pending))
            raise
