"""The ``gridflow`` command line (``python -m gridflow`` is the same): the parser built from the verbs'
registry, and :func:`main`, which runs one verb and turns every outcome into an exit status.

Each verb is a module of this package with ``add_parser(subparsers)`` and ``command(args) -> int``;
:data:`VERBS` lists them by name, in the order ``--help`` shows them.  Top-level imports here are only
what :func:`main` needs before its ``KeyboardInterrupt`` handler is in force (standard modules that
the interpreter has loaded already, gridflow's errors and version); the verbs' modules are imported
inside ``main``, so Ctrl-C at any moment after start-up is one line and exit status 130.
"""

from __future__ import annotations

import errno
import os
import sys
import warnings
from collections.abc import Sequence
from importlib import import_module

from gridflow import interrupts
from gridflow._version import __version__
from gridflow.cli.arguments import printable as _printable
from gridflow.errors import GridflowError, InputError

_default_format_warning = warnings.formatwarning

#: The verbs, each a module ``gridflow.cli.<name>`` with ``add_parser`` and ``command``.
VERBS = ("run", "info", "sample", "compare", "plot", "sweep", "refine", "validate", "reproduce")


def verb_module(name: str):
    """The module of the verb ``name`` (``gridflow.cli.<name>``)."""
    return import_module(f"gridflow.cli.{name}")


def _parser(argv: Sequence[str] | None = None):
    """The argument parser: global options and one subparser per verb of :data:`VERBS`.

    When ``argv`` (default: the command line) names a verb, only that verb's module is imported and
    its options built (the others are listed by name): a verb's module may import what its work
    needs (``validate`` imports scipy.stats), and ``gridflow run`` need not wait for that.
    """
    import argparse

    words = sys.argv[1:] if argv is None else list(argv)
    chosen = next((w for w in words if not w.startswith("-")), None)

    p = argparse.ArgumentParser(prog="gridflow", description=(
        "Exact grid solutions of the Fokker-Planck, Fisher-Rao and Wasserstein-Fisher-Rao flows "
        "(with geometric tempering), for validating particle samplers."))
    p.add_argument("--version", action="version", version=f"gridflow {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in VERBS:
        if chosen in VERBS and name != chosen:
            sub.add_parser(name)
        else:
            verb_module(name).add_parser(sub)
    return p


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """gridflow's own warnings as one line; other libraries' warnings (numpy, scipy, matplotlib) are not shown."""
    from gridflow.errors import BoundaryMassWarning, PecletWarning

    if issubclass(category, (BoundaryMassWarning, PecletWarning)):
        return f"gridflow: warning: {_printable(message)}\n"
    return ""


def _debug_format_warning(message, category, filename, lineno, line=None) -> str:
    """With --debug every warning is shown, gridflow's as one line."""
    return _format_warning(message, category, filename, lineno, line) or _default_format_warning(
        message, category, filename, lineno, line)


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at the null device so that the final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (e.g. captured)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 numerical failure, 2 bad input, 130 interrupted).

    Ctrl-C at any moment (also while modules are imported) is one line and status 130; a closed
    stdout (``gridflow compare --json | head -c 10``) ends quietly.
    """
    import signal

    # gridflow's SIGINT handler remembers Ctrl-C (gridflow.interrupts): C code (numpy's extension
    # import, numba's compiler callbacks, weak-reference callbacks) may swallow the
    # KeyboardInterrupt or turn it into another error, and the memory of it still ends the command
    interrupts.reset()
    previous = signal.getsignal(signal.SIGINT)
    own = previous is signal.default_int_handler
    try:
        if own:
            signal.signal(signal.SIGINT, interrupts.handler)
    except ValueError:                   # not the main thread: signals go elsewhere
        own = False
    try:
        with interrupts.quiet_unraisable():
            return _main(argv)
    finally:
        if own:
            signal.signal(signal.SIGINT, previous)


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = _parser(argv).parse_args(argv)
        warnings.formatwarning = _debug_format_warning if args.debug else _format_warning
        try:
            status = _dispatch(args)
            sys.stdout.flush()  # a broken pipe shows here, not at interpreter exit
            return status
        finally:
            warnings.formatwarning = _default_format_warning
    except KeyboardInterrupt:
        return _interrupted()
    except ImportError as exc:           # numpy turns Ctrl-C during its C-extension import into this
        if caused_by_interrupt(exc) or interrupts.requested():
            return _interrupted()
        raise
    except BrokenPipeError:
        _silence_stdout()
        return 1


def caused_by_interrupt(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in the chain of exceptions that led to ``exc`` (numpy, for
    one, re-raises Ctrl-C during the import of its C extensions as an ImportError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _interrupted() -> int:
    try:
        print("gridflow: interrupted", file=sys.stderr)
    except (OSError, KeyboardInterrupt):
        pass
    _forget_unhandled_interrupt()
    return 130


def _forget_unhandled_interrupt() -> None:
    """Keep the exit status 130 of an interrupt that was handled.

    CPython 3.11 marks the interpreter as ended by an unhandled KeyboardInterrupt when one passes
    through ``exec`` of a string (``_Py_UnhandledKeyboardInterrupt``), even if it is caught later, and
    then ends the process by SIGINT instead of with the status ``main`` returned.  scipy's import
    runs such an ``exec``: a SIGTERM while a run imports it gave "killed by SIGINT", not 130.  The
    flag is cleared here where the interpreter exports it (3.11); elsewhere nothing changes.
    """
    try:
        import ctypes

        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except (ImportError, AttributeError, ValueError, OSError):
        pass


#: errno values of an OSError that the user's input causes (a path, a permission): exit status 2.
_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG,
                errno.EROFS, errno.ELOOP, errno.EEXIST, errno.ENXIO, errno.ETXTBSY}


def _dispatch(args) -> int:
    try:
        return verb_module(args.verb).command(args)
    except GridflowError as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        kind = "error" if isinstance(exc, InputError) else "numerical failure"
        print(f"gridflow: {kind}: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, BrokenPipeError):
        raise
    except OSError as exc:  # a file the command reads or writes
        if args.debug:
            import traceback

            traceback.print_exc()
        where = f" {_printable(exc.filename)}" if exc.filename else ""
        if exc.errno in _USER_ERRNOS:
            print(f"gridflow: error: cannot use{where}: {exc.strerror or exc}; check the path and its permissions.",
                  file=sys.stderr)
            return 2
        print(f"gridflow: error: input/output error on{where}: {exc.strerror or exc}.", file=sys.stderr)
        return 1
    except MemoryError:
        print("gridflow: error: out of memory; use a smaller problem (fewer grid cells, samples or replicates).",
              file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: say so plainly
        if caused_by_interrupt(exc) or interrupts.requested():
            raise KeyboardInterrupt from exc
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"gridflow: internal error: {type(exc).__name__}: {_one_line(exc)} (run with --debug for the "
              f"traceback, and please report it)", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` without control characters except the newlines a formula error's caret needs."""
    return "\n".join(_printable(line) for line in str(exc).split("\n"))
