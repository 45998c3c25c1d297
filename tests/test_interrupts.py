"""gridflow.interrupts: a signal swallowed by a C callback still stops the run, without noise."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import weakref

import pytest

from gridflow import interrupts

SWALLOWED = r"""
import gc, os, signal, sys, weakref
from gridflow import interrupts

class Thing:
    pass

signal.signal(signal.SIGTERM, interrupts.handler)
with interrupts.quiet_unraisable():
    t = Thing()
    weakref.finalize(t, os.kill, os.getpid(), signal.SIGTERM)   # the handler runs inside the finalizer,
    del t                                                        # whose exception Python drops
    gc.collect()
    print("requested", interrupts.requested(), flush=True)
    try:
        interrupts.check()
    except KeyboardInterrupt as exc:
        print("check raised", exc, flush=True)
"""


def test_an_interrupt_dropped_in_a_callback_is_remembered_and_not_printed():
    proc = subprocess.run([sys.executable, "-c", SWALLOWED], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["requested SIGTERM", "check raised signal SIGTERM"]
    assert proc.stderr == ""          # no "Exception ignored in ..." traceback


def test_without_a_signal_check_passes_and_other_unraisable_errors_still_show():
    interrupts.reset()
    interrupts.check()
    seen = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(type(u.exc_value))
    try:
        with interrupts.quiet_unraisable():
            class Thing:
                pass

            def fail():
                raise ValueError("a real error in a callback")

            t = Thing()
            weakref.finalize(t, fail)
            del t
            gc.collect()
    finally:
        sys.unraisablehook = previous
    assert seen == [ValueError]


def test_the_handler_raises_keyboard_interrupt_and_remembers():
    interrupts.reset()
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        interrupts.handler(signal.SIGTERM, None)
    assert interrupts.requested() == "SIGTERM"
    with pytest.raises(KeyboardInterrupt):
        interrupts.check()
    interrupts.reset()
    assert interrupts.requested() is None
