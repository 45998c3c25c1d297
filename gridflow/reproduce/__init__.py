"""Reproductions of published claims, computed on the grid (``gridflow reproduce NAME``).

Each reproduction is a package (``chemseddine/``, ``crucinio_pathiraja/``, split into cases, oracles, study,
figures, claims and report modules) or a module exposing::

    TITLE: str                      # the paper, one line
    def reproduce(out_dir: Path, *, progress: bool = False) -> Path

``reproduce`` regenerates every number and figure of the reproduction into ``out_dir``
(tables as JSON/CSV, figures as PNG, the claim records ``claims.json`` written with
:func:`gridflow.reproduce.claims.write_claims`, and a Markdown report ``report.md`` whose
verdicts are rendered from those records) and returns the report's path.  The committed
copies under ``docs/`` (``docs/reproductions-NAME.md``, ``docs/figures/NAME/`` and
``docs/reproductions/NAME/claims.json``) are made from that output by :func:`publish`
(``gridflow reproduce NAME --publish docs``), which also regenerates ``docs/reproductions.md``
from every published ``claims.json``.

claims.py              claim records: writing, reading, the Markdown tables and the index of reproductions
common.py              helpers shared by the reproductions: the papers' case-file directory, JSON-able values
chemseddine/           Chemseddine et al. (ICLR 2025): teleportation of mass along the geometric path
crucinio_pathiraja/    Crucinio & Pathiraja (TMLR): properties and limitations of geometric tempering
fab40.py               the FAB 40-mode Gaussian mixture target (benchmarks)
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from types import ModuleType

from gridflow.errors import InputError
from gridflow.reproduce.claims import write_index

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
    """Run reproduction ``name`` into ``out_dir``; returns the path of its Markdown report.

    The reproduction writes ``claims.json`` next to the report.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return get(name).reproduce(out, progress=progress)


def publish(name: str, out_dir: str | Path, docs_dir: str | Path) -> Path:
    """Copy reproduction ``name``'s report, figures and claims from ``out_dir`` into ``docs_dir``.

    Writes ``docs_dir/reproductions-NAME.md`` and ``docs_dir/figures/NAME/*.png`` with image
    links that work from ``docs_dir``, copies ``claims.json`` to
    ``docs_dir/reproductions/NAME/claims.json`` and regenerates ``docs_dir/reproductions.md``
    from every published ``claims.json``; returns the report's path.  A module may provide its
    own ``publish(out_dir, docs_dir)`` for the report and figures; otherwise its figures must
    live in ``out_dir/figures/NAME/`` and be linked relatively from ``report.md``.
    """
    module = get(name)
    out, docs = Path(out_dir), Path(docs_dir)
    claims = out / "claims.json"
    if not claims.is_file():
        raise InputError(f"{claims} is missing: run `gridflow reproduce {name}` into {out} first.")
    if hasattr(module, "publish"):
        target = module.publish(out, docs)
    else:
        figures = docs / "figures" / name
        figures.mkdir(parents=True, exist_ok=True)
        for png in sorted((out / "figures" / name).glob("*.png")):
            shutil.copyfile(png, figures / png.name)
        target = docs / f"reproductions-{name}.md"
        shutil.copyfile(out / "report.md", target)
    published = docs / "reproductions" / name
    published.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(claims, published / "claims.json")
    write_index(docs)
    return target
