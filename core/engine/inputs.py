"""Validation and coercion of engine inputs (before any fill is produced)."""

from __future__ import annotations

import numpy as np

from core.engine.validate import (
    BAD_NONE,
    BAD_OPEN,
    BAD_PRICE,
    BAD_SIGNAL,
    BAD_WEIGHT,
    BAD_WEIGHT_SUM,
    scan_bars_nb,
    scan_signals_nb,
)

# Weights may sum to 1 up to float rounding of the producer's normalisation.
WEIGHT_SUM_TOL = 1e-9


def as_matrix(name: str, a: object, shape: tuple[int, ...]) -> np.ndarray:
    """C-contiguous float64 copy-or-view of ``a``, which must have exactly ``shape``."""
    arr = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    return arr


def _2d(a: np.ndarray) -> np.ndarray:
    return a.reshape(1, -1) if a.ndim == 1 else a


def check_bars(o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray) -> None:
    """A bar is present iff its close is not NaN; then all four prices must be finite, > 0."""
    code, t, j = scan_bars_nb(_2d(o), _2d(h), _2d(low), _2d(c))
    if code == BAD_OPEN:
        raise ValueError(f"open/high/low is not finite where close is present (bar {t}, asset {j})")
    if code == BAD_PRICE:
        raise ValueError(f"prices must be finite and > 0 (bar {t}, asset {j})")
    assert code == BAD_NONE


def check_signals(sig: np.ndarray, mode: str, max_weight: float) -> None:
    """Discrete: values in {-1, 0, +1} (NaN = neutral). Portfolio: weights >= 0 whose
    row sum after the ``max_weight`` cap is <= 1."""
    code, t, j = scan_signals_nb(_2d(sig), mode == "portfolio", max_weight, WEIGHT_SUM_TOL)
    if code == BAD_SIGNAL:
        raise ValueError(f"discrete signals must be -1, 0 or +1 (bar {t}, asset {j})")
    if code == BAD_WEIGHT:
        raise ValueError(f"target weights must be >= 0 and finite (bar {t}, asset {j})")
    if code == BAD_WEIGHT_SUM:
        row = _2d(sig)[t]
        total = float(np.nansum(np.minimum(row, max_weight)))
        raise ValueError(
            f"target weights sum to more than 1 (after the max_weight cap) at row {t}: {total}"
        )
    assert code == BAD_NONE
