"""Weighted ensembles: normalised weights, effective sample size, systematic resampling."""

from __future__ import annotations

import numpy as np

__all__ = ["normalised_weights", "effective_sample_size", "systematic_resample"]


def normalised_weights(log_w: np.ndarray) -> np.ndarray:
    """Weights exp(log_w) normalised to sum 1 (computed without overflow)."""
    with np.errstate(under="ignore"):
        w = np.exp(log_w - np.max(log_w))
    return w / w.sum()


def effective_sample_size(log_weights: np.ndarray | None, n: int | None = None) -> float:
    """Kish's ESS 1 / sum w_i^2 of normalised weights (``n`` when unweighted)."""
    if log_weights is None:
        return float(n)
    w = normalised_weights(np.asarray(log_weights, dtype=float))
    return float(1.0 / np.sum(w * w))


def systematic_resample(weights: np.ndarray, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Indices of a systematic resample of size ``n`` (default len(weights)): one uniform u,
    points (u + k)/n, so particle i is copied floor(n w_i) or ceil(n w_i) times."""
    w = np.asarray(weights, dtype=float)
    n = w.size if n is None else int(n)
    cum = np.cumsum(w / w.sum())
    cum[-1] = 1.0
    u = (rng.random() + np.arange(n)) / n
    return np.minimum(np.searchsorted(cum, u, side="right"), w.size - 1)

