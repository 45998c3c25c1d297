"""Signals that stop a run (Ctrl-C, SIGTERM): remembered, so that one C code swallowed still stops it.

A Python signal handler runs wherever the interpreter happens to be.  When that is inside a
callback that C code calls and whose exceptions it cannot propagate — a weak-reference callback
run by the garbage collector, numba's compiler hooks — the ``KeyboardInterrupt`` the handler
raises is printed as "Exception ignored in ..." and dropped, and the run would go on.  So the
handlers here also *remember* the signal: :func:`check` (called by the runner after every time
step) raises it again, and :func:`quiet_unraisable` keeps the dropped one off stderr.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_requested: str | None = None


def handler(signum: int, frame: object) -> None:
    """Signal handler: remember the signal, then interrupt as Python does for Ctrl-C."""
    global _requested
    _requested = signal.Signals(signum).name
    raise KeyboardInterrupt(f"signal {_requested}")


def requested() -> str | None:
    """The name of the signal received since :func:`reset` (``None`` if none)."""
    return _requested


def reset() -> None:
    """Forget a remembered signal (at the start of a command)."""
    global _requested
    _requested = None


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a signal came (also one whose first interrupt was swallowed)."""
    if _requested is not None:
        raise KeyboardInterrupt(f"signal {_requested}")


@contextmanager
def quiet_unraisable() -> Iterator[None]:
    """While active, an interrupt dropped in a callback (``sys.unraisablehook``) after a remembered
    signal is not printed: :func:`check` delivers it.  Everything else goes to the previous hook."""
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if _requested is not None and isinstance(unraisable.exc_value, KeyboardInterrupt):
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous
