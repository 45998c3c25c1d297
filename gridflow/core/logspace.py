"""Log-space arithmetic used on the hot path (numpy only, so the command line starts fast)."""

from __future__ import annotations

import numpy as np


def logsumexp(values, axis: int | None = None):
    """log(sum(exp(values))) along ``axis`` (all entries if None), without over- or underflow.

    Entries of -inf contribute nothing; an all -inf reduction gives -inf; +inf gives +inf and a
    NaN anywhere gives NaN (as :func:`scipy.special.logsumexp`).
    """
    a = np.asarray(values, dtype=float)
    peak = np.max(a, axis=axis, keepdims=True)
    shift = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(under="ignore", divide="ignore", invalid="ignore", over="ignore"):
        total = np.log(np.sum(np.exp(a - shift), axis=axis, keepdims=True)) + shift
        total = np.where(np.isnan(peak) | np.isfinite(peak), total, peak)
    out = total if axis is None else np.squeeze(total, axis=axis)
    return float(out.reshape(())) if axis is None else out
