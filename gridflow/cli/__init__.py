"""The ``gridflow`` command line: one module per verb (``run``, ``info``, ``sample``, ``compare``,
``plot``, ``sweep``, ``validate``, ``reproduce``), each with ``add_parser`` and ``command``;
:mod:`gridflow.cli.entry` builds the parser from that registry and maps every outcome to an exit
status (0 ok, 1 numerical failure, 2 bad input, 130 interrupted); :mod:`gridflow.cli.arguments`
holds the checks the verbs share (limits, seeds, output paths that must not be clobbered).

Importing this package imports only :func:`main` (start-up stays fast).
"""

from gridflow.cli.entry import main

__all__ = ["main"]
