"""Reproductions of published claims, computed on the grid (``gridflow reproduce NAME``).

Each reproduction is a module exposing::

    TITLE: str                      # the paper, one line
    def reproduce(out_dir: Path, *, progress: bool = False) -> Path

``reproduce`` regenerates every number and figure of the reproduction into ``out_dir``
(tables as JSON/CSV, figures as PNG, and a Markdown report ``report.md``) and returns the
report's path.  The committed copies under ``docs/`` are produced by the same function.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from gridflow.errors import InputError

REPRODUCTIONS = {
    "crucinio-pathiraja": "gridflow.reproduce.crucinio_pathiraja",
    "chemseddine": "gridflow.reproduce.chemseddine",
}
"""Name on the command line -> module implementing it."""


def get(name: str) -> ModuleType:
    """The module of reproduction ``name``; :class:`InputError` naming the choices otherwise."""
    if name not in REPRODUCTIONS:
        raise InputError(f"Unknown reproduction {name!r}; choose one of: {', '.join(REPRODUCTIONS)}.")
    return importlib.import_module(REPRODUCTIONS[name])


def reproduce(name: str, out_dir: str | Path, *, progress: bool = False) -> Path:
    """Run reproduction ``name`` into ``out_dir``; returns the path of its Markdown report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return get(name).reproduce(out, progress=progress)
