"""Helpers shared by the reproductions (and by sample files): where the papers' case files live, JSON-able values."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

SOURCE_PAPERS = Path(__file__).resolve().parents[2] / "cases" / "papers"
"""``cases/papers`` of the source tree (the case files of the reproductions)."""

CWD_PAPERS = Path("cases") / "papers"
"""``cases/papers`` relative to the working directory: the fallback for non-editable installs."""


def jsonable(obj: Any, *, drop: Iterable[str] = (), nonfinite_as_text: bool = False) -> Any:
    """``obj`` with NumPy scalars and arrays, tuples and paths made plain JSON values, recursively.

    Dict keys become strings and keys in ``drop`` are left out; with ``nonfinite_as_text`` the
    floats inf, -inf and nan become the strings ``"inf"``, ``"-inf"`` and ``"nan"`` (strict JSON).
    Other objects are returned as they are.
    """
    drop = frozenset(drop)

    def convert(x: Any) -> Any:
        if isinstance(x, dict):
            return {str(k): convert(v) for k, v in x.items() if k not in drop}
        if isinstance(x, (list, tuple)):
            return [convert(v) for v in x]
        if isinstance(x, np.ndarray):
            return convert(x.tolist())
        if isinstance(x, np.generic):
            x = x.item()
        if isinstance(x, Path):
            return str(x)
        if nonfinite_as_text and isinstance(x, float) and not math.isfinite(x):
            return "inf" if x > 0 else "-inf" if x < 0 else "nan"
        return x

    return convert(obj)
