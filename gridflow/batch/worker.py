"""One run of a sweep, as a worker (local process, or Dask worker) does it: :func:`run_one`.

The run's trajectory is solved in memory and written in one go when it ends (the writer's
buffered mode, :class:`gridflow.io.trajectory_writer.TrajectoryWriter`): a sweep's runs are
short, and a file written frame by frame would cost a flush per frame.  A run killed outright
leaves no file (or a temporary one that the next writer removes), so a rerun computes it again;
a run stopped by SIGTERM or Ctrl-C writes its frames with ``status = interrupted``, and a rerun
continues it.  The file format is the same either way (docs/file-format.md).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gridflow.errors import GridflowError

__all__ = ["run_one", "final_diagnostics"]

#: Set in the processes of the local pool (:func:`gridflow.batch.pool.worker_init`): a run
#: interrupted there ends the process at once, the sweep's process having stopped it.
IN_POOL_WORKER = False


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception (the index's ``error`` column)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def final_diagnostics(path: Path) -> dict[str, Any]:
    """Final time, KL and step count read back from a trajectory file (and the largest error
    estimate, when the run made one)."""
    from gridflow.io.h5reader import read_file
    from gridflow.io.h5store import decode_attr
    from gridflow.io.trajectory import FILE_KIND

    def read(f, _path) -> dict[str, Any]:
        n = len(f["time"])
        if not n:
            return {}
        out = {"final_time": float(f["time"][n - 1]), "final_kl": float(f["kl"][n - 1]),
               "total_steps": int(decode_attr(f.attrs.get("total_steps", 0)))}
        if "error_estimate" in f:           # the largest estimated L1 error over the saved times
            out["error_estimate"] = float(np.nanmax(f["error_estimate"][:n]))
        return out

    return read_file(Path(path), FILE_KIND, read)[0]


def run_one(case: Mapping, path: str | os.PathLike) -> dict[str, Any]:
    """Run one case of a sweep into ``path`` (continuing an interrupted file of the same case);
    never raises for a failed run: returns ``status``, ``wall_time``, final diagnostics and ``error``."""
    from gridflow.io.runner import run
    from gridflow.io.status_file import signals_deferred

    start = time.perf_counter()
    result: dict[str, Any] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            summary: dict[str, Any] = {}
            run(case, output=path, resume=True, buffered=True, summary=summary)
            result["status"] = "complete"
            if summary:   # from the frames just written: the file is not read back
                result.update(summary)
            else:         # a complete file left as it was
                with signals_deferred():
                    result.update(final_diagnostics(Path(path)))
        except KeyboardInterrupt:
            if IN_POOL_WORKER:  # stopped by the sweep (or its death): the file says interrupted; leave now
                os._exit(143)
            result.update(status="interrupted", error="interrupted")
        except Exception as exc:  # a failed run is recorded, never stops the sweep
            internal = not isinstance(exc, GridflowError)
            result.update(status="failed", error=f"failed (internal error): {first_line(exc)}" if internal
                          else first_line(exc))
    result["wall_time"] = round(time.perf_counter() - start, 4)
    if caught:
        result["warnings"] = "; ".join(dict.fromkeys(str(w.message) for w in caught))
    return result
