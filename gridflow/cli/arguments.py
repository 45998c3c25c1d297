"""Checks of command-line values shared by the verbs: whole numbers with limits, seeds, output paths
that must not be clobbered, and text shown without control characters."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from gridflow.errors import InputError, LimitError

#: Most samples ``gridflow sample -n`` draws (1e8 points of 2 coordinates are 1.6 GB).
MAX_SAMPLES = 100_000_000
#: Most bootstrap replicates of ``compare --bootstrap`` (p-values resolved to 1e-5; each replicate
#: costs one comparison).
MAX_BOOTSTRAP = 100_000
#: Significance level the bootstrap p-value floor 1/(B + 1) is compared with.
SIGNIFICANCE = 0.05
#: Most sampler steps (time / step) of one ``validate`` run.
MAX_SAMPLER_STEPS = 1_000_000
#: Most particles and replicates of ``validate``.
MAX_PARTICLES = 10_000_000
MAX_REPLICATES = 10_000
#: Largest particle coordinate ``compare`` accepts (squared distances must stay finite).
MAX_PARTICLE_COORDINATE = 1e100


def count(text: str, *, option: str, maximum: int, minimum: int = 0, reason: str) -> int:
    """A whole number given on the command line (``1000`` or ``1e6``), in [minimum, maximum].

    Raises :class:`InputError` for anything else and :class:`LimitError` above ``maximum``
    (``reason`` says why the limit exists).
    """
    try:
        value = float(text) if not str(text).strip().lstrip("+-").isdigit() else int(str(text).strip())
    except (TypeError, ValueError):
        raise InputError(f"{option} must be a whole number, got {text!r}.") from None
    if isinstance(value, float):
        if not (value == value and abs(value) != float("inf")) or value != int(value):
            raise InputError(f"{option} must be a whole number, got {text!r}.")
        value = int(value)
    if value < minimum:
        raise InputError(f"{option} must be at least {minimum}, got {text!r}.")
    if value > maximum:
        raise LimitError(f"{option} {text} exceeds the limit of {maximum:.0e}: {reason}.")
    return value


def seed(value: int | None, option: str = "--seed") -> int | None:
    """A random seed must be a non-negative integer (numpy's seed sequence refuses others)."""
    if value is not None and value < 0:
        raise InputError(f"{option} must be a non-negative integer, got {value}; e.g. {option} 1.")
    return value


def check_output_path(path: str | os.PathLike, *, inputs: Sequence[str | os.PathLike] = (),
                      what: str = "output file") -> Path:
    """Refuse an output path that cannot or must not be written, before any work is done.

    Refused (:class:`InputError`): a NUL byte or a component longer than the file system allows;
    a path that is one of the command's ``inputs``; an existing directory, device, FIFO, socket or
    write-protected file (:func:`gridflow.io.output_safety.check_output_path`); a new path whose directory
    (the nearest existing one: missing directories are created) the user cannot write to.
    Returns the path.
    """
    text = os.fspath(path)
    if not text:
        raise InputError(f"The {what} path is empty; give a file name.")
    if "\0" in text:
        raise InputError(f"The {what} path {text!r} contains a NUL byte; give a plain file name.")
    p = Path(text)
    name_max = 255
    try:
        name_max = os.pathconf(p.parent if p.parent.exists() else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        pass
    for part in p.parts:
        if len(os.fsencode(part)) > name_max:
            raise InputError(f"The {what} path has a component of {len(os.fsencode(part))} bytes, more than the "
                             f"file system allows ({name_max}); use a shorter name.")
    for source in inputs:
        try:
            same = Path(source).exists() and p.exists() and os.path.samefile(source, p)
        except OSError:
            same = False
        if same or os.path.abspath(source) == os.path.abspath(p):
            raise InputError(f"The {what} {text} is also an input of this command ({os.fspath(source)}); writing it "
                             f"would destroy the input. Choose another path with -o.")
    try:
        st = p.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise InputError(f"Cannot use the {what} {text} ({exc.strerror}); check the path.") from None
    if st is not None:  # an existing path: the store's own check (devices, FIFOs, directories, write-protected)
        from gridflow.io.output_safety import check_output_path as check_existing

        check_existing(p, noun=what)
        return p
    parent = p.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"Cannot create the {what} {text}: {parent} is not a directory; choose another path.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"Cannot create the {what} {text}: the directory {parent} is not writable; choose another "
                         f"path or change its permissions.")
    return p


def printable(text: object) -> str:
    """``text`` with control and format characters (escape sequences, bidi overrides) shown as escapes."""
    import unicodedata

    return "".join(c if unicodedata.category(c)[0] != "C" else
                   (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") for c in str(text))
